//! Size classes: Go's 67 small-object classes, generated at compile time by the
//! rule of Go's `mksizeclasses.go`, plus the O(1) lookups built from them.
//!
//! Owns only constants. Called by every tier that turns a byte count into a
//! class (`mcache.rs`, `mcentral.rs`, `malloc.rs`) or a slot offset into a
//! slot index (`span.rs`). No concurrency: everything here is `const`.
//!
//! The rule (see `DESIGN.md` §2): step through sizes (stride 8 below 32, 16
//! up to 128, size/8 up to 2048, 256 above); for each size take the fewest
//! 8 KiB pages whose tail waste is at most 1/8 of the span; merge a size into
//! the previous class when the page count and object count are equal; finally
//! grow each class to the largest multiple of 128 that still fits the same
//! object count. `tests` compares the result with Go's published table.
//!
//! Invariants (checked by the tests): class sizes strictly increase and are
//! multiples of 8 (of 16 from 32 bytes on); `size_to_class(n)` is the smallest
//! class whose size is at least `n`; the reciprocal `DIV_MAGIC` gives the exact
//! slot index for every offset inside a span.

/// log2 of the page size.
pub const PAGE_SHIFT: usize = 13;
/// The page heap's unit: 8 KiB, as in Go.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Largest request served from a size class; larger ones take page runs.
pub const MAX_SMALL_SIZE: usize = 32 << 10;
/// Requests up to this size use the 8-byte-step lookup table.
const SMALL_SIZE_MAX: usize = 1024;
const SMALL_SIZE_DIV: usize = 8;
const LARGE_SIZE_DIV: usize = 128;

/// Generous bound on the number of classes, for the generator's scratch arrays.
const MAX_GENERATED: usize = 128;

struct Generated {
    count: usize,
    size: [usize; MAX_GENERATED],
    pages: [usize; MAX_GENERATED],
}

const fn generate() -> Generated {
    let mut g = Generated { count: 1, size: [0; MAX_GENERATED], pages: [0; MAX_GENERATED] };
    let mut align = 8;
    let mut size = align;
    while size <= MAX_SMALL_SIZE {
        if size.is_power_of_two() {
            if size >= 2048 {
                align = 256;
            } else if size >= 128 {
                align = size / 8;
            } else if size >= 32 {
                align = 16;
            }
        }
        // Fewest pages whose tail waste is at most 1/8 of the span.
        let mut span_bytes = PAGE_SIZE;
        while span_bytes % size > span_bytes / 8 {
            span_bytes += PAGE_SIZE;
        }
        let npages = span_bytes / PAGE_SIZE;
        let last = g.count - 1;
        if g.count > 1 && npages == g.pages[last] && span_bytes / size == span_bytes / g.size[last] {
            // Same span and same object count as the previous class: one
            // class of the larger size serves both.
            g.size[last] = size;
        } else {
            g.size[g.count] = size;
            g.pages[g.count] = npages;
            g.count += 1;
        }
        size += align;
    }
    // Grow each class to the largest multiple of 128 that fits the same count.
    let mut c = 1;
    while c < g.count {
        let span_bytes = g.pages[c] * PAGE_SIZE;
        let grown = (span_bytes / (span_bytes / g.size[c])) & !(LARGE_SIZE_DIV - 1);
        if grown > g.size[c] {
            g.size[c] = grown;
        }
        c += 1;
    }
    g
}

const GENERATED: Generated = generate();

/// Number of size classes, including the unused class 0 (68 for Go's rule).
pub const NUM_CLASSES: usize = GENERATED.count;

/// Object size of each class in bytes; `CLASS_SIZE[0] == 0`.
pub const CLASS_SIZE: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = GENERATED.size[c] as u32;
        c += 1;
    }
    t
};

/// Pages per span of each class.
pub const CLASS_PAGES: [u8; NUM_CLASSES] = {
    let mut t = [0u8; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = GENERATED.pages[c] as u8;
        c += 1;
    }
    t
};

/// Objects per span of each class.
pub const CLASS_OBJECTS: [u16; NUM_CLASSES] = {
    let mut t = [0u16; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = (GENERATED.pages[c] * PAGE_SIZE / GENERATED.size[c]) as u16;
        c += 1;
    }
    t
};

/// Per-class reciprocal: `(offset * DIV_MAGIC[c]) >> 32 == offset / size` for
/// every offset inside a span of class `c` (Go's `divMagic`).
pub const DIV_MAGIC: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        t[c] = u32::MAX / (GENERATED.size[c] as u32) + 1;
        c += 1;
    }
    t
};

const CLASS8_LEN: usize = SMALL_SIZE_MAX / SMALL_SIZE_DIV + 1;
const CLASS128_LEN: usize = (MAX_SMALL_SIZE - SMALL_SIZE_MAX) / LARGE_SIZE_DIV + 1;

const fn smallest_class_for(bytes: usize) -> u8 {
    let mut c = 1;
    while c < NUM_CLASSES {
        if GENERATED.size[c] >= bytes {
            return c as u8;
        }
        c += 1;
    }
    0
}

/// `SIZE_TO_CLASS8[(n + 7) / 8]` is the class of an `n`-byte request, `n <= 1024`.
const SIZE_TO_CLASS8: [u8; CLASS8_LEN] = {
    let mut t = [0u8; CLASS8_LEN];
    let mut i = 0;
    while i < CLASS8_LEN {
        t[i] = smallest_class_for(if i == 0 { 1 } else { i * SMALL_SIZE_DIV });
        i += 1;
    }
    t
};

/// `SIZE_TO_CLASS128[(n - 1024 + 127) / 128]` for `1024 < n <= 32768`.
const SIZE_TO_CLASS128: [u8; CLASS128_LEN] = {
    let mut t = [0u8; CLASS128_LEN];
    let mut i = 0;
    while i < CLASS128_LEN {
        t[i] = smallest_class_for(SMALL_SIZE_MAX + i * LARGE_SIZE_DIV);
        i += 1;
    }
    t
};

/// Alignments handled by size classes: 2^0 ..= 2^13 (the page size).
const ALIGN_ROWS: usize = PAGE_SHIFT + 1;

/// `ALIGNED_CLASS[log2(align)][c]`: the smallest class `>= c` whose size is a
/// multiple of `align` (spans start page-aligned, so every slot of such a class
/// is aligned). Every row has an answer: 8192, 16384, 24576 and 32768 are
/// classes, and the lookup is only used for `align <= PAGE_SIZE`.
const ALIGNED_CLASS: [[u8; NUM_CLASSES]; ALIGN_ROWS] = {
    let mut t = [[0u8; NUM_CLASSES]; ALIGN_ROWS];
    let mut row = 0;
    while row < ALIGN_ROWS {
        let align = 1usize << row;
        let mut c = 1;
        while c < NUM_CLASSES {
            let mut d = c;
            while d < NUM_CLASSES && GENERATED.size[d] % align != 0 {
                d += 1;
            }
            t[row][c] = if d < NUM_CLASSES { d as u8 } else { 0 };
            c += 1;
        }
        row += 1;
    }
    t
};

/// The class of a request of `size` bytes with alignment at most 8.
/// `size == 0` maps to the smallest class. Requires `size <= MAX_SMALL_SIZE`.
#[inline(always)]
pub fn size_to_class(size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL_SIZE);
    if size <= SMALL_SIZE_MAX {
        SIZE_TO_CLASS8[size.div_ceil(SMALL_SIZE_DIV)] as usize
    } else {
        SIZE_TO_CLASS128[(size - SMALL_SIZE_MAX).div_ceil(LARGE_SIZE_DIV)] as usize
    }
}

/// The class of a request of `size` bytes aligned to `align` (a power of two
/// no larger than the page). Requires `size <= MAX_SMALL_SIZE`.
#[inline]
pub fn aligned_size_to_class(size: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two() && align <= PAGE_SIZE);
    ALIGNED_CLASS[align.trailing_zeros() as usize][size_to_class(size)] as usize
}

/// Slot index of byte `offset` in a span of class `class`, by reciprocal
/// multiplication (no division). Exact for every offset inside the span.
#[inline(always)]
pub fn slot_index(offset: usize, class: usize) -> usize {
    ((offset as u64 * DIV_MAGIC[class] as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference table (Go's), parsed from `../shared/reference`.
    fn reference() -> Vec<(usize, usize, usize, usize, usize)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference/go-size-classes.tsv");
        let text = std::fs::read_to_string(path).expect("shared/reference/go-size-classes.tsv beside the repo");
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<usize> = l.split('\t').take(5).map(|x| x.trim().parse().unwrap()).collect();
                (f[0], f[1], f[2], f[3], f[4])
            })
            .collect()
    }

    #[test]
    fn generated_table_matches_go() {
        let rows = reference();
        assert_eq!(rows.len(), 67, "Go has 67 small size classes");
        assert_eq!(NUM_CLASSES, rows.len() + 1);
        for (class, bytes, span_bytes, pages, objects) in rows {
            assert_eq!(CLASS_SIZE[class] as usize, bytes, "size of class {class}");
            assert_eq!(CLASS_PAGES[class] as usize, pages, "pages of class {class}");
            assert_eq!(CLASS_PAGES[class] as usize * PAGE_SIZE, span_bytes, "span bytes of class {class}");
            assert_eq!(CLASS_OBJECTS[class] as usize, objects, "objects of class {class}");
        }
    }

    #[test]
    fn sizes_increase_and_are_aligned() {
        for c in 1..NUM_CLASSES {
            let s = CLASS_SIZE[c] as usize;
            assert!(s > CLASS_SIZE[c - 1] as usize);
            assert_eq!(s % 8, 0);
            if s >= 32 {
                assert_eq!(s % 16, 0, "class {c}");
            }
            // Tail waste at most 1/8 of the span (before the final growth,
            // which only reduces waste).
            let span = CLASS_PAGES[c] as usize * PAGE_SIZE;
            assert!(span % s <= span / 8, "class {c}");
        }
        assert_eq!(CLASS_SIZE[NUM_CLASSES - 1] as usize, MAX_SMALL_SIZE);
    }

    #[test]
    fn size_to_class_is_smallest_fit_for_every_size() {
        for size in 0..=MAX_SMALL_SIZE {
            let c = size_to_class(size);
            assert!((1..NUM_CLASSES).contains(&c), "size {size}");
            assert!(CLASS_SIZE[c] as usize >= size.max(1), "size {size}");
            assert!((CLASS_SIZE[c - 1] as usize) < size.max(1), "size {size} not smallest");
        }
    }

    #[test]
    fn aligned_class_is_smallest_aligned_fit() {
        for shift in 0..=PAGE_SHIFT {
            let align = 1usize << shift;
            for size in (0..=MAX_SMALL_SIZE).step_by(8).chain([1, 7, 9, 4095, 4097]) {
                let c = aligned_size_to_class(size, align);
                assert!(c >= 1, "size {size} align {align}");
                let s = CLASS_SIZE[c] as usize;
                assert!(s >= size && s % align == 0, "size {size} align {align} -> {s}");
                for (d, &t) in CLASS_SIZE.iter().enumerate().take(c).skip(1) {
                    let t = t as usize;
                    assert!(!(t >= size && t % align == 0), "class {d} fits size {size} align {align} better");
                }
            }
        }
    }

    #[test]
    fn slot_index_is_exact_for_every_offset_of_every_class() {
        for c in 1..NUM_CLASSES {
            let size = CLASS_SIZE[c] as usize;
            let span = CLASS_PAGES[c] as usize * PAGE_SIZE;
            for offset in 0..span {
                assert_eq!(slot_index(offset, c), offset / size, "class {c} offset {offset}");
            }
        }
    }
}
