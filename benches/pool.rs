//! `gomalloc::gc::Pool` against allocating a fresh value each time, with
//! `GoMalloc` as the global allocator, and against the simplest shared pool
//! (a `Mutex<Vec<T>>`).
//!
//! Cases, each on one thread (`1t`) and on two threads using the same pool at
//! once (`2t`; an iteration is one operation on each thread, timed from a
//! common start to the last thread's end):
//! - `buf4k`, `buf64k`: obtain a `Vec<u8>` of 4 KiB (a size class) or 64 KiB
//!   (a large object, a page run of its own) capacity, write 64 bytes into
//!   it, release it;
//! - `small`: obtain a `Box` of a 64-byte struct, write its fields, release.
//!
//! Functions: `fresh` allocates and drops; `pool` is `get` then `put`;
//! `mutex-vec` pops from and pushes to one `Mutex<Vec<T>>`.
//!
//! Run: `cargo bench --bench pool` (about a minute on 2 cores), or e.g.
//! `cargo bench --bench pool -- buf4k/1t`.

use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use gomalloc::gc::Pool;
use gomalloc::GoMalloc;

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// 64 bytes.
struct Small {
    words: [u64; 8],
}

/// How a value is obtained and released.
trait Source<T>: Sync {
    fn obtain(&self) -> T;
    fn release(&self, v: T);
}

struct Fresh<F>(F);
impl<T, F: Fn() -> T + Sync> Source<T> for Fresh<F> {
    #[inline]
    fn obtain(&self) -> T {
        (self.0)()
    }
    #[inline]
    fn release(&self, v: T) {
        drop(v)
    }
}

impl<T: Send + 'static> Source<T> for Pool<T> {
    #[inline]
    fn obtain(&self) -> T {
        self.get()
    }
    #[inline]
    fn release(&self, v: T) {
        self.put(v)
    }
}

struct MutexVec<T, F>(Mutex<Vec<T>>, F);
impl<T: Send, F: Fn() -> T + Sync> Source<T> for MutexVec<T, F> {
    #[inline]
    fn obtain(&self) -> T {
        let v = self.0.lock().unwrap().pop();
        v.unwrap_or_else(|| (self.1)())
    }
    #[inline]
    fn release(&self, v: T) {
        self.0.lock().unwrap().push(v)
    }
}

fn new_small() -> Box<Small> {
    Box::new(Small { words: [0; 8] })
}

#[inline(always)]
fn use_buf(mut v: Vec<u8>, i: u64) -> Vec<u8> {
    v.clear();
    for k in 0..8 {
        v.extend_from_slice(&(i + k).to_le_bytes());
    }
    black_box(&mut v);
    v
}

#[inline(always)]
fn use_small(mut v: Box<Small>, i: u64) -> Box<Small> {
    for (k, w) in v.words.iter_mut().enumerate() {
        *w = i + k as u64;
    }
    black_box(&mut *v);
    v
}

/// `iters` operations on each of `threads` threads at once; the time from the
/// first thread's start to the last thread's end.
fn run<T, S: Source<T>>(src: &S, threads: usize, iters: u64, work: fn(T, u64) -> T) -> Duration {
    let once = |src: &S| {
        for i in 0..iters {
            let v = work(src.obtain(), i);
            src.release(v);
        }
    };
    if threads == 1 {
        let t0 = Instant::now();
        once(src);
        return t0.elapsed();
    }
    let start = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    // Warm this thread's slot and allocator cache first.
                    src.release(work(src.obtain(), 0));
                    start.wait();
                    let t0 = Instant::now();
                    once(src);
                    (t0, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = spans.iter().map(|s| s.0).min().unwrap();
    let last = spans.iter().map(|s| s.1).max().unwrap();
    (last - first).max(Duration::from_nanos(1))
}

fn bench_one<T, S: Source<T>>(g: &mut Group<'_>, id: &str, src: &S, threads: usize, work: fn(T, u64) -> T) {
    g.bench_function(id, |b| b.iter_custom(|iters| run(src, threads, iters, work)));
}

fn group<'a>(c: &'a mut Criterion, name: &str, threads: usize) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(threads as u64));
    g
}

fn buffers(c: &mut Criterion) {
    for (name, size) in [("buf4k", 4usize << 10), ("buf64k", 64 << 10)] {
        for threads in [1, 2] {
            let mut g = group(c, &format!("{name}/{threads}t"), threads);
            let new = move || Vec::<u8>::with_capacity(size);
            bench_one(&mut g, "fresh", &Fresh(new), threads, use_buf);
            bench_one(&mut g, "pool", &Pool::new(new), threads, use_buf);
            bench_one(&mut g, "mutex-vec", &MutexVec(Mutex::new(Vec::new()), new), threads, use_buf);
            g.finish();
        }
    }
}

fn small(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut g = group(c, &format!("small/{threads}t"), threads);
        bench_one(&mut g, "fresh", &Fresh(new_small), threads, use_small);
        bench_one(&mut g, "pool", &Pool::new(new_small), threads, use_small);
        bench_one(&mut g, "mutex-vec", &MutexVec(Mutex::new(Vec::new()), new_small), threads, use_small);
        g.finish();
    }
}

criterion_group!(benches, buffers, small);
criterion_main!(benches);
