//! What every GC bench implementation shares: the binary-trees parameters
//! and expected checksum, the long-lived-graph operation mix, the random
//! generator and the node checksum, so each implementation runs exactly the
//! same workload and a wrong answer is caught, not timed.
//!
//! Included by `benches/gc.rs` and `benches/gc_system.rs` through `#[path]`.

#![allow(dead_code)]

/// Binary-trees (the Benchmarks Game program): the smallest tree depth
/// iterated, and the depth step.
pub const MIN_DEPTH: u32 = 4;

/// Nodes in a perfect tree of `depth`: what `check` returns for it.
pub fn tree_nodes(depth: u32) -> u64 {
    (1u64 << (depth + 1)) - 1
}

/// Trees of `depth` built and checked per round for `max_depth`.
pub fn iterations(depth: u32, max_depth: u32) -> u64 {
    1u64 << (max_depth - depth + MIN_DEPTH)
}

/// The sum of every `check` the program makes: the stretch tree, each
/// depth's iterations, the long-lived tree. Every implementation must
/// return exactly this.
pub fn expected_checksum(max_depth: u32) -> u64 {
    let mut sum = tree_nodes(max_depth + 1);
    let mut d = MIN_DEPTH;
    while d <= max_depth {
        sum += iterations(d, max_depth) * tree_nodes(d);
        d += 2;
    }
    sum + tree_nodes(max_depth)
}

/// Nodes allocated by one run, for throughput figures.
pub fn allocated_nodes(max_depth: u32) -> u64 {
    expected_checksum(max_depth)
}

/// The identity check carried by every graph node: a node freed and reused
/// while reachable fails it.
#[inline]
pub fn checksum(id: u64) -> u64 {
    (id ^ 0x5851_F42D_4C95_7F2D).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// xorshift64: cheap and the same sequence for every implementation.
pub struct Rng(pub u64);

impl Rng {
    #[inline]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Live objects the long-lived graph holds (one per table slot; nodes
/// replaced in the table live on while an edge reaches them).
pub const GRAPH_NODES: usize = 1_000_000;

/// Steps of a read walk.
pub const WALK: usize = 8;

/// One graph operation, drawn from `rng`:
/// - 50% `Replace { slot, a, b }`: a fresh node with edges to the nodes in
///   slots `a` and `b` takes slot `slot` (the old node dies unless an edge
///   still reaches it);
/// - 30% `Rewire { a, b, side }`: of the nodes in slots `a` and `b`, the
///   newer one's edge `side` now points at the older one;
/// - 20% `Read { slot, path }`: walk up to `WALK` edges from the node in
///   `slot`, bit `i` of `path` choosing the edge at step `i`, checking each
///   node's checksum.
///
/// Edges always point from a newer node to an older one, so the graph is
/// acyclic and `Arc` frees it completely (no leak makes it look cheaper).
#[derive(Clone, Copy)]
pub enum Op {
    Replace { slot: usize, a: usize, b: usize },
    Rewire { a: usize, b: usize, side: usize },
    Read { slot: usize, path: u64 },
}

#[inline]
pub fn next_op(rng: &mut Rng, n: usize) -> Op {
    let r = rng.next();
    match r % 10 {
        0..=4 => Op::Replace { slot: rng.below(n), a: rng.below(n), b: rng.below(n) },
        5..=7 => Op::Rewire { a: rng.below(n), b: rng.below(n), side: ((r >> 32) & 1) as usize },
        _ => Op::Read { slot: rng.below(n), path: rng.next() },
    }
}

/// Node ids start here; graph building gives slot `i` id `i + 1`.
pub const FIRST_ID: u64 = 1;

/// A failed check: a collector (or benchmark) bug, never a timing.
#[cold]
pub fn corrupt(what: &str, id: u64, check: u64) -> ! {
    panic!("GC bench: corrupt node in {what}: id {id} has check {check:#x}, expected {:#x}", checksum(id));
}

/// Thread CPU time in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the whole process (every thread: the collector's too) in
/// seconds.
pub fn process_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Peak resident set size of the process so far, in MiB (each script
/// measurement runs in a process of its own, so this is that run's peak).
pub fn peak_rss_mib() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value to overwrite.
    let mut u: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-pointer for getrusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

/// The script mode of a GC bench binary: `GOMALLOC_GCBENCH` holds a
/// command (see `benches/gc/run.sh`), parsed into words.
pub fn script_command() -> Option<Vec<String>> {
    std::env::var("GOMALLOC_GCBENCH").ok().map(|s| s.split_whitespace().map(str::to_owned).collect())
}

/// Times one binary-trees run of `depth` with `f` (which returns the
/// checksum), checks the checksum and prints a `RESULT` line.
pub fn time_trees(name: &str, depth: u32, f: impl FnOnce(u32) -> u64) {
    let (t, cpu0) = (std::time::Instant::now(), process_cpu_secs());
    let sum = f(depth);
    let (secs, cpu) = (t.elapsed().as_secs_f64(), process_cpu_secs() - cpu0);
    assert_eq!(sum, expected_checksum(depth), "binary-trees checksum of {name} at depth {depth}");
    println!(
        "RESULT trees impl={name} depth={depth} secs={secs:.4} cpu_secs={cpu:.4} ns_per_node={:.2} peak_rss_mib={:.1}",
        secs * 1e9 / allocated_nodes(depth) as f64,
        peak_rss_mib()
    );
}

/// Runs `op_batch(ops)` (which does `ops` graph operations and returns a
/// checksum of what it read) for `secs` seconds and prints a `RESULT` line
/// with the operation rate.
pub fn time_graph(name: &str, secs: f64, build_secs: f64, mut op_batch: impl FnMut(usize) -> u64) {
    let (t, cpu0) = (std::time::Instant::now(), process_cpu_secs());
    let mut ops = 0u64;
    let mut sink = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        sink = sink.wrapping_add(op_batch(10_000));
        ops += 10_000;
    }
    let (el, cpu) = (t.elapsed().as_secs_f64(), process_cpu_secs() - cpu0);
    std::hint::black_box(sink);
    println!(
        "RESULT graph impl={name} ops={ops} secs={el:.3} ns_per_op={:.1} cpu_ns_per_op={:.1} build_secs={build_secs:.3} \
         peak_rss_mib={:.1}",
        el * 1e9 / ops as f64,
        cpu * 1e9 / ops as f64,
        peak_rss_mib()
    );
}
