//! Weak handles: `Weak` (in a scope, storable in GC objects), `WeakCell`
//! (a barriered slot for one), and `WeakRoot` (between scopes).
//!
//! A weak handle points at a *weak slot*, a small GC object holding the
//! target's address without tracing it (Go's weak-handle indirection). The
//! slot lives as long as some weak handle reaches it; the target lives as
//! long as something reaches it strongly. The heap lists every slot; at the
//! end of marking the collector clears the slots whose target was not
//! marked, before finalizers are queued and before anything is swept.
//!
//! Called by user code; calls the mutator's barrier (`mutator.rs`) and the
//! heap's slot list (`heap.rs`, one mutex, a leaf).
//!
//! # Upgrading races with the collector
//! An upgrade runs inside the mutator's barrier and reads, in this order,
//! `marking`, `mark_done`, then the slot (all SeqCst or Acquire):
//! - while marking, the target is shaded before it is returned: the handle
//!   is new to this scope, and scopes' stacks are never scanned (the same
//!   reason as the insertion half of the write barrier);
//! - between the end of marking and the flip (`mark_done`), the target's
//!   fate is being decided: the upgrade leaves the barrier, waits for the
//!   flip (a short, bounded window, recorded as a pause) and retries;
//! - otherwise any non-null target was marked by the last cycle, or
//!   allocated since, and is live.
//!
//! So an upgrade never returns an object the collector has found dead, and
//! never returns `None` for one it will keep.

use crate::gc::heap::HeapInner;
use crate::gc::mutator::Mutator;
use crate::gc::ptr::{Gc, GcBox, Invariant, Rebrand};
use crate::gc::root::Root;
use crate::gc::trace::{Trace, Tracer};
use crate::gc::GcCell;
use crate::sync::{AtomicPtr, Ordering};
use core::marker::PhantomData;
use std::time::Instant;

/// The indirection object a weak handle points at.
pub struct WeakSlot {
    target: AtomicPtr<GcBox<()>>,
}

// SAFETY: the target is deliberately not traced (that is what makes the
// handle weak); the slot holds no other handle.
unsafe impl Trace for WeakSlot {
    const HOLDS_GC: bool = false;
    fn trace(&self, _: &mut Tracer<'_>) {}
}

// SAFETY: no lifetime to rebrand.
unsafe impl Rebrand for WeakSlot {
    type Of<'gc> = WeakSlot;
}

impl WeakSlot {
    /// Clears the target (the collector found it unreachable).
    pub(crate) fn clear(&self) {
        // Release pairs with the Acquire load in `upgrade_raw` after the
        // SeqCst read of `mark_done` that follows the flip.
        self.target.store(core::ptr::null_mut(), Ordering::Release);
    }

    /// The target's address, for the collector.
    pub(crate) fn target(&self) -> *const GcBox<()> {
        self.target.load(Ordering::Relaxed)
    }
}

/// A weak handle to a GC object: it does not keep the object alive.
/// [`upgrade`](Weak::upgrade) returns the object while it is reachable,
/// `None` once the collector has found it unreachable. `Copy`; may be stored
/// in GC objects (it keeps only its small slot alive).
pub struct Weak<'gc, T: Trace + 'gc> {
    /// The slot: a live `WeakSlot` box for all of `'gc` (it was a handle of
    /// this scope; see `slot()`).
    slot: core::ptr::NonNull<GcBox<WeakSlot>>,
    _brand: Invariant<'gc>,
    _type: PhantomData<fn() -> T>,
}

// SAFETY: like `GcCell`: a weak handle yields a `Gc` only through
// `upgrade`, which needs this scope's `Mutator`; the brand keeps it inside
// the scope, which keeps the slot alive.
unsafe impl<'gc, T: Trace + 'gc> Send for Weak<'gc, T> {}
// SAFETY: as above; a `Weak` is an immutable pointer.
unsafe impl<'gc, T: Trace + 'gc> Sync for Weak<'gc, T> {}

impl<'gc, T: Trace + 'gc> Clone for Weak<'gc, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<'gc, T: Trace + 'gc> Copy for Weak<'gc, T> {}

// SAFETY: reports the slot, strongly; the target is not reported.
unsafe impl<'gc, T: Trace + 'gc> Trace for Weak<'gc, T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        t.visit(&self.slot());
    }
}

impl<'gc, T: Trace + 'gc> Weak<'gc, T> {
    /// A weak handle to `target`.
    pub fn new(m: &Mutator<'gc>, target: Gc<'gc, T>) -> Weak<'gc, T> {
        let slot = m.alloc(WeakSlot { target: AtomicPtr::new(target.erased() as *mut GcBox<()>) });
        m.heap().register_weak(slot.erased());
        Weak::from_slot(slot)
    }
}

impl<'gc, T: Trace + 'gc> Weak<'gc, T> {
    fn from_slot(slot: Gc<'gc, WeakSlot>) -> Self {
        Weak { slot: Gc::as_box(slot), _brand: PhantomData, _type: PhantomData }
    }

    /// The slot as a handle of this scope.
    fn slot(&self) -> Gc<'gc, WeakSlot> {
        // SAFETY: made from a handle of this scope (`from_slot`), and the
        // brand keeps the weak handle inside it.
        unsafe { Gc::from_raw(self.slot.as_ptr()) }
    }
}

impl<'gc, T: Trace + 'gc> Weak<'gc, T> {
    /// The object, if the collector has not found it unreachable.
    pub fn upgrade(&self, m: &Mutator<'gc>) -> Option<Gc<'gc, T>> {
        let p = upgrade_raw(m, &self.slot());
        // SAFETY: a non-null target returned by `upgrade_raw` is live and
        // marked or shaded for this scope (module header); the slot was
        // made from a `Gc<'gc, T>`.
        (!p.is_null()).then(|| unsafe { Gc::from_raw(p as *const GcBox<T>) })
    }

    /// True if both handles name the same slot (the same `Weak::new`).
    pub fn ptr_eq(a: Weak<'gc, T>, b: Weak<'gc, T>) -> bool {
        a.slot == b.slot
    }
}

/// Reads a slot's target under the upgrade protocol (module header).
fn upgrade_raw<'gc>(m: &Mutator<'gc>, slot: &WeakSlot) -> *const GcBox<()> {
    let heap = m.heap();
    let mut waited: Option<Instant> = None;
    loop {
        let got = m.state().with_barrier(heap, |marking| {
            // SeqCst: ordered after the barrier's SeqCst read of `marking`
            // and with the collector's SeqCst stores of `mark_done` (set
            // before `marking` turns off, cleared after the flip).
            let deciding = heap.mark_done.load(Ordering::SeqCst);
            // Acquire pairs with `WeakSlot::clear`'s Release.
            let p = slot.target.load(Ordering::Acquire) as *const GcBox<()>;
            if p.is_null() {
                Some(p)
            } else if marking {
                heap.shade(p);
                Some(p)
            } else if deciding {
                None
            } else {
                Some(p)
            }
        });
        if let Some(p) = got {
            if let Some(t) = waited {
                heap.pauses.record(t.elapsed());
            }
            return p;
        }
        waited.get_or_insert_with(Instant::now);
        while heap.mark_done.load(Ordering::SeqCst) {
            crate::sync::thread::yield_now();
        }
    }
}

/// A barriered, changeable slot for one optional weak handle inside a GC
/// object.
pub struct WeakCell<'gc, T: Trace + 'gc> {
    slot: GcCell<'gc, WeakSlot>,
    _type: PhantomData<fn() -> T>,
    _brand: Invariant<'gc>,
}

// SAFETY: reports the slot handle through the inner cell.
unsafe impl<'gc, T: Trace + 'gc> Trace for WeakCell<'gc, T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.slot.trace(t);
    }
}

impl<'gc, T: Trace + 'gc> WeakCell<'gc, T> {
    /// A cell holding `value`.
    pub fn new(value: Option<Weak<'gc, T>>) -> Self {
        WeakCell { slot: GcCell::new(value.map(|w| w.slot())), _type: PhantomData, _brand: PhantomData }
    }

    /// The weak handle in the cell.
    pub fn get(&self) -> Option<Weak<'gc, T>> {
        self.slot.get().map(Weak::from_slot)
    }

    /// Stores `value` through the write barrier.
    pub fn set(&self, m: &Mutator<'gc>, value: Option<Weak<'gc, T>>) {
        self.slot.set(m, value.map(|w| w.slot()));
    }
}

/// A weak handle kept between scopes: does not keep its object alive.
pub struct WeakRoot<R: Rebrand> {
    slot: Root<WeakSlot>,
    _type: PhantomData<fn() -> R>,
}

impl<R: Rebrand> WeakRoot<R> {
    /// True if the handle belongs to `heap` (for the C API's check).
    #[cfg_attr(gomalloc_loom, allow(dead_code))] // The C API is not built under loom.
    pub(crate) fn belongs_to(&self, heap: &crate::gc::heap::HeapInner) -> bool {
        self.slot.belongs_to(heap)
    }

    /// The object, with the brand of the current scope, if the collector has
    /// not found it unreachable.
    pub fn get<'gc>(&self, m: &Mutator<'gc>) -> Option<Gc<'gc, R::Of<'gc>>> {
        let slot = self.slot.get(m);
        let p = upgrade_raw(m, &slot);
        // SAFETY: as in `Weak::upgrade`; `R::Of<'gc>` is the target's type
        // with this scope's brand (`Rebrand`'s contract).
        (!p.is_null()).then(|| unsafe { Gc::from_raw(p as *const GcBox<R::Of<'gc>>) })
    }
}

impl<'gc> Mutator<'gc> {
    /// A weak handle to `gc` that lasts between scopes.
    pub fn weak_root<R: Rebrand>(&self, gc: Gc<'gc, R::Of<'gc>>) -> WeakRoot<R> {
        let w = Weak::new(self, gc);
        WeakRoot { slot: self.root::<WeakSlot>(w.slot()), _type: PhantomData }
    }
}

impl HeapInner {
    /// Lists a new weak slot for clearing.
    pub(crate) fn register_weak(&self, slot: *const GcBox<()>) {
        self.weak_slots.lock().unwrap_or_else(|e| e.into_inner()).push(slot as usize);
    }

    /// After marking (with `mark_done` set and `marking` off): clears every
    /// slot whose target is unmarked, and forgets slots that are unmarked
    /// themselves (they die in this sweep).
    pub(crate) fn clear_dead_weak(&self) -> usize {
        let mut cleared = 0;
        let mut slots = self.weak_slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|&s| {
            let slot = s as *const GcBox<()>;
            if !self.is_marked(slot) {
                return false;
            }
            // SAFETY: a listed, marked slot is a live `WeakSlot` box (slots
            // leave the list before the sweep that frees them).
            let ws = unsafe { &(*(slot as *const GcBox<WeakSlot>)).value };
            let target = ws.target();
            if target.is_null() {
                return false;
            }
            if !self.is_marked(target) {
                ws.clear();
                cleared += 1;
                return false;
            }
            true
        });
        cleared
    }
}
