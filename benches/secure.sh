#!/usr/bin/env bash
# The cost of the secure builds: times the C workload of benches/preload
# (alloc_workload.c: 4 threads; trees of small nodes, realloc-grown buffers,
# cross-thread hand-off, a random working set of 8 B - 256 KiB blocks) and
# python (benches/preload/workload.py) under five allocators, by LD_PRELOAD:
#
#   system          glibc's malloc (no preload)
#   gomalloc        target/release/libgomalloc.so
#   gomalloc-secure the same built with --features $SECURE_FEATURES
#   mimalloc        mimalloc built from the source the `mimalloc` crate bundles
#                   (libmimalloc-sys, v2), as an override library
#   mimalloc-secure the same with MI_SECURE=4 (what the crate's `secure`
#                   feature sets)
#
# Reports the median wall time and peak RSS of REPS runs (/usr/bin/time
# -f '%e %M') and ratios against default gomalloc, as a Markdown table. Every
# run's output must equal the system run's.
#
# Usage: benches/secure.sh
# Environment: REPS (default 3), C_SCALE (default 4), PY_SCALE (default 2),
#   SECURE_FEATURES (default "secure"; "secure-guards" adds guard pages).
SECURE_FEATURES=${SECURE_FEATURES:-secure}
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
C_SCALE=${C_SCALE:-4}
PY_SCALE=${PY_SCALE:-2}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gomalloc-secure.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log() { echo "$*" >&2; }

[ -x /usr/bin/time ] || { log "needs /usr/bin/time (apt-get install time)"; exit 1; }

# build_gomalloc FEATURES DEST: the release libgomalloc.so, copied to DEST
# (the two builds share target/release).
build_gomalloc() {
    local so
    so=$(cd "$ROOT" && cargo build --release -p gomalloc-ffi --features "$1" --message-format=json-render-diagnostics |
        grep -o '"[^"]*/libgomalloc\.so"' | tail -1 | tr -d '"')
    cp "$so" "$2"
}
log "building libgomalloc.so (default and secure)"
build_gomalloc "" "$WORK/libgomalloc.so"
build_gomalloc "$SECURE_FEATURES" "$WORK/libgomalloc-secure.so"

# mimalloc from the crate's bundled source (the version the Rust benches use).
(cd "$ROOT" && cargo fetch -q)
MISRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/libmimalloc-sys-*/c_src/mimalloc/v2 2>/dev/null | tail -1)
if [ -n "$MISRC" ]; then
    log "building mimalloc (default and MI_SECURE=4) from $MISRC"
    # mi_cc OUT [FLAGS]: the override library (static.c includes every part).
    mi_cc() {
        local out=$1
        shift
        cc -O3 -DNDEBUG -fPIC -shared -pthread -DMI_MALLOC_OVERRIDE "$@" -I "$MISRC/include" \
            "$MISRC/src/static.c" -o "$out"
    }
    mi_cc "$WORK/libmimalloc.so"
    mi_cc "$WORK/libmimalloc-secure.so" -DMI_SECURE=4
else
    log "libmimalloc-sys source not found: mimalloc columns stay empty"
fi

cc -O2 -pthread "$ROOT/benches/preload/alloc_workload.c" -o "$WORK/alloc_workload"
PY=$(python3 -c 'import sys; print(sys.executable)')
declare -A CMD=([C]="$WORK/alloc_workload $C_SCALE" [python]="$PY $ROOT/benches/preload/workload.py $PY_SCALE")
WORKLOADS=(C python)
ALLOCS=(system gomalloc gomalloc-secure mimalloc mimalloc-secure)
declare -A LIBOF=([system]="" [gomalloc]="$WORK/libgomalloc.so" [gomalloc-secure]="$WORK/libgomalloc-secure.so"
    [mimalloc]="$WORK/libmimalloc.so" [mimalloc-secure]="$WORK/libmimalloc-secure.so")

measure() {
    local w=$1 a=$2 rep=$3 lib=${LIBOF[$2]}
    local out="$WORK/$w-$a-$rep.out"
    # shellcheck disable=SC2086 # CMD holds a command line
    /usr/bin/time -o "$WORK/time" -f '%e %M' env ${lib:+LD_PRELOAD=$lib} ${CMD[$w]} >"$out"
    cat "$WORK/time" >>"$WORK/$w-$a.times"
    cmp -s "$out" "$WORK/$w-system-1.out" || { log "$w under $a printed something else"; exit 1; }
}
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

for w in "${WORKLOADS[@]}"; do
    for rep in $(seq 1 "$REPS"); do
        for a in "${ALLOCS[@]}"; do
            lib=${LIBOF[$a]}
            [ -z "$lib" ] || [ -f "$lib" ] || continue
            log "run $rep/$REPS: $w under $a"
            measure "$w" "$a" "$rep"
        done
    done
done

echo "Median of $REPS runs; wall time in seconds and peak RSS in MiB, with ratios against default gomalloc."
echo "Machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
printf '| workload | measure |'
for a in "${ALLOCS[@]}"; do printf ' %s |' "$a"; done
printf '\n|---|---|'
for _ in "${ALLOCS[@]}"; do printf -- '---:|'; done
echo
for w in "${WORKLOADS[@]}"; do
    for m in time RSS; do
        col=1
        [ $m = RSS ] && col=2
        declare -A V=()
        for a in "${ALLOCS[@]}"; do
            f="$WORK/$w-$a.times"
            [ -f "$f" ] || continue
            V[$a]=$(cut -d' ' -f$col "$f" | median)
            [ $m = RSS ] && V[$a]=$(awk -v k="${V[$a]}" 'BEGIN {printf "%.0f", k / 1024}')
        done
        row="| $w | $m |"
        for a in "${ALLOCS[@]}"; do
            if [ -n "${V[$a]:-}" ]; then row+=" ${V[$a]} (×$(ratio "${V[$a]}" "${V[gomalloc]}")) |"; else row+=" n/a |"; fi
        done
        echo "$row"
        unset V
    done
done
