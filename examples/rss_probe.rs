//! Peak-RSS probe for one allocator and one bounded workload.
//!
//! ```text
//! cargo run --release --example rss_probe -- <gomalloc|mimalloc|system> <mixed|batch|prodcons|vecgrow>
//! ```
//!
//! The program keeps the system allocator as its global allocator and calls
//! the chosen allocator only through `GlobalAlloc`, like `benches/alloc.rs`.
//! Every block is filled when allocated (so the pages it spans are resident,
//! as in a real program) and checked when freed. On success it prints exactly
//! one line to stdout,
//!
//! ```text
//! peak_rss_kib=<n> elapsed_ms=<n>
//! ```
//!
//! where `peak_rss_kib` is the peak resident set size of the whole process
//! (`VmHWM` from /proc/self/status, falling back to
//! `getrusage(RUSAGE_SELF).ru_maxrss`; see `peak_rss_kib`), so a baseline of
//! a few MiB is common to all three allocators.
//! A failed content check prints a message to stderr and exits with status 1;
//! bad arguments exit with status 2. `benches/ratios.py` runs this for every
//! allocator and workload.

use std::alloc::{handle_alloc_error, GlobalAlloc, Layout, System};
use std::env;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;
use std::time::Instant;

use gomalloc::GoMalloc;
use mimalloc::MiMalloc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const ALIGN: usize = 8;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

const ALLOCATORS: [&str; 3] = ["gomalloc", "mimalloc", "system"];
const WORKLOADS: [&str; 4] = ["mixed", "batch", "prodcons", "vecgrow"];

type Check = Result<(), String>;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("size fits a Layout")
}

/// A live block: pointer, size, and the tag byte it was filled with.
struct Block {
    ptr: NonNull<u8>,
    size: usize,
    tag: u8,
}

// SAFETY: a `Block` is the only handle to its allocation; it moves between
// threads only in the producer/consumer workload, where the allocators under
// test are `Sync` and cross-thread frees are part of the `GlobalAlloc`
// contract.
unsafe impl Send for Block {}

impl Block {
    /// Allocates `size` bytes from `a` and fills them with `tag`.
    fn new<A: GlobalAlloc>(a: &A, size: usize, tag: u8) -> Block {
        let l = layout(size);
        // SAFETY: `size` is non-zero for every caller in this file.
        let p = unsafe { a.alloc(l) };
        let Some(ptr) = NonNull::new(p) else { handle_alloc_error(l) };
        // SAFETY: `ptr` points at `size` writable bytes.
        unsafe { ptr.as_ptr().write_bytes(tag, size) };
        Block { ptr, size, tag }
    }

    /// Checks the first, middle and last byte still hold the tag, then frees.
    fn free<A: GlobalAlloc>(self, a: &A) -> Check {
        let p = self.ptr.as_ptr();
        for off in [0, self.size / 2, self.size - 1] {
            // SAFETY: `off < size`, and the block is live until the dealloc.
            let got = unsafe { p.add(off).read() };
            if got != self.tag {
                return Err(format!(
                    "block {p:p} of {} bytes: byte {off} is {got:#04x}, expected {:#04x}",
                    self.size, self.tag
                ));
            }
        }
        // SAFETY: allocated from `a` with `layout(self.size)`, freed once
        // (this consumes `self`).
        unsafe { a.dealloc(p, layout(self.size)) };
        Ok(())
    }
}

/// Sizes as in `benches/alloc.rs`: 70% 8–128 B, 20% to 1 KiB, 8% to 8 KiB,
/// 2% to 64 KiB.
fn mixed_size(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..100u32) {
        0..=69 => rng.gen_range(8..=128),
        70..=89 => rng.gen_range(129..=1024),
        90..=97 => rng.gen_range(1025..=8 << 10),
        _ => rng.gen_range((8 << 10) + 1..=64 << 10),
    }
}

/// 16 Ki live blocks of mixed sizes (about 20 MiB); 2 M times, free the block
/// in a random slot and allocate a new one there.
fn mixed<A: GlobalAlloc>(a: &A) -> Check {
    const WINDOW: usize = 1 << 14;
    let mut rng = SmallRng::seed_from_u64(SEED);
    let mut live: Vec<Block> = (0..WINDOW).map(|i| Block::new(a, mixed_size(&mut rng), i as u8)).collect();
    for i in 0..2_000_000usize {
        let slot = rng.gen_range(0..WINDOW);
        let new = Block::new(a, mixed_size(&mut rng), i as u8);
        std::mem::replace(&mut live[slot], new).free(a)?;
    }
    live.into_iter().try_for_each(|b| b.free(a))
}

/// 10 rounds of: 200 000 blocks of 64 B, all freed; then 20 000 mixed blocks,
/// all freed. Shows whether memory freed by one size is reused by others.
fn batch<A: GlobalAlloc>(a: &A) -> Check {
    let mut rng = SmallRng::seed_from_u64(SEED ^ 2);
    let mut live: Vec<Block> = Vec::with_capacity(200_000);
    for round in 0..10u8 {
        live.extend((0..200_000).map(|_| Block::new(a, 64, round)));
        live.drain(..).try_for_each(|b| b.free(a))?;
        live.extend((0..20_000).map(|_| Block::new(a, mixed_size(&mut rng), !round)));
        live.drain(..).try_for_each(|b| b.free(a))?;
    }
    Ok(())
}

fn consume<A: GlobalAlloc>(a: &A, rx: Receiver<Vec<Block>>) -> Check {
    for blocks in rx {
        blocks.into_iter().try_for_each(|b| b.free(a))?;
    }
    Ok(())
}

/// The main thread allocates 2 M blocks of 64 B, then 500 000 mixed blocks,
/// and sends them in chunks of 256 over a channel of 64 chunks to a thread
/// that checks and frees them: every free is remote.
fn prodcons<A: GlobalAlloc + Sync>(a: &A) -> Check {
    const CHUNK: usize = 256;
    let mut rng = SmallRng::seed_from_u64(SEED ^ 3);
    thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<Block>>(64);
        let consumer = s.spawn(move || consume(a, rx));
        let sizes = (0..2_000_000).map(|_| 64).chain((0..500_000).map(|_| mixed_size(&mut rng))).enumerate();
        let mut chunk = Vec::with_capacity(CHUNK);
        for (i, size) in sizes {
            chunk.push(Block::new(a, size, i as u8));
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if tx.send(full).is_err() {
                    break; // the consumer failed a check; its result says why
                }
            }
        }
        // A send fails only when the consumer already stopped on an error.
        let _ = tx.send(chunk);
        drop(tx);
        consumer.join().expect("consumer thread panicked")
    })
}

/// A buffer grown by `realloc` whose byte `i` is `i as u8 ^ tag`.
struct Growing {
    ptr: *mut u8,
    size: usize,
    tag: u8,
}

impl Growing {
    fn new<A: GlobalAlloc>(a: &A, size: usize, tag: u8) -> Growing {
        let b = Block::new(a, size, 0);
        let mut g = Growing { ptr: b.ptr.as_ptr(), size: 0, tag };
        g.fill_to(size);
        g
    }

    /// Writes the pattern into bytes `self.size..new_size`.
    fn fill_to(&mut self, new_size: usize) {
        for i in self.size..new_size {
            // SAFETY: the buffer holds `new_size` bytes.
            unsafe { self.ptr.add(i).write(i as u8 ^ self.tag) };
        }
        self.size = new_size;
    }

    fn grow<A: GlobalAlloc>(&mut self, a: &A, new_size: usize) {
        // SAFETY: `ptr` was allocated from `a` with `layout(self.size)`;
        // `new_size` is non-zero and fits a `Layout`.
        let p = unsafe { a.realloc(self.ptr, layout(self.size), new_size) };
        if p.is_null() {
            handle_alloc_error(layout(new_size));
        }
        self.ptr = p;
        self.fill_to(new_size);
    }

    fn check_and_free<A: GlobalAlloc>(self, a: &A) -> Check {
        for i in 0..self.size {
            // SAFETY: `i < size`; the buffer is live until the dealloc.
            let got = unsafe { self.ptr.add(i).read() };
            if got != i as u8 ^ self.tag {
                return Err(format!(
                    "grown buffer of {} bytes: byte {i} is {got:#04x}, expected {:#04x}",
                    self.size,
                    i as u8 ^ self.tag
                ));
            }
        }
        // SAFETY: allocated from `a`, last resized to `layout(self.size)`;
        // freed once (this consumes `self`).
        unsafe { a.dealloc(self.ptr, layout(self.size)) };
        Ok(())
    }
}

/// 4 rounds of: 16 buffers grown side by side by doubling from 8 B to 4 MiB;
/// then 64 buffers grown side by side by 64 B from 8 B to 64 KiB. Contents
/// are checked in full before each buffer is freed.
fn vecgrow<A: GlobalAlloc>(a: &A) -> Check {
    for round in 0..4u8 {
        let mut bufs: Vec<Growing> = (0..16).map(|i| Growing::new(a, 8, round ^ i)).collect();
        while bufs[0].size < 4 << 20 {
            for b in &mut bufs {
                b.grow(a, b.size * 2);
            }
        }
        bufs.drain(..).try_for_each(|b| b.check_and_free(a))?;

        bufs.extend((0..64).map(|i| Growing::new(a, 8, round.wrapping_mul(7) ^ i)));
        while bufs[0].size + 64 <= 64 << 10 {
            for b in &mut bufs {
                b.grow(a, b.size + 64);
            }
        }
        bufs.drain(..).try_for_each(|b| b.check_and_free(a))?;
    }
    Ok(())
}

fn run<A: GlobalAlloc + Sync>(a: &A, workload: &str) -> Check {
    match workload {
        "mixed" => mixed(a),
        "batch" => batch(a),
        "prodcons" => prodcons(a),
        "vecgrow" => vecgrow(a),
        _ => unreachable!("workload names are checked in main"),
    }
}

/// Peak resident set size of this process in KiB: `VmHWM` from
/// /proc/self/status, else `getrusage(RUSAGE_SELF).ru_maxrss`.
///
/// `VmHWM` comes first because Linux keeps `ru_maxrss` across `execve`: when
/// `cargo run` forks and execs this program, `ru_maxrss` starts at cargo's
/// own peak (about 40 MiB), which would hide the workload's. `VmHWM` belongs
/// to the address space, which `execve` replaces.
fn peak_rss_kib() -> u64 {
    let hwm = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    });
    hwm.unwrap_or_else(|| {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is valid for writes of one `rusage`.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        assert_eq!(rc, 0, "getrusage failed");
        // SAFETY: getrusage succeeded, so it initialised `usage` (and the
        // zeroed start makes every field valid anyway).
        let usage = unsafe { usage.assume_init() };
        // On Linux `ru_maxrss` is in KiB.
        u64::try_from(usage.ru_maxrss).unwrap_or(0)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let [alloc, workload] = args.as_slice() else {
        eprintln!("usage: rss_probe <{}> <{}>", ALLOCATORS.join("|"), WORKLOADS.join("|"));
        return ExitCode::from(2);
    };
    if !ALLOCATORS.contains(&alloc.as_str()) || !WORKLOADS.contains(&workload.as_str()) {
        eprintln!(
            "rss_probe: unknown allocator or workload {alloc:?} {workload:?}; \
             allocators: {}; workloads: {}",
            ALLOCATORS.join(", "),
            WORKLOADS.join(", ")
        );
        return ExitCode::from(2);
    }
    let start = Instant::now();
    let result = match alloc.as_str() {
        "gomalloc" => run(&GoMalloc, workload),
        "mimalloc" => run(&MiMalloc, workload),
        _ => run(&System, workload),
    };
    let elapsed = start.elapsed();
    match result {
        Ok(()) => {
            println!("peak_rss_kib={} elapsed_ms={}", peak_rss_kib(), elapsed.as_millis());
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("rss_probe: {alloc} {workload}: self-check failed: {msg}");
            ExitCode::FAILURE
        }
    }
}
