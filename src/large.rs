//! Large objects: requests over 32 KiB, or aligned beyond a page, take a
//! page-run span straight from the page heap and give it straight back —
//! through a small cache of recently freed runs, so a program that frees and
//! reallocates blocks of the same size does not pay for the page heap's
//! lock, run search and page-table writes each time.
//!
//! Called by `malloc.rs`. Calls `mheap.rs`. The cache has its own lock (a
//! leaf below the central locks and above the heap lock: it calls the heap
//! only after releasing it). Growth in place and the zeroing shortcut live in
//! `mheap.rs` (`resize_in_place`, `Span::needzero`).
//!
//! # The cache
//! Runs of up to `CACHE_MAX_PAGES` pages are kept, up to `CACHE_MAX_BYTES` in
//! all, one list per page count. A cached span stays in the page table
//! (so it is found by address) with `owner == FREED`; the CAS that sets that
//! marker is also what detects a double free. `release_cached` (called by
//! `collect`) returns every cached run to the heap. Requests aligned beyond a
//! page take no cached run; when the mapped arenas have no aligned room for
//! one, the cache goes back to the heap before the heap grows (a cached run
//! sitting on the aligned page made each round of an aligned alloc/free loop
//! map more).

use crate::malloc::Allocator;
use crate::mheap::MHeap;
use crate::os;
use crate::sizeclass::{PAGE_SHIFT, PAGE_SIZE};
use crate::span::Span;
use crate::sync::{maybe_const_fn, Locked, Ordering};
use core::ptr;

/// Largest run kept in the cache: 1 MiB.
const CACHE_MAX_PAGES: usize = 128;
/// Most bytes the cache holds.
const CACHE_MAX_BYTES: usize = 16 << 20;
/// `Span::owner` of a large span parked in the cache.
pub const FREED: usize = 1;
/// Largest alignment a request may ask for (32 GiB, about where glibc's
/// `posix_memalign` starts to fail with ENOMEM); above it, allocation fails.
/// Each such request reserves the alignment in address space, and its arena
/// header (a page-table entry and two bitmap bits per page) grows with it.
pub const MAX_ALIGN: usize = 1 << 35;

/// Recently freed large runs, by page count.
pub struct LargeCache {
    inner: Locked<CacheInner>,
}

struct CacheInner {
    heads: [*mut Span; CACHE_MAX_PAGES],
    bytes: usize,
}

// SAFETY: the span pointers name page-heap records, which belong to no
// thread; the lists move between threads only under the cache's lock.
unsafe impl Send for CacheInner {}

impl LargeCache {
    /// Takes the lock (for `fork`).
    pub fn lock_for_fork(&self) {
        self.inner.lock_for_fork();
    }

    /// Releases the lock taken by `lock_for_fork`.
    pub fn unlock_after_fork(&self, child: bool) {
        self.inner.unlock_after_fork(child);
    }

    maybe_const_fn! {
        /// An empty cache.
        pub fn new() -> LargeCache {
            LargeCache {
                inner: Locked::new(CacheInner { heads: [ptr::null_mut(); CACHE_MAX_PAGES], bytes: 0 }),
            }
        }
    }

    /// A cached run of `npages` (or up to a quarter more), now in use.
    fn take(&self, npages: usize) -> *mut Span {
        if npages > CACHE_MAX_PAGES {
            return ptr::null_mut();
        }
        let span = self.inner.with(|c| {
            for n in npages..=(npages + npages / 4).min(CACHE_MAX_PAGES) {
                let head = c.heads[n - 1];
                if !head.is_null() {
                    // SAFETY: cached spans are live and linked under the lock.
                    c.heads[n - 1] = unsafe { (*head).next.with(|p| *p) };
                    c.bytes -= n * PAGE_SIZE;
                    return head;
                }
            }
            ptr::null_mut()
        });
        if !span.is_null() {
            // SAFETY: the span left the cache and is ours; it held data.
            unsafe {
                (*span).owner.store(0, Ordering::Relaxed);
                (*span).needzero = true;
            }
        }
        span
    }

    /// Parks a freed run; false (and nothing done) if it does not fit.
    ///
    /// # Safety
    /// The caller has marked `span` `FREED` and holds it.
    unsafe fn put(&self, span: *mut Span) -> bool {
        // SAFETY: the caller holds the live span.
        let npages = unsafe { (*span).pages() };
        if npages > CACHE_MAX_PAGES {
            return false;
        }
        self.inner.with(|c| {
            if c.bytes + npages * PAGE_SIZE > CACHE_MAX_BYTES {
                return false;
            }
            // SAFETY: the lock is held; the span is ours to link.
            unsafe { (*span).next.with_mut(|p| *p = c.heads[npages - 1]) };
            c.heads[npages - 1] = span;
            c.bytes += npages * PAGE_SIZE;
            true
        })
    }

    /// Returns every cached run to the heap.
    pub fn release_cached(&self, heap: &MHeap) {
        let mut lists = [ptr::null_mut::<Span>(); CACHE_MAX_PAGES];
        self.inner.with(|c| {
            lists = c.heads;
            c.heads = [ptr::null_mut(); CACHE_MAX_PAGES];
            c.bytes = 0;
        });
        for mut s in lists {
            while !s.is_null() {
                // SAFETY: spans taken off the cache are ours; none is used.
                unsafe {
                    let next = (*s).next.with(|p| *p);
                    (*s).owner.store(0, Ordering::Relaxed);
                    heap.free_span(s);
                    s = next;
                }
            }
        }
    }
}

impl Default for LargeCache {
    fn default() -> Self {
        LargeCache::new()
    }
}

impl Allocator {
    /// A run of pages for `size` bytes aligned to `align`; with `zero`, its
    /// first `size` bytes read as zero (cleared only if the pages may hold old
    /// data: memory fresh from the OS is not touched). Null when out of memory.
    pub(crate) fn alloc_large(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        // At least one page of data, then the guard page (`secure-guards`).
        let data_pages = size.checked_add(PAGE_SIZE - 1).map(|s| (s >> PAGE_SHIFT).max(1));
        let Some(npages) = data_pages.map(|n| n + (crate::secure::GUARD_BYTES >> PAGE_SHIFT)) else {
            return ptr::null_mut();
        };
        if align > MAX_ALIGN {
            return ptr::null_mut();
        }
        let align_pages = (align >> PAGE_SHIFT).max(1);
        let mut span = if align_pages == 1 {
            self.large_cache().take(npages)
        } else {
            // Cached runs stay in use in the page heap, and an aligned
            // request takes none of them: an aligned alloc/free loop parked
            // each run on an aligned page and grew the heap for the next
            // request, by the alignment each time (4 GiB of address space
            // in 20 000 rounds at 2 MiB). Before growing, the cache goes back.
            let span = self.heap().alloc_span_mapped(npages, align_pages, 0);
            if span.is_null() {
                self.large_cache().release_cached(self.heap());
            }
            span
        };
        if span.is_null() {
            span = self.heap().alloc_span(npages, align_pages, 0);
        }
        if span.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: a large span owned by this call; its pages are ours.
        unsafe {
            #[cfg(feature = "secure-guards")]
            crate::secure::guard_large(&*span);
            let base = (*span).base as *mut u8;
            if zero && (*span).needzero {
                ptr::write_bytes(base, 0, size);
            }
            base
        }
    }

    /// Frees the large object at `ptr`, held by `span`.
    ///
    /// # Safety
    /// `span` is the live large span the page table gives for `ptr`.
    pub(crate) unsafe fn free_large(&self, span: *mut Span, ptr: *mut u8) {
        // SAFETY: the caller's span is live.
        let s = unsafe { &*span };
        if s.base != ptr as usize {
            os::fatal(format_args!(
                "invalid free of {:#x}: not the start of a block (interior pointer of a large object)",
                ptr as usize
            ));
        }
        // Only one free of a block can win this CAS; Acquire/Release order
        // the span's fields between the freeing thread and a later taker.
        if s.owner.compare_exchange(0, FREED, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            os::fatal(format_args!("double free of {:#x} (large object)", ptr as usize));
        }
        // SAFETY: the span is freed and held by this thread.
        #[cfg(feature = "secure-guards")]
        unsafe {
            crate::secure::unguard_large(s)
        };
        // SAFETY: the span is marked freed and held by this thread.
        if unsafe { self.large_cache().put(span) } {
            return;
        }
        s.owner.store(0, Ordering::Relaxed);
        // SAFETY: the caller frees its live block; the span holds nothing else.
        unsafe { self.heap().free_span(span) };
    }
}
