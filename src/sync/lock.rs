//! `RawLock`: the allocator's mutex, with explicit `lock`/`unlock` (no guard
//! object to store) so `pthread_atfork` handlers can hold every lock across a
//! `fork()`.
//!
//! Fork: `lock_for_fork` records the forking thread as the lock's fork
//! holder until `unlock_after_fork`, and for that thread alone `lock` and
//! `unlock` do nothing meanwhile. `pthread_atfork` runs the prepare handlers
//! registered before gomalloc's after it, and their parent and child
//! handlers before gomalloc's, all with every allocator lock held; a handler
//! that allocates (another library's, registered before the first
//! allocation) would otherwise wait forever for a lock its own thread holds.
//! The data behind the locks is consistent then: each lock was acquired
//! between critical sections, and the forking thread is in none (unless it
//! forks from a signal handler that interrupted an allocator call, which
//! deadlocks, as it does with glibc's malloc).
//!
//! Normal build: a three-state futex mutex (0 free, 1 held, 2 held with
//! waiters), after Drepper's "Futexes Are Tricky". A short spin precedes the
//! futex wait because the allocator's critical sections are a few hundred
//! nanoseconds. It never allocates. Under loom: a flag behind loom's `Mutex`
//! with a `Condvar` to block on, so waiting threads are modelled as blocked
//! rather than spinning (a spin lock with two waiters makes loom explore
//! endless alternations).

#[cfg(not(gomalloc_loom))]
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A mutual-exclusion lock without a guard type.
#[derive(Debug)]
pub struct RawLock {
    #[cfg(not(gomalloc_loom))]
    state: AtomicU32,
    /// The `pthread_self` of the thread holding the lock across a fork, 0
    /// otherwise. Only that thread ever finds its own id here: others read
    /// 0 or an id that is not theirs, whichever value they see.
    #[cfg(not(gomalloc_loom))]
    fork_holder: AtomicUsize,
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
        RawLock { state: AtomicU32::new(FREE), fork_holder: AtomicUsize::new(0) }
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
        if self.held_for_fork_by_caller() {
            return;
        }
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
        if self.fork_holder.load(Ordering::Relaxed) != 0 && self.held_for_fork_by_caller() {
            return;
        }
        // Release pairs with the Acquire in `lock`/`lock_contended`.
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            futex_wake_one(&self.state);
        }
    }

    /// Takes the lock before `fork()` on behalf of the calling thread, which
    /// may go on using it (see the module header) until `unlock_after_fork`.
    pub fn lock_for_fork(&self) {
        self.lock();
        self.fork_holder.store(current_thread(), Ordering::Relaxed);
    }

    /// Releases the lock `lock_for_fork` took: in the parent, as `unlock`;
    /// in the child, where no other thread exists to have waited, by making
    /// it free.
    pub fn unlock_after_fork(&self, child: bool) {
        self.fork_holder.store(0, Ordering::Relaxed);
        if child {
            self.state.store(FREE, Ordering::Relaxed);
        } else {
            self.unlock();
        }
    }

    #[cold]
    fn held_for_fork_by_caller(&self) -> bool {
        self.fork_holder.load(Ordering::Relaxed) == current_thread()
    }
}

/// The calling thread's `pthread_self`: never 0, the same in a forked child
/// as in the parent's forking thread.
#[cfg(not(gomalloc_loom))]
fn current_thread() -> usize {
    // SAFETY: `pthread_self` has no preconditions.
    unsafe { libc::pthread_self() as usize }
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

    /// See the normal build (loom models do not fork).
    pub fn lock_for_fork(&self) {
        self.lock();
    }

    /// See the normal build.
    pub fn unlock_after_fork(&self, child: bool) {
        if child {
            *self.held.lock().unwrap() = false;
        } else {
            self.unlock();
        }
    }
}

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}
