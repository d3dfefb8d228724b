//! The fuzz harness: a deterministic, seeded driver of random sequences of
//! `alloc`, `alloc_zeroed`, `realloc`, sized `dealloc` and unsized `free` (the C
//! contract) on the process-wide allocator, from several threads at once, against a
//! shadow model. Sizes are 0..=2 MiB, skewed small; alignments 1..=4096.
//!
//! - The model holds every live block's range `[ptr, ptr + size)`, shared by all
//!   threads: a new block must not overlap any live block (double issue, overlap),
//!   and a freed one must be in the model.
//! - Every block is filled with a word pattern derived from its address, size and a
//!   tag, verified in full before each free and over the preserved prefix after each
//!   `realloc`; `alloc_zeroed` must return zeros; `usable_size` must cover the size;
//!   the address must honour the alignment.
//! - Threads hand blocks to each other (a mailbox per thread), so frees and reallocs
//!   hit spans other threads own; some steps call `collect()`. A second round runs
//!   with the background scavenger's delay at 0, so it flushes the central lists and
//!   the large-object cache and purges pages every 10 ms while the threads run.
//!
//! Operation counts are fixed for CI (`OPS_PER_THREAD` per thread and round);
//! `GOMALLOC_FUZZ_OPS=<n>` sets another count (e.g. a few million for a long run),
//! `GOMALLOC_SEED=<n>` another seed. A failure prints the seed.

mod common;

use common::{check_pattern, fill_pattern, pattern_seed, random_align, random_size, seeded};
use gomalloc::malloc::Allocator;
use gomalloc::GoMalloc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

const THREADS: usize = 4;
const OPS_PER_THREAD: u64 = 100_000;
/// Live blocks a thread aims at: it frees more often above, allocates more below.
const TARGET_LIVE: usize = 300;
const MAX_SIZE: usize = 2 << 20;

/// A live block.
#[derive(Clone, Copy, Debug)]
struct Entry {
    ptr: usize,
    size: usize,
    align: usize,
    seed: u64,
}

/// The shadow model: live ranges by start address, shared by all threads.
struct Model {
    live: Mutex<BTreeMap<usize, usize>>,
}

impl Model {
    /// Records `[ptr, ptr + size)`, failing if it overlaps a live block.
    /// Zero-size blocks count as one byte: each has its own address.
    fn insert(&self, ptr: usize, size: usize, what: &str) {
        let end = ptr + size.max(1);
        let mut live = self.live.lock().unwrap();
        if let Some((&s, &e)) = live.range(..end).next_back() {
            assert!(e <= ptr, "{what}: block [{ptr:#x}, {end:#x}) overlaps live block [{s:#x}, {e:#x})");
        }
        live.insert(ptr, end);
    }

    /// Forgets the block at `ptr`, failing if it is not live.
    fn remove(&self, ptr: usize, what: &str) {
        let removed = self.live.lock().unwrap().remove(&ptr);
        assert!(removed.is_some(), "{what}: block {ptr:#x} is not live in the model");
    }
}

struct Shared {
    model: Model,
    mailboxes: Vec<Mutex<Vec<Entry>>>,
}

fn heap() -> &'static Allocator {
    gomalloc::global_allocator()
}

/// Fills a block with its pattern.
fn fill(e: &Entry) {
    // SAFETY: the block holds `size` bytes and this thread holds it.
    unsafe { fill_pattern(e.ptr as *mut u8, e.size, e.seed) };
}

/// Verifies the first `len` bytes of the block at `at` against `e`'s pattern.
fn verify(e: &Entry, at: usize, len: usize, what: &str) {
    // SAFETY: `at` holds at least `len` bytes and this thread holds the block.
    if let Err((off, want, got)) = unsafe { check_pattern(at as *const u8, len, e.seed) } {
        panic!("{what}: byte {off} of a {} B block (align {}) is {got:#04x}, expected {want:#04x}", e.size, e.align);
    }
}

/// Checks a fresh block: non-null, aligned, covered by `usable_size`, in the model.
fn admit(shared: &Shared, ptr: *mut u8, size: usize, align: usize, tag: u64, what: &str) -> Entry {
    assert!(!ptr.is_null(), "{what}: null for {size} B, align {align}");
    let p = ptr as usize;
    assert_eq!(p % align, 0, "{what}: {p:#x} is not aligned to {align}");
    let usable = heap().usable_size(ptr).unwrap_or(0);
    assert!(usable >= size, "{what}: usable size {usable} < {size}");
    shared.model.insert(p, size, what);
    Entry { ptr: p, size, align, seed: pattern_seed(p, size, tag) }
}

/// A size: 1 in 50 is 0, the others skewed small, up to 2 MiB.
fn size(rng: &mut SmallRng) -> usize {
    if rng.gen_range(0..50) == 0 {
        0
    } else {
        random_size(rng, 10, MAX_SIZE)
    }
}

/// Frees `e` (sized or unsized), after checking its pattern.
fn release(shared: &Shared, rng: &mut SmallRng, e: Entry) {
    verify(&e, e.ptr, e.size, "before free");
    shared.model.remove(e.ptr, "free");
    let cache = gomalloc::thread_cache();
    // SAFETY: a live block of the process-wide allocator, freed once, with the
    // size and alignment it was made with; the calling thread's cache.
    unsafe {
        if rng.gen_bool(0.5) {
            heap().dealloc(cache, e.ptr as *mut u8, e.size, e.align);
        } else {
            heap().free(cache, e.ptr as *mut u8);
        }
    }
}

/// One thread's run: `ops` random steps.
fn worker(shared: &Shared, me: usize, seed: u64, ops: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ (me as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut live: Vec<Entry> = Vec::with_capacity(2 * TARGET_LIVE);
    for step in 0..ops {
        let tag = seed ^ (me as u64) << 48 ^ step;
        let cache = gomalloc::thread_cache();
        let free_bias = if live.len() > TARGET_LIVE { 60 } else { 30 };
        match rng.gen_range(0..100) {
            // alloc / alloc_zeroed
            r if r >= free_bias + 25 || live.is_empty() => {
                let (sz, align) = (size(&mut rng), random_align(&mut rng, 10, 4096));
                let zeroed = rng.gen_bool(0.3);
                // SAFETY: the calling thread's cache; any size and power-of-two alignment.
                let p = unsafe {
                    if zeroed {
                        heap().alloc_zeroed(cache, sz, align)
                    } else {
                        heap().alloc(cache, sz, align)
                    }
                };
                let e = admit(shared, p, sz, align, tag, if zeroed { "alloc_zeroed" } else { "alloc" });
                if zeroed {
                    // SAFETY: the block holds `sz` bytes.
                    if let Some(off) = unsafe { common::first_byte_not(p, sz, 0) } {
                        panic!("alloc_zeroed({sz}, {align}): byte {off} is not zero");
                    }
                }
                fill(&e);
                live.push(e);
            }
            // realloc to a new size (not 0: that is free, a different contract)
            r if r >= free_bias => {
                let i = rng.gen_range(0..live.len());
                let old = live[i];
                let new_size = size(&mut rng).max(1);
                shared.model.remove(old.ptr, "realloc");
                // SAFETY: a live block of ours with its size and alignment; the
                // calling thread's cache.
                let p = unsafe { heap().realloc(cache, old.ptr as *mut u8, old.size, old.align, new_size) };
                let e = admit(shared, p, new_size, old.align, tag, "realloc");
                verify(&old, e.ptr, old.size.min(new_size), "after realloc");
                fill(&e);
                live[i] = e;
            }
            // hand a block to another thread
            r if r < 8 => {
                let e = live.swap_remove(rng.gen_range(0..live.len()));
                let to = (me + 1 + rng.gen_range(0..THREADS - 1)) % THREADS;
                shared.mailboxes[to].lock().unwrap().push(e);
            }
            // free
            _ => {
                let e = live.swap_remove(rng.gen_range(0..live.len()));
                release(shared, &mut rng, e);
            }
        }
        if step % 64 == 0 {
            live.append(&mut shared.mailboxes[me].lock().unwrap());
        }
        if step % 5000 == 4999 {
            gomalloc::collect();
        }
    }
    live.append(&mut shared.mailboxes[me].lock().unwrap());
    for e in live.drain(..) {
        release(shared, &mut rng, e);
    }
}

fn ops_per_thread() -> u64 {
    std::env::var("GOMALLOC_FUZZ_OPS").map_or(OPS_PER_THREAD, |v| {
        v.trim().parse().unwrap_or_else(|_| panic!("GOMALLOC_FUZZ_OPS={v:?} is not a number"))
    })
}

/// One round: `THREADS` workers, then everything the mailboxes still hold.
fn round(seed: u64, ops: u64) {
    let shared = Shared {
        model: Model { live: Mutex::new(BTreeMap::new()) },
        mailboxes: (0..THREADS).map(|_| Mutex::new(Vec::new())).collect(),
    };
    std::thread::scope(|s| {
        for me in 0..THREADS {
            let shared = &shared;
            s.spawn(move || worker(shared, me, seed, ops));
        }
    });
    let mut rng = SmallRng::seed_from_u64(seed);
    for mb in &shared.mailboxes {
        for e in mb.lock().unwrap().drain(..) {
            release(&shared, &mut rng, e);
        }
    }
    assert!(shared.model.live.lock().unwrap().is_empty(), "blocks left in the model");
}

#[test]
fn random_operations_against_a_shadow_model() {
    let (mut rng, _guard) = seeded("random_operations_against_a_shadow_model", 0xF022_0001);
    let seed: u64 = rng.gen();
    let ops = ops_per_thread();
    let before = gomalloc::stats();
    round(seed, ops);
    // Again with the background scavenger purging every 10 ms while the threads run.
    let delay = gomalloc::purge_delay_ms();
    gomalloc::set_purge_delay_ms(0);
    round(seed.wrapping_add(1), ops);
    gomalloc::set_purge_delay_ms(delay);
    gomalloc::collect();
    let after = gomalloc::stats();
    println!("{} ops in {THREADS} threads, two rounds; {after}", 2 * ops * THREADS as u64);
    assert!(
        after.bytes_in_use <= before.bytes_in_use + (1 << 20),
        "bytes in use grew from {} to {} though every block was freed",
        before.bytes_in_use,
        after.bytes_in_use
    );
}
