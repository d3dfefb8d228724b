//! Model 6, the background scavenger: its step releases page runs while other
//! threads allocate and free.
//!
//! - `aged_release_races_alloc_free` (page heap): run Q (2 pages) was freed
//!   and has been through one scavenger step (so it is *aged*), run R (1 page,
//!   marked) is held. Thread A checks R's mark, frees R, then allocates a page
//!   S (first fit: one of Q's pages) and marks it, while the scavenger thread
//!   runs one step (`MHeap::scavenge_aged(false)`).
//! - `released_run_is_not_reallocated_while_dropped` (page heap): aged run Q
//!   (2 pages) is free; thread A allocates a 2-page span S and marks it while
//!   the scavenger thread runs one step, which takes Q out of the free map,
//!   `madvise`s it with the heap lock dropped, and puts it back clean.
//! - `tick_races_large_and_small_frees` (whole allocator): a mutator frees a
//!   large object (into the large-object cache) and a small one (emptying its
//!   span, which the central list keeps), then allocates both again, while the
//!   scavenger thread runs one `Allocator::scavenge_tick` (which hands the
//!   cached spans back to the heap and releases aged pages).
//!
//! Invariants, in every interleaving:
//! - the scavenger never releases a page in use: every held block keeps its
//!   mark (a released page would read 0) and each block's uses are ordered
//!   with its previous user's (`UserData` cells);
//! - a page freed since the previous step is never released by the next one
//!   (what spares a steady workload): after the heap model, R is still the one
//!   dirty free page, or in use by S (which takes a dirty run first, so R once
//!   the step released Q), whatever the order of its free and the step; Q's
//!   pages that S did not take were released;
//! - nothing is lost: after the threads join, two more steps release every
//!   free page (`dirty_free_pages == 0`), and once everything is freed no page
//!   is in use and the counters add up.
//!
//! Mutations tried (one at a time, in the working tree, then reverted):
//! - `take_aged_run` leaving the run in the free map while it is released
//!   without the lock: `released_run_is_not_reallocated_while_dropped` fails
//!   with "S after the step: a page in use was released to the OS" (S was
//!   made of Q by first fit and zeroed by the step's `madvise`).
//! - (When the step still held the lock across `madvise`.)
//!   `MHeap::scavenge_aged` finding an aged run under the heap lock but
//!   `madvise`-ing it after unlocking (then clearing its dirty bits and
//!   updating the counters under the lock again), the shortcut of keeping
//!   system calls out of the lock: `aged_release_races_alloc_free` fails with
//!   "R was freed since the last step, yet released" (left 0, right 1): A
//!   freed R and took pages between the two lock sections, and the step's
//!   stale view of the run cleared dirty bits and counters that were no longer
//!   its to clear. (Run before the page heap preferred dirty runs, when S
//!   always took Q's first page; not re-run since.)
//! - `HeapInner::release_pages` not marking freed pages fresh: the same model
//!   fails before its threads start, "Q was freed since the last step:
//!   spared" (the step released Q at once: the ageing is gone).
#![cfg(gomalloc_loom)]

use gomalloc::malloc::Allocator;
use gomalloc::mheap::MHeap;
use gomalloc::sizeclass::PAGE_SIZE;
use gomalloc::span::Span;
use gomalloc_loom_tests::{alloc_use, builder, span_base, use_free, Block, UserData};
use loom::sync::Arc;
use loom::thread;

/// A span record handed between model threads.
#[derive(Clone, Copy)]
struct Run(*mut Span);
// SAFETY: span records are heap metadata, not tied to a thread; the model
// hands each run to one thread at a time.
unsafe impl Send for Run {}

fn base(r: Run) -> usize {
    // SAFETY: the run is live while the model holds it.
    unsafe { (*r.0).base }
}

fn mark(r: Run, data: &UserData, m: u64) {
    data.touch(base(r));
    // SAFETY: the first page of a run this thread holds.
    unsafe { (base(r) as *mut u64).write(m) };
}

fn check(r: Run, data: &UserData, m: u64, what: &str) {
    // SAFETY: as above.
    let got = unsafe { (base(r) as *const u64).read() };
    assert_ne!(got, 0, "{what}: a page in use was released to the OS");
    assert_eq!(got, m, "{what}: page handed to two users");
    data.touch(base(r));
}

/// Runs `take` (which returns a new run S) on thread A, marks S there, while
/// the scavenger thread runs one step; checks S's mark after both joined.
/// Returns S and the pages the step released.
fn race_with_step(
    heap: &Arc<MHeap>,
    data: &Arc<UserData>,
    take: impl FnOnce(&MHeap, &UserData) -> Run + Send + 'static,
) -> (Run, usize) {
    let a = {
        let (heap, data) = (heap.clone(), data.clone());
        thread::spawn(move || {
            let s = take(&heap, &data);
            mark(s, &data, 0x53);
            s
        })
    };
    let scavenger = {
        let heap = heap.clone();
        thread::spawn(move || heap.scavenge_aged(false))
    };
    let s = a.join().unwrap();
    let (released, _) = scavenger.join().unwrap();
    check(s, data, 0x53, "S after the step");
    (s, released)
}

#[test]
fn aged_release_races_alloc_free() {
    builder().check(|| {
        let heap = Arc::new(MHeap::new());
        let q = Run(heap.alloc_span(2, 1, 0));
        let r = Run(heap.alloc_span(1, 1, 0));
        let data = Arc::new(UserData::new(base(q), 3, &[], 0));
        mark(q, &data, 0x51);
        mark(r, &data, 0x52);
        // SAFETY: `q` is not used again.
        unsafe { heap.free_span(q.0) };
        assert_eq!(heap.scavenge_aged(false), (0, 2), "Q was freed since the last step: spared");
        let before = heap.counters();
        // R's record is recycled once R is freed: its address, read now.
        let r_base = base(r);

        let (s, released) = race_with_step(&heap, &data, move |heap, data| {
            check(r, data, 0x52, "R before its free");
            // SAFETY: `r` is live and not used again.
            unsafe { heap.free_span(r.0) };
            Run(heap.alloc_span(1, 1, 0))
        });
        let h = heap.counters();
        // S takes Q's first page (still dirty) or, once the step released
        // Q, R's (the page heap prefers a dirty run): R is in use by S or
        // still dirty, never released.
        let r_free = usize::from(base(s) != r_base);
        assert_eq!(h.dirty_free_pages, r_free, "R was freed since the last step, yet released");
        assert!((1..=2).contains(&released), "released {released} of Q's pages");
        assert_eq!(h.released_total - before.released_total, released * PAGE_SIZE);
        assert_eq!(h.pages_in_use, 1, "S alone is in use");
        // R is released by the next step (A freed it before the step ran) or
        // the one after (A freed it after the step cleared the fresh marks).
        heap.scavenge_aged(false);
        heap.scavenge_aged(false);
        assert_eq!(heap.counters().dirty_free_pages, 0, "R is released within two steps");
        // SAFETY: `s` is not used again.
        unsafe { heap.free_span(s.0) };
        heap.scavenge_aged(false);
        heap.scavenge_aged(false);
        let h = heap.counters();
        assert_eq!((h.pages_in_use, h.dirty_free_pages), (0, 0), "every page free and released");
        assert_eq!(h.free_pages, before.free_pages + 1, "free pages add up: R back, S freed");
    });
}

#[test]
fn released_run_is_not_reallocated_while_dropped() {
    builder().check(|| {
        let heap = Arc::new(MHeap::new());
        let q = Run(heap.alloc_span(2, 1, 0));
        let q_base = base(q);
        // Cells for Q's pages and the two after them (where S lands when Q
        // is being released).
        let data = Arc::new(UserData::new(q_base, 4, &[], 0));
        mark(q, &data, 0x51);
        // SAFETY: `q` is not used again.
        unsafe { heap.free_span(q.0) };
        assert_eq!(heap.scavenge_aged(false), (0, 2), "Q was freed since the last step: spared");
        let before = heap.counters();

        // Two pages: a dirty run that fits is Q's, else first fit.
        let (s, released) = race_with_step(&heap, &data, |heap, _| Run(heap.alloc_span(2, 1, 0)));
        // S took Q, dirty, before the step reached it (nothing released);
        // or the step took Q first (Q released whole) and S went past it,
        // or took Q back clean after the step put it back.
        let s_took_q = base(s) == q_base;
        assert!(released == 2 || (released == 0 && s_took_q), "released {released}, S at Q: {s_took_q}");
        let h = heap.counters();
        assert_eq!(h.released_total - before.released_total, released * PAGE_SIZE);
        assert_eq!(h.pages_in_use, 2, "S alone is in use");
        assert_eq!(h.dirty_free_pages, 0, "Q is in use or released");
        assert_eq!(h.free_pages, before.free_pages - 2, "free pages add up");
        // SAFETY: `s` is not used again.
        unsafe { heap.free_span(s.0) };
    });
}

/// A large object: over 32 KiB, at most 1 MiB, so the large-object cache
/// keeps it when freed.
const LARGE: usize = 5 * PAGE_SIZE;
const SMALL: usize = 64;

#[test]
fn tick_races_large_and_small_frees() {
    builder().check(|| {
        let a = Arc::new(Allocator::new(None));
        let cache = a.new_cache();
        // SAFETY: `cache` is used by one thread at a time (here, then by the
        // mutator alone), and every block is freed once.
        let (big, small) = unsafe { (a.alloc(cache, LARGE, 8), a.alloc(cache, SMALL, 8)) };
        assert!(!big.is_null() && !small.is_null());
        let first = span_base(&a, Block(big)).min(span_base(&a, Block(small)));
        // Cells for every page the model can hand out, and the small slots.
        let data = Arc::new(UserData::new(first, 16, &[SMALL], 3));
        data.touch(big as usize);
        data.touch(small as usize);
        let cache_addr = cache as usize;

        let mutator = {
            let (a, data) = (a.clone(), data.clone());
            let (big, small) = (Block(big), Block(small));
            thread::spawn(move || {
                let cache = cache_addr as *mut gomalloc::mcache::MCache;
                // SAFETY: the mutator alone uses `cache` now, and its own
                // `fresh`; each block is freed once.
                unsafe {
                    use_free(&a, cache, big, LARGE, &data);
                    use_free(&a, cache, small, SMALL, &data);
                    // Give the (now empty) small span to the central list, which
                    // keeps it: the step may hand it back to the heap.
                    a.caches().destroy(&a, cache);
                    let fresh = a.new_cache();
                    let big2 = Block(a.alloc(fresh, LARGE, 8));
                    assert!(!big2.0.is_null());
                    data.touch(big2.addr());
                    let small2 = alloc_use(&a, fresh, SMALL, &data);
                    (big2, small2, fresh as usize)
                }
            })
        };
        let scavenger = {
            let a = a.clone();
            thread::spawn(move || a.scavenge_tick())
        };
        let (big2, small2, fresh) = mutator.join().unwrap();
        scavenger.join().unwrap();
        let fresh = fresh as *mut gomalloc::mcache::MCache;
        // SAFETY: the mutator is done; its blocks and cache are this thread's now.
        unsafe {
            use_free(&a, fresh, big2, LARGE, &data);
            use_free(&a, fresh, small2, SMALL, &data);
            a.caches().destroy(&a, fresh);
        }
        // The first step hands the cached spans back (freshly freed pages),
        // the second releases them: nothing may be left after two.
        a.scavenge_tick();
        a.scavenge_tick();
        let h = a.heap().counters();
        assert_eq!(h.pages_in_use, 0, "pages still in use after every block was freed");
        assert_eq!(h.dirty_free_pages, 0, "free pages not released after two steps");
    });
}
