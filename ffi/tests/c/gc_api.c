/* Calls every gom_gc_* function and checks what it promises: objects live
 * while rooted and are freed (destructor called once) when not; writes go
 * through the barrier; weak handles clear; finalizers run once, see their
 * object whole and can resurrect it; statistics move, and a thread's
 * slow-path time counts its refills; gc_percent and the
 * memory limit change when cycles run.
 *
 * Without arguments: runs every check, prints "gc_api: ok", exits 0.
 * With one argument: performs one misuse that must stop the process with
 * SIGABRT and a one-line message (the harness checks both). */
#include "gc.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

/* ---- types ---- */

struct node {
    void *next;
    void *other;
    uint64_t value;
    uint64_t check; /* value's hash: a freed and reused node would not match */
};

static uint64_t hash(uint64_t v) {
    v ^= v >> 31;
    v *= 0x9E3779B97F4A7C15ull;
    return v ^ (v >> 29);
}

static long node_destroyed, leaf_destroyed, big_destroyed;

static void node_trace(void *obj, gom_gc_tracer *t) {
    struct node *n = obj;
    G.mark(t, &n->next);
    G.mark(t, &n->other);
}

static void node_destroy(void *obj) {
    struct node *n = obj;
    CHECK(n->check == hash(n->value), "destroyed node %p is corrupt", obj);
    n->check = 0;
    __atomic_fetch_add(&node_destroyed, 1, __ATOMIC_RELAXED);
}

static const gom_gc_type node_type = {sizeof(struct node), 0, node_trace, node_destroy, "node"};

/* Pointer-free, owning a malloc'ed buffer its destructor frees. */
struct leaf {
    char *text;
    uint64_t value;
};

static void leaf_destroy(void *obj) {
    struct leaf *l = obj;
    free(l->text);
    __atomic_fetch_add(&leaf_destroyed, 1, __ATOMIC_RELAXED);
}

static const gom_gc_type leaf_type = {sizeof(struct leaf), 8, NULL, leaf_destroy, "leaf"};

/* Large (past the size classes) and over-aligned, holding pointers. */
struct big {
    void *slots[8192];
};

static void big_trace(void *obj, gom_gc_tracer *t) {
    struct big *b = obj;
    for (size_t i = 0; i < 8192; i++) G.mark(t, &b->slots[i]);
}

static void big_destroy(void *obj) {
    (void)obj;
    __atomic_fetch_add(&big_destroyed, 1, __ATOMIC_RELAXED);
}

static const gom_gc_type big_type = {sizeof(struct big), 128, big_trace, big_destroy, "big"};
static const gom_gc_type aligned_type = {40, 64, NULL, NULL, "aligned"};
static const gom_gc_type empty_type = {0, 0, NULL, NULL, "empty"};

static long load(long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static struct node *new_node(gom_gc_heap *h, uint64_t value) {
    struct node *n = G.alloc(h, &node_type);
    CHECK(n != NULL && n->next == NULL && n->other == NULL && n->value == 0, "fresh node is zeroed");
    n->value = value;
    n->check = hash(value);
    return n;
}

/* A list of n nodes valued base..base+n-1, head first. */
static struct node *new_list(gom_gc_heap *h, uint64_t base, int n) {
    struct node *head = NULL;
    for (int i = n - 1; i >= 0; i--) {
        struct node *x = new_node(h, base + (uint64_t)i);
        G.write(h, x, &x->next, head);
        head = x;
    }
    return head;
}

static uint64_t check_list(const struct node *x, uint64_t base, int n) {
    uint64_t sum = 0;
    for (int i = 0; i < n; i++, x = x->next) {
        CHECK(x != NULL, "list ends early at %d of %d", i, n);
        CHECK(x->value == base + (uint64_t)i && x->check == hash(x->value), "node %d corrupt", i);
        sum += x->value;
    }
    CHECK(x == NULL, "list too long");
    return sum;
}

/* ---- finalizers ---- */

static gom_gc_heap *race_heap;

static long fin_calls;
static void *fin_seen;
static uint64_t fin_sum;
static gom_gc_root *resurrected;

static void finalizer_count(gom_gc_heap *h, void *obj, void *arg) {
    (void)h;
    CHECK(arg == &fin_calls, "finalizer argument");
    /* The object and what it reaches are intact. */
    fin_sum = check_list(obj, 500, 10);
    fin_seen = obj;
    __atomic_fetch_add(&fin_calls, 1, __ATOMIC_SEQ_CST);
}

static void finalizer_resurrect(gom_gc_heap *h, void *obj, void *arg) {
    (void)arg;
    resurrected = G.root_new(h, obj); /* inside the finalizer's scope */
    struct node *extra = new_node(h, 7);
    G.write(h, obj, &((struct node *)obj)->other, extra);
    __atomic_fetch_add(&fin_calls, 1, __ATOMIC_SEQ_CST);
}

/* ---- checks ---- */

static void test_roots(gom_gc_heap *h) {
    long n0 = load(&node_destroyed);
    G.enter(h);
    struct node *kept = new_list(h, 1000, 1000);
    gom_gc_root *root = G.root_new(h, kept);
    CHECK(G.root_get(h, root) == kept, "root_get");
    for (int i = 0; i < 1000; i++) new_node(h, (uint64_t)i); /* garbage */
    G.leave(h);

    G.collect(h);
    CHECK(load(&node_destroyed) - n0 == 1000, "garbage freed: %ld destructor calls, want 1000",
          load(&node_destroyed) - n0);
    G.enter(h);
    struct node *head = G.root_get(h, root);
    CHECK(head == kept, "objects do not move");
    CHECK(check_list(head, 1000, 1000) == 1000 * 1000 + 999 * 1000 / 2, "rooted list intact");
    /* Cut the list after 10 nodes through the barrier: 990 become garbage. */
    struct node *tenth = head;
    for (int i = 0; i < 9; i++) tenth = tenth->next;
    G.write(h, tenth, &tenth->next, NULL);
    G.leave(h);
    G.collect(h);
    CHECK(load(&node_destroyed) - n0 == 1990, "cut tail freed: %ld", load(&node_destroyed) - n0);

    /* root_set: the old list dies, the new one lives. */
    G.enter(h);
    struct node *other = new_list(h, 2000, 5);
    G.root_set(h, root, other);
    CHECK(G.root_get(h, root) == other, "root_set");
    G.leave(h);
    G.collect(h);
    CHECK(load(&node_destroyed) - n0 == 2000, "old root target freed: %ld", load(&node_destroyed) - n0);
    G.enter(h);
    check_list(G.root_get(h, root), 2000, 5);
    G.leave(h);

    G.root_free(root);
    G.root_free(NULL);
    G.collect(h);
    CHECK(load(&node_destroyed) - n0 == 2005, "unrooted list freed: %ld", load(&node_destroyed) - n0);
}

static void test_leaf_big_aligned(gom_gc_heap *h) {
    long l0 = load(&leaf_destroyed), b0 = load(&big_destroyed), n0 = load(&node_destroyed);
    G.enter(h);
    struct big *b = G.alloc(h, &big_type);
    CHECK(((uintptr_t)b & 127) == 0, "big object aligned to 128: %p", (void *)b);
    gom_gc_root *root = G.root_new(h, b);
    for (size_t i = 0; i < 8192; i += 97) {
        struct node *x = new_node(h, i);
        G.write(h, b, &b->slots[i], x);
    }
    for (int i = 0; i < 100; i++) {
        struct leaf *l = G.alloc(h, &leaf_type);
        l->text = strdup("owned by a GC object");
        l->value = (uint64_t)i;
    }
    void *a = G.alloc(h, &aligned_type);
    CHECK(((uintptr_t)a & 63) == 0, "aligned object: %p", a);
    void *e = G.alloc(h, &empty_type);
    CHECK(e != NULL, "empty object");
    gom_gc_root *re = G.root_new(h, e); /* an empty object is still an object */
    CHECK(G.root_get(h, re) == e, "root of an empty object");
    G.root_free(re);
    G.leave(h);
    G.collect(h);
    CHECK(load(&leaf_destroyed) - l0 == 100, "pointer-free objects freed with their destructor");
    CHECK(load(&big_destroyed) == b0 && load(&node_destroyed) == n0, "big object and its children live");
    G.enter(h);
    b = G.root_get(h, root);
    for (size_t i = 0; i < 8192; i++) {
        struct node *x = b->slots[i];
        if (i % 97 == 0)
            CHECK(x != NULL && x->value == i && x->check == hash(i), "slot %zu", i);
        else
            CHECK(x == NULL, "slot %zu", i);
    }
    G.leave(h);
    G.root_free(root);
    G.collect(h);
    CHECK(load(&big_destroyed) - b0 == 1, "big object freed");
    CHECK(load(&node_destroyed) - n0 == (8192 + 96) / 97, "its children freed: %ld", load(&node_destroyed) - n0);
}

static void test_weak(gom_gc_heap *h) {
    G.enter(h);
    struct node *x = new_node(h, 42);
    gom_gc_root *root = G.root_new(h, x);
    gom_gc_weak *w = G.weak_new(h, x);
    gom_gc_weak *w_dead = G.weak_new(h, new_node(h, 43));
    CHECK(G.weak_get(h, w) == x, "weak_get while live");
    G.leave(h);
    uint64_t cleared0 = gc_stats(h).weak_cleared;
    G.collect(h);
    G.enter(h);
    CHECK(G.weak_get(h, w) == x, "weak handle to a rooted object survives a cycle");
    CHECK(G.weak_get(h, w_dead) == NULL, "weak handle to garbage is cleared");
    G.leave(h);
    G.root_free(root);
    G.collect(h);
    G.enter(h);
    CHECK(G.weak_get(h, w) == NULL, "weak handle cleared once unrooted");
    G.leave(h);
    CHECK(gc_stats(h).weak_cleared - cleared0 == 2, "weak_cleared counts both");
    G.weak_free(w);
    G.weak_free(w_dead);
    G.weak_free(NULL);
}

static void test_finalizers(gom_gc_heap *h) {
    long n0 = load(&node_destroyed);
    G.enter(h);
    struct node *f = new_list(h, 500, 10);
    CHECK(G.set_finalizer(h, f, finalizer_count, &fin_calls) == 0, "set_finalizer");
    CHECK(G.set_finalizer(h, f, finalizer_count, &fin_calls) == EEXIST, "second finalizer: EEXIST");
    struct node *g = new_node(h, 9);
    CHECK(G.set_finalizer(h, g, finalizer_count, &fin_calls) == 0, "set_finalizer g");
    CHECK(G.set_finalizer(h, g, NULL, NULL) == 0, "clear_finalizer");
    CHECK(G.set_finalizer(h, g, NULL, NULL) == ENOENT, "clear again: ENOENT");
    CHECK(gc_stats(h).finalizers_registered == 1, "one registered");
    G.leave(h);

    G.collect(h);
    G.wait_finalizers(h);
    CHECK(load(&fin_calls) == 1 && fin_seen == f, "finalizer ran once, on its object");
    CHECK(fin_sum == 500 * 10 + 45, "finalizer saw its list whole");
    /* g (no finalizer any more) is freed; f and its list survive this cycle. */
    CHECK(load(&node_destroyed) - n0 == 1, "only g freed: %ld", load(&node_destroyed) - n0);
    G.collect(h);
    G.wait_finalizers(h);
    CHECK(load(&node_destroyed) - n0 == 11, "finalized list freed at the next cycle: %ld",
          load(&node_destroyed) - n0);
    CHECK(load(&fin_calls) == 1, "finalizer not run again");

    /* Resurrection: the finalizer roots its object. */
    G.enter(h);
    struct node *r = new_node(h, 77);
    CHECK(G.set_finalizer(h, r, finalizer_resurrect, NULL) == 0, "set_finalizer r");
    G.leave(h);
    G.collect(h);
    G.wait_finalizers(h);
    CHECK(load(&fin_calls) == 2 && resurrected != NULL, "resurrecting finalizer ran");
    G.collect(h);
    G.enter(h);
    struct node *back = G.root_get(h, resurrected);
    CHECK(back == r && back->value == 77 && back->check == hash(77), "resurrected object intact");
    struct node *extra = back->other;
    CHECK(extra && extra->value == 7 && extra->check == hash(7), "object stored by the finalizer");
    G.leave(h);
    long before = load(&node_destroyed);
    G.root_free(resurrected);
    G.collect(h);
    G.wait_finalizers(h);
    CHECK(load(&node_destroyed) - before == 2, "resurrected object freed once unrooted");
    CHECK(load(&fin_calls) == 2, "a finalizer runs once");
    struct gom_gc_stats s = gc_stats(h);
    CHECK(s.finalizers_run == 2 && s.finalizers_queued == 2 && s.finalizers_ready == 0, "finalizer stats");
}

/* Allocates about `mb` MiB of garbage in short scopes. */
static void churn(gom_gc_heap *h, int mb) {
    for (int round = 0; round < mb; round++) {
        G.enter(h);
        for (int i = 0; i < (1 << 20) / 48; i++) new_node(h, (uint64_t)i); /* 48-byte objects */
        G.leave(h);
    }
}

/* Waits (at most 20 s) for an automatic cycle past `cycles`. */
static int cycle_after(gom_gc_heap *h, uint64_t cycles) {
    for (int i = 0; i < 2000; i++) {
        if (gc_stats(h).cycles > cycles) return 1;
        usleep(10000);
        churn(h, 1);
    }
    return 0;
}

static void test_pacing_and_stats(gom_gc_heap *h) {
    struct gom_gc_stats s0 = gc_stats(h);
    CHECK(s0.allocated_objects > 0 && s0.allocated_bytes > 0, "allocation counted");
    CHECK(s0.cycles >= s0.forced_cycles && s0.forced_cycles >= 10, "forced cycles counted: %llu",
          (unsigned long long)s0.forced_cycles);
    CHECK(s0.freed_objects > 0 && s0.freed_bytes > 0, "sweeping counted");
    CHECK(s0.gc_percent == 100 && s0.memory_limit == UINT64_MAX, "default settings");
    CHECK(s0.heap_goal >= 4 << 20, "goal floor");
    CHECK(s0.mark_cpu_ns > 0 && s0.last_cycle_ns > 0, "cycle times");

    /* Versioned by size: a caller with a smaller struct gets what fits. */
    struct gom_gc_stats small;
    memset(&small, 0xff, sizeof small);
    small.size = 3 * sizeof(uint64_t) + 4;
    CHECK(G.stats(h, &small) == 0 && small.size == 3 * sizeof(uint64_t), "partial fill: %llu",
          (unsigned long long)small.size);
    CHECK(small.forced_cycles == s0.forced_cycles && small.live_bytes == UINT64_MAX, "only whole fields filled");
    small.size = 4;
    CHECK(G.stats(h, &small) == EINVAL && G.stats(h, NULL) == EINVAL, "EINVAL");

    /* gc_percent off: no automatic cycle however much is allocated. */
    CHECK(G.set_percent(h, -1) == 100, "set_percent returns the old value");
    CHECK(gc_stats(h).gc_percent == -1, "gc_percent in stats");
    uint64_t c = gc_stats(h).cycles;
    churn(h, 48);
    struct gom_gc_stats off = gc_stats(h);
    CHECK(off.cycles == c, "cycles ran with gc_percent off: %llu -> %llu", (unsigned long long)c,
          (unsigned long long)off.cycles);
    CHECK(off.in_use_bytes >= 40 << 20, "garbage piles up with gc_percent off: %llu",
          (unsigned long long)off.in_use_bytes);

    /* ... but the memory limit still starts cycles. */
    CHECK(G.set_memory_limit(h, 16 << 20) == SIZE_MAX, "set_memory_limit returns the old value");
    CHECK(gc_stats(h).memory_limit == 16 << 20, "memory_limit in stats");
    CHECK(cycle_after(h, c), "no cycle under the memory limit with gc_percent off");
    CHECK(G.set_memory_limit(h, SIZE_MAX) == 16 << 20, "limit back to none");

    /* gc_percent on again: allocation starts cycles. */
    CHECK(G.set_percent(h, 50) == -1, "set_percent");
    c = gc_stats(h).cycles;
    CHECK(cycle_after(h, c), "no automatic cycle with gc_percent 50");
    CHECK(G.set_percent(h, 100) == 50, "set_percent");
    struct gom_gc_stats s1 = gc_stats(h);
    CHECK(s1.allocated_objects > s0.allocated_objects && s1.freed_objects > s0.freed_objects, "stats moved");
    CHECK(s1.cycles > s1.forced_cycles, "automatic cycles counted");
}

static void *thread_main(void *arg) {
    gom_gc_heap *h = arg;
    CHECK(G.thread_slow_path_ns() == 0, "a new thread has spent no time in GC slow paths");
    G.thread_attach(h);
    G.enter(h);
    struct node *x = new_list(h, 300, 50);
    /* Its first allocations refilled an empty cache. */
    CHECK(G.thread_slow_path_ns() > 0, "refills counted in the thread's slow-path time");
    gom_gc_root *r = G.root_new(h, x);
    G.leave(h);
    G.thread_detach(h);
    G.enter(h); /* registers again */
    check_list(G.root_get(h, r), 300, 50);
    G.leave(h);
    G.thread_detach(h);
    return r;
}

static void test_threads_and_detach(gom_gc_heap *h) {
    pthread_t t;
    void *r;
    CHECK(pthread_create(&t, NULL, thread_main, h) == 0, "pthread_create");
    CHECK(pthread_join(t, &r) == 0, "pthread_join");
    G.collect(h);
    G.enter(h);
    check_list(G.root_get(h, r), 300, 50);
    G.leave(h);
    long n0 = load(&node_destroyed);
    G.root_free(r);
    G.collect(h);
    CHECK(load(&node_destroyed) - n0 == 50, "the thread's list freed once unrooted");
}

/* A thread that returns inside a scope leaves it as it exits: its spans go
 * back and are swept again, so their mark bits never hide a live object
 * from a later cycle (they did: y, reachable from a root, was freed). */
static gom_gc_root *exit_root;
static void *exit_inside_scope(void *arg) {
    gom_gc_heap *h = arg;
    G.enter(h);
    exit_root = G.root_new(h, new_node(h, 1));
    for (int i = 0; i < 10; i++) new_node(h, 100 + (uint64_t)i); /* garbage in the same span */
    return NULL; /* no gom_gc_leave */
}

static void test_thread_exit_inside_scope(gom_gc_heap *h) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, exit_inside_scope, h) == 0, "pthread_create");
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
    long n0 = load(&node_destroyed);
    G.enter(h);
    struct node *x = G.root_get(h, exit_root);
    struct node *y = new_node(h, 2);
    G.write(h, x, &x->next, y);
    G.leave(h);
    for (int c = 0; c < 4; c++) {
        G.collect(h);
        G.enter(h);
        x = G.root_get(h, exit_root);
        CHECK(x->value == 1 && x->check == hash(1), "rooted x corrupt after cycle %d", c);
        y = x->next;
        CHECK(y != NULL && y->value == 2 && y->check == hash(2), "y, reachable from a root, freed at cycle %d", c);
        for (int i = 0; i < 1000; i++) new_node(h, 5000 + (uint64_t)i); /* reuses freed slots */
        G.leave(h);
    }
    CHECK(load(&node_destroyed) - n0 >= 10, "the exited thread's garbage was never freed");
    G.root_free(exit_root);
    G.collect(h);
}

/* Two threads set a finalizer on one object at once: one gets 0, the other
 * EEXIST (the check and the registration were two lock holds, and both
 * could pass the check; the second then stopped the process). Two racers
 * live through all the rounds, released together by a generation number. */
enum { RACE_ROUNDS = 20000 };
static struct node *race_object;
static int race_generation, race_done[2], race_result[2];
static void race_finalizer(gom_gc_heap *h, void *obj, void *arg) { (void)h, (void)obj, (void)arg; }
static void *set_finalizer_racer(void *arg) {
    int me = (int)(intptr_t)arg, seen = 0;
    for (;;) {
        int g;
        while ((g = __atomic_load_n(&race_generation, __ATOMIC_ACQUIRE)) == seen) sched_yield();
        if (g < 0) return NULL;
        seen = g;
        G.enter(race_heap);
        race_result[me] = G.set_finalizer(race_heap, race_object, race_finalizer, NULL);
        G.leave(race_heap);
        __atomic_store_n(&race_done[me], g, __ATOMIC_RELEASE);
    }
}

static void test_set_finalizer_race(gom_gc_heap *h) {
    race_heap = h;
    G.enter(h);
    gom_gc_root *keep = G.root_new(h, new_node(h, 1));
    G.leave(h);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, set_finalizer_racer, (void *)(intptr_t)i) == 0, "create");
    for (int g = 1; g <= RACE_ROUNDS; g++) {
        G.enter(h);
        race_object = new_node(h, 42);
        G.root_set(h, keep, race_object);
        G.leave(h);
        __atomic_store_n(&race_generation, g, __ATOMIC_RELEASE);
        while (__atomic_load_n(&race_done[0], __ATOMIC_ACQUIRE) != g || __atomic_load_n(&race_done[1], __ATOMIC_ACQUIRE) != g)
            sched_yield();
        int zeros = (race_result[0] == 0) + (race_result[1] == 0);
        int exists = (race_result[0] == EEXIST) + (race_result[1] == EEXIST);
        CHECK(zeros == 1 && exists == 1, "round %d: set_finalizer returned %d and %d", g, race_result[0], race_result[1]);
        G.enter(h);
        CHECK(G.set_finalizer(h, race_object, NULL, NULL) == 0, "clear the raced finalizer");
        G.leave(h);
    }
    __atomic_store_n(&race_generation, -1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0, "join");
    G.root_free(keep);
    G.collect(h); /* the next test counts destructors from a clean heap */
}

/* Two heaps side by side; a root keeps its heap alive after heap_free. */
static void test_two_heaps(gom_gc_heap *h) {
    gom_gc_heap *h2 = G.heap_new();
    long n0 = load(&node_destroyed);
    G.enter(h);
    G.enter(h2);
    struct node *a = new_list(h, 1, 3);
    struct node *b = new_list(h2, 2, 3);
    gom_gc_root *ra = G.root_new(h, a);
    gom_gc_root *rb = G.root_new(h2, b);
    G.leave(h2);
    G.leave(h);
    G.collect(h2);
    G.heap_free(h2); /* rb keeps the second heap */
    G.collect(h);
    CHECK(load(&node_destroyed) == n0, "nothing freed");
    G.root_free(rb); /* the second heap shuts down: its 3 nodes are destroyed */
    CHECK(load(&node_destroyed) - n0 == 3, "last root of a freed heap destroys its objects: %ld",
          load(&node_destroyed) - n0);
    G.enter(h);
    check_list(G.root_get(h, ra), 1, 3);
    G.leave(h);
    G.root_free(ra);
}

/* ---- misuse ---- */

static int other_inside;
static void *enter_and_wait(void *arg) {
    G.enter(arg);
    __atomic_store_n(&other_inside, 1, __ATOMIC_RELEASE);
    for (;;) pause();
    return NULL;
}

static gom_gc_heap *collecting_heap;
static void collecting_destroy(void *obj) {
    (void)obj;
    G.collect(collecting_heap);
}
static const gom_gc_type collecting_type = {16, 8, NULL, collecting_destroy, "collecting"};

static int misuse(const char *mode) {
    gom_gc_heap *h = G.heap_new();
    if (strcmp(mode, "alloc-outside-scope") == 0) {
        G.alloc(h, &node_type);
    } else if (strcmp(mode, "null-heap") == 0) {
        G.enter(NULL);
    } else if (strcmp(mode, "nested-enter") == 0) {
        G.enter(h);
        G.enter(h);
    } else if (strcmp(mode, "leave-outside") == 0) {
        G.leave(h);
    } else if (strcmp(mode, "collect-in-scope") == 0) {
        G.enter(h);
        G.collect(h);
    } else if (strcmp(mode, "write-wrong-heap") == 0) {
        gom_gc_heap *h2 = G.heap_new();
        G.enter(h);
        G.enter(h2);
        struct node *a = new_node(h, 1);
        struct node *b = new_node(h2, 2);
        G.write(h, a, &a->next, b);
    } else if (strcmp(mode, "root-wrong-heap") == 0) {
        gom_gc_heap *h2 = G.heap_new();
        G.enter(h);
        G.enter(h2);
        gom_gc_root *r = G.root_new(h, new_node(h, 1));
        G.root_get(h2, r);
    } else if (strcmp(mode, "weak-wrong-heap") == 0) {
        gom_gc_heap *h2 = G.heap_new();
        G.enter(h);
        G.enter(h2);
        gom_gc_weak *w = G.weak_new(h, new_node(h, 1));
        G.weak_get(h2, w);
    } else if (strcmp(mode, "write-leaf-object") == 0) {
        G.enter(h);
        struct leaf *l = G.alloc(h, &leaf_type);
        G.write(h, l, (void **)&l->text, new_node(h, 1));
    } else if (strcmp(mode, "free-while-other-inside") == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, enter_and_wait, h) == 0, "pthread_create");
        while (!__atomic_load_n(&other_inside, __ATOMIC_ACQUIRE)) sched_yield();
        G.heap_free(h);
    } else if (strcmp(mode, "write-bad-slot") == 0) {
        G.enter(h);
        struct node *a = new_node(h, 1);
        struct node *b = new_node(h, 2);
        G.write(h, a, (void **)&a->check + 1, b);
    } else if (strcmp(mode, "collect-in-destroy") == 0) {
        collecting_heap = h;
        G.enter(h);
        G.alloc(h, &collecting_type);
        G.leave(h);
        G.collect(h);
    } else if (strcmp(mode, "write-not-object") == 0) {
        G.enter(h);
        struct node *a = new_node(h, 1);
        void *m = malloc(64);
        G.write(h, a, &a->next, m);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    fprintf(stderr, "misuse %s was not caught\n", mode);
    return 1;
}

int main(int argc, char **argv) {
    gc_load();
    if (argc > 1) return misuse(argv[1]);
    gom_gc_heap *h = G.heap_new();
    CHECK(h != NULL, "heap_new");
    G.thread_attach(h);
    test_roots(h);
    test_leaf_big_aligned(h);
    test_weak(h);
    test_finalizers(h);
    test_threads_and_detach(h);
    test_thread_exit_inside_scope(h);
    test_set_finalizer_race(h);
    test_two_heaps(h);
    test_pacing_and_stats(h);

    /* Shutdown destroys what is left, rooted or not. */
    G.enter(h);
    struct node *x = new_list(h, 0, 100);
    gom_gc_root *r = G.root_new(h, x);
    G.leave(h);
    G.collect(h);
    long n0 = load(&node_destroyed);
    struct gom_gc_stats s = gc_stats(h);
    CHECK(s.roots == 1, "one root: %llu", (unsigned long long)s.roots);
    G.root_free(r);
    G.heap_free(h);
    CHECK(load(&node_destroyed) - n0 >= 100, "heap_free destroys every object");
    printf("gc_api: ok (%llu cycles, %llu objects allocated)\n", (unsigned long long)s.cycles,
           (unsigned long long)s.allocated_objects);
    return 0;
}
