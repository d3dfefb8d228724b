//! Model 4, thread exit: a thread's cache is flushed and destroyed
//! (`caches().destroy`) while other threads free objects that belong to its
//! spans, and the exiting thread then keeps allocating and freeing through
//! the shared dead cache (as thread-local destructors that run after the
//! cache's own do).
//!
//! The exiting thread (the model's main thread) owns a span S whose three
//! objects are out: two with a thread that frees them as one pending chain
//! and then exits itself (destroying its own cache publishes the chain),
//! one with a thread that frees it through the dead cache (published at
//! once). The exiting cache also holds a pending free of its own, into
//! another span R, which its flush publishes: that free empties R and
//! claims it. Whichever of the flush and the frees sees S completely free
//! keeps it on the partial list, or, when the class already keeps
//! `KEEP_EMPTY` (2) empty spans, returns its pages to the heap; the exiting
//! thread's next allocation (another size class) may then be cut from those
//! very pages.
//!
//! Invariants: nothing lost, nothing freed twice: after the model, S and R
//! are where the protocol says (kept: both on the partial list; returned:
//! neither in a span any more), `pages_in_use` and `central(class).len()`
//! agree, a fresh cache gets back exactly the free slots of every span and
//! then no page stays in use (`audit_class`); and each block's (and page's)
//! previous user's accesses happen-before its next user's (`UserData`).
//!
//! History: `exit_races_frees_span_returned_to_heap` found a real bug in
//! `MCentral::release`, which decided that S was completely free and
//! returned it to the heap from a `remote` value read Relaxed (its first
//! load, or the failure value of its CAS after a push landed), so nothing
//! ordered the frees' writes before the pages' next use (see "The bug model
//! 4 found" in `loom-tests/README.md`). Fixed by Acquire on both; both models
//! pass on the code as committed.
//!
//! Mutations tried (on d19e4b4, one at a time, both models run at
//! `LOOM_MAX_PREEMPTIONS=2`, reverted; none committed):
//! - `MCentral::release`'s initial `remote` load Acquire → Relaxed (the fix
//!   undone, half one): `exit_races_frees_span_returned_to_heap` fails,
//!   "Causality violation: Concurrent write accesses to `UnsafeCell`"
//!   (`UserData::touch`, as in the original bug); `exit_races_frees_span_kept`
//!   passes (S stays kept, so no allocation reuses its pages while the
//!   freeing threads run).
//! - `MCentral::release`'s CAS failure ordering Acquire → Relaxed (half
//!   two): the same, `..._returned_to_heap` fails with the same causality
//!   violation, `..._kept` passes.
//! - `MCentral::release`'s CAS replaced by a plain Release store of the new
//!   word (no retry when a push lands between the load and the store):
//!   `exit_races_frees_span_kept` fails, "a kept span is on the partial
//!   list" (left 2, right 1: S left tagged `FULL`, the free that landed
//!   between the load and the store overwritten).
//! - `MCentral::release` without the `w.count() == used` test (any span
//!   goes back to the heap once two are kept), each model run alone:
//!   `..._returned_to_heap` aborts the process with the allocator's own
//!   check, "gomalloc: invalid free of 0x…: not a live block (already freed,
//!   or never allocated)"; `..._kept` passes (no span kept before S).
//! - `MCache::flush` without `publish_pending` (the exiting cache's pending
//!   free of `y` never published): both fail, deterministically:
//!   `..._kept` "count 1 frozen 3" (R not completely free), `..._returned_to_heap`
//!   "S and R went back to the heap" (left 4, right 2).
//! - `push_remote_chain` never claiming a `PARTIAL` span: `..._kept` fails,
//!   "a freed block never came back (lost)" (left 6, right 9) in the audit;
//!   `..._returned_to_heap`: "S and R went back to the heap" (left 4, right 2).
//! - `MCentral::on_claimed` without the `l.empty >= KEEP_EMPTY` test (a
//!   claimed completely free span always goes back to the heap):
//!   `..._kept` fails at the other class's central length (left 0, right 1:
//!   its span, emptied by a dead-cache free that claims it, went to the heap).
#![cfg(gomalloc_loom)]

use gomalloc::malloc::Allocator;
use gomalloc::mcache::{CacheKind, MCache};
use gomalloc::sizeclass::size_to_class;
use gomalloc::span::tag;
use gomalloc_loom_tests::{
    alloc_use, audit_class, builder, first_block, free_published, remote_word, span_base, span_of, use_free, Block,
};
use loom::sync::Arc;
use loom::thread;

const SIZE: usize = 64;
/// The size class the exiting thread allocates after its cache is gone.
const OTHER: usize = 128;

fn exit_races_frees(kept_already: usize) {
    builder().check(move || {
        let a = Arc::new(Allocator::new(None));
        let class = size_to_class(SIZE);
        // The exiting thread's cache and its span S, all three objects out.
        let exiting = a.new_cache();
        // SAFETY: `exiting` is this thread's cache.
        let (data, first) = unsafe { first_block(&a, exiting, SIZE, 6, &[SIZE, OTHER]) };
        let data = Arc::new(data);
        // SAFETY: as above.
        let p = [first, unsafe { alloc_use(&a, exiting, SIZE, &data) }, unsafe { alloc_use(&a, exiting, SIZE, &data) }];
        let s = span_of(&a, first);
        let s_base = span_base(&a, first);
        // Another thread's cache takes span R and one object `y` of it.
        let other = a.new_cache();
        // SAFETY: `other` stands for another thread's cache; it is used here
        // only, before any model thread starts.
        let y = unsafe { alloc_use(&a, other, SIZE, &data) };
        let r = span_of(&a, y);
        assert_ne!(r, s);
        // Completely free spans already kept by the class.
        let keep: Vec<*mut MCache> = (0..kept_already).map(|_| a.new_cache()).collect();
        // SAFETY: the caches are used on this thread only, before the model
        // threads start; each block is freed once by its own cache.
        unsafe {
            let blocks: Vec<Block> = keep.iter().map(|&c| alloc_use(&a, c, SIZE, &data)).collect();
            for (&c, &b) in keep.iter().zip(&blocks) {
                use_free(&a, c, b, SIZE, &data);
                a.caches().destroy(&a, c);
            }
            // R goes to the partial list with `y` out; the exiting cache's
            // free of `y` waits in its pending chain.
            a.caches().destroy(&a, other);
            use_free(&a, exiting, y, SIZE, &data);
        }
        assert_eq!(a.central(class).len(), kept_already + 1, "setup: the kept spans and R");

        let chain = {
            let (a, data, b0, b1) = (a.clone(), data.clone(), p[0], p[1]);
            thread::spawn(move || {
                let c = a.new_cache();
                // SAFETY: `c` is this thread's cache, not used after
                // `destroy`, which publishes the two frees as one chain.
                unsafe {
                    use_free(&a, c, b0, SIZE, &data);
                    use_free(&a, c, b1, SIZE, &data);
                    a.caches().destroy(&a, c);
                }
            })
        };
        let single = {
            let (a, data, b2) = (a.clone(), data.clone(), p[2]);
            // SAFETY: `b2` is live, given to this thread, freed once.
            thread::spawn(move || unsafe { free_published(&a, b2, SIZE, &data) })
        };
        // The main thread exits: its cache is flushed (publishing the free
        // of `y`, handing S to central) and destroyed. Its later
        // allocations go through the dead cache, uncached.
        let mut dead = MCache::new(a.sentinel(), CacheKind::Dead);
        // SAFETY: `exiting` is this thread's cache and is not used again;
        // the dead cache is shared and never written; each block is freed once.
        unsafe {
            a.caches().destroy(&a, exiting);
            let q = [alloc_use(&a, &mut dead, OTHER, &data), alloc_use(&a, &mut dead, OTHER, &data)];
            use_free(&a, &mut dead, q[0], OTHER, &data);
            use_free(&a, &mut dead, q[1], OTHER, &data);
        }
        chain.join().unwrap();
        single.join().unwrap();

        let h = a.heap().counters();
        // One span of the other class, completely free, kept by its central.
        assert_eq!(a.central(size_to_class(OTHER)).len(), 1);
        if kept_already < 2 {
            assert_eq!(a.central(class).len(), kept_already + 2, "S and R kept, completely free");
            for span in [s, r] {
                // SAFETY: the span is on a central list, so it is live.
                let w = unsafe { remote_word(span) };
                assert_eq!(w.tag(), tag::PARTIAL, "a kept span is on the partial list");
                assert!(w.all_free(), "count {} frozen {}", w.count(), w.frozen());
            }
            assert_eq!(h.pages_in_use, kept_already + 2 + 1);
        } else {
            assert_eq!(a.central(class).len(), kept_already, "S and R went back to the heap");
            assert_eq!(h.pages_in_use, kept_already + 1);
            let now = a.heap().span_of(s_base);
            // SAFETY: a span found in the table is live while nothing frees it.
            let reused_by = if now.is_null() { None } else { Some(unsafe { (*now).class } as usize) };
            let ok = match reused_by {
                None => true,
                Some(c) => c == size_to_class(OTHER),
            };
            assert!(ok, "S's pages are free or reused by the other class");
        }
        // Return the other class's span, then audit this class.
        a.release_unused();
        audit_class(&a, SIZE, Vec::new(), &data);
    });
}

#[test]
fn exit_races_frees_span_kept() {
    exit_races_frees(0);
}

#[test]
fn exit_races_frees_span_returned_to_heap() {
    exit_races_frees(2);
}
