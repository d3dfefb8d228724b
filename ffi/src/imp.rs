//! The Rust side of every exported function: argument checks, `errno`, and
//! the forwarding to the core allocator with the calling thread's cache.
//!
//! Called by `libc_api.rs`, `cxx.rs` and `gom.rs`, whose `extern "C"`
//! functions each forward to exactly one function here. Calls the core
//! (`gomalloc_core`) and `options.rs`. Holds no state.
//!
//! Every function here is allocation-free apart from the allocation it makes
//! for its caller, uses no `std` I/O and no `std::env`, and cannot panic:
//! sizes are combined with checked arithmetic only.
//!
//! # Pointers gomalloc did not hand out
//! Before a pointer reaches the core, `free`, `realloc` and
//! `malloc_usable_size` ask [`Allocator::owns_address`] whether it lies in
//! gomalloc's arenas at all. One that does not ("foreign": typically a block
//! of the dynamic loader's early allocator, made before `libgomalloc.so` took
//! over) is never touched: `free` ignores it, `malloc_usable_size` answers 0,
//! and `realloc` stops the process with a message, since the size of the
//! block (and so how much to copy) cannot be known. The secure build's `free`
//! stops at a foreign pointer too. A pointer inside the
//! arenas that is not a live block start (interior, double or stale free) is
//! the core's to diagnose: it stops the process with a one-line message.

use crate::options;
use core::ffi::{c_int, c_void};
use core::ptr;
use gomalloc_core::malloc::Allocator;
use gomalloc_core::mcache::MCache;

/// The alignment asked of the core for plain `malloc`: none beyond what the
/// size class gives (8 bytes for sizes up to 8 and 17 to 24, otherwise 16 or
/// more, as `include/gomalloc.h` documents).
const NO_ALIGN: usize = 1;

#[inline(always)]
fn heap() -> &'static Allocator {
    gomalloc_core::global_allocator()
}

#[inline(always)]
fn cache() -> *mut MCache {
    gomalloc_core::thread_cache()
}

fn errno_location() -> *mut c_int {
    // SAFETY: `__errno_location` has no preconditions; it returns the calling
    // thread's errno, which lives as long as the thread.
    unsafe { libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: the calling thread's errno (see `errno_location`).
    unsafe { *errno_location() = e };
}

/// The common failure of every allocating function: `errno = ENOMEM`, null,
/// and under `GOMALLOC_VERBOSE` a line saying why.
#[cold]
#[inline(never)]
fn enomem(why: core::fmt::Arguments<'_>) -> *mut c_void {
    if options::verbose() {
        gomalloc_core::os::eprint_line(format_args!("gomalloc: out of memory: {why}"));
    }
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// A request of `size` bytes failed.
#[cold]
fn out_of_memory(size: usize) -> *mut c_void {
    enomem(format_args!("a request of {size} bytes failed"))
}

/// A size product (`calloc`, `reallocarray`) does not fit in `size_t`.
#[cold]
fn size_overflow(n: usize, size: usize) -> *mut c_void {
    enomem(format_args!("{n} * {size} bytes overflows"))
}

/// Null with `errno = EINVAL` (an alignment the function does not accept).
#[cold]
#[inline(never)]
fn invalid_alignment() -> *mut c_void {
    set_errno(libc::EINVAL);
    ptr::null_mut()
}

/// `size` bytes aligned to `align` (a power of two), or null with ENOMEM.
#[inline(always)]
fn alloc(size: usize, align: usize) -> *mut c_void {
    // SAFETY: the calling thread's cache of the process-wide allocator.
    let p = unsafe { heap().alloc(cache(), size, align) };
    if p.is_null() {
        return out_of_memory(size);
    }
    p.cast()
}

/// `malloc`: `size` bytes (0 gives a unique minimum-size block).
#[inline(always)]
pub fn malloc(size: usize) -> *mut c_void {
    alloc(size, NO_ALIGN)
}

/// `calloc`: `n * size` zeroed bytes; null with ENOMEM when the product
/// overflows.
pub fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return size_overflow(n, size);
    };
    // SAFETY: the calling thread's cache of the process-wide allocator.
    let p = unsafe { heap().alloc_zeroed(cache(), total, NO_ALIGN) };
    if p.is_null() {
        return out_of_memory(total);
    }
    p.cast()
}

/// `memalign`: glibc's rules. An alignment that is not a power of two is
/// rounded up to one (0 counts as 1); one beyond the largest power of two is
/// EINVAL.
pub fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.max(1).checked_next_power_of_two() {
        Some(a) => alloc(size, a),
        None => invalid_alignment(),
    }
}

/// `aligned_alloc` (C11, with glibc 2.38's and C23's checks): the alignment
/// must be a power of two, else null with EINVAL. The size need not be a
/// multiple of it.
pub fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return invalid_alignment();
    }
    alloc(size, align)
}

/// `gom_malloc_aligned`: as `aligned_alloc`.
pub fn malloc_aligned(size: usize, align: usize) -> *mut c_void {
    aligned_alloc(align, size)
}

/// The OS page size (`sysconf`, which reads a value the loader recorded).
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions and allocates nothing.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 && (p as usize).is_power_of_two() {
        p as usize
    } else {
        4096
    }
}

/// `valloc`: `size` bytes aligned to the OS page.
pub fn valloc(size: usize) -> *mut c_void {
    alloc(size, page_size())
}

/// `pvalloc`: `size` rounded up to whole OS pages (one page for 0), aligned
/// to the page; ENOMEM when rounding overflows.
pub fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(rounded) => alloc(rounded, page),
        None => out_of_memory(size),
    }
}

/// `posix_memalign`: stores the block in `*out` and returns 0; returns EINVAL
/// (alignment not a power of two or not a multiple of `sizeof(void *)`) or
/// ENOMEM and leaves `*out` alone.
///
/// # Safety
/// `out` is valid for a pointer-sized write.
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let p = alloc(size, align);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { out.write(p) };
    0
}

/// A pointer that is not in gomalloc's arenas was freed: ignored, except in
/// the secure build, which stops (it cannot tell a block of the dynamic
/// loader's from a stack or stray pointer either, and prefers to fail).
#[cold]
#[inline(never)]
fn free_foreign(p: *mut c_void) {
    #[cfg(feature = "secure")]
    gomalloc_core::os::fatal(format_args!("invalid free of {p:p}: not allocated by gomalloc (outside its heap)"));
    #[cfg(not(feature = "secure"))]
    if options::verbose() {
        gomalloc_core::os::eprint_line(format_args!(
            "gomalloc: ignoring free of {p:p}: not in gomalloc's heap (allocated by someone else, e.g. the dynamic loader)"
        ));
    }
}

/// `free`: null is ignored, a foreign pointer is ignored (see the module
/// documentation), anything else goes to the core. `errno` is preserved, as
/// POSIX.1-2024 and glibc 2.33+ promise (the core may make system calls).
///
/// # Safety
/// `p` is null, foreign, or a live block of gomalloc's that is not used
/// afterwards.
#[inline(always)]
pub unsafe fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let h = heap();
    if !h.owns_address(p.cast()) {
        return free_foreign(p);
    }
    let e = errno_location();
    // SAFETY: this thread's errno.
    let saved = unsafe { *e };
    // SAFETY: the calling thread's cache; the caller gives up a block in our
    // arenas (the core diagnoses one that is not a live block start).
    unsafe { h.free(cache(), p.cast()) };
    // SAFETY: this thread's errno.
    unsafe { *e = saved };
}

/// Sized (and aligned) free, C++ `operator delete(void *, size_t, ...)` and
/// `gom_free_sized`: as [`free`], with the size and alignment the block was
/// requested with as a hint (the core trusts its own records).
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_sized(p: *mut c_void, size: usize, align: usize) {
    if p.is_null() {
        return;
    }
    let h = heap();
    if !h.owns_address(p.cast()) {
        return free_foreign(p);
    }
    let e = errno_location();
    // SAFETY: this thread's errno.
    let saved = unsafe { *e };
    // SAFETY: as in `free`; the size is a hint only.
    unsafe { h.dealloc(cache(), p.cast(), size, align) };
    // SAFETY: this thread's errno.
    unsafe { *e = saved };
}

/// `realloc` of a foreign pointer: its size is unknown, so nothing can be
/// copied safely. Stops the process.
#[cold]
#[inline(never)]
fn realloc_foreign(p: *mut c_void) -> ! {
    gomalloc_core::os::fatal(format_args!(
        "realloc of {p:p}, which gomalloc did not allocate (not in its heap, so its size is unknown)"
    ))
}

/// `realloc` with glibc's rules: `realloc(NULL, n)` is `malloc(n)`;
/// `realloc(p, 0)` frees `p` and returns null (errno unchanged); on failure
/// null with ENOMEM and `p` intact.
///
/// # Safety
/// `p` is null or a live block of gomalloc's; on success it is not used
/// afterwards.
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: forwarded caller contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    let h = heap();
    if !h.owns_address(p.cast()) {
        realloc_foreign(p);
    }
    let cache = cache();
    let Some(old) = h.usable_size(p.cast()) else {
        // Not a live block start: the core's free names the misuse
        // (interior pointer, double free) and stops.
        // SAFETY: the calling thread's cache; the core checks the pointer.
        unsafe { h.free(cache, p.cast()) };
        gomalloc_core::os::fatal(format_args!("realloc of {p:p}: not a live block"));
    };
    // SAFETY: the calling thread's cache; `p` is a live block of ours whose
    // usable size is `old`.
    let q = unsafe { h.realloc(cache, p.cast(), old, NO_ALIGN, size) };
    if q.is_null() {
        return out_of_memory(size);
    }
    q.cast()
}

/// `reallocarray`: `realloc(p, n * size)`, or null with ENOMEM (and `p`
/// intact) when the product overflows.
///
/// # Safety
/// As for [`realloc`].
pub unsafe fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded caller contract.
        Some(total) => unsafe { realloc(p, total) },
        None => size_overflow(n, size),
    }
}

/// `malloc_usable_size`: the bytes usable at `p`; 0 for null, a foreign
/// pointer or anything that is not a live block start.
pub fn usable_size(p: *const c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    let h = heap();
    if !h.owns_address(p.cast()) {
        return 0;
    }
    h.usable_size(p.cast()).unwrap_or(0)
}

/// A function of the C++ runtime the program runs with, by mangled name
/// (libstdc++'s, then libc++'s); null if none is loaded.
fn cxx_runtime_symbol(names: &[&core::ffi::CStr]) -> *mut c_void {
    for name in names {
        // SAFETY: a lookup by NUL-terminated name in the global scope.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if !f.is_null() {
            return f;
        }
    }
    ptr::null_mut()
}

/// `std::new_handler`: may throw, so it is called through "C-unwind".
type NewHandler = unsafe extern "C-unwind" fn();

/// Throwing `operator new` that failed: the C++ rule. While a
/// `std::new_handler` is installed, call it and try again (it may free
/// memory, throw, or uninstall itself); with none, throw `std::bad_alloc`.
/// Both come from the program's C++ runtime, looked up by name here, on this
/// path only. Without one (a C program calling the mangled name) there is no
/// exception to throw: a message and `abort()`, as an uncaught
/// `std::bad_alloc` ends.
#[cold]
#[inline(never)]
fn new_failed(size: usize, align: usize) -> *mut c_void {
    let get_handler = cxx_runtime_symbol(&[c"_ZSt15get_new_handlerv"]);
    loop {
        let handler: Option<NewHandler> = if get_handler.is_null() {
            None
        } else {
            // SAFETY: `std::get_new_handler()` (noexcept), whose result is a
            // `void (*)()` or null.
            unsafe {
                let get: unsafe extern "C" fn() -> Option<NewHandler> = core::mem::transmute(get_handler);
                get()
            }
        };
        let Some(handler) = handler else { break };
        // SAFETY: the program's own new_handler, called as the C++ runtime
        // would; it may unwind (a C++ exception) through this frame.
        unsafe { handler() };
        // SAFETY: the calling thread's cache of the process-wide allocator.
        let p = unsafe { heap().alloc(cache(), size, align) };
        if !p.is_null() {
            return p.cast();
        }
    }
    let throw = cxx_runtime_symbol(&[c"_ZSt17__throw_bad_allocv", c"_ZNSt3__117__throw_bad_allocEv"]);
    if !throw.is_null() {
        // SAFETY: `std::__throw_bad_alloc()`, which throws and never
        // returns; the exception unwinds through this frame ("C-unwind"
        // up to the exported `operator new`).
        unsafe {
            let throw: unsafe extern "C-unwind" fn() -> ! = core::mem::transmute(throw);
            throw()
        }
    }
    gomalloc_core::os::fatal(format_args!(
        "operator new: out of memory ({size} bytes, alignment {align}) and no C++ runtime to throw std::bad_alloc; aborting"
    ))
}

/// Throwing `operator new(size_t)` and `new[]`: never null.
#[inline(always)]
pub fn cxx_new(size: usize) -> *mut c_void {
    // SAFETY: the calling thread's cache of the process-wide allocator.
    let p = unsafe { heap().alloc(cache(), size, NO_ALIGN) };
    if p.is_null() {
        return new_failed(size, NO_ALIGN);
    }
    p.cast()
}

/// Throwing `operator new(size_t, align_val_t)`: never null; an alignment
/// that is not a power of two (undefined behaviour in C++) stops the process.
pub fn cxx_new_aligned(size: usize, align: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        gomalloc_core::os::fatal(format_args!("operator new: alignment {align} is not a power of two"));
    }
    // SAFETY: the calling thread's cache of the process-wide allocator.
    let p = unsafe { heap().alloc(cache(), size, align) };
    if p.is_null() {
        return new_failed(size, align);
    }
    p.cast()
}

/// `operator new(size_t, align_val_t, nothrow_t)`: null (ENOMEM or EINVAL)
/// on failure.
pub fn cxx_new_aligned_nothrow(size: usize, align: usize) -> *mut c_void {
    aligned_alloc(align, size)
}

/// `malloc_trim`: `collect`; 1 if it returned memory to the OS, else 0.
/// The padding glibc keeps at the top of its heap has no counterpart.
pub fn trim() -> c_int {
    let before = heap().stats().bytes_purged;
    collect();
    c_int::from(heap().stats().bytes_purged > before)
}

/// `gom_collect`: gives the calling thread's cached spans back and returns
/// every free page to the OS.
pub fn collect() {
    let before = options::verbose().then(|| heap().stats());
    // SAFETY: the calling thread's cache of the process-wide allocator.
    unsafe { heap().collect(cache()) };
    if let Some(before) = before {
        let after = heap().stats();
        gomalloc_core::os::eprint_line(format_args!(
            "gomalloc: collect: released {} bytes to the OS ({} bytes released in all, {} mapped)",
            after.bytes_released.saturating_sub(before.bytes_released),
            after.bytes_released,
            after.bytes_mapped
        ));
    }
}
