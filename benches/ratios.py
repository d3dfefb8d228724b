#!/usr/bin/env python3
"""Summarise `benches/alloc.rs` as a Markdown table of gomalloc's ratios.

Usage (from the repository root):

    cargo bench --bench alloc && python3 benches/ratios.py

    python3 benches/ratios.py --no-rss        # timings only, runs nothing
    python3 benches/ratios.py --bench         # run `cargo bench --bench alloc` first
    python3 benches/ratios.py --stat median   # median instead of mean (or: slope)

It does not run the benchmarks unless given --bench: it reads the results
criterion left in `target/criterion/<group>/<function>/new/` (honouring
CRITERION_HOME and CARGO_TARGET_DIR, or --criterion-dir). One row per case
(criterion group, e.g. `pairs/64`), with gomalloc's, mimalloc's and the
system allocator's time per element (the estimate divided by the group's
element throughput: one alloc+free pair, one window step, one allocation of a
batch, one realloc, one object passed between threads) and the ratios
gomalloc/mimalloc and gomalloc/system (below 1 means gomalloc is faster).

Unless given --no-rss it then runs `examples/rss_probe.rs` once per allocator
and workload (`cargo run --release --example rss_probe -- <alloc> <workload>`,
12 runs of about a second each) and fills the peak-RSS columns of the rows
that the workload resembles: mixed -> mixed/*, batch -> batch/*,
vecgrow -> realloc/*, prodcons -> prodcons/*. A second table lists each
probe's peak RSS and elapsed time.

Only the Python standard library is used. Exit status: 0, or 1 if no results
were found or a probe failed.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ALLOCATORS = ["gomalloc", "mimalloc", "system"]
WORKLOADS = ["mixed", "batch", "prodcons", "vecgrow"]
FAMILY_ORDER = ["pairs", "mixed", "batch", "realloc", "prodcons"]
FAMILY_WORKLOAD = {
    "mixed": "mixed",
    "batch": "batch",
    "realloc": "vecgrow",
    "prodcons": "prodcons",
}
ROOT = Path(__file__).resolve().parent.parent


def criterion_dir(arg):
    if arg:
        return Path(arg)
    if os.environ.get("CRITERION_HOME"):
        return Path(os.environ["CRITERION_HOME"])
    target = os.environ.get("CARGO_TARGET_DIR")
    return (Path(target) if target else ROOT / "target") / "criterion"


def load_results(base, stat):
    """{group_id: {function_id: seconds per element}} from criterion's files."""
    results = {}
    for bench_file in sorted(base.glob("**/new/benchmark.json")):
        est_file = bench_file.with_name("estimates.json")
        if not est_file.exists():
            continue
        bench = json.loads(bench_file.read_text())
        function = bench.get("function_id")
        if function not in ALLOCATORS:
            continue
        estimates = json.loads(est_file.read_text())
        estimate = estimates.get(stat) or estimates["mean"]  # slope is null in flat sampling
        nanos = estimate["point_estimate"]
        elements = (bench.get("throughput") or {}).get("Elements") or 1
        results.setdefault(bench["group_id"], {})[function] = nanos / elements
    return results


def sort_key(group):
    family, _, rest = group.partition("/")
    rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    number = int(rest) if rest.isdigit() else float("inf")
    return (rank, family, number, rest)


def fmt_time(nanos):
    if nanos is None:
        return "–"
    for unit, scale in (("ns", 1.0), ("µs", 1e3), ("ms", 1e6)):
        if nanos < 1000 * scale or unit == "ms":
            value = nanos / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return "–"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def fmt_mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f}"


def run_probes(repeat):
    """{(allocator, workload): (peak_rss_kib, elapsed_ms)} or None on failure."""
    build = ["cargo", "build", "--release", "--quiet", "--example", "rss_probe"]
    print("building rss_probe ...", file=sys.stderr)
    subprocess.run(build, cwd=ROOT, check=True)
    probes = {}
    for workload in WORKLOADS:
        for alloc in ALLOCATORS:
            cmd = ["cargo", "run", "--release", "--quiet", "--example", "rss_probe",
                   "--", alloc, workload]
            runs = []
            for _ in range(repeat):
                print(f"rss_probe {alloc} {workload} ...", file=sys.stderr)
                out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                match = re.search(r"peak_rss_kib=(\d+) elapsed_ms=(\d+)", out.stdout)
                if out.returncode != 0 or not match:
                    sys.stderr.write(out.stderr)
                    print(f"rss_probe {alloc} {workload} failed "
                          f"(status {out.returncode})", file=sys.stderr)
                    runs = None
                    break
                runs.append((int(match.group(1)), int(match.group(2))))
            if runs:
                runs.sort()
                probes[(alloc, workload)] = runs[len(runs) // 2]
            else:
                probes[(alloc, workload)] = None
    return probes


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stat", choices=["mean", "median", "slope"], default="mean",
                        help="criterion estimate to report (default: mean; criterion's "
                             "console line shows the slope)")
    parser.add_argument("--criterion-dir", help="criterion output directory")
    parser.add_argument("--no-rss", action="store_true",
                        help="do not run the rss_probe example")
    parser.add_argument("--rss-repeat", type=int, default=1, metavar="N",
                        help="run each probe N times and keep the median (default 1)")
    parser.add_argument("--bench", action="store_true",
                        help="run `cargo bench --bench alloc` before reading results")
    args = parser.parse_args()

    if args.bench:
        subprocess.run(["cargo", "bench", "--bench", "alloc"], cwd=ROOT, check=True)

    base = criterion_dir(args.criterion_dir)
    results = load_results(base, args.stat)
    if not results:
        print(f"no criterion results under {base}; run `cargo bench --bench alloc` first",
              file=sys.stderr)
        return 1

    probes = {} if args.no_rss else run_probes(max(1, args.rss_repeat))
    failed = any(v is None for v in probes.values())

    def rss(alloc, group):
        workload = FAMILY_WORKLOAD.get(group.partition("/")[0])
        probe = probes.get((alloc, workload))
        return fmt_mib(probe[0]) if probe else "–"

    header = ["case", "gomalloc", "mimalloc", "system", "go/mi", "go/sys"]
    if probes:
        header += ["peak RSS go (MiB)", "peak RSS mi (MiB)", "peak RSS sys (MiB)"]
    print(f"Time per element ({args.stat}); ratios below 1 mean gomalloc is faster.\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for group in sorted(results, key=sort_key):
        t = results[group]
        go, mi, sys_ = (t.get(a) for a in ALLOCATORS)
        row = [group, fmt_time(go), fmt_time(mi), fmt_time(sys_),
               fmt_ratio(go, mi), fmt_ratio(go, sys_)]
        if probes:
            row += [rss(a, group) for a in ALLOCATORS]
        print("| " + " | ".join(row) + " |")

    if probes:
        print("\nPeak RSS of the whole `rss_probe` process (VmHWM, see examples/rss_probe.rs) "
              "and its elapsed time; RSS columns above repeat these for the "
              "rows each workload resembles.\n")
        print("| workload | " + " | ".join(ALLOCATORS) + " | go/mi RSS | go/sys RSS |")
        print("|---|" + "---:|" * (len(ALLOCATORS) + 2))
        for workload in WORKLOADS:
            cells = []
            kib = {}
            for alloc in ALLOCATORS:
                probe = probes.get((alloc, workload))
                if probe:
                    kib[alloc] = probe[0]
                    cells.append(f"{fmt_mib(probe[0])} MiB, {probe[1]} ms")
                else:
                    cells.append("failed")
            cells.append(fmt_ratio(kib.get("gomalloc"), kib.get("mimalloc")))
            cells.append(fmt_ratio(kib.get("gomalloc"), kib.get("system")))
            print(f"| {workload} | " + " | ".join(cells) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
