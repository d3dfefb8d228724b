//! The C API of the garbage-collected heap: the `gom_gc_*` functions of
//! `include/gomalloc.h`. Each forwards to one function of the core's
//! `gc::raw`, which makes every check; the header documents the contracts
//! and the rules a C caller must follow.
//!
//! Unlike the rest of this crate, these functions are never on a `malloc`
//! path: they may allocate (through the core) and start threads.

use core::ffi::{c_int, c_void};
use gomalloc_core::gc::raw::{self, CHeap, CRoot, CTracer, CWeak, FinalizerFn, RawStats, RawType};

/// `gom_gc_heap_new`.
#[no_mangle]
pub extern "C" fn gom_gc_heap_new() -> *mut CHeap {
    raw::heap_new()
}

/// `gom_gc_heap_free`.
///
/// # Safety
/// `heap` is a live heap, not used again; no thread is inside its scopes.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_heap_free(heap: *mut CHeap) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::heap_free(heap) }
}

/// `gom_gc_thread_attach`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_thread_attach(heap: *mut CHeap) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::thread_attach(heap) }
}

/// `gom_gc_thread_detach`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_thread_detach(heap: *mut CHeap) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::thread_detach(heap) }
}

/// `gom_gc_enter`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_enter(heap: *mut CHeap) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::enter(heap) }
}

/// `gom_gc_leave`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_leave(heap: *mut CHeap) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::leave(heap) }
}

/// `gom_gc_alloc`.
///
/// # Safety
/// `heap` is a live heap; `ty` outlives the object.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_alloc(heap: *mut CHeap, ty: *const RawType) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { raw::alloc(heap, ty) }
}

/// `gom_gc_mark`.
///
/// # Safety
/// Called from a trace callback with its tracer and a pointer field of the
/// object being traced.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_mark(tracer: *mut CTracer, slot: *const *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::mark(tracer, slot) }
}

/// `gom_gc_write`.
///
/// # Safety
/// `heap` is a live heap (the pointers are checked).
#[no_mangle]
pub unsafe extern "C" fn gom_gc_write(heap: *mut CHeap, obj: *mut c_void, slot: *mut *mut c_void, value: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::write(heap, obj, slot, value) }
}

/// `gom_gc_root_new`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_root_new(heap: *mut CHeap, obj: *mut c_void) -> *mut CRoot {
    // SAFETY: forwarded caller contract.
    unsafe { raw::root_new(heap, obj) }
}

/// `gom_gc_root_get`.
///
/// # Safety
/// `heap` and `root` are live.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_root_get(heap: *mut CHeap, root: *mut CRoot) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { raw::root_get(heap, root) }
}

/// `gom_gc_root_set`.
///
/// # Safety
/// `heap` and `root` are live.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_root_set(heap: *mut CHeap, root: *mut CRoot, obj: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::root_set(heap, root, obj) }
}

/// `gom_gc_root_free`.
///
/// # Safety
/// `root` is null or live, not used again.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_root_free(root: *mut CRoot) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::root_free(root) }
}

/// `gom_gc_weak_new`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_weak_new(heap: *mut CHeap, obj: *mut c_void) -> *mut CWeak {
    // SAFETY: forwarded caller contract.
    unsafe { raw::weak_new(heap, obj) }
}

/// `gom_gc_weak_get`.
///
/// # Safety
/// `heap` and `weak` are live.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_weak_get(heap: *mut CHeap, weak: *mut CWeak) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { raw::weak_get(heap, weak) }
}

/// `gom_gc_weak_free`.
///
/// # Safety
/// `weak` is null or live, not used again.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_weak_free(weak: *mut CWeak) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::weak_free(weak) }
}

/// `gom_gc_set_finalizer`.
///
/// # Safety
/// `heap` is a live heap; `f` may be called with `arg` on another thread.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_set_finalizer(
    heap: *mut CHeap,
    obj: *mut c_void,
    f: Option<FinalizerFn>,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { raw::set_finalizer(heap, obj, f, arg) }
}

/// `gom_gc_collect`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_collect(heap: *mut CHeap) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::collect(heap) }
}

/// `gom_gc_wait_finalizers`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_wait_finalizers(heap: *mut CHeap) {
    // SAFETY: forwarded caller contract.
    unsafe { raw::wait_finalizers(heap) }
}

/// `gom_gc_set_percent`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_set_percent(heap: *mut CHeap, percent: c_int) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { raw::set_percent(heap, percent) }
}

/// `gom_gc_set_memory_limit`.
///
/// # Safety
/// `heap` is a live heap.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_set_memory_limit(heap: *mut CHeap, bytes: usize) -> usize {
    // SAFETY: forwarded caller contract.
    unsafe { raw::set_memory_limit(heap, bytes) }
}

/// `gom_gc_thread_slow_path_ns`.
#[no_mangle]
pub extern "C" fn gom_gc_thread_slow_path_ns() -> u64 {
    gomalloc_core::gc::thread_slow_path_time().as_nanos() as u64
}

/// `gom_gc_stats`.
///
/// # Safety
/// `heap` is a live heap; `out` is null or holds `out->size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gom_gc_stats(heap: *mut CHeap, out: *mut RawStats) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { raw::stats(heap, out) }
}
