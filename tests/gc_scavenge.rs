//! The page heap's scavenger and GC heaps: the pages a heap frees at a sweep
//! are the ones it refills before its next cycle, so the scavenger keeps
//! them (up to the goal plus 10%) however long they stay free, and a heap in
//! its steady state does not fault its own pages back in every cycle. When
//! the heap goes, its reservation goes with it and the pages are released.
//!
//! One test in its own process: it sets the process-wide purge delay to 0
//! (release every free page at each 10 ms tick), the setting under which a
//! scavenger that ignored the GC heap would release the most.

use gomalloc::gc::{GcConfig, GcVec, Heap, Root, Trace};
use std::time::{Duration, Instant};

#[derive(Trace)]
struct Blob {
    _payload: [u64; 31],
}

#[derive(Trace)]
struct Keep<'gc> {
    items: GcVec<'gc, Blob>,
}

const MIB: usize = 1 << 20;
/// Bytes per `Blob` object (its size class).
const BLOB: usize = 256;

/// Minor page faults taken by the calling thread (the only mutator; the
/// collector's own faults, populating pages ahead of the mutator, are not
/// the mutator's).
fn minor_faults() -> i64 {
    // SAFETY: an all-zero `rusage` is a valid value to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for getrusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt
}

/// Allocates garbage in short scopes until `cycles` more automatic cycles
/// have completed; returns the bytes allocated.
fn churn_cycles(heap: &Heap, cycles: u64) -> usize {
    let end = heap.stats().cycles + cycles;
    let mut bytes = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while heap.stats().cycles < end {
        assert!(Instant::now() < deadline, "no automatic cycle in 2 minutes");
        heap.enter(|m| {
            for _ in 0..1024 {
                m.alloc(Blob { _payload: [3; 31] });
            }
        });
        bytes += 1024 * BLOB;
        // Give the scavenger's 10 ms ticks a chance to run between scopes,
        // as they would in a program that does anything else.
        if bytes % (4 * MIB) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    bytes
}

#[test]
fn a_collected_heap_refills_resident_pages_and_releases_them_when_dropped() {
    gomalloc::set_purge_delay_ms(0);
    let h = Heap::with_config(GcConfig { gc_percent: 100, memory_limit: usize::MAX, trace: false });
    // 32 MiB live: a goal of 64 MiB, so every cycle frees and refills about
    // 32 MiB of spans (8192 pages of 4 KiB).
    let root: Root<Keep<'static>> = h.enter(|m| m.root(m.alloc(Keep { items: GcVec::new() })));
    for _ in 0..(32 * MIB / BLOB) / 4096 {
        h.enter(|m| {
            let k = root.get(m);
            for _ in 0..4096 {
                k.items.push(m, Some(m.alloc(Blob { _payload: [7; 31] })));
            }
        });
    }
    // Warm up: the heap reaches its goal and its steady state.
    churn_cycles(&h, 3);
    let released_before = gomalloc::stats().bytes_purged;
    let faults_before = minor_faults();
    let cycles = 6;
    let churned = churn_cycles(&h, cycles);
    let faults = minor_faults() - faults_before;
    let released = gomalloc::stats().bytes_purged - released_before;
    // Each cycle turns over thousands of pages. Releasing them at each tick
    // makes the refills fault them back: 16 599 and 18 745 faults in the
    // mutator over the 6 cycles with the floor forced to 0; about 8 000 (in
    // the whole process) with the floor but plain first fit, which took
    // released low pages before resident higher ones; 6 to 35 with both and
    // the collector populating the reservation. Allow an eighth of the
    // turnover for noise.
    let turnover_pages = churned / 4096;
    eprintln!(
        "{cycles} cycles: churned {} MiB ({turnover_pages} pages), {faults} minor faults, {} MiB released",
        churned / MIB,
        released / MIB
    );
    assert!(turnover_pages as u64 >= cycles * 2048, "the churn was too small to test anything");
    assert!(
        (faults as usize) < turnover_pages / 8,
        "{faults} page faults while refilling {turnover_pages} pages: freed GC pages were released and faulted back"
    );

    // Dropping the heap drops its reservation: the scavenger releases its
    // pages (delay 0: within a few ticks).
    let retained = gomalloc::stats().bytes_free_retained;
    drop(root);
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = gomalloc::stats().bytes_free_retained;
        if now < 8 * MIB {
            break;
        }
        assert!(Instant::now() < deadline, "{} MiB still retained 10 s after the heap was dropped", now / MIB);
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("retained {} MiB before the drop", retained / MIB);
}
