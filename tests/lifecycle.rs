//! Span lifecycle across the tiers, on `Allocator` values built by the test:
//! spans leave caches full, come back partial on the first remote free, and
//! return to the page heap when their last object is freed, whichever thread
//! frees it. The page heap's counters are the oracle: after everything is
//! freed and every cache is destroyed, no page may remain in use.

use gomalloc::malloc::Allocator;
use gomalloc::mcache::MCache;
use gomalloc::sizeclass::{size_to_class, CLASS_OBJECTS, CLASS_SIZE, NUM_CLASSES};
use std::sync::mpsc;

struct Ptr(*mut u8);
// SAFETY: the pointers are blocks handed from one test thread to another.
unsafe impl Send for Ptr {}

fn with_cache<R>(a: &Allocator, f: impl FnOnce(*mut MCache) -> R) -> R {
    let c = a.new_cache();
    assert!(!c.is_null());
    let r = f(c);
    // SAFETY: the cache was created above, is used only by this thread and
    // is not used again.
    unsafe { a.caches().destroy(a, c) };
    r
}

fn fill(p: *mut u8, size: usize, tag: u8) {
    // SAFETY: `p` is a live block of at least `size` bytes.
    unsafe { std::ptr::write_bytes(p, tag, size) };
}

fn check(p: *mut u8, size: usize, tag: u8) {
    // SAFETY: `p` is a live block of at least `size` bytes.
    let s = unsafe { std::slice::from_raw_parts(p, size) };
    assert!(s.iter().all(|&b| b == tag), "block {p:?} corrupted");
}

#[test]
fn remote_frees_return_every_page_to_the_heap() {
    let a = Box::new(Allocator::new(None));
    let sizes = [8, 24, 48, 256, 1000, 4096, 20_000, 32_768, 40_000];
    let (tx, rx) = mpsc::sync_channel::<(Ptr, usize)>(1024);
    std::thread::scope(|s| {
        let a = &*a;
        s.spawn(move || {
            with_cache(a, |c| {
                for i in 0..60_000usize {
                    let size = sizes[i % sizes.len()];
                    // SAFETY: `c` is this thread's cache of `a`.
                    let p = unsafe { a.alloc(c, size, 8) };
                    assert!(!p.is_null());
                    fill(p, size.min(64), (i % 251) as u8);
                    tx.send((Ptr(p), i)).unwrap();
                }
            })
        });
        s.spawn(move || {
            with_cache(a, |c| {
                for (p, i) in rx {
                    let size = sizes[i % sizes.len()];
                    check(p.0, size.min(64), (i % 251) as u8);
                    // SAFETY: a live block of `a` with this size, freed once.
                    unsafe { a.dealloc(c, p.0, size, 8) };
                }
            })
        });
    });
    for class in 1..NUM_CLASSES {
        assert!(a.central(class).len() <= 2, "class {class} keeps at most two free spans");
    }
    a.release_unused();
    let c = a.heap().counters();
    assert_eq!(c.pages_in_use, 0, "every span went back to the heap");
    for class in 1..NUM_CLASSES {
        assert!(a.central(class).is_empty(), "class {class} still holds spans");
    }
    let st = a.stats();
    assert_eq!((st.bytes_in_use, st.small_spans, st.large_objects), (0, 0, 0));
}

#[test]
fn full_span_returns_to_partial_on_first_remote_free_and_is_reused() {
    let a = Box::new(Allocator::new(None));
    // A request that fills a 1024-byte slot exactly (the secure build adds
    // a word to every small request for its canary).
    let size = 1024 - if cfg!(feature = "secure") { 8 } else { 0 };
    let class = size_to_class(1024);
    let per_span = CLASS_OBJECTS[class] as usize;
    let producer = a.new_cache();
    let freer = a.new_cache();
    // SAFETY: each cache is used by this thread only, as its own; every block
    // is freed once.
    unsafe {
        let first: Vec<*mut u8> = (0..per_span).map(|_| a.alloc(producer, size, 8)).collect();
        let span = a.heap().span_of(first[0] as usize);
        assert!(first.iter().all(|&p| a.heap().span_of(p as usize) == span), "one span");
        assert!(a.central(class).is_empty());
        // The next allocation exhausts the span: it goes to the full list.
        let extra = a.alloc(producer, size, 8);
        assert_ne!(a.heap().span_of(extra as usize), span);
        assert_eq!(a.central(class).len(), 1);
        // A free from a non-owner: the span moves to the partial list and a
        // third cache reuses exactly that slot.
        a.dealloc(freer, first[3], size, 8);
        // The free waits in the freer's pending chain until published.
        (*freer).publish_pending(&a);
        assert_eq!(a.central(class).len(), 1);
        let third = a.new_cache();
        let again = a.alloc(third, size, 8);
        assert_eq!(again, first[3], "the partial span's free slot is reused");
        assert!(a.central(class).is_empty(), "the span now belongs to the third cache");
        // Everything freed by a cache that owns none of it: the spans
        // still owned by caches stay until their caches go.
        for &p in &first[..3] {
            a.dealloc(freer, p, size, 8);
        }
        for &p in &first[4..] {
            a.dealloc(freer, p, size, 8);
        }
        a.dealloc(freer, extra, size, 8);
        a.dealloc(freer, again, size, 8);
        for c in [producer, freer, third] {
            a.caches().destroy(&a, c);
        }
    }
    a.release_unused();
    assert_eq!(a.heap().counters().pages_in_use, 0);
}

#[test]
fn every_class_and_alignment_round_trips_through_all_tiers() {
    let a = Box::new(Allocator::new(None));
    with_cache(&a, |c| {
        let mut live = Vec::new();
        for (class, &size) in CLASS_SIZE.iter().enumerate().skip(1) {
            let size = size as usize;
            for shift in [0, 3, 4, 6, 12, 13, 14, 16] {
                let align = 1usize << shift;
                // SAFETY: `c` is this thread's cache of `a`.
                let p = unsafe { a.alloc(c, size, align) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                assert!(a.usable_size(p).unwrap() >= size);
                fill(p, size, class as u8);
                live.push((p, size, align, class as u8));
            }
        }
        for &(p, size, align, tag) in &live {
            check(p, size, tag);
            // SAFETY: freed once with its layout.
            unsafe { a.dealloc(c, p, size, align) };
        }
    });
    a.release_unused();
    assert_eq!(a.heap().counters().pages_in_use, 0);
}

/// Alignments beyond the 64 MiB an arena is aligned to are alignments of
/// the address, not of the page index in the arena (up to `MAX_ALIGN`;
/// above it, allocation fails). Each block is written and checked, and
/// freed blocks' pages come back.
#[test]
fn alignments_beyond_an_arena_align_the_address() {
    use gomalloc::large::MAX_ALIGN;
    let a = Box::new(Allocator::new(None));
    with_cache(&a, |c| {
        let mut live = Vec::new();
        for shift in 26..=31 {
            for (k, size) in [64usize, 100 << 10, 3 << 20].into_iter().enumerate() {
                let align = 1usize << shift;
                // SAFETY: `c` is this thread's cache of `a`.
                let p = unsafe { a.alloc(c, size, align) };
                assert!(!p.is_null(), "align 2^{shift} size {size}");
                assert_eq!(p as usize % align, 0, "align 2^{shift} size {size}: {p:?}");
                let tag = (shift * 3 + k) as u8;
                fill(p, size, tag);
                live.push((p, size, align, tag));
            }
        }
        for &(p, size, align, tag) in &live {
            check(p, size, tag);
            // SAFETY: freed once with its layout.
            unsafe { a.dealloc(c, p, size, align) };
        }
        // SAFETY: as above.
        assert!(unsafe { a.alloc(c, 64, MAX_ALIGN * 2) }.is_null(), "an alignment above MAX_ALIGN must fail");
    });
    a.release_unused();
    assert_eq!(a.heap().counters().pages_in_use, 0);
}

/// Requests no machine could back fail at once: beyond the address space
/// (the arena-size search used to take 2^27 steps under the heap lock for
/// `isize::MAX` bytes), and, under the kernel's default overcommit
/// heuristic, beyond RAM plus swap, as glibc's do (arenas are reserved
/// without swap accounting, so a terabyte request succeeded and wrote a
/// gigabyte of page table). Nothing is mapped for either.
#[test]
fn requests_no_machine_could_back_fail() {
    let a = Box::new(Allocator::new(None));
    let mapped = a.heap().counters().mapped_bytes;
    with_cache(&a, |c| {
        for size in [isize::MAX as usize - (1 << 20), 1 << 50, 1 << 47] {
            // SAFETY: `c` is this thread's cache of `a`.
            assert!(unsafe { a.alloc(c, size, 8) }.is_null(), "{size} bytes");
        }
        let policy = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
        if policy.trim() != "0" {
            eprintln!(
                "overcommit policy {:?}, not the heuristic: the RAM-plus-swap case is not checked",
                policy.trim()
            );
            return;
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib = |key: &str| -> usize {
            let line = meminfo.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap()
        };
        let backable = (kib("MemTotal:") + kib("SwapTotal:")) << 10;
        let size = (2 * backable).next_power_of_two();
        // SAFETY: as above.
        assert!(unsafe { a.alloc(c, size, 8) }.is_null(), "{size} bytes with {backable} of RAM and swap");
    });
    assert_eq!(a.heap().counters().mapped_bytes, mapped, "a failed request mapped an arena");
}

/// A loop of aligned allocations and frees reuses its address space: freed
/// runs parked in the large-object cache are in use to the page heap, and an
/// aligned request takes none of them, so each round once mapped a new
/// aligned run (4 GiB of address space in 20 000 rounds at 2 MiB, 1 GiB per
/// round at 1 GiB).
#[test]
fn aligned_alloc_free_loop_does_not_grow_the_heap() {
    let a = Box::new(Allocator::new(None));
    with_cache(&a, |c| {
        for (shift, rounds) in [(21, 5000), (26, 300), (30, 40)] {
            let align = 1usize << shift;
            for i in 0..rounds {
                // SAFETY: `c` is this thread's cache of `a`; freed once.
                unsafe {
                    let p = a.alloc(c, 100, align);
                    assert!(!p.is_null() && p as usize % align == 0, "align 2^{shift} round {i}");
                    fill(p, 100, 7);
                    a.dealloc(c, p, 100, align);
                }
            }
            let mapped = a.heap().counters().mapped_bytes;
            // A round needs one aligned page: the heap may hold a few arenas
            // of the alignment's size, never one per round.
            assert!(mapped <= 4 * align + (256 << 20), "align 2^{shift}: {} MiB mapped", mapped >> 20);
        }
    });
}

/// Not with `secure-guards`, whose large blocks end in a guard page and are
/// not resized in place.
#[cfg(not(feature = "secure-guards"))]
#[test]
fn large_realloc_grows_in_place_when_the_next_pages_are_free() {
    let a = Box::new(Allocator::new(None));
    with_cache(&a, |c| {
        // SAFETY: `c` is this thread's cache; blocks are used within their sizes.
        unsafe {
            let p = a.alloc(c, 100_000, 8);
            fill(p, 100_000, 7);
            let q = a.realloc(c, p, 100_000, 8, 1_000_000);
            assert_eq!(p, q, "the pages after a lone large block are free");
            check(q, 100_000, 7);
            let blocker = a.alloc(c, 50_000, 8);
            let r = a.realloc(c, q, 1_000_000, 8, 3_000_000);
            check(r, 100_000, 7);
            let s = a.realloc(c, r, 3_000_000, 8, 40_000);
            assert_eq!(r, s, "shrinking stays in place");
            assert_eq!(a.usable_size(s), Some(40_960));
            let t = a.realloc(c, s, 40_000, 8, 100);
            assert_ne!(t, s, "shrinking to a small size moves to a size class");
            check(t, 100, 7);
            a.dealloc(c, t, 100, 8);
            a.dealloc(c, blocker, 50_000, 8);
        }
    });
    a.release_unused();
    assert_eq!(a.heap().counters().pages_in_use, 0);
}

#[test]
fn alloc_zeroed_is_zero_even_on_reused_memory() {
    let a = Box::new(Allocator::new(None));
    with_cache(&a, |c| {
        for size in [16, 3000, 32_768, 70_000, 5 << 20] {
            for _ in 0..3 {
                // SAFETY: `c` is this thread's cache; blocks used within size.
                unsafe {
                    let p = a.alloc_zeroed(c, size, 8);
                    let s = std::slice::from_raw_parts(p, size);
                    assert!(s.iter().all(|&b| b == 0), "size {size}");
                    std::ptr::write_bytes(p, 0xEE, size);
                    a.dealloc(c, p, size, 8);
                }
            }
        }
    });
}

#[test]
fn foreign_and_interior_addresses_are_not_ours() {
    let a = Box::new(Allocator::new(None));
    with_cache(&a, |c| {
        // SAFETY: `c` is this thread's cache.
        let p = unsafe { a.alloc(c, 100, 8) };
        let on_stack = 0u64;
        assert!(a.usable_size(&on_stack as *const u64 as *const u8).is_none());
        assert!(!a.owns_address(&on_stack as *const u64 as *const u8));
        assert!(a.owns_address(p));
        // SAFETY: pointer arithmetic inside the block (not dereferenced).
        assert!(a.usable_size(unsafe { p.add(8) }).is_none(), "interior pointer");
        // SAFETY: freed once.
        unsafe { a.dealloc(c, p, 100, 8) };
    });
}

#[test]
fn pages_the_kernel_refuses_to_release_stay_dirty() {
    // `madvise(MADV_DONTNEED)` fails on locked pages, which then keep their
    // contents: if the heap counted them clean, `alloc_zeroed` would skip
    // clearing them and hand out the old bytes.
    let a = Box::new(Allocator::new(None));
    let n = 4 << 20;
    with_cache(&a, |c| {
        // SAFETY: `c` is this thread's cache; blocks are used within their
        // sizes; the locked range is the block's own.
        unsafe {
            let p = a.alloc(c, n, 8);
            assert_eq!(libc::mlock(p.cast(), n), 0, "mlock of 4 MiB: {}", std::io::Error::last_os_error());
            fill(p, n, 0xAA);
            a.dealloc(c, p, n, 8);
            let purges = a.heap().counters().purges;
            a.release_unused();
            let q = a.alloc_zeroed(c, n, 8);
            assert_eq!(q, p, "the same pages come back");
            check(q, n, 0);
            assert_eq!(a.heap().counters().purges, purges, "a refused release is not counted as a purge");
            libc::munlock(q.cast(), n);
            a.dealloc(c, q, n, 8);
        }
    });
}

/// Not with `secure-guards`, whose large blocks are not resized in place.
#[test]
#[cfg(not(feature = "secure-guards"))]
fn shrinking_in_place_applies_the_purge_policy() {
    // The tail a shrinking `realloc` frees is subject to the same policy as
    // a freed span: this heap has no background thread, so at most the
    // synchronous policy's 16 MiB of free dirty pages may remain.
    let a = Box::new(Allocator::new(None));
    let big = 256 << 20;
    with_cache(&a, |c| {
        // SAFETY: `c` is this thread's cache; blocks are used within their sizes.
        unsafe {
            let p = a.alloc(c, big, 8);
            fill(p, big, 1);
            let q = a.realloc(c, p, big, 8, 64 << 10);
            assert_eq!(p, q, "shrinking stays in place");
            let dirty_mib = (a.heap().counters().dirty_free_pages * 8192) >> 20;
            assert!(dirty_mib <= 16, "{dirty_mib} MiB of free dirty pages kept after the shrink");
            a.dealloc(c, q, 64 << 10, 8);
        }
    });
}

const MIB: usize = 1 << 20;

#[test]
fn a_locked_free_run_does_not_stop_other_releases() {
    // A run the kernel refuses to release is marked and skipped: trim and
    // the synchronous policy go on releasing everything else (they used to
    // stop at the first refusal, which then came first on every call).
    let a = Box::new(Allocator::new(None));
    with_cache(&a, |c| {
        // SAFETY: `c` is this thread's cache; blocks are used within their
        // sizes; the locked range is the block's own.
        unsafe {
            let locked = a.alloc(c, 2 * MIB, 8);
            assert_eq!(libc::mlock(locked.cast(), 2 * MIB), 0, "mlock: {}", std::io::Error::last_os_error());
            fill(locked, 2 * MIB, 1);
            let separator = a.alloc(c, 64 << 10, 8);
            a.dealloc(c, locked, 2 * MIB, 8);
            let mut peak = 0;
            for _ in 0..10 {
                let blocks: Vec<*mut u8> = (0..16).map(|_| a.alloc(c, 4 * MIB, 8)).collect();
                for &b in &blocks {
                    fill(b, 4 * MIB, 2);
                }
                for &b in &blocks {
                    a.dealloc(c, b, 4 * MIB, 8);
                }
                peak = peak.max(a.heap().counters().dirty_free_pages);
            }
            assert!(peak * 8192 <= 20 * MIB, "the policy keeps 16 MiB; {} MiB stayed dirty", peak * 8192 / MIB);
            a.release_unused();
            let k = a.heap().counters();
            assert_eq!(k.dirty_free_pages, k.refused_free_pages, "trim released all but the refused run: {k:?}");
            // The locked block's pages, and with `secure-guards` its guard page.
            assert!(k.refused_free_pages * 8192 <= 2 * MIB + 8192, "{k:?}");
            libc::munlock(locked.cast(), 2 * MIB);
            a.dealloc(c, separator, 64 << 10, 8);
        }
    });
}

#[test]
fn page_counters_stay_consistent_with_locked_memory() {
    // A random walk of large allocations (zeroed or not), frees, in-place
    // resizes, mlock/munlock of parts of blocks (some freed while locked),
    // scavenges and trims. After every step the page counters must add up,
    // and every zeroed allocation must read as zero.
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let rounds = std::env::var("GOMALLOC_MODEL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4u64);
    for round in 0..rounds {
        let mut rng = SmallRng::seed_from_u64(0x10CC_ED00 + round);
        let a = Box::new(Allocator::new(None));
        let mut locked: Vec<(usize, usize)> = Vec::new();
        with_cache(&a, |c| {
            let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
            for step in 0..1500 {
                let op = rng.gen_range(0..100);
                // SAFETY: `c` is this thread's cache; every block is used
                // within its current size and freed once; locked ranges lie
                // inside live blocks when locked.
                unsafe {
                    if op < 35 && live.len() < 60 {
                        let size = rng.gen_range(33_000..6 * MIB);
                        let zeroed = rng.gen_bool(0.5);
                        let p = if zeroed { a.alloc_zeroed(c, size, 8) } else { a.alloc(c, size, 8) };
                        assert!(!p.is_null());
                        if zeroed {
                            let s = std::slice::from_raw_parts(p, size);
                            assert!(
                                s.iter().all(|&b| b == 0),
                                "round {round} step {step}: alloc_zeroed({size}) not zero"
                            );
                        }
                        let tag = rng.gen::<u8>() | 1;
                        fill(p, size, tag);
                        if rng.gen_bool(0.15) {
                            let len = size.min(rng.gen_range(8192..MIB));
                            if libc::mlock(p.cast(), len) == 0 {
                                locked.push((p as usize, len));
                            }
                        }
                        live.push((p, size, tag));
                    } else if op < 65 && !live.is_empty() {
                        let (p, size, tag) = live.swap_remove(rng.gen_range(0..live.len()));
                        assert_eq!((*p, *p.add(size - 1)), (tag, tag));
                        if rng.gen_bool(0.3) {
                            locked.retain(|&(q, len)| {
                                let inside = (p as usize..p as usize + size).contains(&q);
                                if inside {
                                    libc::munlock(q as *mut libc::c_void, len);
                                }
                                !inside
                            });
                        }
                        a.dealloc(c, p, size, 8);
                    } else if op < 85 && !live.is_empty() {
                        let i = rng.gen_range(0..live.len());
                        let (p, size, tag) = live[i];
                        let new = if rng.gen_bool(0.5) {
                            rng.gen_range(33_000..size.max(33_001))
                        } else {
                            rng.gen_range(size..size + 2 * MIB)
                        };
                        let q = a.realloc(c, p, size, 8, new);
                        assert!(!q.is_null());
                        assert_eq!((*q, *q.add(new.min(size) - 1)), (tag, tag));
                        fill(q, new, tag);
                        live[i] = (q, new, tag);
                    } else if op < 95 {
                        a.heap().scavenge(rng.gen_range(0..32) * MIB);
                    } else {
                        a.release_unused();
                    }
                }
                let k = a.heap().counters();
                let arena_pages = (k.mapped_bytes - k.header_bytes) / 8192;
                assert_eq!(k.free_pages + k.pages_in_use, arena_pages, "round {round} step {step}: {k:?}");
                assert!(k.refused_free_pages <= k.dirty_free_pages, "round {round} step {step}: {k:?}");
                assert!(k.dirty_free_pages <= k.free_pages, "round {round} step {step}: {k:?}");
            }
            for (p, size, _) in live {
                // SAFETY: the live blocks, each freed once.
                unsafe { a.dealloc(c, p, size, 8) };
            }
        });
        for (q, len) in locked {
            // SAFETY: unlocking a range of this process's own mapping.
            unsafe { libc::munlock(q as *mut libc::c_void, len) };
        }
    }
}
