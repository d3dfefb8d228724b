//! Spans (Go's `mspan`): a run of pages from the page heap, either cut into
//! objects of one size class or holding one large object; and the protocol by
//! which any thread frees into a span that another thread owns.
//!
//! Called by `mcache.rs` (allocation and local frees), `mcentral.rs`
//! (ownership transfers) and `mheap.rs` (creation, release). Calls nothing.
//!
//! # Ownership and concurrency
//! At any time a small span has exactly one *holder*: a thread cache (tag
//! `OWNED`), a central list (`PARTIAL` or `FULL`, under that list's lock), or a
//! thread that has *claimed* it to move it (`CLAIMED`). Only the holder
//! touches the local free list, the bump index, the used count and the list
//! links. Every other thread frees through `remote`, one atomic word:
//!
//! ```text
//!  63        50 49      34 33      18 17       2 1   0
//! | (unused)   | frozen   | head+1   | count    | tag |
//! ```
//!
//! `head` is the slot index of the last remotely freed object (its first word
//! links to the previous one), `count` the length of that list, and `frozen`
//! the holder's used count at the moment the span left its cache, so a freeing
//! thread can tell, from the word alone, that its free was the last one.
//!
//! Transitions, each a single CAS on `remote`:
//! - a remote free pushes; if it finds `FULL`, or `PARTIAL` and its push makes
//!   `count == frozen` (every object free), the same CAS sets `CLAIMED` and the
//!   freeing thread becomes the holder: it must hand the span to
//!   `MCentral::on_claimed`, which moves it to the partial list or returns it
//!   to the page heap. A pusher that did not claim never touches the span
//!   again, because once its object is free the span may be released.
//! - the owning cache takes the whole remote list with one swap (`OWNED` stays).
//! - a central list takes a `PARTIAL` span for a cache by CAS to `OWNED`.
//! - a cache hands its span back by CAS `OWNED` → `PARTIAL`/`FULL`, recording
//!   `frozen`.
//!
//! Invariants: `used - count` objects are live; a span with `count == frozen`
//! outside a cache has no live object and can receive no more frees; `remote`
//! is only pushed while the pusher's object is live, so the span record cannot
//! be released under a pusher.

use crate::sizeclass::{CLASS_OBJECTS, CLASS_SIZE, DIV_MAGIC};
use crate::sync::{maybe_const_fn, AtomicU64, AtomicUsize, Ordering, OwnerCounter, UnsafeCell};
use core::ptr;

/// A free slot's first word: the link to the next free slot.
#[repr(C)]
pub struct FreeObj {
    /// Next free object, or null.
    pub next: *mut FreeObj,
}

/// Under loom, spans hold at most this many objects so models reach the full,
/// partial and empty transitions within a few operations.
#[cfg(gomalloc_loom)]
pub const MAX_OBJECTS_PER_SPAN: u16 = 3;
#[cfg(not(gomalloc_loom))]
pub const MAX_OBJECTS_PER_SPAN: u16 = u16::MAX;

/// Fresh slots are threaded onto the free list at most this many bytes at a
/// time, so a new span's pages are touched as they are used (mimalloc's
/// free-list extension).
const EXTEND_BYTES: usize = 8 << 10;

/// Holder states kept in the low bits of `Span::remote`.
pub mod tag {
    /// Held by a thread cache.
    pub const OWNED: u64 = 0;
    /// On its central partial list.
    pub const PARTIAL: u64 = 1;
    /// On its central full list.
    pub const FULL: u64 = 2;
    /// Taken off the lists' protocol by one thread that will move it.
    pub const CLAIMED: u64 = 3;
}

const TAG_MASK: u64 = 3;
const COUNT_SHIFT: u32 = 2;
const HEAD_SHIFT: u32 = 18;
const FROZEN_SHIFT: u32 = 34;
const FIELD: u64 = 0xffff;

/// A decoded `Span::remote` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteWord(pub u64);

impl RemoteWord {
    /// Holder state (`tag::*`).
    #[inline]
    pub fn tag(self) -> u64 {
        self.0 & TAG_MASK
    }
    /// Objects on the remote list.
    #[inline]
    pub fn count(self) -> u32 {
        ((self.0 >> COUNT_SHIFT) & FIELD) as u32
    }
    /// Slot index + 1 of the list head, 0 when empty.
    #[inline]
    pub fn head(self) -> u32 {
        ((self.0 >> HEAD_SHIFT) & FIELD) as u32
    }
    /// Used count recorded when the span left its cache.
    #[inline]
    pub fn frozen(self) -> u32 {
        ((self.0 >> FROZEN_SHIFT) & FIELD) as u32
    }
    /// A word from its fields.
    #[inline]
    pub fn pack(tag: u64, count: u32, head: u32, frozen: u32) -> RemoteWord {
        RemoteWord(tag | (count as u64) << COUNT_SHIFT | (head as u64) << HEAD_SHIFT | (frozen as u64) << FROZEN_SHIFT)
    }
    /// Same word with another tag.
    #[inline]
    pub fn with_tag(self, tag: u64) -> RemoteWord {
        RemoteWord((self.0 & !TAG_MASK) | tag)
    }
    /// Same word with another frozen count.
    #[inline]
    pub fn with_frozen(self, frozen: u32) -> RemoteWord {
        RemoteWord((self.0 & !(FIELD << FROZEN_SHIFT)) | (frozen as u64) << FROZEN_SHIFT)
    }
    /// True when every object handed out has come back on the remote list.
    #[inline]
    pub fn all_free(self) -> bool {
        self.count() == self.frozen()
    }
}

/// Which central list a span is on (central-lock state).
pub mod list {
    /// On no list.
    pub const NONE: u8 = 0;
    /// Partial list.
    pub const PARTIAL: u8 = 1;
    /// Full list.
    pub const FULL: u8 = 2;
}

/// A run of pages and its objects. The first cache line holds what the
/// owning thread touches on every allocation and free; `remote` sits on the
/// second so other threads' frees do not contend with it.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Span {
    // ---- holder's hot line ----
    /// Local free list (holder only).
    pub free: UnsafeCell<*mut FreeObj>,
    /// Objects handed out and not freed locally or spliced back (holder only;
    /// read racily by statistics).
    pub used: OwnerCounter,
    /// Next never-used slot (holder only).
    pub bump: UnsafeCell<u16>,
    /// Objects in the span (0 for large spans and the sentinel).
    pub nelems: u16,
    /// Size class; 0 for a large span.
    pub class: u8,
    /// Large span whose pages may hold old data (`alloc_zeroed` must clear).
    pub needzero: bool,
    /// Object size (class size), or 0 for large spans.
    pub elem_size: u32,
    /// The class's reciprocal (`sizeclass::DIV_MAGIC`), kept here so a free
    /// needs no table lookup.
    pub div_magic: u32,
    /// Address of the owning thread cache, 0 when no cache owns the span.
    pub owner: AtomicUsize,
    /// First byte of the span.
    pub base: usize,
    /// Pages in the span; changes only under the heap lock (large realloc).
    pub npages: AtomicUsize,
    /// Free-list key (`secure.rs`), set with the span and then only read.
    #[cfg(feature = "secure")]
    pub key: u64,
    // ---- shared line ----
    /// Remote-free list and holder state (see the module header).
    pub remote: AtomicU64,
    /// Central list links (central lock).
    pub next: UnsafeCell<*mut Span>,
    /// Central list links (central lock).
    pub prev: UnsafeCell<*mut Span>,
    /// Which central list holds the span (central lock).
    pub list: UnsafeCell<u8>,
    /// Live slots (`secure.rs`).
    #[cfg(feature = "secure")]
    pub live: crate::secure::LiveBits,
}

// SAFETY: a span is shared between threads by design; its mutable fields are
// cells whose access follows the holder protocol in the module header, and
// its atomics carry the cross-thread state.
unsafe impl Sync for Span {}
// SAFETY: see `Sync`; the raw pointers inside are addresses of heap memory
// that is not tied to any thread.
unsafe impl Send for Span {}

impl Span {
    maybe_const_fn! {
        /// An empty span: no pages, no objects. Used as the sentinel every
        /// empty cache slot points to, so the allocation fast path needs no
        /// "initialised?" test: its free list is always null.
        pub fn empty() -> Span {
            Span {
                free: UnsafeCell::new(ptr::null_mut()),
                used: OwnerCounter::new(0),
                bump: UnsafeCell::new(0),
                nelems: 0,
                class: 0,
                needzero: false,
                elem_size: 0,
                div_magic: 0,
                owner: AtomicUsize::new(0),
                base: 0,
                npages: AtomicUsize::new(0),
                remote: AtomicU64::new(0),
                next: UnsafeCell::new(ptr::null_mut()),
                prev: UnsafeCell::new(ptr::null_mut()),
                list: UnsafeCell::new(list::NONE),
                #[cfg(feature = "secure")]
                key: 0,
                #[cfg(feature = "secure")]
                live: crate::secure::LiveBits::new(),
            }
        }
    }

    /// Pages in the span.
    #[inline]
    pub fn pages(&self) -> usize {
        self.npages.load(Ordering::Relaxed)
    }

    /// Prepares a span record for small objects of `class` over the pages at
    /// `base`, held by the caller (tag `OWNED`, no owner yet).
    pub fn init_small(&mut self, base: usize, npages: usize, class: usize) {
        self.base = base;
        self.npages.store(npages, Ordering::Relaxed);
        self.class = class as u8;
        self.elem_size = CLASS_SIZE[class];
        self.div_magic = DIV_MAGIC[class];
        // The cap only bites under loom.
        #[allow(clippy::unnecessary_min_or_max)]
        let nelems = CLASS_OBJECTS[class].min(MAX_OBJECTS_PER_SPAN);
        self.nelems = nelems;
        #[cfg(feature = "secure")]
        {
            self.key = crate::secure::span_key(base);
        }
    }

    /// Prepares a span record for one large object.
    pub fn init_large(&mut self, base: usize, npages: usize, needzero: bool) {
        self.base = base;
        self.npages.store(npages, Ordering::Relaxed);
        self.needzero = needzero;
    }

    /// Address of slot `index`.
    #[inline(always)]
    pub fn slot_addr(&self, index: usize) -> usize {
        self.base + index * self.elem_size as usize
    }

    /// Slot index of `addr` if it is the first byte of a slot of this span.
    #[inline(always)]
    pub fn slot_of(&self, addr: usize) -> Option<usize> {
        let offset = addr.wrapping_sub(self.base);
        // The range check comes first: the reciprocal is exact only inside the span.
        if offset >= self.nelems as usize * self.elem_size as usize {
            return None;
        }
        let index = ((offset as u64 * self.div_magic as u64) >> 32) as usize;
        (index * self.elem_size as usize == offset).then_some(index)
    }

    /// Writes `next` as the link of free slot `obj` (encoded in the secure
    /// build).
    ///
    /// # Safety
    /// `obj` is a slot of this span that the caller may write.
    #[inline(always)]
    pub unsafe fn store_link(&self, obj: *mut FreeObj, next: *mut FreeObj) {
        #[cfg(feature = "secure")]
        let next = crate::secure::encode(self.key, next);
        // SAFETY: the caller's contract; a slot is at least a word long.
        unsafe { (*obj).next = next };
    }

    /// The link of free slot `obj` (decoded and checked in the secure build).
    ///
    /// # Safety
    /// `obj` is on this span's local free list and the caller holds the span.
    #[cfg(not(feature = "secure"))]
    #[inline(always)]
    unsafe fn load_link(&self, obj: *mut FreeObj) -> *mut FreeObj {
        // SAFETY: forwarded caller contract.
        unsafe { (*obj).next }
    }

    /// See the default build.
    ///
    /// # Safety
    /// As in the default build.
    #[cfg(feature = "secure")]
    #[inline(always)]
    unsafe fn load_link(&self, obj: *mut FreeObj) -> *mut FreeObj {
        // SAFETY: forwarded caller contract.
        unsafe { crate::secure::load_link(self, obj) }
    }

    /// Pops a free object from the local list (holder only); null when empty.
    ///
    /// # Safety
    /// The caller holds the span.
    #[inline(always)]
    pub unsafe fn pop_local(&self) -> *mut u8 {
        // SAFETY: the holder alone touches `free`; objects on it are free slots
        // of this span whose first word is a link.
        unsafe {
            let obj = self.free.with(|p| *p);
            if obj.is_null() {
                return ptr::null_mut();
            }
            let next = self.load_link(obj);
            self.free.with_mut(|p| *p = next);
            #[cfg(feature = "secure")]
            crate::secure::on_alloc(self, obj.cast());
            self.used.set(self.used.get() + 1);
            obj.cast()
        }
    }

    /// Pushes a freed object on the local list (holder only). Returns false,
    /// pushing nothing, when `obj` is already at the head of the list: a
    /// double free caught at the cost of one compare.
    ///
    /// # Safety
    /// The caller holds the span and `obj` is a slot of it that was handed out.
    #[inline(always)]
    pub unsafe fn push_local(&self, obj: *mut u8) -> bool {
        let obj = obj.cast::<FreeObj>();
        // SAFETY: the holder alone touches `free`; `obj` is a live slot the
        // caller gives up, at least one word long.
        unsafe {
            let head = self.free.with(|p| *p);
            if head == obj {
                return false;
            }
            self.store_link(obj, head);
            self.free.with_mut(|p| *p = obj);
        }
        self.used.set(self.used.get() - 1);
        true
    }

    /// Moves the remote-free list to the (empty) local list. Owner only.
    /// Returns false when there was nothing to take.
    ///
    /// # Safety
    /// The caller owns the span through a cache (tag `OWNED`) and its local
    /// list is empty.
    pub unsafe fn splice_remote(&self) -> bool {
        if RemoteWord(self.remote.load(Ordering::Relaxed)).head() == 0 {
            return false;
        }
        // Acquire pairs with the Release half of the pushers' CAS in
        // `push_remote`: their link writes into the objects are visible.
        // Only the owner changes the tag away from OWNED, so a swap keeps it.
        let w = RemoteWord(self.remote.swap(tag::OWNED, Ordering::Acquire));
        debug_assert_eq!(w.tag(), tag::OWNED);
        let head = self.slot_addr(w.head() as usize - 1) as *mut FreeObj;
        // SAFETY: the holder alone touches `free`.
        unsafe { self.free.with_mut(|p| *p = head) };
        self.used.set(self.used.get() - w.count());
        true
    }

    /// Threads up to `EXTEND_BYTES` of never-used slots onto the (empty)
    /// local list. Returns false when the span has no fresh slot left.
    ///
    /// # Safety
    /// The caller holds the span and its local list is empty.
    pub unsafe fn extend(&self) -> bool {
        // SAFETY: the holder alone touches `bump` and `free`; the slots carved
        // here were never handed out, so nothing else refers to them.
        unsafe {
            let start = self.bump.with(|p| *p) as usize;
            let n = self.nelems as usize;
            if start >= n {
                return false;
            }
            let batch = (EXTEND_BYTES / self.elem_size as usize).max(1);
            let end = (start + batch).min(n);
            #[cfg(feature = "secure")]
            let next = crate::secure::thread_fresh(self, start, end);
            #[cfg(not(feature = "secure"))]
            let next = {
                let mut next: *mut FreeObj = ptr::null_mut();
                let mut i = end;
                while i > start {
                    i -= 1;
                    let obj = self.slot_addr(i) as *mut FreeObj;
                    (*obj).next = next;
                    next = obj;
                }
                next
            };
            self.free.with_mut(|p| *p = next);
            self.bump.with_mut(|p| *p = end as u16);
        }
        true
    }

    /// True if the local list is empty and no fresh slot is left (holder only).
    ///
    /// # Safety
    /// The caller holds the span.
    pub unsafe fn locally_exhausted(&self) -> bool {
        // SAFETY: holder-only fields.
        unsafe { self.free.with(|p| (*p).is_null()) && self.bump.with(|p| *p) >= self.nelems }
    }

    /// Frees `obj` from a thread that does not own the span. Returns true if
    /// this free claimed the span (tag `CLAIMED`); the caller must then pass
    /// it to `MCentral::on_claimed`.
    ///
    /// # Safety
    /// `obj` is slot `index` of this span, handed out and not yet freed.
    pub unsafe fn push_remote(&self, obj: *mut u8, index: usize) -> bool {
        let obj = obj.cast::<FreeObj>();
        // SAFETY: forwarded; a chain of one object.
        unsafe { self.push_remote_chain(obj, index, obj, 1) }
    }

    /// Frees a chain of `count` objects at once, `first` (slot `first_index`)
    /// linking through the chain to `last`, whose link is overwritten. Same
    /// result as `count` single pushes, with one CAS.
    ///
    /// # Safety
    /// Every object of the chain is a distinct slot of this span, handed out
    /// and not yet freed; the chain is exactly `count` long.
    pub unsafe fn push_remote_chain(
        &self,
        first: *mut FreeObj,
        first_index: usize,
        last: *mut FreeObj,
        count: u32,
    ) -> bool {
        let mut w = RemoteWord(self.remote.load(Ordering::Relaxed));
        loop {
            let head = w.head();
            if head as usize == first_index + 1 {
                crate::os::fatal(format_args!("double free of {:#x} (size class {})", first as usize, self.class));
            }
            let next = if head == 0 { ptr::null_mut() } else { self.slot_addr(head as usize - 1) as *mut FreeObj };
            // SAFETY: the caller gives up the chain; until the CAS below
            // publishes it nobody else reads it.
            unsafe { self.store_link(last, next) };
            let total = w.count() + count;
            let claim = match w.tag() {
                tag::FULL => true,
                tag::PARTIAL => total == w.frozen(),
                _ => false,
            };
            let new_tag = if claim { tag::CLAIMED } else { w.tag() };
            let new = RemoteWord::pack(new_tag, total, first_index as u32 + 1, w.frozen());
            // Release: publishes the links of the chain to whoever takes the
            // list (`splice_remote`, `on_claimed`: Acquire). Acquire: a claimer
            // becomes the holder and must see the previous holder's writes
            // (the Release CAS in `MCentral::release`).
            match self.remote.compare_exchange_weak(w.0, new.0, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return claim,
                Err(cur) => w = RemoteWord(cur),
            }
        }
    }
}

#[cfg(all(test, not(gomalloc_loom)))]
mod tests {
    use super::*;
    use crate::sizeclass::PAGE_SIZE;

    fn span_over(buf: &mut [u64], class: usize) -> Span {
        let mut s = Span::empty();
        s.init_small(buf.as_mut_ptr() as usize, 1, class);
        s
    }

    #[test]
    fn remote_word_round_trips() {
        let w = RemoteWord::pack(tag::FULL, 1023, 1024, 777);
        assert_eq!((w.tag(), w.count(), w.head(), w.frozen()), (tag::FULL, 1023, 1024, 777));
        assert_eq!(w.with_tag(tag::OWNED).tag(), tag::OWNED);
        assert_eq!(w.with_frozen(5).frozen(), 5);
        assert_eq!(w.with_frozen(5).count(), 1023);
        assert!(RemoteWord::pack(tag::PARTIAL, 9, 1, 9).all_free());
    }

    #[test]
    fn extend_pop_push_and_splice_account_every_slot() {
        let mut buf = vec![0u64; PAGE_SIZE / 8];
        let class = 4; // 32-byte objects, 256 per page
        let s = span_over(&mut buf, class);
        assert_eq!(s.nelems, 256);
        let mut got = Vec::new();
        // SAFETY: this test holds the span.
        unsafe {
            loop {
                let p = s.pop_local();
                if p.is_null() {
                    if !s.extend() {
                        break;
                    }
                    continue;
                }
                got.push(p as usize);
            }
            assert!(s.locally_exhausted());
        }
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 256, "every slot handed out exactly once");
        assert_eq!(s.used.get(), 256);
        // Free half remotely, half locally.
        for (i, &p) in got.iter().enumerate() {
            let idx = s.slot_of(p).unwrap();
            // The allocator's free path does this before pushing.
            #[cfg(feature = "secure")]
            crate::secure::mark_free(&s, p as *mut u8, idx);
            // SAFETY: each slot is freed once.
            unsafe {
                if i % 2 == 0 {
                    assert!(!s.push_remote(p as *mut u8, idx), "owned spans are never claimed");
                } else {
                    assert!(s.push_local(p as *mut u8));
                }
            }
        }
        assert_eq!(RemoteWord(s.remote.load(Ordering::Relaxed)).count(), 128);
        assert_eq!(s.used.get(), 128);
        // Drain the local list, then splice the remote one.
        let mut again = Vec::new();
        // SAFETY: this test holds the span.
        unsafe {
            loop {
                let p = s.pop_local();
                if p.is_null() {
                    break;
                }
                again.push(p as usize);
            }
            assert!(s.splice_remote());
            loop {
                let p = s.pop_local();
                if p.is_null() {
                    break;
                }
                again.push(p as usize);
            }
        }
        again.sort();
        assert_eq!(again, got, "the same 256 slots come back");
        assert_eq!(s.used.get(), 256);
    }

    #[test]
    fn slot_of_rejects_interior_and_outside_addresses() {
        let mut buf = vec![0u64; PAGE_SIZE / 8];
        let s = span_over(&mut buf, 5); // 48-byte objects
        let base = s.base;
        assert_eq!(s.slot_of(base), Some(0));
        assert_eq!(s.slot_of(base + 48 * 7), Some(7));
        assert_eq!(s.slot_of(base + 8), None);
        assert_eq!(s.slot_of(base + 48 * s.nelems as usize), None);
        assert_eq!(s.slot_of(base.wrapping_sub(48)), None);
    }

    #[test]
    fn last_remote_free_of_a_partial_span_claims_it() {
        let mut buf = vec![0u64; PAGE_SIZE / 8];
        let s = span_over(&mut buf, 4);
        // SAFETY: the test holds the span.
        let (a, b) = unsafe {
            s.extend();
            (s.pop_local(), s.pop_local())
        };
        // Detach as central would: PARTIAL with frozen = used = 2.
        s.remote.store(RemoteWord(0).with_tag(tag::PARTIAL).with_frozen(2).0, Ordering::Relaxed);
        // SAFETY: each slot freed once.
        unsafe {
            assert!(!s.push_remote(a, s.slot_of(a as usize).unwrap()));
            assert!(s.push_remote(b, s.slot_of(b as usize).unwrap()), "second free empties the span");
        }
        let w = RemoteWord(s.remote.load(Ordering::Relaxed));
        assert_eq!((w.tag(), w.count()), (tag::CLAIMED, 2));
        assert!(w.all_free());
    }

    #[test]
    fn first_remote_free_of_a_full_span_claims_it() {
        let mut buf = vec![0u64; PAGE_SIZE / 8];
        let s = span_over(&mut buf, 4);
        // SAFETY: the test holds the span.
        let a = unsafe {
            s.extend();
            s.pop_local()
        };
        s.remote.store(RemoteWord(0).with_tag(tag::FULL).with_frozen(200).0, Ordering::Relaxed);
        // SAFETY: freed once.
        unsafe { assert!(s.push_remote(a, s.slot_of(a as usize).unwrap())) };
        assert_eq!(RemoteWord(s.remote.load(Ordering::Relaxed)).tag(), tag::CLAIMED);
    }
}
