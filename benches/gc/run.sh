#!/usr/bin/env bash
# The GC benchmarks outside criterion: binary-trees at depths 16, 18 and 20
# (depth 20 takes seconds per run, too long for criterion's sampling), the
# long-lived 1M-object graph, and the mutator-pause runs (the arena, the
# same units on the `Arc` graph, and units of pure computation as the
# machine's floor); then a Markdown table
# of times, peak RSS and ratios (gomalloc's GC arena over each other
# implementation: below 1 means the arena is faster or smaller).
#
#   benches/gc/run.sh                       # about 4-5 minutes on the 2-core machine (2026-12-03)
#   DEPTH20_IMPLS="arena arc gc dumpster" benches/gc/run.sh   # adds the `gc` crate at depth 20
#                                           # (30 s more on 2026-12-03: the README's table)
#   DEPTHS="16 18" GRAPH_SECS=3 PAUSE_SECS=10 benches/gc/run.sh
#   IMPLS="arena arc" benches/gc/run.sh     # a subset (arc_system always runs with arc)
#
# Every run checks its own result (binary-trees checksum, graph node
# checksums) and the script stops at the first failure: a wrong answer is a
# collector bug, not a timing. Raw `RESULT` lines go to $OUT (default
# target/gcbench.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."

DEPTHS=${DEPTHS:-"16 18 20"}
IMPLS=${IMPLS:-"arena arc gc dumpster"}
# The `gc` crate alone took 27-32 s at depth 20 in the README's last two tables.
DEPTH20_IMPLS=${DEPTH20_IMPLS:-"arena arc dumpster"}
GRAPH_SECS=${GRAPH_SECS:-5}
PAUSE_SECS=${PAUSE_SECS:-30}
OUT=${OUT:-target/gcbench.txt}

cargo bench --bench gc --bench gc_system --no-run >&2
run() { # run BENCH COMMAND
    GOMALLOC_GCBENCH="$2" cargo bench -q --bench "$1" 2>/dev/null | grep '^RESULT' | tee -a "$OUT"
}

: >"$OUT"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
for d in $DEPTHS; do
    for i in $IMPLS; do
        if [ "$d" = 20 ] && [[ " $DEPTH20_IMPLS " != *" $i "* ]]; then continue; fi
        run gc "trees $d $i"
        if [ "$i" = arc ]; then run gc_system "trees $d arc"; fi
    done
done
for i in $IMPLS; do
    run gc "graph $GRAPH_SECS $i"
    if [ "$i" = arc ]; then run gc_system "graph $GRAPH_SECS arc"; fi
done
# The arena's pause run, then the same units on the `Arc` graph (no
# collector): what the machine and the workload cost without a GC.
case " $IMPLS " in *" arena "*) run gc "pauses $PAUSE_SECS arena" ;; esac
case " $IMPLS " in *" arc "*) run gc "pauses $PAUSE_SECS arc" ;; esac
# Units of computation that touch 4 KiB and call nothing: the slow units the
# machine itself makes (host preemption shows as thread CPU time on a VM).
case " $IMPLS " in *" arena "*) run gc "pauses $PAUSE_SECS spin"; run gc "pauses $PAUSE_SECS spin2" ;; esac
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"

python3 - "$OUT" <<'EOF'
import re, sys
rows = {}
extra = []
for line in open(sys.argv[1]):
    if not line.startswith("RESULT"):
        continue
    kind, *kv = line.split()[1:]
    f = dict(x.split("=", 1) for x in kv)
    if kind == "trees":
        rows.setdefault(f"binary-trees depth {f['depth']}, wall s", {})[f["impl"]] = float(f["secs"])
        rows.setdefault(f"binary-trees depth {f['depth']}, CPU s (all threads)", {})[f["impl"]] = float(f["cpu_secs"])
        rows.setdefault(f"binary-trees depth {f['depth']}, peak RSS MiB", {})[f["impl"]] = float(f["peak_rss_mib"])
    elif kind == "graph":
        rows.setdefault("graph 1M, wall ns per op", {})[f["impl"]] = float(f["ns_per_op"])
        rows.setdefault("graph 1M, CPU ns per op (all threads)", {})[f["impl"]] = float(f["cpu_ns_per_op"])
        rows.setdefault("graph 1M, peak RSS MiB", {})[f["impl"]] = float(f["peak_rss_mib"])
    else:
        extra.append((kind, f))
impls = ["arena", "arc_gomalloc", "arc_system", "gc_crate", "dumpster_sync"]
fmt = lambda v: "" if v is None else (f"{v:.3g}")
print()
print("| workload | " + " | ".join(impls) + " | arena/arc_gomalloc | arena/arc_system | arena/gc_crate | arena/dumpster_sync |")
print("|---" * (len(impls) + 5) + "|")
for name, r in rows.items():
    cells = [fmt(r.get(i)) for i in impls]
    a = r.get("arena")
    ratios = [fmt(a / r[i]) if a and r.get(i) else "" for i in impls[1:]]
    print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
for kind, f in extra:
    print()
    print(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in f.items()))
EOF
