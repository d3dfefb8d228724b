//! The GC heap: configuration, span lists, the collector thread and the
//! cycle it runs, sweeping and pacing.
//!
//! Called by the public API (`Heap`) and by mutators (`mutator.rs`) for spans
//! and cycle requests. Calls `gcspan.rs`, `mark.rs` and the allocator's page
//! heap.
//!
//! # The cycle (see `mod.rs` for why it is sound)
//! 1. Sweep termination: wait until every mutator inside `enter` has handed
//!    back its spans from before the last flip (the caches of those outside
//!    are flushed), so every unswept span is on an unswept list; close
//!    sweeping (`sweep_allowed = false`, under the span-list lock) and wait
//!    for the sweeps in flight; then sweep, on the collector alone, every
//!    span still listed unswept. No span may enter marking unswept: `shade`
//!    would take an object's stale mark bit for this cycle's and never trace
//!    it. From here to the flip no span is swept: a sweep clears mark bits,
//!    which this cycle is about to set.
//! 2. Start: allocation turns black, `marking` turns on (SeqCst), the cycle
//!    number advances; the collector waits until no mutator is inside a
//!    barrier that may have read `marking == false`; it shades the roots.
//! 3. Concurrent mark: the collector drains the grey queue while mutators
//!    run; mutators' barriers shade old and new values; assists help when
//!    allocation outruns marking.
//! 4. Termination: once every mutator is outside `enter` or entered after
//!    step 2, and no grey object is left (the collector takes the mutators'
//!    barrier buffers first), `marking` turns off (SeqCst); the collector
//!    waits out in-flight barriers, takes the buffers again and drains what
//!    they shaded.
//! 5. Flip: under the span-list lock, `sweepgen += 2`, every listed span
//!    becomes unswept, allocation turns white and the epoch advances; caches
//!    of mutators outside `enter` are flushed. Mutators inside `enter` flush
//!    their own at their next allocation (they allocate black until then).
//! 6. Sweep: the collector thread sweeps in the background; mutators sweep
//!    lazily when they need a span. An automatic cycle a mutator asks for
//!    starts only if the heap is still over its trigger once the collector
//!    has swept what is left (`cycle_still_due`).
//!
//! # Concurrency
//! Span lists: one `Mutex`. Grey queue: one `Mutex` (`mark.rs`); each
//! mutator's grey buffer, one more, taken before the queue's. Phase words
//! are atomics; their orderings are commented where they are used. Lock
//! order: span lists, then the page heap's lock (inside `GcSpan::create`
//! and `release`); the grey queue and root set are leaves. No lock is held
//! while user `Drop` code runs.

use crate::gc::gcspan::{GcSpan, SweepResult};
use crate::gc::mark::GreyQueue;
use crate::gc::mutator::MutatorState;
use crate::gc::stats::{GcStats, ObjectTally, PauseRing};
use crate::mheap::MHeap;
use crate::sizeclass::{NUM_CLASSES, PAGE_SIZE};
use crate::sync::thread::{self, backoff, JoinHandle, ThreadId};
use crate::sync::{fence, AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use crossbeam_utils::CachePadded;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The heap goal never falls below this (Go's 4 MiB floor).
pub const MIN_HEAP_GOAL: usize = 4 << 20;

/// Unswept spans a mutator sweeps looking for free room before it takes a
/// fresh span instead (Go's `spanBudget`): after a flip over a heap that is
/// mostly live, nearly every span sweeps full, and an unbounded search
/// stalled the mutator for milliseconds (the graph bench's longest units).
/// The collector's background sweep does the rest.
const LAZY_SWEEP_BUDGET: usize = 32;

/// Spans the collector's background sweep pops, and files, per hold of the
/// span-list lock (see `sweep_batch`).
const SWEEP_BATCH: usize = 16;

/// Time after which a mutator stops sweeping lazily and takes a fresh span,
/// within the span budget: spans whose objects run `Drop` take tens of
/// microseconds each, and 32 of them took 807 µs of one refill on the graph
/// bench. Checked after each span, so one span can overrun it.
const LAZY_SWEEP_TIME: Duration = Duration::from_micros(100);

/// True once a lazy sweep that began at `started` has used its time. Never
/// under loom, whose models must not branch on the clock.
fn lazy_sweep_timed_out(started: Instant) -> bool {
    !cfg!(gomalloc_loom) && started.elapsed() > LAZY_SWEEP_TIME
}

/// Collector settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcConfig {
    /// Like `GOGC`: the next cycle starts when the heap reaches
    /// `live × (1 + gc_percent/100)`. Negative disables automatic cycles
    /// (the memory limit still applies). Default 100, or
    /// `GOMALLOC_GC_PERCENT`.
    pub gc_percent: i32,
    /// Like `GOMEMLIMIT`: a soft limit in bytes on the GC heap; cycles start
    /// early to stay under it. Default unlimited, or `GOMALLOC_MEMORY_LIMIT`
    /// (bytes, with an optional `KiB`, `MiB` or `GiB` suffix).
    pub memory_limit: usize,
    /// Print one line per cycle to stderr (`GOMALLOC_GCTRACE=1`).
    pub trace: bool,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig::from_env()
    }
}

impl GcConfig {
    /// Defaults, overridden by the `GOMALLOC_*` environment variables.
    pub fn from_env() -> GcConfig {
        let var = |name: &str| std::env::var(name).ok();
        GcConfig {
            gc_percent: var("GOMALLOC_GC_PERCENT")
                .and_then(|v| if v.trim() == "off" { Some(-1) } else { v.trim().parse().ok() })
                .unwrap_or(100),
            memory_limit: var("GOMALLOC_MEMORY_LIMIT").and_then(|v| parse_bytes(&v)).unwrap_or(usize::MAX),
            trace: var("GOMALLOC_GCTRACE").is_some_and(|v| v.trim() == "1"),
        }
    }
}

/// Parses "123", "64KiB", "512MiB", "2GiB".
pub fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, mult) = [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|d| (d.trim(), *m)))
        .unwrap_or((s, 1));
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

/// Spans not in any mutator cache, by state.
pub(crate) struct SpanLists {
    /// Swept spans with a free slot, per class.
    pub partial: [Vec<*mut GcSpan>; NUM_CLASSES],
    /// Swept spans without a free slot, per class; class 0 holds large objects.
    pub full: [Vec<*mut GcSpan>; NUM_CLASSES],
    /// Spans waiting to be swept, per class (class 0: large).
    pub unswept: [Vec<*mut GcSpan>; NUM_CLASSES],
    /// Spans in mutator caches (counted, for statistics).
    pub cached: usize,
}

// SAFETY: the raw pointers name GC span headers in page-heap memory, which
// belong to no thread; the lists are only used under their mutex.
unsafe impl Send for SpanLists {}

/// Requests between mutators and the collector thread.
pub(crate) struct Control {
    pub state: Mutex<ControlState>,
    pub wake: Condvar,
    pub done: Condvar,
}

#[derive(Default)]
pub(crate) struct ControlState {
    /// A cycle has been asked for.
    pub requested: bool,
    /// The request came from `collect()`.
    pub forced: bool,
    /// Cycles completed.
    pub completed: u64,
    /// A cycle is running now.
    pub running: bool,
    /// The heap is being dropped.
    pub shutdown: bool,
}

/// The shared state of a heap.
pub(crate) struct HeapInner {
    pub id: usize,
    pub pages: &'static MHeap,
    pub config: Mutex<GcConfig>,
    pub gc_percent: AtomicI32,
    pub memory_limit: AtomicUsize,

    /// Barrier phase: write barriers shade while true.
    pub marking: AtomicBool,
    /// Allocation colour and the sweepgen it goes with, in one word
    /// (`colour_word`): new objects are marked while the low bit is set.
    /// One word because a cache must take both from the same phase: read
    /// apart, a mutator syncing across a flip once took the old colour
    /// (black) with the new sweepgen, allocated black into a span swept for
    /// the next cycle, and that stale mark hid the object from the next
    /// cycle's marking, so what it alone reached was freed while reachable
    /// (found by the loom model `black_allocation_shades_its_initial_handles`).
    pub alloc_colour: AtomicU64,
    /// Advances whenever `alloc_colour` changes, so caches know to
    /// resynchronise.
    pub epoch: AtomicU64,
    /// Cycles started.
    pub cycle: AtomicU64,
    /// The epoch set by the last flip.
    pub flip_epoch: AtomicU64,
    /// Go's `sweepgen`, starting at 2.
    pub sweepgen: AtomicU64,
    /// Sweeping is allowed (from a flip to the next cycle's sweep
    /// termination). Changed only under the span-list lock, and read under
    /// it by every thread that pops an unswept span (see `close_sweeping`).
    pub sweep_allowed: AtomicBool,
    /// Spans popped from an unswept list and not yet swept and filed (see
    /// `close_sweeping`).
    pub sweeping: AtomicUsize,
    /// Root operations in progress that may shade (see `root_barrier`).
    pub root_barriers: AtomicUsize,

    /// Objects shaded but not yet traced (`mark.rs`).
    pub grey: CachePadded<Mutex<GreyQueue>>,
    /// Written on every object marked, by the collector and by mutators'
    /// black allocations: on a line of its own, away from the phase words
    /// every allocation reads (sharing one made the `marking` load in
    /// black allocation the mutator's most expensive instruction).
    pub marked_bytes: CachePadded<AtomicUsize>,

    pub spans: CachePadded<Mutex<SpanLists>>,
    pub mutators: Mutex<Vec<Arc<MutatorState>>>,
    pub roots: Mutex<crate::gc::root::RootSlots>,
    /// Set from just before marking ends until after the flip: weak handles
    /// are being decided (see `weak.rs`).
    pub mark_done: AtomicBool,
    /// Every weak slot that may still need clearing (`weak.rs`).
    pub weak_slots: Mutex<Vec<usize>>,
    /// Registered and ready finalizers, and their thread (`finalize.rs`).
    pub finalizers: Arc<crate::gc::finalize::Finalizers>,
    /// `Heap` and `Root` handles alive (see `HeapRef`).
    pub owners: AtomicUsize,
    /// `shutdown` has run.
    pub shut_down: AtomicBool,
    /// `teardown` has run (after `shutdown`, at once or when the collector
    /// ends the step it was in).
    torn_down: AtomicBool,
    /// `shutdown` ran on the collector thread, which tears down when it
    /// ends the step it was in.
    teardown_deferred: AtomicBool,
    /// Called at the start of every cycle (see `add_cycle_hook`).
    pub cycle_hooks: Mutex<Vec<Weak<dyn Fn() + Send + Sync>>>,

    /// Bytes in allocated objects (allocation adds, sweep subtracts).
    pub in_use: CachePadded<AtomicUsize>,
    /// Next automatic cycle starts when `in_use` reaches this.
    pub trigger: AtomicUsize,
    pub goal: AtomicUsize,
    /// Pages reserved with the page heap's scavenger for this heap to grow
    /// back into (see `set_goal`).
    pub reserved_pages: AtomicUsize,
    /// The most the heap held during its last cycle: at the start, before
    /// sweep termination sweeps the cycle before's garbage, or at the flip,
    /// before this cycle's is swept (see `set_goal`).
    pub cycle_peak: AtomicUsize,
    /// Pages of all this heap's spans, those in mutator caches included
    /// (`count_pages`): `stats` reads it rather than walk the span lists
    /// under their lock, which at a 400 MiB heap held that lock for 0.7 ms
    /// while every refill waited.
    pub span_pages: AtomicUsize,
    /// Allocation and sweep totals for `GcStats`, as atomics rather than
    /// under the stats lock: every span swept (a few hundred thousand per
    /// cycle at a 1 GiB heap) took that lock, which mutators take too.
    pub allocated: ObjectTally,
    pub freed: ObjectTally,

    pub control: Arc<Control>,
    pub collector: Mutex<Option<JoinHandle<()>>>,
    pub collector_thread: Mutex<Option<ThreadId>>,
    pub stats: CachePadded<Mutex<GcStats>>,
    pub pauses: PauseRing,
    pub started: Instant,
}

// SAFETY: every field is either immutable after construction, atomic, or
// behind a mutex; `pages` is a shared reference to a `Sync` heap.
unsafe impl Send for HeapInner {}
// SAFETY: as for `Send`.
unsafe impl Sync for HeapInner {}

impl HeapInner {
    pub fn new(pages: &'static MHeap, config: GcConfig) -> Arc<HeapInner> {
        // The identity is the address of the shared allocation: unique while
        // any strong or weak reference (a thread's registration) exists.
        let inner = Arc::new_cyclic(|me| HeapInner {
            id: me.as_ptr() as usize,
            pages,
            config: Mutex::new(config),
            gc_percent: AtomicI32::new(config.gc_percent),
            memory_limit: AtomicUsize::new(config.memory_limit),
            marking: AtomicBool::new(false),
            alloc_colour: AtomicU64::new(colour_word(false, 2)),
            epoch: AtomicU64::new(1),
            cycle: AtomicU64::new(0),
            flip_epoch: AtomicU64::new(0),
            sweepgen: AtomicU64::new(2),
            sweep_allowed: AtomicBool::new(true),
            sweeping: AtomicUsize::new(0),
            root_barriers: AtomicUsize::new(0),
            grey: CachePadded::new(Mutex::new(GreyQueue::new())),
            marked_bytes: CachePadded::new(AtomicUsize::new(0)),
            spans: CachePadded::new(Mutex::new(SpanLists {
                partial: std::array::from_fn(|_| Vec::new()),
                full: std::array::from_fn(|_| Vec::new()),
                unswept: std::array::from_fn(|_| Vec::new()),
                cached: 0,
            })),
            mutators: Mutex::new(Vec::new()),
            roots: Mutex::new(Default::default()),
            mark_done: AtomicBool::new(false),
            weak_slots: Mutex::new(Vec::new()),
            finalizers: Default::default(),
            owners: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            torn_down: AtomicBool::new(false),
            teardown_deferred: AtomicBool::new(false),
            cycle_hooks: Mutex::new(Vec::new()),
            in_use: CachePadded::new(AtomicUsize::new(0)),
            trigger: AtomicUsize::new(0),
            goal: AtomicUsize::new(0),
            reserved_pages: AtomicUsize::new(0),
            cycle_peak: AtomicUsize::new(0),
            span_pages: AtomicUsize::new(0),
            allocated: ObjectTally::new(),
            freed: ObjectTally::new(),
            control: Arc::new(Control {
                state: Mutex::new(ControlState::default()),
                wake: Condvar::new(),
                done: Condvar::new(),
            }),
            collector: Mutex::new(None),
            collector_thread: Mutex::new(None),
            stats: CachePadded::new(Mutex::new(GcStats::default())),
            pauses: PauseRing::default(),
            started: Instant::now(),
        });
        inner.set_goal(0);
        inner
    }

    fn lock_spans(&self) -> MutexGuard<'_, SpanLists> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- spans for mutators ----

    /// A swept span of `class` with a free slot, for a mutator cache; null
    /// when out of memory. Sweeps lazily if needed, at most
    /// `LAZY_SWEEP_BUDGET` spans or for `LAZY_SWEEP_TIME`: past that it
    /// takes a fresh span.
    pub fn span_for_cache(&self, class: usize) -> *mut GcSpan {
        let mut swept = 0;
        let started = Instant::now();
        loop {
            if swept == LAZY_SWEEP_BUDGET || (swept != 0 && lazy_sweep_timed_out(started)) {
                break;
            }
            swept += 1;
            let (span, sg) = {
                let mut l = self.lock_spans();
                if let Some(s) = l.partial[class].pop() {
                    l.cached += 1;
                    // SAFETY: listed spans are live.
                    let prev = unsafe { (*s).holder.swap(2, Ordering::Relaxed) };
                    debug_assert_eq!(prev, 1, "span {s:p} taken from partial but not listed");
                    return s;
                }
                // Checked, and the pop counted, under the lock `close_sweeping`
                // takes to close sweeping (see there).
                if !self.sweep_allowed.load(Ordering::Relaxed) {
                    break;
                }
                match l.unswept[class].pop() {
                    Some(s) => {
                        // SAFETY: listed spans are live.
                        let prev = unsafe { (*s).holder.swap(3, Ordering::Relaxed) };
                        debug_assert_eq!(prev, 1, "span {s:p} popped from unswept but not listed");
                        self.sweeping.fetch_add(1, Ordering::Relaxed);
                        (s, self.sweepgen.load(Ordering::Relaxed))
                    }
                    None => break,
                }
            };
            // Sweep outside the lock: it runs user `Drop` code.
            // SAFETY: popped from the unswept list: this thread holds it.
            unsafe {
                self.sweep_popped(span, sg);
                if (*span).has_free() {
                    (*span).holder.store(2, Ordering::Relaxed);
                    self.lock_spans().cached += 1;
                    // Release pairs with the Acquire wait in `close_sweeping`.
                    self.sweeping.fetch_sub(1, Ordering::Release);
                    return span;
                }
                self.file_swept(span);
            }
            // Release pairs with the Acquire wait in `close_sweeping`.
            self.sweeping.fetch_sub(1, Ordering::Release);
        }
        let span = GcSpan::create(self.pages, class, 0, self.sweepgen.load(Ordering::Acquire), self.id);
        if !span.is_null() {
            self.count_pages(span, true);
            let mut l = self.lock_spans();
            // An empty span is swept for any generation: date it now, under
            // the lock, in case a flip happened since it was created.
            // SAFETY: a fresh span owned by this call.
            unsafe { (*span).sweepgen.store(self.sweepgen.load(Ordering::Relaxed), Ordering::Relaxed) };
            l.cached += 1;
        }
        span
    }

    /// Takes back a span from a mutator cache: unswept if a flip happened
    /// since it was handed out, otherwise partial or full.
    pub fn return_from_cache(&self, span: *mut GcSpan) {
        let mut l = self.lock_spans();
        // SAFETY: the cache held the live span.
        let prev = unsafe { (*span).holder.swap(1, Ordering::Relaxed) };
        debug_assert!(prev == 2 || prev == 3, "span {span:p} returned from a cache that did not hold it ({prev})");
        // Read under the lock the flip holds, so a span cannot be judged
        // fresh just before a flip and filed as swept after it.
        let sg = self.sweepgen.load(Ordering::Acquire);
        // SAFETY: the cache held the live span; it gives it up now.
        let (class, stale, has_free) = unsafe {
            let s = &*span;
            (self.class_of(s), s.sweepgen.load(Ordering::Acquire) < sg, s.has_free())
        };
        l.cached -= 1;
        // From `close_sweeping` to the flip no span is listed unswept:
        // `wait_resynced` took back every span from before the last flip,
        // and `sweep_remaining` relies on the lists staying empty.
        debug_assert!(
            !stale || self.sweep_allowed.load(Ordering::Relaxed),
            "span {span:p} handed back unswept while sweeping is closed"
        );
        if stale {
            l.unswept[class].push(span);
        } else if has_free {
            l.partial[class].push(span);
        } else {
            l.full[class].push(span);
        }
    }

    /// Files a swept span not in any cache.
    ///
    /// # Safety
    /// The caller holds the span (it is on no list and in no cache).
    unsafe fn file_swept(&self, span: *mut GcSpan) {
        // SAFETY: forwarded.
        unsafe { self.file_swept_all(&[span]) }
    }

    /// Files swept spans not in any cache: releases the empty ones to the
    /// page heap and lists the others under one hold of the span-list lock.
    ///
    /// # Safety
    /// The caller holds every span (each on no list and in no cache).
    unsafe fn file_swept_all(&self, spans: &[*mut GcSpan]) {
        debug_assert!(spans.len() <= SWEEP_BATCH);
        // Which spans to list: a released span's header is page-heap memory
        // another thread may already have reused, so it is not read again.
        let mut keep = [false; SWEEP_BATCH];
        for (i, &span) in spans.iter().enumerate() {
            // SAFETY: the caller holds the live span.
            if unsafe { (*span).allocated.load(Ordering::Relaxed) } == 0 {
                self.count_pages(span, false);
                // SAFETY: no live object; nothing else refers to it.
                unsafe { GcSpan::release(span, self.pages) };
            } else {
                keep[i] = true;
            }
        }
        if !keep.contains(&true) {
            return;
        }
        let mut l = self.lock_spans();
        for (&span, _) in spans.iter().zip(keep).filter(|(_, k)| *k) {
            // SAFETY: a span kept above is still held by the caller.
            let s = unsafe { &*span };
            let class = self.class_of(s);
            let prev = s.holder.swap(1, Ordering::Relaxed);
            debug_assert_eq!(prev, 3, "span {span:p} filed but not held by a sweeper");
            if s.has_free() && class != 0 {
                l.partial[class].push(span);
            } else {
                l.full[class].push(span);
            }
        }
    }

    /// Size class of a span (0 for a large object).
    pub fn class_of(&self, s: &GcSpan) -> usize {
        s.class
    }

    /// Allocates a span for one large object, held by the calling mutator
    /// like a cached span until it hands it back with `return_from_cache`
    /// once the object is written (and marked, if black): a listed span
    /// could be swept by then.
    pub fn large_span(&self, size: usize) -> *mut GcSpan {
        let span = GcSpan::create(self.pages, 0, size, self.sweepgen.load(Ordering::Acquire), self.id);
        if !span.is_null() {
            self.count_pages(span, true);
            // The slot is taken before the span is listed, so a sweep never
            // sees the span empty.
            // SAFETY: a fresh span owned by this call.
            unsafe { (*span).take_free_slot() };
            let mut l = self.lock_spans();
            // Dated under the lock (see `span_for_cache`).
            // SAFETY: as above.
            unsafe { (*span).sweepgen.store(self.sweepgen.load(Ordering::Relaxed), Ordering::Relaxed) };
            l.cached += 1;
        }
        span
    }

    fn account_sweep(&self, r: SweepResult) {
        if r.freed_bytes != 0 {
            self.in_use.fetch_sub(r.freed_bytes, Ordering::Relaxed);
            self.freed.add(r.freed, r.freed_bytes);
        }
    }

    /// Sweeps a span this thread popped from an unswept list, unless it was
    /// swept already (`claim_sweep` fails; the pop should have excluded it).
    ///
    /// # Safety
    /// The caller holds the span (popped it from an unswept list), and
    /// marking of the cycle whose bits it holds is complete.
    unsafe fn sweep_popped(&self, span: *mut GcSpan, sg: u64) {
        // SAFETY: forwarded: the caller holds the live span; the marking
        // that set its bits is complete.
        unsafe {
            if (*span).claim_sweep(sg) {
                let r = (*span).sweep(sg);
                self.account_sweep(r);
            }
        }
    }

    /// Stops new sweeps and waits for those in flight.
    ///
    /// Every thread that pops an unswept span (`span_for_cache`,
    /// `sweep_batch`) checks `sweep_allowed` and counts itself in `sweeping`
    /// under the span-list lock, and then always sweeps and files the span
    /// before it decrements `sweeping`. The store below is made under that
    /// lock too, so each popper's critical section comes either before it
    /// (its increment happens before the wait below, which then waits for
    /// its sweep) or after it (it reads `false` and pops nothing). No
    /// fence is needed: the lock orders the check and the count with the
    /// close.
    fn close_sweeping(&self) {
        {
            let _l = self.lock_spans();
            self.sweep_allowed.store(false, Ordering::Relaxed);
        }
        // Acquire pairs with the Release decrement that ends each sweep: the
        // sweep's clearing of mark bits happens before this cycle's shades.
        // (Each sweep also takes the span-list lock after sweeping, and
        // `sweep_remaining` takes it next, so the lock orders this too: the
        // loom models cannot tell the pair from Relaxed. It keeps the wait
        // correct without relying on that.)
        while self.sweeping.load(Ordering::Acquire) != 0 {
            thread::yield_now();
        }
    }

    /// After `close_sweeping`: sweeps, on the collector, every span still on
    /// an unswept list. With sweeping closed and the sweeps in flight done,
    /// no other thread pops or sweeps, and no span is listed unswept again
    /// before the flip (`wait_resynced` has had every mutator hand back its
    /// spans from before the last flip; a cache refilled since holds only
    /// spans of the current `sweepgen`). So once the lists are empty, every
    /// span is swept.
    ///
    /// This is where sweep termination does its sweeping. Sweeping here
    /// rather than before `close_sweeping` (while mutators could still help)
    /// keeps each step of the protocol necessary: without this pass a span
    /// left unswept enters marking with its stale mark bits; without the
    /// close a popper could take a span while this pass runs and sweep it
    /// during marking; without the wait, a sweep in flight could clear mark
    /// bits this cycle has set. Mutators needing a span meanwhile take a
    /// swept one or a fresh one, as they do throughout marking.
    fn sweep_remaining(&self) {
        loop {
            let (span, sg) = {
                let mut l = self.lock_spans();
                match l.unswept.iter_mut().find_map(Vec::pop) {
                    Some(s) => {
                        // SAFETY: listed spans are live.
                        let prev = unsafe { (*s).holder.swap(3, Ordering::Relaxed) };
                        debug_assert_eq!(prev, 1, "span {s:p} popped from unswept but not listed");
                        (s, self.sweepgen.load(Ordering::Relaxed))
                    }
                    None => return,
                }
            };
            // SAFETY: popped from the unswept list: this thread holds the
            // span; the last cycle's marking is complete.
            unsafe {
                self.sweep_popped(span, sg);
                self.file_swept(span);
            }
        }
    }

    /// Sweeps up to `SWEEP_BATCH` unswept spans of any class, popped under
    /// one hold of the span-list lock and filed under
    /// one more; returns how many, 0 when none is left or sweeping is
    /// closed. Popping and filing one span per hold, the background sweeper
    /// took that lock twice per span (hundreds of thousands of times per
    /// cycle at a 1 GiB heap), and a mutator waiting for it was woken and
    /// beaten to it again and again (23 futex waits in one 433 µs refill).
    pub fn sweep_batch(&self) -> usize {
        let mut popped = [core::ptr::null_mut::<GcSpan>(); SWEEP_BATCH];
        let (n, sg) = {
            let mut l = self.lock_spans();
            // Checked, and the pops counted, under the lock `close_sweeping`
            // takes to close sweeping (see there).
            if !self.sweep_allowed.load(Ordering::Relaxed) {
                return 0;
            }
            let mut n = 0;
            while n < SWEEP_BATCH {
                let Some(s) = l.unswept.iter_mut().find_map(Vec::pop) else { break };
                // SAFETY: listed spans are live.
                let prev = unsafe { (*s).holder.swap(3, Ordering::Relaxed) };
                debug_assert_eq!(prev, 1, "span {s:p} popped from unswept but not listed");
                popped[n] = s;
                n += 1;
            }
            if n == 0 {
                return 0;
            }
            self.sweeping.fetch_add(n, Ordering::Relaxed);
            (n, self.sweepgen.load(Ordering::Relaxed))
        };
        // SAFETY: popped from the unswept list: this thread holds them; the
        // last cycle's marking is complete (sweeping is open).
        unsafe {
            for &span in &popped[..n] {
                self.sweep_popped(span, sg);
            }
            self.file_swept_all(&popped[..n]);
        }
        // Release pairs with the Acquire wait in `close_sweeping`.
        self.sweeping.fetch_sub(n, Ordering::Release);
        n
    }

    /// Sweeps until nothing is left and no other thread is mid-sweep, or
    /// until a cycle closes sweeping.
    fn finish_sweep(&self) {
        loop {
            while self.sweep_batch() != 0 {}
            let pending = self.lock_spans().unswept.iter().any(|v| !v.is_empty());
            // Acquire pairs with the Release decrement that ends a sweep.
            if !pending && self.sweeping.load(Ordering::Acquire) == 0 {
                return;
            }
            // Relaxed: only decides whether to keep waiting; the next cycle's
            // collector sweeps whatever is left.
            if !self.sweep_allowed.load(Ordering::Relaxed) {
                return;
            }
            thread::yield_now();
        }
    }

    // ---- pacing ----

    /// Recomputes the goal and trigger from the live heap, and the
    /// reservation from the goal and `cycle_peak` (see below).
    pub fn set_goal(&self, live: usize) {
        let percent = self.gc_percent.load(Ordering::Relaxed);
        let limit = self.memory_limit.load(Ordering::Relaxed);
        let mut goal = if percent < 0 {
            usize::MAX
        } else {
            (live as u128 * (100 + percent as u128) / 100).min(usize::MAX as u128) as usize
        };
        goal = goal.max(MIN_HEAP_GOAL);
        if limit != usize::MAX {
            // Stay under the soft limit, leaving room for what marking lets
            // through; never below the live heap plus a little.
            goal = goal.min(limit - limit / 16).max(live + live / 16);
        }
        self.goal.store(goal, Ordering::Relaxed);
        // The scavenger keeps free pages for the heap to grow back into
        // after a sweep: released, they would be faulted back in by the
        // mutators that allocate them, a page fault apiece. It keeps what
        // Go's scavenger keeps, the goal plus 10%, within the memory limit;
        // none when collection is off (the heap has no goal to come back
        // to). Not the heap's last peak alone: early cycles overshoot a
        // 4 MiB goal many times over, and a reservation scaled from that
        // peak once grew binary-trees' resident memory from 0.3 to 6 GiB.
        // Nor the goal alone: the collector populates the reservation, and
        // with `gc_percent` at 10^6 over 5 MiB live it faulted in tens of
        // GiB the heap had never used until the process was killed. So the
        // goal, but at most twice the heap's last peak (as the cycle left it,
        // not swept yet, or at its start, before sweep termination swept the
        // previous cycle's garbage, whichever is more), plus 10%. Not the
        // peak itself: a heap whose live set grows reaches a goal above its
        // last peak every cycle, and with the reservation cut to the peak
        // the graph benchmark's mutator took 138 K page faults in 30 s
        // instead of 3-5 K.
        let peak = self.cycle_peak.load(Ordering::Relaxed).max(live);
        let reserve = if goal == usize::MAX {
            0
        } else {
            let grows_back_to = goal.min(peak.saturating_mul(2));
            (grows_back_to + grows_back_to / 10).min(limit) / PAGE_SIZE
        };
        self.reserve_pages(reserve);
        // Start early enough for a concurrent mark to finish before the goal.
        let trigger = if goal == usize::MAX { usize::MAX } else { live + (goal - live.min(goal)) * 7 / 8 };
        self.trigger.store(trigger, Ordering::Relaxed);
    }

    /// Whether an automatic cycle a mutator asked for is still due once the
    /// last cycle's garbage is swept. Until it is, `in_use` still counts
    /// that garbage, and a mutator that allocated just after a flip found
    /// it over the trigger: the collector then ran a second cycle at once
    /// over a heap that sweep termination had just brought back to its live
    /// size, every other cycle a wasted mark (and a reservation cut to that
    /// size, its pages released and faulted back). Go's trigger never sees
    /// unswept garbage: its live heap restarts from the marked bytes. The
    /// sweep done here is one the cycle's sweep termination would do.
    fn cycle_still_due(&self) -> bool {
        while self.sweep_batch() != 0 {}
        self.in_use.load(Ordering::Relaxed) >= self.trigger.load(Ordering::Relaxed)
    }

    /// Called by mutators on their allocation slow path.
    pub fn maybe_trigger(&self) {
        if self.in_use.load(Ordering::Relaxed) >= self.trigger.load(Ordering::Relaxed)
            && !self.marking.load(Ordering::Relaxed)
        {
            self.request_cycle(false);
        }
    }

    /// Asks the collector thread for a cycle (starting it if needed).
    pub fn request_cycle(&self, forced: bool) {
        let mut st = self.control.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.shutdown {
            return;
        }
        st.requested = true;
        st.forced |= forced;
        drop(st);
        self.control.wake.notify_one();
    }

    // ---- the cycle ----

    /// Registers `hook` to run on the collector thread at the start of
    /// every cycle, with no GC lock held, until the hook is dropped (the heap
    /// keeps only a weak reference). `Pool` uses it to rotate its victim
    /// generation, as Go's `poolCleanup` runs at the start of a GC.
    #[cfg_attr(gomalloc_loom, allow(dead_code))] // `Pool` is not built under loom.
    pub fn add_cycle_hook(&self, hook: &Arc<dyn Fn() + Send + Sync>) {
        let mut hooks = self.cycle_hooks.lock().unwrap_or_else(|e| e.into_inner());
        hooks.retain(|h| h.strong_count() > 0);
        hooks.push(Arc::downgrade(hook));
    }

    /// Runs the cycle hooks (outside every lock: they may run user `Drop`s).
    fn run_cycle_hooks(&self) {
        let live: Vec<Arc<dyn Fn() + Send + Sync>> = {
            let mut hooks = self.cycle_hooks.lock().unwrap_or_else(|e| e.into_inner());
            hooks.retain(|h| h.strong_count() > 0);
            hooks.iter().filter_map(Weak::upgrade).collect()
        };
        for hook in live {
            hook();
        }
    }

    /// Runs one full cycle on the calling (collector) thread.
    pub fn run_cycle(&self, forced: bool) {
        self.run_cycle_hooks();
        let t0 = Instant::now();
        let in_use_at_start = self.in_use.load(Ordering::Relaxed);
        let cpu0 = thread_cpu_time();
        // 1. Sweep termination. No span may enter marking with an older
        // cycle's mark bits: `shade` would take such a bit for this cycle's
        // and never trace the object. So wait until every busy mutator has
        // handed back its spans from before the last flip and flush the idle
        // ones; then close sweeping, and sweep everything left.
        self.wait_resynced();
        self.close_sweeping();
        self.sweep_remaining();
        let cpu_sweep_prev = thread_cpu_time().saturating_sub(cpu0);

        // 2. Start. `marking`, then the fence in `wait_barriers`, against the
        // barrier's `in_barrier`, fence, `marking` (a Dekker pair: either
        // the barrier sees `marking`, or `wait_barriers` sees the barrier in
        // progress). SeqCst stores: Release for the barrier's Acquire.
        self.marked_bytes.store(0, Ordering::Relaxed);
        let sg = self.sweepgen.load(Ordering::Relaxed);
        self.alloc_colour.store(colour_word(true, sg), Ordering::SeqCst);
        self.marking.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let cycle = self.cycle.fetch_add(1, Ordering::SeqCst) + 1;
        self.wait_barriers();
        let t_start = t0.elapsed();
        {
            let roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
            for obj in roots.live() {
                self.shade(obj);
            }
        }
        self.shade_finalizer_roots();

        // 3. Concurrent mark, and 4. termination.
        let mark_begin = Instant::now();
        let cpu_mark0 = thread_cpu_time();
        let mut waits = 0u32;
        loop {
            self.drain(usize::MAX);
            // After the drain, so buffered objects are seen by the check,
            // which a mutator's full buffer may not reach on its own.
            self.flush_mutator_greys();
            if self.mutators_past(cycle) && self.grey_empty() {
                break;
            }
            backoff(waits);
            waits += 1;
        }
        // SeqCst: ordered before `marking` turns off, so an upgrade that
        // reads `marking == false` after this point sees it (`weak.rs`).
        self.mark_done.store(true, Ordering::SeqCst);
        // The same Dekker pair as at the start.
        self.marking.store(false, Ordering::SeqCst);
        self.wait_barriers();
        // What the barriers waited out buffered; no barrier buffers more
        // until the next cycle's start.
        self.flush_mutator_greys();
        self.drain(usize::MAX);
        // Weak handles to unreachable objects are cleared before any
        // finalizable object is revived for its finalizer.
        let weak_cleared = self.clear_dead_weak();
        let finalizers_queued = self.queue_finalizers();
        let mark_time = mark_begin.elapsed();
        let mark_cpu = thread_cpu_time().saturating_sub(cpu_mark0);

        // 5. Flip.
        let live = self.marked_bytes.load(Ordering::Relaxed);
        let flip_begin = Instant::now();
        {
            let mut l = self.lock_spans();
            let l = &mut *l;
            // Release pairs with the Acquire loads of `sweepgen` by
            // `claim_sweep` and `return_from_cache`.
            self.sweepgen.fetch_add(2, Ordering::Release);
            // The unswept lists are empty here (see `return_from_cache`): the
            // longer of the two lists becomes the unswept one by a swap, and
            // only the shorter is copied. Copying both, a pointer per span,
            // held this lock against every refill for as long as the heap
            // was large.
            for class in 0..NUM_CLASSES {
                debug_assert!(l.unswept[class].is_empty(), "unswept spans at the flip");
                let (p, f) = (&mut l.partial[class], &mut l.full[class]);
                let (longer, shorter) = if p.len() >= f.len() { (p, f) } else { (f, p) };
                std::mem::swap(&mut l.unswept[class], longer);
                l.unswept[class].append(shorter);
            }
            let sg = self.sweepgen.load(Ordering::Relaxed);
            self.alloc_colour.store(colour_word(false, sg), Ordering::SeqCst);
            let flip_epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            self.flip_epoch.store(flip_epoch, Ordering::SeqCst);
            // Under the lock, as `close_sweeping` stores it.
            self.sweep_allowed.store(true, Ordering::Relaxed);
        }
        // SeqCst: pairs with the SeqCst load in `weak.rs`'s upgrade; the
        // slots cleared above are visible to an upgrade that reads false.
        self.mark_done.store(false, Ordering::SeqCst);
        self.flush_idle_caches();
        let flip_time = flip_begin.elapsed();
        self.cycle_peak.store(in_use_at_start.max(self.in_use.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.set_goal(live);

        let cycle_time = t0.elapsed();
        let (goal, in_use) = (self.goal.load(Ordering::Relaxed), self.in_use.load(Ordering::Relaxed));
        {
            let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            st.cycles += 1;
            if forced {
                st.forced_cycles += 1;
            }
            st.live_bytes = live;
            st.heap_goal = goal;
            st.mark_cpu += mark_cpu;
            st.sweep_cpu += cpu_sweep_prev;
            st.last_cycle = cycle_time;
            st.weak_cleared += weak_cleared as u64;
            st.finalizers_queued += finalizers_queued as u64;
        }
        if self.config.lock().unwrap_or_else(|e| e.into_inner()).trace {
            crate::gc::stats::trace_line(
                cycle,
                self.started.elapsed(),
                t_start,
                mark_time,
                flip_time,
                in_use,
                live,
                goal,
                forced,
            );
        }
        // The heap will grow back to its reservation before the next cycle:
        // fault in what of it is not resident here, on the collector, rather
        // than in the mutators that would allocate into it (a page fault can
        // take hundreds of microseconds on a VM). Not for `collect()`, whose
        // caller waits for the cycle.
        #[cfg(not(gomalloc_loom))]
        if !forced {
            self.pages.populate_floor();
        }
    }

    /// Waits until no mutator is inside a write barrier and no root
    /// operation is shading.
    fn wait_barriers(&self) {
        // The collector's half of the Dekker pairs with `with_barrier` and
        // `root_barrier`: its `marking` store, this fence, then the loads.
        fence(Ordering::SeqCst);
        let muts = self.mutator_list();
        // Backing off, not spinning: a barrier is short, but on a loaded
        // machine its mutator can be descheduled inside it, and a spinning
        // collector would then burn the core that mutator needs (12% of
        // binary-trees' samples were this loop).
        for m in muts {
            let mut waits = 0u32;
            // Acquire pairs with the Release store that ends a barrier: its
            // shades are pushed.
            while m.in_barrier.load(Ordering::Acquire) {
                spin_then_back_off(waits);
                waits += 1;
            }
        }
        let mut waits = 0u32;
        // Acquire: as above, with `root_barrier`'s Release decrement.
        while self.root_barriers.load(Ordering::Acquire) != 0 {
            spin_then_back_off(waits);
            waits += 1;
        }
    }

    /// The barrier for root operations, which may run on a thread that is
    /// not a mutator: `f(marking)` finishes its shading before the collector
    /// can end marking.
    pub fn root_barrier<R>(&self, f: impl FnOnce(bool) -> R) -> R {
        // Increment, fence, load: the Dekker pair with the collector's
        // `marking` store, fence and `root_barriers` load (`wait_barriers`).
        // Acquire: as in `with_barrier`.
        self.root_barriers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let r = f(self.marking.load(Ordering::Acquire));
        self.root_barriers.fetch_sub(1, Ordering::Release);
        r
    }

    /// Makes sure no mutator caches a span from before the last flip: each
    /// is either flushed while outside `enter` (its cache is then empty, so
    /// it can bring back nothing stale) or has resynchronised inside (it
    /// hands stale spans back at its next allocation, refill or safepoint).
    /// A scope that does none of these delays the next cycle, never its
    /// safety. Mutators registered later start with an empty cache.
    fn wait_resynced(&self) {
        let flip = self.flip_epoch.load(Ordering::SeqCst);
        let muts = self.mutator_list();
        for m in muts {
            let mut waits = 0u32;
            while !m.flush_if_idle(self) && !m.resynced(flip) {
                backoff(waits);
                waits += 1;
            }
        }
    }

    /// True if every mutator is outside `enter` or entered during `cycle`.
    fn mutators_past(&self, cycle: u64) -> bool {
        // The collector's half of the Dekker pair with `MutatorState::enter`
        // (its `entered` CAS, fence, epoch load): the cycle's start was
        // stored before this fence, so a mutator read here as outside sees
        // it when it enters.
        fence(Ordering::SeqCst);
        let muts = self.mutators.lock().unwrap_or_else(|e| e.into_inner());
        muts.iter().all(|m| m.past(cycle))
    }

    /// A snapshot of the registered mutators, to visit without holding the
    /// list's lock (a visit may wait for a mutator, which may be registering).
    fn mutator_list(&self) -> Vec<Arc<MutatorState>> {
        self.mutators.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves every mutator's buffered greys to the shared queue.
    fn flush_mutator_greys(&self) {
        for m in self.mutator_list() {
            m.flush_greys(self);
        }
    }

    /// Flushes the caches of mutators that are outside `enter`.
    fn flush_idle_caches(&self) {
        for m in self.mutator_list() {
            m.flush_if_idle(self);
        }
    }

    /// A copy of the statistics.
    pub fn stats(&self) -> GcStats {
        let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (st.allocated_objects, st.allocated_bytes) = self.allocated.read();
        (st.freed_objects, st.freed_bytes) = self.freed.read();
        st.in_use_bytes = self.in_use.load(Ordering::Relaxed);
        st.heap_goal = self.goal.load(Ordering::Relaxed);
        st.gc_percent = self.gc_percent.load(Ordering::Relaxed);
        st.memory_limit = self.memory_limit.load(Ordering::Relaxed);
        let (pauses, max, total, count) = self.pauses.snapshot();
        st.recent_pauses = pauses;
        st.pause_max = max;
        st.pause_total = total;
        st.pause_count = count;
        st.span_bytes = self.span_pages.load(Ordering::Relaxed) * PAGE_SIZE;
        st.cached_spans = self.lock_spans().cached;
        st.roots = self.roots.lock().unwrap_or_else(|e| e.into_inner()).len();
        let f = self.finalizers.lock();
        st.finalizers_registered = f.registered.len();
        st.finalizers_ready = f.ready.len();
        st.finalizers_run = f.run;
        st.finalizers_panicked = f.panicked;
        drop(f);
        st.weak_slots = self.weak_slots.lock().unwrap_or_else(|e| e.into_inner()).len();
        st
    }

    /// Why the calling thread may not wait for a cycle or for finalizers,
    /// if it may not: the collector would wait for itself, and so would a
    /// `Drop` run by a sweep (the sweeping thread is the collector, or is
    /// counted by the sweep the cycle must close first).
    pub(crate) fn cannot_wait_here(&self) -> Option<&'static str> {
        if crate::gc::mutator::in_sweep_drop(self.id) {
            return Some("from a Drop (or destroy callback) run by a sweep (it would wait for that sweep)");
        }
        if *self.collector_thread.lock().unwrap_or_else(|e| e.into_inner()) == Some(thread::current().id()) {
            return Some("on the collector thread (it would wait for itself)");
        }
        None
    }

    /// Runs a full cycle and waits for it and for the sweep after it.
    pub fn collect_blocking(self: &Arc<Self>) {
        self.ensure_collector();
        let mut st = self.control.state.lock().unwrap_or_else(|e| e.into_inner());
        // A cycle already running started before this call and may have
        // marked what the caller has since dropped: wait for the one after.
        let target = st.completed + if st.running { 2 } else { 1 };
        st.requested = true;
        st.forced = true;
        self.control.wake.notify_one();
        while st.completed < target && !st.shutdown {
            st = self.control.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        self.finish_sweep();
    }

    /// Starts the collector thread if it is not running.
    pub fn ensure_collector(self: &Arc<Self>) {
        let mut handle = self.collector.lock().unwrap_or_else(|e| e.into_inner());
        if handle.is_some() {
            return;
        }
        let weak: Weak<HeapInner> = Arc::downgrade(self);
        let control = self.control.clone();
        let t = thread::Builder::new()
            .name(format!("gomalloc-gc-{}", self.id))
            .spawn(move || collector_main(weak, control))
            .expect("gomalloc: cannot start the GC collector thread");
        *self.collector_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.thread().id());
        *handle = Some(t);
    }
}

/// The collector thread: waits for requests, runs cycles, sweeps in
/// between; on shutdown, finishes the teardown if the last owner went on
/// this thread (see `HeapInner::shutdown`).
fn collector_main(heap: Weak<HeapInner>, control: Arc<Control>) {
    collector_loop(&heap, &control);
    if let Some(h) = heap.upgrade() {
        // Relaxed: set on this very thread.
        if h.teardown_deferred.load(Ordering::Relaxed) {
            h.teardown();
        }
    }
}

fn collector_loop(heap: &Weak<HeapInner>, control: &Control) {
    loop {
        let forced = {
            let mut st = control.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if st.shutdown {
                    return;
                }
                if st.requested {
                    break;
                }
                // Wake now and then to sweep in the background.
                let (g, _) =
                    control.wake.wait_timeout(st, Duration::from_millis(10)).unwrap_or_else(|e| e.into_inner());
                st = g;
                if !st.requested {
                    drop(st);
                    if let Some(h) = heap.upgrade() {
                        let mut n = 0;
                        while n < 64 {
                            match h.sweep_batch() {
                                0 => break,
                                k => n += k,
                            }
                        }
                    }
                    st = control.state.lock().unwrap_or_else(|e| e.into_inner());
                }
            }
            st.requested = false;
            std::mem::take(&mut st.forced)
        };
        let Some(h) = heap.upgrade() else { return };
        if !forced && !h.cycle_still_due() {
            continue;
        }
        let forced = {
            // Marked running only now, so `collect_blocking` never counts
            // on a cycle that was then found not due. A forced request that
            // came meanwhile is served by this cycle.
            let mut st = control.state.lock().unwrap_or_else(|e| e.into_inner());
            st.requested = false;
            st.running = true;
            forced | std::mem::take(&mut st.forced)
        };
        h.run_cycle(forced);
        {
            let mut st = control.state.lock().unwrap_or_else(|e| e.into_inner());
            st.completed += 1;
            st.running = false;
        }
        control.done.notify_all();
        // Background sweep until the next request.
        loop {
            if control.state.lock().unwrap_or_else(|e| e.into_inner()).requested {
                break;
            }
            if h.sweep_batch() == 0 {
                break;
            }
        }
    }
}

/// Hooks for the loom model of sweep ownership (`loom-tests/tests/gc.rs`,
/// `sweep_ownership_by_sweepgen_cas`): the list pop already makes a sweeper
/// the span's only holder, so to check `GcSpan::claim_sweep` on its own the
/// model pops a span once and lets two threads claim it.
#[cfg(gomalloc_loom)]
impl HeapInner {
    /// Pops an unswept span as `sweep_batch` does (counted in `sweeping`),
    /// without sweeping it; returns it with the `sweepgen` to sweep it for.
    pub(crate) fn model_pop_unswept(&self) -> Option<(*mut GcSpan, u64)> {
        let mut l = self.lock_spans();
        if !self.sweep_allowed.load(Ordering::Relaxed) {
            return None;
        }
        let s = l.unswept.iter_mut().find_map(Vec::pop)?;
        // SAFETY: listed spans are live.
        let prev = unsafe { (*s).holder.swap(3, Ordering::Relaxed) };
        debug_assert_eq!(prev, 1, "span {s:p} popped from unswept but not listed");
        self.sweeping.fetch_add(1, Ordering::Relaxed);
        Some((s, self.sweepgen.load(Ordering::Relaxed)))
    }

    /// Claims the span and, if this call won the claim, sweeps it: the
    /// sweeper's own steps, without the pop.
    ///
    /// # Safety
    /// `span` came from `model_pop_unswept` and is not filed yet.
    pub(crate) unsafe fn model_claim_and_sweep(&self, span: *mut GcSpan, sg: u64) -> bool {
        // SAFETY: the caller's span is live and unfiled; only the claim's
        // winner sweeps it, and the marking that set its bits is complete.
        unsafe {
            if !(*span).claim_sweep(sg) {
                return false;
            }
            let r = (*span).sweep(sg);
            self.account_sweep(r);
        }
        true
    }

    /// Files a span from `model_pop_unswept` as a sweeper does after its
    /// sweep.
    ///
    /// # Safety
    /// Every thread that claimed the span is done with it (joined).
    pub(crate) unsafe fn model_file(&self, span: *mut GcSpan) {
        // SAFETY: the caller's span is held by no one else now.
        unsafe { self.file_swept(span) };
        // Release pairs with the Acquire wait in `close_sweeping`.
        self.sweeping.fetch_sub(1, Ordering::Release);
    }
}

/// A counted owner of a heap: `Heap` and `Root` hold one. The collector
/// and finalizer threads hold the heap only weakly or for a moment, so when
/// the last owner goes, the heap shuts down right there, on that thread:
/// collector and finalizer threads stop and every object is dropped before
/// the owner's drop returns.
pub(crate) struct HeapRef(pub Arc<HeapInner>);

impl HeapRef {
    /// A new owner of a heap that has at least one (or is being created).
    pub fn new(inner: Arc<HeapInner>) -> HeapRef {
        inner.owners.fetch_add(1, Ordering::Relaxed);
        HeapRef(inner)
    }

    /// A new owner, unless the last one is gone (the heap is shutting down).
    pub fn revive(inner: Arc<HeapInner>) -> Option<HeapRef> {
        let mut n = inner.owners.load(Ordering::Relaxed);
        while n != 0 {
            match inner.owners.compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(HeapRef(inner)),
                Err(cur) => n = cur,
            }
        }
        None
    }
}

impl Clone for HeapRef {
    fn clone(&self) -> Self {
        HeapRef::new(self.0.clone())
    }
}

impl core::ops::Deref for HeapRef {
    type Target = Arc<HeapInner>;
    fn deref(&self) -> &Arc<HeapInner> {
        &self.0
    }
}

impl Drop for HeapRef {
    fn drop(&mut self) {
        // AcqRel: the last owner sees every other owner's work.
        if self.0.owners.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.shutdown();
        }
    }
}

impl Drop for HeapInner {
    fn drop(&mut self) {
        self.shutdown();
        // A shutdown the collector deferred and could not finish (its last
        // strong reference was its own) is finished here.
        self.teardown();
    }
}

impl HeapInner {
    /// Stops the collector and finalizer threads and drops every object.
    /// Runs once, when the last owner goes (or the heap is dropped without
    /// one).
    ///
    /// When the last owner goes on the collector thread itself (a `Root`
    /// held by an object its sweep drops, a pool value its cycle hook
    /// drops), the collector is in the middle of a step that may hold spans
    /// off the lists (a sweep batch) or go on using the heap (the rest of a
    /// cycle): the teardown waits until that step ends and the collector
    /// sees the shutdown (`collector_main`).
    pub(crate) fn shutdown(&self) {
        // AcqRel: pairs with the same swap by the other caller (the last
        // owner's drop, `HeapInner::drop`), so the one that returns early
        // sees what the winner did before it.
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut st = self.control.state.lock().unwrap_or_else(|e| e.into_inner());
            st.shutdown = true;
        }
        self.control.wake.notify_all();
        self.control.done.notify_all();
        let me = thread::current().id();
        let on_collector = *self.collector_thread.lock().unwrap_or_else(|e| e.into_inner()) == Some(me);
        if on_collector {
            self.teardown_deferred.store(true, Ordering::Relaxed);
            return;
        }
        if let Some(t) = self.collector.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        self.teardown();
    }

    /// The second half of `shutdown`, with the collector stopped or
    /// between steps: drops every object and gives the pages back. Runs once.
    fn teardown(&self) {
        // Relaxed: the swap only elects the one caller that runs it; what
        // it tears down was handed over by the join of the collector or by
        // the last `Arc`'s drop.
        if self.torn_down.swap(true, Ordering::Relaxed) {
            return;
        }
        self.stop_finalizers();
        // Every handle is gone (roots and mutator scopes hold the heap), so
        // every object dies now. Mutators' caches were flushed when their
        // states were dropped or deregistered.
        let muts = std::mem::take(&mut *self.mutators.lock().unwrap_or_else(|e| e.into_inner()));
        for m in &muts {
            m.flush_if_idle(self);
        }
        // Taken out of the lock: the objects' `Drop`s run user code.
        let lists: Vec<Vec<*mut GcSpan>> = {
            let mut l = self.lock_spans();
            let l = &mut *l;
            l.partial.iter_mut().chain(l.full.iter_mut()).chain(l.unswept.iter_mut()).map(std::mem::take).collect()
        };
        for list in lists {
            for s in list {
                // SAFETY: no handle to any object exists any more; each span
                // is on exactly one list.
                unsafe {
                    (*s).drop_all();
                    self.count_pages(s, false);
                    GcSpan::release(s, self.pages);
                }
            }
        }
        self.reserve_pages(0);
    }

    /// Sets this heap's reservation with the page heap's scavenger.
    fn reserve_pages(&self, pages: usize) {
        let old = self.reserved_pages.swap(pages, Ordering::Relaxed);
        self.pages.scavenger().reserve(old, pages);
    }

    /// Tells the scavenger that this heap took (`taken`) or is about to give
    /// back the pages of a span.
    fn count_pages(&self, span: *mut GcSpan, taken: bool) {
        // SAFETY: the caller holds the live span.
        let n = unsafe { (*span).span_bytes() } / PAGE_SIZE;
        if taken {
            self.span_pages.fetch_add(n, Ordering::Relaxed);
            self.pages.scavenger().held(n, 0);
        } else {
            self.span_pages.fetch_sub(n, Ordering::Relaxed);
            self.pages.scavenger().held(0, n);
        }
    }
}

/// The `alloc_colour` word for allocating black or white at sweepgen `sg`.
pub(crate) fn colour_word(black: bool, sg: u64) -> u64 {
    sg << 1 | u64::from(black)
}

/// A wait for something that is usually over within nanoseconds (a barrier):
/// spin first, then yield and sleep as `backoff` does.
fn spin_then_back_off(round: u32) {
    const SPINS: u32 = 64;
    if round < SPINS {
        crate::sync::spin_hint();
    } else {
        backoff(round - SPINS);
    }
}

/// CPU time of the calling thread.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
