//! The misuse suite: each case runs in a child process (this binary,
//! re-executed with the case's name), commits one misuse through
//! `GoMalloc`, and must be stopped by `abort()` with exactly one line on
//! stderr that names the problem and the address (or, for a write onto a
//! guard page, by `SIGSEGV`).
//!
//! Without arguments the binary is the harness (run by `cargo test`); with a
//! case name it is that case's child. Cases marked `secure` run only when the
//! crate is built with `--features secure` (the guard-page case with
//! `secure-guards`); the default build's cheap checks
//! do not see them (the README's "Security and diagnostics" table says which
//! checks run in which build).

use core::alloc::{GlobalAlloc, Layout};
use gomalloc::GoMalloc;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// Linux's SIGABRT.
const SIGABRT: i32 = 6;
/// Linux's SIGSEGV.
const SIGSEGV: i32 = 11;

struct Case {
    name: &'static str,
    /// Runs the misuse; prints the address it misuses as `addr=0x...`
    /// before doing so.
    run: fn(),
    /// What the one stderr line must contain besides the address.
    expect: &'static str,
    secure_only: bool,
    /// The signal that must end the child: SIGABRT from the allocator's
    /// check, or SIGSEGV from a guard page (which prints nothing).
    signal: i32,
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn alloc(size: usize) -> *mut u8 {
    // SAFETY: a valid layout; the block is checked non-null.
    let p = unsafe { GoMalloc.alloc(layout(size)) };
    assert!(!p.is_null());
    p
}

/// Announces the address the case misuses; the harness looks for it in the
/// diagnostic.
fn announce(p: *const u8) {
    println!("addr={:#x}", p as usize);
    std::io::stdout().flush().unwrap();
}

fn free(p: *mut u8, size: usize) {
    // SAFETY: none, deliberately: the cases pass pointers that break
    // `dealloc`'s contract, and the allocator must stop the process before
    // anything else happens.
    unsafe { GoMalloc.dealloc(p, layout(size)) }
}

fn double_free_small() {
    let p = alloc(48);
    announce(p);
    free(p, 48);
    free(p, 48);
}

fn double_free_large() {
    let p = alloc(200 << 10);
    announce(p);
    free(p, 200 << 10);
    free(p, 200 << 10);
}

fn interior_free_small() {
    let p = alloc(64);
    // SAFETY: in bounds of the block.
    let q = unsafe { p.add(16) };
    announce(q);
    free(q, 48);
}

fn interior_free_large() {
    let p = alloc(1 << 20);
    // SAFETY: in bounds of the block.
    let q = unsafe { p.add(8192) };
    announce(q);
    free(q, 1 << 20);
}

fn foreign_free_stack() {
    let local = [0u64; 8];
    let p = std::hint::black_box(local.as_ptr()) as *mut u8;
    announce(p);
    free(p, 64);
}

fn foreign_free_mmap() {
    // SAFETY: a fresh anonymous mapping.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    announce(p.cast());
    free(p.cast(), 64);
}

fn free_after_realloc() {
    let p = alloc(64);
    // SAFETY: `p` is a live 64-byte block; 4 KiB is another size class, so
    // the block moves and `p` is freed by realloc.
    let q = unsafe { GoMalloc.realloc(p, layout(64), 4096) };
    assert!(!q.is_null() && q != p, "realloc to another class moves the block");
    announce(p);
    free(p, 64);
}

/// A double free the default build's cheap check does not see: another
/// block was freed in between, so the first is no longer at the head of the
/// free list.
fn double_free_not_at_head() {
    let (p, q) = (alloc(32), alloc(32));
    announce(p);
    free(p, 32);
    free(q, 32);
    free(p, 32);
}

/// A double free by another thread than the first free's.
fn double_free_remote() {
    let p = alloc(32) as usize;
    announce(p as *const u8);
    free(p as *mut u8, 32);
    std::thread::spawn(move || free(p as *mut u8, 32)).join().unwrap();
}

fn write_past_end() {
    let p = alloc(20);
    announce(p);
    // SAFETY: deliberately one byte past the 20 requested (inside the slot,
    // so nothing but the allocator's canary notices).
    unsafe { p.add(20).write_volatile(0x41) };
    free(p, 20);
}

fn write_past_end_canary() {
    let p = alloc(24);
    announce(p);
    // SAFETY: deliberately 8 bytes past the 24 requested, inside the slot.
    unsafe { p.add(24).cast::<u64>().write_volatile(0) };
    free(p, 24);
}

/// A write that runs off the page-rounded end of a large block hits the
/// guard page of the `secure-guards` build.
fn write_past_end_large() {
    let p = alloc(100_000);
    let usable = gomalloc::usable_size(p).expect("a live block");
    // SAFETY: deliberately the first byte past the block's usable end.
    let q = unsafe { p.add(usable) };
    announce(q);
    // SAFETY: as above.
    unsafe { q.write_volatile(1) };
}

fn free_list_corruption() {
    let (p, q) = (alloc(64), alloc(64));
    free(q, 64);
    // Use after free: the freed block's first word, its free-list link, is
    // overwritten with a plausible heap address.
    announce(q);
    // SAFETY: deliberately writes into a freed block (it is still mapped).
    unsafe { q.cast::<usize>().write_volatile(p as usize) };
    // The next allocation of the class pops `q` and follows its link.
    let r = alloc(64);
    let s = alloc(64);
    println!("not stopped: {r:p} {s:p}");
}

const CASES: &[Case] = &[
    Case {
        name: "double-free-small",
        run: double_free_small,
        expect: "double free of",
        secure_only: false,
        signal: SIGABRT,
    },
    Case {
        name: "double-free-large",
        run: double_free_large,
        expect: "double free of",
        secure_only: false,
        signal: SIGABRT,
    },
    Case {
        name: "interior-free-small",
        run: interior_free_small,
        expect: "interior pointer",
        secure_only: false,
        signal: SIGABRT,
    },
    Case {
        name: "interior-free-large",
        run: interior_free_large,
        expect: "interior pointer",
        secure_only: false,
        signal: SIGABRT,
    },
    Case {
        name: "foreign-free-stack",
        run: foreign_free_stack,
        expect: "not allocated by gomalloc",
        secure_only: false,
        signal: SIGABRT,
    },
    Case {
        name: "foreign-free-mmap",
        run: foreign_free_mmap,
        expect: "not allocated by gomalloc",
        secure_only: false,
        signal: SIGABRT,
    },
    Case {
        name: "free-after-realloc",
        run: free_after_realloc,
        expect: "double free of",
        secure_only: false,
        signal: SIGABRT,
    },
    Case {
        name: "double-free-not-at-head",
        run: double_free_not_at_head,
        expect: "double free of",
        secure_only: true,
        signal: SIGABRT,
    },
    Case {
        name: "double-free-remote",
        run: double_free_remote,
        expect: "double free of",
        secure_only: true,
        signal: SIGABRT,
    },
    Case {
        name: "write-past-end",
        run: write_past_end,
        expect: "written past its end, at offset 20",
        secure_only: true,
        signal: SIGABRT,
    },
    Case {
        name: "write-past-end-canary",
        run: write_past_end_canary,
        expect: "written past its end",
        secure_only: true,
        signal: SIGABRT,
    },
    Case { name: "write-past-end-large", run: write_past_end_large, expect: "", secure_only: true, signal: SIGSEGV },
    Case {
        name: "free-list-corruption",
        run: free_list_corruption,
        expect: "free list corrupted",
        secure_only: true,
        signal: SIGABRT,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(case) = args.get(1).and_then(|a| CASES.iter().find(|c| c.name == a)) {
        (case.run)();
        println!("{}: not stopped", case.name);
        std::process::exit(1);
    }
    // `cargo test` may pass libtest's flags (ignored here) and name filters:
    // as with libtest, a case runs if its name contains one of them.
    let filter: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let secure = cfg!(feature = "secure");
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in CASES {
        if case.secure_only && !secure {
            println!("misuse {}: skipped (needs --features secure)", case.name);
            continue;
        }
        if case.signal == SIGSEGV && !cfg!(feature = "secure-guards") {
            println!("misuse {}: skipped (needs --features secure-guards)", case.name);
            continue;
        }
        if !filter.is_empty() && !filter.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let out = Command::new(&args[0])
            .arg(case.name)
            .env_remove("GOMALLOC_VERBOSE")
            .stdin(Stdio::null())
            .output()
            .expect("run the case's child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let addr = stdout.lines().find_map(|l| l.strip_prefix("addr=")).unwrap_or("(none announced)");
        let lines: Vec<&str> = stderr.lines().collect();
        let mut problems = Vec::new();
        if out.status.signal() != Some(case.signal) {
            problems.push(format!("ended with {:?}, not signal {}", out.status, case.signal));
        }
        if case.signal != SIGABRT {
            // A fault: nothing to read on stderr.
        } else if lines.len() != 1 {
            problems.push(format!("{} stderr lines, not 1", lines.len()));
        }
        let line = lines.first().copied().unwrap_or("");
        if case.signal == SIGABRT
            && (!line.starts_with("gomalloc: ") || !line.contains(case.expect) || !line.contains(addr))
        {
            problems.push(format!("message does not start with \"gomalloc: \", name {addr} and say {:?}", case.expect));
        }
        if problems.is_empty() && case.signal != SIGABRT {
            println!("misuse {}: ok: killed by signal {} at {addr}", case.name, case.signal);
        } else if problems.is_empty() {
            println!("misuse {}: ok: {line}", case.name);
        } else {
            println!("misuse {}: FAILED: {}\n--- stdout\n{stdout}--- stderr\n{stderr}", case.name, problems.join("; "));
            failures.push(case.name);
        }
    }
    println!("misuse: {ran} cases run, {} failed", failures.len());
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
