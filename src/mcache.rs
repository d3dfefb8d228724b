//! Thread caches (Go's `mcache`): per thread, one current span per size
//! class. Allocation pops that span's local free list; a free by the owning
//! thread pushes on it. No atomics and no lock on either path.
//!
//! Called by `malloc.rs` (the allocation and free paths) and `globals.rs`
//! (creation at a thread's first allocation, flush at its exit). Calls
//! `mcentral.rs` to trade spans and `fixalloc.rs` (through the registry) for
//! its own record.
//!
//! # Concurrency
//! A cache is used only by its thread, so its fields are plain. Other threads
//! see only its address, as the `owner` of its spans. The `CacheRegistry`
//! creates and destroys cache records under its own lock, a leaf lock.
//!
//! Invariants: every class slot points either at a span owned by this cache
//! (tag `OWNED`, `owner` = this cache) or at the sentinel empty span, whose
//! free list is always null, so the fast path's single null test is also the
//! "no span yet" test. A cache owns no span that is not in a class slot.

use crate::fixalloc::FixAlloc;
use crate::malloc::Allocator;
use crate::sizeclass::NUM_CLASSES;
use crate::span::Span;
use crate::sync::{maybe_const_fn, RawLock, UnsafeCell};
use core::ptr;

/// What a cache record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// A thread's cache.
    Live,
    /// The shared empty cache every thread starts with: its first refill
    /// creates the thread's real cache.
    Unborn,
    /// The shared empty cache of a thread whose cache was flushed at exit:
    /// allocation bypasses caching.
    Dead,
}

/// A thread cache.
#[repr(C)]
#[derive(Debug)]
pub struct MCache {
    /// Current span per class (the sentinel when none).
    spans: [*mut Span; NUM_CLASSES],
    kind: CacheKind,
    /// Registry links (registry lock).
    next: *mut MCache,
    prev: *mut MCache,
}

impl MCache {
    /// A cache with no spans, every class slot at `sentinel`.
    pub const fn new(sentinel: *mut Span, kind: CacheKind) -> MCache {
        MCache { spans: [sentinel; NUM_CLASSES], kind, next: ptr::null_mut(), prev: ptr::null_mut() }
    }

    /// What this record is.
    #[inline]
    pub fn kind(&self) -> CacheKind {
        self.kind
    }

    /// The cache's identity as a span owner.
    #[inline(always)]
    pub fn id(&self) -> usize {
        self as *const MCache as usize
    }

    /// Fast path: pops an object of `class` from the current span; null when
    /// its local list is empty (including the sentinel).
    ///
    /// # Safety
    /// Called by the cache's thread (or on a shared empty cache, which is only
    /// read).
    #[inline(always)]
    pub unsafe fn pop(&self, class: usize) -> *mut u8 {
        // SAFETY: slot spans are owned by this cache or are the sentinel,
        // whose free list is null so `pop_local` returns before writing.
        unsafe { (*self.spans[class]).pop_local() }
    }

    /// Slow path: refills the slot of `class` and returns an object, or null
    /// when out of memory. First splices the current span's remote frees,
    /// then threads its fresh slots, then trades it for another span from the
    /// central list.
    ///
    /// # Safety
    /// `self` is a live cache of `alloc`, used by its own thread.
    #[cold]
    #[inline(never)]
    pub unsafe fn refill(&mut self, alloc: &Allocator, class: usize) -> *mut u8 {
        let current = self.spans[class];
        if current != alloc.sentinel() {
            // SAFETY: the slot's span is owned by this cache; its local list
            // is empty (the fast path just found it so).
            unsafe {
                if (*current).splice_remote() || (*current).extend() {
                    return (*current).pop_local();
                }
                self.spans[class] = alloc.sentinel();
                alloc.central(class).release(alloc.heap(), current);
            }
        }
        let span = alloc.central(class).acquire(alloc.heap(), class, self.id());
        if span.is_null() {
            return ptr::null_mut();
        }
        self.spans[class] = span;
        // SAFETY: `acquire` handed this cache a span with a free object in its
        // local list, its remote list or its fresh slots.
        unsafe {
            let obj = (*span).pop_local();
            if !obj.is_null() {
                return obj;
            }
            let refilled = (*span).splice_remote() || (*span).extend();
            debug_assert!(refilled, "acquired span has no free object");
            (*span).pop_local()
        }
    }

    /// Gives every current span back to the central lists.
    ///
    /// # Safety
    /// `self` is a live cache of `alloc`, used by its own thread (or by the
    /// thread-exit destructor on that thread).
    pub unsafe fn flush(&mut self, alloc: &Allocator) {
        for class in 1..NUM_CLASSES {
            let span = self.spans[class];
            if span != alloc.sentinel() {
                self.spans[class] = alloc.sentinel();
                // SAFETY: the span was owned by this cache.
                unsafe { alloc.central(class).release(alloc.heap(), span) };
            }
        }
    }
}

/// Creates, tracks and destroys the records of live caches.
#[derive(Debug)]
pub struct CacheRegistry {
    lock: RawLock,
    inner: UnsafeCell<RegistryInner>,
}

#[derive(Debug)]
struct RegistryInner {
    records: FixAlloc<MCache>,
    first: *mut MCache,
}

// SAFETY: `inner` is only touched with `lock` held.
unsafe impl Sync for CacheRegistry {}
// SAFETY: the records belong to no particular thread.
unsafe impl Send for CacheRegistry {}

impl CacheRegistry {
    maybe_const_fn! {
        /// An empty registry.
        pub fn new() -> CacheRegistry {
            CacheRegistry {
                lock: RawLock::new(),
                inner: UnsafeCell::new(RegistryInner { records: FixAlloc::new(), first: ptr::null_mut() }),
            }
        }
    }

    fn locked<R>(&self, f: impl FnOnce(&mut RegistryInner) -> R) -> R {
        self.lock.lock();
        // SAFETY: the lock gives this thread sole access.
        let r = self.inner.with_mut(|i| f(unsafe { &mut *i }));
        self.lock.unlock();
        r
    }

    /// Takes the lock (for `fork`).
    pub fn lock_for_fork(&self) {
        self.lock.lock();
    }
    /// Releases the lock taken by `lock_for_fork`.
    pub fn unlock_after_fork(&self, child: bool) {
        if child {
            self.lock.reset_after_fork();
        } else {
            self.lock.unlock();
        }
    }

    /// A new live cache with no spans; null when out of memory.
    pub fn create(&self, sentinel: *mut Span) -> *mut MCache {
        self.locked(|r| {
            let c = r.records.alloc();
            if !c.is_null() {
                // SAFETY: a fresh record of the right type.
                unsafe {
                    ptr::write(c, MCache::new(sentinel, CacheKind::Live));
                    (*c).next = r.first;
                    if !r.first.is_null() {
                        (*r.first).prev = c;
                    }
                }
                r.first = c;
            }
            c
        })
    }

    /// Flushes `cache` and frees its record.
    ///
    /// # Safety
    /// `cache` came from `create` on this registry, is used by the calling
    /// thread only, and is not used again.
    pub unsafe fn destroy(&self, alloc: &Allocator, cache: *mut MCache) {
        // SAFETY: the caller owns the live cache.
        unsafe { (*cache).flush(alloc) };
        self.locked(|r| {
            // SAFETY: the record is on the registry list; the lock is held.
            unsafe {
                let (prev, next) = ((*cache).prev, (*cache).next);
                if prev.is_null() {
                    r.first = next;
                } else {
                    (*prev).next = next;
                }
                if !next.is_null() {
                    (*next).prev = prev;
                }
                r.records.free(cache);
            }
        });
    }

    /// Live caches.
    pub fn count(&self) -> usize {
        self.locked(|r| r.records.in_use)
    }

    /// Bytes mapped for cache records.
    pub fn mapped_bytes(&self) -> usize {
        self.locked(|r| r.records.mapped)
    }
}

impl Default for CacheRegistry {
    fn default() -> Self {
        CacheRegistry::new()
    }
}
