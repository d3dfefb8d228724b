//! `RawLock`: the allocator's mutex, with explicit `lock`/`unlock` (no guard
//! object to store) so `pthread_atfork` handlers can hold every lock across a
//! `fork()`.
//!
//! Normal build: a three-state futex mutex (0 free, 1 held, 2 held with
//! waiters), after Drepper's "Futexes Are Tricky". A short spin precedes the
//! futex wait because the allocator's critical sections are a few hundred
//! nanoseconds. It never allocates. Under loom: a flag behind loom's `Mutex`
//! with a `Condvar` to block on, so waiting threads are modelled as blocked
//! rather than spinning (a spin lock with two waiters makes loom explore
//! endless alternations).

#[cfg(not(gomalloc_loom))]
use core::sync::atomic::{AtomicU32, Ordering};

/// A mutual-exclusion lock without a guard type.
#[derive(Debug)]
pub struct RawLock {
    #[cfg(not(gomalloc_loom))]
    state: AtomicU32,
    #[cfg(gomalloc_loom)]
    held: loom::sync::Mutex<bool>,
    #[cfg(gomalloc_loom)]
    released: loom::sync::Condvar,
}

#[cfg(not(gomalloc_loom))]
const FREE: u32 = 0;
#[cfg(not(gomalloc_loom))]
const HELD: u32 = 1;
#[cfg(not(gomalloc_loom))]
const CONTENDED: u32 = 2;

#[cfg(not(gomalloc_loom))]
impl RawLock {
    /// An unlocked lock.
    pub const fn new() -> RawLock {
        RawLock { state: AtomicU32::new(FREE) }
    }

    /// Acquires the lock, waiting as long as it takes.
    #[inline]
    pub fn lock(&self) {
        // Acquire pairs with the Release in `unlock`: the previous holder's
        // writes are visible to the new holder.
        if self.state.compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if self.state.load(Ordering::Relaxed) == FREE
                && self.state.compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
            backoff.snooze();
        }
        // Mark the lock contended so the holder wakes us; Acquire as in `lock`.
        while self.state.swap(CONTENDED, Ordering::Acquire) != FREE {
            futex_wait(&self.state, CONTENDED);
        }
    }

    /// Releases the lock. The caller must hold it.
    #[inline]
    pub fn unlock(&self) {
        // Release pairs with the Acquire in `lock`/`lock_contended`.
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            futex_wake_one(&self.state);
        }
    }

    /// Makes the lock free again in a child process after `fork()`, where the
    /// holder (the forking thread's prepare handler) no longer needs it.
    pub fn reset_after_fork(&self) {
        self.state.store(FREE, Ordering::Relaxed);
    }
}

#[cfg(not(gomalloc_loom))]
fn futex_wait(word: &AtomicU32, expected: u32) {
    futex_wait_timeout(word, expected, None);
}

/// Sleeps while `word` holds `expected`, at most `timeout_ms` milliseconds
/// when given. May return early (a wake, a signal, a spurious wake-up):
/// callers re-check in a loop.
#[cfg(not(gomalloc_loom))]
pub(crate) fn futex_wait_timeout(word: &AtomicU32, expected: u32, timeout_ms: Option<u64>) {
    let ts = timeout_ms.map(|ms| libc::timespec {
        tv_sec: (ms / 1000).min(i64::MAX as u64) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind a live reference; the
    // relative timeout, if any, lives on this frame for the call. A spurious
    // or early return is handled by the caller's loop.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, expected, ts_ptr);
    }
}

#[cfg(not(gomalloc_loom))]
fn futex_wake_one(word: &AtomicU32) {
    futex_wake(word, 1);
}

/// Wakes up to `n` threads sleeping on `word`.
#[cfg(not(gomalloc_loom))]
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, n);
    }
}

#[cfg(gomalloc_loom)]
impl RawLock {
    /// An unlocked lock.
    pub fn new() -> RawLock {
        RawLock { held: loom::sync::Mutex::new(false), released: loom::sync::Condvar::new() }
    }

    /// Acquires the lock, blocking (so loom does not explore endless
    /// alternations of spinning waiters).
    pub fn lock(&self) {
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        *held = true;
    }

    /// Releases the lock. The caller must hold it.
    pub fn unlock(&self) {
        *self.held.lock().unwrap() = false;
        self.released.notify_one();
    }

    /// See the normal build.
    pub fn reset_after_fork(&self) {
        *self.held.lock().unwrap() = false;
    }
}

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}
