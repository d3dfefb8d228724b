//! Model 3, the page heap: two threads allocate and free page runs
//! (`MHeap::alloc_span` / `free_span`) while a third runs the scavenger
//! (`scavenge(0)`, which returns every free dirty page to the OS).
//!
//! Invariants, checked while the spans are held and at the end:
//! - spans never overlap: every page of a held span carries its holder's mark
//!   (real memory, checked before the span is freed), each page's use is a
//!   `UserData` cell (two holders of one page would race on it), and the
//!   surviving spans' `[base, base + pages * 8192)` ranges are disjoint;
//! - `span_of` maps every page of a held span to that span;
//! - the scavenger never releases a page in use (its mark would read zero);
//! - the counters add up: `pages_in_use` is the sum of the live spans'
//!   pages, it is 0 once they are freed, `free_pages` is back to its value
//!   before the model, and after a final `scavenge(0)` `dirty_free_pages` is 0.
//!
//! Mutations tried (on d19e4b4, one at a time, each model run alone at
//! `LOOM_MAX_PREEMPTIONS=2`, reverted; none committed). Each fails both
//! models, `alloc_free_race_scavenge` and
//! `two_threads_alloc_free_while_third_scavenges`:
//! - `MHeap::scavenge` without the heap lock (the inner heap reached
//!   through a temporary unlocked accessor on `Locked`): "Causality
//!   violation: Concurrent write accesses to `UnsafeCell`" on `MHeap::inner`
//!   (`alloc_free_…`: the second access in `alloc_span`; `two_threads_…`: in
//!   `scavenge`, the scavenger's own thread).
//! - `alloc_span` not clearing the run's free bits: "page 0x… was handed to
//!   two spans" in both.
//! - the scavenger's run search ignoring the free bitmap
//!   (`dirty.next_run_in_both(&dirty, …)` for `free.next_run_in_both(&dirty,
//!   …)`, in `scavenge` and `scavenge_aged`): "page 0x… of a live span was
//!   released to the OS" in both.
//!
//! An earlier run (in a scratch worktree, `alloc_free_race_scavenge` only)
//! also weakened the loom `RawLock::lock` CAS Acquire → Relaxed and got the
//! same violation on `MHeap::inner`; the loom `RawLock` is now a loom
//! `Mutex<bool>` and `Condvar` (see "Shim lock" in the README), with no
//! ordering of ours to weaken, so that row no longer applies.
#![cfg(gomalloc_loom)]

use gomalloc::mheap::{HeapCounters, MHeap};
use gomalloc::sizeclass::PAGE_SIZE;
use gomalloc::span::Span;
use gomalloc_loom_tests::{builder, UserData};
use loom::sync::Arc;
use loom::thread;

/// A span record handed between model threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run(*mut Span);
// SAFETY: span records are heap metadata, not tied to a thread; the model
// hands each run to one thread at a time.
unsafe impl Send for Run {}

impl Run {
    fn base(self) -> usize {
        // SAFETY: the run is live while the model holds it.
        unsafe { (*self.0).base }
    }
    fn pages(self) -> usize {
        // SAFETY: as above.
        unsafe { (*self.0).pages() }
    }
    fn page_addrs(self) -> impl Iterator<Item = usize> {
        let base = self.base();
        (0..self.pages()).map(move |i| base + i * PAGE_SIZE)
    }
}

/// Allocates a run of `pages` pages, checks it, and marks every page.
fn take(heap: &MHeap, data: &UserData, pages: usize, mark: u64) -> Run {
    let run = Run(heap.alloc_span(pages, 1, 0));
    assert!(!run.0.is_null(), "alloc_span failed");
    assert_eq!(run.pages(), pages);
    for addr in run.page_addrs() {
        assert_eq!(heap.span_of(addr), run.0, "span_of({addr:#x}) is not the span holding it");
        data.touch(addr);
        // SAFETY: the page belongs to the run this thread holds.
        unsafe { (addr as *mut u64).write(mark) };
    }
    run
}

/// Checks that the run's pages still carry `mark` and are still mapped to
/// it, then frees it.
fn give_back(heap: &MHeap, data: &UserData, run: Run, mark: u64) {
    for addr in run.page_addrs() {
        // SAFETY: the page belongs to the run this thread holds.
        let found = unsafe { (addr as *const u64).read() };
        assert_ne!(found, 0, "page {addr:#x} of a live span was released to the OS");
        assert_eq!(found, mark, "page {addr:#x} was handed to two spans");
        assert_eq!(heap.span_of(addr), run.0, "span_of({addr:#x}) changed while the span was held");
        data.touch(addr);
    }
    // SAFETY: the run came from `alloc_span` on this heap and is not used again.
    unsafe { heap.free_span(run.0) };
}

/// The model's heap, its user-data cells (one per page start), and the
/// counters before the model threads start. The arena is mapped and its
/// first page run found by a span allocated and freed at once; first fit
/// hands those pages out again.
fn setup() -> (Arc<MHeap>, Arc<UserData>, HeapCounters) {
    let heap = Arc::new(MHeap::new());
    let first = Run(heap.alloc_span(1, 1, 0));
    let base = first.base();
    // SAFETY: `first` is not used again.
    unsafe { heap.free_span(first.0) };
    let before = heap.counters();
    (heap, Arc::new(UserData::new(base, 8, &[], 0)), before)
}

/// The end of a model: the two surviving runs, held by the main thread now,
/// must not overlap and must account for every page in use; once they are
/// freed and the scavenger has run, the counters are back where they were,
/// with no dirty free page.
fn finish(heap: &MHeap, data: &UserData, before: HeapCounters, live: [(Run, u64); 2]) {
    let [(s, ms), (r, mr)] = live;
    let a = (s.base(), s.base() + s.pages() * PAGE_SIZE);
    let b = (r.base(), r.base() + r.pages() * PAGE_SIZE);
    assert!(a.1 <= b.0 || b.1 <= a.0, "live spans overlap: {a:x?} and {b:x?}");
    let h = heap.counters();
    assert_eq!(h.pages_in_use, s.pages() + r.pages(), "pages_in_use is the live spans' pages");
    assert_eq!(h.free_pages + h.pages_in_use, before.free_pages, "every arena page is free or in a span");
    give_back(heap, data, s, ms);
    give_back(heap, data, r, mr);
    heap.scavenge(0);
    let h = heap.counters();
    assert_eq!(h.pages_in_use, 0, "pages in use after every span was freed");
    assert_eq!(h.free_pages, before.free_pages, "free pages not back to their first value");
    assert_eq!(h.dirty_free_pages, 0, "dirty free pages after scavenge(0)");
}

/// Thread A: takes a page, then two, then gives the first back.
fn thread_a(heap: &MHeap, data: &UserData) -> (Run, u64) {
    let s1 = take(heap, data, 1, 0xA1);
    let s2 = take(heap, data, 2, 0xA2);
    give_back(heap, data, s1, 0xA1);
    (s2, 0xA2)
}

/// Thread B: takes two pages, gives them back, then takes one, running the
/// scavenger at `scavenge_at` (0: before anything, 1: while holding the two
/// pages, 2: between the free and the last allocation) unless `None`.
fn thread_b(heap: &MHeap, data: &UserData, scavenge_at: Option<usize>) -> (Run, u64) {
    if scavenge_at == Some(0) {
        heap.scavenge(0);
    }
    let r1 = take(heap, data, 2, 0xB1);
    if scavenge_at == Some(1) {
        heap.scavenge(0);
    }
    give_back(heap, data, r1, 0xB1);
    if scavenge_at == Some(2) {
        heap.scavenge(0);
    }
    (take(heap, data, 1, 0xB2), 0xB2)
}

/// Two threads allocate and free page runs; one of them also runs the
/// scavenger, at each of three points, so it races the other's allocations
/// and frees.
#[test]
fn alloc_free_race_scavenge() {
    for at in 0..3 {
        builder().check(move || {
            let (heap, data, before) = setup();
            let t = {
                let (heap, data) = (heap.clone(), data.clone());
                thread::spawn(move || thread_a(&heap, &data))
            };
            let b = thread_b(&heap, &data, Some(at));
            let a = t.join().unwrap();
            finish(&heap, &data, before, [a, b]);
        });
    }
}

/// The shape: two threads allocate and free while a third runs the
/// scavenger. (With the earlier spinning loom `RawLock`, two waiters made
/// loom explore endless alternations; the loom lock now blocks.)
#[test]
fn two_threads_alloc_free_while_third_scavenges() {
    builder().check(|| {
        let (heap, data, before) = setup();
        let t1 = {
            let (heap, data) = (heap.clone(), data.clone());
            thread::spawn(move || thread_a(&heap, &data))
        };
        let t2 = {
            let (heap, data) = (heap.clone(), data.clone());
            thread::spawn(move || thread_b(&heap, &data, None))
        };
        let scavenger = {
            let heap = heap.clone();
            thread::spawn(move || heap.scavenge(0))
        };
        let a = t1.join().unwrap();
        let b = t2.join().unwrap();
        scavenger.join().unwrap();
        finish(&heap, &data, before, [a, b]);
    });
}
