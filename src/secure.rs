//! The `secure` build (cargo feature `secure`), in the spirit of mimalloc's
//! secure mode: what it adds to the small-object tiers, in one place.
//!
//! - **Encoded free lists.** The link word a free slot holds is stored as
//!   `rotl(next ^ key, key & 63) + key`, with a key per span derived from a
//!   per-process secret (`getrandom(2)` at the first span's creation) and the
//!   span's address. A link that decodes to an address outside its span (a
//!   use-after-free write, a forged pointer) stops the process when popped,
//!   instead of handing out arbitrary memory.
//! - **Full double-free detection.** Each span carries a bitmap of its live
//!   slots (`LiveBits`, 128 bytes in the span record): allocation sets the
//!   slot's bit, free clears it; a free that finds it clear is a double free
//!   (or a free of a never-allocated slot), wherever the first free went
//!   (local list, pending chain, another thread's remote list).
//! - **Writes past the end.** Every small block is padded by one word
//!   (`PAD`): the bytes between the requested size and the slot's last word
//!   are filled with `SLACK_BYTE`, and the last word holds a canary (a hash
//!   of the secret and the block's address, with the slack length in its low
//!   16 bits). `free` and `realloc` check both, so a write of even one byte
//!   past the requested size is reported, with its offset. `usable_size`
//!   reports the requested size, so a caller that writes up to it is fine.
//! - **Randomised slot order.** Fresh slots are threaded onto a span's free
//!   list in a random permutation (Fisher-Yates, seeded from the span key),
//!   so consecutive allocations are not adjacent.
//!
//! - **Guard pages after large blocks** (feature `secure-guards`, which
//!   implies `secure`; apart because of its cost). A large block takes one
//!   page more, made inaccessible (`mprotect`) while the block lives, so a
//!   write that runs off its page-rounded end faults at once. Large blocks
//!   are then not resized in place by `realloc`.
//!
//! Not done in this build: guard pages at the ends of small-object spans,
//! and canaries on large objects (over 32 KiB - `PAD`), so a write past a
//! large block's requested size but inside its last page is not detected.
//!
//! Called by `span.rs` (link encoding, also for `mcache.rs`'s pending chain
//! through `Span::store_link`; live bits; fresh slots) and `malloc.rs`
//! (padding at allocation, checks at free, realloc and `usable_size`). Calls
//! `globals.rs` for the secret and `os.rs` for diagnostics.
//!
//! # Concurrency
//! The per-span key is written once, while the heap lock is held and before
//! the span is published; link words follow the free lists' own protocol
//! (`span.rs`). The live bitmap is atomic: the owner sets bits while other
//! threads clear them (remote frees); a free happens after its allocation
//! through the program's own synchronisation (it has the pointer), so
//! relaxed read-modify-writes suffice, and of two racing frees of one block
//! exactly one finds the bit set. The secret is set once by a CAS from 0.
//! A large block's guard page is set by the allocating thread before the
//! block is returned and cleared by the freeing thread after its free won
//! the span's `owner` CAS (`large.rs`), so no other thread holds the span
//! meanwhile.
//!
//! Invariants: a slot's live bit is set iff it is handed out and not freed;
//! a live small block's last word is its canary and the bytes between the
//! requested size and the canary hold `SLACK_BYTE`.
//!
//! In the default build this module only defines `PAD` (0), so callers need
//! no `cfg` for the size arithmetic.

/// Bytes added to every small request for the canary word.
#[cfg(feature = "secure")]
pub const PAD: usize = 8;
/// Bytes added to every small request: none without the `secure` feature.
#[cfg(not(feature = "secure"))]
pub const PAD: usize = 0;

/// Bytes of guard page after each large block: one page with the
/// `secure-guards` feature, none otherwise.
#[cfg(feature = "secure-guards")]
pub const GUARD_BYTES: usize = crate::sizeclass::PAGE_SIZE;
/// Bytes of guard page after each large block: none without `secure-guards`.
#[cfg(not(feature = "secure-guards"))]
pub const GUARD_BYTES: usize = 0;

/// `usable_size` of the small block at `ptr`, slot `index` of `span`: the
/// slot's size (the secure build reports the requested size, and `None` for
/// a freed slot).
#[cfg(not(feature = "secure"))]
#[inline(always)]
pub fn usable_size(span: &crate::span::Span, _ptr: *const u8, _index: usize) -> Option<usize> {
    Some(span.elem_size as usize)
}

#[cfg(all(feature = "secure", gomalloc_loom))]
compile_error!("the loom models cover the default build; build them without the `secure` feature");

#[cfg(feature = "secure")]
pub use imp::*;

#[cfg(feature = "secure")]
mod imp {
    use crate::malloc::Allocator;
    use crate::mcache::MCache;
    use crate::os;
    use crate::sizeclass::{
        aligned_size_to_class, size_to_class, CLASS_OBJECTS, CLASS_SIZE, MAX_SMALL_SIZE, PAGE_SIZE,
    };
    use crate::span::{FreeObj, Span};
    use crate::sync::{AtomicU64, Ordering};
    use core::ptr;

    use super::PAD;

    /// The byte the slack between a block's requested size and its canary holds.
    pub const SLACK_BYTE: u8 = 0xa5;

    /// Most slots a span can have (class 1: 8-byte slots in one page).
    const MAX_SLOTS: usize = 1024;
    const _: () = {
        let mut c = 1;
        while c < CLASS_OBJECTS.len() {
            assert!(CLASS_OBJECTS[c] as usize <= MAX_SLOTS, "LiveBits too small for a class");
            c += 1;
        }
    };

    /// One bit per slot of a span: set while the slot is handed out.
    #[derive(Debug)]
    pub struct LiveBits([AtomicU64; MAX_SLOTS / 64]);

    impl LiveBits {
        /// No slot live.
        pub const fn new() -> LiveBits {
            LiveBits([const { AtomicU64::new(0) }; MAX_SLOTS / 64])
        }

        /// Sets slot `index`'s bit; returns whether it was already set.
        #[inline(always)]
        fn set(&self, index: usize) -> bool {
            let bit = 1u64 << (index % 64);
            self.0[index / 64].fetch_or(bit, Ordering::Relaxed) & bit != 0
        }

        /// Clears slot `index`'s bit; returns whether it was set.
        #[inline(always)]
        fn clear(&self, index: usize) -> bool {
            let bit = 1u64 << (index % 64);
            self.0[index / 64].fetch_and(!bit, Ordering::Relaxed) & bit != 0
        }

        /// Whether slot `index` is live.
        #[inline(always)]
        fn get(&self, index: usize) -> bool {
            self.0[index / 64].load(Ordering::Relaxed) & (1u64 << (index % 64)) != 0
        }
    }

    impl Default for LiveBits {
        fn default() -> Self {
            LiveBits::new()
        }
    }

    /// splitmix64's finaliser: a fast bijective mix, for the shuffle only.
    /// Not for anything derived from the secret that a program can read: it
    /// is invertible, so one output gives its input back.
    #[inline(always)]
    fn mix(mut x: u64) -> u64 {
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// SipHash with `C` compression and `D` finalisation rounds of the one
    /// word `m` (eight bytes, little-endian) under the 128-bit key
    /// `(k0, k1)`: a keyed pseudo-random function, so neither a span key nor
    /// a canary that a program reads (a block's first word, the word past
    /// its end) tells anything about the secret or about other outputs.
    /// Used as SipHash-1-3, the variant Rust's `HashMap` uses; the test
    /// checks SipHash-2-4 against the standard library's.
    #[inline(always)]
    pub(super) fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, m: u64) -> u64 {
        let mut v = [
            k0 ^ 0x736f_6d65_7073_6575,
            k1 ^ 0x646f_7261_6e64_6f6d,
            k0 ^ 0x6c79_6765_6e65_7261,
            k1 ^ 0x7465_6462_7974_6573,
        ];
        #[inline(always)]
        fn round(v: &mut [u64; 4]) {
            v[0] = v[0].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(13) ^ v[0];
            v[0] = v[0].rotate_left(32);
            v[2] = v[2].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(16) ^ v[2];
            v[0] = v[0].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(21) ^ v[0];
            v[2] = v[2].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(17) ^ v[2];
            v[2] = v[2].rotate_left(32);
        }
        // The message block, then the last block: the length (8) in its top byte.
        for block in [m, 8u64 << 56] {
            v[3] ^= block;
            for _ in 0..C {
                round(&mut v);
            }
            v[0] ^= block;
        }
        v[2] ^= 0xff;
        for _ in 0..D {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    /// Word `i` of the per-process secret (never 0): words 0 and 1 key the
    /// free-list keys, words 2 and 3 the canaries, so neither kind of value
    /// says anything about the other.
    #[inline(always)]
    fn secret(i: usize) -> u64 {
        let s = crate::globals::SECURE_SECRET[i].load(Ordering::Relaxed);
        if s != 0 {
            s
        } else {
            init_secret(i)
        }
    }

    /// Draws word `i` of the secret from `getrandom(2)` (falling back to the
    /// clock and an address if the kernel refuses) and installs it unless
    /// another thread was first.
    #[cold]
    #[inline(never)]
    fn init_secret(i: usize) -> u64 {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is a valid 8-byte out-buffer; getrandom allocates
        // nothing.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        let mut s = u64::from_ne_bytes(buf);
        if n != 8 {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is a valid out-pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            s = mix((ts.tv_sec as u64) << 32 ^ ts.tv_nsec as u64 ^ (&ts as *const _ as u64));
        }
        let s = s | 1;
        // Only the value matters: whichever CAS wins, every reader then loads
        // the same secret.
        match crate::globals::SECURE_SECRET[i].compare_exchange(0, s, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => s,
            Err(winner) => winner,
        }
    }

    /// The free-list key of the span at `base` (never 0).
    pub fn span_key(base: usize) -> u64 {
        siphash::<1, 3>(secret(0), secret(1), base as u64) | 1
    }

    /// The stored form of link `next`.
    #[inline(always)]
    pub fn encode(key: u64, next: *mut FreeObj) -> *mut FreeObj {
        ((next as u64 ^ key).rotate_left((key & 63) as u32).wrapping_add(key)) as usize as *mut FreeObj
    }

    /// The link stored as `word`.
    #[inline(always)]
    fn decode(key: u64, word: *mut FreeObj) -> usize {
        ((word as u64).wrapping_sub(key).rotate_right((key & 63) as u32) ^ key) as usize
    }

    /// Decodes the link stored in free slot `obj` of `span`, stopping the
    /// process if it does not name a slot of the span (or the list's end).
    ///
    /// # Safety
    /// `obj` is on the span's local free list (its first word is a link).
    #[inline(always)]
    pub unsafe fn load_link(span: &Span, obj: *mut FreeObj) -> *mut FreeObj {
        // SAFETY: the caller's contract.
        let word = unsafe { (*obj).next };
        let next = decode(span.key, word);
        if next != 0 && span.slot_of(next).is_none() {
            corrupted_list(span, obj as usize, next);
        }
        next as *mut FreeObj
    }

    #[cold]
    #[inline(never)]
    fn corrupted_list(span: &Span, obj: usize, next: usize) -> ! {
        os::fatal(format_args!(
            "free list corrupted: free block {obj:#x} (size class {}) links to {next:#x}, outside its span \
             (a write after free?)",
            span.class
        ))
    }

    /// Marks `obj`, just popped from `span`'s free list, live, and clears
    /// its link word: left there, the encoded link to the next block (whose
    /// address the next allocation reveals) would give the span's key away.
    ///
    /// # Safety
    /// `obj` is a slot of `span` just taken off its free list.
    #[inline(always)]
    pub unsafe fn on_alloc(span: &Span, obj: *mut u8) {
        let index = ((((obj as usize) - span.base) as u64 * span.div_magic as u64) >> 32) as usize;
        if span.live.set(index) {
            handed_out_twice(span, obj as usize);
        }
        // SAFETY: the slot is at least a word long, word-aligned, and now
        // the caller's.
        unsafe { obj.cast::<u64>().write(0) };
    }

    #[cold]
    #[inline(never)]
    fn handed_out_twice(span: &Span, obj: usize) -> ! {
        os::fatal(format_args!(
            "free list corrupted: block {obj:#x} (size class {}) is live and on the free list",
            span.class
        ))
    }

    /// The checks of a small free: the block is live (else a double free)
    /// and nothing was written past its requested size. Marks it free.
    #[inline(always)]
    pub fn check_free(span: &Span, ptr: *mut u8, index: usize) {
        mark_free(span, ptr, index);
        // SAFETY: a live block of the span, `elem_size` bytes long.
        unsafe { check_canary(span, ptr) };
    }

    /// Clears the live bit of `ptr`, slot `index` of `span`; stops the
    /// process if it was clear (a double free).
    #[inline(always)]
    pub fn mark_free(span: &Span, ptr: *mut u8, index: usize) {
        if !span.live.clear(index) {
            double_free(span, ptr as usize);
        }
    }

    #[cold]
    #[inline(never)]
    fn double_free(span: &Span, ptr: usize) -> ! {
        os::fatal(format_args!("double free of {ptr:#x} (size class {})", span.class))
    }

    /// Checks the canary and the slack of the live block at `ptr` of `span`;
    /// returns the block's requested size.
    ///
    /// # Safety
    /// `ptr` is a live slot of `span`.
    unsafe fn check_canary(span: &Span, ptr: *mut u8) -> usize {
        let slot = span.elem_size as usize;
        let end = slot - PAD;
        // SAFETY: the slot is `slot` bytes long and 8-aligned.
        let word = unsafe { ptr.add(end).cast::<u64>().read() };
        let delta = (word & 0xffff) as usize;
        if word & !0xffff != canary_tag(ptr) || delta > end {
            overflow(span, ptr as usize, None, end);
        }
        let size = end - delta;
        // SAFETY: `[size, end)` lies inside the slot.
        if unsafe { !slack_intact(ptr, size, end) } {
            // SAFETY: as above.
            let slack = unsafe { core::slice::from_raw_parts(ptr.add(size), delta) };
            let i = slack.iter().position(|&b| b != SLACK_BYTE).unwrap_or(0);
            overflow(span, ptr as usize, Some(size), size + i);
        }
        size
    }

    /// `SLACK_BYTE` in every byte of a word.
    const SLACK_WORD: u64 = u64::from_ne_bytes([SLACK_BYTE; 8]);

    /// Whether `[size, end)` of the block at `ptr` holds `SLACK_BYTE`
    /// throughout: the bytes up to the next word boundary one by one, then
    /// whole words (`ptr` and `end` are 8-aligned).
    ///
    /// # Safety
    /// `[ptr + size, ptr + end)` is inside the caller's block.
    #[inline(always)]
    unsafe fn slack_intact(ptr: *mut u8, size: usize, end: usize) -> bool {
        let mut off = size;
        let mut ok = true;
        // SAFETY: every access lies in `[size, end)` (caller); words are aligned.
        unsafe {
            while off < end && off % 8 != 0 {
                ok &= *ptr.add(off) == SLACK_BYTE;
                off += 1;
            }
            while off < end {
                ok &= ptr.add(off).cast::<u64>().read() == SLACK_WORD;
                off += 8;
            }
        }
        ok
    }

    #[cold]
    #[inline(never)]
    fn overflow(span: &Span, ptr: usize, size: Option<usize>, offset: usize) -> ! {
        match size {
            Some(size) => os::fatal(format_args!(
                "heap overflow: block {ptr:#x} of {size} bytes (size class {}) was written past its end, \
                 at offset {offset}",
                span.class
            )),
            None => os::fatal(format_args!(
                "heap overflow: block {ptr:#x} (size class {}) was written past its end: the canary at \
                 offset {offset} is overwritten",
                span.class
            )),
        }
    }

    #[inline(always)]
    fn canary_tag(ptr: *mut u8) -> u64 {
        siphash::<1, 3>(secret(2), secret(3), ptr as u64) & !0xffff
    }

    /// Writes the slack pattern and the canary of a block of `size` bytes at
    /// `ptr`, in a slot of `slot` bytes.
    ///
    /// # Safety
    /// `ptr` is a slot of `slot` bytes handed to the caller; `size + PAD <= slot`.
    #[inline(always)]
    unsafe fn write_canary(ptr: *mut u8, slot: usize, size: usize) {
        let end = slot - PAD;
        // SAFETY: every write lies in `[size, slot)`, inside the slot; it is
        // 8-aligned, so are the word writes.
        unsafe {
            let mut off = size;
            while off < end && off % 8 != 0 {
                *ptr.add(off) = SLACK_BYTE;
                off += 1;
            }
            while off < end {
                ptr.add(off).cast::<u64>().write(SLACK_WORD);
                off += 8;
            }
            ptr.add(end).cast::<u64>().write(canary_tag(ptr) | (end - size) as u64);
        }
    }

    /// `usable_size` of a small block: its requested size if live.
    pub fn usable_size(span: &Span, ptr: *const u8, index: usize) -> Option<usize> {
        if !span.live.get(index) {
            return None;
        }
        // SAFETY: a live slot of the span.
        Some(unsafe { check_canary(span, ptr as *mut u8) })
    }

    /// An in-place `realloc` of a small block to `new_size` (same class):
    /// checks the block as a free would, then rewrites its canary.
    ///
    /// # Safety
    /// `ptr` is slot `index` of `span`, given up by the caller for the
    /// resized block; `new_size + PAD` fits the slot.
    pub unsafe fn resize_small(span: &Span, ptr: *mut u8, index: usize, new_size: usize) {
        if !span.live.get(index) {
            os::fatal(format_args!("realloc of {:#x}, a freed block (size class {})", ptr as usize, span.class));
        }
        // SAFETY: a live slot of the span; `new_size` fits (caller).
        unsafe {
            check_canary(span, ptr);
            write_canary(ptr, span.elem_size as usize, new_size);
        }
    }

    /// Makes the last page of the large span `span` inaccessible, so a write
    /// running past the block faults there. If the kernel refuses (it limits
    /// the number of mappings a process has, and each guard splits one), the
    /// block simply has no guard.
    ///
    /// # Safety
    /// The caller holds the live large span, which has at least two pages,
    /// and hands out only `(pages - 1) * PAGE_SIZE` bytes of it.
    #[cfg(feature = "secure-guards")]
    pub unsafe fn guard_large(span: &Span) {
        let guard = span.base + (span.pages() - 1) * PAGE_SIZE;
        // SAFETY: the span's last page, which holds no data of the block.
        unsafe { os::protect(guard as *mut u8, PAGE_SIZE, false) };
    }

    /// Makes the guard page of the large span `span` accessible again, before
    /// its pages are reused.
    ///
    /// # Safety
    /// The caller holds the span, freed, with the guard `guard_large` set
    /// (or tried to set) at its current size.
    #[cfg(feature = "secure-guards")]
    pub unsafe fn unguard_large(span: &Span) {
        let guard = span.base + (span.pages() - 1) * PAGE_SIZE;
        // SAFETY: the span's last page, ours.
        unsafe { os::protect(guard as *mut u8, PAGE_SIZE, true) };
    }

    /// Threads slots `[start, end)` of `span` onto a list in a random order;
    /// returns the list's head.
    ///
    /// # Safety
    /// The caller holds the span; the slots were never handed out.
    pub unsafe fn thread_fresh(span: &Span, start: usize, end: usize) -> *mut FreeObj {
        let n = end - start;
        debug_assert!(n <= MAX_SLOTS);
        let mut order = [0u16; MAX_SLOTS];
        for (i, o) in order[..n].iter_mut().enumerate() {
            *o = (start + i) as u16;
        }
        let mut state = span.key ^ (start as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in (1..n).rev() {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let j = (mix(state) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut next: *mut FreeObj = ptr::null_mut();
        for &slot in order[..n].iter().rev() {
            let obj = span.slot_addr(slot as usize) as *mut FreeObj;
            // SAFETY: a fresh slot of the span, at least a word long.
            unsafe { (*obj).next = encode(span.key, next) };
            next = obj;
        }
        next
    }

    impl Allocator {
        /// `alloc` of the secure build: small requests take one more word,
        /// for the canary, and get the slack pattern; requests that no longer
        /// fit a size class with it go to the large path.
        ///
        /// # Safety
        /// As for `Allocator::alloc`.
        #[inline(always)]
        pub(crate) unsafe fn alloc_padded(&self, cache: *mut MCache, size: usize, align: usize) -> *mut u8 {
            if size <= MAX_SMALL_SIZE - PAD && align <= PAGE_SIZE {
                // A request of 0 gets one usable byte, so `usable_size` of a
                // live block is never 0 (0 means "not a block" in C).
                let size = size.max(1);
                let padded = size + PAD;
                // Keep the alignment the unpadded request would get (C's
                // malloc promises 16 bytes from 9 bytes on, except for
                // classes of an odd multiple of 8): padding must not lower it.
                let natural = 1usize << CLASS_SIZE[size_to_class(size)].trailing_zeros().min(4);
                let class = aligned_size_to_class(padded, align.max(natural));
                // SAFETY: forwarded caller contract; the new block is the
                // caller's, a slot of `CLASS_SIZE[class]` bytes.
                unsafe {
                    let p = self.alloc_class(cache, class);
                    if !p.is_null() {
                        write_canary(p, CLASS_SIZE[class] as usize, size);
                    }
                    p
                }
            } else {
                self.alloc_large(size, align, false)
            }
        }
    }
}

#[cfg(all(test, feature = "secure"))]
mod tests {
    use crate::malloc::Allocator;

    #[test]
    #[allow(deprecated)] // `SipHasher` is SipHash-2-4 with a stable definition
    fn siphash_matches_the_standard_librarys_siphash_2_4() {
        use std::hash::{Hasher, SipHasher};
        let cases = [(0, 0, 0), (1, 2, 3), (u64::MAX, 0x0123_4567_89ab_cdef, 0x7f00_dead_beef), (7, 7, u64::MAX)];
        for (k0, k1, m) in cases {
            let mut h = SipHasher::new_with_keys(k0, k1);
            h.write_u64(m);
            assert_eq!(super::imp::siphash::<2, 4>(k0, k1, m), h.finish(), "keys {k0:#x} {k1:#x}, word {m:#x}");
        }
    }

    #[test]
    fn an_allocated_block_does_not_hold_its_encoded_link() {
        let a = Box::new(Allocator::new(None));
        let c = a.new_cache();
        // SAFETY: `c` is this thread's cache; the blocks are read within size.
        unsafe {
            let blocks: Vec<*mut u8> = (0..64).map(|_| a.alloc(c, 48, 8)).collect();
            for &p in &blocks {
                assert_eq!(p.cast::<u64>().read(), 0, "block {p:?} starts with its old link word");
            }
            for &p in &blocks {
                a.dealloc(c, p, 48, 8);
            }
            // Reused blocks too: their links were written by the frees.
            let again: Vec<*mut u8> = (0..64).map(|_| a.alloc(c, 48, 8)).collect();
            for &p in &again {
                assert_eq!(p.cast::<u64>().read(), 0, "reused block {p:?} starts with its link word");
                a.dealloc(c, p, 48, 8);
            }
            a.caches().destroy(&a, c);
        }
    }
}
