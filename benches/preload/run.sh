#!/usr/bin/env bash
# Times real workloads under three allocators, by LD_PRELOAD: glibc's malloc
# (no preload), gomalloc (target/release/libgomalloc.so) and mimalloc
# (Debian's libmimalloc2.0). Reports the median wall time and peak RSS of
# REPS runs (/usr/bin/time -f '%e %M') side by side, with ratios to glibc,
# as a Markdown table on stdout.
#
# Workloads:
#   python  benches/preload/workload.py: builds and drops millions of objects
#   C       benches/preload/alloc_workload.c: 4 threads; trees of small nodes,
#           realloc-grown buffers, cross-thread hand-off, a random working set
#           of 8 B - 256 KiB blocks
# Every run's output must equal the glibc run's (the script stops otherwise).
#
# Usage: benches/preload/run.sh
# Environment: REPS (default 3), PY_SCALE (default 3), C_SCALE (default 4),
#   GOMALLOC_LIB (skip building), MIMALLOC_LIB (default: found, or installed
#   with apt-get).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REPS=${REPS:-3}
PY_SCALE=${PY_SCALE:-3}
C_SCALE=${C_SCALE:-4}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gomalloc-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log() { echo "$*" >&2; }

apt_updated=0
apt_install() {
    if [ $apt_updated = 0 ]; then
        apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

[ -x /usr/bin/time ] || { log "installing time"; apt_install time; }
command -v cc >/dev/null || { log "installing gcc"; apt_install gcc; }
command -v python3 >/dev/null || { log "installing python3"; apt_install python3; }

find_mimalloc() {
    ldconfig -p 2>/dev/null | grep -o '/[^ ]*/libmimalloc\.so\.2$' | head -1
}
MI=${MIMALLOC_LIB:-$(find_mimalloc)}
if [ -z "$MI" ]; then
    log "installing libmimalloc2.0"
    apt_install libmimalloc2.0 || true
    MI=$(find_mimalloc)
fi
[ -n "$MI" ] || log "mimalloc not available: its columns stay empty"

GOM=${GOMALLOC_LIB:-}
if [ -z "$GOM" ]; then
    GOM=$(cd "$ROOT" && cargo build --release -p gomalloc-ffi --message-format=json-render-diagnostics |
        grep -o '"[^"]*/libgomalloc\.so"' | tail -1 | tr -d '"')
fi
[ -f "$GOM" ] || { log "libgomalloc.so not built"; exit 1; }

PY=$(python3 -c 'import sys; print(sys.executable)')
cc -O2 -pthread "$ROOT/benches/preload/alloc_workload.c" -o "$WORK/alloc_workload"

declare -A CMD=(
    [python]="$PY $ROOT/benches/preload/workload.py $PY_SCALE"
    [C]="$WORK/alloc_workload $C_SCALE"
)
WORKLOADS=(python C)
ALLOCS=(glibc gomalloc mimalloc)
declare -A LIBOF=([glibc]="" [gomalloc]="$GOM" [mimalloc]="$MI")

# measure WORKLOAD ALLOC REP: one timed run; appends "secs kib" to a file.
measure() {
    local w=$1 a=$2 rep=$3 lib=${LIBOF[$2]}
    local out="$WORK/$w-$a-$rep.out" t="$WORK/$w-$a.times"
    # shellcheck disable=SC2086 # CMD holds a command line
    /usr/bin/time -o "$WORK/time" -f '%e %M' env ${lib:+LD_PRELOAD=$lib} ${CMD[$w]} >"$out"
    cat "$WORK/time" >>"$t"
    if ! cmp -s "$out" "$WORK/$w-glibc-1.out"; then
        log "$w under $a printed something else than under glibc:"
        diff "$WORK/$w-glibc-1.out" "$out" >&2 || true
        exit 1
    fi
}

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

for w in "${WORKLOADS[@]}"; do
    for rep in $(seq 1 "$REPS"); do
        for a in "${ALLOCS[@]}"; do
            [ -n "${LIBOF[$a]}" ] || [ "$a" = glibc ] || continue
            log "run $rep/$REPS: $w under $a"
            measure "$w" "$a" "$rep"
        done
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo "Median of $REPS runs; wall time in seconds, peak RSS in MiB; ratios against glibc (lower is better)."
echo "Machine: $(nproc) cores, $(uname -r); $("$PY" --version 2>&1); $(cc --version | head -1)."
echo
echo "| workload | glibc time | gomalloc time | mimalloc time | glibc RSS | gomalloc RSS | mimalloc RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for w in "${WORKLOADS[@]}"; do
    declare -A T=() R=()
    for a in "${ALLOCS[@]}"; do
        f="$WORK/$w-$a.times"
        [ -f "$f" ] || continue
        T[$a]=$(cut -d' ' -f1 "$f" | median)
        R[$a]=$(cut -d' ' -f2 "$f" | median | awk '{printf "%.0f", $1 / 1024}')
    done
    row="| $w | ${T[glibc]} | "
    for a in gomalloc mimalloc; do
        if [ -n "${T[$a]:-}" ]; then row+="${T[$a]} (×$(ratio "${T[$a]}" "${T[glibc]}")) | "; else row+="n/a | "; fi
    done
    row+="${R[glibc]} | "
    for a in gomalloc mimalloc; do
        if [ -n "${R[$a]:-}" ]; then row+="${R[$a]} (×$(ratio "${R[$a]}" "${R[glibc]}")) | "; else row+="n/a | "; fi
    done
    echo "${row% }"
    unset T R
done
