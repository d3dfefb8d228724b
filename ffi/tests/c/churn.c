/* Thread churn: TOTAL threads, WAVE at a time, each allocating blocks of
 * many size classes (so it gets a thread cache holding spans) and one large
 * block, freeing most itself and leaving some for the main thread to free
 * after it has exited. After every wave the number of live thread caches
 * (gom_stats_get) must be back to what it was, and at the end the metadata
 * and span memory must not have grown with the number of threads: exited
 * threads' caches are flushed and their records reused. A pthread key
 * destructor of the program's own allocates and frees after gomalloc's has
 * flushed the thread's cache.
 *
 * Usage: churn [total-threads] */
#include "common.h"

#include <pthread.h>

#define WAVE 16
#define LEFT 8

static void *leftovers[WAVE][LEFT];

/* A key of the program's own, created after gomalloc's, whose destructor
 * runs after gomalloc has flushed the exiting thread's cache: it frees a
 * block and allocates one more (kept for the main thread to free). */
static pthread_key_t late_key;
static void *late_blocks[WAVE];

static void late_destructor(void *value) {
    int slot = (int)(intptr_t)((void **)value)[0];
    free(value);
    char *p = malloc(300);
    CHECK(p != NULL, "malloc in a pthread key destructor");
    memset(p, 7, 300);
    free(malloc(5000));
    late_blocks[slot] = p;
}

static void *worker(void *arg) {
    int slot = (int)(intptr_t)arg;
    void **late = malloc(64);
    CHECK(late != NULL, "malloc");
    late[0] = arg;
    pthread_setspecific(late_key, late);
    void *mine[64];
    for (int i = 0; i < 64; i++) {
        size_t n = (size_t)(i * 509) % 32768; /* spreads over the small classes */
        mine[i] = malloc(n);
        CHECK(mine[i] != NULL, "malloc(%zu)", n);
        memset(mine[i], i, n);
    }
    void *large = malloc(200000);
    CHECK(large != NULL, "large malloc");
    free(large);
    for (int i = 0; i < 64; i++) {
        if (i < LEFT)
            leftovers[slot][i] = mine[i];
        else
            free(mine[i]);
    }
    return NULL;
}

static struct gom_stats snapshot(void) {
    struct gom_stats st = {.size = sizeof st};
    CHECK(GOM(gom_stats_get)(&st) == 0, "gom_stats_get");
    return st;
}

int main(int argc, char **argv) {
    int total = argc > 1 ? atoi(argv[1]) : 4000;
    free(malloc(1)); /* the main thread's own cache (and gomalloc's exit key) */
    CHECK(pthread_key_create(&late_key, late_destructor) == 0, "pthread_key_create");
    struct gom_stats start = snapshot();
    struct gom_stats first = start;
    size_t max_caches = 0;
    for (int done = 0; done < total; done += WAVE) {
        pthread_t t[WAVE];
        for (int i = 0; i < WAVE; i++)
            CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");
        for (int i = 0; i < WAVE; i++) pthread_join(t[i], NULL);
        /* Free what the exited threads left: frees into spans whose owner
         * is gone. */
        for (int i = 0; i < WAVE; i++)
            for (int k = 0; k < LEFT; k++) free(leftovers[i][k]);
        for (int i = 0; i < WAVE; i++) {
            unsigned char *p = late_blocks[i];
            CHECK(p != NULL && p[0] == 7 && p[299] == 7, "block allocated by a key destructor");
            free(p);
            late_blocks[i] = NULL;
        }
        struct gom_stats st = snapshot();
        if (st.thread_caches > max_caches) max_caches = st.thread_caches;
        CHECK(st.thread_caches <= start.thread_caches, "after %d threads: %zu thread caches (started with %zu)",
              done + WAVE, st.thread_caches, start.thread_caches);
        if (done == 0) first = st;
    }
    struct gom_stats end = snapshot();
    printf("churn: %d threads; caches %zu (max after a wave %zu); metadata %zu -> %zu bytes; spans %zu -> %zu bytes\n",
           total, end.thread_caches, max_caches, first.bytes_metadata, end.bytes_metadata, first.bytes_in_spans,
           end.bytes_in_spans);
    CHECK(end.bytes_metadata <= first.bytes_metadata + (256 << 10), "metadata grew from %zu to %zu",
          first.bytes_metadata, end.bytes_metadata);
    CHECK(end.bytes_in_spans <= first.bytes_in_spans + (4 << 20), "span memory grew from %zu to %zu",
          first.bytes_in_spans, end.bytes_in_spans);
    puts("churn: ok");
    return 0;
}
