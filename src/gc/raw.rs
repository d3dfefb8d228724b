//! Untyped GC objects for the C API (`gom_gc_*` in `include/gomalloc.h`,
//! exported by `ffi/src/gc.rs`, one function here per C function).
//!
//! A C object is a `GcBox` whose descriptor is one of two fixed
//! descriptors (`C_DESC` when the C type has a trace callback, `C_LEAF_DESC`
//! when it is pointer-free, so it is never traced), followed by a pointer to
//! the caller's `gom_gc_type` and the payload the C side sees:
//!
//! ```text
//! box:            [&TypeDesc][*const RawType][padding][*const RawType][payload ...]
//! payload offset: max(16, align); the type pointer sits at box+8 and payload-8
//! ```
//!
//! so the marker and the sweeper reach the C type from the box, and
//! `gom_gc_mark`/`gom_gc_write` reach the box from a payload pointer.
//! Tracing calls the C trace callback, which reports each pointer field
//! through `gom_gc_mark`; dropping calls the C destructor.
//!
//! Everything else is the Rust collector unchanged: `alloc` goes through
//! `Mutator::alloc_init`, stores through the mutator's write barrier, roots,
//! weak handles and finalizers through `Root`, `WeakRoot` and
//! `Mutator::set_finalizer` with the placeholder type `RawObject`. The C
//! scope (`enter`/`leave`) is `Heap::enter` split in two; calls that need a
//! scope build the scope's `Mutator` from the calling thread's registration.
//!
//! # Concurrency
//! No state of its own: the heap's, the mutator's and the root set's rules
//! apply. Trace callbacks run on the collector thread (or in a mutator's
//! barrier) while mutators run, so pointer fields are read and written with
//! atomic loads and swaps (`gom_gc_mark`, `gom_gc_write`); the C caller
//! keeps the remaining rules (the header lists them).
//!
//! # Invariants
//! A C object's header (descriptor, both type pointers) is written and its
//! payload zeroed before the collector can see it (inside
//! `alloc_init`, before `mark_new`), and never changes afterwards. Every
//! pointer that `write` stores into a payload, or that a root, weak handle
//! or finalizer takes, has passed `resolve`: it is the payload of a live C
//! object of the same heap.
//!
//! # Checks
//! Misuse that costs a lookup at most stops the process with a one-line
//! message (`os::fatal`): a null heap or type, a call that needs a scope made
//! outside one, nested or unbalanced scopes, `gom_gc_collect` inside a
//! scope, a pointer that is not the payload of a live C object of the heap
//! (which also catches an object of another heap), a slot outside its
//! object. A root or weak handle used with another heap fails `Root`'s own
//! check, a panic, which aborts at the C boundary with its message.
//! Finalizer registration returns an error code instead.
//!
//! Not under `gomalloc_loom` (it builds heaps with `Heap::new`).

use crate::gc::gcspan::{GcSpan, MAX_ALIGN};
use crate::gc::heap::{HeapInner, HeapRef};
use crate::gc::mutator::{self, Mutator};
use crate::gc::ptr::{Gc, GcBox, Rebrand, TypeDesc};
use crate::gc::trace::{Trace, Tracer};
use crate::gc::{Heap, Root, WeakRoot};
use crate::sync::{PlainAtomicPtr, PlainOrdering};
use core::ffi::{c_char, c_int, c_void};
use core::marker::PhantomData;
use core::mem::{align_of, size_of, ManuallyDrop};
use std::sync::Arc;

/// `gom_gc_trace_fn`: reports the object's pointer fields with `gom_gc_mark`.
pub type TraceFn = unsafe extern "C" fn(obj: *mut c_void, tracer: *mut CTracer);
/// `gom_gc_destroy_fn`: releases what the object owns outside the GC heap.
pub type DestroyFn = unsafe extern "C" fn(obj: *mut c_void);
/// `gom_gc_finalizer_fn`.
pub type FinalizerFn = unsafe extern "C" fn(heap: *mut CHeap, obj: *mut c_void, arg: *mut c_void);

/// `struct gom_gc_type`: the caller's description of a C object type. It
/// must outlive every object of the type.
#[repr(C)]
pub struct RawType {
    /// Payload bytes.
    pub size: usize,
    /// Payload alignment: 0 (meaning 8) or a power of two up to 256.
    pub align: usize,
    /// Reports the pointer fields; null for pointer-free data.
    pub trace: Option<TraceFn>,
    /// Called once when the object is freed; may be null.
    pub destroy: Option<DestroyFn>,
    /// For diagnostics; may be null.
    pub name: *const c_char,
}

/// `gom_gc_heap`: an `Arc<HeapInner>` turned into a raw pointer, owning one
/// `HeapRef` count.
pub enum CHeap {}
/// `gom_gc_tracer`: a `Tracer` during a trace callback.
pub enum CTracer {}
/// `gom_gc_root`: a boxed `Root<RawObject>`.
pub enum CRoot {}
/// `gom_gc_weak`: a boxed `WeakRoot<RawObject>`.
pub enum CWeak {}

/// The type of every C object as far as `Root`, `WeakRoot` and finalizers
/// are concerned. Never read: C objects are traced and dropped through
/// their own descriptors.
pub struct RawObject {
    _private: (),
}

// SAFETY: a `RawObject` is never a value in a box; C objects carry `C_DESC`
// or `C_LEAF_DESC`, whose trace calls the C callback.
unsafe impl Trace for RawObject {
    fn trace(&self, _: &mut Tracer<'_>) {}
}

// SAFETY: no lifetime to rebrand.
unsafe impl Rebrand for RawObject {
    type Of<'gc> = RawObject;
}

/// Reported by the descriptors' `name`: how `resolve` tells a C object from
/// a Rust one (a Rust type name is a path, never this).
const C_NAME: &str = "<gomalloc C object>";

const C_DESC: TypeDesc = TypeDesc { trace: trace_c, drop: drop_c, holds_gc: true, name: c_name };
const C_LEAF_DESC: TypeDesc = TypeDesc { trace: trace_c, drop: drop_c, holds_gc: false, name: c_name };

fn c_name() -> &'static str {
    C_NAME
}

/// Offset of the payload from the box for a type of alignment `align`.
#[inline]
fn payload_offset(align: usize) -> usize {
    align.max(16)
}

/// # Safety
/// `obj` is a live C object.
#[inline]
unsafe fn type_of_box(obj: *const GcBox<()>) -> *const RawType {
    // SAFETY: the caller's object has its type pointer at +8.
    unsafe { *obj.cast::<*const RawType>().add(1) }
}

/// # Safety
/// `obj` is a live C object.
#[inline]
unsafe fn payload_of(obj: *const GcBox<()>) -> *mut c_void {
    // SAFETY: the caller's object and its type are live.
    unsafe { obj.cast::<u8>().add(payload_offset((*type_of_box(obj)).align)) as *mut c_void }
}

/// # Safety
/// `p` is the payload of a live C object.
#[inline]
unsafe fn box_of(p: *mut c_void) -> *const GcBox<()> {
    // SAFETY: the caller's payload has its type pointer just before it.
    unsafe {
        let ty = *p.cast::<*const RawType>().sub(1);
        p.cast::<u8>().sub(payload_offset((*ty).align)) as *const GcBox<()>
    }
}

/// The descriptor's trace: calls the C callback, if any.
///
/// # Safety
/// `obj` is a live C object.
unsafe fn trace_c(obj: *const GcBox<()>, tracer: &mut Tracer<'_>) {
    // SAFETY: the caller's live object; the callback's contract is the C
    // caller's (it reports fields through `mark`, with this tracer).
    unsafe {
        if let Some(f) = (*type_of_box(obj)).trace {
            f(payload_of(obj), (tracer as *mut Tracer<'_>).cast::<CTracer>());
        }
    }
}

/// The descriptor's drop: calls the C destructor, if any.
///
/// # Safety
/// `obj` is a C object being freed, never used again.
unsafe fn drop_c(obj: *mut GcBox<()>) {
    // SAFETY: as above; the destructor's contract is the C caller's.
    unsafe {
        if let Some(f) = (*type_of_box(obj)).destroy {
            f(payload_of(obj));
        }
    }
}

#[cold]
#[inline(never)]
fn misuse(what: &str, why: &str) -> ! {
    crate::os::fatal(format_args!("{what}: {why}"))
}

/// Stops the process if a root or weak handle (`handle`) is not of the
/// calling scope's heap.
fn check_owner(ours: bool, what: &str, handle: &str) {
    if !ours {
        crate::os::fatal(format_args!("{what}: {handle} belongs to another heap"));
    }
}

#[cold]
#[inline(never)]
fn not_an_object(what: &str, p: *const c_void) -> ! {
    crate::os::fatal(format_args!("{what}: {p:p} is not a live object of this GC heap"))
}

/// The heap behind a C handle, borrowed for the call.
///
/// # Safety
/// `h` is null or a handle from `heap_new` not yet passed to `heap_free`.
unsafe fn heap_arc(h: *mut CHeap, what: &str) -> ManuallyDrop<Arc<HeapInner>> {
    if h.is_null() {
        misuse(what, "the heap is NULL");
    }
    // SAFETY: the caller's handle holds a strong count, which this borrow
    // does not release (`ManuallyDrop`).
    ManuallyDrop::new(unsafe { Arc::from_raw(h as *const HeapInner) })
}

/// A counted `Heap` over the handle's heap, for the calls the public API
/// already has.
///
/// # Safety
/// As for `heap_arc`.
unsafe fn heap_of(h: *mut CHeap, what: &str) -> Heap {
    // SAFETY: forwarded.
    let arc = unsafe { heap_arc(h, what) };
    // The handle owns a count, so dropping this one never shuts the heap
    // down.
    Heap { inner: HeapRef::new(Arc::clone(&arc)) }
}

/// Runs `f` with the `Mutator` of the calling thread's current scope of the
/// heap; stops the process if the thread is outside one.
///
/// # Safety
/// As for `heap_arc`.
unsafe fn in_scope<R>(h: *mut CHeap, what: &str, f: impl for<'gc> FnOnce(&Mutator<'gc>) -> R) -> R {
    // SAFETY: forwarded.
    let arc = unsafe { heap_arc(h, what) };
    let state = mutator::state_for(&arc);
    if !state.inside() {
        misuse(what, "called outside gom_gc_enter/gom_gc_leave of this heap on this thread");
    }
    let heap: &Arc<HeapInner> = &arc;
    let m = Mutator { heap, state: &*state, _brand: PhantomData, _not_send: PhantomData };
    f(&m)
}

/// The box of `p` if it is the payload of a live C object of `heap`; stops
/// the process otherwise. A pointer into another allocation of the page
/// heap costs a read of that allocation's first bytes (where a GC span
/// keeps its heap's identity).
fn resolve(heap: &HeapInner, p: *mut c_void, what: &str) -> *const GcBox<()> {
    let span = heap.pages.span_of(p as usize);
    if span.is_null() {
        not_an_object(what, p);
    }
    // SAFETY: `span_of` returned the live record of the pages holding `p`;
    // GC spans are class 0 (large) in the page heap and start with their
    // header, and any class-0 span's first page is mapped, so reading its
    // first bytes is defined even when they are not a GC header (volatile:
    // they may then be a program's data).
    let g = unsafe {
        if (*span).class != 0 {
            not_an_object(what, p);
        }
        let g = (*span).base as *const GcSpan;
        if core::ptr::read_volatile(&raw const (*g).heap_id) != heap.id {
            not_an_object(what, p);
        }
        &*g
    };
    let first = g.first();
    let offset = (p as usize).wrapping_sub(first);
    let index = offset / g.elem_size;
    if p as usize <= first || index >= g.nelems || !g.is_allocated(index) {
        not_an_object(what, p);
    }
    let obj = g.object(index) as *const GcBox<()>;
    // SAFETY: an allocated slot of this heap holds an initialised box; a C
    // object's payload is where its type says.
    unsafe {
        if ((*obj).desc.name)() != C_NAME || payload_of(obj) != p {
            not_an_object(what, p);
        }
    }
    obj
}

/// A handle for C, as a `Gc` of the scope.
///
/// # Safety
/// `obj` is a live C object kept alive for `'gc`.
unsafe fn gc<'gc>(obj: *const GcBox<()>) -> Gc<'gc, RawObject> {
    // SAFETY: forwarded; `RawObject` is never read through the handle.
    unsafe { Gc::from_raw(obj.cast::<GcBox<RawObject>>()) }
}

/// `gom_gc_heap_new`: a heap configured from the environment.
pub fn heap_new() -> *mut CHeap {
    let heap = ManuallyDrop::new(Heap::new());
    // The handle takes over the heap's owner count and its strong count.
    // SAFETY: `heap` is never dropped, so the `Arc` is moved out once.
    let arc = unsafe { core::ptr::read(&heap.inner.0) };
    Arc::into_raw(arc) as *mut CHeap
}

/// `gom_gc_heap_free`: gives up the handle. The heap shuts down (collector
/// and finalizer threads stopped, every object destroyed) now, or when the
/// last root or weak handle is freed.
///
/// # Safety
/// `h` is a live handle, not used again; no thread is inside a scope.
pub unsafe fn heap_free(h: *mut CHeap) {
    // SAFETY: forwarded.
    let arc = unsafe { heap_arc(h, "gom_gc_heap_free") };
    if mutator::state_for(&arc).inside() {
        misuse("gom_gc_heap_free", "called inside a scope of the heap");
    }
    // Another thread's scope would keep its cache (and the objects in it)
    // from ever being flushed and destroyed.
    if arc.mutators.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|m| m.inside()) {
        misuse("gom_gc_heap_free", "another thread is inside a scope of the heap");
    }
    drop(HeapRef(ManuallyDrop::into_inner(arc)));
}

/// `gom_gc_thread_attach`: registers the calling thread as a mutator now
/// (`enter` would on first use).
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn thread_attach(h: *mut CHeap) {
    // SAFETY: forwarded.
    let arc = unsafe { heap_arc(h, "gom_gc_thread_attach") };
    mutator::state_for(&arc);
}

/// `gom_gc_thread_detach`: gives the calling thread's cache back and
/// removes it from the heap's mutators.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn thread_detach(h: *mut CHeap) {
    // SAFETY: forwarded.
    let arc = unsafe { heap_arc(h, "gom_gc_thread_detach") };
    if mutator::state_for(&arc).inside() {
        misuse("gom_gc_thread_detach", "called inside a scope of the heap");
    }
    mutator::deregister(&arc);
}

/// `gom_gc_enter`: opens a scope on the calling thread.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn enter(h: *mut CHeap) {
    // SAFETY: forwarded.
    let arc = unsafe { heap_arc(h, "gom_gc_enter") };
    let state = mutator::state_for(&arc);
    if state.inside() {
        misuse("gom_gc_enter", "the thread is already inside a scope of this heap (scopes do not nest)");
    }
    state.enter(&arc);
}

/// `gom_gc_leave`: closes the calling thread's scope.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn leave(h: *mut CHeap) {
    // SAFETY: forwarded.
    let arc = unsafe { heap_arc(h, "gom_gc_leave") };
    let state = mutator::state_for(&arc);
    if !state.inside() {
        misuse("gom_gc_leave", "the thread is not inside a scope of this heap");
    }
    state.leave(&arc);
}

/// `gom_gc_alloc`: a zeroed object of type `ty`.
///
/// # Safety
/// `h` is a live handle; `ty` is null or a valid type that outlives the
/// object.
pub unsafe fn alloc(h: *mut CHeap, ty: *const RawType) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe {
        in_scope(h, "gom_gc_alloc", |m| {
            if ty.is_null() {
                misuse("gom_gc_alloc", "the type is NULL");
            }
            let t = &*ty;
            if !(t.align == 0 || t.align.is_power_of_two() && t.align <= MAX_ALIGN) {
                misuse("gom_gc_alloc", "the type's alignment is not 0 or a power of two up to 256");
            }
            let offset = payload_offset(t.align);
            // At least one payload byte: the payload of an empty type must
            // still point into its own slot, not at the next one.
            let Some(total) = t.size.max(1).checked_add(offset).filter(|&n| n <= isize::MAX as usize / 2) else {
                misuse("gom_gc_alloc", "the type's size is too large");
            };
            let desc: &'static TypeDesc = if t.trace.is_some() { &C_DESC } else { &C_LEAF_DESC };
            // `true`: the drop calls the C destructor, if the type has one.
            let obj = m.alloc_init(total, t.align.max(8), true, |slot| {
                let base = slot.cast::<u8>();
                base.cast::<&'static TypeDesc>().write(desc);
                base.add(8).cast::<*const RawType>().write(ty);
                base.add(offset - 8).cast::<*const RawType>().write(ty);
                base.add(offset).write_bytes(0, t.size);
            });
            payload_of(obj)
        })
    }
}

/// `gom_gc_mark`: reports the GC pointer in `*slot` (if not null) from a
/// trace callback.
///
/// # Safety
/// `t` is the tracer the callback was given; `slot` points to a pointer
/// field of the object being traced, holding null or a live C object.
#[inline]
pub unsafe fn mark(t: *mut CTracer, slot: *const *mut c_void) {
    // Acquire pairs with the AcqRel swap in `write`: the object stored is
    // initialised. SAFETY: the caller's slot is an aligned pointer field,
    // written by mutators only through that swap.
    let p = unsafe { PlainAtomicPtr::from_ptr(slot as *mut *mut c_void) }.load(PlainOrdering::Acquire);
    if !p.is_null() {
        // SAFETY: the caller passes the tracer of the running callback and
        // a live object's payload.
        unsafe { (*t.cast::<Tracer<'_>>()).visit_raw(box_of(p)) };
    }
}

/// `gom_gc_write`: stores `value` into the pointer field `slot` of `obj`,
/// through the write barrier.
///
/// # Safety
/// `h` is a live handle; the pointers are checked.
pub unsafe fn write(h: *mut CHeap, obj: *mut c_void, slot: *mut *mut c_void, value: *mut c_void) {
    // SAFETY: forwarded.
    unsafe {
        in_scope(h, "gom_gc_write", |m| {
            let heap = m.heap();
            let o = resolve(heap, obj, "gom_gc_write (object)");
            if !(*o).desc.holds_gc {
                // Never traced: what it points to would be freed under it.
                misuse("gom_gc_write", "the object's type has no trace callback, so its pointer fields are not traced");
            }
            let size = (*type_of_box(o)).size;
            let (start, s) = (obj as usize, slot as usize);
            if s < start || s - start + size_of::<*mut c_void>() > size || s % align_of::<*mut c_void>() != 0 {
                misuse("gom_gc_write", "the slot is not an aligned pointer field inside the object");
            }
            let new = if value.is_null() { core::ptr::null() } else { resolve(heap, value, "gom_gc_write (value)") };
            let cell = PlainAtomicPtr::from_ptr(slot);
            m.state().barrier(heap, new, || {
                // AcqRel: Release publishes the new object's contents to
                // readers' and `mark`'s Acquire loads; Acquire makes the old
                // one's visible to the shade.
                let old = cell.swap(value, PlainOrdering::AcqRel);
                // The old object was reachable from `obj` until now: live.
                if old.is_null() {
                    core::ptr::null()
                } else {
                    box_of(old)
                }
            });
        })
    }
}

/// `gom_gc_root_new`: keeps `obj` alive until the root is freed.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn root_new(h: *mut CHeap, obj: *mut c_void) -> *mut CRoot {
    // SAFETY: forwarded; the object is checked.
    unsafe {
        in_scope(h, "gom_gc_root_new", |m| {
            let o = resolve(m.heap(), obj, "gom_gc_root_new");
            Box::into_raw(Box::new(m.root::<RawObject>(gc(o)))).cast::<CRoot>()
        })
    }
}

/// `gom_gc_root_get`: the rooted object.
///
/// # Safety
/// `h` and `r` are live handles of the same heap.
pub unsafe fn root_get(h: *mut CHeap, r: *mut CRoot) -> *mut c_void {
    // SAFETY: forwarded; the root's heap is checked.
    unsafe {
        in_scope(h, "gom_gc_root_get", |m| {
            let r = &*root(r);
            check_owner(r.belongs_to(m.heap()), "gom_gc_root_get", "the root");
            payload_of(r.get(m).erased())
        })
    }
}

/// `gom_gc_root_set`: points the root at `obj`.
///
/// # Safety
/// `h` and `r` are live handles of the same heap.
pub unsafe fn root_set(h: *mut CHeap, r: *mut CRoot, obj: *mut c_void) {
    // SAFETY: forwarded; the object and the root's heap are checked.
    unsafe {
        in_scope(h, "gom_gc_root_set", |m| {
            let r = &*root(r);
            check_owner(r.belongs_to(m.heap()), "gom_gc_root_set", "the root");
            let o = resolve(m.heap(), obj, "gom_gc_root_set");
            r.set(m, gc(o));
        })
    }
}

/// `gom_gc_root_free`.
///
/// # Safety
/// `r` is null or a live root, not used again.
pub unsafe fn root_free(r: *mut CRoot) {
    if !r.is_null() {
        // SAFETY: the caller gives up a root made by `root_new`.
        drop(unsafe { Box::from_raw(r.cast::<Root<RawObject>>()) });
    }
}

/// # Safety
/// `r` is null or a live root.
unsafe fn root(r: *mut CRoot) -> *const Root<RawObject> {
    if r.is_null() {
        misuse("gom_gc_root_get/set", "the root is NULL");
    }
    r.cast::<Root<RawObject>>()
}

/// `gom_gc_weak_new`: a weak handle to `obj`.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn weak_new(h: *mut CHeap, obj: *mut c_void) -> *mut CWeak {
    // SAFETY: forwarded; the object is checked.
    unsafe {
        in_scope(h, "gom_gc_weak_new", |m| {
            let o = resolve(m.heap(), obj, "gom_gc_weak_new");
            Box::into_raw(Box::new(m.weak_root::<RawObject>(gc(o)))).cast::<CWeak>()
        })
    }
}

/// `gom_gc_weak_get`: the object, or null once it was found unreachable.
///
/// # Safety
/// `h` and `w` are live handles of the same heap.
pub unsafe fn weak_get(h: *mut CHeap, w: *mut CWeak) -> *mut c_void {
    if w.is_null() {
        misuse("gom_gc_weak_get", "the weak handle is NULL");
    }
    // SAFETY: forwarded; the handle's heap is checked.
    unsafe {
        in_scope(h, "gom_gc_weak_get", |m| {
            let w = &*w.cast::<WeakRoot<RawObject>>();
            check_owner(w.belongs_to(m.heap()), "gom_gc_weak_get", "the weak handle");
            w.get(m).map_or(core::ptr::null_mut(), |g| payload_of(g.erased()))
        })
    }
}

/// `gom_gc_weak_free`.
///
/// # Safety
/// `w` is null or a live weak handle, not used again.
pub unsafe fn weak_free(w: *mut CWeak) {
    if !w.is_null() {
        // SAFETY: the caller gives up a handle made by `weak_new`.
        drop(unsafe { Box::from_raw(w.cast::<WeakRoot<RawObject>>()) });
    }
}

/// A C finalizer with its arguments.
struct CFinalizer {
    f: FinalizerFn,
    heap: *mut CHeap,
    arg: *mut c_void,
}

// SAFETY: the C caller registers the finalizer knowing it runs on the
// heap's finalizer thread (the header says so); the heap handle stays valid
// while it runs (the finalizer thread holds the heap).
unsafe impl Send for CFinalizer {}

/// `gom_gc_set_finalizer`: registers `f(heap, obj, arg)` to run once after
/// `obj` is found unreachable, or with `f` null removes `obj`'s finalizer.
/// Returns 0, `EEXIST` if `obj` already has one, or (removing) `ENOENT` if
/// it has none.
///
/// # Safety
/// `h` is a live handle; `f` is callable with `arg` on another thread.
pub unsafe fn set_finalizer(h: *mut CHeap, obj: *mut c_void, f: Option<FinalizerFn>, arg: *mut c_void) -> c_int {
    let fin = f.map(|f| CFinalizer { f, heap: h, arg });
    let run = move |fin: CFinalizer, g: Gc<'_, RawObject>| {
        // SAFETY: the object is live for the finalizer's scope; the
        // callback's contract is the C caller's.
        unsafe { (fin.f)(fin.heap, payload_of(g.erased()), fin.arg) }
    };
    // SAFETY: forwarded; the object is checked.
    unsafe {
        in_scope(h, "gom_gc_set_finalizer", |m| {
            let o = resolve(m.heap(), obj, "gom_gc_set_finalizer");
            let Some(fin) = fin else {
                return if m.clear_finalizer(gc(o)) { 0 } else { libc::ENOENT };
            };
            if m.try_set_finalizer::<RawObject>(gc(o), move |_, g| run(fin, g)) {
                0
            } else {
                libc::EEXIST
            }
        })
    }
}

/// `gom_gc_collect`: a full, blocking cycle and its sweep.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn collect(h: *mut CHeap) {
    // SAFETY: forwarded.
    let heap = unsafe { heap_of(h, "gom_gc_collect") };
    if mutator::state_for(&heap.inner).inside() {
        misuse("gom_gc_collect", "called inside a scope of the same heap (the cycle would wait for it)");
    }
    if let Some(why) = heap.inner.cannot_wait_here() {
        misuse("gom_gc_collect", why);
    }
    heap.collect();
}

/// `gom_gc_wait_finalizers`: blocks until the finalizers queued so far ran.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn wait_finalizers(h: *mut CHeap) {
    // SAFETY: forwarded.
    let heap = unsafe { heap_of(h, "gom_gc_wait_finalizers") };
    if let Some(why) = heap.inner.cannot_wait_here() {
        misuse("gom_gc_wait_finalizers", why);
    }
    heap.wait_for_finalizers();
}

/// `gom_gc_set_percent`: returns the previous value.
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn set_percent(h: *mut CHeap, percent: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { heap_of(h, "gom_gc_set_percent") }.set_gc_percent(percent)
}

/// `gom_gc_set_memory_limit`: returns the previous value (`SIZE_MAX`: none).
///
/// # Safety
/// `h` is a live handle.
pub unsafe fn set_memory_limit(h: *mut CHeap, bytes: usize) -> usize {
    // SAFETY: forwarded.
    unsafe { heap_of(h, "gom_gc_set_memory_limit") }.set_memory_limit(bytes)
}

/// `struct gom_gc_stats`: every field 64 bits, new fields only appended,
/// versioned by `size` (as `struct gom_stats`). Times in nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct RawStats {
    /// In: bytes of the caller's struct; out: bytes filled.
    pub size: u64,
    pub cycles: u64,
    pub forced_cycles: u64,
    pub live_bytes: u64,
    pub in_use_bytes: u64,
    pub allocated_bytes: u64,
    pub allocated_objects: u64,
    pub freed_objects: u64,
    pub freed_bytes: u64,
    pub heap_goal: u64,
    pub gc_percent: i64,
    pub memory_limit: u64,
    pub pause_total_ns: u64,
    pub pause_count: u64,
    pub pause_max_ns: u64,
    pub mark_cpu_ns: u64,
    pub sweep_cpu_ns: u64,
    pub assist_ns: u64,
    pub last_cycle_ns: u64,
    pub span_bytes: u64,
    pub cached_spans: u64,
    pub roots: u64,
    pub weak_cleared: u64,
    pub weak_slots: u64,
    pub finalizers_registered: u64,
    pub finalizers_queued: u64,
    pub finalizers_ready: u64,
    pub finalizers_run: u64,
    pub assists: u64,
    pub assist_max_ns: u64,
    pub assist_cpu_max_ns: u64,
}

/// `gom_gc_stats`: fills as many whole fields of `*out` as its `size` says
/// fit and sets `size` to the bytes filled. Returns 0, or `EINVAL` when
/// `out` is null or smaller than one field.
///
/// # Safety
/// `h` is a live handle; `out` is null or points to `out->size` writable
/// bytes aligned for 64-bit fields.
pub unsafe fn stats(h: *mut CHeap, out: *mut RawStats) -> c_int {
    // SAFETY: forwarded.
    let heap = unsafe { heap_of(h, "gom_gc_stats") };
    if out.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller's struct starts with its size.
    let room = unsafe { out.cast::<u64>().read() } as usize;
    if room < size_of::<u64>() {
        return libc::EINVAL;
    }
    let s = heap.stats();
    let ns = |d: std::time::Duration| d.as_nanos().min(u64::MAX as u128) as u64;
    let full = RawStats {
        size: size_of::<RawStats>() as u64,
        cycles: s.cycles,
        forced_cycles: s.forced_cycles,
        live_bytes: s.live_bytes as u64,
        in_use_bytes: s.in_use_bytes as u64,
        allocated_bytes: s.allocated_bytes,
        allocated_objects: s.allocated_objects,
        freed_objects: s.freed_objects,
        freed_bytes: s.freed_bytes,
        heap_goal: s.heap_goal as u64,
        gc_percent: i64::from(s.gc_percent),
        memory_limit: s.memory_limit as u64,
        pause_total_ns: ns(s.pause_total),
        pause_count: s.pause_count,
        pause_max_ns: ns(s.pause_max),
        mark_cpu_ns: ns(s.mark_cpu),
        sweep_cpu_ns: ns(s.sweep_cpu),
        assist_ns: ns(s.assist_time),
        last_cycle_ns: ns(s.last_cycle),
        span_bytes: s.span_bytes as u64,
        cached_spans: s.cached_spans as u64,
        roots: s.roots as u64,
        weak_cleared: s.weak_cleared,
        weak_slots: s.weak_slots as u64,
        finalizers_registered: s.finalizers_registered as u64,
        finalizers_queued: s.finalizers_queued,
        finalizers_ready: s.finalizers_ready as u64,
        finalizers_run: s.finalizers_run,
        assists: s.assists,
        assist_max_ns: ns(s.assist_max),
        assist_cpu_max_ns: ns(s.assist_cpu_max),
    };
    let filled = room.min(size_of::<RawStats>()) / size_of::<u64>() * size_of::<u64>();
    // SAFETY: `filled` bytes fit both structs, which do not overlap.
    unsafe {
        core::ptr::copy_nonoverlapping((&full as *const RawStats).cast::<u8>(), out.cast::<u8>(), filled);
        out.cast::<u64>().write(filled as u64);
    }
    0
}
