//! Barriered cells: the only way to change a GC handle stored in a GC object.
//! `GcCell` holds one optional handle; `GcVec` a growable vector of them.
//!
//! Called by user code; calls the mutator's barrier (`mutator.rs`). Cells are
//! shared between threads (objects are `Sync`), so a handle is stored in an
//! atomic; `GcVec` keeps its elements behind a mutex, which the marker also
//! takes, briefly, to copy them out a chunk at a time when it traces them.
//!
//! Every update requires the `Mutator` of the current scope, whose brand
//! matches the cell's: a handle of another scope or heap cannot be stored,
//! and the barrier cannot be skipped.

use crate::gc::mutator::Mutator;
use crate::gc::ptr::{Gc, GcBox, Invariant};
use crate::gc::trace::{Trace, Tracer};
use crate::sync::{AtomicPtr, Mutex, MutexGuard, Ordering};
use core::marker::PhantomData;

fn raw<'gc, T: Trace + 'gc>(v: Option<Gc<'gc, T>>) -> *mut GcBox<()> {
    v.map_or(core::ptr::null_mut(), |g| g.erased() as *mut GcBox<()>)
}

/// # Safety
/// `p` is null or a live object of type `T` kept alive for `'gc`.
unsafe fn handle<'gc, T: Trace + 'gc>(p: *mut GcBox<()>) -> Option<Gc<'gc, T>> {
    // SAFETY: forwarded.
    (!p.is_null()).then(|| unsafe { Gc::from_raw(p as *const GcBox<T>) })
}

/// A mutable slot for one optional GC handle inside a GC object.
pub struct GcCell<'gc, T: Trace + 'gc> {
    ptr: AtomicPtr<GcBox<()>>,
    _brand: Invariant<'gc>,
    _type: PhantomData<Gc<'gc, T>>,
}

// SAFETY: the handle is stored in an atomic; reading it yields a `Gc`, which
// is not `Send`, so values only move between threads as the barriered API
// allows.
unsafe impl<'gc, T: Trace + 'gc> Send for GcCell<'gc, T> {}
// SAFETY: as above.
unsafe impl<'gc, T: Trace + 'gc> Sync for GcCell<'gc, T> {}

impl<'gc, T: Trace + 'gc> GcCell<'gc, T> {
    /// A cell holding `value`. The initial value needs no barrier: the cell
    /// is not yet in a reachable object (a new object's fields are shaded
    /// when it is allocated black).
    pub fn new(value: Option<Gc<'gc, T>>) -> Self {
        GcCell { ptr: AtomicPtr::new(raw(value)), _brand: PhantomData, _type: PhantomData }
    }

    /// The handle in the cell.
    pub fn get(&self) -> Option<Gc<'gc, T>> {
        // Acquire pairs with the Release swap in `set`: the object is
        // initialised.
        // SAFETY: the cell only ever holds live objects of this scope's heap
        // (the barrier keeps them alive while the cell is reachable).
        unsafe { handle(self.ptr.load(Ordering::Acquire)) }
    }

    /// Stores `value` through the write barrier.
    pub fn set(&self, m: &Mutator<'gc>, value: Option<Gc<'gc, T>>) {
        let new = raw(value);
        // AcqRel: Release publishes the new object to readers; Acquire makes
        // the old one's contents visible to the shade.
        m.state().barrier(m.heap(), new, || self.ptr.swap(new, Ordering::AcqRel) as *const GcBox<()>);
    }
}

// SAFETY: visits the stored handle; the load is atomic.
unsafe impl<'gc, T: Trace + 'gc> Trace for GcCell<'gc, T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        t.visit_raw(self.ptr.load(Ordering::Acquire));
    }
}

/// A growable vector of optional GC handles inside a GC object.
pub struct GcVec<'gc, T: Trace + 'gc> {
    items: Mutex<Vec<*mut GcBox<()>>>,
    _brand: Invariant<'gc>,
    _type: PhantomData<Gc<'gc, T>>,
}

// SAFETY: the elements are behind a mutex; see `GcCell`.
unsafe impl<'gc, T: Trace + 'gc> Send for GcVec<'gc, T> {}
// SAFETY: as above.
unsafe impl<'gc, T: Trace + 'gc> Sync for GcVec<'gc, T> {}

impl<'gc, T: Trace + 'gc> Default for GcVec<'gc, T> {
    fn default() -> Self {
        GcVec::new()
    }
}

impl<'gc, T: Trace + 'gc> GcVec<'gc, T> {
    /// An empty vector.
    pub fn new() -> Self {
        GcVec { items: Mutex::new(Vec::new()), _brand: PhantomData, _type: PhantomData }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<*mut GcBox<()>>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, if in bounds and set.
    pub fn get(&self, i: usize) -> Option<Gc<'gc, T>> {
        let p = self.lock().get(i).copied().unwrap_or(core::ptr::null_mut());
        // SAFETY: elements are live objects of this scope's heap.
        unsafe { handle(p) }
    }

    /// Appends `value` through the write barrier.
    pub fn push(&self, m: &Mutator<'gc>, value: Option<Gc<'gc, T>>) {
        let new = raw(value);
        m.state().barrier(m.heap(), new, || {
            self.lock().push(new);
            core::ptr::null_mut()
        });
    }

    /// Replaces element `i` through the write barrier. Panics if out of bounds.
    pub fn set(&self, m: &Mutator<'gc>, i: usize, value: Option<Gc<'gc, T>>) {
        let new = raw(value);
        m.state().barrier(m.heap(), new, || {
            let mut items = self.lock();
            let len = items.len();
            let Some(slot) = items.get_mut(i) else {
                // Unwinding out of a barrier is handled (`with_barrier`),
                // but nothing was stored, so say so plainly.
                drop(items);
                panic!("gomalloc::gc: GcVec::set index {i} out of bounds (len {len})");
            };
            std::mem::replace(slot, new) as *const GcBox<()>
        });
    }

    /// Removes and returns the last element, through the barrier.
    pub fn pop(&self, m: &Mutator<'gc>) -> Option<Gc<'gc, T>> {
        let mut out = core::ptr::null_mut();
        m.state().barrier(m.heap(), core::ptr::null(), || {
            out = self.lock().pop().unwrap_or(core::ptr::null_mut());
            out
        });
        // SAFETY: the popped object was shaded if marking, and is otherwise
        // live for the scope as any handle read from the heap.
        unsafe { handle(out) }
    }

    /// Removes every element, through the barrier.
    ///
    /// The removal and the shading of what it removed are one barrier: with
    /// the removal first and a barrier per element after it, the marker
    /// could trace the emptied vector and end marking before the last
    /// shades, and an element a scope still held was swept.
    pub fn clear(&self, m: &Mutator<'gc>) {
        let (heap, state) = (m.heap(), m.state());
        state.with_barrier(heap, |marking| {
            let old = std::mem::take(&mut *self.lock());
            if marking {
                for p in old {
                    heap.shade_buffered(p, &state.greys);
                }
            }
        });
    }
}

// SAFETY: visits every element, copied out under the vector's lock a chunk
// at a time, in one pass or in several (see `Tracer::visit_elements`:
// elements keep their index, and any that leave between copies were shaded
// by the barrier).
unsafe impl<'gc, T: Trace + 'gc> Trace for GcVec<'gc, T> {
    fn trace(&self, t: &mut Tracer<'_>) {
        t.visit_elements(&mut |start, buf| {
            let items = self.lock();
            if let Some(src) = items.get(start..) {
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
            }
            items.len()
        });
    }
}
