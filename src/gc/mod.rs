//! A garbage-collected arena: concurrent tri-colour mark-sweep in the style of
//! Go's collector, over size-class spans from the allocator's own page heap.
//!
//! Opt-in: a program that never creates a [`Heap`] pays nothing for it — no
//! thread, no barrier, no check on the `malloc` paths.
//!
//! ```
//! use gomalloc::gc::{GcCell, Heap, Root, Trace};
//!
//! #[derive(Trace)]
//! struct Node<'gc> {
//!     value: u64,
//!     next: GcCell<'gc, Node<'gc>>,
//! }
//!
//! let heap = Heap::new();
//! // Handles live inside `enter`; a `Root` keeps an object between scopes.
//! let head: Root<Node<'static>> = heap.enter(|m| {
//!     let a = m.alloc(Node { value: 1, next: GcCell::new(None) });
//!     let b = m.alloc(Node { value: 2, next: GcCell::new(None) });
//!     a.next.set(m, Some(b)); // every update goes through the write barrier
//!     m.root(a)
//! });
//! heap.collect(); // a full, blocking cycle: both nodes are reachable
//! let sum = heap.enter(|m| {
//!     let a = head.get(m);
//!     a.value + a.next.get().unwrap().value
//! });
//! assert_eq!(sum, 3);
//! ```
//!
//! # Structure
//! - `ptr.rs`: `Gc<'gc, T>`, the object layout and type descriptor, `Rebrand`.
//! - `trace.rs`: `Trace` and its implementations; `#[derive(Trace)]` comes
//!   from `gomalloc-derive`.
//! - `cell.rs`: `GcCell`, `GcVec` — the barriered ways to change a handle.
//! - `root.rs`: `Root`, the heap's root set.
//! - `mutator.rs`: `Mutator`, per-thread allocation caches, the barrier.
//! - `gcspan.rs`: span headers with allocation and mark bitmaps, sweeping.
//! - `mark.rs`: shading, the grey queue and the mutators' grey buffers.
//! - `heap.rs`: the collector thread, the cycle, pacing.
//! - `stats.rs`: `GcStats`, pauses, `GOMALLOC_GCTRACE`.
//! - `weak.rs`: `Weak`, `WeakCell`, `WeakRoot` and their clearing.
//! - `finalize.rs`: finalizers and the finalizer thread.
//! - `raw.rs`: untyped objects with C trace and destroy callbacks, and the
//!   functions behind the C API (`gom_gc_*` in `include/gomalloc.h`).
//! - `pool.rs`: `Pool`, Go's `sync.Pool`: reusable values rotated to a
//!   victim generation at each cycle (a cycle hook), on a timer, or on demand.
//!
//! # Soundness
//! No use-after-free is reachable from safe code. The rules, and why each
//! holds:
//!
//! 1. **Handles do not escape their scope.** `Heap::enter` takes a closure
//!    generic over its lifetime `'gc` (`for<'gc> FnOnce(&Mutator<'gc>)`),
//!    and `Gc<'gc, T>` is invariant in `'gc`, so a handle cannot be returned,
//!    stored in a `'static` place, or mixed with another scope's or heap's:
//!    ```compile_fail
//!    let heap = gomalloc::gc::Heap::new();
//!    let leaked = heap.enter(|m| m.alloc(5u32)); // `'gc` would escape
//!    ```
//!    ```compile_fail
//!    use gomalloc::gc::{GcCell, Heap};
//!    let (a, b) = (Heap::new(), Heap::new());
//!    a.enter(|ma| b.enter(|mb| {
//!        let cell = ma.alloc(GcCell::<u32>::new(None));
//!        let x = mb.alloc(1u32);
//!        cell.set(ma, Some(x)); // a handle of heap `b` into heap `a`
//!    }));
//!    ```
//!    A handle is not `Send`, so it cannot reach a thread that is not a
//!    mutator of the scope:
//!    ```compile_fail
//!    let heap = gomalloc::gc::Heap::new();
//!    heap.enter(|m| {
//!        let x = m.alloc(1u32);
//!        std::thread::scope(|s| { s.spawn(move || *x); });
//!    });
//!    ```
//!    Between scopes an object is held by a `Root`, which the collector
//!    shades at the start of every cycle; creating, changing or dropping a
//!    root while marking shades the objects involved.
//! 2. **Every change of a traced handle goes through the barrier.** Objects
//!    are reached only through `&T` (`Gc` has no `DerefMut`), `Trace` is
//!    implemented only for immutable containers and the barriered cells, and
//!    a cell's `set` needs the scope's `Mutator`:
//!    ```compile_fail
//!    use gomalloc::gc::{GcCell, Heap};
//!    let heap = Heap::new();
//!    heap.enter(|m| {
//!        let cell = m.alloc(GcCell::<u32>::new(None));
//!        let x = m.alloc(1u32);
//!        *cell = GcCell::new(Some(x)); // no `&mut` to a GC object
//!    });
//!    ```
//!    While marking, the barrier shades both the old and the new handle
//!    (Go's hybrid barrier: deletion for the snapshot, insertion because
//!    mutator stacks are never scanned). That is also what lets the marker
//!    trace a large `GcVec` in several passes: an element that leaves the
//!    vector between passes was shaded as it left (`Tracer`).
//! 3. **Allocation is black while a cycle runs**, and a new object's initial
//!    handles are shaded when it is allocated, since they were stored
//!    without a barrier. That shading runs outside the barrier protocol:
//!    only a scope older than the cycle can hold an unmarked handle, and
//!    termination waits for such a scope to end (rule 4). A cache takes the
//!    colour and the sweepgen it applies to from one word, so it never
//!    allocates black into a span already swept for the next cycle.
//! 4. **Termination waits for every scope that predates the cycle.** Handles
//!    on a mutator's stack are not scanned. A mutator that entered its scope
//!    after the cycle started obtained every handle it holds after that
//!    point, from a root (shaded by rules 1–2), from a reachable object
//!    (traced, or shaded by the barrier when the handle was stored), or by
//!    allocation (black): all are marked. A mutator outside `enter` holds
//!    no handle. So the collector terminates marking only when every mutator
//!    is outside `enter` or entered after the cycle began (a ragged
//!    handshake at scope boundaries, never a stop-the-world), no grey object
//!    is left (the shared queue is empty after the collector has taken
//!    every mutator's barrier buffer), and no barrier that could have read
//!    a stale phase is in flight (a flag per mutator against the phase word,
//!    SC fences between); what such barriers shaded is taken and traced
//!    after they end.
//! 5. **Sweep never frees an object a scope can still reach**: rule 4 marks
//!    every such object, and objects allocated after the flip by scopes that
//!    had not yet seen it are allocated black (a scope re-reads the
//!    allocation colour, and hands stale spans to the sweeper first, at its
//!    next allocation).
//! 6. **`Drop` of an unreachable object cannot reach another GC object.**
//!    Objects of one sweep die in no particular order, so a `Drop` impl on a
//!    traced type could read a freed neighbour. `#[derive(Trace)]` makes a
//!    `Drop` impl on the derived type a compile error; fields' own `Drop`s
//!    (a `Vec`, a `String`, a `File`) run normally, and a `Gc` field has no
//!    `Drop`:
//!    ```compile_fail
//!    use gomalloc::gc::{GcCell, Trace};
//!    #[derive(Trace)]
//!    struct Node<'gc> { next: GcCell<'gc, Node<'gc>> }
//!    impl Drop for Node<'_> {
//!        fn drop(&mut self) { let _ = self.next.get(); }
//!    }
//!    ```
//!    `#[gc(skip)]` fields must be `'static`, and no handle is. A `Drop`
//!    that panics does not unwind out of the sweep: the sweep catches it,
//!    prints a line and goes on (a half-done sweep left a span listed twice
//!    and its pages freed twice; `tests/gc_drop_panic.rs`). A `Drop` that
//!    enters the heap it is swept by, inside a scope, panics ("not
//!    reentrant"), which is caught the same way.
//!
//! 7. **Marking and sweeping never overlap on a span, and no span carries an
//!    old cycle's marks into a new one.** Sweeping clears mark bits, so it is
//!    closed from sweep termination until the flip: every thread that pops
//!    an unswept span checks a flag (`sweep_allowed`) and counts itself in
//!    the sweeps in flight under the span-list lock; the collector clears
//!    the flag under the same lock, then waits for the count to reach zero.
//!    A span left unswept across a cycle start would be worse: `shade`
//!    would take its old mark bit for this cycle's and never trace the
//!    object, so anything it had come to point to could be freed while live
//!    (the torture test found exactly this). So a cycle starts only once
//!    every mutator has handed back its spans from before the last flip (or
//!    is outside, and its cache is flushed), and the collector, with
//!    sweeping closed, has swept every span still listed unswept
//!    (`sweep_remaining`); nothing lists a span unswept again before the
//!    flip. Every path that shades (write barriers, root operations,
//!    allocation assists, the children of a new object) runs inside a
//!    barrier the collector waits out before it ends marking, so no mark
//!    lands on a span after the flip.
//!
//! 8. **A weak handle never upgrades to a dead object.** Weak handles point
//!    at an untraced slot; the collector clears slots of unmarked objects
//!    after marking ends and before the flip. An upgrade while marking
//!    shades its object (a new handle for the scope, as in rule 4); an
//!    upgrade in the window between the end of marking and the flip waits
//!    for the flip and retries; outside it, a set slot names a live object.
//!    The protocol is argued step by step in `weak.rs`.
//! 9. **A finalizer never sees freed memory.** The children of every
//!    finalizable object are traced at each cycle's start (and at
//!    registration while marking), so when the object itself is found
//!    unmarked, everything it reaches is marked; the object is then marked
//!    too and stays a root until its finalizer takes it, inside a scope,
//!    through a barrier (`finalize.rs`).
//!
//! Long scopes delay a cycle (rules 4 and 7), never its safety: keep `enter`
//! scopes short in long-running threads, as with any safe-point.
//!
//! The collector's own locks are `std` mutexes: a `fork()` while a heap is
//! in use leaves the child with a heap it must not use.
//!
//! Finalizers follow Go: they run once, on a dedicated thread, may
//! resurrect their object, run in reachability order, and never run for
//! objects in a cycle through finalizable objects (such cycles are never
//! freed while the heap lives). See `Mutator::set_finalizer`.
//!
//! The GC's atomics and locks come from the sync shim, so these protocols
//! are checked by loom models driving the real heap
//! (`loom-tests/tests/gc.rs`; what each catches is in `loom-tests/README.md`).

mod cell;
mod finalize;
mod gcspan;
mod heap;
mod mark;
mod mutator;
#[cfg(not(gomalloc_loom))]
pub(crate) mod pool;
mod ptr;
#[cfg(not(gomalloc_loom))]
pub mod raw;
mod root;
mod stats;
mod trace;
mod weak;

pub use cell::{GcCell, GcVec};
pub use gomalloc_derive::Trace;
pub use heap::{parse_bytes, GcConfig};
pub use mutator::Mutator;
#[cfg(not(gomalloc_loom))]
pub use pool::Pool;
pub use ptr::{Gc, GcBox, Rebrand, TypeDesc};
pub use root::Root;
pub use stats::GcStats;
pub use trace::{Trace, Tracer};
pub use weak::{Weak, WeakCell, WeakRoot};

#[doc(hidden)]
pub use trace::__private;

use heap::{HeapInner, HeapRef};
use std::sync::Arc;

/// Wall time the calling thread has spent in the mutator slow paths of GC
/// heaps (all of them) since it started: scope entries that wait for the
/// collector or catch up with it, refilling its allocation cache (span
/// lists, lazy sweeping, allocation assists, new spans from the page heap),
/// allocating large objects, and catching up with the collector after a
/// phase change inside a scope. Allocation fast paths, write barriers and
/// scope entries with nothing to do are not counted.
///
/// A monitoring aid, cheap to read (a thread-local): the difference over a
/// stretch of work, beside the stretch's own time, is the share the
/// collector and the heap's refills took of it. The GC benchmark reads it
/// around every timed unit.
pub fn thread_slow_path_time() -> std::time::Duration {
    mutator::thread_slow_path_time()
}

/// An unswept span popped by [`Heap::model_pop_unswept`], for the loom
/// model of sweep ownership: the span and the `sweepgen` to sweep it for.
#[cfg(gomalloc_loom)]
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct ModelSpan {
    span: *mut gcspan::GcSpan,
    sg: u64,
}

// SAFETY: the pointer names a span header in page-heap memory, which no
// thread owns; the hooks that take a `ModelSpan` state who may use it.
#[cfg(gomalloc_loom)]
unsafe impl Send for ModelSpan {}
// SAFETY: as for `Send`; a `ModelSpan` is never written through.
#[cfg(gomalloc_loom)]
unsafe impl Sync for ModelSpan {}

/// A garbage-collected heap. Cheap to clone (a shared handle); `Send` and
/// `Sync`: any number of threads may `enter` it concurrently. Several heaps
/// can coexist; each has its own collector thread.
#[derive(Clone)]
pub struct Heap {
    inner: HeapRef,
}

#[cfg(not(gomalloc_loom))]
impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl Heap {
    /// A heap configured from the environment (`GOMALLOC_GC_PERCENT`,
    /// `GOMALLOC_MEMORY_LIMIT`, `GOMALLOC_GCTRACE`).
    #[cfg(not(gomalloc_loom))]
    pub fn new() -> Heap {
        Heap::with_config(GcConfig::from_env())
    }

    /// A heap with explicit settings.
    #[cfg(not(gomalloc_loom))]
    pub fn with_config(config: GcConfig) -> Heap {
        let inner = HeapInner::new(crate::globals::ALLOCATOR.heap(), config);
        inner.ensure_collector();
        Heap { inner: HeapRef::new(inner) }
    }

    /// A heap over `pages` with no collector thread, for the loom models:
    /// they run the collector's steps on threads of their own
    /// ([`Heap::model_cycle`]).
    #[cfg(gomalloc_loom)]
    #[doc(hidden)]
    pub fn for_model(pages: &'static crate::mheap::MHeap, config: GcConfig) -> Heap {
        Heap { inner: HeapRef::new(HeapInner::new(pages, config)) }
    }

    /// Runs one whole cycle on the calling thread (loom models).
    #[cfg(gomalloc_loom)]
    #[doc(hidden)]
    pub fn model_cycle(&self) {
        self.inner.run_cycle(true);
    }

    /// Sweeps every unswept span on the calling thread, unless sweeping is
    /// closed (loom models); returns how many it swept.
    #[cfg(gomalloc_loom)]
    #[doc(hidden)]
    pub fn model_sweep(&self) -> usize {
        let mut n = 0;
        loop {
            match self.inner.sweep_batch() {
                0 => return n,
                k => n += k,
            }
        }
    }

    /// Pops one unswept span as a sweeper does, without sweeping it (loom
    /// model of the `sweepgen` claim).
    #[cfg(gomalloc_loom)]
    #[doc(hidden)]
    pub fn model_pop_unswept(&self) -> Option<ModelSpan> {
        self.inner.model_pop_unswept().map(|(span, sg)| ModelSpan { span, sg })
    }

    /// Claims `span` for sweeping and sweeps it if the claim was won; true
    /// if it was (loom models). Any number of threads may race here.
    ///
    /// # Safety
    /// `span` came from [`Heap::model_pop_unswept`] on this heap and has not
    /// been given to [`Heap::model_file`].
    #[cfg(gomalloc_loom)]
    #[doc(hidden)]
    pub unsafe fn model_claim_and_sweep(&self, span: ModelSpan) -> bool {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.model_claim_and_sweep(span.span, span.sg) }
    }

    /// Files a popped span back on the span lists (loom models).
    ///
    /// # Safety
    /// As for [`Heap::model_claim_and_sweep`], and every thread that raced
    /// to claim `span` is done with it; `span` is not used again.
    #[cfg(gomalloc_loom)]
    #[doc(hidden)]
    pub unsafe fn model_file(&self, span: ModelSpan) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.model_file(span.span) };
    }

    /// Runs `f` as a mutator of this heap. Handles made inside cannot leave
    /// it; use [`Mutator::root`] to keep an object for a later scope.
    /// Not reentrant for the same heap on one thread.
    pub fn enter<R>(&self, f: impl for<'gc> FnOnce(&Mutator<'gc>) -> R) -> R {
        struct Leave<'a>(&'a mutator::MutatorState, &'a HeapInner);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.leave(self.1);
            }
        }
        let state = mutator::state_for(&self.inner);
        state.enter(&self.inner);
        let _leave = Leave(&state, &self.inner);
        let m = Mutator {
            heap: &*self.inner as *const Arc<HeapInner>,
            state: &*state,
            _brand: core::marker::PhantomData,
            _not_send: core::marker::PhantomData,
        };
        f(&m)
    }

    /// Runs a full cycle and the sweep after it, blocking the caller
    /// (Go's `runtime.GC`). Panics if the calling thread is inside `enter` of
    /// this heap (the cycle would wait for that scope to end), or is the
    /// collector or inside a `Drop` a sweep runs (the cycle would wait for
    /// the caller's own work).
    pub fn collect(&self) {
        let state = mutator::state_for(&self.inner);
        assert!(
            state.entered.load(crate::sync::Ordering::Relaxed) == 0,
            "gomalloc::gc: Heap::collect called inside Heap::enter of the same heap"
        );
        if let Some(why) = self.inner.cannot_wait_here() {
            panic!("gomalloc::gc: Heap::collect called {why}");
        }
        self.inner.collect_blocking();
    }

    /// Blocks until every finalizer queued so far has run. Finalizers are
    /// queued by cycles: `collect()` then `wait_for_finalizers()` runs the
    /// finalizers of everything unreachable at the time of the call. Panics
    /// if called from a finalizer, the collector or a `Drop` a sweep runs.
    pub fn wait_for_finalizers(&self) {
        if let Some(why) = self.inner.cannot_wait_here() {
            panic!("gomalloc::gc: Heap::wait_for_finalizers called {why}");
        }
        self.inner.wait_finalizers();
    }

    /// True while a cycle is marking (the write barrier is on). A cheap,
    /// racy read for monitoring, e.g. to split mutator throughput between
    /// time inside and outside cycles; it may be stale by the time it
    /// returns.
    pub fn is_marking(&self) -> bool {
        self.inner.marking.load(crate::sync::Ordering::Relaxed)
    }

    /// Statistics.
    pub fn stats(&self) -> GcStats {
        self.inner.stats()
    }

    /// Sets `gc_percent` (see [`GcConfig`]); returns the previous value.
    pub fn set_gc_percent(&self, percent: i32) -> i32 {
        let old = self.inner.gc_percent.swap(percent, crate::sync::Ordering::Relaxed);
        self.inner.set_goal(self.inner.stats.lock().unwrap_or_else(|e| e.into_inner()).live_bytes);
        old
    }

    /// Sets the soft memory limit in bytes (`usize::MAX` for none); returns
    /// the previous value.
    pub fn set_memory_limit(&self, bytes: usize) -> usize {
        let old = self.inner.memory_limit.swap(bytes, crate::sync::Ordering::Relaxed);
        self.inner.set_goal(self.inner.stats.lock().unwrap_or_else(|e| e.into_inner()).live_bytes);
        old
    }
}

impl<'gc> Mutator<'gc> {
    /// Keeps `gc` alive until the returned `Root` is dropped; the root hands
    /// the object back, with the brand of a later scope, through
    /// [`Root::get`].
    pub fn root<R: Rebrand>(&self, gc: Gc<'gc, R::Of<'gc>>) -> Root<R> {
        Root::new(self, gc)
    }
}
