//! The `Arc` baselines of the GC benchmarks on the system allocator (glibc
//! `malloc` on Linux): a bench binary has one global allocator, so these
//! cannot share `benches/gc.rs`. Same workloads and modes as there
//! (`GOMALLOC_GCBENCH="trees DEPTH arc"` or `"graph SECS arc"`), IDs
//! `binary_trees/arc_system/16` and `graph_1M/arc_system`.

#[path = "gc/arc.rs"]
mod arc;
#[path = "gc/common.rs"]
mod common;

use common::{script_command, time_graph, time_trees, GRAPH_NODES};
use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const CRITERION_DEPTH: u32 = 16;
const GRAPH_BATCH: usize = 10_000;

fn main() {
    if let Some(cmd) = script_command() {
        let arg = |i: usize| cmd.get(i).map(String::as_str).unwrap_or("");
        assert!(arg(2) == "arc", "gc_system runs only the `arc` implementation");
        match arg(0) {
            "trees" => time_trees("arc_system", arg(1).parse().expect("trees DEPTH arc"), arc::binary_trees),
            "graph" => {
                let t = Instant::now();
                let mut g = arc::Graph::build(GRAPH_NODES, SEED);
                let b = t.elapsed().as_secs_f64();
                time_graph("arc_system", arg(1).parse().expect("graph SECS arc"), b, |n| g.run(n));
            }
            other => panic!("unknown GOMALLOC_GCBENCH command {other:?}"),
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("binary_trees");
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        let d = CRITERION_DEPTH;
        g.throughput(Throughput::Elements(common::allocated_nodes(d)));
        let expect = common::expected_checksum(d);
        g.bench_with_input(BenchmarkId::new("arc_system", d), &d, |b, &d| {
            b.iter(|| assert_eq!(arc::binary_trees(black_box(d)), expect))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("graph_1M");
        g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        g.throughput(Throughput::Elements(GRAPH_BATCH as u64));
        let mut graph = arc::Graph::build(GRAPH_NODES, SEED);
        g.bench_function("arc_system", |b| b.iter(|| black_box(graph.run(GRAPH_BATCH))));
        g.finish();
    }
    c.final_summary();
}
