//! GC spans: size-class spans taken from the allocator's page heap, with a
//! header at their first byte holding the allocation and mark bitmaps (Go's
//! `allocBits`/`gcmarkBits`) and the span's `sweepgen`.
//!
//! Called by `mutator.rs` (allocation from a cached span), `mark.rs` (setting
//! mark bits) and `heap.rs` (creation, sweeping, release). Calls `mheap.rs`
//! for pages.
//!
//! # Concurrency
//! Mark bits are set by the marker and by mutators' barriers with atomic
//! `fetch_or`. Allocation bits are written only by the span's holder (the
//! mutator cache that has it, or the sweeper that claimed it) and read
//! racily by statistics. `sweepgen` follows Go: with the heap at `sg`, a span
//! at `sg - 2` needs sweeping, at `sg - 1` is being swept (claimed by CAS),
//! at `sg` is swept. Sweeping makes the mark bits the new allocation bits and
//! clears the mark bits.
//!
//! Invariants: an object's slot has its allocation bit set from allocation
//! until the sweep that finds it unmarked; that sweep drops the value exactly
//! once. The header's size is a multiple of 256, so objects keep any
//! alignment up to 256.

use crate::gc::ptr::GcBox;
use crate::mheap::MHeap;
use crate::sizeclass::{CLASS_SIZE, PAGE_SIZE};
use crate::span::Span;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Bytes at the start of a span reserved for the header.
pub const HEADER_BYTES: usize = 256;
/// Bitmap words per span: room for 512 objects, the most a span can hold
/// (16-byte objects, the smallest GC object, in one page).
pub const BITMAP_WORDS: usize = 8;
/// Largest object alignment supported.
pub const MAX_ALIGN: usize = HEADER_BYTES;

/// Objects a GC span of `class` holds once the header is taken out: 0 for
/// the classes with one object per span (8, 16, 24 and 32 KiB), whose
/// requests take the large-object path instead.
pub fn objects_per_span(class: usize) -> usize {
    (crate::sizeclass::CLASS_PAGES[class] as usize * PAGE_SIZE - HEADER_BYTES) / CLASS_SIZE[class] as usize
}

/// The header at the first byte of a GC span.
#[repr(C, align(256))]
pub struct GcSpan {
    /// The page heap's record for these pages.
    pub span: *mut Span,
    /// Object size (class size, or the whole run for a large object).
    pub elem_size: usize,
    /// Objects in the span.
    pub nelems: usize,
    /// Size class, or 0 for a span holding one large object.
    pub class: usize,
    /// Reciprocal of `elem_size` for slot lookup (small spans).
    pub div_magic: u64,
    /// See the module header.
    pub sweepgen: AtomicU64,
    /// Next slot to look at when allocating (holder only).
    pub free_index: AtomicUsize,
    /// Allocated objects as of the last sweep, plus allocations since
    /// (holder only; read racily by statistics).
    pub allocated: AtomicUsize,
    /// The owning GC heap's identity (for diagnostics and cross-checks).
    pub heap_id: usize,
    /// Debug check of the holder protocol: 1 while on a list, 2 while in a
    /// mutator cache, 3 while a sweeper holds it.
    pub holder: AtomicUsize,
    /// Allocation bits: 1 = slot holds an object.
    pub alloc_bits: [AtomicU64; BITMAP_WORDS],
    /// Mark bits of the cycle in progress or just finished.
    pub mark_bits: [AtomicU64; BITMAP_WORDS],
    /// Some object allocated here since the span was created has drop
    /// glue, so sweeping must run `desc.drop` on dead objects. Without it a
    /// sweep is bitmap work only: calling the (empty) drop of every dead
    /// object cost a cache miss on each, which made lazy sweeps the
    /// mutator's longest stalls. Set by the holder through `note_drop`
    /// before the span goes back to the lists; never cleared.
    pub has_drop: AtomicBool,
}

const _: () = assert!(core::mem::size_of::<GcSpan>() <= HEADER_BYTES);

/// Drops a dead object's value, catching a panic from its `Drop`: the
/// sweep must finish, since the span's bits, its list and the count of
/// sweeps in flight are consistent only once it has. A panic that left a
/// lazy sweep half done once had the span handed back twice and its pages
/// freed twice, and the heap wait for ever for the sweep to end. The panic
/// is reported, like a finalizer's, and the sweep goes on; the value's other
/// fields were dropped as the panic unwound through them.
///
/// # Safety
/// `obj` is an initialised object nothing will use again.
unsafe fn drop_dead(obj: *mut GcBox<()>, heap: usize) {
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: forwarded: the object is dead and initialised.
        crate::gc::mutator::as_sweep_drop(heap, || unsafe { ((*obj).desc.drop)(obj) })
    }));
    if dropped.is_err() {
        // SAFETY: the descriptor is not part of the dropped value.
        let name = unsafe { ((*obj).desc.name)() };
        crate::os::eprint_line(format_args!("gomalloc::gc: the Drop of a {name} panicked during a sweep; continuing"));
    }
}

/// What a sweep found.
#[derive(Clone, Copy, Debug, Default)]
pub struct SweepResult {
    /// Objects dropped.
    pub freed: usize,
    /// Bytes of the objects dropped.
    pub freed_bytes: usize,
    /// Objects that survive.
    pub live: usize,
}

impl GcSpan {
    /// Takes a span for `class` (or, with `class == 0`, a large run for one
    /// object of `large_size` bytes) from the page heap and writes its header.
    /// Null when out of memory.
    pub fn create(pages: &MHeap, class: usize, large_size: usize, sweepgen: u64, heap_id: usize) -> *mut GcSpan {
        let (npages, elem_size) = if class == 0 {
            ((HEADER_BYTES + large_size).div_ceil(PAGE_SIZE), large_size)
        } else {
            (crate::sizeclass::CLASS_PAGES[class] as usize, CLASS_SIZE[class] as usize)
        };
        // The page heap's class field stays 0 (a large span to the malloc
        // tiers), so a stray `free` of a GC object is reported as an interior
        // pointer instead of corrupting a size-class span.
        let span = pages.alloc_span(npages, 1, 0);
        if span.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: a fresh span owned by this call; its first page is mapped
        // and large enough for the header.
        unsafe {
            let base = (*span).base;
            let nelems = if class == 0 { 1 } else { (npages * PAGE_SIZE - HEADER_BYTES) / elem_size };
            debug_assert!(nelems <= BITMAP_WORDS * 64);
            let g = base as *mut GcSpan;
            core::ptr::write(
                g,
                GcSpan {
                    span,
                    elem_size,
                    nelems,
                    class,
                    div_magic: (u32::MAX as u64 / elem_size as u64 + 1),
                    sweepgen: AtomicU64::new(sweepgen),
                    free_index: AtomicUsize::new(0),
                    allocated: AtomicUsize::new(0),
                    heap_id,
                    holder: AtomicUsize::new(2),
                    alloc_bits: Default::default(),
                    mark_bits: Default::default(),
                    has_drop: AtomicBool::new(false),
                },
            );
            g
        }
    }

    /// The GC span holding `obj`, if `obj` is the start of a slot of a GC
    /// span of heap `heap_id`.
    ///
    /// # Safety
    /// `obj` was produced by a GC heap on `pages` and its span is live.
    #[inline]
    pub unsafe fn of(pages: &MHeap, obj: *const GcBox<()>) -> *mut GcSpan {
        let span = pages.span_of(obj as usize);
        debug_assert!(!span.is_null(), "GC object outside the page heap");
        // SAFETY: the caller's object lives in a live span whose first bytes
        // are its GC header.
        unsafe { (*span).base as *mut GcSpan }
    }

    /// First object address.
    #[inline]
    pub fn first(&self) -> usize {
        self as *const GcSpan as usize + HEADER_BYTES
    }

    /// Slot index of `obj` (which must be a slot start of this span).
    #[inline]
    pub fn index_of(&self, obj: *const GcBox<()>) -> usize {
        let offset = obj as usize - self.first();
        let index = if self.nelems == 1 { 0 } else { ((offset as u64 * self.div_magic) >> 32) as usize };
        debug_assert_eq!(index * self.elem_size, offset, "not an object start");
        index
    }

    /// Object at slot `index`.
    #[inline]
    pub fn object(&self, index: usize) -> *mut GcBox<()> {
        (self.first() + index * self.elem_size) as *mut GcBox<()>
    }

    /// Sets the mark bit of slot `index`; true if it was clear.
    #[inline]
    pub fn mark(&self, index: usize) -> bool {
        let bit = 1u64 << (index % 64);
        let word = &self.mark_bits[index / 64];
        // Most shades find the object already marked (a black allocation's
        // children, a barrier on a marked object, the tree's shared
        // descendants): a plain load spares them the locked read-modify-write
        // and the cache line's exclusive ownership. A stale clear bit only
        // sends the caller to the `fetch_or`, which decides. Relaxed: a set
        // bit is monotone within a cycle, and the caller does nothing with
        // an object it did not win. A set bit left from the last cycle
        // cannot be read here: the sweep that cleared it happens before any
        // shade of this cycle (its `sweeping` decrement or the collector's
        // own sweep, then the `marking` store every shading path acquires;
        // rule 7 in `gc/mod.rs`).
        if word.load(Ordering::Relaxed) & bit != 0 {
            return false;
        }
        // AcqRel: the marker that wins the bit traces the object after this;
        // pairs with nothing else (bits are monotone within a cycle).
        word.fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Sets the mark bit of slot `index`, just allocated black by this
    /// span's holder. No other thread can mark it first (the object is not
    /// yet published, and within a cycle a slot is allocated at most once),
    /// so the old value is not needed: a locked OR, not the compare-exchange
    /// loop that `mark`'s result costs.
    #[inline]
    pub fn mark_fresh(&self, index: usize) {
        let bit = 1u64 << (index % 64);
        let word = &self.mark_bits[index / 64];
        debug_assert_eq!(word.load(Ordering::Relaxed) & bit, 0, "slot {index} marked before its allocation");
        // AcqRel: as in `mark`; the holder traces the object after this.
        word.fetch_or(bit, Ordering::AcqRel);
    }

    /// True if slot `index` is marked in the cycle in progress or just
    /// finished.
    #[inline]
    pub fn is_marked(&self, index: usize) -> bool {
        // Acquire pairs with the AcqRel `fetch_or` in `mark`.
        self.mark_bits[index / 64].load(Ordering::Acquire) & (1 << (index % 64)) != 0
    }

    /// True if slot `index` holds an object (allocation bit set).
    #[inline]
    pub fn is_allocated(&self, index: usize) -> bool {
        self.alloc_bits[index / 64].load(Ordering::Relaxed) & (1 << (index % 64)) != 0
    }

    /// Claims a free slot for the holder: the first slot at or after
    /// `free_index` whose allocation bit is clear. None when full.
    #[inline]
    pub fn take_free_slot(&self) -> Option<usize> {
        debug_assert_eq!(self.holder.load(Ordering::Relaxed), 2, "allocation from a span no cache holds");
        let mut i = self.free_index.load(Ordering::Relaxed);
        while i < self.nelems {
            let word = self.alloc_bits[i / 64].load(Ordering::Relaxed);
            let free = !word & (u64::MAX << (i % 64));
            if free != 0 {
                let slot = (i & !63) + free.trailing_zeros() as usize;
                if slot >= self.nelems {
                    break;
                }
                self.alloc_bits[slot / 64].store(word | 1 << (slot % 64), Ordering::Relaxed);
                self.free_index.store(slot + 1, Ordering::Relaxed);
                self.allocated.store(self.allocated.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                return Some(slot);
            }
            i = (i & !63) + 64;
        }
        self.free_index.store(self.nelems, Ordering::Relaxed);
        None
    }

    /// Records that an object with drop glue was allocated here (see
    /// `has_drop`). Every allocation path that writes a type needing drop
    /// must call it, before the span leaves its holder.
    #[inline]
    pub fn note_drop(&self) {
        // Relaxed: see `sweep`. The load keeps the common case a read.
        if !self.has_drop.load(Ordering::Relaxed) {
            self.has_drop.store(true, Ordering::Relaxed);
        }
    }

    /// True if the holder can allocate here.
    pub fn has_free(&self) -> bool {
        self.allocated.load(Ordering::Relaxed) < self.nelems
    }

    /// Claims the span for sweeping at heap sweepgen `sg`: true if it was
    /// unswept (`sg - 2`, or older if it sat in a mutator cache across more
    /// than one flip) and this caller now sweeps it.
    pub fn claim_sweep(&self, sg: u64) -> bool {
        let mut s = self.sweepgen.load(Ordering::Relaxed);
        while s + 2 <= sg {
            // Acquire pairs with the Release in `sweep`'s final store of the
            // previous sweeper and with the flip in `heap.rs`.
            match self.sweepgen.compare_exchange(s, sg - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(cur) => s = cur,
            }
        }
        false
    }

    /// Sweeps a claimed span: drops every allocated, unmarked object, makes
    /// the mark bits the allocation bits and clears them.
    ///
    /// # Safety
    /// The caller claimed the span (`claim_sweep`) and marking of the cycle
    /// whose bits it holds is complete.
    pub unsafe fn sweep(&self, sg: u64) -> SweepResult {
        let mut r = SweepResult::default();
        for w in 0..self.nelems.div_ceil(64) {
            let alloc = self.alloc_bits[w].load(Ordering::Relaxed);
            let marked = self.mark_bits[w].load(Ordering::Acquire);
            debug_assert_eq!(marked & !alloc, 0, "gomalloc::gc: mark bits on free slots of span {:p}", self);
            let mut dead = alloc & !marked;
            r.freed += dead.count_ones() as usize;
            // Relaxed: the holder's `note_drop` reached this sweeper through
            // the span lists' mutex, as the span itself did.
            if !self.has_drop.load(Ordering::Relaxed) {
                dead = 0;
            }
            while dead != 0 {
                let i = w * 64 + dead.trailing_zeros() as usize;
                dead &= dead - 1;
                // SAFETY: an allocated slot holds an initialised box; it is
                // unreachable (unmarked after a complete mark), so nothing
                // reads it again. Its `Drop` reaches no GC object (derive
                // forbids `Drop` on traced types).
                unsafe { drop_dead(self.object(i), self.heap_id) };
            }
            r.live += (alloc & marked).count_ones() as usize;
            // Objects allocated black since marking began are marked too.
            self.alloc_bits[w].store(marked, Ordering::Relaxed);
            self.mark_bits[w].store(0, Ordering::Relaxed);
        }
        r.freed_bytes = r.freed * self.elem_size;
        self.allocated.store(r.live, Ordering::Relaxed);
        self.free_index.store(0, Ordering::Relaxed);
        // Release pairs with the Acquire of the next `claim_sweep` and of
        // allocation after `heap.rs` hands the span out.
        self.sweepgen.store(sg, Ordering::Release);
        r
    }

    /// Drops every allocated object (the heap is being destroyed).
    ///
    /// # Safety
    /// No handle to any object of the span is used afterwards.
    pub unsafe fn drop_all(&self) {
        for w in 0..self.nelems.div_ceil(64) {
            let mut alloc = self.alloc_bits[w].load(Ordering::Relaxed);
            while alloc != 0 {
                let i = w * 64 + alloc.trailing_zeros() as usize;
                alloc &= alloc - 1;
                // SAFETY: an allocated slot holds an initialised box that the
                // caller will never use again.
                unsafe { drop_dead(self.object(i), self.heap_id) };
            }
            self.alloc_bits[w].store(0, Ordering::Relaxed);
        }
        self.allocated.store(0, Ordering::Relaxed);
    }

    /// Returns the pages to the page heap.
    ///
    /// # Safety
    /// The span holds no live object and nothing refers to it.
    pub unsafe fn release(this: *mut GcSpan, pages: &MHeap) {
        // SAFETY: the caller's span is live until this call.
        unsafe { pages.free_span((*this).span) };
    }

    /// Bytes of pages held.
    pub fn span_bytes(&self) -> usize {
        // SAFETY: the page heap record of a live GC span is live.
        unsafe { (*self.span).pages() * PAGE_SIZE }
    }
}
