//! The allocator as a value: the page heap, one central list per class, the
//! cache registry and the sentinel span, with the allocation, free and
//! realloc paths that route a request through the tiers.
//!
//! Called by `globals.rs` (the process-wide instance behind `GoMalloc`) and by
//! tests and loom models, which build their own instances. Calls
//! `mcache.rs`, `mcentral.rs`, `mheap.rs` and `large.rs`.
//!
//! # Concurrency
//! No state of its own beyond the tiers'. The fast paths take a thread cache
//! pointer: the caller guarantees it is the calling thread's cache (or one of
//! the shared empty caches, which are only read). An `Allocator` must not move
//! once a cache has been created for it: caches point at its sentinel.

use crate::large::{LargeCache, FREED};
use crate::mcache::{CacheKind, CacheRegistry, MCache};
use crate::mcentral::MCentral;
use crate::mheap::MHeap;
use crate::os;
use crate::sizeclass::{aligned_size_to_class, size_to_class, MAX_SMALL_SIZE, NUM_CLASSES, PAGE_SIZE};
use crate::span::{RemoteWord, Span};
use crate::stats::Stats;
use crate::sync::Ordering;
use core::ptr;
use crossbeam_utils::CachePadded;

/// Creates the calling thread's cache on its first small allocation and
/// returns it (null when that is impossible); installed by `globals.rs`.
pub type AdoptCacheFn = fn() -> *mut MCache;

/// The allocator: every tier, as one value.
pub struct Allocator {
    heap: MHeap,
    central: [CachePadded<MCentral>; NUM_CLASSES],
    caches: CacheRegistry,
    large_cache: LargeCache,
    sentinel: Span,
    adopt: Option<AdoptCacheFn>,
}

impl Allocator {
    /// An allocator that has mapped nothing. `adopt` is called when a thread
    /// allocates through the shared unborn cache; without it such threads
    /// allocate uncached.
    #[cfg(not(gomalloc_loom))]
    pub const fn new(adopt: Option<AdoptCacheFn>) -> Allocator {
        Allocator {
            heap: MHeap::new(),
            central: [const { CachePadded::new(MCentral::new()) }; NUM_CLASSES],
            caches: CacheRegistry::new(),
            large_cache: LargeCache::new(),
            sentinel: Span::empty(),
            adopt,
        }
    }

    /// The same allocator with a background scavenger whose thread `spawn`
    /// starts (see `scavenger.rs`); for the process-wide instance.
    #[cfg(not(gomalloc_loom))]
    pub const fn with_scavenger(mut self, spawn: crate::scavenger::SpawnFn) -> Allocator {
        self.heap.scavenger = crate::scavenger::Scavenger::new(Some(spawn));
        self
    }

    /// See the normal build.
    #[cfg(gomalloc_loom)]
    pub fn new(adopt: Option<AdoptCacheFn>) -> Allocator {
        Allocator {
            heap: MHeap::new(),
            central: core::array::from_fn(|_| CachePadded::new(MCentral::new())),
            caches: CacheRegistry::new(),
            large_cache: LargeCache::new(),
            sentinel: Span::empty(),
            adopt,
        }
    }

    /// The cache of recently freed large runs.
    #[inline]
    pub(crate) fn large_cache(&self) -> &LargeCache {
        &self.large_cache
    }

    /// The page heap.
    #[inline(always)]
    pub fn heap(&self) -> &MHeap {
        &self.heap
    }

    /// The central lists of `class`.
    #[inline(always)]
    pub fn central(&self, class: usize) -> &MCentral {
        &self.central[class]
    }

    /// The cache registry.
    pub fn caches(&self) -> &CacheRegistry {
        &self.caches
    }

    /// The always-empty span every vacant cache slot points to.
    #[inline(always)]
    pub const fn sentinel(&self) -> *mut Span {
        &self.sentinel as *const Span as *mut Span
    }

    /// The calling thread's cache, created through the `adopt` hook (null
    /// without a hook or when out of memory).
    pub(crate) fn adopt_cache(&self) -> *mut MCache {
        self.adopt.map_or(ptr::null_mut(), |adopt| adopt())
    }

    /// A new live cache for the calling thread; null when out of memory.
    pub fn new_cache(&self) -> *mut MCache {
        self.caches.create(self.sentinel())
    }

    /// Allocates `size` bytes aligned to `align` (a power of two). Null when
    /// out of memory.
    ///
    /// # Safety
    /// `cache` is the calling thread's cache of this allocator, or a shared
    /// empty cache of it.
    #[cfg(not(feature = "secure"))]
    #[inline(always)]
    pub unsafe fn alloc(&self, cache: *mut MCache, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_plain(cache, size, align) }
    }

    /// Allocates `size` bytes aligned to `align` (a power of two), small
    /// blocks with a canary (`secure.rs`). Null when out of memory.
    ///
    /// # Safety
    /// As in the default build.
    #[cfg(feature = "secure")]
    #[inline(always)]
    pub unsafe fn alloc(&self, cache: *mut MCache, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_padded(cache, size, align) }
    }

    /// `alloc` without the secure build's padding (which does not use it).
    ///
    /// # Safety
    /// As for `alloc`.
    #[cfg_attr(feature = "secure", allow(dead_code))]
    #[inline(always)]
    pub(crate) unsafe fn alloc_plain(&self, cache: *mut MCache, size: usize, align: usize) -> *mut u8 {
        if size <= MAX_SMALL_SIZE && align <= 8 {
            // SAFETY: forwarded caller contract.
            unsafe { self.alloc_class(cache, size_to_class(size)) }
        } else {
            // SAFETY: forwarded caller contract.
            unsafe { self.alloc_general(cache, size, align) }
        }
    }

    /// Allocates an object of `class` from `cache`.
    ///
    /// # Safety
    /// As for `alloc`.
    #[inline(always)]
    pub(crate) unsafe fn alloc_class(&self, cache: *mut MCache, class: usize) -> *mut u8 {
        // SAFETY: the caller's cache; `pop` only reads a shared empty cache.
        unsafe {
            let obj = (*cache).pop(class);
            if !obj.is_null() {
                return obj;
            }
            self.refill(cache, class)
        }
    }

    /// Over-aligned small requests and large requests.
    #[cfg_attr(feature = "secure", allow(dead_code))]
    #[inline(never)]
    unsafe fn alloc_general(&self, cache: *mut MCache, size: usize, align: usize) -> *mut u8 {
        if size <= MAX_SMALL_SIZE && align <= PAGE_SIZE {
            // SAFETY: forwarded caller contract.
            unsafe { self.alloc_class(cache, aligned_size_to_class(size, align)) }
        } else {
            self.alloc_large(size, align, false)
        }
    }

    #[cold]
    #[inline(never)]
    unsafe fn refill(&self, cache: *mut MCache, class: usize) -> *mut u8 {
        // SAFETY: `cache` is the caller's; only a live one is written.
        unsafe {
            match (*cache).kind() {
                CacheKind::Live => (*cache).refill(self, class),
                CacheKind::Unborn => match self.adopt.map(|adopt| adopt()) {
                    Some(own) if !own.is_null() => self.alloc_class(own, class),
                    _ => self.alloc_uncached(class),
                },
                CacheKind::Dead => self.alloc_uncached(class),
            }
        }
    }

    /// Allocation for a thread without a cache (one that is exiting, or one
    /// whose cache could not be created): a cache on the stack takes a span,
    /// hands out one object and gives the span back.
    #[cold]
    #[inline(never)]
    fn alloc_uncached(&self, class: usize) -> *mut u8 {
        let mut temp = MCache::new(self.sentinel(), CacheKind::Live);
        // SAFETY: `temp` is a live cache used only by this thread, and it
        // gives its span back before it goes out of scope.
        unsafe {
            let obj = temp.refill(self, class);
            temp.flush(self);
            obj
        }
    }

    /// Allocates zeroed memory: small objects are cleared, large runs only
    /// when their pages may hold old data.
    ///
    /// # Safety
    /// As for `alloc`.
    pub unsafe fn alloc_zeroed(&self, cache: *mut MCache, size: usize, align: usize) -> *mut u8 {
        if size <= MAX_SMALL_SIZE && align <= PAGE_SIZE {
            // SAFETY: forwarded caller contract; the object is ours and at
            // least `size` bytes long.
            unsafe {
                let p = self.alloc(cache, size, align);
                if !p.is_null() {
                    ptr::write_bytes(p, 0, size);
                }
                p
            }
        } else {
            self.alloc_large(size, align, true)
        }
    }

    /// Frees a block, given the size and alignment it was allocated with
    /// (Rust's sized deallocation). The span found by address is
    /// authoritative; the layout picks the likely path.
    ///
    /// # Safety
    /// `cache` as for `alloc`; `ptr` was returned by this allocator and is
    /// not used afterwards.
    #[inline(always)]
    pub unsafe fn dealloc(&self, cache: *mut MCache, ptr: *mut u8, size: usize, align: usize) {
        let span = self.heap.span_of(ptr as usize);
        // SAFETY: a non-null span from the table is live while it holds a
        // live object; forwarded caller contract.
        unsafe {
            if size <= MAX_SMALL_SIZE && align <= PAGE_SIZE && !span.is_null() && (*span).class != 0 {
                self.free_small(cache, span, ptr)
            } else {
                self.free_general(cache, span, ptr)
            }
        }
    }

    /// Frees a block without knowing its size (C `free`). Null is ignored.
    ///
    /// # Safety
    /// As for `dealloc`.
    pub unsafe fn free(&self, cache: *mut MCache, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.free_general(cache, self.heap.span_of(ptr as usize), ptr) }
    }

    #[inline(always)]
    unsafe fn free_small(&self, cache: *mut MCache, span: *mut Span, ptr: *mut u8) {
        // SAFETY: the span holds `ptr`, a live object, so it is live.
        let s = unsafe { &*span };
        let Some(index) = s.slot_of(ptr as usize) else {
            invalid_free(ptr, "not the start of a block (interior pointer)");
        };
        #[cfg(feature = "secure")]
        crate::secure::check_free(s, ptr, index);
        if s.owner.load(Ordering::Relaxed) == cache as usize {
            // SAFETY: this thread's cache owns the span; `ptr` is its slot.
            if unsafe { !s.push_local(ptr) } {
                os::fatal(format_args!("double free of {:#x} (size class {})", ptr as usize, s.class));
            }
        } else {
            // SAFETY: `ptr` is slot `index` of the span, handed out; `cache`
            // is the caller's.
            unsafe { (*cache).free_remote(self, span, ptr, index) }
        }
    }

    #[inline(never)]
    unsafe fn free_general(&self, cache: *mut MCache, span: *mut Span, ptr: *mut u8) {
        if span.is_null() {
            if self.heap.contains(ptr as usize) {
                invalid_free(ptr, "not a live block (already freed, or never allocated)");
            }
            invalid_free(ptr, "not allocated by gomalloc (outside its heap)");
        }
        // SAFETY: a span from the table that holds a live block is live.
        unsafe {
            if (*span).class != 0 {
                self.free_small(cache, span, ptr)
            } else {
                self.free_large(span, ptr)
            }
        }
    }

    /// Resizes a block, in place when the size class does not change or when
    /// a large block's following pages are free; otherwise moves it. Null
    /// (with the old block intact) when out of memory.
    ///
    /// # Safety
    /// As for `dealloc`; `old_size` is at most the block's usable size.
    pub unsafe fn realloc(
        &self,
        cache: *mut MCache,
        ptr: *mut u8,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> *mut u8 {
        let span = self.heap.span_of(ptr as usize);
        if span.is_null() {
            invalid_free(ptr, "realloc of memory not allocated by gomalloc, or already freed");
        }
        // SAFETY: a span from the table that holds a live block is live.
        let s = unsafe { &*span };
        let padded = new_size.saturating_add(crate::secure::PAD);
        let stays_small = padded <= MAX_SMALL_SIZE && align <= PAGE_SIZE;
        if s.class != 0 {
            if stays_small && aligned_size_to_class(padded, align.max(1)) == s.class as usize {
                #[cfg(feature = "secure")]
                match s.slot_of(ptr as usize) {
                    // SAFETY: the caller's live block, slot `index`, fits `padded`.
                    Some(index) => unsafe { crate::secure::resize_small(s, ptr, index, new_size) },
                    None => invalid_free(ptr, "realloc of an interior pointer"),
                }
                return ptr;
            }
        } else if s.owner.load(Ordering::Relaxed) == FREED {
            invalid_free(ptr, "realloc of a freed block");
        } else if !stays_small && ptr as usize == s.base {
            let pages = new_size.div_ceil(PAGE_SIZE).max(1) + crate::secure::GUARD_BYTES / PAGE_SIZE;
            // A guard page (`secure-guards`) would have to move: no resize there.
            let resizable = crate::secure::GUARD_BYTES == 0;
            // SAFETY: the caller owns this live large block.
            if pages == s.pages() || (resizable && unsafe { self.heap.resize_in_place(span, pages) }) {
                return ptr;
            }
        }
        // SAFETY: forwarded caller contract; the new block is distinct from
        // the old and both hold at least the bytes copied.
        unsafe {
            let new = self.alloc(cache, new_size, align);
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                self.dealloc(cache, ptr, old_size, align);
            }
            new
        }
    }

    /// True if `ptr` points into memory this allocator manages (its arenas),
    /// live block or not. False for memory from any other allocator.
    #[inline]
    pub fn owns_address(&self, ptr: *const u8) -> bool {
        self.heap.contains(ptr as usize)
    }

    /// The usable size of the block starting at `ptr`, or `None` if `ptr` is
    /// not the start of a live block of ours. A freed small block is only
    /// recognised as such by the `secure` build (its live-slot bitmap); the
    /// default build returns its slot size.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        let span = self.heap.span_of(ptr as usize);
        if span.is_null() {
            return None;
        }
        // SAFETY: span records stay mapped; a stale one only gives a wrong answer
        // for a pointer the caller does not own.
        let s = unsafe { &*span };
        if s.class != 0 {
            s.slot_of(ptr as usize).and_then(|index| crate::secure::usable_size(s, ptr, index))
        } else {
            (ptr as usize == s.base && s.owner.load(Ordering::Relaxed) != FREED)
                .then(|| s.pages() * PAGE_SIZE - crate::secure::GUARD_BYTES)
        }
    }

    /// Gives the calling thread's spans back (if `cache` is live) and returns
    /// every free page to the OS.
    ///
    /// # Safety
    /// As for `alloc`.
    pub unsafe fn collect(&self, cache: *mut MCache) {
        // SAFETY: forwarded caller contract; only a live cache is flushed.
        unsafe {
            if (*cache).kind() == CacheKind::Live {
                (*cache).flush(self);
            }
        }
        self.release_unused();
    }

    /// Returns the spans the central lists keep for reuse to the heap, and
    /// every free page to the OS. Thread caches keep their spans.
    pub fn release_unused(&self) {
        self.large_cache.release_cached(&self.heap);
        for c in &self.central {
            c.release_empty(&self.heap);
        }
        self.heap.scavenge(0);
    }

    /// Publishes the frees `cache` holds back for batching (see `mcache.rs`),
    /// so they count as free everywhere.
    ///
    /// # Safety
    /// As for `alloc`.
    pub unsafe fn publish_pending(&self, cache: *mut MCache) {
        // SAFETY: forwarded caller contract; only a live cache is written.
        unsafe {
            if (*cache).kind() == CacheKind::Live {
                (*cache).publish_pending(self);
            }
        }
    }

    /// A snapshot of the allocator's figures (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        let mut st = Stats::default();
        for (class, c) in st.classes.iter_mut().enumerate() {
            c.object_size = crate::sizeclass::CLASS_SIZE[class] as usize;
        }
        self.heap.for_each_span(|s| {
            let bytes = s.pages() * PAGE_SIZE;
            st.bytes_in_spans += bytes;
            if s.class == 0 {
                if s.owner.load(Ordering::Relaxed) == FREED {
                    st.bytes_free_retained += bytes;
                } else {
                    st.large_objects += 1;
                    st.bytes_in_use += bytes;
                }
            } else {
                let pending = RemoteWord(s.remote.load(Ordering::Relaxed)).count();
                let live = s.used.read_racy().saturating_sub(pending) as usize;
                let c = &mut st.classes[s.class as usize];
                c.objects_in_use += live;
                c.spans += 1;
                st.small_spans += 1;
                st.bytes_in_use += live * s.elem_size as usize;
            }
        });
        let h = self.heap.counters();
        st.bytes_mapped = h.mapped_bytes;
        st.bytes_free_retained += h.dirty_free_pages * PAGE_SIZE;
        st.bytes_released = (h.free_pages - h.dirty_free_pages) * PAGE_SIZE;
        st.bytes_metadata = h.header_bytes + h.record_bytes + self.caches.mapped_bytes();
        st.purges = h.purges;
        st.bytes_purged = h.released_total;
        st.thread_caches = self.caches.count();
        st
    }

    /// Takes every allocator lock in the lock order (before `fork`).
    pub fn lock_all(&self) {
        self.caches.lock_for_fork();
        for c in &self.central {
            c.lock_for_fork();
        }
        self.large_cache.lock_for_fork();
        self.heap.lock_for_fork();
    }

    /// Releases what `lock_all` took; in the child the locks are reset.
    pub fn unlock_all(&self, child: bool) {
        self.heap.unlock_after_fork(child);
        self.large_cache.unlock_after_fork(child);
        for c in self.central.iter().rev() {
            c.unlock_after_fork(child);
        }
        self.caches.unlock_after_fork(child);
    }
}

/// Reports a free of a pointer that is not a live block of ours and stops.
#[cold]
#[inline(never)]
fn invalid_free(ptr: *mut u8, what: &str) -> ! {
    os::fatal(format_args!("invalid free of {:#x}: {}", ptr as usize, what))
}
