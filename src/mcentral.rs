//! Central lists (Go's `mcentral`): one per size class, holding the spans no
//! thread cache owns — a partial list (spans with a free object somewhere)
//! and a full list (spans whose every object was out when their cache let
//! them go).
//!
//! Called by `mcache.rs` (a cache takes a span with `acquire` and gives one
//! back with `release`) and by `malloc.rs` (a remote free that claimed a span
//! hands it to `on_claimed`). Calls `mheap.rs` for fresh spans and to return
//! empty ones.
//!
//! # Concurrency
//! One lock per class (`lock`), cache-line padded by the owner of the array,
//! protects the two lists and the list fields of the spans on them. Holder
//! changes are CASes on `Span::remote` (see `span.rs`): a span on a list may
//! be claimed by a freeing thread at any time, so the lists never assume a
//! span's tag without checking it, and the claimer, not the list, unlinks
//! it. Lock order: this lock, then the heap lock.
//!
//! # Hysteresis
//! A span whose every object is free is kept on the partial list, up to
//! `KEEP_EMPTY` per class, instead of going back to the heap at once, so a
//! producer whose spans are emptied by a consumer takes them back from here
//! without the heap's lock and page-table writes. `release_empty` (called by
//! `collect`) returns them all.
//!
//! Invariants: a span is on the partial list iff its tag is `PARTIAL` or it is
//! `CLAIMED` by a thread waiting for this lock; likewise for the full list
//! and `FULL`. At most `KEEP_EMPTY` spans on the partial list have every
//! object free, except transiently, while a claimer waits for this lock.

use crate::mheap::MHeap;
use crate::sizeclass::CLASS_PAGES;
use crate::span::{list, tag, RemoteWord, Span};
use crate::sync::{maybe_const_fn, Locked, Ordering};
use core::ptr;

/// Completely free spans a class keeps for reuse.
const KEEP_EMPTY: usize = 2;

#[derive(Debug)]
struct Lists {
    partial: *mut Span,
    full: *mut Span,
    /// Spans on either list (statistics).
    len: usize,
    /// Spans on the partial list with every object free.
    empty: usize,
}

/// The central lists of one size class.
#[derive(Debug)]
pub struct MCentral {
    lists: Locked<Lists>,
}

// SAFETY: the span pointers name page-heap records, which belong to no
// thread; the lists move between threads only under the central lock.
unsafe impl Send for Lists {}

impl MCentral {
    maybe_const_fn! {
        /// Empty lists.
        pub fn new() -> MCentral {
            MCentral {
                lists: Locked::new(Lists { partial: ptr::null_mut(), full: ptr::null_mut(), len: 0, empty: 0 }),
            }
        }
    }

    /// Takes the lock (for `fork`).
    pub fn lock_for_fork(&self) {
        self.lists.lock_for_fork();
    }

    /// Releases the lock taken by `lock_for_fork`.
    pub fn unlock_after_fork(&self, child: bool) {
        self.lists.unlock_after_fork(child);
    }

    /// Spans on the lists.
    pub fn len(&self) -> usize {
        self.lists.with(|l| l.len)
    }

    /// True when no span is on the lists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completely free spans the class counts as kept (at most
    /// `KEEP_EMPTY`); for the loom models.
    #[doc(hidden)]
    pub fn kept_empty(&self) -> usize {
        self.lists.with(|l| l.empty)
    }

    /// A span of `class` for the cache at address `owner`, now owned by it
    /// (tag `OWNED`) and with at least one free object; null when out of
    /// memory. Prefers a partial span; otherwise takes a fresh one from the heap.
    pub fn acquire(&self, heap: &MHeap, class: usize, owner: usize) -> *mut Span {
        let span = self.lists.with(|l| {
            let mut s = l.partial;
            while !s.is_null() {
                // SAFETY: spans on the list are live; the lock is held.
                let span = unsafe { &*s };
                let w = RemoteWord(span.remote.load(Ordering::Relaxed));
                // A CLAIMED span belongs to a thread waiting for this lock.
                // Acquire pairs with the Release of the CAS that made the
                // span PARTIAL: that holder's writes to it are visible.
                if w.tag() == tag::PARTIAL
                    && span
                        .remote
                        .compare_exchange(w.0, w.with_tag(tag::OWNED).0, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    if w.all_free() {
                        l.empty -= 1;
                    }
                    // SAFETY: the lock is held and the span is on the list.
                    unsafe { unlink(l, s) };
                    return s;
                }
                // SAFETY: the lock is held.
                s = span.next.with(|p| unsafe { *p });
            }
            ptr::null_mut()
        });
        let span = if span.is_null() { heap.alloc_span(CLASS_PAGES[class] as usize, 1, class) } else { span };
        if !span.is_null() {
            // SAFETY: the span is live and now held by the caller.
            unsafe { (*span).owner.store(owner, Ordering::Relaxed) };
        }
        span
    }

    /// Takes back a span from the cache that owns it. An empty span goes back
    /// to the heap; otherwise it joins the partial or full list.
    ///
    /// # Safety
    /// The caller's cache owns `span` (tag `OWNED`) and gives it up.
    pub unsafe fn release(&self, heap: &MHeap, span: *mut Span) {
        // SAFETY: the caller owns the live span.
        let s = unsafe { &*span };
        // The owner's own later frees into this span must take the remote path.
        s.owner.store(0, Ordering::Relaxed);
        let used = s.used.get();
        // SAFETY: the caller holds the span.
        let exhausted = unsafe { s.locally_exhausted() };
        let empty = self.lists.with(|l| {
            // Acquire (here and on CAS failure) pairs with the pushers'
            // Release: if every object has come back, the span may go to the
            // heap, and the pushers' writes into it must happen before its
            // next user's. (Found by the `thread_exit` loom model.)
            let mut w = RemoteWord(s.remote.load(Ordering::Acquire));
            loop {
                if w.count() == used && l.empty >= KEEP_EMPTY {
                    // Every object is free: no thread can free into it again.
                    return true;
                }
                let (t, which) = if exhausted && w.count() == 0 && used != 0 {
                    (tag::FULL, list::FULL)
                } else {
                    (tag::PARTIAL, list::PARTIAL)
                };
                // Release pairs with the Acquire of whoever holds it next
                // (`acquire`, or a claiming `push_remote`): the local free
                // list, bump index and used count written by this cache.
                match s.remote.compare_exchange(
                    w.0,
                    w.with_tag(t).with_frozen(used).0,
                    Ordering::Release,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        if w.count() == used {
                            l.empty += 1;
                        }
                        // A claimer may already wait for the lock; it will
                        // find the span linked.
                        // SAFETY: the lock is held; the span is on no list.
                        unsafe { link(l, span, which) };
                        return false;
                    }
                    Err(cur) => w = RemoteWord(cur),
                }
            }
        });
        if empty {
            // SAFETY: no live object and no holder but us.
            unsafe { heap.free_span(span) };
        }
    }

    /// Finishes the move of a span that a remote free claimed (tag
    /// `CLAIMED`): unlinks it, then returns it to the heap if every object is
    /// free, or puts it on the partial list.
    ///
    /// # Safety
    /// The caller's `push_remote` on `span` returned true.
    pub unsafe fn on_claimed(&self, heap: &MHeap, span: *mut Span) {
        // SAFETY: the claimer holds the live span.
        let s = unsafe { &*span };
        let empty = self.lists.with(|l| {
            // SAFETY: the lock is held; a claimed span is still on the list
            // its previous tag named.
            unsafe { unlink(l, span) };
            // Acquire pairs with the pushers' Release: their objects are
            // linked before the span is reused or released.
            let mut w = RemoteWord(s.remote.load(Ordering::Acquire));
            loop {
                debug_assert_eq!(w.tag(), tag::CLAIMED);
                if w.all_free() && l.empty >= KEEP_EMPTY {
                    return true;
                }
                // Release pairs with the Acquire in `acquire`.
                match s.remote.compare_exchange(w.0, w.with_tag(tag::PARTIAL).0, Ordering::Release, Ordering::Acquire) {
                    Ok(_) => {
                        if w.all_free() {
                            l.empty += 1;
                        }
                        // SAFETY: the lock is held; the span is on no list.
                        unsafe { link(l, span, list::PARTIAL) };
                        return false;
                    }
                    Err(cur) => w = RemoteWord(cur),
                }
            }
        });
        if empty {
            // SAFETY: every object is free and this thread holds the span.
            unsafe { heap.free_span(span) };
        }
    }
}

impl MCentral {
    /// Returns every completely free span on the partial list to the heap.
    /// The spans are unlinked under the central lock and freed after it:
    /// freeing may start the scavenger thread, whose creation allocates
    /// (glibc's `pthread_create` calls `calloc`, gomalloc's own under the C
    /// library), and that allocation may need this very lock.
    pub fn release_empty(&self, heap: &MHeap) {
        let mut unlinked: *mut Span = ptr::null_mut();
        self.lists.with(|l| {
            let mut s = l.partial;
            while l.empty > 0 && !s.is_null() {
                // SAFETY: spans on the list are live; the lock is held.
                let span = unsafe { &*s };
                // SAFETY: the lock is held.
                let next = span.next.with(|p| unsafe { *p });
                let w = RemoteWord(span.remote.load(Ordering::Relaxed));
                // A span with every object free receives no more frees, so
                // no pusher races this CAS; Acquire pairs with the Release
                // that made it PARTIAL, as in `acquire`.
                if w.tag() == tag::PARTIAL
                    && w.all_free()
                    && span
                        .remote
                        .compare_exchange(w.0, w.with_tag(tag::CLAIMED).0, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    l.empty -= 1;
                    // SAFETY: the lock is held and the span is on the list;
                    // once unlinked, this thread holds it (tag `CLAIMED`) and
                    // its list fields are ours to chain it with.
                    unsafe {
                        unlink(l, s);
                        span.next.with_mut(|p| *p = unlinked);
                    }
                    unlinked = s;
                }
                s = next;
            }
        });
        while !unlinked.is_null() {
            // SAFETY: each span on the private chain was claimed and unlinked
            // above: it holds no live object and nothing else refers to it.
            unsafe {
                let next = (*unlinked).next.with(|p| *p);
                heap.free_span(unlinked);
                unlinked = next;
            }
        }
    }
}

/// Pushes `span` on list `which`.
///
/// # Safety
/// The central lock is held and `span` is live and on no list.
unsafe fn link(l: &mut Lists, span: *mut Span, which: u8) {
    let head = if which == list::FULL { &mut l.full } else { &mut l.partial };
    // SAFETY: the lock makes the list fields of `span` and `*head` ours.
    unsafe {
        let s = &*span;
        s.list.with_mut(|p| *p = which);
        s.prev.with_mut(|p| *p = ptr::null_mut());
        s.next.with_mut(|p| *p = *head);
        if !head.is_null() {
            (**head).prev.with_mut(|p| *p = span);
        }
    }
    *head = span;
    l.len += 1;
}

/// Removes `span` from the list it is on.
///
/// # Safety
/// The central lock is held and `span` is on one of `l`'s lists.
unsafe fn unlink(l: &mut Lists, span: *mut Span) {
    // SAFETY: the lock makes the list fields of `span` and its neighbours ours.
    unsafe {
        let s = &*span;
        let which = s.list.with(|p| *p);
        debug_assert_ne!(which, list::NONE);
        let prev = s.prev.with(|p| *p);
        let next = s.next.with(|p| *p);
        if prev.is_null() {
            if which == list::FULL {
                l.full = next;
            } else {
                l.partial = next;
            }
        } else {
            (*prev).next.with_mut(|p| *p = next);
        }
        if !next.is_null() {
            (*next).prev.with_mut(|p| *p = prev);
        }
        s.list.with_mut(|p| *p = list::NONE);
    }
    l.len -= 1;
}

impl Default for MCentral {
    fn default() -> Self {
        MCentral::new()
    }
}
