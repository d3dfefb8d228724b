//! Page bitmaps: one bit per page of an arena, stored in the arena header.
//!
//! Used by `mheap.rs` under the heap lock (free-page and dirty-page maps); no
//! concurrency of its own. Runs are found by scanning whole words, so the
//! first-fit search costs one load per 64 pages.

/// A view of `nbits` bits at `words`.
#[derive(Clone, Copy, Debug)]
pub struct Bitmap {
    words: *mut u64,
    nbits: usize,
}

impl Bitmap {
    /// Views `nbits` bits stored at `words`.
    ///
    /// # Safety
    /// `words` points to at least `nbits.div_ceil(64)` writable words that stay
    /// valid, and only one thread uses the view at a time.
    pub unsafe fn new(words: *mut u64, nbits: usize) -> Bitmap {
        Bitmap { words, nbits }
    }

    /// Words needed for `nbits` bits.
    pub const fn words_for(nbits: usize) -> usize {
        nbits.div_ceil(64)
    }

    #[inline]
    fn word(&self, i: usize) -> u64 {
        debug_assert!(i < Self::words_for(self.nbits));
        // SAFETY: `i` is below the word count promised to `new`.
        unsafe { *self.words.add(i) }
    }

    #[inline]
    fn update_word(&self, i: usize, f: impl FnOnce(u64) -> u64) {
        debug_assert!(i < Self::words_for(self.nbits));
        // SAFETY: as in `word`; the single-user contract of `new` means no
        // other access to the word is in progress.
        unsafe { *self.words.add(i) = f(*self.words.add(i)) }
    }

    /// Bit `i`.
    pub fn get(&self, i: usize) -> bool {
        self.word(i / 64) >> (i % 64) & 1 == 1
    }

    /// Applies `f(word, mask)` to the words covering `[start, start + n)`.
    fn for_range(&self, start: usize, n: usize, mut f: impl FnMut(u64, u64) -> u64) {
        debug_assert!(start + n <= self.nbits);
        let mut i = start;
        let end = start + n;
        while i < end {
            let bit = i % 64;
            let take = (64 - bit).min(end - i);
            let mask = if take == 64 { u64::MAX } else { ((1u64 << take) - 1) << bit };
            self.update_word(i / 64, |w| f(w, mask));
            i += take;
        }
    }

    /// Sets bits `[start, start + n)`.
    pub fn set_range(&self, start: usize, n: usize) {
        self.for_range(start, n, |w, m| w | m);
    }

    /// Clears bits `[start, start + n)`.
    pub fn clear_range(&self, start: usize, n: usize) {
        self.for_range(start, n, |w, m| w & !m);
    }

    /// Number of set bits in `[start, start + n)`.
    pub fn count_range(&self, start: usize, n: usize) -> usize {
        let mut c = 0;
        self.for_range(start, n, |w, m| {
            c += (w & m).count_ones() as usize;
            w
        });
        c
    }

    /// True if every bit of `[start, start + n)` is set.
    pub fn all_set(&self, start: usize, n: usize) -> bool {
        self.count_range(start, n) == n
    }

    /// First index `>= from` whose bit in `self` (and in `also`, if given) is
    /// set and, with `want == false`, clear instead. `None` past the end.
    fn next_matching(&self, from: usize, also: Option<&Bitmap>, want: bool) -> Option<usize> {
        self.next_matching_before(from, self.nbits, also, want)
    }

    /// As `next_matching`, looking only below `limit`.
    fn next_matching_before(&self, from: usize, limit: usize, also: Option<&Bitmap>, want: bool) -> Option<usize> {
        let limit = limit.min(self.nbits);
        let mut i = from;
        while i < limit {
            let mut w = self.word(i / 64);
            if let Some(b) = also {
                w &= b.word(i / 64);
            }
            if !want {
                w = !w;
            }
            w &= u64::MAX << (i % 64);
            if w != 0 {
                let found = (i & !63) + w.trailing_zeros() as usize;
                return (found < limit).then_some(found);
            }
            i = (i & !63) + 64;
        }
        None
    }

    /// First set bit at or after `from`.
    pub fn next_set(&self, from: usize) -> Option<usize> {
        self.next_matching(from, None, true)
    }

    /// First clear bit at or after `from`, or `nbits`.
    pub fn next_clear(&self, from: usize) -> usize {
        self.next_matching(from, None, false).unwrap_or(self.nbits)
    }

    /// The first run of at least `n` set bits starting at an index `i` with
    /// `i + skew` a multiple of `align`, searching from `from`. (`skew` is
    /// the bitmap's first page number: alignment is of addresses, not of
    /// indexes.)
    pub fn find_run(&self, from: usize, n: usize, align: usize, skew: usize) -> Option<usize> {
        let mut i = from;
        loop {
            i = self.next_set(i)?;
            let aligned = aligned_index(i, align, skew);
            if aligned != i {
                i = aligned;
                continue;
            }
            if i + n > self.nbits {
                return None;
            }
            // Only the n bits needed are looked at, not the whole free run.
            match self.next_matching_before(i, i + n, None, false) {
                None => return Some(i),
                Some(taken) => i = taken,
            }
        }
    }

    /// The next maximal run of bits set in both `self` and `other`, at or
    /// after `from`, as `(start, end)`.
    pub fn next_run_in_both(&self, other: &Bitmap, from: usize) -> Option<(usize, usize)> {
        let start = self.next_matching(from, Some(other), true)?;
        let end = self.next_matching(start, Some(other), false).unwrap_or(self.nbits);
        Some((start, end))
    }
}

/// The first index at or after `i` whose page number (`index + skew`) is a
/// multiple of `align` (a power of two).
pub fn aligned_index(i: usize, align: usize, skew: usize) -> usize {
    ((i + skew).next_multiple_of(align)) - skew
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bits<R>(nbits: usize, f: impl FnOnce(Bitmap) -> R) -> R {
        let mut v = vec![0u64; Bitmap::words_for(nbits)];
        // SAFETY: the vector outlives the view and is used only through it.
        f(unsafe { Bitmap::new(v.as_mut_ptr(), nbits) })
    }

    #[test]
    fn ranges_and_runs_match_a_bool_model() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let nbits = 1000;
        with_bits(nbits, |b| {
            let mut model = vec![false; nbits];
            let mut rng = SmallRng::seed_from_u64(7);
            for _ in 0..5000 {
                let start = rng.gen_range(0..nbits);
                let n = rng.gen_range(0..=(nbits - start).min(150));
                if rng.gen_bool(0.5) {
                    b.set_range(start, n);
                    model[start..start + n].iter_mut().for_each(|x| *x = true);
                } else {
                    b.clear_range(start, n);
                    model[start..start + n].iter_mut().for_each(|x| *x = false);
                }
                let from = rng.gen_range(0..nbits);
                let want = rng.gen_range(1..40);
                let align = 1 << rng.gen_range(0..4);
                let skew = rng.gen_range(0..64);
                let expect = (from..nbits)
                    .filter(|i| (i + skew) % align == 0)
                    .find(|&i| i + want <= nbits && model[i..i + want].iter().all(|&x| x));
                assert_eq!(
                    b.find_run(from, want, align, skew),
                    expect,
                    "from {from} n {want} align {align} skew {skew}"
                );
                assert_eq!(b.count_range(start, n), model[start..start + n].iter().filter(|&&x| x).count());
                assert_eq!(b.next_set(from), (from..nbits).find(|&i| model[i]));
                assert_eq!(b.next_clear(from), (from..nbits).find(|&i| !model[i]).unwrap_or(nbits));
            }
        });
    }

    #[test]
    fn runs_in_both_maps() {
        with_bits(200, |a| {
            with_bits(200, |b| {
                a.set_range(10, 100);
                b.set_range(50, 100);
                assert_eq!(a.next_run_in_both(&b, 0), Some((50, 110)));
                assert_eq!(a.next_run_in_both(&b, 110), None);
                b.clear_range(60, 1);
                assert_eq!(a.next_run_in_both(&b, 0), Some((50, 60)));
                assert_eq!(a.next_run_in_both(&b, 60), Some((61, 110)));
            })
        });
    }
}
