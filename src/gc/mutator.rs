//! Mutators: a thread inside `Heap::enter`. Owns the thread's allocation
//! cache for a heap, the scope-boundary handshake, and the write barrier.
//!
//! Called by the public API (`Heap::enter`, `Mutator`), `cell.rs` and
//! `root.rs`. Calls `heap.rs` (spans, cycle requests) and `mark.rs`.
//!
//! # Concurrency
//! `MutatorState::entered` is the handshake word: 0 outside `enter`,
//! `cycle + 1` inside (the cycle number read on entry), `LOCKED` while the
//! collector flushes the cache of a mutator that is outside. The cache is
//! touched by the owning thread inside `enter`, or by the collector while it
//! holds `LOCKED`; never both. `in_barrier` pairs with `HeapInner::marking`
//! (a store, a SeqCst fence and a load on each side) so the collector can
//! wait out barriers that may have read a stale phase. `greys`, what the
//! barriers shaded, has a lock of its own: the owner takes it in a barrier,
//! the collector while it decides that marking is over (`mark.rs`).
//!
//! Invariant: a mutator allocating white is inside a scope that began before
//! the current cycle started (its cache synchronised before `alloc_colour`
//! turned black); the flip waits until every mutator has entered after the cycle
//! started, so no white allocation can land in a span that the flip makes
//! unswept. Mutators inside `enter` at the flip allocate black until they
//! resynchronise, which first hands their spans to the sweeper.

use crate::gc::gcspan::{objects_per_span, GcSpan, MAX_ALIGN};
use crate::gc::heap::{thread_cpu_time, HeapInner};
use crate::gc::mark::GreyBuffer;
use crate::gc::ptr::{GcBox, Invariant};
use crate::sizeclass::{aligned_size_to_class, size_to_class, MAX_SMALL_SIZE, NUM_CLASSES};
use crate::sync::{fence, AtomicBool, AtomicU64, Mutex, Ordering, UnsafeCell};
use core::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

const LOCKED: u64 = u64::MAX;
/// Bytes a mutator allocates before reporting them to the heap.
const REPORT_BYTES: usize = 64 << 10;
/// Marking work (objects traced plus handles they hold, see
/// `HeapInner::drain`) an assist does per refill while the heap is over its
/// goal. Each unit is a cache miss or two on a random graph: 2048 units took
/// up to 1.2 ms of thread CPU time on the graph benchmark, 512 at most
/// 133-278 µs, with as much assist time in all.
const ASSIST_WORK: usize = 512;
/// Smallest GC object: the bitmaps hold 512 objects per span (see gcspan.rs).
const MIN_OBJECT: usize = 16;

pub(crate) struct MutatorCache {
    spans: [*mut GcSpan; NUM_CLASSES],
    epoch: u64,
    alloc_black: bool,
    /// The heap's sweepgen at the last sync: only spans of that generation
    /// take black allocations (a newer span's mark bits belong to the next
    /// cycle).
    sync_sweepgen: u64,
    unreported_bytes: usize,
    unreported_objects: usize,
    /// Bytes allocated black in cycle `black_cycle`, added to the heap's
    /// `marked_bytes` with the other counters (`report`), not per object:
    /// that shared counter is written by the marker on every object it
    /// marks. A cycle's live figure misses, for each mutator still inside a
    /// scope at the flip, what it allocated black since its last report:
    /// about `REPORT_BYTES` plus one object (only pacing and statistics
    /// read it).
    black_bytes: usize,
    black_cycle: u64,
}

/// Per thread, per heap.
pub(crate) struct MutatorState {
    pub entered: AtomicU64,
    pub in_barrier: AtomicBool,
    /// The heap epoch of this mutator's last resynchronisation (read by the
    /// collector before a cycle starts: see `HeapInner::wait_resynced`).
    pub synced_epoch: AtomicU64,
    /// Objects this mutator's write barriers shaded (see `mark.rs`).
    pub greys: Mutex<GreyBuffer>,
    cache: UnsafeCell<MutatorCache>,
}

// SAFETY: the cache is used by one thread at a time, as the handshake word
// arbitrates (module header); everything else is atomic.
unsafe impl Sync for MutatorState {}
// SAFETY: as above; the cache's raw pointers name span headers in page-heap
// memory owned by the heap, not by a thread.
unsafe impl Send for MutatorState {}

impl MutatorState {
    pub fn new() -> MutatorState {
        MutatorState {
            entered: AtomicU64::new(0),
            in_barrier: AtomicBool::new(false),
            synced_epoch: AtomicU64::new(0),
            greys: Mutex::new(GreyBuffer::new()),
            cache: UnsafeCell::new(MutatorCache {
                spans: [core::ptr::null_mut(); NUM_CLASSES],
                epoch: 0,
                alloc_black: false,
                sync_sweepgen: 0,
                unreported_bytes: 0,
                black_bytes: 0,
                black_cycle: 0,
                unreported_objects: 0,
            }),
        }
    }

    /// The cache, for its current user: the owning thread inside `enter`,
    /// or the collector while it holds `LOCKED`. Under loom the access is
    /// recorded here, so a model in which both use it at once fails.
    ///
    /// # Safety
    /// The caller is the cache's current user (module header) and holds no
    /// other reference to it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn cache_mut(&self) -> &mut MutatorCache {
        // SAFETY: the caller is the cache's sole user for now.
        self.cache.with_mut(|p| unsafe { &mut *p })
    }

    /// True if the mutator has resynchronised since the flip that produced
    /// `flip_epoch`, so its cache holds no span from before it.
    pub fn resynced(&self, flip_epoch: u64) -> bool {
        self.synced_epoch.load(Ordering::Acquire) >= flip_epoch
    }

    /// True if the mutator is outside `enter` or entered during `cycle` or
    /// later.
    pub fn past(&self, cycle: u64) -> bool {
        // SeqCst: ordered with the collector's `cycle` increment, so an entry
        // that read an older cycle is seen as such.
        let e = self.entered.load(Ordering::SeqCst);
        e == 0 || e == LOCKED || e > cycle
    }

    /// The collector flushes the cache of a mutator that is outside `enter`.
    /// Returns true if it did (the mutator was outside).
    pub fn flush_if_idle(&self, heap: &HeapInner) -> bool {
        // Acquire pairs with the Release in `leave`: the owner's cache writes
        // are visible.
        if self.entered.compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            // SAFETY: LOCKED gives the collector sole use of the cache.
            unsafe { flush(self.cache_mut(), heap) };
            // Release pairs with the Acquire of the owner's next `enter`.
            self.entered.store(0, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// True if the owning thread is inside `enter`. Exact when asked by that
    /// thread (only it moves the word between 0 and a cycle number); from
    /// another thread, a snapshot (the C API's misuse check in
    /// `gom_gc_heap_free`, where a thread entering meanwhile is misuse too).
    pub fn inside(&self) -> bool {
        let e = self.entered.load(Ordering::Relaxed);
        e != 0 && e != LOCKED
    }

    /// Marks the calling thread inside `enter`.
    pub fn enter(&self, heap: &HeapInner) {
        let wait = Instant::now();
        let mut waited = false;
        loop {
            // SeqCst: see `past`.
            let cycle = heap.cycle.load(Ordering::SeqCst);
            match self.entered.compare_exchange(0, cycle + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(LOCKED) => {
                    waited = true;
                    crate::sync::spin_hint();
                }
                Err(_) => panic!("gomalloc::gc: Heap::enter is not reentrant for the same heap on one thread"),
            }
        }
        // The Dekker pair with the collector's termination check
        // (`mutators_past`: fence, then `entered`): if the collector read
        // this mutator as outside, this scope must see the cycle's start
        // (allocation black, the new epoch) in `sync` below, or it could
        // allocate white after termination into a span the flip is about to
        // make unswept, and the object would die reachable. Found by the
        // loom model `allocation_during_a_cycle_is_black`.
        fence(Ordering::SeqCst);
        if waited {
            heap.pauses.record(wait.elapsed());
        }
        // SAFETY: the thread is inside `enter`: the cache is its own.
        let c = unsafe { self.cache_mut() };
        let stale = c.epoch != heap.epoch.load(Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { self.sync(c, heap) };
        if waited || stale {
            charge_slow_path(wait);
        }
    }

    /// Marks the calling thread outside `enter`.
    pub fn leave(&self, heap: &HeapInner) {
        // SAFETY: still inside: the cache is ours.
        unsafe { report(self.cache_mut(), heap) };
        // Release pairs with the collector's Acquire in `flush_if_idle`.
        self.entered.store(0, Ordering::Release);
    }

    /// Brings the cache up to the heap's epoch: hands stale spans to the
    /// sweeper and takes the allocation colour.
    ///
    /// # Safety
    /// The caller owns the cache (inside `enter`).
    #[cold]
    unsafe fn sync(&self, c: &mut MutatorCache, heap: &HeapInner) {
        // Acquire pairs with the SeqCst updates in `run_cycle`: a new epoch
        // implies the colour written before it. The colour may be newer
        // than the epoch (a phase change between the two loads); it is
        // still one phase's (colour, sweepgen) pair, and the next
        // allocation sees the newer epoch and syncs again.
        let epoch = heap.epoch.load(Ordering::Acquire);
        if epoch == c.epoch {
            return;
        }
        let t = Instant::now();
        // Acquire: as above.
        let colour = heap.alloc_colour.load(Ordering::Acquire);
        let (black, sg) = (colour & 1 != 0, colour >> 1);
        let mut flushed = false;
        for s in c.spans.iter_mut() {
            // SAFETY: cached spans are live and ours.
            if !s.is_null() && unsafe { (**s).sweepgen.load(Ordering::Relaxed) } < sg {
                heap.return_from_cache(*s);
                *s = core::ptr::null_mut();
                flushed = true;
            }
        }
        c.alloc_black = black;
        c.sync_sweepgen = sg;
        c.epoch = epoch;
        // Release pairs with the collector's Acquire in `wait_resynced`: the
        // stale spans were handed back before this is seen.
        self.synced_epoch.store(epoch, Ordering::Release);
        if flushed {
            heap.pauses.record(t.elapsed());
        }
    }

    /// Allocates `size` bytes aligned to `align` for an object; returns the
    /// slot and whether it must be marked (allocated black).
    ///
    /// # Safety
    /// The caller is the owning thread, inside `enter`.
    /// A large object's span comes back as the third value: the caller hands
    /// it to `HeapInner::return_from_cache` once the object is written.
    pub unsafe fn alloc_slot(
        &self,
        heap: &HeapInner,
        size: usize,
        align: usize,
    ) -> (*mut GcBox<()>, bool, *mut GcSpan) {
        assert!(align <= MAX_ALIGN, "gomalloc::gc: alignment {align} is above the supported {MAX_ALIGN}");
        // SAFETY: inside `enter`: the cache is ours.
        let c = unsafe { self.cache_mut() };
        if c.epoch != heap.epoch.load(Ordering::Relaxed) {
            // SAFETY: as above.
            slow_path(|| unsafe { self.sync(c, heap) });
        }
        let size = size.max(MIN_OBJECT);
        let class = if size > MAX_SMALL_SIZE {
            0
        } else if align <= 8 {
            size_to_class(size)
        } else {
            aligned_size_to_class(size, align)
        };
        // Classes with room for no object beside the span header go large.
        let class = if class != 0 && objects_per_span(class) == 0 { 0 } else { class };
        let (obj, span) = if class != 0 {
            let mut span = c.spans[class];
            // SAFETY: cached spans are live and held by this cache.
            let slot = if span.is_null() { None } else { unsafe { (*span).take_free_slot() } };
            let slot = match slot {
                Some(s) => s,
                None => {
                    // SAFETY: as above.
                    let (s, slot) = slow_path(|| unsafe { self.refill(c, heap, class) });
                    span = s;
                    slot
                }
            };
            // SAFETY: the span is live; the slot is ours.
            unsafe { ((*span).object(slot), span) }
        } else {
            // A new span is fresh: the colour must be current (see `refill`).
            let span = slow_path(|| {
                // SAFETY: as above.
                unsafe { self.sync(c, heap) };
                heap.large_span(size)
            });
            if span.is_null() {
                crate::os::fatal(format_args!("GC heap out of memory allocating {size} bytes"));
            }
            // SAFETY: a fresh span; slot 0 is its object.
            unsafe { ((*span).object(0), span) }
        };
        // SAFETY: the span is live and holds the new object.
        let (bytes, span_gen) = unsafe { ((*span).elem_size, (*span).sweepgen.load(Ordering::Relaxed)) };
        let black = c.alloc_black && span_gen == c.sync_sweepgen;
        c.unreported_bytes += bytes;
        c.unreported_objects += 1;
        if c.unreported_bytes >= REPORT_BYTES {
            report(c, heap);
            heap.maybe_trigger();
        }
        (obj, black, if class != 0 { core::ptr::null_mut() } else { span })
    }

    /// Slow path: a new span for `class` in the cache, and a slot from it.
    ///
    /// # Safety
    /// The caller owns the cache.
    #[cold]
    unsafe fn refill(&self, c: &mut MutatorCache, heap: &HeapInner, class: usize) -> (*mut GcSpan, usize) {
        // The new span is swept for the current sweepgen, so its mark bits
        // belong to the next cycle: allocating black into it (with a colour
        // not yet updated after a flip) would make garbage float a cycle.
        // SAFETY: forwarded: the caller owns the cache.
        unsafe { self.sync(c, heap) };
        report(c, heap);
        heap.maybe_trigger();
        if heap.marking.load(Ordering::Relaxed)
            && heap.in_use.load(Ordering::Relaxed) > heap.goal.load(Ordering::Relaxed)
        {
            // Allocation outruns marking: help. Never waits for the cycle.
            // Inside a barrier, so the collector cannot see an empty queue
            // and end marking while this thread holds popped grey objects.
            let (t, cpu) = (Instant::now(), thread_cpu_time());
            self.with_barrier(heap, |marking| {
                if marking {
                    // Its own greys first: they are the freshest work.
                    self.flush_greys(heap);
                    heap.drain(ASSIST_WORK);
                }
            });
            let took = t.elapsed();
            let took_cpu = thread_cpu_time().saturating_sub(cpu);
            let mut st = heap.stats.lock().unwrap_or_else(|e| e.into_inner());
            st.assist_time += took;
            st.assists += 1;
            st.assist_max = st.assist_max.max(took);
            st.assist_cpu_max = st.assist_cpu_max.max(took_cpu);
        }
        let old = c.spans[class];
        if !old.is_null() {
            // Out of the cache before it goes back: nothing after this may
            // find it here (a second hand-back would list it twice).
            c.spans[class] = core::ptr::null_mut();
            heap.return_from_cache(old);
        }
        loop {
            let span = heap.span_for_cache(class);
            if span.is_null() {
                crate::os::fatal(format_args!("GC heap out of memory"));
            }
            // SAFETY: the heap handed this cache a live span.
            if let Some(slot) = unsafe { (*span).take_free_slot() } {
                c.spans[class] = span;
                return (span, slot);
            }
            heap.return_from_cache(span);
        }
    }

    /// Runs `f(marking)` as a barrier: any shading or tracing `f` does is
    /// finished before the collector can end marking. Every path that
    /// shades goes through here (or `HeapInner::root_barrier`), except a
    /// black allocation's shading of its own handles (`mark_new` says why).
    pub fn with_barrier<R>(&self, heap: &HeapInner, f: impl FnOnce(bool) -> R) -> R {
        // The Dekker pair with the collector (`run_cycle` stores `marking`,
        // then `wait_barriers` fences and reads `in_barrier`): each side
        // stores its flag, fences (SeqCst), then reads the other's. So
        // either this barrier reads the new `marking`, or the collector sees
        // `in_barrier` and waits for it. Fences rather than SeqCst accesses:
        // the same guarantee, and loom models fences exactly.
        self.in_barrier.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Cleared on every exit, unwinding included: a barrier left marked
        // would hold every later cycle in `wait_barriers` for as long as the
        // thread lives (a caught panic of user code run inside one, such as
        // the drop of a rejected finalizer's captures).
        struct Exit<'a>(&'a AtomicBool);
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                // Release: the collector's wait sees the shades pushed.
                self.0.store(false, Ordering::Release);
            }
        }
        let _exit = Exit(&self.in_barrier);
        // Acquire pairs with the collector's SeqCst (so Release) stores of
        // `marking`: what it published before them (`mark_done`) is seen.
        f(heap.marking.load(Ordering::Acquire))
    }

    /// Runs a barriered pointer update: `update` stores the new value and
    /// returns the old one; while marking, both are shaded.
    pub fn barrier(&self, heap: &HeapInner, new: *const GcBox<()>, update: impl FnOnce() -> *const GcBox<()>) {
        self.with_barrier(heap, |marking| {
            let old = update();
            if marking {
                heap.shade_buffered(old, &self.greys);
                heap.shade_buffered(new, &self.greys);
            }
        });
    }

    /// Moves what this mutator's barriers shaded to the heap's grey queue.
    /// Called by the collector before it decides marking is over, by an
    /// assist, and when the mutator leaves the heap for good.
    pub fn flush_greys(&self, heap: &HeapInner) {
        let mut b = self.greys.lock().unwrap_or_else(|e| e.into_inner());
        if !b.is_empty() {
            heap.flush_grey_buffer(&mut b);
        }
    }
}

impl Default for MutatorState {
    fn default() -> Self {
        MutatorState::new()
    }
}

/// Counts `bytes` allocated black in the cache, for `report`.
fn count_black(c: &mut MutatorCache, heap: &HeapInner, bytes: usize) {
    let cycle = heap.cycle.load(Ordering::Relaxed);
    if c.black_cycle != cycle {
        // Marked in a cycle that has ended: its count is closed.
        c.black_bytes = 0;
        c.black_cycle = cycle;
    }
    c.black_bytes += bytes;
}

/// Adds a cache's unreported allocation to the heap's counters.
fn report(c: &mut MutatorCache, heap: &HeapInner) {
    if c.black_bytes != 0 {
        if heap.cycle.load(Ordering::Relaxed) == c.black_cycle {
            heap.marked_bytes.fetch_add(c.black_bytes, Ordering::Relaxed);
        }
        c.black_bytes = 0;
    }
    if c.unreported_bytes == 0 {
        return;
    }
    heap.in_use.fetch_add(c.unreported_bytes, Ordering::Relaxed);
    heap.allocated.add(c.unreported_objects, c.unreported_bytes);
    c.unreported_bytes = 0;
    c.unreported_objects = 0;
}

/// Gives every cached span back to the heap.
fn flush(c: &mut MutatorCache, heap: &HeapInner) {
    report(c, heap);
    for s in c.spans.iter_mut() {
        if !s.is_null() {
            heap.return_from_cache(*s);
            *s = core::ptr::null_mut();
        }
    }
}

/// A thread's mutator for one heap, kept in a thread-local list.
struct Registration {
    heap: std::sync::Weak<HeapInner>,
    heap_id: usize,
    state: Arc<MutatorState>,
}

impl Drop for Registration {
    /// Thread exit: its cache goes back and it leaves the heap's mutator
    /// list. A thread that ends inside a scope (a C thread that returned
    /// without `gom_gc_leave`) leaves it here first: its handles died with
    /// its stack. Left inside, its cache could not be flushed, so its spans
    /// were never swept again, and their stale mark bits hid live objects
    /// from later cycles (an object reachable from a root was freed).
    fn drop(&mut self) {
        if let Some(heap) = self.heap.upgrade() {
            if self.state.inside() {
                self.state.leave(&heap);
            }
            self.state.flush_if_idle(&heap);
            // Before it leaves the list the collector takes buffers from.
            self.state.flush_greys(&heap);
            let mut muts = heap.mutators.lock().unwrap_or_else(|e| e.into_inner());
            muts.retain(|m| !Arc::ptr_eq(m, &self.state));
        }
    }
}

#[cfg(not(gomalloc_loom))]
thread_local! {
    static REGISTRATIONS: std::cell::RefCell<Vec<Registration>> = const { std::cell::RefCell::new(Vec::new()) };
    static SLOW_PATH_NS: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
    static SWEEP_TOP: core::cell::Cell<*const SweepFrame> = const { core::cell::Cell::new(core::ptr::null()) };
}
// Loom runs every modelled thread on one OS thread: its own thread-locals.
#[cfg(gomalloc_loom)]
loom::thread_local! {
    static REGISTRATIONS: std::cell::RefCell<Vec<Registration>> = std::cell::RefCell::new(Vec::new());
    static SLOW_PATH_NS: core::cell::Cell<u64> = core::cell::Cell::new(0);
    static SWEEP_TOP: core::cell::Cell<*const SweepFrame> = core::cell::Cell::new(core::ptr::null());
}

/// One `Drop` a sweep of heap `heap` runs on this thread, linked to the one
/// it runs inside, if any (a `Drop` may use another heap, whose allocation
/// sweeps): a stack threaded through the callers' frames.
struct SweepFrame {
    heap: usize,
    outer: *const SweepFrame,
}

/// Runs `f`, a dead object's `Drop` run by a sweep of heap `heap` (its id),
/// with the calling thread marked as inside one (see [`in_sweep_drop`]).
pub(crate) fn as_sweep_drop<R>(heap: usize, f: impl FnOnce() -> R) -> R {
    struct Pop(*const SweepFrame);
    impl Drop for Pop {
        fn drop(&mut self) {
            SWEEP_TOP.with(|t| t.set(self.0));
        }
    }
    let frame = SweepFrame { heap, outer: SWEEP_TOP.with(|t| t.get()) };
    SWEEP_TOP.with(|t| t.set(&frame));
    let _pop = Pop(frame.outer);
    f()
}

/// True inside a `Drop` that a sweep of heap `heap` runs on this thread,
/// however deeply nested: that sweep is counted by the heap's cycle (or is
/// the collector's), so waiting there for one of its cycles or for its
/// finalizers would wait for itself. Another heap's sweep does not matter.
pub(crate) fn in_sweep_drop(heap: usize) -> bool {
    let mut f = SWEEP_TOP.with(|t| t.get());
    while !f.is_null() {
        // SAFETY: each frame lives in the frame of an `as_sweep_drop` call
        // still running on this thread (popped before that call returns or
        // unwinds), so every frame on the list is alive.
        let frame = unsafe { &*f };
        if frame.heap == heap {
            return true;
        }
        f = frame.outer;
    }
    false
}

/// Runs `f`, a mutator slow path, and adds its wall time to the calling
/// thread's `thread_slow_path_time`. Callers do not nest.
fn slow_path<R>(f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    charge_slow_path(t);
    r
}

/// Adds the time since `since` to the calling thread's slow-path time.
fn charge_slow_path(since: Instant) {
    let took = since.elapsed().as_nanos() as u64;
    SLOW_PATH_NS.with(|ns| ns.set(ns.get() + took));
}

/// See `gomalloc::gc::thread_slow_path_time`.
pub(crate) fn thread_slow_path_time() -> core::time::Duration {
    core::time::Duration::from_nanos(SLOW_PATH_NS.with(|ns| ns.get()))
}

/// The calling thread's mutator state for `heap`, registering it first.
pub(crate) fn state_for(heap: &Arc<HeapInner>) -> Arc<MutatorState> {
    REGISTRATIONS.with(|r| {
        let mut regs = r.borrow_mut();
        regs.retain(|reg| reg.heap.strong_count() > 0);
        if let Some(reg) = regs.iter().find(|reg| reg.heap_id == heap.id) {
            return reg.state.clone();
        }
        let state = Arc::new(MutatorState::new());
        heap.mutators.lock().unwrap_or_else(|e| e.into_inner()).push(state.clone());
        regs.push(Registration { heap: Arc::downgrade(heap), heap_id: heap.id, state: state.clone() });
        state
    })
}

/// Forgets the calling thread's mutator for `heap` (which must be outside
/// `enter`): its cache goes back and it leaves the heap's mutator list, as
/// at thread exit. A later `enter` registers it again. For the C API.
#[cfg(not(gomalloc_loom))]
pub(crate) fn deregister(heap: &Arc<HeapInner>) {
    let reg = REGISTRATIONS.with(|r| {
        let mut regs = r.borrow_mut();
        let at = regs.iter().position(|reg| reg.heap_id == heap.id)?;
        Some(regs.swap_remove(at))
    });
    // Dropped outside the thread-local's borrow: it takes heap locks.
    drop(reg);
}

/// The capability to use GC handles branded `'gc`: one per `Heap::enter`
/// scope. Not `Send`: it is the calling thread's.
pub struct Mutator<'gc> {
    pub(crate) heap: *const Arc<HeapInner>,
    pub(crate) state: *const MutatorState,
    pub(crate) _brand: Invariant<'gc>,
    pub(crate) _not_send: PhantomData<*const ()>,
}

impl<'gc> Mutator<'gc> {
    #[inline]
    pub(crate) fn heap(&self) -> &HeapInner {
        // SAFETY: `enter` keeps the heap alive for the whole scope.
        unsafe { &*self.heap }
    }

    /// The heap, shared.
    pub(crate) fn heap_arc(&self) -> Arc<HeapInner> {
        // SAFETY: as for `heap`.
        unsafe { (*self.heap).clone() }
    }

    #[inline]
    pub(crate) fn state(&self) -> &MutatorState {
        // SAFETY: `enter` keeps the state alive for the whole scope.
        unsafe { &*self.state }
    }

    /// Allocates `value` in the GC heap.
    pub fn alloc<T: crate::gc::Trace + Send + Sync + 'gc>(&self, value: T) -> crate::gc::Gc<'gc, T> {
        let size = core::mem::size_of::<GcBox<T>>();
        // SAFETY: the closure writes a whole `GcBox<T>` with `T`'s
        // descriptor into a slot sized and aligned for it.
        let obj = unsafe {
            self.alloc_init(size, core::mem::align_of::<GcBox<T>>(), core::mem::needs_drop::<T>(), |slot| {
                core::ptr::write(slot.cast::<GcBox<T>>(), GcBox { desc: &GcBox::<T>::DESC, value })
            })
        };
        // SAFETY: the object is initialised; it is black, or white in a
        // scope that began before the current cycle (see the module header).
        unsafe { crate::gc::Gc::from_raw(obj.cast::<GcBox<T>>()) }
    }

    /// Allocates an object of `size` bytes (header included) aligned to
    /// `align`, which `init` writes before the collector can see it. Shared
    /// by `alloc` and the untyped objects of the C API (`raw.rs`).
    /// `needs_drop` says whether the descriptor's `drop` does anything:
    /// sweeping skips the drops of spans that never held such an object.
    ///
    /// # Safety
    /// `init` must write, at the slot it is given, a descriptor and a value
    /// that the descriptor's `trace` and `drop` accept, within `size` bytes;
    /// `needs_drop` is true unless that `drop` is a no-op.
    pub(crate) unsafe fn alloc_init(
        &self,
        size: usize,
        align: usize,
        needs_drop: bool,
        init: impl FnOnce(*mut GcBox<()>),
    ) -> *mut GcBox<()> {
        let heap = self.heap();
        // SAFETY: this thread is inside `enter` and owns the state's cache.
        let (obj, black, large) = unsafe { self.state().alloc_slot(heap, size, align) };
        init(obj);
        if needs_drop {
            // Sweeping skips the drops of spans that never held such a type.
            // SAFETY: the new object lives in a span of this heap, still held
            // by this cache (or, if large, not yet handed back).
            unsafe { (*GcSpan::of(heap.pages, obj as *const GcBox<()>)).note_drop() };
        }
        if black {
            // No barrier: see `mark_new`.
            let bytes = heap.mark_new(obj as *const GcBox<()>);
            // SAFETY: inside `enter`, the cache is ours.
            count_black(unsafe { self.state().cache_mut() }, heap, bytes);
        }
        if !large.is_null() {
            heap.return_from_cache(large);
        }
        obj
    }

    /// A point where the collector may make progress, for long loops that
    /// neither allocate nor leave the scope. Allocation and barriers already
    /// are such points; a cycle still waits for every mutator to leave the
    /// scope it was in when the cycle started.
    pub fn safepoint(&self) {
        // SAFETY: inside `enter`, the cache is ours.
        unsafe {
            let c = self.state().cache_mut();
            if c.epoch != self.heap().epoch.load(Ordering::Relaxed) {
                slow_path(|| self.state().sync(c, self.heap()));
            }
        }
    }
}
