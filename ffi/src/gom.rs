//! The prefixed API of `include/gomalloc.h`: `gom_*` functions that work
//! whether or not gomalloc also replaces `malloc` (static linking into a
//! program that keeps glibc's malloc would still need the overrides to be
//! left out; see the README). Each forwards to one function of `imp.rs`,
//! `stats.rs` or `options.rs`; the header documents the C contracts.

use crate::options::{self, Opt};
use crate::{imp, stats};
use core::ffi::{c_int, c_long, c_void};

/// `gom_malloc`: as `malloc`.
#[no_mangle]
pub extern "C" fn gom_malloc(size: usize) -> *mut c_void {
    imp::malloc(size)
}

/// `gom_calloc`: as `calloc`.
#[no_mangle]
pub extern "C" fn gom_calloc(n: usize, size: usize) -> *mut c_void {
    imp::calloc(n, size)
}

/// `gom_realloc`: as `realloc` (glibc's rules for null and 0).
///
/// # Safety
/// `p` is null or a live block of gomalloc's.
#[no_mangle]
pub unsafe extern "C" fn gom_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { imp::realloc(p, size) }
}

/// `gom_free`: as `free`.
///
/// # Safety
/// `p` is null or a live block of gomalloc's, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn gom_free(p: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free(p) }
}

/// `gom_free_sized`: `free` with the size the block was requested with.
///
/// # Safety
/// As for `gom_free`.
#[no_mangle]
pub unsafe extern "C" fn gom_free_sized(p: *mut c_void, size: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { imp::free_sized(p, size, 1) }
}

/// `gom_malloc_aligned`: `size` bytes aligned to `align` (a power of two).
#[no_mangle]
pub extern "C" fn gom_malloc_aligned(size: usize, align: usize) -> *mut c_void {
    imp::malloc_aligned(size, align)
}

/// `gom_usable_size`: as `malloc_usable_size`.
#[no_mangle]
pub extern "C" fn gom_usable_size(p: *const c_void) -> usize {
    imp::usable_size(p)
}

/// `gom_collect`: returns free memory to the OS.
#[no_mangle]
pub extern "C" fn gom_collect() {
    imp::collect()
}

/// `gom_stats_get`: fills a size-versioned `struct gom_stats`.
///
/// # Safety
/// `out` is null or points to `out->size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gom_stats_get(out: *mut stats::GomStats) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { stats::get(out) }
}

/// `gom_stats_print`: the statistics table to stderr or to a line callback.
///
/// # Safety
/// `f`, if not null, is a function that may be called with `arg`.
#[no_mangle]
pub unsafe extern "C" fn gom_stats_print(f: Option<stats::LineFn>, arg: *mut c_void) {
    // SAFETY: forwarded caller contract.
    unsafe { stats::print(f, arg) }
}

/// `gom_option_get`: an option's value; -1 with `errno = EINVAL` for an
/// unknown option.
#[no_mangle]
pub extern "C" fn gom_option_get(option: c_int) -> c_long {
    option_get(option)
}

/// `gom_option_set`: sets an option; 0, or EINVAL for an unknown option.
#[no_mangle]
pub extern "C" fn gom_option_set(option: c_int, value: c_long) -> c_int {
    option_set(option, value)
}

/// `gom_version`: `GOMALLOC_VERSION` of the library.
#[no_mangle]
pub extern "C" fn gom_version() -> c_int {
    VERSION
}

/// `major * 10000 + minor * 100 + patch` of this crate (checked by a test
/// against `Cargo.toml` and the header).
pub const VERSION: c_int = 100;

fn option_get(option: c_int) -> c_long {
    match Opt::from_c(option) {
        Some(o) => options::get(o),
        None => {
            // SAFETY: the calling thread's errno.
            unsafe { *libc::__errno_location() = libc::EINVAL };
            -1
        }
    }
}

fn option_set(option: c_int, value: c_long) -> c_int {
    match Opt::from_c(option) {
        Some(o) => {
            options::set(o, value);
            0
        }
        None => libc::EINVAL,
    }
}
