//! The unprefixed malloc family with glibc's semantics, for `LD_PRELOAD` and
//! static linking: each `extern "C"` function forwards to one function of
//! `imp.rs`, which documents the behaviour. glibc's `__libc_*` entry points
//! and the old `cfree` are the same functions under other names. glibc's
//! introspection calls `mallinfo`, `mallinfo2`, `malloc_stats` and
//! `malloc_trim` report on (and trim) gomalloc's heap, through `stats.rs`
//! and `imp.rs`; `mallopt` and `malloc_info` are left to glibc (they act on
//! its own heap, which holds nothing).

use crate::{imp, stats};
use core::ffi::{c_int, c_void};

/// `malloc(3)`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    imp::malloc(size)
}

/// `calloc(3)`: null with ENOMEM when `n * size` overflows.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    imp::calloc(n, size)
}

/// `realloc(3)` with glibc's rules for a null pointer and size 0.
///
/// # Safety
/// `p` is null or a live block of this allocator's.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { imp::realloc(p, size) }
}

/// `reallocarray(3)`: null with ENOMEM when `n * size` overflows.
///
/// # Safety
/// As for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { imp::reallocarray(p, n, size) }
}

/// `free(3)`: null and pointers outside gomalloc's heap are ignored.
///
/// # Safety
/// `p` is null, foreign, or a live block of this allocator's, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `cfree`: the obsolete alias of `free`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// C23's `free_sized` (glibc 2.41 and later): `free` with the requested size
/// as a hint. Exported so a program built against a newer glibc cannot reach
/// glibc's version with a block of gomalloc's.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free_sized(p, size, 1) }
}

/// C23's `free_aligned_sized`: as `free_sized`, for a block from
/// `aligned_alloc`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free_sized(p, size, align) }
}

/// `posix_memalign(3)`.
///
/// # Safety
/// `out` is valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { imp::posix_memalign(out, align, size) }
}

/// `aligned_alloc(3)`: EINVAL unless `align` is a power of two.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    imp::aligned_alloc(align, size)
}

/// `memalign(3)`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    imp::memalign(align, size)
}

/// `valloc(3)`.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    imp::valloc(size)
}

/// `pvalloc(3)`.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    imp::pvalloc(size)
}

/// `malloc_usable_size(3)`: 0 for null and pointers that are not live
/// blocks of this allocator's. Any pointer value is accepted.
#[no_mangle]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    imp::usable_size(p)
}

/// glibc's `__libc_malloc`.
#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    imp::malloc(size)
}

/// glibc's `__libc_calloc`.
#[no_mangle]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    imp::calloc(n, size)
}

/// glibc's `__libc_realloc`.
///
/// # Safety
/// As for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { imp::realloc(p, size) }
}

/// glibc's `__libc_free`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// glibc's `__libc_memalign`.
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    imp::memalign(align, size)
}

/// glibc's `__libc_valloc`.
#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    imp::valloc(size)
}

/// glibc's `__libc_pvalloc`.
#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    imp::pvalloc(size)
}

/// `malloc_trim`: returns free memory to the OS (`gom_collect`); 1 if some
/// was returned, else 0. `pad` is ignored.
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    imp::trim()
}

/// `mallinfo2`: gomalloc's figures in glibc's fields (see `stats.rs`).
#[no_mangle]
pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
    stats::mallinfo2()
}

/// `mallinfo`: as `mallinfo2`, each field capped at `INT_MAX`.
#[no_mangle]
pub extern "C" fn mallinfo() -> libc::mallinfo {
    stats::mallinfo()
}

/// `malloc_stats`: gomalloc's statistics table to stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    // SAFETY: no callback: the table goes to stderr.
    unsafe { stats::print(None, core::ptr::null_mut()) }
}
