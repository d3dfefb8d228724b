//! GC benchmarks with gomalloc as the global allocator: gomalloc's GC arena
//! against `Arc`, the `gc` crate and `dumpster::sync` on binary-trees and a
//! long-lived graph of a million objects under continuous mutation.
//! `benches/gc_system.rs` runs the `Arc` cases on the system allocator.
//!
//! Two modes. Without `GOMALLOC_GCBENCH`, criterion (`cargo bench --bench
//! gc`): binary-trees at depth 16, and graph batches of 10 000 operations.
//! With it, one measurement for `benches/gc/run.sh` prints a `RESULT` line:
//! - `trees DEPTH IMPL` — one binary-trees run;
//! - `graph SECS IMPL` — graph operations for SECS seconds;
//! - `pauses SECS [arena|arc]` — the mutator's view of the collector on the
//!   graph: each unit of `PER_UNIT` operations is timed (wall clock and
//!   thread CPU time), so a collector stall shows as a long unit; units are
//!   split by whether a cycle was marking when they ended, and the time each
//!   spent in the GC heap's slow paths is read from
//!   `gomalloc::gc::thread_slow_path_time`. `arc` times the
//!   `Arc` graph the same way: the floor without a collector.
//!
//! IMPL is one of `arena` (gomalloc's GC), `arc`, `gc` (the `gc` crate),
//! `dumpster`.

#[path = "gc/arc.rs"]
mod arc;
#[path = "gc/collectors.rs"]
mod collectors;
#[path = "gc/common.rs"]
mod common;

use collectors::{arena, dumpster_sync, gc_crate};
use common::{peak_rss_mib, script_command, thread_cpu_ns, time_graph, time_trees, GRAPH_NODES};
use criterion::{BenchmarkId, Criterion, Throughput};
use gomalloc::gc::{GcConfig, Heap};
use gomalloc::GoMalloc;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const CRITERION_DEPTH: u32 = 16;
const GRAPH_BATCH: usize = 10_000;
/// Graph operations per timed unit in `pauses`.
const PER_UNIT: usize = 16;
/// Room for this many timed units per second in `pauses` (about 100 000
/// are measured on the 2-core machine); the run stops early if full.
const MAX_UNITS_PER_SEC: f64 = 400_000.0;

fn heap() -> Heap {
    Heap::with_config(GcConfig { gc_percent: 100, memory_limit: usize::MAX, trace: false })
}

fn binary_trees(c: &mut Criterion) {
    let mut g = c.benchmark_group("binary_trees");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let d = CRITERION_DEPTH;
    g.throughput(Throughput::Elements(common::allocated_nodes(d)));
    let expect = common::expected_checksum(d);
    let h = heap();
    g.bench_with_input(BenchmarkId::new("gomalloc_gc", d), &d, |b, &d| {
        b.iter(|| assert_eq!(arena::binary_trees(&h, black_box(d)), expect))
    });
    g.bench_with_input(BenchmarkId::new("arc_gomalloc", d), &d, |b, &d| {
        b.iter(|| assert_eq!(arc::binary_trees(black_box(d)), expect))
    });
    g.bench_with_input(BenchmarkId::new("gc_crate", d), &d, |b, &d| {
        b.iter(|| assert_eq!(gc_crate::binary_trees(black_box(d)), expect))
    });
    g.bench_with_input(BenchmarkId::new("dumpster_sync", d), &d, |b, &d| {
        b.iter(|| assert_eq!(dumpster_sync::binary_trees(black_box(d)), expect))
    });
    g.finish();
}

fn graph(c: &mut Criterion) {
    let mut g = c.benchmark_group("graph_1M");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(GRAPH_BATCH as u64));
    {
        let mut graph = arena::Graph::build(heap(), GRAPH_NODES, SEED);
        g.bench_function("gomalloc_gc", |b| b.iter(|| black_box(graph.run(GRAPH_BATCH))));
    }
    {
        let mut graph = arc::Graph::build(GRAPH_NODES, SEED);
        g.bench_function("arc_gomalloc", |b| b.iter(|| black_box(graph.run(GRAPH_BATCH))));
    }
    {
        let mut graph = gc_crate::Graph::build(GRAPH_NODES, SEED);
        g.bench_function("gc_crate", |b| b.iter(|| black_box(graph.run(GRAPH_BATCH))));
    }
    {
        let mut graph = dumpster_sync::Graph::build(GRAPH_NODES, SEED);
        g.bench_function("dumpster_sync", |b| b.iter(|| black_box(graph.run(GRAPH_BATCH))));
    }
    g.finish();
}

/// The calling thread's user and system CPU time (µs), minor page faults,
/// and involuntary and voluntary context switches.
fn thread_usage() -> [i64; 5] {
    // SAFETY: an all-zero `rusage` is a valid value to overwrite.
    let mut u: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-pointer for getrusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    [us(u.ru_utime), us(u.ru_stime), u.ru_minflt, u.ru_nivcsw, u.ru_nvcsw]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A fixed buffer of samples whose pages are faulted in up front, so that
/// recording a sample never allocates or faults.
struct Samples {
    buf: Vec<u64>,
    len: usize,
}

impl Samples {
    fn new(capacity: usize) -> Samples {
        // Non-zero fill: a zeroed allocation could stay untouched until used.
        Samples { buf: black_box(vec![1u64; capacity]), len: 0 }
    }

    fn push(&mut self, x: u64) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = x;
            self.len += 1;
        }
    }

    fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    fn into_vec(mut self) -> Vec<u64> {
        self.buf.truncate(self.len);
        self.buf
    }
}

/// Times units of work as the mutator sees them: `tick` at every unit
/// boundary records the unit that just ended (wall clock, thread CPU time,
/// and for the slow ones what the kernel says they spent it on).
struct UnitClock {
    wall: Samples,
    cpu: Samples,
    last: (Instant, u64, [i64; 5]),
    /// (ops, wall ns, CPU ns) of units that ended while a cycle was
    /// marking, and of the others.
    in_cycle: (u64, u64, u64),
    out_of_cycle: (u64, u64, u64),
    /// Units over 1 ms of CPU: (count, user µs, system µs, minor faults,
    /// involuntary switches).
    slow: (u64, i64, i64, i64, i64),
    /// Units over 1 ms of wall time but not of CPU time: (count, voluntary
    /// switches: the thread blocked; involuntary: the scheduler preempted it).
    off_cpu: (u64, i64, i64),
    /// Minor page faults the mutator thread took over all units.
    faults: i64,
    /// Units over 1 ms of wall time that ended while a cycle was marking
    /// (the collector thread busy on the other core).
    slow_in_cycle: u64,
    /// `gomalloc::gc::thread_slow_path_time` at the last tick, in ns (zero
    /// throughout for the `Arc` graph).
    slow_path_last: u64,
    /// Most slow-path time in one unit; over the units above 1 ms of wall
    /// time: their slow-path time, and how many spent over half of their
    /// time in slow paths.
    slow_path_max: u64,
    slow_path_in_slow_units: u64,
    slow_units_mostly_slow_path: u64,
}

fn slow_path_ns() -> u64 {
    gomalloc::gc::thread_slow_path_time().as_nanos() as u64
}

impl UnitClock {
    /// Sample buffers are sized and their pages touched before timing
    /// starts: a `Vec` growing by doubling inside the loop copies and faults
    /// in tens of MiB at once, and the unit that pays for it looks like a
    /// pause.
    fn new(secs: f64) -> UnitClock {
        let capacity = (secs * MAX_UNITS_PER_SEC) as usize + 1;
        UnitClock {
            wall: Samples::new(capacity),
            cpu: Samples::new(capacity),
            last: (Instant::now(), thread_cpu_ns(), thread_usage()),
            in_cycle: (0, 0, 0),
            out_of_cycle: (0, 0, 0),
            slow: (0, 0, 0, 0, 0),
            off_cpu: (0, 0, 0),
            faults: 0,
            slow_in_cycle: 0,
            slow_path_last: slow_path_ns(),
            slow_path_max: 0,
            slow_path_in_slow_units: 0,
            slow_units_mostly_slow_path: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.wall.is_full()
    }

    /// Starts the next unit without recording the time since the last tick.
    fn restart(&mut self) {
        self.last = (Instant::now(), thread_cpu_ns(), thread_usage());
        self.slow_path_last = slow_path_ns();
    }

    /// Ends a unit of `ops` operations.
    fn tick(&mut self, ops: u64, marking: bool) {
        let now = (Instant::now(), thread_cpu_ns(), thread_usage());
        let w = now.0.duration_since(self.last.0).as_nanos() as u64;
        let c = now.1.saturating_sub(self.last.1);
        let d = |k: usize| now.2[k] - self.last.2[k];
        let sp_now = slow_path_ns();
        let sp = sp_now - self.slow_path_last;
        self.slow_path_last = sp_now;
        self.slow_path_max = self.slow_path_max.max(sp);
        if w > 1_000_000 {
            self.slow_in_cycle += u64::from(marking);
            self.slow_path_in_slow_units += sp;
            self.slow_units_mostly_slow_path += u64::from(sp * 2 > w);
        }
        if w > 1_000_000 && c <= 1_000_000 {
            self.off_cpu.0 += 1;
            self.off_cpu.1 += d(4);
            self.off_cpu.2 += d(3);
        }
        if c > 1_000_000 {
            self.slow.0 += 1;
            self.slow.1 += d(0);
            self.slow.2 += d(1);
            self.slow.3 += d(2);
            self.slow.4 += d(3);
        }
        self.faults += d(2);
        self.wall.push(w);
        self.cpu.push(c);
        let tally = if marking { &mut self.in_cycle } else { &mut self.out_of_cycle };
        tally.0 += ops;
        tally.1 += w;
        tally.2 += c;
        self.last = now;
    }

    /// Prints the `RESULT pauses` and `RESULT throughput` lines.
    fn report(self, implementation: &str, build: f64) {
        let (slow, off_cpu, i, o, faults) = (self.slow, self.off_cpu, self.in_cycle, self.out_of_cycle, self.faults);
        let (slow_path_max, slow_path_in_slow, mostly_slow_path) =
            (self.slow_path_max, self.slow_path_in_slow_units, self.slow_units_mostly_slow_path);
        let (mut wall, mut cpu) = (self.wall.into_vec(), self.cpu.into_vec());
        let units = wall.len();
        let over = |v: &[u64], ns: u64| v.iter().filter(|&&x| x > ns).count();
        let descheduled = wall.iter().zip(&cpu).filter(|(&w, &c)| w > 250_000 && c * 2 < w).count();
        let (w250, w1m) = (over(&wall, 250_000), over(&wall, 1_000_000));
        let (c250, c1m) = (over(&cpu, 250_000), over(&cpu, 1_000_000));
        wall.sort_unstable();
        cpu.sort_unstable();
        let us = |ns: u64| ns as f64 / 1e3;
        println!(
            "RESULT pauses impl={implementation} units={units} ops_per_unit={PER_UNIT} build_secs={build:.2} \
             wall_p50_us={:.2} wall_p99_us={:.2} wall_p999_us={:.2} wall_max_us={:.1} \
             cpu_p50_us={:.2} cpu_p99_us={:.2} cpu_p999_us={:.2} cpu_max_us={:.1} \
             units_over_250us={w250} units_over_1ms={w1m} descheduled_over_250us={descheduled} \
             cpu_units_over_250us={c250} cpu_units_over_1ms={c1m} \
             over_1ms_user_us={} over_1ms_sys_us={} over_1ms_minflt={} over_1ms_nivcsw={} over_1ms_in_cycle={} \
             off_cpu_units_over_1ms={} off_cpu_nvcsw={} off_cpu_nivcsw={} mutator_minflt={faults} \
             slow_path_max_us={:.1} over_1ms_slow_path_us={:.1} over_1ms_mostly_slow_path={} peak_rss_mib={:.1}",
            us(percentile(&wall, 0.5)),
            us(percentile(&wall, 0.99)),
            us(percentile(&wall, 0.999)),
            us(*wall.last().unwrap_or(&0)),
            us(percentile(&cpu, 0.5)),
            us(percentile(&cpu, 0.99)),
            us(percentile(&cpu, 0.999)),
            us(*cpu.last().unwrap_or(&0)),
            slow.1,
            slow.2,
            slow.3,
            slow.4,
            self.slow_in_cycle,
            off_cpu.0,
            off_cpu.1,
            off_cpu.2,
            us(slow_path_max),
            us(slow_path_in_slow),
            mostly_slow_path,
            peak_rss_mib(),
        );
        let rate = |ops: u64, ns: u64| if ns == 0 { 0.0 } else { ops as f64 * 1e9 / ns as f64 / 1e6 };
        println!(
            "RESULT throughput impl={implementation} in_cycle_mops={:.3} out_of_cycle_mops={:.3} \
             in_cycle_mops_per_cpu_s={:.3} out_of_cycle_mops_per_cpu_s={:.3} in_cycle_share={:.3}",
            rate(i.0, i.1),
            rate(o.0, o.1),
            rate(i.0, i.2),
            rate(o.0, o.2),
            i.1 as f64 / (i.1 + o.1).max(1) as f64
        );
    }
}

/// `pauses SECS arena`: see the module header.
fn pauses_arena(secs: f64) {
    let h = heap();
    let t0 = Instant::now();
    let mut g = arena::Graph::build(h.clone(), GRAPH_NODES, SEED);
    let build = t0.elapsed().as_secs_f64();
    g.run(500_000); // warm-up: the heap reaches its steady state
    let s0 = h.stats();
    let mut clock = UnitClock::new(secs);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs && !clock.is_full() {
        g.run_timed(20_000, PER_UNIT, |u| {
            if u == 0 {
                clock.restart();
            } else {
                clock.tick(PER_UNIT as u64, h.is_marking());
            }
        });
    }
    let s1 = h.stats();
    clock.report("arena", build);
    let us = |ns: u64| ns as f64 / 1e3;
    let mut ring: Vec<u64> = s1.recent_pauses.iter().map(|d| d.as_nanos() as u64).collect();
    ring.sort_unstable();
    println!(
        "RESULT gcstats cycles={} live_mib={:.1} goal_mib={:.1} collector_pauses={} ring_p50_us={:.2} \
         ring_p99_us={:.2} ring_max_us={:.1} pause_max_us={:.1} mark_cpu_ms={:.1} assist_ms={:.1} \
         assists={} assist_max_us={:.1} assist_cpu_max_us={:.1} last_cycle_ms={:.1}",
        s1.cycles - s0.cycles,
        s1.live_bytes as f64 / 1048576.0,
        s1.heap_goal as f64 / 1048576.0,
        s1.pause_count - s0.pause_count,
        us(percentile(&ring, 0.5)),
        us(percentile(&ring, 0.99)),
        us(*ring.last().unwrap_or(&0)),
        s1.pause_max.as_secs_f64() * 1e6,
        (s1.mark_cpu - s0.mark_cpu).as_secs_f64() * 1e3,
        (s1.assist_time - s0.assist_time).as_secs_f64() * 1e3,
        s1.assists - s0.assists,
        s1.assist_max.as_secs_f64() * 1e6,
        s1.assist_cpu_max.as_secs_f64() * 1e6,
        s1.last_cycle.as_secs_f64() * 1e3,
    );
}

/// Iterations of `spin_unit` per timed unit: about the graph's median unit
/// (10 µs) on the development machine.
const SPIN_PER_UNIT: u64 = 6_000;

/// Work that touches no memory beyond a 4 KiB buffer (in L1) and calls
/// nothing: a unit of it can only be slowed by the machine.
fn spin_unit(buf: &mut [u64; 512], mut x: u64) -> u64 {
    for _ in 0..SPIN_PER_UNIT {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % 512) as usize;
        buf[i] = buf[i].wrapping_add(x);
    }
    x
}

/// `pauses SECS spin`: units of `spin_unit`, timed as the graph's are. No
/// allocation, no lock, no page fault: the units over 1 ms it shows are the
/// machine's (host preemption counts as thread CPU time on a VM), the floor
/// under any allocator or collector measured the same way.
fn pauses_spin(secs: f64, busy_core: bool) {
    // With `busy_core`, a second thread spins the same way throughout, as
    // the arena's collector keeps the second core busy while it marks: the
    // floor of a VM whose two virtual CPUs are both running.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = busy_core.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut buf, mut x) = ([0u64; 512], SEED | 3);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x = black_box(spin_unit(&mut buf, x));
            }
        })
    });
    let mut buf = [0u64; 512];
    let mut x = SEED | 1;
    let mut clock = UnitClock::new(secs);
    let start = Instant::now();
    clock.restart();
    while start.elapsed().as_secs_f64() < secs && !clock.is_full() {
        for _ in 0..20_000 {
            x = black_box(spin_unit(&mut buf, x));
            clock.tick(PER_UNIT as u64, false);
        }
    }
    black_box(&buf);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = other {
        t.join().unwrap();
    }
    clock.report(if busy_core { "spin_two_cores" } else { "spin" }, 0.0);
}

/// `pauses SECS arc`: the same units on the `Arc` graph (gomalloc as the
/// allocator, no collector), timed the same way: the floor that the
/// machine, the allocator and the workload's cache misses set without a GC.
fn pauses_arc(secs: f64) {
    let t0 = Instant::now();
    let mut g = arc::Graph::build(GRAPH_NODES, SEED);
    let build = t0.elapsed().as_secs_f64();
    g.run(500_000);
    let mut clock = UnitClock::new(secs);
    let start = Instant::now();
    clock.restart();
    while start.elapsed().as_secs_f64() < secs && !clock.is_full() {
        for _ in 0..20_000 {
            black_box(g.run(PER_UNIT));
            clock.tick(PER_UNIT as u64, false);
        }
    }
    clock.report("arc_gomalloc", build);
}

fn script(cmd: &[String]) {
    let arg = |i: usize| cmd.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "trees" => {
            let depth: u32 = arg(1).parse().expect("trees DEPTH IMPL");
            match arg(2) {
                "arena" => {
                    let h = heap();
                    time_trees("arena", depth, |d| arena::binary_trees(&h, d));
                }
                "arc" => time_trees("arc_gomalloc", depth, arc::binary_trees),
                "gc" => time_trees("gc_crate", depth, gc_crate::binary_trees),
                "dumpster" => time_trees("dumpster_sync", depth, dumpster_sync::binary_trees),
                other => panic!("unknown implementation {other:?}"),
            }
        }
        "graph" => {
            let secs: f64 = arg(1).parse().expect("graph SECS IMPL");
            let t = Instant::now();
            match arg(2) {
                "arena" => {
                    let mut g = arena::Graph::build(heap(), GRAPH_NODES, SEED);
                    let b = t.elapsed().as_secs_f64();
                    time_graph("arena", secs, b, |n| g.run(n));
                }
                "arc" => {
                    let mut g = arc::Graph::build(GRAPH_NODES, SEED);
                    let b = t.elapsed().as_secs_f64();
                    time_graph("arc_gomalloc", secs, b, |n| g.run(n));
                }
                "gc" => {
                    let mut g = gc_crate::Graph::build(GRAPH_NODES, SEED);
                    let b = t.elapsed().as_secs_f64();
                    time_graph("gc_crate", secs, b, |n| g.run(n));
                }
                "dumpster" => {
                    let mut g = dumpster_sync::Graph::build(GRAPH_NODES, SEED);
                    let b = t.elapsed().as_secs_f64();
                    time_graph("dumpster_sync", secs, b, |n| g.run(n));
                }
                other => panic!("unknown implementation {other:?}"),
            }
        }
        "pauses" => {
            let secs: f64 = arg(1).parse().expect("pauses SECS [IMPL]");
            match arg(2) {
                "" | "arena" => pauses_arena(secs),
                "arc" => pauses_arc(secs),
                "spin" => pauses_spin(secs, false),
                "spin2" => pauses_spin(secs, true),
                other => panic!("pauses: {other:?} is not arena, arc, spin or spin2"),
            }
        }
        other => panic!("unknown GOMALLOC_GCBENCH command {other:?}"),
    }
}

fn main() {
    if let Some(cmd) = script_command() {
        script(&cmd);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    binary_trees(&mut c);
    graph(&mut c);
    c.final_summary();
}
