//! Out of memory: each case runs in a child process (this binary re-executed with
//! `--exact <case>`) that lowers its address-space limit (`setrlimit(RLIMIT_AS)`) to
//! what it uses plus `HEADROOM`, so the OS refuses gomalloc's next arenas.
//!
//! - `allocation_fails_cleanly_and_the_heap_recovers`: huge requests (`alloc`,
//!   `alloc_zeroed`, `realloc`, over-aligned) return null and leave the heap as it
//!   was (a failed `realloc` keeps its block); filling the address space with large
//!   blocks, then with small blocks of several classes, ends in null, not a crash;
//!   after freeing some, both kinds succeed again; every block kept its fill pattern
//!   throughout; after freeing everything, `stats()` is back where it started and
//!   the heap serves a fresh round. Threads do the same concurrently in
//!   `threads_hitting_the_limit_recover`.
//! - `global_allocator_reports_alloc_error_{large,small}`: through
//!   `#[global_allocator]`, a failed allocation reaches Rust's standard alloc-error
//!   handling: the child aborts (SIGABRT) with "memory allocation of N bytes
//!   failed".
//!
//! The C entry points (`malloc` & co. returning NULL with `errno = ENOMEM`) are
//! checked by `ffi/tests/c/oom.c`.

mod common;

use gomalloc::{stats, GoMalloc};
use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

const MIB: usize = 1 << 20;
/// Address space left above what the child uses when it sets its limit: room for
/// a few 64 MiB arenas (each mapped with 64 MiB of alignment slack).
const HEADROOM: usize = 320 * MIB;
const CHILD_VAR: &str = "GOMALLOC_OOM_CHILD";
const SIGABRT: i32 = 6;
/// What `bytes_in_use` may differ by between two points where the test holds the
/// same blocks: std allocates a little on its own (thread handles, lazily made
/// buffers) through the same global allocator.
const STD_SLACK: usize = 64 << 10;

fn assert_in_use_back(now: &gomalloc::Stats, then: &gomalloc::Stats, what: &str) {
    assert!(
        now.bytes_in_use.abs_diff(then.bytes_in_use) <= STD_SLACK,
        "{what}: {} bytes in use, {} before",
        now.bytes_in_use,
        then.bytes_in_use
    );
    assert_eq!(now.large_objects, then.large_objects, "{what}: large objects");
}

const CHILD_LIMIT: Duration = Duration::from_secs(180);

fn run_child(case: &str) -> common::ChildRun {
    common::run_case_in_child(case, CHILD_VAR, &[], CHILD_LIMIT)
}

/// True in the child that runs `case`.
fn is_child(case: &str) -> bool {
    std::env::var(CHILD_VAR).is_ok_and(|v| v == case)
}

/// Runs `case` in a child and requires it to pass.
fn child_passes(case: &str) -> bool {
    if is_child(case) {
        return true;
    }
    let c = run_child(case);
    assert!(c.status.success() && c.output.contains("1 passed"), "child {case} failed: {:?}", c.status);
    false
}

/// Limits the process's address space to its current size plus `HEADROOM`.
fn limit_address_space() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmSize in /proc/self/status");
    let limit = (kib << 10) + HEADROOM;
    let rl = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit value for this process.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_AS)");
}

/// A block handed out by `GoMalloc` directly (not through the global allocator's
/// error handling), filled with a pattern derived from its address.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a `Block` is the only handle to its allocation; `GlobalAlloc` allows
// freeing it from any thread.
unsafe impl Send for Block {}

impl Block {
    fn byte(&self, i: usize) -> u8 {
        ((self.ptr as usize >> 4) ^ i.wrapping_mul(31)) as u8
    }

    /// Allocates and fills; `None` when gomalloc returns null.
    fn try_new(size: usize, align: usize) -> Option<Block> {
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: non-zero size.
        let ptr = unsafe { GoMalloc.alloc(layout) };
        if ptr.is_null() {
            return None;
        }
        let b = Block { ptr, layout };
        b.fill();
        Some(b)
    }

    /// Writes the pattern: every byte of a small block, a few per page of a large one.
    fn fill(&self) {
        for i in self.probe_offsets() {
            let v = self.byte(i);
            // SAFETY: `i` is inside the live block.
            unsafe { self.ptr.add(i).write(v) };
        }
    }

    fn probe_offsets(&self) -> impl Iterator<Item = usize> {
        let size = self.layout.size();
        let step = if size <= 4096 { 1 } else { 4093 };
        (0..size).step_by(step).chain(std::iter::once(size - 1))
    }

    fn check(&self, what: &str) {
        for i in self.probe_offsets() {
            // SAFETY: `i` is inside the live block.
            let got = unsafe { self.ptr.add(i).read() };
            assert_eq!(got, self.byte(i), "{what}: byte {i} of a {} B block changed", self.layout.size());
        }
    }

    fn free(self) {
        self.check("before free");
        // SAFETY: allocated by GoMalloc with this layout, freed once.
        unsafe { GoMalloc.dealloc(self.ptr, self.layout) };
    }
}

/// Huge requests of every kind fail with null and change nothing.
fn huge_requests_fail() {
    let before = stats();
    for (size, align) in [(1 << 30, 8), (3 << 30, 8), (1 << 30, 1 << 20), (usize::MAX / 4, 8)] {
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: non-zero sizes.
        unsafe {
            assert!(GoMalloc.alloc(layout).is_null(), "alloc({size}, {align}) under the limit");
            assert!(GoMalloc.alloc_zeroed(layout).is_null(), "alloc_zeroed({size}, {align}) under the limit");
        }
    }
    let b = Block::try_new(MIB, 8).expect("1 MiB fits under the limit");
    let small = Block::try_new(100, 8).expect("100 B fit under the limit");
    // SAFETY: live blocks with these layouts; a failed realloc leaves them alone.
    unsafe {
        assert!(GoMalloc.realloc(b.ptr, b.layout, 2 << 30).is_null(), "realloc to 2 GiB");
        assert!(GoMalloc.realloc(small.ptr, small.layout, 1 << 30).is_null(), "realloc of a small block to 1 GiB");
    }
    b.check("after a failed realloc");
    small.check("after a failed realloc");
    assert_eq!(gomalloc::usable_size(b.ptr), Some(MIB), "the failed realloc kept the block");
    b.free();
    small.free();
    assert_in_use_back(&stats(), &before, "after failed requests");
}

/// Fills the address space with `size`-byte blocks until gomalloc returns null
/// (at most `max`); returns them.
fn fill_until_null(size: usize, align: usize, max: usize, into: &mut Vec<Block>) -> usize {
    let mut n = 0;
    while n < max {
        match Block::try_new(size, align) {
            Some(b) => into.push(b),
            None => return n,
        }
        n += 1;
    }
    panic!("{max} blocks of {size} B fit under a {} MiB headroom: the limit does not bite", HEADROOM / MIB);
}

#[test]
fn allocation_fails_cleanly_and_the_heap_recovers() {
    const CASE: &str = "allocation_fails_cleanly_and_the_heap_recovers";
    if !child_passes(CASE) {
        return;
    }
    // Every vector the test needs is allocated before the limit.
    let mut large: Vec<Block> = Vec::with_capacity(1_000);
    let mut small: Vec<Block> = Vec::with_capacity(2_000_000);
    let mut kept: Vec<Block> = Vec::with_capacity(1_000);
    let mut fresh_small: Vec<Block> = Vec::with_capacity(1_000);
    let start = stats();
    limit_address_space();
    huge_requests_fail();

    let n_large = fill_until_null(4 * MIB, 8, 1_000, &mut large);
    assert!(n_large >= 10, "only {n_large} blocks of 4 MiB fit in {} MiB", HEADROOM / MIB);
    let mut n_small = 0;
    // Largest first: each size fills what the larger ones left.
    for (size, align) in [(30_000, 8), (4000, 16), (48, 4096), (24, 8)] {
        n_small += fill_until_null(size, align, 500_000, &mut small);
    }
    let at_limit = stats();
    println!(
        "at the limit: {n_large} large + {n_small} small blocks, {:.1} MiB in use, {:.1} MiB mapped",
        at_limit.bytes_in_use as f64 / MIB as f64,
        at_limit.bytes_mapped as f64 / MIB as f64
    );
    // Still failing, for both kinds, now the arenas are full.
    assert!(Block::try_new(4 * MIB, 8).is_none(), "a large block fits at the limit");
    assert!(Block::try_new(30_000, 8).is_none(), "a 30 KB block fits at the limit");

    // Free every other large block: both kinds are served again.
    for (i, b) in large.drain(..).enumerate() {
        if i % 2 == 0 {
            b.free();
        } else {
            kept.push(b);
        }
    }
    let again = Block::try_new(4 * MIB, 8).expect("a large block after frees");
    for i in 0..1000 {
        fresh_small.push(Block::try_new(16 + i % 2000, 8).expect("a small block after frees"));
    }
    for b in small.iter().step_by(997).chain(&kept) {
        b.check("at the limit");
    }
    again.free();
    fresh_small.drain(..).for_each(Block::free);
    kept.drain(..).for_each(Block::free);
    small.drain(..).for_each(Block::free);

    assert_in_use_back(&stats(), &start, "after freeing everything");
    // A fresh round of work on the same heap.
    huge_requests_fail();
    let n = fill_until_null(4 * MIB, 8, 1_000, &mut large);
    assert!(n + 2 >= n_large, "after recovery only {n} large blocks fit (first time {n_large})");
    large.drain(..).for_each(Block::free);
}

#[test]
fn threads_hitting_the_limit_recover() {
    const CASE: &str = "threads_hitting_the_limit_recover";
    if !child_passes(CASE) {
        return;
    }
    let mut per_thread: Vec<Vec<Block>> = (0..4).map(|_| Vec::with_capacity(400_000)).collect();
    let start = stats();
    limit_address_space();
    // Every thread fills before any frees, and frees before any checks: a
    // thread still filling would otherwise take the memory another thread
    // just freed, and that thread's check would fail for want of memory the
    // test itself holds.
    let filled = std::sync::Barrier::new(per_thread.len());
    let freed = std::sync::Barrier::new(per_thread.len());
    std::thread::scope(|s| {
        for (t, blocks) in per_thread.iter_mut().enumerate() {
            let (filled, freed) = (&filled, &freed);
            s.spawn(move || {
                // Alternate large and small until both fail, so the threads race
                // for the last arenas.
                let mut failures = 0;
                let mut i = 0usize;
                while failures < 2 && blocks.len() < 400_000 {
                    let size = if i % 8 == 0 { 256 << 10 } else { 64 + (i * 40 + t) % 8000 };
                    match Block::try_new(size, 8) {
                        Some(b) => blocks.push(b),
                        None if size > 32 << 10 => failures |= 1,
                        None => failures |= 2,
                    }
                    if failures == 3 {
                        break;
                    }
                    i += 1;
                }
                // Each thread gives back half of its own; the main thread frees
                // the rest after the join (remote frees).
                filled.wait();
                let half = blocks.len() / 2;
                for b in blocks.drain(half..) {
                    b.free();
                }
                freed.wait();
                assert!(Block::try_new(256 << 10, 8).map(Block::free).is_some(), "thread {t}: large after frees");
                assert!(Block::try_new(100, 8).map(Block::free).is_some(), "thread {t}: small after frees");
            });
        }
    });
    // The main thread frees what the workers kept: remote frees into their spans.
    let kept: usize = per_thread.iter().map(Vec::len).sum();
    let at_limit = stats();
    assert!(kept > 0);
    for blocks in &mut per_thread {
        blocks.drain(..).for_each(Block::free);
    }
    assert_in_use_back(&stats(), &start, "after freeing everything");
    println!(
        "four threads hit the limit ({:.1} MiB mapped) and recovered; {kept} blocks were freed by the main thread",
        at_limit.bytes_mapped as f64 / MIB as f64
    );
}

/// Through the global allocator: a failed request aborts with std's message.
fn alloc_error_case(case: &str, expect: &str, body: fn()) {
    if is_child(case) {
        limit_address_space();
        body();
        panic!("{case}: the allocation did not fail");
    }
    let c = run_child(case);
    assert_eq!(c.status.signal(), Some(SIGABRT), "{case}: the child must abort, got {:?}", c.status);
    assert!(c.output.contains(expect), "{case}: no {expect:?} in the child's output");
}

#[test]
fn global_allocator_reports_alloc_error_large() {
    alloc_error_case(
        "global_allocator_reports_alloc_error_large",
        "memory allocation of 1073741824 bytes failed",
        || {
            let v: Vec<u8> = Vec::with_capacity(1 << 30);
            std::hint::black_box(&v);
        },
    );
}

#[test]
fn global_allocator_reports_alloc_error_small() {
    alloc_error_case("global_allocator_reports_alloc_error_small", "memory allocation of 4096 bytes failed", || {
        let mut keep: Vec<Box<[u8; 4096]>> = Vec::with_capacity(1 << 20);
        for _ in 0..1 << 20 {
            keep.push(Box::new([7u8; 4096]));
        }
        std::hint::black_box(&keep);
    });
}
