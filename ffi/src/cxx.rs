//! C++ `operator new` and `operator delete`, by their Itanium-ABI mangled
//! names (`m` is `size_t`, `St11align_val_t` is `std::align_val_t`, passed as
//! a `size_t`, and `RKSt9nothrow_t` is `const std::nothrow_t &`, passed as a
//! pointer that is never read).
//!
//! Each forwards to one function of `imp.rs`.
//!
//! # Out of memory
//! A throwing `new` does what the C++ standard asks: it calls the installed
//! `std::new_handler` and retries while there is one, then throws
//! `std::bad_alloc`. Both come from the program's C++ runtime (libstdc++ or
//! libc++), looked up by name on that path only; the exception unwinds
//! through the Rust frames, so these four exports are `extern "C-unwind"`.
//! With no C++ runtime loaded (a C program calling the mangled names) it
//! prints a message and calls `abort()`, which is what an uncaught
//! `bad_alloc` leads to. The `nothrow` forms return null (with
//! `errno = ENOMEM`). The deletes accept null and, like `free`, ignore
//! pointers outside gomalloc's heap; the sized ones pass the size to the core
//! as a hint.

#![allow(non_snake_case)]

use crate::imp;
use core::ffi::c_void;

/// `operator new(size_t)`.
#[no_mangle]
pub extern "C-unwind" fn _Znwm(size: usize) -> *mut c_void {
    imp::cxx_new(size)
}

/// `operator new[](size_t)`.
#[no_mangle]
pub extern "C-unwind" fn _Znam(size: usize) -> *mut c_void {
    imp::cxx_new(size)
}

/// `operator new(size_t, const std::nothrow_t &)`.
#[no_mangle]
pub extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    imp::malloc(size)
}

/// `operator new[](size_t, const std::nothrow_t &)`.
#[no_mangle]
pub extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    imp::malloc(size)
}

/// `operator new(size_t, std::align_val_t)`.
#[no_mangle]
pub extern "C-unwind" fn _ZnwmSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    imp::cxx_new_aligned(size, align)
}

/// `operator new[](size_t, std::align_val_t)`.
#[no_mangle]
pub extern "C-unwind" fn _ZnamSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    imp::cxx_new_aligned(size, align)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t &)`.
#[no_mangle]
pub extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: *const c_void) -> *mut c_void {
    imp::cxx_new_aligned_nothrow(size, align)
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t &)`.
#[no_mangle]
pub extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: *const c_void) -> *mut c_void {
    imp::cxx_new_aligned_nothrow(size, align)
}

/// `operator delete(void *)`.
///
/// # Safety
/// `p` is null or came from `operator new` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPv(p: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `operator delete[](void *)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPv(p: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `operator delete(void *, size_t)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvm(p: *mut c_void, size: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free_sized(p, size, 1) }
}

/// `operator delete[](void *, size_t)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvm(p: *mut c_void, size: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free_sized(p, size, 1) }
}

/// `operator delete(void *, const std::nothrow_t &)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `operator delete[](void *, const std::nothrow_t &)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `operator delete(void *, std::align_val_t)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_t(p: *mut c_void, _align: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `operator delete[](void *, std::align_val_t)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_t(p: *mut c_void, _align: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `operator delete(void *, size_t, std::align_val_t)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free_sized(p, size, align) }
}

/// `operator delete[](void *, size_t, std::align_val_t)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free_sized(p, size, align) }
}

/// `operator delete(void *, std::align_val_t, const std::nothrow_t &)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, _align: usize, _nt: *const c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `operator delete[](void *, std::align_val_t, const std::nothrow_t &)`.
///
/// # Safety
/// As for `_ZdlPv`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_tRKSt9nothrow_t(p: *mut c_void, _align: usize, _nt: *const c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}
