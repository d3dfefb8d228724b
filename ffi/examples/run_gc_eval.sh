#!/usr/bin/env bash
# Builds ffi/examples/gc_eval.c against libgomalloc.a, runs it and checks:
#  - the GC interpreter's result equals the GC-free reference evaluator's,
#    and both equal the value this script expects (10000 iterations of
#    depth-12 trees; a change of the generator changes it);
#  - peak resident memory (VmHWM) stays under $GC_EVAL_MAX_KB (default
#    65536 kB): the run allocates about 258 MiB of GC objects, nearly all
#    garbage, so the bound holds only if the collector frees them as it
#    goes (with GOMALLOC_GC_PERCENT=off the peak is over 250 MiB).
# Usage: ffi/examples/run_gc_eval.sh     Environment: CC (default cc),
# GOMALLOC_LIB_A=path/to/libgomalloc.a skips building the library.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EXPECTED=4609130315784758894
MAX_KB=${GC_EVAL_MAX_KB:-65536}

LIB=${GOMALLOC_LIB_A:-}
if [ -z "$LIB" ]; then
    LIB=$(cd "$ROOT" && cargo build --release -p gomalloc-ffi --message-format=json-render-diagnostics |
        grep -o '"[^"]*/libgomalloc\.a"' | tail -1 | tr -d '"') || true
fi
[ -f "$LIB" ] || { echo "gc_eval: libgomalloc.a not built"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${CC:-cc}" -std=gnu11 -O2 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/ffi/examples/gc_eval.c" "$LIB" \
    -lpthread -ldl -lm -o "$work/gc_eval"

# The collector's settings are the defaults, whatever the environment says.
rc=0
out=$(env -u GOMALLOC_GC_PERCENT -u GOMALLOC_MEMORY_LIMIT -u GOMALLOC_GCTRACE timeout 300 "$work/gc_eval" 10000 12) || rc=$?
echo "$out"
field() { printf '%s\n' "$out" | awk -v k="$1:" '$1 == k { print $2 }'; }
result=$(field result)
reference=$(field reference)
hwm=$(field VmHWM)
fail=0
if [ $rc != 0 ]; then
    echo "gc_eval: FAIL: exit status $rc"
    fail=1
fi
if [ "$result" != "$reference" ]; then
    echo "gc_eval: FAIL: the GC interpreter computed $result, the reference $reference"
    fail=1
fi
if [ "$reference" != "$EXPECTED" ]; then
    echo "gc_eval: FAIL: reference $reference, expected $EXPECTED"
    fail=1
fi
if [ -z "$hwm" ] || [ "$hwm" -ge "$MAX_KB" ]; then
    echo "gc_eval: FAIL: peak RSS ${hwm:-?} kB, bound $MAX_KB kB"
    fail=1
fi
[ $fail = 0 ] && echo "gc_eval: ok (result $result, peak RSS $hwm kB < $MAX_KB kB)"
exit $fail
