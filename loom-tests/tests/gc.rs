//! Model 5, the GC: the real `gomalloc::gc` heap (`Heap::for_model`: no
//! collector thread; the models run the collector's whole cycle,
//! `Heap::model_cycle`, and its sweep, `Heap::model_sweep`, on threads of
//! their own) against a mutator thread using the public API.
//!
//! Objects carry a checksum and a drop counter. Most models end with the
//! same audit: after the threads join, a final sequential cycle and sweep,
//! every object the mutator can still reach is intact and was never dropped,
//! and everything else was dropped exactly once (`audit`). The sweep
//! ownership and weak-sweep models use `Mortal` objects instead: a drop
//! count per object, and contents loom tracks, so that a use or a second
//! drop racing a sweep is reported by loom itself.
//!
//! - `barrier_keeps_a_moved_object`: the mutator moves the only reference
//!   to B from one field of the root object to another while a cycle runs
//!   (the lost-object race the write barrier exists for). Invariant: B is
//!   marked at termination, so it survives (tri-colour invariant).
//! - `buffered_shade_is_traced`: as above, but B holds D. The barrier
//!   shades B into the mutator's grey buffer, not the shared queue; then,
//!   in a new scope, the mutator moves D from B to the root. Invariant: the
//!   collector takes the buffer before it decides that marking is over (so
//!   no grey object is left when barriers stop), and once more after the
//!   last barriers; D survives.
//! - `allocation_during_a_cycle_is_black`: the mutator allocates C and
//!   stores it in the root object while a cycle runs. Invariant: C
//!   survives, whatever phase the store lands in.
//! - `termination_waits_for_older_scopes`: the mutator takes B, unlinks it,
//!   and keeps using it in the same scope while a cycle runs. Invariant: B
//!   is not dropped while the scope that holds it is open (the ragged
//!   handshake at scope boundaries).
//! - `weak_upgrade_races_the_cycle`: X is only weakly reachable; the
//!   mutator upgrades its weak root while a cycle runs. Invariant: an
//!   upgrade that returns X keeps it alive for the scope; one that returns
//!   `None` means X is dropped. Both outcomes occur.
//! - `sweeping_stops_before_marking`: a sweeper thread sweeps the previous
//!   cycle's spans while the next cycle closes sweeping and starts.
//!   Invariant: no sweep overlaps marking (a sweep that does clears the
//!   marks of R and B, which then die); live objects survive, garbage dies
//!   once. Explored at a preemption bound of at least 4.
//! - `lazy_sweep_in_flight_ends_before_marking`: after a cycle, the root
//!   object's span is unswept with its mark bit still set; the mutator
//!   allocates C (popping that span to sweep it lazily) and stores it in
//!   the root while the next cycle starts. Invariant: R and C survive: the
//!   cycle waits for the lazy sweep in flight before it marks.
//! - `unswept_span_is_swept_before_marking`: the root H (its own size class)
//!   is left unswept with its mark bit set by a cycle, and holds C, white;
//!   a sweeper thread sweeps while the next cycle starts. Invariant: no
//!   span enters marking unswept (the sweeper or the collector sweeps it
//!   first), so H is traced and C survives.
//! - `sweep_ownership_by_sweepgen_cas`: an unswept span holding R (rooted)
//!   and the garbage D1 and D2 is popped once, then two threads claim and
//!   sweep it (`GcSpan::claim_sweep`, `GcSpan::sweep`). Invariant: exactly
//!   one claim wins (each thread wins in some execution), D1 and D2 are
//!   dropped exactly once, R is intact.
//! - `weak_upgrade_races_the_sweep`: R (rooted) and X (only weakly
//!   reachable) share a span; a cycle runs on one thread, a sweeper sweeps
//!   on another (X's span, if the flip has made it unswept), and the mutator
//!   upgrades X's weak root and uses the result. Invariant: an upgrade never
//!   hands out X once the cycle has found it dead: a returned X is intact
//!   through the scope, `None` means X is dropped exactly once by the sweeps
//!   after the cycle. All four combinations of the upgrade's outcome and
//!   whether the sweeper dropped X occur.
//! - `black_allocation_shades_its_initial_handles`: in a scope that may
//!   predate the cycle, the mutator unlinks B from the root, allocates C
//!   holding B (black while a cycle runs) and stores C in the root.
//!   Invariant: B survives; the marker never traces black C, so B's mark
//!   comes from `mark_new` shading C's initial handles, outside any barrier
//!   (termination waits for the older scope). It found the torn colour read
//!   in `MutatorState::sync` (see the model).
//!
//! Mutations tried: one at a time, in the worktree and reverted, never
//! committed; each model's doc comment names the changes it catches, and
//! `README.md` (section 5) has the whole table with loom's reports.
#![cfg(gomalloc_loom)]

use gomalloc::gc::{GcCell, GcConfig, Heap, Root, Trace, WeakRoot};
use gomalloc::malloc::Allocator;
use gomalloc::mheap::MHeap;
use gomalloc_loom_tests::{builder, Outcomes};
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// `builder()` with a preemption bound of at least `min`, for a model whose
/// harmful schedules need more switches than the default bound allows and
/// whose exploration stays cheap at `min`.
fn builder_at_least(min: usize) -> loom::model::Builder {
    let mut b = builder();
    b.preemption_bound = b.preemption_bound.map(|p| p.max(min));
    b
}

/// Counts drops (outside loom: it is the model's observation, not part of
/// the protocol).
struct Tally(Arc<AtomicUsize>);

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace)]
struct Obj<'gc> {
    id: u64,
    check: u64,
    a: GcCell<'gc, Obj<'gc>>,
    b: GcCell<'gc, Obj<'gc>>,
    #[gc(skip)]
    _tally: Tally,
}

fn checksum(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC0FFEE
}

/// Drop counts of `Mortal`s, by id. Leaked, one per execution, so that an
/// object dropped twice (the bug some mutations introduce) cannot corrupt
/// anything the model still uses.
#[derive(Default)]
struct Drops([AtomicUsize; 8]);

/// What a `Mortal` holds, as loom sees it: a tracked cell written when the
/// object is made and when it is dropped, and read by every use
/// (`Life::check`). A use or a drop that is not ordered after the object's
/// drop (a sweep racing a use of the object, two sweeps dropping it) is a
/// loom causality violation; a use ordered after the drop reads `DEAD`.
struct Life {
    id: usize,
    drops: &'static Drops,
    state: loom::cell::UnsafeCell<u64>,
}

const DEAD: u64 = 0xDEAD;

// SAFETY: the cell is only accessed through `with`/`with_mut`, which loom
// checks against every other access; the rest is immutable or atomic.
unsafe impl Sync for Life {}

impl Life {
    /// A use of the object: it must not have been dropped.
    fn check(&self) {
        // SAFETY: a plain read through loom's cell, checked by loom.
        let v = self.state.with(|p| unsafe { *p });
        assert_eq!(v, checksum(self.id as u64), "object {} used after it was dropped", self.id);
    }
}

impl Drop for Life {
    fn drop(&mut self) {
        // SAFETY: a plain write through loom's cell, checked by loom.
        self.state.with_mut(|p| unsafe { *p = DEAD });
        self.drops.0[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

/// An object for the sweep-ownership and weak-sweep models: `Obj`'s drop
/// counter is one total for the older models; these need per-object counts
/// and loom-tracked contents.
#[derive(Trace)]
struct Mortal {
    #[gc(skip)]
    life: Life,
}

/// One model execution's world: an allocator, a GC heap over its pages, and
/// the drop counters.
struct World {
    // Field order: the heap is dropped before the allocator it draws from.
    heap: Heap,
    drops: Arc<AtomicUsize>,
    mortals: &'static Drops,
    _alloc: Arc<Allocator>,
}

impl World {
    fn new() -> World {
        let alloc = Arc::new(Allocator::new(None));
        // SAFETY: `World` drops the heap (and with it every span) before
        // the allocator, so the page heap outlives every use.
        let pages: &'static MHeap = unsafe { &*(alloc.heap() as *const MHeap) };
        let heap = Heap::for_model(pages, GcConfig { gc_percent: -1, memory_limit: usize::MAX, trace: false });
        let mortals = Box::leak(Box::default());
        World { heap, drops: Arc::new(AtomicUsize::new(0)), mortals, _alloc: alloc }
    }

    fn mortal<'gc>(&self, m: &gomalloc::gc::Mutator<'gc>, id: usize) -> gomalloc::gc::Gc<'gc, Mortal> {
        m.alloc(Mortal {
            life: Life { id, drops: self.mortals, state: loom::cell::UnsafeCell::new(checksum(id as u64)) },
        })
    }

    /// How many times the `Mortal` `id` was dropped.
    fn dropped(&self, id: usize) -> usize {
        self.mortals.0[id].load(Ordering::SeqCst)
    }

    fn obj<'gc>(&self, m: &gomalloc::gc::Mutator<'gc>, id: u64) -> gomalloc::gc::Gc<'gc, Obj<'gc>> {
        m.alloc(Obj {
            id,
            check: checksum(id),
            a: GcCell::new(None),
            b: GcCell::new(None),
            _tally: Tally(self.drops.clone()),
        })
    }

    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }

    /// Runs the collector's cycle and sweep on a model thread.
    fn collector(&self) -> thread::JoinHandle<()> {
        let heap = self.heap.clone();
        thread::spawn(move || {
            heap.model_cycle();
            heap.model_sweep();
        })
    }

    /// A full cycle and sweep on this thread, with no mutator running.
    fn settle(&self) {
        self.heap.model_cycle();
        self.heap.model_sweep();
    }
}

/// The objects reachable from `root` through `a`/`b`, checked intact.
fn reachable(w: &World, root: &Root<Obj<'static>>) -> usize {
    w.heap.enter(|m| {
        let mut seen = Vec::new();
        let mut stack = vec![root.get(m)];
        while let Some(o) = stack.pop() {
            assert_eq!(o.check, checksum(o.id), "a reachable object was freed or corrupted");
            if seen.contains(&o.id) {
                continue;
            }
            seen.push(o.id);
            stack.extend(o.a.get());
            stack.extend(o.b.get());
        }
        seen.len()
    })
}

/// After the threads join: one more cycle, then everything reachable is
/// intact and everything else dropped exactly once; `made` objects in all.
fn audit(w: &World, root: &Root<Obj<'static>>, made: usize) {
    w.settle();
    let live = reachable(w, root);
    assert_eq!(w.drops(), made - live, "dropped != made - reachable");
}

/// The lost-object race of the write barrier (module header).
///
/// Mutations caught (README, section 5): the barrier shading neither the
/// old nor the new value, or not the new one; `with_barrier` without its
/// SeqCst fence; `MutatorState::past` always true. Each: "B was dropped
/// while reachable from the root".
#[test]
fn barrier_keeps_a_moved_object() {
    builder().check(|| {
        let w = World::new();
        // root.a = B; root.b = None.
        let root: Root<Obj<'static>> = w.heap.enter(|m| {
            let r = w.obj(m, 1);
            r.a.set(m, Some(w.obj(m, 2)));
            m.root(r)
        });
        let collector = w.collector();
        w.heap.enter(|m| {
            // Unlink first, then relink: a marker that scans the root in
            // between sees neither edge.
            let r = root.get(m);
            let b = r.a.get();
            r.a.set(m, None);
            r.b.set(m, b);
        });
        collector.join().unwrap();
        assert_eq!(w.drops(), 0, "B was dropped while reachable from the root");
        audit(&w, &root, 2);
    });
}

/// A barrier's shade waits in the mutator's own grey buffer (module
/// header).
///
/// Mutations caught: the collector never taking mutators' buffers
/// (`flush_mutator_greys` a no-op), or taking them only after the last
/// barriers (not before its termination check): "D was dropped while
/// reachable". Without the second scope the latter went unseen: marking
/// ended with B grey in the buffer, and nothing moved D while barriers
/// were off. Taking them only before the termination check (not after the
/// last barriers) fails `black_allocation_shades_its_initial_handles` and,
/// without the second scope, this model.
#[test]
fn buffered_shade_is_traced() {
    builder().check(|| {
        let w = World::new();
        // root.a = B, B.a = D; root.b = None.
        let root: Root<Obj<'static>> = w.heap.enter(|m| {
            let r = w.obj(m, 1);
            let b = w.obj(m, 2);
            b.a.set(m, Some(w.obj(m, 3)));
            r.a.set(m, Some(b));
            m.root(r)
        });
        let collector = w.collector();
        w.heap.enter(|m| {
            let r = root.get(m);
            let b = r.a.get();
            r.a.set(m, None);
            r.b.set(m, b);
        });
        // A scope that began after the cycle did (or with none running):
        // its stores need no barrier once marking is over.
        w.heap.enter(|m| {
            let r = root.get(m);
            let b = r.b.get().unwrap();
            r.a.set(m, b.a.get());
            b.a.set(m, None);
        });
        collector.join().unwrap();
        assert_eq!(w.drops(), 0, "D was dropped while reachable");
        audit(&w, &root, 3);
    });
}

/// Allocation colour against a cycle (module header).
///
/// Mutations caught: the barrier shading neither value or not the new one,
/// `with_barrier` without its fence, `MutatorState::sync` always allocating
/// white, `MutatorState::enter` without its fence after the CAS (the bug
/// this model found): "C was dropped while reachable from the root".
/// `MutatorState::past` always true aborts the process (glibc
/// "tcache_thread_shutdown(): unaligned tcache chunk detected": the
/// dropped object's heap data was freed while in use).
#[test]
fn allocation_during_a_cycle_is_black() {
    builder().check(|| {
        let w = World::new();
        let root: Root<Obj<'static>> = w.heap.enter(|m| m.root(w.obj(m, 1)));
        let collector = w.collector();
        w.heap.enter(|m| {
            let c = w.obj(m, 3);
            root.get(m).a.set(m, Some(c));
        });
        collector.join().unwrap();
        assert_eq!(w.drops(), 0, "C was dropped while reachable from the root");
        audit(&w, &root, 2);
    });
}

/// The scope handshake at termination (module header).
///
/// Mutations caught: the barrier shading neither value or not the old one,
/// `MutatorState::past` always true: "B was dropped while a scope held
/// it"; `run_cycle` without `wait_resynced`: "dropped != made - reachable"
/// (nothing dropped, one expected).
#[test]
fn termination_waits_for_older_scopes() {
    builder().check(|| {
        let w = World::new();
        let root: Root<Obj<'static>> = w.heap.enter(|m| {
            let r = w.obj(m, 1);
            r.a.set(m, Some(w.obj(m, 2)));
            m.root(r)
        });
        let collector = w.collector();
        w.heap.enter(|m| {
            let b = root.get(m).a.get().unwrap();
            root.get(m).a.set(m, None);
            // B is held only by this scope now; a cycle may be running.
            thread::yield_now();
            assert_eq!(w.drops(), 0, "B was dropped while a scope held it");
            assert_eq!(b.check, checksum(2));
        });
        collector.join().unwrap();
        audit(&w, &root, 2);
    });
}

/// A weak upgrade against the cycle's decision (module header).
///
/// Mutations caught: the upgrade returning the object while the collector
/// decides (`mark_done`), or not shading it while marking: "an upgraded
/// object was dropped while the scope held it"; `MutatorState::past`
/// always true, `run_cycle` without `wait_resynced`: "upgrade returned None
/// but the object was kept"; `run_cycle` without `clear_dead_weak`: "weak
/// root still set after X died".
#[test]
fn weak_upgrade_races_the_cycle() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    builder().check(move || {
        let w = World::new();
        let (root, weak): (Root<Obj<'static>>, WeakRoot<Obj<'static>>) = w.heap.enter(|m| {
            let x = w.obj(m, 5);
            (m.root(w.obj(m, 1)), m.weak_root(x))
        });
        let collector = w.collector();
        let upgraded = w.heap.enter(|m| match weak.get(m) {
            Some(x) => {
                thread::yield_now();
                assert_eq!(w.drops(), 0, "an upgraded object was dropped while the scope held it");
                assert_eq!(x.check, checksum(5));
                true
            }
            None => false,
        });
        collector.join().unwrap();
        if upgraded {
            seen.saw("upgraded");
        } else {
            assert_eq!(w.drops(), 1, "upgrade returned None but the object was kept");
            seen.saw("cleared");
        }
        w.settle();
        w.heap.enter(|m| assert!(weak.get(m).is_none(), "weak root still set after X died"));
        audit(&w, &root, 2);
    });
    outcomes.assert_exactly(&["upgraded", "cleared"]);
}

/// Sweeping closed before marking (module header).
///
/// Mutations caught, at this model's bound of 4: `close_sweeping` not
/// waiting for the sweeps in flight; the poppers (`span_for_cache`,
/// `sweep_batch`) ignoring `sweep_allowed`; `close_sweeping` storing
/// `sweep_allowed = false` without holding the span-list lock. Each: "R or
/// B was dropped while reachable from the root" (3 drops, 1 expected): a
/// sweep ran while the cycle marked and cleared the marks it relied on. At
/// the default bound of 2 loom did not reach these schedules: the sweeper
/// must pop around the close and then sweep while the collector marks, and
/// the collector does not yield in between. Not caught here: no
/// `sweep_remaining` (nothing changes between the two cycles, so the marks
/// an unswept span keeps are right), and `sweeping`'s Release/Acquire pair
/// weakened (caught nowhere; README).
#[test]
fn sweeping_stops_before_marking() {
    builder_at_least(4).check(|| {
        let w = World::new();
        // Root -> B, and garbage G in the same span.
        let root: Root<Obj<'static>> = w.heap.enter(|m| {
            let r = w.obj(m, 1);
            r.a.set(m, Some(w.obj(m, 2)));
            w.obj(m, 3);
            m.root(r)
        });
        // A cycle leaves the span unswept, with R and B marked.
        w.heap.model_cycle();
        let sweeper = {
            let heap = w.heap.clone();
            thread::spawn(move || heap.model_sweep())
        };
        // The next cycle starts while the sweeper runs.
        w.heap.model_cycle();
        sweeper.join().unwrap();
        // Sweep what that cycle left, before the audit's cycle shades R: a
        // sweep that overlapped its marking cleared the marks of R and B,
        // which die here.
        w.heap.model_sweep();
        assert_eq!(w.drops(), 1, "R or B was dropped while reachable from the root");
        audit(&w, &root, 3);
    });
}

/// A lazy sweep in flight when the next cycle starts (module header).
///
/// Mutations caught: `close_sweeping` not waiting for the sweeps in
/// flight, storing `sweep_allowed = false` without the span-list lock, and
/// `run_cycle` without `sweep_remaining`: "R or C was dropped while
/// reachable from the root"; the poppers ignoring `sweep_allowed`: the same
/// at P=3 (not reached at 2). Also the barrier without its insertion shade,
/// `with_barrier` and `enter` without their fences, `sync` always white
/// (same report), and `MutatorState::past` always true (process abort,
/// glibc "unaligned tcache chunk detected").
#[test]
fn lazy_sweep_in_flight_ends_before_marking() {
    builder().check(|| {
        let w = World::new();
        let root: Root<Obj<'static>> = w.heap.enter(|m| m.root(w.obj(m, 1)));
        // A cycle leaves R's span unswept, with R's mark bit set.
        w.heap.model_cycle();
        let collector = w.collector();
        w.heap.enter(|m| {
            // This allocation pops R's unswept span and sweeps it lazily
            // (C goes in its free slot); the collector's next cycle may close
            // sweeping meanwhile, and must not mark before this sweep ends.
            let c = w.obj(m, 7);
            root.get(m).a.set(m, Some(c));
        });
        collector.join().unwrap();
        assert_eq!(w.drops(), 0, "R or C was dropped while reachable from the root");
        audit(&w, &root, 2);
    });
}

/// A root object of another size class than `Obj`, so allocating an `Obj`
/// does not sweep its span.
#[derive(Trace)]
struct Holder<'gc> {
    a: GcCell<'gc, Obj<'gc>>,
    #[gc(skip)]
    _pad: [u64; 40],
}

/// No span enters marking unswept (module header).
///
/// Mutations caught: `close_sweeping` not waiting for the sweeps in flight;
/// the poppers ignoring `sweep_allowed`; `sweep_allowed = false` stored
/// without the span-list lock; `run_cycle` without `sweep_remaining`. Each:
/// "C was dropped while reachable from the root" (H's span entered
/// marking unswept, or a sweep of it overlapped marking, and H's stale mark
/// bit kept it from being traced).
#[test]
fn unswept_span_is_swept_before_marking() {
    builder().check(|| {
        let w = World::new();
        let root: Root<Holder<'static>> =
            w.heap.enter(|m| m.root(m.alloc(Holder { a: GcCell::new(None), _pad: [0; 40] })));
        // A cycle leaves H's span unswept with H's mark bit set; then C,
        // white, is stored in H (no cycle running: no barrier shading).
        w.heap.model_cycle();
        w.heap.enter(|m| {
            let c = w.obj(m, 7);
            root.get(m).a.set(m, Some(c));
        });
        // A sweeper sweeps while the next cycle closes sweeping and sweeps
        // what is left: either way H's span must be swept before marking.
        let sweeper = {
            let heap = w.heap.clone();
            thread::spawn(move || heap.model_sweep())
        };
        w.heap.model_cycle();
        sweeper.join().unwrap();
        w.heap.model_sweep();
        assert_eq!(w.drops(), 0, "C was dropped while reachable from the root");
        w.heap.enter(|m| {
            let c = root.get(m).a.get().expect("C unlinked");
            assert_eq!(c.check, checksum(7), "C was freed or corrupted");
        });
    });
}

/// A black allocation shades the handles it is created with. The mutator,
/// in a scope older than the cycle, unlinks B from the root (perhaps before
/// the cycle starts: no barrier shade), then allocates C holding B and
/// stores C in the root while a cycle runs. C is allocated black, so the
/// marker never traces it: B survives only because `mark_new` shades C's
/// initial handles.
///
/// This model found a real bug in `MutatorState::sync`: it read the
/// allocation colour and the sweepgen as two loads, and a scope entering
/// across a flip took the old colour (black) with the new sweepgen. It
/// allocated C black into a span already swept for the next cycle, so C's
/// mark bit was stale at that cycle's start: the marker took C for marked,
/// never traced it, and B was freed while reachable ("dropped != made -
/// reachable", left 1, right 0, in `audit`'s final cycle). Fixed by one
/// colour word (`HeapInner::alloc_colour`). With the fix, removing the
/// shading of a new object's handles from `mark_new` fails here: "B, held
/// only by the new C, was dropped while reachable". So does the collector
/// not taking mutators' grey buffers after the last barriers.
#[test]
fn black_allocation_shades_its_initial_handles() {
    builder().check(|| {
        let w = World::new();
        let root: Root<Obj<'static>> = w.heap.enter(|m| {
            let r = w.obj(m, 1);
            r.a.set(m, Some(w.obj(m, 2)));
            m.root(r)
        });
        let collector = w.collector();
        w.heap.enter(|m| {
            let r = root.get(m);
            let b = r.a.get();
            r.a.set(m, None);
            let c = m.alloc(Obj {
                id: 3,
                check: checksum(3),
                a: GcCell::new(b),
                b: GcCell::new(None),
                _tally: Tally(w.drops.clone()),
            });
            r.b.set(m, Some(c));
        });
        collector.join().unwrap();
        assert_eq!(w.drops(), 0, "B, held only by the new C, was dropped while reachable");
        audit(&w, &root, 3);
    });
}

/// Sweep ownership by the `sweepgen` CAS (module header). A sweeper first
/// pops its span from an unswept list under the span-list lock, which
/// already makes it the span's only holder, so no other model can make two
/// sweepers race for one span: this one pops the span once
/// (`Heap::model_pop_unswept`) and lets two threads race on
/// `GcSpan::claim_sweep` itself.
///
/// Mutation caught: `claim_sweep` as a load and a separate store instead of
/// the CAS: "Causality violation: Concurrent write accesses to
/// `UnsafeCell`" (both threads won the claim and dropped the same dead
/// object: `Life::drop` on threads 0 and 1, with `LOOM_LOCATION=1`); the
/// process then aborts while unwinding ("panic in a destructor during
/// cleanup": the objects left are dropped outside the model).
#[test]
fn sweep_ownership_by_sweepgen_cas() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    builder().check(move || {
        let w = World::new();
        // R, rooted, and the garbage D1 and D2, in one span.
        let root: Root<Mortal> = w.heap.enter(|m| {
            let r = w.mortal(m, 1);
            w.mortal(m, 2);
            w.mortal(m, 3);
            m.root(r)
        });
        // A cycle marks R; its flip leaves the span unswept.
        w.heap.model_cycle();
        // Popped once, as a sweeper pops it; then two threads claim it.
        let span = w.heap.model_pop_unswept().expect("the span is listed unswept");
        let other = {
            let heap = w.heap.clone();
            // SAFETY: `span` is popped and not filed until both claimers
            // are joined.
            thread::spawn(move || unsafe { heap.model_claim_and_sweep(span) })
        };
        // SAFETY: as above.
        let mine = unsafe { w.heap.model_claim_and_sweep(span) };
        let theirs = other.join().unwrap();
        assert!(mine != theirs, "claims won: this thread {mine}, the other {theirs}; exactly one must win");
        seen.saw(if mine { "this thread swept" } else { "the other swept" });
        assert_eq!(w.dropped(1), 0, "R, marked, was dropped by a sweep");
        assert_eq!((w.dropped(2), w.dropped(3)), (1, 1), "a dead object was not dropped exactly once");
        // SAFETY: both claimers are done; `span` is not used again.
        unsafe { w.heap.model_file(span) };
        w.settle();
        w.heap.enter(|m| root.get(m).life.check());
        assert_eq!(w.dropped(1), 0, "R was dropped while rooted");
    });
    outcomes.assert_exactly(&["this thread swept", "the other swept"]);
}

/// A weak upgrade racing the sweep that drops its target (module header).
///
/// Mutations caught: `run_cycle` without `clear_dead_weak`: "weak root
/// still set after X died" (the check after the settling cycle; in a
/// one-off run with that check removed, loom reported "Causality
/// violation: Concurrent read and write accesses." between the mutator's
/// read of X in `Life::check` and the sweep's drop of X). The same
/// causality violation for: the upgrade returning the object while the
/// collector decides, or not shading it while marking;
/// `MutatorState::past` always true; `with_barrier` without its fence.
/// `run_cycle` without `sweep_remaining`: "weak root still set after X
/// died" (X, shaded by an upgrade in the first cycle, kept that mark bit
/// into the next cycle's marking, so it was taken for live again and never
/// dropped).
#[test]
fn weak_upgrade_races_the_sweep() {
    let outcomes = Outcomes::new();
    let seen = outcomes.clone();
    builder().check(move || {
        let w = World::new();
        // R, rooted, and X, only weakly reachable, in one span.
        let (root, weak): (Root<Mortal>, WeakRoot<Mortal>) = w.heap.enter(|m| {
            let r = w.mortal(m, 1);
            let x = w.mortal(m, 5);
            (m.root(r), m.weak_root(x))
        });
        // A cycle, on its own thread, finds X unmarked: it clears X's weak
        // slot at mark termination, and its flip makes X's span unswept.
        let collector = {
            let heap = w.heap.clone();
            thread::spawn(move || heap.model_cycle())
        };
        // A sweeper sweeps whatever is unswept when it runs: nothing before
        // the flip, X's span after it. (It does not wait for the flip: a
        // waiting loop made loom exceed its branch limit at P=3.)
        let sweeper = {
            let heap = w.heap.clone();
            thread::spawn(move || heap.model_sweep())
        };
        // The upgrade races the cycle's decision and the sweep that drops X.
        let upgraded = w.heap.enter(|m| match weak.get(m) {
            Some(x) => {
                thread::yield_now();
                x.life.check();
                true
            }
            None => false,
        });
        collector.join().unwrap();
        sweeper.join().unwrap();
        // Whether the sweeper ran after the flip and dropped X.
        let swept = match w.dropped(5) {
            0 => false,
            1 => true,
            n => panic!("X was dropped {n} times"),
        };
        seen.saw(match (upgraded, swept) {
            (true, false) => "upgraded",
            (true, true) => "upgraded, then swept",
            (false, false) => "cleared",
            (false, true) => "cleared, swept",
        });
        w.heap.enter(|m| root.get(m).life.check());
        if !upgraded {
            // The cycle found X dead: the next sweep drops it if the sweeper
            // did not. (An upgrade while marking shades X: it survives this
            // cycle, not the next.)
            w.heap.model_sweep();
            assert_eq!(w.dropped(5), 1, "the upgrade returned None, but X was not dropped exactly once");
        }
        w.settle();
        w.heap.enter(|m| assert!(weak.get(m).is_none(), "weak root still set after X died"));
        assert_eq!((w.dropped(1), w.dropped(5)), (0, 1), "R dropped while rooted, or X not dropped exactly once");
    });
    outcomes.assert_exactly(&["upgraded", "upgraded, then swept", "cleared", "cleared, swept"]);
}
