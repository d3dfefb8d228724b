#!/usr/bin/env bash
# Real programs under LD_PRELOAD=libgomalloc.so: each workload runs twice,
# without and with the library, in fresh directories; both runs must exit 0
# and print the same output. Ends with "real-programs: N passed, N failed"
# and exits non-zero if any failed.
#
# Workloads: a Python program building and dropping millions of objects
# (benches/preload/workload.py), Python's own test modules test_list,
# test_dict, test_set and test_threading, git (init, commits of thousands of
# files, gc, fsck), sqlite3 (a 100k-row table: inserts, indexes, queries,
# updates, vacuum), gcc compiling and linking C files (objects must be
# byte-identical), and the C allocation workload of benches/preload/.
#
# Usage: ffi/tests/real_programs.sh [workload...]   (default: all)
# Environment: GOMALLOC_LIB=path/to/libgomalloc.so skips building it.
# Installs sqlite3, git, gcc, python3 (and Python's test package) with
# apt-get when missing. About 3 minutes on 2 cores.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SELF="$ROOT/ffi/tests/real_programs.sh"
LIMIT=${REAL_PROGRAMS_TIMEOUT:-600}

# ---------------------------------------------------------------- workloads
# Each runs in the current directory, prints its result on stdout (only
# deterministic text) and exits non-zero on failure. LD_PRELOAD, when set,
# applies to every program it starts.

wl_python_objects() {
    "$PY" "$ROOT/benches/preload/workload.py" 3
}

wl_python_stdlib_tests() {
    # test_import_from_another_thread is left out: it requires that a fresh
    # `python -I` has not imported threading, which a site .pth file of some
    # Python installations (pyenv's here) does at startup, with or without
    # gomalloc.
    local out rc
    out=$("$PY" -m test test_list test_dict test_set test_threading \
        --ignore test_import_from_another_thread 2>&1)
    rc=$?
    # Durations and load averages differ from run to run: keep the verdicts.
    grep -E '^(== Tests result|All [0-9]+ tests OK|Total tests|Total test files|Result|[0-9]+ tests? (failed|skipped))' <<<"$out"
    if [ $rc -ne 0 ]; then
        printf '%s\n' "$out" | tail -40 >&2
    fi
    return $rc
}

wl_git() {
    export HOME=$PWD/home GIT_CONFIG_NOSYSTEM=1
    export GIT_AUTHOR_NAME=gomalloc GIT_AUTHOR_EMAIL=ci@gomalloc.invalid
    export GIT_COMMITTER_NAME=gomalloc GIT_COMMITTER_EMAIL=ci@gomalloc.invalid
    export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
    mkdir -p home
    git init -q -b main repo || return 1
    cd repo || return 1
    local d f i round
    for d in $(seq 0 29); do
        mkdir -p "dir$d"
        for f in $(seq 0 99); do
            # 3000 files of 40-140 lines.
            seq -f "dir $d file $f line %g: lorem ipsum dolor sit amet" 1 $((40 + (d * 7 + f) % 100)) >"dir$d/file$f.txt"
        done
    done
    git add -A && git commit -q -m "3000 files" || return 1
    for round in 1 2 3 4 5; do
        for i in $(seq 0 7 2999); do
            d=$((i / 100)) f=$((i % 100))
            echo "round $round changes file $i" >>"dir$d/file$f.txt"
        done
        git rm -q "dir$round/file$round.txt" || return 1
        git commit -q -am "round $round" || return 1
    done
    git gc -q || return 1
    git fsck --strict --no-progress || return 1
    git rev-parse HEAD
    git log --stat --format='%H %s' | sha256sum
    git ls-tree -r HEAD | sha256sum
    git diff HEAD~4 HEAD | sha256sum
    git grep -c "line 7:" | sha256sum
    git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
    git cat-file -p HEAD:dir9/file9.txt | tail -3
}

wl_sqlite3() {
    sqlite3 bench.db <<'SQL'
PRAGMA journal_mode = WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL, pad BLOB);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, 'name-' || x || '-' || hex(x * 7919 % 10007), x % 97, (x * 31 % 1000) / 7.0,
                     zeroblob(x % 200) FROM c;
COMMIT;
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(grp), round(sum(val), 3), sum(length(pad)) FROM t;
SELECT grp, count(*), round(avg(val), 4), max(name) FROM t GROUP BY grp ORDER BY grp LIMIT 12;
SELECT name FROM t WHERE name LIKE 'name-999%' ORDER BY name LIMIT 5;
SELECT id, name FROM t ORDER BY val DESC, name LIMIT 5;
UPDATE t SET val = val * 2, name = name || '-updated' WHERE grp < 10;
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), round(sum(val), 3) FROM t;
CREATE TABLE u AS SELECT grp, group_concat(id) AS ids FROM t GROUP BY grp;
SELECT grp, length(ids) FROM u ORDER BY grp LIMIT 5;
SELECT a.grp, count(*) FROM t a JOIN u b ON a.grp = b.grp WHERE a.id < 5000 GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 5;
SELECT count(*) FROM (SELECT DISTINCT substr(name, 1, 8) FROM t);
SELECT count(*) FROM t a WHERE a.id < 3000 AND EXISTS (SELECT 1 FROM t b WHERE b.grp = a.grp AND b.id > a.id + 90000);
VACUUM;
PRAGMA integrity_check;
SQL
}

wl_gcc() {
    # A generated C file of 400 functions plus the repository's C workload,
    # compiled with optimisation and linked: the objects must be identical
    # with and without gomalloc, and the program must print the same.
    local i
    {
        echo '#include <stdio.h>'
        echo '#include <string.h>'
        for i in $(seq 0 399); do
            cat <<EOF
struct s$i { int a[$((i % 13 + 1))]; double d; char name[$((i % 29 + 3))]; };
static int f$i(int x) {
    struct s$i v;
    memset(&v, 0, sizeof v);
    for (int k = 0; k < $((i % 13 + 1)); k++) v.a[k] = x * $((i + 1)) + k;
    switch (x % 7) {
    case 0: return v.a[0] + $i;
    case 1: return v.a[$((i % 13))] ^ $((i * 31));
    case 2: v.d = x * 0.5; return (int)(v.d * $((i % 5 + 1)));
    default: snprintf(v.name, sizeof v.name, "%d", x); return (int)strlen(v.name) + x;
    }
}
EOF
        done
        echo 'int main(void) {'
        echo '    long total = 0;'
        for i in $(seq 0 399); do echo "    total += f$i($i);"; done
        echo '    printf("total %ld\n", total);'
        echo '    return 0;'
        echo '}'
    } >gen.c
    gcc -O2 -c gen.c -o gen.o || return 1
    gcc -O2 -c "$ROOT/benches/preload/alloc_workload.c" -o work.o || return 1
    gcc gen.o -o gen || return 1
    sha256sum gen.o work.o | cut -d' ' -f1
    ./gen
}

wl_c_workload() {
    cc -O2 -pthread "$ROOT/benches/preload/alloc_workload.c" -o alloc_workload || return 1
    ./alloc_workload 1
}

WORKLOADS=(python_objects python_stdlib_tests git sqlite3 gcc c_workload)

# One workload, run by the script itself under `timeout`.
if [ "${1:-}" = "--run" ]; then
    "wl_$2"
    exit $?
fi

# ---------------------------------------------------------------- setup

need=()
for tool in sqlite3 git gcc python3; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
apt_updated=0
apt_install() {
    if [ $apt_updated = 0 ]; then
        apt-get update -qq >/dev/null || return 1
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt_install "${need[@]}" || echo "apt-get install ${need[*]} failed"
fi

# The interpreter itself, not a wrapper script (pyenv's shim is bash).
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3)
export PY
if ! "$PY" -c 'import test.libregrtest, test.test_list' >/dev/null 2>&1; then
    # Debian's python3 ships its test modules separately.
    ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    echo "installing: libpython$ver-testsuite (Python's test modules)"
    apt_install "libpython$ver-testsuite" || echo "could not install libpython$ver-testsuite"
fi

LIB=${GOMALLOC_LIB:-}
if [ -z "$LIB" ]; then
    LIB=$(cd "$ROOT" && cargo build --release -p gomalloc-ffi --message-format=json-render-diagnostics |
        grep -o '"[^"]*/libgomalloc\.so"' | tail -1 | tr -d '"')
fi
if [ -z "$LIB" ] || [ ! -f "$LIB" ]; then
    echo "libgomalloc.so not built"
    echo "real-programs: 0 passed, 1 failed"
    exit 1
fi
echo "library: $LIB"

# The library must really load and take over malloc.
if ! LD_PRELOAD=$LIB GOMALLOC_SHOW_STATS=1 "$PY" -c 'x = [str(i) for i in range(1000)]' 2>&1 | grep -q "gomalloc statistics"; then
    echo "LD_PRELOAD=$LIB does not load gomalloc"
    echo "real-programs: 0 passed, 1 failed"
    exit 1
fi

# ---------------------------------------------------------------- runs

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gomalloc-real.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
selected=("$@")
[ ${#selected[@]} -eq 0 ] && selected=("${WORKLOADS[@]}")

# run NAME FORM: runs a workload in $WORK/NAME-FORM; sets $secs.
run() {
    local name=$1 form=$2 dir="$WORK/$1-$2" t0 rc
    mkdir -p "$dir"
    t0=$(date +%s.%N)
    if [ "$form" = gomalloc ]; then
        local stats=1
        # Python's tests check that child interpreters print nothing on stderr.
        [ "$name" = python_stdlib_tests ] && stats=0
        (cd "$dir" && LD_PRELOAD=$LIB GOMALLOC_SHOW_STATS=$stats timeout "$LIMIT" "$SELF" --run "$name") \
            >"$dir.out" 2>"$dir.err"
    else
        (cd "$dir" && timeout "$LIMIT" "$SELF" --run "$name") >"$dir.out" 2>"$dir.err"
    fi
    rc=$?
    secs=$(echo "$(date +%s.%N) - $t0" | bc)
    return $rc
}

passed=0
failed=0
for name in "${selected[@]}"; do
    if ! declare -F "wl_$name" >/dev/null; then
        echo "FAIL $name: no such workload (have: ${WORKLOADS[*]})"
        failed=$((failed + 1))
        continue
    fi
    run "$name" base
    base_rc=$? base_secs=$secs
    run "$name" gomalloc
    gom_rc=$? gom_secs=$secs
    why=""
    if [ $base_rc -ne 0 ]; then
        why="fails without gomalloc too (exit $base_rc)"
    elif [ $gom_rc -ne 0 ]; then
        why="exit $gom_rc under gomalloc"
    elif ! cmp -s "$WORK/$name-base.out" "$WORK/$name-gomalloc.out"; then
        why="output differs"
    elif [ ! -s "$WORK/$name-base.out" ]; then
        why="printed nothing"
    elif [ "$name" != python_stdlib_tests ] && ! grep -q "gomalloc statistics" "$WORK/$name-gomalloc.err"; then
        why="gomalloc was not loaded (no statistics at exit)"
    fi
    if [ -z "$why" ]; then
        printf 'PASS %-20s %6.1fs without, %6.1fs with gomalloc (%s lines of output match)\n' \
            "$name" "$base_secs" "$gom_secs" "$(wc -l <"$WORK/$name-base.out")"
        passed=$((passed + 1))
    else
        printf 'FAIL %-20s %s\n' "$name" "$why"
        diff "$WORK/$name-base.out" "$WORK/$name-gomalloc.out" | head -20
        for form in base gomalloc; do
            echo "--- stderr $form (last lines)"
            grep -v -e '^gomalloc statistics' -e '^  ' "$WORK/$name-$form.err" | tail -15
        done
        failed=$((failed + 1))
    fi
done
echo "real-programs: $passed passed, $failed failed"
[ $failed -eq 0 ]
