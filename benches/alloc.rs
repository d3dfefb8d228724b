//! Same-run comparison of `gomalloc::GoMalloc`, `mimalloc::MiMalloc` and
//! `std::alloc::System`.
//!
//! None of the three is installed as the global allocator: every benchmark is
//! a generic function over `A: GlobalAlloc` that calls `alloc`, `dealloc` and
//! `realloc` through the trait, so all three run the same code in the same
//! process. Criterion's own bookkeeping (and the channels of the
//! producer/consumer case) use the default global allocator, which is the
//! same for all three.
//!
//! Each case is one criterion group with the allocators as its functions, so
//! the IDs read `pairs/64/gomalloc`, `mixed/window/mimalloc`, and so on. See
//! `benches/README.md` for what each case measures and `benches/ratios.py`
//! for the summary table.
//!
//! Run: `cargo bench --bench alloc` (about 3–4 minutes on 2 cores), or a subset
//! with a filter, e.g. `cargo bench --bench alloc -- pairs/64/`.

use std::alloc::{handle_alloc_error, GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use gomalloc::GoMalloc;
use mimalloc::MiMalloc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Alignment of every request: what `Box<u64>`/`Vec<u64>` would ask for.
const ALIGN: usize = 8;
/// Sizes of the alloc+free pair cases.
const PAIR_SIZES: [usize; 14] =
    [8, 16, 32, 64, 128, 256, 512, 1 << 10, 4 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10, 1 << 20];
/// Length of the pre-generated size (and slot) sequences; a power of two.
const SEQ_LEN: usize = 1 << 16;
/// Live blocks in the sliding window of the mixed case; a power of two.
const WINDOW: usize = 1 << 10;
/// Allocations per batch in the batch cases.
const BATCH_N: usize = 10_000;
/// Objects per channel message in the producer/consumer cases.
const PC_CHUNK: usize = 256;
/// Seed of every pre-generated sequence.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("size fits a Layout")
}

/// Allocates `l` from `a` and writes one byte into the block, so the
/// allocation is really used; aborts (as `Box` would) if `a` returns null.
#[inline(always)]
fn alloc_touch<A: GlobalAlloc>(a: &A, l: Layout) -> NonNull<u8> {
    // SAFETY: every layout used in this file has a non-zero size.
    let p = unsafe { a.alloc(l) };
    let Some(p) = NonNull::new(p) else { handle_alloc_error(l) };
    // SAFETY: `p` points at a fresh block of `l.size() >= 1` bytes.
    unsafe { p.as_ptr().write(1) };
    black_box(p)
}

/// Frees a block that `alloc_touch(a, l)` returned.
#[inline(always)]
fn free<A: GlobalAlloc>(a: &A, p: NonNull<u8>, l: Layout) {
    // SAFETY: callers pass a block allocated from `a` with exactly `l` that
    // has not been freed yet; each block is freed once.
    unsafe { a.dealloc(p.as_ptr(), l) }
}

/// `n` request sizes, mostly small: 70% 8–128 B, 20% 129 B–1 KiB,
/// 8% 1–8 KiB, 2% 8–64 KiB (mean about 1.3 KiB). Deterministic for a seed.
fn mixed_sizes(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| match rng.gen_range(0..100u32) {
            0..=69 => rng.gen_range(8..=128),
            70..=89 => rng.gen_range(129..=1024),
            90..=97 => rng.gen_range(1025..=8 << 10),
            _ => rng.gen_range((8 << 10) + 1..=64 << 10),
        })
        .collect()
}

/// Group settings shared by every case: modest times so that the whole run
/// stays within a few minutes on 2 cores.
fn group<'a>(c: &'a mut Criterion, name: &str, elements: u64) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(elements));
    g
}

/// Runs `$bench(group, id, allocator, args...)` once per allocator.
macro_rules! each_allocator {
    ($g:expr, $bench:ident $(, $arg:expr)* $(,)?) => {{
        $bench(&mut $g, "gomalloc", &GoMalloc $(, $arg)*);
        $bench(&mut $g, "mimalloc", &MiMalloc $(, $arg)*);
        $bench(&mut $g, "system", &System $(, $arg)*);
    }};
}

// ---------------------------------------------------------------------------
// alloc+free pairs

/// One iteration: allocate `size` bytes, write one byte, free.
fn bench_pairs<A: GlobalAlloc>(g: &mut Group<'_>, id: &str, a: &A, size: usize) {
    let l = layout(size);
    g.bench_function(id, |b| {
        b.iter(|| {
            let p = alloc_touch(a, l);
            free(a, p, l);
        })
    });
}

fn pairs(c: &mut Criterion) {
    for size in PAIR_SIZES {
        let mut g = group(c, &format!("pairs/{size}"), 1);
        each_allocator!(g, bench_pairs, size);
        g.finish();
    }
}

// ---------------------------------------------------------------------------
// random mixed sizes, sliding window

/// One iteration: free the block in a pseudo-random slot of a window of
/// `WINDOW` live blocks and put a new block of the next pre-generated size in
/// its place. Frees therefore happen in an order unrelated to allocation
/// order, and the live set stays near `WINDOW` blocks of mixed sizes.
fn bench_mixed<A: GlobalAlloc>(g: &mut Group<'_>, id: &str, a: &A, sizes: &[usize], slots: &[u16]) {
    g.bench_function(id, |b| {
        let mut live: Vec<(NonNull<u8>, Layout)> =
            sizes[..WINDOW].iter().map(|&s| (alloc_touch(a, layout(s)), layout(s))).collect();
        let mut i = WINDOW;
        b.iter(|| {
            i = (i + 1) & (SEQ_LEN - 1);
            let slot = &mut live[usize::from(slots[i]) & (WINDOW - 1)];
            free(a, slot.0, slot.1);
            let l = layout(sizes[i]);
            *slot = (alloc_touch(a, l), l);
        });
        for (p, l) in live {
            free(a, p, l);
        }
    });
}

fn mixed(c: &mut Criterion) {
    let sizes = mixed_sizes(SEQ_LEN, SEED);
    let mut rng = SmallRng::seed_from_u64(SEED ^ 1);
    let slots: Vec<u16> = (0..SEQ_LEN).map(|_| rng.gen()).collect();
    let mut g = group(c, "mixed/window", 1);
    each_allocator!(g, bench_mixed, &sizes, &slots);
    g.finish();
}

// ---------------------------------------------------------------------------
// batches: N allocations, then N frees

/// One iteration: allocate one block of each of `sizes` (in order), then
/// free them all in the same (first-in, first-out) order.
fn bench_batch<A: GlobalAlloc>(g: &mut Group<'_>, id: &str, a: &A, sizes: &[usize]) {
    g.bench_function(id, |b| {
        let mut ptrs: Vec<NonNull<u8>> = Vec::with_capacity(sizes.len());
        b.iter(|| {
            ptrs.extend(sizes.iter().map(|&s| alloc_touch(a, layout(s))));
            for (p, &s) in ptrs.drain(..).zip(sizes) {
                free(a, p, layout(s));
            }
        });
    });
}

fn batch(c: &mut Criterion) {
    let small = vec![64; BATCH_N];
    let mut g = group(c, "batch/64", BATCH_N as u64);
    each_allocator!(g, bench_batch, &small);
    g.finish();

    let sizes = mixed_sizes(BATCH_N, SEED ^ 2);
    let mut g = group(c, "batch/mixed", BATCH_N as u64);
    each_allocator!(g, bench_batch, &sizes);
    g.finish();
}

// ---------------------------------------------------------------------------
// growth by realloc

/// One iteration: allocate 8 bytes, then `realloc` to `next(size)` until the
/// size would pass `limit`, writing the last byte of each new size (as a
/// `Vec` push would); check that the first byte survived; free.
fn bench_realloc<A: GlobalAlloc>(g: &mut Group<'_>, id: &str, a: &A, limit: usize, next: Step) {
    g.bench_function(id, |b| {
        b.iter(|| {
            let mut size = 8;
            let mut p = alloc_touch(a, layout(size)).as_ptr();
            // SAFETY: `p` holds `size` >= 1 bytes.
            unsafe { p.write(0xa5) };
            while next(size) <= limit {
                let new_size = next(size);
                // SAFETY: `p` was allocated from `a` with `layout(size)`;
                // `new_size` is non-zero and fits a `Layout`.
                p = unsafe { a.realloc(p, layout(size), new_size) };
                if p.is_null() {
                    handle_alloc_error(layout(new_size));
                }
                // SAFETY: `p` now holds `new_size` bytes.
                unsafe { p.add(new_size - 1).write(1) };
                size = new_size;
            }
            // SAFETY: `p` holds `size` bytes; byte 0 was written above.
            assert_eq!(unsafe { p.read() }, 0xa5, "realloc lost the contents");
            // SAFETY: `p` was allocated (and last resized) from `a` with
            // `layout(size)`.
            unsafe { a.dealloc(black_box(p), layout(size)) };
        })
    });
}

/// How a `bench_realloc` case computes the next size.
type Step = fn(usize) -> usize;

fn double(n: usize) -> usize {
    n * 2
}

fn plus_64(n: usize) -> usize {
    n + 64
}

/// Number of `realloc` calls in one `bench_realloc` iteration.
fn realloc_steps(limit: usize, next: Step) -> u64 {
    let (mut size, mut steps) = (8, 0);
    while next(size) <= limit {
        size = next(size);
        steps += 1;
    }
    steps
}

fn realloc(c: &mut Criterion) {
    let cases: [(&str, usize, Step); 2] =
        [("realloc/double-to-1MiB", 1 << 20, double), ("realloc/plus64-to-64KiB", 64 << 10, plus_64)];
    for (name, limit, next) in cases {
        let mut g = group(c, name, realloc_steps(limit, next));
        each_allocator!(g, bench_realloc, limit, next);
        g.finish();
    }
}

// ---------------------------------------------------------------------------
// producer/consumer: every free is remote

/// A block in flight between the producer and the consumer.
struct Block(NonNull<u8>, Layout);

// SAFETY: a `Block` is the sole handle to a block allocated by one thread and
// freed by the other; the allocators under test are `Sync`, and freeing from a
// thread other than the allocating one is part of the `GlobalAlloc` contract.
unsafe impl Send for Block {}

/// `Some(blocks)` carries blocks to free (and, on the way back, an emptied
/// vector to reuse); `None` is a flush request (and, on the way back, its
/// acknowledgement).
type Msg = Option<Vec<Block>>;

/// Frees every block it receives, returns the emptied vectors, and
/// acknowledges each flush once everything sent before it has been freed.
fn consumer<A: GlobalAlloc>(a: &A, rx: Receiver<Msg>, back: Sender<Msg>) {
    while let Ok(msg) = rx.recv() {
        let reply = msg.map(|mut blocks| {
            for Block(p, l) in blocks.drain(..) {
                free(a, p, l);
            }
            blocks
        });
        if back.send(reply).is_err() {
            break;
        }
    }
}

/// The bench thread allocates `iters` blocks (sizes from `sizes`, cycling)
/// and sends them in messages of `PC_CHUNK` over a bounded channel to a
/// consumer thread that frees them. The time runs until the consumer has
/// acknowledged that it freed the last block, so it covers both sides.
/// One element is one object (allocated here, freed there).
fn bench_prodcons<A: GlobalAlloc + Sync>(g: &mut Group<'_>, id: &str, a: &A, sizes: &[usize]) {
    thread::scope(|s| {
        let (tx, rx) = sync_channel::<Msg>(8);
        let (back_tx, back_rx) = channel::<Msg>();
        s.spawn(move || consumer(a, rx, back_tx));
        let mut spare: Vec<Vec<Block>> = Vec::new();
        let mut k = 0usize;
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(PC_CHUNK as u64) as usize;
                    spare.extend(back_rx.try_iter().flatten());
                    let mut blocks = spare.pop().unwrap_or_else(|| Vec::with_capacity(PC_CHUNK));
                    for _ in 0..n {
                        let l = layout(sizes[k % sizes.len()]);
                        k = k.wrapping_add(1);
                        blocks.push(Block(alloc_touch(a, l), l));
                    }
                    tx.send(Some(blocks)).expect("consumer alive");
                    left -= n as u64;
                }
                tx.send(None).expect("consumer alive");
                while let Some(v) = back_rx.recv().expect("consumer alive") {
                    spare.push(v);
                }
                start.elapsed()
            })
        });
        drop(tx);
    });
}

fn prodcons(c: &mut Criterion) {
    let small = vec![64; SEQ_LEN];
    let mut g = group(c, "prodcons/64", 1);
    each_allocator!(g, bench_prodcons, &small);
    g.finish();

    let sizes = mixed_sizes(SEQ_LEN, SEED ^ 3);
    let mut g = group(c, "prodcons/mixed", 1);
    each_allocator!(g, bench_prodcons, &sizes);
    g.finish();
}

criterion_group!(benches, pairs, mixed, batch, realloc, prodcons);
criterion_main!(benches);
