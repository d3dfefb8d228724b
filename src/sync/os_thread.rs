//! `spawn_detached`: a raw `pthread` for the allocator's own background work
//! (the scavenger), created without going through `std::thread`, whose
//! `spawn` allocates (the closure box, the `Thread` handle, its name) and so
//! would re-enter the allocator that is asking for the thread.
//!
//! Called by `scavenger.rs`. Calls `pthread_create`, which under
//! `LD_PRELOAD` may itself call `malloc` (for the new thread's TLS): callers
//! must hold no allocator lock. Normal build only; loom models run the
//! scavenger's steps on loom threads instead.

use core::ffi::c_void;

/// The entry point of a raw thread.
pub type Entry = extern "C" fn(*mut c_void) -> *mut c_void;

/// Starts a detached thread running `entry(arg)` on a stack of `stack_bytes`,
/// with every signal blocked (so a program's signal handlers never run on
/// it, and a process-directed signal goes to one of the program's threads).
/// False when the OS refuses (out of memory, thread limit).
pub fn spawn_detached(entry: Entry, arg: *mut c_void, stack_bytes: usize) -> bool {
    // SAFETY: plain pthread and signal-mask calls on values that live on this
    // frame for their duration; the attribute object is initialised before
    // use and destroyed after. The new thread inherits the blocked mask; the
    // caller's mask is restored whatever the outcome.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, stack_bytes);
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut tid: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut tid, &attr, entry, arg);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        rc == 0
    }
}
