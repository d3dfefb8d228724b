/* gc_eval: a small expression interpreter whose trees, environments and
 * values all live in gomalloc's garbage-collected heap, used from C.
 *
 * Each iteration generates a random expression tree (numbers, variables,
 * +, -, *, let) from a seeded generator, evaluates it (every value is a
 * boxed number and every `let` conses an environment cell, as in a dynamic
 * language), and records the result in a rooted ring of the last results.
 * Everything else becomes garbage when the iteration's scope ends. A second
 * evaluator computes the same results directly from the generator, with no
 * GC involved, as the reference.
 *
 * Prints, in this order:
 *   result: N          (the GC interpreter's checksum)
 *   reference: N       (the direct evaluator's)
 *   gc: ...            (collector figures)
 *   VmHWM: N kB        (peak resident memory, from /proc/self/status)
 * and exits 1 if result and reference differ.
 *
 * Build: cc -O2 -Iinclude ffi/examples/gc_eval.c target/release/libgomalloc.a \
 *        -lpthread -ldl -lm -o gc_eval
 * Usage: gc_eval [iterations] [depth]       (default 3000 12)
 * ffi/examples/run_gc_eval.sh builds it, runs it and checks its output. */
#include <gomalloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op { NUM, VAR, ADD, SUB, MUL, LET };

/* A tree node. `a` and `b` are GC pointers (children; for LET, the bound
 * expression and the body); `n` is a number or a variable's index. */
struct expr {
    void *a;
    void *b;
    uint64_t op;
    uint64_t n;
};

/* An environment cell: a boxed value and the enclosing environment. */
struct env {
    void *value;
    void *next;
};

/* A boxed number: pointer-free, never traced. */
struct num {
    uint64_t v;
};

#define RING 16
struct ring {
    void *slot[RING];
};

static void expr_trace(void *obj, gom_gc_tracer *t) {
    struct expr *e = obj;
    gom_gc_mark(t, &e->a);
    gom_gc_mark(t, &e->b);
}

static void env_trace(void *obj, gom_gc_tracer *t) {
    struct env *e = obj;
    gom_gc_mark(t, &e->value);
    gom_gc_mark(t, &e->next);
}

static void ring_trace(void *obj, gom_gc_tracer *t) {
    struct ring *r = obj;
    for (int i = 0; i < RING; i++) gom_gc_mark(t, &r->slot[i]);
}

static const gom_gc_type expr_type = {sizeof(struct expr), 0, expr_trace, NULL, "expr"};
static const gom_gc_type env_type = {sizeof(struct env), 0, env_trace, NULL, "env"};
static const gom_gc_type num_type = {sizeof(struct num), 0, NULL, NULL, "num"};
static const gom_gc_type ring_type = {sizeof(struct ring), 0, ring_trace, NULL, "ring"};

static gom_gc_heap *heap;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The shape of the next node, drawn the same way by both evaluators. */
static enum op draw(uint64_t *s, int depth, int bound) {
    uint64_t r = next_rand(s);
    if (depth == 0) return bound > 0 && r % 3 == 0 ? VAR : NUM;
    switch (r % 8) {
    case 0: return bound > 0 ? VAR : NUM;
    case 1: return NUM;
    case 2: case 3: return ADD;
    case 4: return SUB;
    case 5: return MUL;
    default: return LET;
    }
}

/* ---- the GC interpreter ---- */

static struct expr *build(uint64_t *s, int depth, int bound) {
    struct expr *e = gom_gc_alloc(heap, &expr_type);
    e->op = draw(s, depth, bound);
    switch (e->op) {
    case NUM: e->n = next_rand(s) % 1000; break;
    case VAR: e->n = next_rand(s) % (uint64_t)bound; break;
    default: {
        struct expr *a = build(s, depth - 1, bound);
        gom_gc_write(heap, e, &e->a, a);
        struct expr *b = build(s, depth - 1, e->op == LET ? bound + 1 : bound);
        gom_gc_write(heap, e, &e->b, b);
    }
    }
    return e;
}

static struct num *box(uint64_t v) {
    struct num *n = gom_gc_alloc(heap, &num_type);
    n->v = v;
    return n;
}

static struct num *eval(const struct expr *e, struct env *env) {
    switch (e->op) {
    case NUM: return box(e->n);
    case VAR: {
        for (uint64_t i = 0; i < e->n; i++) env = env->next;
        return env->value;
    }
    case LET: {
        struct env *cell = gom_gc_alloc(heap, &env_type);
        gom_gc_write(heap, cell, &cell->value, eval(e->a, env));
        gom_gc_write(heap, cell, &cell->next, env);
        return eval(e->b, cell);
    }
    default: {
        uint64_t a = eval(e->a, env)->v, b = eval(e->b, env)->v;
        return box(e->op == ADD ? a + b : e->op == SUB ? a - b : a * b);
    }
    }
}

/* ---- the reference: the same draws, evaluated directly ---- */

static uint64_t direct(uint64_t *s, int depth, const uint64_t *env, int bound) {
    enum op op = draw(s, depth, bound);
    switch (op) {
    case NUM: return next_rand(s) % 1000;
    case VAR: return env[bound - 1 - (int)(next_rand(s) % (uint64_t)bound)];
    case LET: {
        uint64_t inner[64];
        memcpy(inner, env, sizeof(uint64_t) * (size_t)bound);
        inner[bound] = direct(s, depth - 1, env, bound);
        return direct(s, depth - 1, inner, bound + 1);
    }
    default: {
        uint64_t a = direct(s, depth - 1, env, bound);
        uint64_t b = direct(s, depth - 1, env, bound);
        return op == ADD ? a + b : op == SUB ? a - b : a * b;
    }
    }
}

static uint64_t mix(uint64_t acc, uint64_t v) { return (acc ^ v) * 0x100000001B3ull + 0x9E3779B97F4A7C15ull; }

static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    int iterations = argc > 1 ? atoi(argv[1]) : 3000;
    int depth = argc > 2 ? atoi(argv[2]) : 12;
    if (depth < 1 || depth > 60) {
        fprintf(stderr, "depth must be in 1..60\n");
        return 2;
    }

    heap = gom_gc_heap_new();
    gom_gc_enter(heap);
    gom_gc_root *ring = gom_gc_root_new(heap, gom_gc_alloc(heap, &ring_type));
    gom_gc_leave(heap);

    uint64_t result = 0, nodes_seed = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < iterations; i++) {
        /* One scope per iteration: the tree, the environments and the
         * intermediate values die with it; only the ring keeps a value. */
        gom_gc_enter(heap);
        uint64_t s = nodes_seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        struct expr *tree = build(&s, depth, 0);
        struct num *v = eval(tree, NULL);
        struct ring *r = gom_gc_root_get(heap, ring);
        gom_gc_write(heap, r, &r->slot[i % RING], v);
        result = mix(result, v->v);
        gom_gc_leave(heap);
    }
    /* The ring's values, read back after a full collection. */
    gom_gc_collect(heap);
    gom_gc_enter(heap);
    struct ring *r = gom_gc_root_get(heap, ring);
    for (int i = 0; i < RING && i < iterations; i++) result = mix(result, ((struct num *)r->slot[i])->v);
    gom_gc_leave(heap);

    uint64_t reference = 0, last[RING] = {0};
    for (int i = 0; i < iterations; i++) {
        uint64_t s = nodes_seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        uint64_t v = direct(&s, depth, NULL, 0);
        last[i % RING] = v;
        reference = mix(reference, v);
    }
    for (int i = 0; i < RING && i < iterations; i++) reference = mix(reference, last[i]);

    struct gom_gc_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    gom_gc_stats(heap, &st);
    printf("result: %llu\n", (unsigned long long)result);
    printf("reference: %llu\n", (unsigned long long)reference);
    printf("gc: %llu cycles, %llu objects (%llu MiB) allocated, %llu freed, %llu KiB live after the last cycle\n",
           (unsigned long long)st.cycles, (unsigned long long)st.allocated_objects,
           (unsigned long long)(st.allocated_bytes >> 20), (unsigned long long)st.freed_objects,
           (unsigned long long)(st.live_bytes >> 10));
    gom_gc_root_free(ring);
    gom_gc_heap_free(heap);
    printf("VmHWM: %ld kB\n", vm_hwm_kb());
    return result == reference ? 0 : 1;
}
