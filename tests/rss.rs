//! Resident memory falls after a peak: with `GoMalloc` as the global allocator, allocate
//! about 1 GiB in mixed sizes (small objects of every class and large blocks), touching
//! every page, check that RSS grew by most of it, free everything, call
//! `gomalloc::collect()`, and check that RSS is back within 10 % + 8 MiB of the baseline
//! and that `stats().bytes_released` accounts for the freed memory.
//!
//! One test alone in its own binary (own process), so RSS is not disturbed by others.

use gomalloc::sizeclass::{CLASS_SIZE, NUM_CLASSES};
use gomalloc::{collect, stats, GoMalloc};
use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

const MIB: usize = 1 << 20;
const TOUCH_STRIDE: usize = 4096;

/// The kernel's page size, from the auxiliary vector (`AT_PAGESZ`), else 4096.
fn os_page_size() -> usize {
    const AT_PAGESZ: usize = 6;
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    let w = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * w)
        .map(|pair| {
            let key = usize::from_ne_bytes(pair[..w].try_into().expect("word"));
            let val = usize::from_ne_bytes(pair[w..].try_into().expect("word"));
            (key, val)
        })
        .find(|&(key, _)| key == AT_PAGESZ)
        .map_or(4096, |(_, val)| val)
}

/// Resident set size in bytes: second field of `/proc/self/statm` times the page size.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).expect("statm field 2").parse().expect("number");
    pages * os_page_size()
}

/// Writes every `TOUCH_STRIDE`-th byte and the last one, so each page becomes resident.
///
/// # Safety
/// `p..p+len` must be valid for writes.
unsafe fn touch(p: *mut u8, len: usize, val: u8) {
    let mut off = 0;
    while off < len {
        // SAFETY: off < len.
        unsafe { p.add(off).write(val) };
        off += TOUCH_STRIDE;
    }
    // SAFETY: len >= 1, so len - 1 is inside the block.
    unsafe { p.add(len - 1).write(val) };
}

#[test]
fn rss_returns_to_baseline_after_collect() {
    let page = os_page_size();
    // Reserve the bookkeeping up front so it is part of the baseline, not the peak.
    let mut small: Vec<(Layout, Vec<usize>)> = Vec::with_capacity(2 * NUM_CLASSES);
    let mut large: Vec<(usize, Layout)> = Vec::with_capacity(1024);
    let baseline = rss_bytes();
    let before = stats();

    // ~512 MiB of small objects: for every class its exact size and one just above the
    // previous class, ~4 MiB each (at most 100k objects per size).
    let mut small_bytes = 0usize;
    for c in 1..NUM_CLASSES {
        for size in [CLASS_SIZE[c] as usize, CLASS_SIZE[c - 1] as usize + 1] {
            let count = (4 * MIB / size).clamp(64, 100_000);
            let layout = Layout::from_size_align(size, 8).expect("layout");
            let mut ptrs = Vec::with_capacity(count);
            for i in 0..count {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null(), "alloc({layout:?}) failed");
                // SAFETY: `p` is a fresh block of `size` bytes; small objects are filled whole.
                unsafe { p.write_bytes((i % 251) as u8 + 1, size) };
                ptrs.push(p as usize);
            }
            small_bytes += count * size;
            small.push((layout, ptrs));
        }
    }

    // ~512 MiB of large blocks from 40 KiB to 16 MiB, every page touched.
    let mut large_bytes = 0usize;
    let mut size = 40 << 10;
    while large_bytes < 512 * MIB {
        let layout = Layout::from_size_align(size, if size % 3 == 0 { 64 << 10 } else { 16 }).expect("layout");
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "alloc({layout:?}) failed");
        // SAFETY: `p` is a fresh block of `size` bytes.
        unsafe { touch(p, size, 0xA5) };
        large.push((p as usize, layout));
        large_bytes += size;
        size = if size >= 16 * MIB { 40 << 10 } else { size * 3 / 2 + 4096 };
    }
    let total = small_bytes + large_bytes;

    let peak = rss_bytes();
    let at_peak = stats();
    println!("page size {page}; baseline RSS {:.1} MiB", baseline as f64 / MIB as f64);
    println!(
        "allocated {:.1} MiB ({:.1} MiB small in {} sizes, {:.1} MiB in {} large blocks)",
        total as f64 / MIB as f64,
        small_bytes as f64 / MIB as f64,
        small.len(),
        large_bytes as f64 / MIB as f64,
        large.len()
    );
    println!("peak RSS {:.1} MiB", peak as f64 / MIB as f64);
    assert!(total >= 900 * MIB, "the test should allocate about 1 GiB, got {total}");
    assert!(
        peak.saturating_sub(baseline) >= total / 10 * 9,
        "RSS grew by {} bytes only, after touching {total} bytes",
        peak.saturating_sub(baseline)
    );
    assert!(at_peak.bytes_in_use >= before.bytes_in_use + total, "bytes_in_use at the peak");

    for (layout, ptrs) in small.drain(..) {
        for p in ptrs {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { dealloc(p as *mut u8, layout) };
        }
    }
    for (p, layout) in large.drain(..) {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { dealloc(p as *mut u8, layout) };
    }
    collect();

    let after = rss_bytes();
    let s = stats();
    println!("RSS after free + collect {:.1} MiB", after as f64 / MIB as f64);
    println!("{s}");
    // Span records stay mapped for reuse; the secure build's are twice the
    // size (a 128-byte live-slot bitmap each), so it may keep that much more.
    let secure_records = if cfg!(feature = "secure") { s.bytes_metadata } else { 0 };
    let limit = baseline + baseline / 10 + 8 * MIB + secure_records;
    assert!(
        after <= limit,
        "RSS after collect is {after} bytes, more than baseline {baseline} + 10 % + 8 MiB = {limit}"
    );
    assert!(
        s.bytes_released >= total / 10 * 9,
        "bytes_released is {} after freeing {total} bytes and collect()",
        s.bytes_released
    );
    assert!(s.bytes_in_use <= before.bytes_in_use + MIB, "bytes_in_use did not fall back");
}
