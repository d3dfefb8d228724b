//! The sync shim: the only module that names atomics, `UnsafeCell`, locks and
//! threads. Every tier imports them from here, so the loom models in
//! `loom-tests/` drive the real tier code with loom's types by building with
//! `RUSTFLAGS="--cfg gomalloc_loom"`.
//!
//! Under `gomalloc_loom` the types are loom's and are not `const`-constructible,
//! so constructors that are `const` in a normal build are plain functions there
//! (see [`maybe_const_fn!`]); the global statics (`globals.rs`) exist only in a
//! normal build.

mod lock;
#[cfg(not(gomalloc_loom))]
mod os_thread;

pub use lock::RawLock;
#[cfg(not(gomalloc_loom))]
pub(crate) use lock::{futex_wait_timeout, futex_wake};
#[cfg(not(gomalloc_loom))]
pub(crate) use os_thread::spawn_detached;

#[cfg(not(gomalloc_loom))]
pub use core::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(gomalloc_loom)]
pub use loom::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(gomalloc_loom)]
pub use loom::sync::{Condvar, Mutex, MutexGuard};
/// Blocking locks and condition variables, used by the GC (never on a
/// `malloc` path): std's, or loom's under `gomalloc_loom`.
#[cfg(not(gomalloc_loom))]
pub use std::sync::{Condvar, Mutex, MutexGuard};

/// Threads, used by the GC's collector and finalizer threads and its wait
/// loops: std's, or loom's under `gomalloc_loom`.
pub mod thread {
    #[cfg(gomalloc_loom)]
    pub use loom::thread::{current, yield_now, Builder, JoinHandle, ThreadId};
    #[cfg(not(gomalloc_loom))]
    pub use std::thread::{current, yield_now, Builder, JoinHandle, ThreadId};

    /// One wait in a loop that polls another thread's progress (`round`
    /// counts from 0): yields at first, then sleeps briefly so a long wait
    /// does not burn a core. Under loom, always a yield, which lets the
    /// model schedule the thread being waited for.
    pub fn backoff(round: u32) {
        #[cfg(not(gomalloc_loom))]
        if round < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        #[cfg(gomalloc_loom)]
        {
            let _ = round;
            loom::thread::yield_now();
        }
    }
}

/// Atomics that loom does not model, in both builds: the arena index and the
/// page → span table, which live in `mmap`ed memory that loom's types cannot
/// occupy. Their entries are written under the heap lock before any pointer
/// into the span they name can reach another thread, so the handoff that
/// matters is the lock (modelled) and the user's own synchronisation.
pub use core::sync::atomic::{AtomicPtr as PlainAtomicPtr, Ordering as PlainOrdering};

/// Declares a constructor that is `const fn` in a normal build and a plain `fn`
/// under loom, whose atomics cannot be built in a constant.
macro_rules! maybe_const_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident ($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        #[cfg(not(gomalloc_loom))]
        $(#[$m])* $vis const fn $name($($arg: $ty),*) -> $ret $body
        #[cfg(gomalloc_loom)]
        $(#[$m])* $vis fn $name($($arg: $ty),*) -> $ret $body
    };
}
pub(crate) use maybe_const_fn;

/// An `UnsafeCell` with loom's closure API, zero-cost in a normal build.
#[cfg(not(gomalloc_loom))]
#[derive(Debug)]
#[repr(transparent)]
pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(gomalloc_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[inline(always)]
    pub const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }
    /// Runs `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Runs `f` with a unique raw pointer to the contents.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(gomalloc_loom)]
pub use loom::cell::UnsafeCell;

/// A counter written only by the thread that owns the structure holding it and
/// read, possibly while it changes, by statistics. In a normal build it is a
/// relaxed atomic, so the racy read is defined and the owner's update compiles
/// to a plain load and store; under loom it is a tracked cell, so a model that
/// lets two threads write it fails.
#[derive(Debug)]
pub struct OwnerCounter {
    #[cfg(not(gomalloc_loom))]
    value: AtomicU32,
    #[cfg(gomalloc_loom)]
    value: UnsafeCell<u32>,
}

impl OwnerCounter {
    maybe_const_fn! {
        /// A counter holding `value`.
        pub fn new(value: u32) -> OwnerCounter {
            #[cfg(not(gomalloc_loom))]
            { OwnerCounter { value: AtomicU32::new(value) } }
            #[cfg(gomalloc_loom)]
            { OwnerCounter { value: UnsafeCell::new(value) } }
        }
    }

    /// The owner's read.
    #[inline(always)]
    pub fn get(&self) -> u32 {
        #[cfg(not(gomalloc_loom))]
        {
            self.value.load(Ordering::Relaxed)
        }
        #[cfg(gomalloc_loom)]
        {
            // SAFETY: only the owning thread writes the cell (the type's
            // contract); loom checks that claim.
            self.value.with(|p| unsafe { *p })
        }
    }

    /// The owner's write.
    #[inline(always)]
    pub fn set(&self, value: u32) {
        #[cfg(not(gomalloc_loom))]
        self.value.store(value, Ordering::Relaxed);
        #[cfg(gomalloc_loom)]
        // SAFETY: only the owning thread writes the cell (the type's contract).
        self.value.with_mut(|p| unsafe { *p = value });
    }

    /// A read from any thread, for statistics: a recent value, never torn.
    #[cfg(not(gomalloc_loom))]
    #[inline]
    pub fn read_racy(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    /// Under loom a racy read is a tracked read: a model that takes
    /// statistics while the owner allocates is reported as a race.
    #[cfg(gomalloc_loom)]
    pub fn read_racy(&self) -> u32 {
        self.get()
    }
}

/// A value and the `RawLock` that guards it, with the `fork` hooks every
/// allocator lock needs. The value is only reached through `with`.
#[derive(Debug)]
pub struct Locked<T> {
    lock: RawLock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only touched inside `with`, with the lock held, so one
// thread at a time uses it; it may be used from any thread, hence `T: Send`.
unsafe impl<T: Send> Sync for Locked<T> {}
// SAFETY: moving the lock and the value together moves no thread-bound state
// beyond `T`'s own.
unsafe impl<T: Send> Send for Locked<T> {}

impl<T> Locked<T> {
    maybe_const_fn! {
        /// `value`, unlocked.
        pub fn new(value: T) -> Locked<T> {
            Locked { lock: RawLock::new(), value: UnsafeCell::new(value) }
        }
    }

    /// Runs `f` on the value with the lock held.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock.lock();
        // SAFETY: the lock gives this thread sole access to the value.
        let r = self.value.with_mut(|p| f(unsafe { &mut *p }));
        self.lock.unlock();
        r
    }

    /// Takes the lock before `fork()` (held until `unlock_after_fork`; the
    /// forking thread may still use the value meanwhile, see `RawLock`).
    pub fn lock_for_fork(&self) {
        self.lock.lock_for_fork();
    }

    /// Releases the lock taken by `lock_for_fork`; in the child, resets it.
    pub fn unlock_after_fork(&self, child: bool) {
        self.lock.unlock_after_fork(child);
    }
}

/// A value behind a spin lock released by a plain store: one atomic
/// read-modify-write per critical section where `Locked` takes two. For data
/// that one thread uses all the time and others touch rarely, briefly (a
/// `gc::Pool` thread slot): a waiter spins, then yields and naps
/// ([`thread::backoff`]), and is never woken, so critical sections must be a
/// few instructions and must not run user code. Under loom it is `Locked`,
/// whose waiters loom models as blocked.
#[cfg(not(gomalloc_loom))]
#[derive(Debug)]
pub struct SpinLocked<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

/// See the normal build.
#[cfg(gomalloc_loom)]
pub type SpinLocked<T> = Locked<T>;

// SAFETY: the value is only touched inside `with`, with the lock held, so one
// thread at a time uses it; it may be used from any thread, hence `T: Send`.
#[cfg(not(gomalloc_loom))]
unsafe impl<T: Send> Sync for SpinLocked<T> {}
// SAFETY: moving the flag and the value together moves no thread-bound state
// beyond `T`'s own.
#[cfg(not(gomalloc_loom))]
unsafe impl<T: Send> Send for SpinLocked<T> {}

#[cfg(not(gomalloc_loom))]
impl<T> SpinLocked<T> {
    /// `value`, unlocked.
    pub const fn new(value: T) -> SpinLocked<T> {
        SpinLocked { held: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Runs `f` on the value with the lock held. `f` must not panic (the
    /// lock would stay held).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // Acquire pairs with the Release store below (of the previous holder).
        if self.held.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        // SAFETY: the lock gives this thread sole access to the value.
        let r = self.value.with_mut(|p| f(unsafe { &mut *p }));
        // Release pairs with the Acquire of the next holder's exchange.
        self.held.store(false, Ordering::Release);
        r
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut round = 0;
        loop {
            // Acquire as in `with`.
            if !self.held.load(Ordering::Relaxed)
                && self.held.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
            thread::backoff(round);
            round = round.saturating_add(1);
        }
    }
}

/// Spin-wait hint for loops that wait on another thread. Under loom it yields
/// so the model checker can schedule the thread being waited for.
#[inline]
pub fn spin_hint() {
    #[cfg(not(gomalloc_loom))]
    core::hint::spin_loop();
    #[cfg(gomalloc_loom)]
    loom::thread::yield_now();
}
