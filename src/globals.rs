//! The process-wide allocator: the only file holding global statics. It owns
//! the `Allocator` instance behind `GoMalloc`, the thread-local cache pointer,
//! the `pthread` key whose destructor flushes a cache at thread exit, and the
//! `pthread_atfork` handlers; and the thread-local list of `gc::Pool` slots.
//!
//! Called by `lib.rs` (the public API) and by the C library. Calls
//! `malloc.rs`.
//!
//! # Threads
//! Each thread's cache pointer starts at the shared `UNBORN` cache, whose
//! every slot is the sentinel span, so the first small allocation falls into
//! the slow path, which creates the real cache (`adopt_thread_cache`). The
//! thread-local is `const`-initialised with no `Drop`, so reading it never
//! registers anything or allocates. Thread exit is caught by a `pthread` key
//! destructor, not a Rust TLS destructor (registering one can allocate): it
//! flushes the cache's spans to the central lists and points the thread at the
//! shared `DEAD` cache, so allocations made later in the exit sequence are
//! served uncached instead of recreating a cache that would leak.
//!
//! # Fork
//! `pthread_atfork` handlers take every allocator lock in the lock order
//! before `fork()` and release them after, in the parent, or reset them, in
//! the child, so the child can allocate whatever the other threads were
//! doing. Caches of threads that do not exist in the child keep their spans.
//! The background scavenger thread does not exist in the child either: the
//! child handler resets its state (through the heap), and the child's first
//! free of a span starts a new one.

use crate::malloc::Allocator;
use crate::mcache::{CacheKind, MCache};
use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The allocator behind [`crate::GoMalloc`].
pub static ALLOCATOR: Allocator = Allocator::new(Some(adopt_thread_cache)).with_scavenger(start_scavenger);

/// A cache record shared by many threads, which only ever read it.
struct SharedCache(MCache);
// SAFETY: shared caches are never written: their slots all hold the sentinel,
// whose empty free list sends every allocation to the slow path, which checks
// the cache kind before touching a cache.
unsafe impl Sync for SharedCache {}

static UNBORN: SharedCache = SharedCache(MCache::new(ALLOCATOR.sentinel(), CacheKind::Unborn));
static DEAD: SharedCache = SharedCache(MCache::new(ALLOCATOR.sentinel(), CacheKind::Dead));

const fn shared(c: &'static SharedCache) -> *mut MCache {
    &c.0 as *const MCache as *mut MCache
}

thread_local! {
    static CACHE: Cell<*mut MCache> = const { Cell::new(shared(&UNBORN)) };
}

thread_local! {
    /// The calling thread's slot in each `gc::Pool` it has used (`gc/pool.rs`).
    /// Unlike `CACHE` this key has a destructor (registered on first use, by
    /// a thread that is not inside the allocator): at thread exit it hands
    /// each slot's value back to its pool.
    pub(crate) static POOL_SLOTS: RefCell<Vec<crate::gc::pool::SlotRegistration>> =
        const { RefCell::new(Vec::new()) };
}

/// The calling thread's cache (possibly a shared empty one).
#[inline(always)]
pub fn current_cache() -> *mut MCache {
    CACHE.with(|c| c.get())
}

/// The secure build's per-process secret, four words (`secure.rs`: two keys
/// of 128 bits); each 0 until first needed.
#[cfg(feature = "secure")]
pub(crate) static SECURE_SECRET: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// `pthread_key_t + 2` once created; 1 while being created; 0 before.
static EXIT_KEY: AtomicU64 = AtomicU64::new(0);
static ATFORK_REGISTERED: AtomicBool = AtomicBool::new(false);

/// The key whose destructor flushes a thread's cache, created on first use.
/// `pthread_key_create` does not allocate, so no re-entry can happen while
/// another thread waits here.
fn exit_key() -> Option<libc::pthread_key_t> {
    loop {
        // Acquire pairs with the Release store below: the key is written.
        match EXIT_KEY.load(Ordering::Acquire) {
            0 => {
                if EXIT_KEY.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                    continue;
                }
                let mut key: libc::pthread_key_t = 0;
                // SAFETY: `key` is a valid out-pointer; the destructor has the
                // signature pthread expects.
                let ok = unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0;
                let value = if ok { key as u64 + 2 } else { 0 };
                // Release pairs with the Acquire load above.
                EXIT_KEY.store(value, Ordering::Release);
                return ok.then_some(key);
            }
            1 => crate::sync::spin_hint(),
            k => return Some((k - 2) as libc::pthread_key_t),
        }
    }
}

/// Creates the calling thread's cache (the `adopt` hook of `ALLOCATOR`).
fn adopt_thread_cache() -> *mut MCache {
    let key = exit_key();
    let cache = ALLOCATOR.new_cache();
    if cache.is_null() {
        return cache;
    }
    // Install before anything below can re-enter the allocator.
    CACHE.with(|c| c.set(cache));
    if let Some(key) = key {
        // SAFETY: a valid key; the value is the cache the destructor flushes.
        unsafe { libc::pthread_setspecific(key, cache.cast()) };
    }
    // `pthread_atfork` may allocate; this thread's cache is installed.
    register_atfork();
    cache
}

/// Starts the background scavenger thread (the `spawn` hook of
/// `ALLOCATOR`'s scavenger, called with no allocator lock held). The fork
/// handlers are registered first, so a child forgets the thread.
///
/// The first freed span starts the thread, and that free may come from
/// inside this thread's cache (a refill handing its old span back, a batch
/// of remote frees being published), whose slots and pending chain are then
/// half updated. `pthread_create` and `pthread_atfork` allocate (under the
/// C library, from gomalloc), so the thread is pointed at the shared `DEAD`
/// cache meanwhile: those allocations and frees are served uncached, like
/// the ones made during thread exit, and never touch the cache being updated.
fn start_scavenger() -> bool {
    let own = CACHE.with(|c| c.replace(shared(&DEAD)));
    register_atfork();
    let started = crate::scavenger::spawn(&ALLOCATOR);
    CACHE.with(|c| c.set(own));
    started
}

fn register_atfork() {
    if !ATFORK_REGISTERED.swap(true, Ordering::Relaxed) {
        // SAFETY: the handlers are `extern "C"` functions with no arguments.
        // `pthread_atfork` may allocate; callers hold no allocator lock.
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child)) };
    }
}

/// `pthread` key destructor: runs on the exiting thread with its cache.
unsafe extern "C" fn thread_exit(cache: *mut libc::c_void) {
    CACHE.with(|c| c.set(shared(&DEAD)));
    // SAFETY: the key's value is this thread's live cache, set once in
    // `adopt_thread_cache`; nothing uses it after this.
    unsafe { ALLOCATOR.caches().destroy(&ALLOCATOR, cache.cast()) };
}

extern "C" fn before_fork() {
    ALLOCATOR.lock_all();
}
extern "C" fn after_fork_parent() {
    ALLOCATOR.unlock_all(false);
}
extern "C" fn after_fork_child() {
    ALLOCATOR.unlock_all(true);
}
