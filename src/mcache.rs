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
//! # Batched remote frees
//! A free into a span this cache does not own joins a private chain, the
//! *pending* frees, while consecutive frees hit the same span; the chain is
//! published with one CAS (`Span::push_remote_chain`) when a free hits another
//! span, and on every refill, flush and collect. Frees made in allocation
//! order (a batch freed, a consumer draining a producer) so cost one CAS per
//! span instead of one per object. Until published, pending objects count as
//! live: a span stays out of the heap a little longer, never less.
//!
//! Invariants: every class slot points either at a span owned by this cache
//! (tag `OWNED`, `owner` = this cache) or at the sentinel empty span, whose
//! free list is always null, so the fast path's single null test is also the
//! "no span yet" test. A cache owns no span that is not in a class slot. The
//! pending chain holds only objects of `pending.span`, none twice.

use crate::fixalloc::FixAlloc;
use crate::malloc::Allocator;
use crate::sizeclass::NUM_CLASSES;
use crate::span::{FreeObj, Span};
use crate::sync::{maybe_const_fn, Locked};
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
    pending: PendingFrees,
    /// Registry links (registry lock).
    next: *mut MCache,
    prev: *mut MCache,
}

/// Frees into one span not owned by this cache, not yet published.
#[derive(Debug)]
struct PendingFrees {
    span: *mut Span,
    /// Most recently freed object; links to the earlier ones.
    first: *mut FreeObj,
    first_index: usize,
    last: *mut FreeObj,
    count: u32,
}

impl PendingFrees {
    const NONE: PendingFrees =
        PendingFrees { span: ptr::null_mut(), first: ptr::null_mut(), first_index: 0, last: ptr::null_mut(), count: 0 };
}

impl MCache {
    /// A cache with no spans, every class slot at `sentinel`.
    pub const fn new(sentinel: *mut Span, kind: CacheKind) -> MCache {
        MCache {
            spans: [sentinel; NUM_CLASSES],
            kind,
            pending: PendingFrees::NONE,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
        }
    }

    /// Frees `obj`, slot `index` of `span`, which this cache does not own.
    /// On a shared empty cache (which is never written) the free is
    /// published at once.
    ///
    /// # Safety
    /// `self` is the calling thread's cache of `alloc` (or a shared empty
    /// one); `obj` is a live slot of the live `span`, freed once.
    #[inline(never)]
    pub unsafe fn free_remote(&mut self, alloc: &Allocator, span: *mut Span, obj: *mut u8, index: usize) {
        let obj = obj.cast::<FreeObj>();
        if self.kind == CacheKind::Unborn {
            // A thread that frees without ever allocating (a consumer) gets a
            // cache of its own too, so its frees are batched.
            let own = alloc.adopt_cache();
            if !own.is_null() {
                // SAFETY: the calling thread's new live cache; forwarded.
                return unsafe { (*own).free_remote(alloc, span, obj.cast(), index) };
            }
        }
        if self.kind != CacheKind::Live {
            // SAFETY: forwarded; a claim makes this thread the holder.
            unsafe {
                if (*span).push_remote_chain(obj, index, obj, 1) {
                    alloc.central((*span).class as usize).on_claimed(alloc.heap(), span);
                }
            }
            return;
        }
        if self.pending.span == span {
            if self.pending.first == obj {
                crate::os::fatal(format_args!("double free of {:#x} (size class {})", obj as usize, unsafe {
                    // SAFETY: the span is live (it holds pending objects).
                    (*span).class
                }));
            }
            // SAFETY: the caller gives up `obj`, a slot of the live span;
            // the chain is private.
            unsafe { (*span).store_link(obj, self.pending.first) };
            self.pending.first = obj;
            self.pending.first_index = index;
            self.pending.count += 1;
            return;
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.publish_pending(alloc) };
        self.pending = PendingFrees { span, first: obj, first_index: index, last: obj, count: 1 };
    }

    /// Publishes the pending frees with one CAS.
    ///
    /// # Safety
    /// `self` is a live cache of `alloc` used by its own thread.
    #[inline(never)]
    pub unsafe fn publish_pending(&mut self, alloc: &Allocator) {
        let p = core::mem::replace(&mut self.pending, PendingFrees::NONE);
        if p.span.is_null() {
            return;
        }
        // SAFETY: the chain holds `count` distinct live slots of the span
        // (the span stays live while they are not freed); a claim makes this
        // thread the holder, as `on_claimed` requires.
        unsafe {
            if (*p.span).push_remote_chain(p.first, p.first_index, p.last, p.count) {
                alloc.central((*p.span).class as usize).on_claimed(alloc.heap(), p.span);
            }
        }
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
        // SAFETY: forwarded caller contract. Publishing first may hand this
        // very cache its own objects back through a span's remote list.
        unsafe { self.publish_pending(alloc) };
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
        // SAFETY: forwarded caller contract.
        unsafe { self.publish_pending(alloc) };
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
    inner: Locked<RegistryInner>,
}

#[derive(Debug)]
struct RegistryInner {
    records: FixAlloc<MCache>,
    first: *mut MCache,
}

// SAFETY: the records belong to no particular thread; they move between
// threads only under the registry lock.
unsafe impl Send for RegistryInner {}

impl CacheRegistry {
    maybe_const_fn! {
        /// An empty registry.
        pub fn new() -> CacheRegistry {
            CacheRegistry {
                inner: Locked::new(RegistryInner { records: FixAlloc::new(), first: ptr::null_mut() }),
            }
        }
    }

    /// Takes the lock (for `fork`).
    pub fn lock_for_fork(&self) {
        self.inner.lock_for_fork();
    }

    /// Releases the lock taken by `lock_for_fork`.
    pub fn unlock_after_fork(&self, child: bool) {
        self.inner.unlock_after_fork(child);
    }

    /// A new live cache with no spans; null when out of memory.
    pub fn create(&self, sentinel: *mut Span) -> *mut MCache {
        self.inner.with(|r| {
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
        self.inner.with(|r| {
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
        self.inner.with(|r| r.records.in_use)
    }

    /// Bytes mapped for cache records.
    pub fn mapped_bytes(&self) -> usize {
        self.inner.with(|r| r.records.mapped)
    }
}

impl Default for CacheRegistry {
    fn default() -> Self {
        CacheRegistry::new()
    }
}
