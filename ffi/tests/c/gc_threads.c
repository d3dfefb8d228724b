/* Several threads mutate one rooted table of lists through gom_gc_write
 * while cycles run (forced by another thread, and automatic with a low
 * gc_percent). Every node carries a checksum of its value and every list
 * head the sum of its list, so a node freed while reachable (and reused) or
 * a lost write shows up as a wrong checksum when any thread walks a list.
 * At the end every object has been destroyed exactly once.
 *
 * Prints "gc_threads: ok" and exits 0. */
#include "gc.h"

#include <pthread.h>

#define THREADS 4
#define SLOTS 64
#define ROUNDS 25000
#define MAX_LEN 24

struct node {
    void *next;
    uint64_t value;
    uint64_t check;
    uint64_t sum; /* heads: the sum of the list's values */
};

struct table {
    void *slot[SLOTS];
};

static uint64_t hash(uint64_t v) {
    v ^= v >> 31;
    v *= 0x9E3779B97F4A7C15ull;
    return v ^ (v >> 29);
}

static long allocated, destroyed, verified;
static int stop;

static void node_trace(void *obj, gom_gc_tracer *t) { G.mark(t, &((struct node *)obj)->next); }

static void node_destroy(void *obj) {
    struct node *n = obj;
    CHECK(n->check == hash(n->value), "destroyed node corrupt");
    n->check = ~n->check; /* a second destruction or a later use would not match */
    __atomic_fetch_add(&destroyed, 1, __ATOMIC_RELAXED);
}

static void table_trace(void *obj, gom_gc_tracer *t) {
    struct table *tb = obj;
    for (int i = 0; i < SLOTS; i++) G.mark(t, &tb->slot[i]);
}

static void table_destroy(void *obj) {
    (void)obj;
    __atomic_fetch_add(&destroyed, 1, __ATOMIC_RELAXED);
}

static const gom_gc_type node_type = {sizeof(struct node), 0, node_trace, node_destroy, "node"};
static const gom_gc_type table_type = {sizeof(struct table), 0, table_trace, table_destroy, "table"};

static gom_gc_heap *heap;
static gom_gc_root *table_root;

static void verify(const struct node *head) {
    if (head == NULL) return;
    uint64_t sum = 0;
    int n = 0;
    for (const struct node *x = head; x != NULL; x = GC_LOAD(x->next), n++) {
        CHECK(n < MAX_LEN, "list loops or is too long");
        CHECK(x->check == hash(x->value), "node %p: checksum %llx for value %llu", (const void *)x,
              (unsigned long long)x->check, (unsigned long long)x->value);
        sum += x->value;
    }
    CHECK(sum == head->sum, "list %p: sum %llu, head says %llu", (const void *)head, (unsigned long long)sum,
          (unsigned long long)head->sum);
    __atomic_fetch_add(&verified, 1, __ATOMIC_RELAXED);
}

static void *mutator(void *arg) {
    uint64_t seed = 0x1234567 + (uint64_t)(uintptr_t)arg * 7919;
    long mine = 0;
    G.thread_attach(heap);
    for (int round = 0; round < ROUNDS; round++) {
        G.enter(heap);
        struct table *tb = G.root_get(heap, table_root);
        for (int op = 0; op < 8; op++) {
            /* Build a list, values and sum set before it is published. */
            int len = 1 + (int)(gom_test_rand(&seed) % MAX_LEN);
            struct node *head = NULL;
            uint64_t sum = 0;
            for (int i = 0; i < len; i++) {
                struct node *x = G.alloc(heap, &node_type);
                x->value = gom_test_rand(&seed) >> 8;
                x->check = hash(x->value);
                sum += x->value;
                G.write(heap, x, &x->next, head);
                head = x;
            }
            head->sum = sum;
            mine += len;
            /* Publish into a random slot; check another. */
            int i = (int)(gom_test_rand(&seed) % SLOTS);
            G.write(heap, tb, &tb->slot[i], head);
            verify(GC_LOAD(tb->slot[gom_test_rand(&seed) % SLOTS]));
            /* Sometimes drop a list. */
            if (gom_test_rand(&seed) % 4 == 0) G.write(heap, tb, &tb->slot[gom_test_rand(&seed) % SLOTS], NULL);
        }
        G.leave(heap);
    }
    __atomic_fetch_add(&allocated, mine, __ATOMIC_RELAXED);
    return NULL;
}

static void *collector(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        G.collect(heap);
        /* Between cycles, walk everything from the root in a scope. */
        G.enter(heap);
        struct table *tb = G.root_get(heap, table_root);
        for (int i = 0; i < SLOTS; i++) verify(GC_LOAD(tb->slot[i]));
        G.leave(heap);
    }
    return NULL;
}

int main(void) {
    gc_load();
    heap = G.heap_new();
    G.set_percent(heap, 20);
    G.enter(heap);
    struct table *tb = G.alloc(heap, &table_type);
    table_root = G.root_new(heap, tb);
    G.leave(heap);

    pthread_t m[THREADS], c;
    CHECK(pthread_create(&c, NULL, collector, NULL) == 0, "pthread_create");
    for (long i = 0; i < THREADS; i++) CHECK(pthread_create(&m[i], NULL, mutator, (void *)i) == 0, "pthread_create");
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(m[i], NULL) == 0, "pthread_join");
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    CHECK(pthread_join(c, NULL) == 0, "pthread_join");

    struct gom_gc_stats s = gc_stats(heap);
    CHECK(s.cycles >= 4, "cycles ran: %llu", (unsigned long long)s.cycles);
    G.enter(heap);
    tb = G.root_get(heap, table_root);
    for (int i = 0; i < SLOTS; i++) verify(GC_LOAD(tb->slot[i]));
    G.leave(heap);

    /* Everything dies once: unroot, collect, and count destructor calls. */
    G.root_free(table_root);
    G.collect(heap);
    long a = __atomic_load_n(&allocated, __ATOMIC_RELAXED) + 1;
    long d = __atomic_load_n(&destroyed, __ATOMIC_RELAXED);
    CHECK(d == a, "%ld objects allocated, %ld destroyed", a, d);
    G.heap_free(heap);
    CHECK(__atomic_load_n(&destroyed, __ATOMIC_RELAXED) == a, "no second destruction at shutdown");
    printf("gc_threads: ok (%llu cycles, %ld objects, %ld lists verified, %llu pauses, max %llu us)\n",
           (unsigned long long)s.cycles, a, __atomic_load_n(&verified, __ATOMIC_RELAXED),
           (unsigned long long)s.pause_count, (unsigned long long)(s.pause_max_ns / 1000));
    return 0;
}
