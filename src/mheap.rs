//! The page heap (Go's `mheap`): all memory below the central lists. It
//! reserves address space in arenas, hands out page runs as spans, takes them
//! back, maps any address to its span, and returns free pages to the OS.
//!
//! Called by `mcentral.rs` (spans for small objects), `large.rs` (page runs
//! for large objects) and `malloc.rs` (address lookups, statistics). Calls
//! `os.rs`, `fixalloc.rs` (span records) and `bitmap.rs`.
//!
//! # Layout
//! An arena is a multiple of `ARENA_SIZE` (64 MiB), aligned to it, whose first
//! pages hold its header: the page → span table, the free-page bitmap, the
//! dirty-page bitmap, the fresh-page bitmap (pages freed since the
//! background scavenger's last tick, see `scavenger.rs`) and the
//! refused-page bitmap (free pages `madvise` could not release because they
//! are locked; skipped until allocated again). The arena index,
//! one flat table with an entry per 64 MiB of the 47-bit address space (16 MiB
//! of address space, touched only where arenas live), maps an address to its
//! arena. So `span_of(p)` is two dependent loads and rejects any address
//! outside our arenas or on a free page: frees need no object header.
//!
//! Free runs are found address-ordered first-fit on the bitmaps, preferring a
//! run whose pages are all dirty (resident) when one of the first few free
//! dirty runs fits; freeing sets bits back, so neighbouring runs coalesce
//! implicitly. A page is *dirty* when
//! it may be resident with old contents; a run with no dirty page reads as
//! zero, which `alloc_zeroed` exploits for large objects.
//!
//! # Returning pages to the OS
//! With a background scavenger (the process-wide heap, unless
//! `GOMALLOC_PURGE_DELAY_MS` is negative), a free leaves its pages dirty and
//! the scavenger thread releases the pages that stayed free for a delay
//! (`scavenge_aged`, ageing by the fresh bitmap), except the lowest free
//! dirty pages up to the floor GC heaps reserve (see `scavenger.rs`); it
//! takes each run out of the free map under the lock and `madvise`s it
//! without the lock, so span allocation never waits for the kernel. Without one (heaps built as
//! values, a negative delay, a thread the OS refused), `free_span` applies
//! the synchronous policy of `maybe_scavenge`: past a retained amount, the
//! free dirty runs are `madvise`d from the highest arena down.
//!
//! # Concurrency
//! One lock (`lock`) protects the arena list, bitmaps, span records and
//! counters. The index and the page → span table are read without the lock:
//! entries are atomics (core atomics even under loom, since their protocol is
//! "written under the lock before any pointer into the span escapes"; loom
//! models the lock and the span handoff). Lock order: central list locks
//! before this one; nothing is locked while holding it.
//! The background scavenger's control block (`scavenger.rs`) is atomics only;
//! `free_span` reads it under this lock and wakes the thread after releasing
//! it (the thread's own look at the counters, under this lock, is what makes
//! that wake-up impossible to lose).

use crate::bitmap::{aligned_index, Bitmap};
use crate::fixalloc::FixAlloc;
use crate::os;
use crate::scavenger::Scavenger;
use crate::sizeclass::{PAGE_SHIFT, PAGE_SIZE};
use crate::span::Span;
use crate::sync::{Locked, PlainAtomicPtr, PlainOrdering};
use core::mem::size_of;
use core::ptr;

/// log2 of the arena granule.
pub const ARENA_SHIFT: usize = 26;
/// Arena granule: 64 MiB, as in Go on 64-bit Linux.
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
const ARENA_PAGES: usize = ARENA_SIZE / PAGE_SIZE;
/// User address space covered by the index.
const ADDRESS_BITS: usize = 47;
/// Largest arena: the whole user address space, in pages.
const MAX_ARENA_PAGES: usize = (1 << ADDRESS_BITS) / PAGE_SIZE;
const INDEX_LEN: usize = 1 << (ADDRESS_BITS - ARENA_SHIFT);
/// Free dirty memory always retained for reuse before scavenging starts.
const RETAIN_MIN_PAGES: usize = (16 << 20) / PAGE_SIZE;
/// Pages `populate_floor` populates per heap-lock section (2 MiB).
const POPULATE_CHUNK_PAGES: usize = 256;
/// Pages (2 MiB) the background scavenger releases per `madvise`, with the
/// heap lock dropped (see `MHeap::scavenge_aged`).
const RELEASE_CHUNK_PAGES: usize = 256;
/// Free dirty runs `find_dirty_pages` looks at before it settles for first
/// fit: it runs under the heap lock on every span allocation.
const DIRTY_RUNS_SCANNED: usize = 16;

/// An arena header, at the arena's first byte. The page → span table and the
/// two bitmaps follow it.
#[repr(C)]
pub struct Arena {
    npages: usize,
    header_pages: usize,
    next: *mut Arena,
    prev: *mut Arena,
    free_pages: usize,
    /// No page below this index is free.
    search_from: usize,
}

const TABLE_OFFSET: usize = size_of::<Arena>().next_multiple_of(64);
/// Page bitmaps in an arena's header: free, dirty, fresh, refused.
const BITMAPS: usize = 4;

impl Arena {
    /// The arena's first page number modulo `align_pages`, for aligned
    /// searches: the base is aligned to `ARENA_SIZE` only, so above that an
    /// index multiple of the alignment is not an aligned address.
    fn skew(&self, align_pages: usize) -> usize {
        (self.base() / PAGE_SIZE) % align_pages
    }

    fn base(&self) -> usize {
        self as *const Arena as usize
    }

    fn header_bytes(npages: usize) -> usize {
        TABLE_OFFSET + npages * size_of::<PlainAtomicPtr<Span>>() + BITMAPS * Bitmap::words_for(npages) * 8
    }

    fn table(&self) -> *const PlainAtomicPtr<Span> {
        (self.base() + TABLE_OFFSET) as *const PlainAtomicPtr<Span>
    }

    /// Bitmap `k` (of `BITMAPS`) of the header, after the page table.
    fn header_bitmap(&self, k: usize) -> Bitmap {
        debug_assert!(k < BITMAPS);
        let words = self.base()
            + TABLE_OFFSET
            + self.npages * size_of::<PlainAtomicPtr<Span>>()
            + k * Bitmap::words_for(self.npages) * 8;
        // SAFETY: the header reserves `BITMAPS` bitmaps of `npages` bits
        // after the table; the heap lock makes the caller their only user.
        unsafe { Bitmap::new(words as *mut u64, self.npages) }
    }

    /// Free-page bitmap (1 = free). Heap lock.
    fn free_map(&self) -> Bitmap {
        self.header_bitmap(0)
    }

    /// Dirty-page bitmap (1 = may be resident with old data). Heap lock.
    fn dirty_map(&self) -> Bitmap {
        self.header_bitmap(1)
    }

    /// Fresh-page bitmap (1 = freed since the last background tick). Heap
    /// lock.
    fn fresh_map(&self) -> Bitmap {
        self.header_bitmap(2)
    }

    /// Refused-page bitmap (1 = free, dirty, and the kernel refused to
    /// release it: locked memory). The scavenger skips these pages until
    /// they are allocated again. Heap lock.
    fn refused_map(&self) -> Bitmap {
        self.header_bitmap(3)
    }

    /// Pages `[page, page + n)` leave the free state: they are no longer
    /// refused (a later free may find them unlocked). Returns how many were.
    fn unrefuse(&self, page: usize, n: usize) -> usize {
        let refused = self.refused_map();
        let count = refused.count_range(page, n);
        if count != 0 {
            refused.clear_range(page, n);
        }
        count
    }

    fn entry(&self, page: usize) -> &PlainAtomicPtr<Span> {
        debug_assert!(page < self.npages);
        // SAFETY: the table has `npages` entries inside the header.
        unsafe { &*self.table().add(page) }
    }

    fn set_spans(&self, first: usize, n: usize, span: *mut Span) {
        for page in first..first + n {
            // Release pairs with the Acquire in `span_of`: the span record's
            // fields are visible to whoever finds it through the table.
            self.entry(page).store(span, PlainOrdering::Release);
        }
    }

    fn page_addr(&self, page: usize) -> usize {
        self.base() + page * PAGE_SIZE
    }
}

impl HeapCounters {
    /// Free dirty pages the scavenger may still try to release (refused
    /// ones excluded).
    pub fn releasable_pages(&self) -> usize {
        self.dirty_free_pages - self.refused_free_pages
    }
}

/// The first page at or after `from` set in neither `a` (when given) nor `b`.
fn next_clear_in_neither(a: Option<&Bitmap>, b: &Bitmap, mut from: usize) -> usize {
    loop {
        let x = a.map_or(from, |a| a.next_clear(from));
        let y = b.next_clear(x);
        if y == x {
            return x;
        }
        from = y;
    }
}

/// Counters kept under the heap lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapCounters {
    /// Pages held by spans.
    pub pages_in_use: usize,
    /// Free pages in arenas.
    pub free_pages: usize,
    /// Free pages that may be resident.
    pub dirty_free_pages: usize,
    /// Of those, pages the kernel refused to release (locked memory), which
    /// the scavenger leaves alone until they are allocated again.
    pub refused_free_pages: usize,
    /// Bytes of address space in arenas (headers included).
    pub mapped_bytes: usize,
    /// Bytes of arena headers.
    pub header_bytes: usize,
    /// Bytes of span records mapped.
    pub record_bytes: usize,
    /// Total bytes ever released to the OS.
    pub released_total: usize,
    /// `madvise` calls made to release them.
    pub purges: usize,
}

struct HeapInner {
    first: *mut Arena,
    last: *mut Arena,
    records: FixAlloc<Span>,
    counters: HeapCounters,
}

/// The page heap.
pub struct MHeap {
    /// The arena index, mapped with the first arena and published once.
    index: PlainAtomicPtr<PlainAtomicPtr<Arena>>,
    inner: Locked<HeapInner>,
    /// The background scavenger's control block (set up by
    /// `Allocator::with_scavenger` for the process-wide heap).
    pub(crate) scavenger: Scavenger,
}

// SAFETY: the raw pointers refer to arenas and records owned by the heap,
// not to thread-local data; they move between threads only under the heap
// lock.
unsafe impl Send for HeapInner {}

impl MHeap {
    crate::sync::maybe_const_fn! {
        /// An empty heap; it maps nothing until the first span is requested.
        pub fn new() -> MHeap {
            MHeap {
                index: PlainAtomicPtr::new(ptr::null_mut()),
                inner: Locked::new(HeapInner {
                    first: ptr::null_mut(),
                    last: ptr::null_mut(),
                    records: FixAlloc::new(),
                    counters: HeapCounters {
                        pages_in_use: 0,
                        free_pages: 0,
                        dirty_free_pages: 0,
                        refused_free_pages: 0,
                        mapped_bytes: 0,
                        header_bytes: 0,
                        record_bytes: 0,
                        released_total: 0,
                        purges: 0,
                    },
                }),
                scavenger: Scavenger::new(None),
            }
        }
    }

    /// Takes the heap lock (for `fork`).
    pub fn lock_for_fork(&self) {
        self.inner.lock_for_fork();
    }

    /// Releases the heap lock taken by `lock_for_fork`.
    pub fn unlock_after_fork(&self, child: bool) {
        self.inner.unlock_after_fork(child);
        if child {
            self.scavenger.reset_after_fork();
        }
    }

    /// The background scavenger's control block.
    #[inline]
    pub fn scavenger(&self) -> &Scavenger {
        &self.scavenger
    }

    /// The arena holding `addr`, or null when the address is not in one.
    #[inline(always)]
    fn arena_of(&self, addr: usize) -> *mut Arena {
        // Acquire pairs with the Release that publishes the index in `grow`.
        let index = self.index.load(PlainOrdering::Acquire);
        let slot = addr >> ARENA_SHIFT;
        if index.is_null() || slot >= INDEX_LEN {
            return ptr::null_mut();
        }
        // SAFETY: the index has INDEX_LEN entries and `slot` is in range.
        // Acquire pairs with the Release in `register`: the arena header is
        // initialised.
        unsafe { (*index.add(slot)).load(PlainOrdering::Acquire) }
    }

    /// True if `addr` lies in one of this heap's arenas (whether or not a
    /// live block is there): the test that tells a foreign pointer from a
    /// stale or corrupted one of ours.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        !self.arena_of(addr).is_null()
    }

    /// The span containing `addr`, or null when `addr` is not in a span of
    /// ours (foreign memory, an arena header, or a free page).
    #[inline(always)]
    pub fn span_of(&self, addr: usize) -> *mut Span {
        let arena = self.arena_of(addr);
        if arena.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: a registered arena covers every 64 MiB window that maps to
        // it, so `addr` lies inside it and the page index is in range.
        unsafe {
            let page = (addr - arena as usize) >> PAGE_SHIFT;
            // Acquire pairs with the Release in `set_spans`.
            (*arena).entry(page).load(PlainOrdering::Acquire)
        }
    }

    /// Allocates a span of `npages` pages starting on a multiple of
    /// `align_pages` pages. `class` 0 makes a large-object span (recording
    /// whether its pages may hold old data), any other a small-object span of
    /// that class. Null when the OS refuses memory.
    pub fn alloc_span(&self, npages: usize, align_pages: usize, class: usize) -> *mut Span {
        self.alloc_span_in(npages, align_pages, class, true)
    }

    /// `alloc_span` from the arenas already mapped: null where it would grow
    /// the heap.
    pub fn alloc_span_mapped(&self, npages: usize, align_pages: usize, class: usize) -> *mut Span {
        self.alloc_span_in(npages, align_pages, class, false)
    }

    fn alloc_span_in(&self, npages: usize, align_pages: usize, class: usize, may_grow: bool) -> *mut Span {
        debug_assert!(npages > 0 && align_pages.is_power_of_two());
        self.inner.with(|h| {
            let Some((arena, page)) =
                h.find_dirty_pages(npages, align_pages).or_else(|| h.find_pages(npages, align_pages)).or_else(|| {
                    if !may_grow {
                        return None;
                    }
                    let arena = self.grow(h, npages, align_pages)?;
                    // SAFETY: `grow` returns a live, registered arena.
                    let page =
                        unsafe { (*arena).free_map().find_run(0, npages, align_pages, (*arena).skew(align_pages))? };
                    Some((arena, page))
                })
            else {
                return ptr::null_mut();
            };
            let span = h.records.alloc();
            if span.is_null() {
                return ptr::null_mut();
            }
            // SAFETY: the arena is live and the heap lock is held; the span
            // record is fresh and ours.
            unsafe {
                let a = &mut *arena;
                let dirty = a.dirty_map().count_range(page, npages);
                h.counters.refused_free_pages -= a.unrefuse(page, npages);
                a.free_map().clear_range(page, npages);
                a.dirty_map().set_range(page, npages);
                a.free_pages -= npages;
                if page == a.search_from {
                    a.search_from = page + npages;
                }
                h.counters.free_pages -= npages;
                h.counters.dirty_free_pages -= dirty;
                h.counters.pages_in_use += npages;
                h.counters.record_bytes = h.records.mapped;

                ptr::write(span, Span::empty());
                let base = a.page_addr(page);
                if class == 0 {
                    (*span).init_large(base, npages, dirty != 0);
                } else {
                    (*span).init_small(base, npages, class);
                }
                a.set_spans(page, npages, span);
            }
            span
        })
    }

    /// Returns a span's pages to the heap and its record to the record pool.
    ///
    /// # Safety
    /// `span` came from `alloc_span` on this heap, holds no live object, and
    /// nothing uses it afterwards.
    pub unsafe fn free_span(&self, span: *mut Span) {
        let deferred = self.inner.with(|h| {
            // SAFETY: the caller hands over a live span of this heap.
            unsafe {
                let base = (*span).base;
                let npages = (*span).pages();
                let arena = &mut *self.arena_of(base);
                let page = (base - arena.base()) >> PAGE_SHIFT;
                h.release_pages(arena, page, npages);
                ptr::drop_in_place(span);
                h.records.free(span);
            }
            self.pages_freed(h)
        });
        if deferred {
            self.scavenger.after_free();
        }
    }

    /// The end of every path that frees pages, under the heap lock: the
    /// synchronous purge policy, or, with a background scavenger, true to
    /// have the caller call `Scavenger::after_free` once the lock is
    /// released (it may start the thread, which must not happen under a lock).
    fn pages_freed(&self, h: &mut HeapInner) -> bool {
        if self.scavenger.background() {
            return true;
        }
        h.maybe_scavenge(self.scavenger.floor_pages());
        false
    }

    /// Resizes a large span in place to `new_npages`: shrinking always
    /// succeeds, growing succeeds when the following pages are free. The
    /// grown tail is not zeroed.
    ///
    /// # Safety
    /// `span` is a live large span of this heap owned by the caller.
    pub unsafe fn resize_in_place(&self, span: *mut Span, new_npages: usize) -> bool {
        let mut deferred = false;
        let resized = self.inner.with(|h| {
            // SAFETY: the caller owns the live span; the lock is held.
            unsafe {
                let base = (*span).base;
                let old = (*span).pages();
                let arena = &mut *self.arena_of(base);
                let first = (base - arena.base()) >> PAGE_SHIFT;
                if new_npages <= old {
                    h.release_pages(arena, first + new_npages, old - new_npages);
                    // The freed tail is subject to the purge policy like any
                    // freed span: without this, a 512 MiB block shrunk to
                    // 64 KiB kept its tail resident until an unrelated free.
                    deferred = self.pages_freed(h);
                } else {
                    let extra = new_npages - old;
                    let tail = first + old;
                    if tail + extra > arena.npages || !arena.free_map().all_set(tail, extra) {
                        return false;
                    }
                    let dirty = arena.dirty_map().count_range(tail, extra);
                    h.counters.refused_free_pages -= arena.unrefuse(tail, extra);
                    arena.free_map().clear_range(tail, extra);
                    arena.dirty_map().set_range(tail, extra);
                    arena.free_pages -= extra;
                    h.counters.free_pages -= extra;
                    h.counters.dirty_free_pages -= dirty;
                    h.counters.pages_in_use += extra;
                    arena.set_spans(tail, extra, span);
                }
                (*span).npages.store(new_npages, crate::sync::Ordering::Relaxed);
                true
            }
        });
        if deferred {
            self.scavenger.after_free();
        }
        resized
    }

    /// Returns free dirty pages to the OS until at most `keep_bytes` of them
    /// remain. Returns the bytes released.
    pub fn scavenge(&self, keep_bytes: usize) -> usize {
        self.inner.with(|h| h.scavenge(keep_bytes / PAGE_SIZE)) * PAGE_SIZE
    }

    /// Makes resident, from the calling thread, the free pages that the
    /// scavenger's floor says GC heaps will take before their next cycle
    /// and that are not resident yet (`floor - free dirty pages`, the
    /// lowest free clean ones, growing the heap if there are too few), so that the mutators allocating into them
    /// take no page fault: a GC heap's collector calls it after each cycle.
    /// Returns the pages populated.
    ///
    /// A run is marked dirty under the lock and populated after it, in
    /// chunks, so the lock is never held across page faults. Populating
    /// changes no byte, so a span allocated from the run meanwhile is
    /// unaffected, and a run released meanwhile only costs the work.
    pub fn populate_floor(&self) -> usize {
        let mut budget = self.inner.with(|h| self.scavenger.floor_pages().saturating_sub(h.counters.dirty_free_pages));
        let mut done = 0;
        while budget != 0 {
            let chunk = budget.min(POPULATE_CHUNK_PAGES);
            // With no free clean page left, the heap grows now, as the
            // mutators would make it grow otherwise.
            let run = self.inner.with(|h| {
                h.take_clean_run(chunk).or_else(|| {
                    self.grow(h, budget.min(ARENA_PAGES / 2), 1)?;
                    h.take_clean_run(chunk)
                })
            });
            let Some((addr, n)) = run else {
                break;
            };
            // SAFETY: free pages of a live arena (arenas are never unmapped
            // while the heap lives).
            if !unsafe { os::populate(addr as *mut u8, n * PAGE_SIZE) } {
                break;
            }
            budget -= n;
            done += n;
        }
        done
    }

    /// The background scavenger's step: releases every free dirty page that
    /// is not fresh (every one with `all`), but keeps the lowest of them up to
    /// the scavenger's floor (`Scavenger::floor_pages`);
    /// then clears the fresh marks, so a page freed from now on is released
    /// at the earliest one step later. Returns (pages released, free dirty
    /// pages left that are not refused).
    ///
    /// The heap lock is not held across `madvise`: each run (at most
    /// `RELEASE_CHUNK_PAGES`) is taken out of the free map under the lock,
    /// released after it, and put back free and clean under it again, as
    /// Go's scavenger does. Releasing hundreds of MiB under the lock held
    /// it for over a millisecond, and every thread that needed a span
    /// waited. A taken run is neither free nor in use, so no span can be
    /// made of it while its pages are dropped. (A `fork` in that window
    /// leaves the child without that run: at most `RELEASE_CHUNK_PAGES` of
    /// address space.)
    pub fn scavenge_aged(&self, all: bool) -> (usize, usize) {
        let keep = self.scavenger.floor_pages();
        let mut cursor = AgedCursor { arena: ptr::null_mut(), page: 0, kept: 0 };
        let mut released = 0;
        while let Some((arena, start, n)) = self.inner.with(|h| h.take_aged_run(&mut cursor, all, keep)) {
            // SAFETY: `take_aged_run` took the run out of the free map: no
            // span holds it and none can be made of it until `put_back_released`.
            let ok = unsafe { os::release((*arena).page_addr(start) as *mut u8, n * PAGE_SIZE) };
            // SAFETY: the arena is live (arenas are never unmapped while the
            // heap lives) and the run was taken by this step.
            self.inner.with(|h| unsafe { h.put_back_released(&mut *arena, start, n, ok) });
            if ok {
                released += n;
            }
        }
        self.inner.with(|h| {
            h.clear_fresh();
            (released, h.counters.releasable_pages())
        })
    }

    /// A copy of the counters.
    pub fn counters(&self) -> HeapCounters {
        self.inner.with(|h| h.counters)
    }

    /// Calls `f` for every span in use, with the heap lock held (so no span
    /// is created or released meanwhile), in address order.
    pub fn for_each_span(&self, mut f: impl FnMut(&Span)) {
        self.inner.with(|h| {
            let mut a = h.first;
            while !a.is_null() {
                // SAFETY: arenas on the list are live; the lock is held.
                unsafe {
                    let arena = &*a;
                    let mut page = arena.header_pages;
                    while page < arena.npages {
                        let span = arena.entry(page).load(PlainOrdering::Relaxed);
                        if span.is_null() {
                            page += 1;
                            continue;
                        }
                        f(&*span);
                        page += (*span).pages();
                    }
                    a = arena.next;
                }
            }
        });
    }

    /// Maps a new arena with room for a run of `npages` aligned to
    /// `align_pages`, registers it, and links it in address order.
    fn grow(&self, h: &mut HeapInner, npages: usize, align_pages: usize) -> Option<*mut Arena> {
        let need = npages.checked_add(align_pages)?;
        if need > MAX_ARENA_PAGES {
            return None;
        }
        let mut total = need.next_multiple_of(ARENA_PAGES);
        // Room for the header too: each step adds what is missing, so this
        // ends in two or three (one 64 MiB step at a time took 2^27 steps,
        // under the heap lock, for a request of `isize::MAX` bytes).
        loop {
            let room = total - Arena::header_bytes(total).div_ceil(PAGE_SIZE);
            if room >= need {
                break;
            }
            total += (need - room).next_multiple_of(ARENA_PAGES);
        }
        if total > MAX_ARENA_PAGES {
            return None;
        }
        let bytes = total.checked_mul(PAGE_SIZE)?;
        if self.index.load(PlainOrdering::Relaxed).is_null() {
            let index = os::map(INDEX_LEN * size_of::<PlainAtomicPtr<Arena>>());
            if index.is_null() {
                return None;
            }
            // Release pairs with the Acquire in `arena_of`.
            self.index.store(index.cast(), PlainOrdering::Release);
        }
        // An arena larger than the granule holds one large request: the
        // kernel's overcommit policy may refuse it, as it would glibc's.
        // Reserved without that check, a request for a terabyte succeeded,
        // and its page table (8 bytes per page, 1 GiB) was then written.
        let base = os::map_aligned(bytes, ARENA_SIZE, total > ARENA_PAGES);
        if base.is_null() {
            return None;
        }
        if (base as usize + bytes) >> ADDRESS_BITS != 0 {
            // SAFETY: just mapped, unused.
            unsafe { os::unmap(base, bytes) };
            return None;
        }
        let arena = base.cast::<Arena>();
        let header_pages = Arena::header_bytes(total).div_ceil(PAGE_SIZE);
        // SAFETY: fresh zeroed mapping, large enough for the header.
        unsafe {
            ptr::write(
                arena,
                Arena {
                    npages: total,
                    header_pages,
                    next: ptr::null_mut(),
                    prev: ptr::null_mut(),
                    free_pages: total - header_pages,
                    search_from: header_pages,
                },
            );
            (*arena).free_map().set_range(header_pages, total - header_pages);
            // Link in address order.
            let mut after = h.last;
            while !after.is_null() && (after as usize) > (arena as usize) {
                after = (*after).prev;
            }
            (*arena).prev = after;
            (*arena).next = if after.is_null() { h.first } else { (*after).next };
            if after.is_null() {
                h.first = arena;
            } else {
                (*after).next = arena;
            }
            if (*arena).next.is_null() {
                h.last = arena;
            } else {
                (*(*arena).next).prev = arena;
            }
            // Register every 64 MiB window of the arena.
            let index = self.index.load(PlainOrdering::Relaxed);
            for w in 0..total / ARENA_PAGES {
                // Release pairs with the Acquire in `arena_of`.
                (*index.add((base as usize >> ARENA_SHIFT) + w)).store(arena, PlainOrdering::Release);
            }
        }
        h.counters.mapped_bytes += bytes;
        h.counters.header_bytes += header_pages * PAGE_SIZE;
        h.counters.free_pages += total - header_pages;
        Some(arena)
    }
}

impl HeapInner {
    /// The first free run of `npages` pages that are all dirty, among the
    /// first `DIRTY_RUNS_SCANNED` free dirty runs. Resident pages are reused
    /// before clean ones (jemalloc reuses its dirty extents first for the
    /// same reason): plain first fit took the lowest free pages even when
    /// the scavenger had just released them and the pages a sweep had just
    /// freed sat resident higher up, so each new span was a page fault.
    fn find_dirty_pages(&mut self, npages: usize, align_pages: usize) -> Option<(*mut Arena, usize)> {
        if self.counters.dirty_free_pages < npages {
            return None;
        }
        let mut budget = DIRTY_RUNS_SCANNED;
        let mut a = self.first;
        while !a.is_null() {
            // SAFETY: arenas on the list are live; the heap lock is held.
            let arena = unsafe { &*a };
            let (free, dirty) = (arena.free_map(), arena.dirty_map());
            // No free page lies below `search_from`.
            let mut from = arena.search_from;
            while let Some((start, end)) = free.next_run_in_both(&dirty, from) {
                let page = aligned_index(start, align_pages, arena.skew(align_pages));
                if page + npages <= end {
                    return Some((a, page));
                }
                budget -= 1;
                if budget == 0 {
                    return None;
                }
                from = end;
            }
            a = arena.next;
        }
        None
    }

    /// The lowest run of free clean pages, at most `max` long, marked dirty
    /// (it is about to be populated): (address, pages).
    fn take_clean_run(&mut self, max: usize) -> Option<(usize, usize)> {
        let mut a = self.first;
        while !a.is_null() {
            // SAFETY: arenas on the list are live; the heap lock is held.
            let arena = unsafe { &*a };
            let (free, dirty) = (arena.free_map(), arena.dirty_map());
            let mut from = arena.search_from;
            while let Some(start) = free.next_set(from) {
                let end = free.next_clear(start);
                let clean = dirty.next_clear(start);
                if clean < end {
                    let stop = dirty.next_set(clean).map_or(end, |d| d.min(end)).min(clean + max);
                    dirty.set_range(clean, stop - clean);
                    self.counters.dirty_free_pages += stop - clean;
                    return Some((arena.page_addr(clean), stop - clean));
                }
                from = end;
            }
            a = arena.next;
        }
        None
    }

    /// Address-ordered first fit over all arenas.
    fn find_pages(&mut self, npages: usize, align_pages: usize) -> Option<(*mut Arena, usize)> {
        let mut a = self.first;
        while !a.is_null() {
            // SAFETY: arenas on the list are live; the heap lock is held.
            let arena = unsafe { &mut *a };
            if arena.free_pages >= npages {
                let map = arena.free_map();
                match map.next_set(arena.search_from) {
                    None => arena.search_from = arena.npages,
                    Some(first_free) => {
                        arena.search_from = first_free;
                        if let Some(page) = map.find_run(first_free, npages, align_pages, arena.skew(align_pages)) {
                            return Some((a, page));
                        }
                    }
                }
            }
            a = arena.next;
        }
        None
    }

    /// Marks `[page, page + n)` of `arena` free and unmapped from any span.
    fn release_pages(&mut self, arena: &mut Arena, page: usize, n: usize) {
        if n == 0 {
            return;
        }
        arena.set_spans(page, n, ptr::null_mut());
        arena.free_map().set_range(page, n);
        arena.fresh_map().set_range(page, n);
        arena.free_pages += n;
        arena.search_from = arena.search_from.min(page);
        self.counters.free_pages += n;
        // Pages in use are always marked dirty.
        self.counters.dirty_free_pages += n;
        self.counters.pages_in_use -= n;
    }

    /// The scavenger's automatic policy: keep free dirty memory for reuse up
    /// to max(16 MiB, 1/8 of the memory in use, the scavenger's floor); past
    /// that, release down to half the limit (never below the floor) so a
    /// workload oscillating around it does not `madvise` on every free.
    fn maybe_scavenge(&mut self, floor: usize) {
        let limit = RETAIN_MIN_PAGES.max(self.counters.pages_in_use / 8);
        if self.counters.releasable_pages() > limit.max(floor) {
            self.scavenge((limit / 2).max(floor));
        }
    }

    /// Releases free dirty runs, highest arena first, until at most `keep`
    /// releasable pages remain. Refused pages are skipped: each run is
    /// tried once, and a refusal marks it (so a process under `mlockall`
    /// pays one failing `madvise` per run it frees, not one per run on
    /// every later free). Returns pages released.
    fn scavenge(&mut self, keep: usize) -> usize {
        let mut released = 0;
        let mut a = self.last;
        while !a.is_null() && self.counters.releasable_pages() > keep {
            // SAFETY: arenas on the list are live; the heap lock is held.
            let arena = unsafe { &mut *a };
            let (free, dirty, refused) = (arena.free_map(), arena.dirty_map(), arena.refused_map());
            let mut from = 0;
            while self.counters.releasable_pages() > keep {
                let Some((start, end)) = free.next_run_in_both(&dirty, from) else {
                    break;
                };
                let run_start = refused.next_clear(start);
                if run_start >= end {
                    from = end;
                    continue;
                }
                let run_end = refused.next_set(run_start).map_or(end, |r| r.min(end));
                if self.release_run(arena, run_start, run_end) {
                    released += run_end - run_start;
                }
                from = run_end;
            }
            a = arena.prev;
        }
        released
    }

    /// Returns the free dirty pages `[start, end)` of `arena` to the OS;
    /// false if the kernel refused: the pages stay dirty and are marked
    /// refused.
    fn release_run(&mut self, arena: &Arena, start: usize, end: usize) -> bool {
        // SAFETY: the run is free pages of a live arena: no live data.
        if !unsafe { os::release(arena.page_addr(start) as *mut u8, (end - start) * PAGE_SIZE) } {
            arena.refused_map().set_range(start, end - start);
            self.counters.refused_free_pages += end - start;
            return false;
        }
        arena.dirty_map().clear_range(start, end - start);
        self.counters.dirty_free_pages -= end - start;
        self.counters.released_total += (end - start) * PAGE_SIZE;
        self.counters.purges += 1;
        true
    }

    /// The next run the scavenger's step releases, taken out of the free
    /// map (and marked clean, as it is about to be; `put_back_released`
    /// marks it dirty again if the kernel refuses): free dirty pages with
    /// no fresh page (any, with `all`), at most `RELEASE_CHUNK_PAGES`, past
    /// the lowest `keep` free dirty pages. `cursor` carries the scan from
    /// one call to the next; pages behind it that change meanwhile wait for
    /// the next step. Returns (arena, first page, pages).
    ///
    /// The pages kept are the lowest in address order (fresh or not), as Go's
    /// scavenger works down from the top: allocation is first-fit from low
    /// addresses, so the pages kept are the ones the next spans take, and a
    /// kept page is reused before a released one has to be faulted back in.
    fn take_aged_run(&mut self, cursor: &mut AgedCursor, all: bool, keep: usize) -> Option<(*mut Arena, usize, usize)> {
        if cursor.arena.is_null() {
            cursor.arena = self.first;
        }
        while !cursor.arena.is_null() {
            let a = cursor.arena;
            // SAFETY: arenas on the list are live; the heap lock is held.
            let arena = unsafe { &mut *a };
            let (free, dirty, fresh, refused) =
                (arena.free_map(), arena.dirty_map(), arena.fresh_map(), arena.refused_map());
            let skip_fresh = (!all).then_some(&fresh);
            while let Some((start, end)) = free.next_run_in_both(&dirty, cursor.page) {
                let first = start + keep.saturating_sub(cursor.kept).min(end - start);
                cursor.kept += first - start;
                let run_start = next_clear_in_neither(skip_fresh, &refused, first);
                if run_start >= end {
                    cursor.page = end;
                    continue;
                }
                let stop = |b: &Bitmap| b.next_set(run_start).map_or(end, |f| f.min(end));
                let run_end = stop(&refused).min(skip_fresh.map_or(end, stop));
                let n = (run_end - run_start).min(RELEASE_CHUNK_PAGES);
                // The pages between `start` and `run_start` are kept or
                // fresh: the next call starts after this run.
                cursor.page = run_start + n;
                free.clear_range(run_start, n);
                dirty.clear_range(run_start, n);
                arena.free_pages -= n;
                self.counters.free_pages -= n;
                self.counters.dirty_free_pages -= n;
                return Some((a, run_start, n));
            }
            cursor.arena = arena.next;
            cursor.page = 0;
        }
        None
    }

    /// Returns a run `take_aged_run` took to the free map: clean if it was
    /// `released`, dirty again if the kernel refused (its pages keep their
    /// contents, so a span made of them must be zeroed where zero is due).
    fn put_back_released(&mut self, arena: &mut Arena, page: usize, n: usize, released: bool) {
        arena.free_map().set_range(page, n);
        arena.free_pages += n;
        arena.search_from = arena.search_from.min(page);
        self.counters.free_pages += n;
        if released {
            self.counters.released_total += n * PAGE_SIZE;
            self.counters.purges += 1;
        } else {
            arena.dirty_map().set_range(page, n);
            arena.refused_map().set_range(page, n);
            self.counters.dirty_free_pages += n;
            self.counters.refused_free_pages += n;
        }
    }

    /// Clears every fresh mark: the end of a scavenger step.
    fn clear_fresh(&mut self) {
        let mut a = self.first;
        while !a.is_null() {
            // SAFETY: arenas on the list are live; the heap lock is held.
            let arena = unsafe { &*a };
            arena.fresh_map().clear_range(0, arena.npages);
            a = arena.next;
        }
    }
}

/// Where a scavenger step stands between two holds of the heap lock.
struct AgedCursor {
    /// Null before the first call.
    arena: *mut Arena,
    page: usize,
    /// Free dirty pages passed over so far, all kept.
    kept: usize,
}

impl Drop for MHeap {
    /// Unmaps every arena and the index. Only heaps built as values (tests,
    /// loom models) are ever dropped; every block they handed out dies here.
    fn drop(&mut self) {
        self.inner.with(|h| {
            let mut a = h.first;
            while !a.is_null() {
                // SAFETY: each arena was mapped by `grow` with `npages` pages.
                unsafe {
                    let next = (*a).next;
                    os::unmap(a.cast(), (*a).npages * PAGE_SIZE);
                    a = next;
                }
            }
        });
        let index = self.index.load(PlainOrdering::Relaxed);
        if !index.is_null() {
            // SAFETY: mapped by `grow` with this length; unused now.
            unsafe { os::unmap(index.cast(), INDEX_LEN * size_of::<PlainAtomicPtr<Arena>>()) };
        }
    }
}

impl Default for MHeap {
    fn default() -> Self {
        MHeap::new()
    }
}

#[cfg(all(test, not(gomalloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn spans_are_found_from_every_page_and_gone_after_free() {
        let heap = MHeap::new();
        let a = heap.alloc_span(3, 1, 0);
        let b = heap.alloc_span(1, 1, 5);
        assert!(!a.is_null() && !b.is_null());
        // SAFETY: live spans of this heap.
        unsafe {
            let base = (*a).base;
            for off in [0, 1, PAGE_SIZE, 3 * PAGE_SIZE - 1] {
                assert_eq!(heap.span_of(base + off), a);
            }
            assert_eq!(heap.span_of((*b).base + 100), b);
            assert_eq!((*b).class, 5);
            assert!(!(*a).needzero, "fresh pages need no zeroing");
            heap.free_span(a);
            assert!(heap.span_of(base).is_null());
            assert!(heap.span_of(0x1000).is_null(), "foreign address");
            let header = (*b).base & !(ARENA_SIZE - 1);
            assert!(heap.span_of(header).is_null(), "arena header is no span");
        }
        assert_eq!(heap.counters().pages_in_use, 1);
    }

    #[test]
    fn first_fit_reuses_the_lowest_free_run_and_coalesces() {
        let heap = MHeap::new();
        let spans: Vec<_> = (0..6).map(|_| heap.alloc_span(2, 1, 0)).collect();
        // SAFETY: live spans of this heap.
        unsafe {
            let b1 = (*spans[1]).base;
            heap.free_span(spans[1]);
            heap.free_span(spans[2]);
            // 4 pages free at spans[1]'s place: a 4-page run fits there.
            let s = heap.alloc_span(4, 1, 0);
            assert_eq!((*s).base, b1);
            assert!((*s).needzero, "reused pages may hold old data");
        }
    }

    #[test]
    fn aligned_runs_and_in_place_resize() {
        let heap = MHeap::new();
        let _pad = heap.alloc_span(1, 1, 0);
        let s = heap.alloc_span(2, 8, 0);
        // SAFETY: live spans of this heap, owned by this test.
        unsafe {
            assert_eq!((*s).base % (8 * PAGE_SIZE), 0);
            assert!(heap.resize_in_place(s, 10), "pages after it are free");
            assert_eq!(heap.span_of((*s).base + 9 * PAGE_SIZE), s);
            assert!(heap.resize_in_place(s, 4));
            assert!(heap.span_of((*s).base + 5 * PAGE_SIZE).is_null());
            // Eight pages do not fit in the alignment gap below `s` (at most
            // seven), so first fit lands on the freed tail.
            let blocker = heap.alloc_span(8, 1, 0);
            assert_eq!((*blocker).base, (*s).base + 4 * PAGE_SIZE, "first fit took the freed tail");
            assert!(!heap.resize_in_place(s, 6), "next page is taken");
        }
    }

    #[test]
    fn huge_runs_get_their_own_arena_and_scavenging_releases_them() {
        let heap = MHeap::new();
        let pages = (200 << 20) / PAGE_SIZE;
        let s = heap.alloc_span(pages, 1, 0);
        assert!(!s.is_null());
        // SAFETY: live span; its pages are ours to write.
        unsafe {
            let base = (*s).base;
            ptr::write_bytes(base as *mut u8, 0xAB, pages * PAGE_SIZE);
            assert_eq!(heap.span_of(base + pages * PAGE_SIZE - 1), s);
            heap.free_span(s);
        }
        let c = heap.counters();
        assert!(c.dirty_free_pages <= RETAIN_MIN_PAGES, "the automatic scavenger ran");
        assert!(c.released_total >= 100 << 20);
        heap.scavenge(0);
        assert_eq!(heap.counters().dirty_free_pages, 0);
        // Released pages come back zeroed and are known clean.
        let t = heap.alloc_span(pages, 1, 0);
        // SAFETY: live span.
        unsafe {
            assert!(!(*t).needzero);
            let p = (*t).base as *const u8;
            assert_eq!(*p.add(12345), 0);
        }
    }

    #[test]
    fn aged_scavenging_spares_pages_freed_since_the_last_tick() {
        let heap = MHeap::new();
        let old = heap.alloc_span(4, 1, 0);
        let reused = heap.alloc_span(4, 1, 0);
        // SAFETY: live spans of this heap, freed once.
        unsafe {
            heap.free_span(old);
            heap.free_span(reused);
        }
        // First tick: both runs were freed since the last one: nothing goes.
        let purges = heap.counters().purges;
        assert_eq!(heap.scavenge_aged(false), (0, 8));
        assert_eq!(heap.counters().purges, purges);
        // The workload takes one run again and frees it before the next tick
        // (first fit hands out the lowest run, `old`'s pages): only the run
        // that stayed free for a whole period is released.
        let again = heap.alloc_span(4, 1, 0);
        // SAFETY: as above.
        unsafe { heap.free_span(again) };
        assert_eq!(heap.scavenge_aged(false), (4, 4), "the idle run goes, the reused one stays");
        assert_eq!(heap.counters().purges, purges + 1);
        // Untouched for another period: released too.
        assert_eq!(heap.scavenge_aged(false), (4, 0));
        let t = heap.alloc_span(2, 1, 0);
        // SAFETY: as above; a delay of 0 releases fresh pages too.
        unsafe {
            std::ptr::write_bytes((*t).base as *mut u8, 1, 2 * PAGE_SIZE);
            heap.free_span(t);
        }
        assert_eq!(heap.scavenge_aged(true), (2, 0));
    }

    #[test]
    fn aged_scavenging_keeps_the_floor_and_releases_the_highest_pages() {
        let heap = MHeap::new();
        let spans = [heap.alloc_span(4, 1, 0), heap.alloc_span(4, 1, 0), heap.alloc_span(4, 1, 0)];
        // SAFETY: live spans of this heap, freed once.
        unsafe { spans.iter().for_each(|&s| heap.free_span(s)) };
        assert_eq!(heap.scavenge_aged(false), (0, 12), "all fresh");
        // A GC heap reserves 10 pages and holds 4: a floor of 6.
        heap.scavenger().reserve(0, 10);
        heap.scavenger().held(4, 0);
        assert_eq!(heap.scavenger().floor_pages(), 6);
        assert_eq!(heap.scavenge_aged(false), (6, 6), "only the pages above the floor go");
        assert_eq!(heap.scavenge_aged(false), (0, 6), "the floor is kept however old");
        // The lowest 6 pages stayed resident (first fit reuses them next):
        // a run with a dirty page needs zeroing, a released one does not.
        let needzero = |n| {
            let s = heap.alloc_span(n, 1, 0);
            // SAFETY: a live span of this heap.
            unsafe { (*s).needzero }
        };
        assert!(needzero(4), "pages 0-3 kept");
        assert!(needzero(2), "pages 4-5 kept");
        assert!(!needzero(2), "pages 6-7 released");
        assert!(!needzero(4), "pages 8-11 released");
        // Lowering the reservation lowers the floor.
        heap.scavenger().held(0, 4);
        heap.scavenger().reserve(10, 0);
        assert_eq!(heap.scavenger().floor_pages(), 0);
    }
}
