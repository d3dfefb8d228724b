//! Roots: handles kept between `enter` scopes. A `Root` registers its object
//! in the heap's root set, which the collector shades at the start of every
//! cycle.
//!
//! Called by the public API. Calls `mark.rs` (shading on insertion and
//! deletion while marking). The root set is one mutex (a leaf lock); a root's
//! own pointer is atomic so `get` needs no lock.
//!
//! Soundness: creating or changing a root while marking shades the new
//! object (insertion), dropping or changing one shades the old object
//! (deletion). Each runs inside `HeapInner::root_barrier`, so it sees a
//! cycle that has started, and the collector waits for its shading before it
//! ends marking (see `mod.rs`).

use crate::gc::heap::{HeapInner, HeapRef};
use crate::gc::mutator::Mutator;
use crate::gc::ptr::{Gc, GcBox, Rebrand};
use crate::sync::{AtomicPtr, Ordering};
use core::marker::PhantomData;

/// The heap's registered roots.
#[derive(Default)]
pub(crate) struct RootSlots {
    slots: Vec<usize>,
    free: Vec<usize>,
}

impl RootSlots {
    /// Every rooted object.
    pub fn live(&self) -> impl Iterator<Item = *const GcBox<()>> + '_ {
        self.slots.iter().filter(|&&p| p != 0).map(|&p| p as *const GcBox<()>)
    }

    fn insert(&mut self, obj: usize) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = obj;
                i
            }
            None => {
                self.slots.push(obj);
                self.slots.len() - 1
            }
        }
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// A handle that keeps its object alive between `enter` scopes. `R` names
/// the object's type with any brand (`Root<Node<'static>>` for a
/// `Gc<'gc, Node<'gc>>`); see [`Rebrand`].
///
/// A root also keeps its heap alive (its collector thread and its memory),
/// like a [`Heap`](crate::gc::Heap). A root kept inside a GC object (a
/// `#[gc(skip)]` field) lives until a cycle finds that object unreachable
/// and a sweep drops it; if it is the heap's last owner and no cycle comes,
/// the heap never shuts down. Links between objects belong in cells.
pub struct Root<R: Rebrand> {
    heap: HeapRef,
    slot: usize,
    obj: AtomicPtr<GcBox<()>>,
    _type: PhantomData<fn() -> R>,
}

// SAFETY: a root is an index into the heap's root set plus an atomic pointer;
// the object is only reached through `get`, which requires a mutator of the
// same heap on the calling thread.
unsafe impl<R: Rebrand> Send for Root<R> {}
// SAFETY: as for `Send`; every method takes `&self` and synchronises through
// atomics and the root-set mutex.
unsafe impl<R: Rebrand> Sync for Root<R> {}

impl<R: Rebrand> Root<R> {
    pub(crate) fn new<'gc>(m: &Mutator<'gc>, gc: Gc<'gc, R::Of<'gc>>) -> Root<R> {
        let heap = m.heap();
        let obj = gc.erased();
        let slot = heap.root_barrier(|marking| {
            let mut roots = heap.roots.lock().unwrap_or_else(|e| e.into_inner());
            if marking {
                heap.shade(obj);
            }
            roots.insert(obj as usize)
        });
        Root { heap: HeapRef::new(m.heap_arc()), slot, obj: AtomicPtr::new(obj as *mut GcBox<()>), _type: PhantomData }
    }

    /// True if the root belongs to `heap` (for the C API's check).
    #[cfg_attr(gomalloc_loom, allow(dead_code))] // The C API is not built under loom.
    pub(crate) fn belongs_to(&self, heap: &HeapInner) -> bool {
        core::ptr::eq(heap, &**self.heap)
    }

    fn check_heap(&self, m: &Mutator<'_>) {
        assert!(core::ptr::eq(m.heap(), &**self.heap), "gomalloc::gc: a Root used with a mutator of another heap");
    }

    /// The rooted object, as a handle of the current scope.
    pub fn get<'gc>(&self, m: &Mutator<'gc>) -> Gc<'gc, R::Of<'gc>> {
        self.check_heap(m);
        // Acquire pairs with the Release in `set`.
        let obj = self.obj.load(Ordering::Acquire);
        // SAFETY: the root keeps the object alive; `R::Of<'gc>` is its type
        // with this scope's brand (`Rebrand`'s contract).
        unsafe { Gc::from_raw(obj as *const GcBox<R::Of<'gc>>) }
    }

    /// Points the root at another object.
    pub fn set<'gc>(&self, m: &Mutator<'gc>, gc: Gc<'gc, R::Of<'gc>>) {
        self.check_heap(m);
        let new = gc.erased();
        let heap = &*self.heap;
        heap.root_barrier(|marking| {
            let mut roots = heap.roots.lock().unwrap_or_else(|e| e.into_inner());
            let old = roots.slots[self.slot];
            roots.slots[self.slot] = new as usize;
            // Release pairs with the Acquire in `get`.
            self.obj.store(new as *mut GcBox<()>, Ordering::Release);
            if marking {
                heap.shade(old as *const GcBox<()>);
                heap.shade(new);
            }
        });
    }
}

impl<R: Rebrand> Drop for Root<R> {
    fn drop(&mut self) {
        let heap = &*self.heap;
        heap.root_barrier(|marking| {
            let mut roots = heap.roots.lock().unwrap_or_else(|e| e.into_inner());
            let old = std::mem::take(&mut roots.slots[self.slot]);
            roots.free.push(self.slot);
            if marking {
                heap.shade(old as *const GcBox<()>);
            }
        });
    }
}
