//! Memory returned under churn, with `GoMalloc` as the global allocator and the
//! background scavenger at its default delay (500 ms):
//!
//! - `rss_falls_to_live_size_after_a_peak`: a long-lived set of ~24 MiB, then a
//!   peak of ~400 MiB (small objects of every size up to 32 KiB and large blocks,
//!   every page touched, allocated on two threads and freed on the main one), then a
//!   low-level workload that keeps ~8 MiB live and keeps allocating and freeing.
//!   Without any `collect()`, RSS must fall to at most baseline + live × 1.2 +
//!   `METADATA_ALLOWANCE` within 2 s of the last free of the peak (the spec's
//!   "within 20 % of its live size within a second or two"). The peak is temporary
//!   data freed in full, and the long-lived set was allocated before it: an allocator
//!   that does not move objects cannot give back a span that still holds one live
//!   object, so a test keeping a random 10 % of the peak would measure fragmentation,
//!   not the scavenger.
//! - `steady_workload_does_not_purge`: a workload that allocates the same ~64 MiB
//!   of large and small blocks and frees them, round after round (a 20 ms pause
//!   between rounds), 40 rounds after a 1.6 s warm-up: its free pages are reused
//!   long before the delay, so the background scavenger releases (almost)
//!   nothing: at most `STEADY_MAX_PURGES` `madvise` calls and `STEADY_MAX_PURGED`
//!   bytes. `synchronous_policy_churns_on_the_same_workload` runs the same workload
//!   with `GOMALLOC_PURGE_DELAY_MS=-1` (no background thread, the synchronous
//!   policy) and checks that it does purge on every round, which shows that the
//!   steady test measures something.
//! - `forked_child_gets_its_own_scavenger`: a child forked while the parent's
//!   scavenger thread runs starts its own, and its freed pages are purged.
//!
//! Each case runs in a child process of its own (this binary re-executed with
//! `--exact <case>`), so RSS is not disturbed by the other cases.

mod common;

use gomalloc::{stats, GoMalloc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::alloc::{alloc, dealloc, Layout};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

const MIB: usize = 1 << 20;
/// Fixed allowance over baseline + 1.2 × live: span records and arena headers
/// left from the peak (about 1.5 MiB for ~400 MiB of spans), the thread cache's
/// current spans (one per class used) and the RSS of the threads and pages the
/// test itself touches.
const METADATA_ALLOWANCE: usize = 8 * MIB;
/// The deadline for RSS to fall.
const DEADLINE: Duration = Duration::from_secs(2);
/// Warm-up of the steady workload: three periods of the default delay, so the
/// pages the first round used and later rounds do not are released before the
/// measurement.
const STEADY_WARMUP: Duration = Duration::from_millis(1600);
/// `madvise` calls the steady workload may cause in 40 rounds after its warm-up
/// (it allocates 2.5 GiB in them): a few, when the spans handed back by the
/// central lists at a tick shift the layout a little.
const STEADY_MAX_PURGES: usize = 8;
/// Bytes it may purge in those rounds: less than one round's allocation.
const STEADY_MAX_PURGED: usize = 16 * MIB;
const CHILD_VAR: &str = "GOMALLOC_RSS_CHURN_CHILD";

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).expect("statm field 2").parse().expect("number");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

/// Runs `case` in a child process with `env` (and no `GOMALLOC_*` variable of the
/// caller's), and fails if it fails; a no-op in the child itself.
fn in_child(case: &str, env: &[(&str, &str)]) {
    if std::env::var_os(CHILD_VAR).is_some() {
        return;
    }
    let c = common::run_case_in_child(case, CHILD_VAR, env, Duration::from_secs(300));
    assert!(c.status.success(), "child {case} failed: {:?}", c.status);
    assert!(c.output.contains("1 passed"), "child {case} did not run the case");
}

fn is_child(case: &str) -> bool {
    std::env::var(CHILD_VAR).is_ok_and(|v| v == case)
}

/// A block allocated through the global allocator and filled with a tag.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a `Block` is the only handle to its allocation; freeing from another
// thread is allowed by `GlobalAlloc`.
unsafe impl Send for Block {}

impl Block {
    fn new(size: usize, tag: u8) -> Block {
        let layout = Layout::from_size_align(size, 8).expect("layout");
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null(), "allocation of {size} bytes failed");
        // SAFETY: `ptr` holds `size` bytes; every page is touched.
        unsafe { ptr.write_bytes(tag, size) };
        Block { ptr, layout }
    }

    fn free(self, tag: u8) {
        let size = self.layout.size();
        for off in [0, size / 2, size - 1] {
            // SAFETY: inside the live block.
            assert_eq!(unsafe { *self.ptr.add(off) }, tag, "block content changed");
        }
        // SAFETY: allocated with this layout, freed once.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// Sizes of every kind: 60 % small (8 B–1 KiB), 30 % medium (1–32 KiB), 10 %
/// large (32 KiB–`large_max`).
fn size(rng: &mut SmallRng, large_max: usize) -> usize {
    match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(8..=1024),
        60..=89 => rng.gen_range(1025..=32 << 10),
        _ => rng.gen_range((32 << 10) + 1..=large_max),
    }
}

#[test]
fn rss_falls_to_live_size_after_a_peak() {
    const CASE: &str = "rss_falls_to_live_size_after_a_peak";
    in_child(CASE, &[]);
    if !is_child(CASE) {
        return;
    }
    let mut rng = SmallRng::seed_from_u64(0xC4A2);
    let mut long_lived: Vec<Block> = Vec::with_capacity(100_000);
    let mut window: Vec<(Block, u8)> = Vec::with_capacity(10_000);
    let baseline = rss_bytes();
    let start_stats = stats();

    let mut long_bytes = 0;
    while long_bytes < 24 * MIB {
        let b = Block::new(size(&mut rng, 256 << 10), 0x11);
        long_bytes += b.layout.size();
        long_lived.push(b);
    }

    // The peak: two threads allocate ~200 MiB each; the main thread frees it all.
    let peak_blocks: Vec<Vec<Block>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(0x9EA7 + t);
                    let (mut v, mut bytes) = (Vec::with_capacity(400_000), 0);
                    while bytes < 200 * MIB {
                        let b = Block::new(size(&mut rng, 8 * MIB), 0x22);
                        bytes += b.layout.size();
                        v.push(b);
                    }
                    v
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("peak thread")).collect()
    });
    let peak_bytes: usize = peak_blocks.iter().flatten().map(|b| b.layout.size()).sum();
    let peak_rss = rss_bytes();
    for b in peak_blocks.into_iter().flatten() {
        b.free(0x22);
    }
    let freed_at = Instant::now();
    let after_free = stats();
    let rss_after_free = rss_bytes();

    // The low level: ~8 MiB live, each step replacing a random block.
    let mut window_bytes = 0;
    while window_bytes < 8 * MIB {
        let b = Block::new(size(&mut rng, 256 << 10), 0x33);
        window_bytes += b.layout.size();
        window.push((b, 0x33));
    }
    let mut reached = None;
    let mut last = (0, 0);
    let mut step = 0u32;
    while freed_at.elapsed() < DEADLINE + Duration::from_millis(500) {
        for _ in 0..200 {
            step += 1;
            let i = rng.gen_range(0..window.len());
            let tag = step as u8;
            let new = Block::new(size(&mut rng, 256 << 10), tag);
            window_bytes += new.layout.size();
            let (old, old_tag) = std::mem::replace(&mut window[i], (new, tag));
            window_bytes -= old.layout.size();
            old.free(old_tag);
        }
        let live = long_bytes + window_bytes;
        let rss = rss_bytes();
        last = (rss, live);
        if reached.is_none() && rss <= baseline + live + live / 5 + METADATA_ALLOWANCE {
            reached = Some(freed_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let end = stats();
    let (rss, live) = last;
    println!("baseline RSS {}, long-lived {}, peak allocated {}", mib(baseline), mib(long_bytes), mib(peak_bytes));
    println!("RSS at the peak {}, right after the frees {}", mib(peak_rss), mib(rss_after_free));
    println!(
        "at the end: RSS {} for {} live (limit baseline + 1.2 × live + {} = {}); reached after {:?}",
        mib(rss),
        mib(live),
        mib(METADATA_ALLOWANCE),
        mib(baseline + live + live / 5 + METADATA_ALLOWANCE),
        reached
    );
    println!(
        "purges {} → {} → {}, purged {} → {} → {}",
        start_stats.purges,
        after_free.purges,
        end.purges,
        mib(start_stats.bytes_purged),
        mib(after_free.bytes_purged),
        mib(end.bytes_purged)
    );
    assert!(peak_rss >= baseline + peak_bytes * 9 / 10, "the peak was not resident");
    let reached = reached.unwrap_or_else(|| {
        panic!(
            "RSS {} never fell within 20 % of live {} + {} in {DEADLINE:?}",
            mib(rss),
            mib(live),
            mib(METADATA_ALLOWANCE)
        )
    });
    assert!(reached <= DEADLINE, "RSS fell only after {reached:?}");
    assert!(end.bytes_purged - start_stats.bytes_purged >= peak_bytes * 8 / 10, "the peak was not purged");
    for b in long_lived {
        b.free(0x11);
    }
    for (b, tag) in window {
        b.free(tag);
    }
}

/// The steady workload: round after round, allocate the same ~64 MiB (half the
/// blocks 2 MiB, past the large-object cache; the others up to 64 KiB), touch it,
/// free it, pause 20 ms. The first rounds run for `warmup` (address-ordered first fit
/// settles: the second arena, mapped below the first, takes the blocks from the
/// second round on, so the first round's pages in the first arena fall idle and are
/// released once). Returns the `madvise` calls and bytes purged during the next
/// `rounds` rounds.
fn oscillate(warmup: Duration, rounds: u32) -> (usize, usize) {
    let mut live: Vec<Block> = Vec::with_capacity(1_000);
    let start = Instant::now();
    let mut measured = None;
    let mut round = 0u32;
    loop {
        if measured.is_none() && start.elapsed() >= warmup {
            measured = Some((round, stats()));
        }
        if let Some((first, _)) = measured {
            if round == first + rounds {
                break;
            }
        }
        // The same sizes in the same order every round: the same work repeated.
        let mut rng = SmallRng::seed_from_u64(0x57EAD);
        let tag = round as u8;
        let mut bytes = 0;
        while bytes < 64 * MIB {
            let sz = if rng.gen_bool(0.5) { 2 * MIB } else { size(&mut rng, 64 << 10) };
            live.push(Block::new(sz, tag));
            bytes += sz;
        }
        for b in live.drain(..) {
            b.free(tag);
        }
        std::thread::sleep(Duration::from_millis(20));
        round += 1;
    }
    let (_, before) = measured.expect("warm-up ended");
    let after = stats();
    (after.purges - before.purges, after.bytes_purged - before.bytes_purged)
}

#[test]
fn steady_workload_does_not_purge() {
    const CASE: &str = "steady_workload_does_not_purge";
    in_child(CASE, &[]);
    if !is_child(CASE) {
        return;
    }
    assert_eq!(gomalloc::purge_delay_ms(), gomalloc::scavenger::DEFAULT_DELAY_MS);
    let (purges, bytes) = oscillate(STEADY_WARMUP, 40);
    println!("steady workload, 40 rounds of 64 MiB after the warm-up: {purges} purges, {}", mib(bytes));
    println!("{}", stats());
    assert!(purges <= STEADY_MAX_PURGES, "{purges} madvise calls during a steady workload");
    assert!(bytes <= STEADY_MAX_PURGED, "{} purged during a steady workload", mib(bytes));
}

#[test]
fn synchronous_policy_churns_on_the_same_workload() {
    const CASE: &str = "synchronous_policy_churns_on_the_same_workload";
    in_child(CASE, &[("GOMALLOC_PURGE_DELAY_MS", "-1")]);
    if !is_child(CASE) {
        return;
    }
    let (purges, bytes) = oscillate(STEADY_WARMUP, 40);
    println!("steady workload without the background scavenger, 40 rounds: {purges} purges, {}", mib(bytes));
    assert_eq!(gomalloc::purge_delay_ms(), -1);
    assert!(purges >= 40, "the synchronous policy released memory on fewer than every round ({purges})");
    assert!(bytes > 40 * STEADY_MAX_PURGED, "the synchronous policy purged only {}", mib(bytes));
}

/// Frees 64 MiB of 2 MiB blocks (past the large-object cache) and waits up to
/// `DEADLINE` + 1 s for the purge count to grow; true if it did.
fn purges_after_freeing_64_mib() -> bool {
    let before = stats().purges;
    let blocks: Vec<Block> = (0..32).map(|_| Block::new(2 * MIB, 0x44)).collect();
    for b in blocks {
        b.free(0x44);
    }
    let start = Instant::now();
    while start.elapsed() < DEADLINE + Duration::from_secs(1) {
        if stats().purges > before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child forked while the scavenger thread runs has no such thread: it must
/// start its own (the fork handler forgets the parent's), or nothing would
/// ever purge its free pages (a running thread turns the synchronous policy
/// off).
#[test]
fn forked_child_gets_its_own_scavenger() {
    const CASE: &str = "forked_child_gets_its_own_scavenger";
    in_child(CASE, &[]);
    if !is_child(CASE) {
        return;
    }
    assert!(purges_after_freeing_64_mib(), "the parent's scavenger did not purge");
    assert!(gomalloc::scavenger_running(), "no scavenger thread in the parent");
    // SAFETY: the child only allocates, frees, sleeps and leaves with `_exit`,
    // never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let ok = purges_after_freeing_64_mib() && gomalloc::scavenger_running();
        // SAFETY: ends the child without running anything of the parent's.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child's free pages were not purged (status {status})"
    );
}
