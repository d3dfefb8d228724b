//! Multi-threaded stress with `GoMalloc` as the global allocator (so channels, thread
//! spawning and the test harness run on it too), with more threads than cores.
//!
//! Every block carries a fill pattern derived from (address, size, per-block tag),
//! written on allocation and verified in full before it is freed (and before and after a
//! `realloc`). Blocks are handed between threads through channels so that most frees
//! are remote, short-lived threads allocate blocks, pass them on and exit while their
//! blocks live on (thread churn), and one test has a single producer whose every object
//! is freed by a single consumer.
//!
//! Failures print the seed; rerun with `GOMALLOC_SEED=<seed> cargo test --test stress`.

mod common;

use common::{check_pattern, fill_pattern, log_uniform, mix64, pattern_seed, SeedGuard};
use gomalloc::GoMalloc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

/// The tests of this file run one at a time, so that each can check, once its threads
/// are joined, that the heap's in-use figures came back down (no lost frees). Only the
/// test harness allocates meanwhile, which the slack below covers.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const IN_USE_SLACK: usize = 2 << 20;

/// Runs `body` alone and checks that what it allocated was freed.
fn leak_checked(name: &str, body: impl FnOnce()) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let before = gomalloc::stats();
    body();
    let after = gomalloc::stats();
    assert!(
        after.bytes_in_use <= before.bytes_in_use + IN_USE_SLACK,
        "{name}: bytes_in_use grew from {} to {} though every block was freed\n{after}",
        before.bytes_in_use,
        after.bytes_in_use
    );
    assert!(
        after.large_objects <= before.large_objects + 2,
        "{name}: large_objects grew from {} to {}",
        before.large_objects,
        after.large_objects
    );
}

/// Mostly small, some medium, about 1 % large (up to 1 MiB).
fn stress_size(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..1000) {
        0..=849 => rng.gen_range(1..=256),
        850..=949 => log_uniform(rng, 257, 8192),
        950..=989 => log_uniform(rng, 8193, 32 << 10),
        _ => log_uniform(rng, (32 << 10) + 1, 1 << 20),
    }
}

/// Mostly 1..=16, some up to a page, a few up to 64 KiB (page runs).
fn stress_align(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..100) {
        0..=89 => 1 << rng.gen_range(0..=4),
        90..=98 => 1 << rng.gen_range(5..=12),
        _ => 1 << rng.gen_range(13..=16),
    }
}

#[derive(Default)]
struct Counters {
    allocated: AtomicUsize,
    freed: AtomicUsize,
    remote_frees: AtomicUsize,
    reallocs: AtomicUsize,
}

/// A live block; plain data, so it can cross threads.
#[derive(Clone, Copy, Debug)]
struct Block {
    addr: usize,
    size: usize,
    align: usize,
    tag: u64,
    /// Thread that allocated the memory now holding the block.
    owner: usize,
}

impl Block {
    fn new(size: usize, align: usize, tag: u64, owner: usize) -> Block {
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: `size` is non-zero.
        let p = unsafe { std::alloc::alloc(layout) };
        assert!(!p.is_null(), "thread {owner}: alloc({layout:?}) returned null");
        assert_eq!(p as usize % align, 0, "thread {owner}: alloc({layout:?}) = {p:p} misaligned");
        let addr = p as usize;
        // SAFETY: `p` is a fresh block of `size` bytes.
        unsafe { fill_pattern(p, size, pattern_seed(addr, size, tag)) };
        Block { addr, size, align, tag, owner }
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align).expect("layout")
    }

    /// Verifies the first `len` bytes against the block's pattern.
    fn verify(&self, len: usize, by: usize, when: &str) {
        let seed = pattern_seed(self.addr, self.size, self.tag);
        // SAFETY: the block is live with at least `len` bytes.
        if let Err((off, want, got)) = unsafe { check_pattern(self.addr as *const u8, len, seed) } {
            panic!(
                "thread {by} {when}: block {:#x} (size {}, align {}, tag {:#x}, allocated by \
                 thread {}) corrupted at offset {off}: expected {want:#04x}, found {got:#04x}",
                self.addr, self.size, self.align, self.tag, self.owner
            );
        }
    }

    /// Verifies and frees, counting the free as remote if `by` did not allocate it.
    fn free(self, by: usize, counters: &Counters) {
        self.verify(self.size, by, "before free");
        // SAFETY: the block was allocated with this layout and is freed once.
        unsafe { std::alloc::dealloc(self.addr as *mut u8, self.layout()) };
        counters.freed.fetch_add(1, Relaxed);
        if self.owner != by {
            counters.remote_frees.fetch_add(1, Relaxed);
        }
    }

    /// Verifies, reallocates (often on a thread other than the allocating one), checks
    /// the preserved prefix and writes a fresh pattern.
    fn realloc(&mut self, new_size: usize, new_tag: u64, by: usize, counters: &Counters) {
        self.verify(self.size, by, "before realloc");
        let old = *self;
        // SAFETY: the block is live with `self.layout()`; `new_size` is non-zero.
        let q = unsafe { std::alloc::realloc(self.addr as *mut u8, self.layout(), new_size) };
        assert!(!q.is_null(), "thread {by}: realloc({:?} -> {new_size}) returned null", old);
        assert_eq!(q as usize % self.align, 0, "thread {by}: realloc result misaligned");
        // The preserved prefix still shows the old pattern (seeded by the old address).
        let prefix = self.size.min(new_size);
        let seed = pattern_seed(old.addr, old.size, old.tag);
        // SAFETY: `q` is live with at least `prefix` bytes.
        if let Err((off, want, got)) = unsafe { check_pattern(q, prefix, seed) } {
            panic!(
                "thread {by}: realloc of {old:?} to {new_size} bytes at {q:p} lost the prefix at \
                 offset {off}: expected {want:#04x}, found {got:#04x}"
            );
        }
        if q as usize != old.addr {
            self.owner = by;
        }
        self.addr = q as usize;
        self.size = new_size;
        self.tag = new_tag;
        // SAFETY: `q` is live with `new_size` bytes.
        unsafe { fill_pattern(q, new_size, pattern_seed(self.addr, self.size, self.tag)) };
        counters.reallocs.fetch_add(1, Relaxed);
    }
}

const WORKERS: usize = 12;
const ROUNDS: usize = 6_000;
const CHURN_THREADS: usize = 400;
const CHURN_WAVE: usize = 8;

fn random_other(rng: &mut SmallRng, me: usize, n: usize) -> usize {
    let k = rng.gen_range(0..n - 1);
    if k >= me {
        k + 1
    } else {
        k
    }
}

/// Takes received blocks: some are reallocated here (a remote realloc), all are held.
fn absorb(batch: Vec<Block>, held: &mut Vec<Block>, rng: &mut SmallRng, me: usize, tag: &mut u64, counters: &Counters) {
    for mut b in batch {
        if rng.gen_ratio(1, 10) {
            *tag += 1;
            let new_size = if rng.gen_bool(0.5) { stress_size(rng) } else { b.size / 2 + 1 };
            b.realloc(new_size, *tag, me, counters);
        }
        held.push(b);
    }
}

/// A long-lived worker: allocates batches and sends them to other workers, holds what
/// it receives for a while, then frees it (remote frees). Finishes by draining its
/// channel until every sender is gone.
fn worker(me: usize, rx: Receiver<Vec<Block>>, txs: Vec<Sender<Vec<Block>>>, c: &Counters, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ mix64(me as u64));
    let mut tag = (me as u64) << 40;
    let mut held: Vec<Block> = Vec::new();
    let mut hold_max = 200;
    for round in 0..ROUNDS {
        if round % 100 == 0 {
            hold_max = rng.gen_range(0..=600);
        }
        let k = rng.gen_range(1..=24);
        let mut batch = Vec::with_capacity(k);
        for _ in 0..k {
            tag += 1;
            batch.push(Block::new(stress_size(&mut rng), stress_align(&mut rng), tag, me));
        }
        c.allocated.fetch_add(k, Relaxed);
        if rng.gen_ratio(1, 20) {
            // A local free now and then.
            batch.pop().expect("k >= 1").free(me, c);
        }
        let to = random_other(&mut rng, me, txs.len());
        if let Err(mpsc::SendError(batch)) = txs[to].send(batch) {
            // The receiver died (it panicked): keep the blocks so the test reports that.
            held.extend(batch);
        }
        while let Ok(batch) = rx.try_recv() {
            absorb(batch, &mut held, &mut rng, me, &mut tag, c);
        }
        while held.len() > hold_max {
            let i = rng.gen_range(0..held.len());
            held.swap_remove(i).free(me, c);
        }
    }
    drop(txs);
    for batch in rx {
        absorb(batch, &mut held, &mut rng, me, &mut tag, c);
        while held.len() > hold_max {
            let i = rng.gen_range(0..held.len());
            held.swap_remove(i).free(me, c);
        }
    }
    for b in held {
        b.free(me, c);
    }
}

/// A short-lived thread: allocates, frees a little itself, hands the rest to workers
/// and exits while those blocks are still live.
fn churn(id: usize, txs: Vec<Sender<Vec<Block>>>, c: &Counters, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ mix64(id as u64));
    let mut tag = (id as u64) << 40;
    let n = rng.gen_range(50..=300);
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        tag += 1;
        blocks.push(Block::new(stress_size(&mut rng), stress_align(&mut rng), tag, id));
    }
    c.allocated.fetch_add(n, Relaxed);
    for _ in 0..n / 10 {
        let i = rng.gen_range(0..blocks.len());
        blocks.swap_remove(i).free(id, c);
    }
    while !blocks.is_empty() {
        let k = rng.gen_range(1..=32).min(blocks.len());
        let batch: Vec<Block> = blocks.drain(..k).collect();
        let to = rng.gen_range(0..txs.len());
        if let Err(mpsc::SendError(batch)) = txs[to].send(batch) {
            for b in batch {
                b.free(id, c);
            }
        }
    }
}

#[test]
fn remote_frees_with_thread_churn() {
    leak_checked("remote_frees_with_thread_churn", churn_workload);
}

fn churn_workload() {
    let seed = common::seed(0x57E5_5001);
    let _guard = SeedGuard::new("remote_frees_with_thread_churn", seed);
    let counters = Arc::new(Counters::default());
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..WORKERS).map(|_| mpsc::channel()).unzip();
    let workers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(me, rx)| {
            let (txs, c) = (txs.clone(), Arc::clone(&counters));
            thread::Builder::new()
                .name(format!("worker-{me}"))
                .spawn(move || worker(me, rx, txs, &c, seed))
                .expect("spawn worker")
        })
        .collect();
    for wave in 0..CHURN_THREADS / CHURN_WAVE {
        let churners: Vec<_> = (0..CHURN_WAVE)
            .map(|k| {
                let id = WORKERS + wave * CHURN_WAVE + k;
                let (txs, c) = (txs.clone(), Arc::clone(&counters));
                thread::Builder::new()
                    .name(format!("churn-{id}"))
                    .spawn(move || churn(id, txs, &c, seed))
                    .expect("spawn churn thread")
            })
            .collect();
        for h in churners {
            h.join().expect("a churn thread panicked");
        }
    }
    drop(txs);
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let allocated = counters.allocated.load(Relaxed);
    let freed = counters.freed.load(Relaxed);
    let remote = counters.remote_frees.load(Relaxed);
    let reallocs = counters.reallocs.load(Relaxed);
    println!("allocated {allocated}, freed {freed} ({remote} remote), {reallocs} reallocs");
    assert_eq!(allocated, freed, "every block must be freed exactly once");
    assert!(allocated > WORKERS * ROUNDS, "too few blocks: {allocated}");
    assert!(remote * 10 > freed * 8, "most frees must be remote: {remote} of {freed}");
    assert!(reallocs > 1000, "too few remote reallocs: {reallocs}");
    // Every churn thread has exited; its cache must have been released.
    let s = gomalloc::stats();
    assert!(
        s.thread_caches < CHURN_THREADS / 2,
        "{} thread caches alive after {CHURN_THREADS} threads exited\n{s}",
        s.thread_caches
    );
}

/// One producer allocates, one consumer verifies and frees everything: every free is
/// remote, and the producer keeps allocating into spans the consumer is freeing.
#[test]
fn producer_consumer_all_remote() {
    leak_checked("producer_consumer_all_remote", producer_consumer_workload);
}

fn producer_consumer_workload() {
    const OBJECTS: usize = 3_000_000;
    const BATCH: usize = 1_000;
    let seed = common::seed(0x57E5_5002);
    let _guard = SeedGuard::new("producer_consumer_all_remote", seed);
    // (address, size, log2 align); the tag is the object's sequence number (FIFO channel).
    let (tx, rx) = mpsc::sync_channel::<Vec<(usize, u32, u8)>>(16);
    let producer = thread::Builder::new()
        .name("producer".into())
        .spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut bytes = 0usize;
            for b in 0..OBJECTS / BATCH {
                let mut batch = Vec::with_capacity(BATCH);
                for i in 0..BATCH {
                    let size = match rng.gen_range(0..100) {
                        0..=89 => rng.gen_range(1..=256),
                        90..=98 => rng.gen_range(257..=4096),
                        _ => log_uniform(&mut rng, 4097, 64 << 10),
                    };
                    let align_log2 = if rng.gen_ratio(1, 10) { rng.gen_range(4..=8) } else { 3 };
                    let tag = (b * BATCH + i) as u64;
                    let blk = Block::new(size, 1 << align_log2, tag, 0);
                    batch.push((blk.addr, size as u32, align_log2 as u8));
                    bytes += size;
                }
                tx.send(batch).expect("consumer hung up");
            }
            bytes
        })
        .expect("spawn producer");
    let consumer = thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            let c = Counters::default();
            let (mut seq, mut bytes) = (0u64, 0usize);
            for batch in rx {
                for (addr, size, align_log2) in batch {
                    let blk = Block { addr, size: size as usize, align: 1 << align_log2, tag: seq, owner: 0 };
                    blk.free(1, &c);
                    seq += 1;
                    bytes += size as usize;
                }
            }
            (c.freed.load(Relaxed), c.remote_frees.load(Relaxed), bytes)
        })
        .expect("spawn consumer");
    let produced_bytes = producer.join().expect("producer panicked");
    let (freed, remote, consumed_bytes) = consumer.join().expect("consumer panicked");
    println!("{freed} objects, {consumed_bytes} bytes, all freed remotely");
    assert_eq!(freed, OBJECTS);
    assert_eq!(remote, OBJECTS);
    assert_eq!(consumed_bytes, produced_bytes);
}
