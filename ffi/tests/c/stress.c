/* Multi-threaded stress test: THREADS threads allocate blocks of random sizes
 * (mostly small, some large, some aligned, some zeroed), fill each with a
 * pattern derived from its address and size, resize some with realloc, and
 * free them either themselves or by handing them to another thread through a
 * mailbox, so a large share of frees are cross-thread. Every block's pattern
 * is verified before it is freed. At the end, the heap's bytes in use must be
 * back near where they started.
 *
 * Usage: stress [ops-per-thread] */
#include "common.h"

#include <malloc.h>
#include <pthread.h>

#define THREADS 6
#define SLOTS 512
#define MAILBOX 1024

struct block {
    unsigned char *p;  /* where the block is now */
    void *filled_at;   /* address the pattern was computed for */
    size_t size;       /* bytes filled */
};

/* A bounded queue of blocks for one receiving thread. */
struct mailbox {
    pthread_mutex_t lock;
    struct block items[MAILBOX];
    size_t head, count;
};

static struct mailbox boxes[THREADS];
static long ops_per_thread = 100000;

static size_t random_size(uint64_t *rng) {
    uint64_t r = gom_test_rand(rng);
    switch (r % 100) {
    case 0: return (size_t)(r >> 8) % (2 << 20);     /* up to 2 MiB */
    case 1 ... 4: return 32768 + (r >> 8) % 100000;  /* large */
    case 5 ... 19: return (r >> 8) % 32769;          /* any small */
    default: return (r >> 8) % 257;                  /* tiny, the common case */
    }
}

static void check_and_free(struct block *b, const char *how) {
    CHECK(gom_test_verify(b->p, b->filled_at, b->size, b->size), "block %p (%zu bytes) corrupted before %s free",
          (void *)b->p, b->size, how);
    free(b->p);
    b->p = NULL;
}

static int post(int to, struct block b) {
    struct mailbox *m = &boxes[to];
    int ok = 0;
    pthread_mutex_lock(&m->lock);
    if (m->count < MAILBOX) {
        m->items[(m->head + m->count++) % MAILBOX] = b;
        ok = 1;
    }
    pthread_mutex_unlock(&m->lock);
    return ok;
}

static void drain(int me, size_t max) {
    struct mailbox *m = &boxes[me];
    struct block got[64];
    size_t n = 0;
    pthread_mutex_lock(&m->lock);
    while (m->count > 0 && n < max && n < 64) {
        got[n++] = m->items[m->head];
        m->head = (m->head + 1) % MAILBOX;
        m->count--;
    }
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; i < n; i++) check_and_free(&got[i], "remote");
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(me + 1);
    struct block slots[SLOTS];
    memset(slots, 0, sizeof slots);
    for (long op = 0; op < ops_per_thread; op++) {
        struct block *b = &slots[gom_test_rand(&rng) % SLOTS];
        uint64_t r = gom_test_rand(&rng);
        if (b->p != NULL) {
            if (r % 8 == 0) {
                /* realloc: the kept prefix must survive the move. */
                size_t n = random_size(&rng);
                if (n == 0) n = 1;
                unsigned char *q = realloc(b->p, n);
                CHECK(q != NULL, "realloc(%zu)", n);
                size_t keep = b->size < n ? b->size : n;
                CHECK(gom_test_verify(q, b->filled_at, b->size, keep), "realloc %zu -> %zu lost data", b->size, n);
                gom_test_fill(q, n);
                *b = (struct block){q, q, n};
            } else if (r % 8 < 5) {
                int to = (int)((r >> 8) % THREADS);
                if (to == me || !post(to, *b)) check_and_free(b, "local");
                b->p = NULL;
            } else {
                check_and_free(b, "local");
            }
            continue;
        }
        size_t n = random_size(&rng);
        unsigned char *p;
        switch (r % 16) {
        case 0: {
            p = calloc(1, n);
            CHECK(p != NULL, "calloc(%zu)", n);
            for (size_t i = 0; i < n; i += 61) CHECK(p[i] == 0, "calloc(%zu) byte %zu not zero", n, i);
            break;
        }
        case 1: {
            size_t a = (size_t)16 << ((r >> 8) % 10); /* 16 .. 8192 */
            p = aligned_alloc(a, n);
            CHECK(p != NULL && ((uintptr_t)p & (a - 1)) == 0, "aligned_alloc(%zu, %zu) = %p", a, n, (void *)p);
            break;
        }
        default:
            p = malloc(n);
            CHECK(p != NULL, "malloc(%zu)", n);
        }
        CHECK(malloc_usable_size(p) >= n, "usable size");
        gom_test_fill(p, n);
        *b = (struct block){p, p, n};
        if (op % 64 == 0) drain(me, 64);
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) check_and_free(&slots[i], "final");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) ops_per_thread = atol(argv[1]);
    int (*stats_get)(struct gom_stats *) = GOM(gom_stats_get);
    struct gom_stats before = {.size = sizeof before};
    CHECK(stats_get(&before) == 0, "stats");
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&boxes[i].lock, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0, "create");
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        while (boxes[i].count) drain(i, 64);
    }
    struct gom_stats after = {.size = sizeof after};
    CHECK(stats_get(&after) == 0, "stats");
    printf("stress: %d threads x %ld ops; in use before %zu, after %zu bytes; caches %zu; mapped %zu MiB\n", THREADS,
           ops_per_thread, before.bytes_in_use, after.bytes_in_use, after.thread_caches, after.bytes_mapped >> 20);
    CHECK(after.bytes_in_use < before.bytes_in_use + (1 << 20), "bytes in use grew from %zu to %zu",
          before.bytes_in_use, after.bytes_in_use);
    CHECK(after.thread_caches <= 2, "%zu thread caches after all workers exited", after.thread_caches);
    puts("stress: ok");
    return 0;
}
