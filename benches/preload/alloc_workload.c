/* An allocation-heavy C workload with deterministic output, for timing
 * allocators under LD_PRELOAD (benches/preload/run.sh) and for checking that
 * a program's output does not change under libgomalloc.so
 * (ffi/tests/real_programs.sh).
 *
 * Phases, each run by THREADS threads at once:
 *   trees    binary search trees of nodes with strdup'ed keys, built, searched
 *            and freed (small blocks, LIFO-ish and random free order);
 *   buffers  buffers grown by realloc from a few bytes to megabytes, and
 *            calloc'ed tables;
 *   handoff  producer threads allocate messages of random sizes that the
 *            next thread frees (cross-thread frees);
 *   mixed    a random working set of blocks from 8 bytes to 256 KiB,
 *            replaced at random.
 * Prints one checksum line per phase.
 *
 * Usage: alloc_workload [scale]   (default 4; time grows linearly)
 * Build: cc -O2 -pthread alloc_workload.c -o alloc_workload */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4

static int scale = 4;

static uint64_t next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ---- trees ---- */

struct node {
    struct node *left, *right;
    char *key;
    uint64_t value;
};

static struct node *insert(struct node *root, const char *key, uint64_t value) {
    struct node **at = &root;
    while (*at) {
        int c = strcmp(key, (*at)->key);
        if (c == 0) {
            (*at)->value += value;
            return root;
        }
        at = c < 0 ? &(*at)->left : &(*at)->right;
    }
    struct node *n = xmalloc(sizeof *n);
    n->left = n->right = NULL;
    n->key = strdup(key);
    n->value = value;
    *at = n;
    return root;
}

static uint64_t sum_and_free(struct node *n) {
    uint64_t s = 0;
    while (n) {
        s += n->value + strlen(n->key);
        s += sum_and_free(n->left);
        struct node *right = n->right;
        free(n->key);
        free(n);
        n = right;
    }
    return s;
}

static uint64_t trees(uint64_t seed) {
    uint64_t total = 0;
    char key[64];
    for (int round = 0; round < 6 * scale; round++) {
        struct node *root = NULL;
        for (int i = 0; i < 40000; i++) {
            uint64_t r = next(&seed);
            snprintf(key, sizeof key, "k%llu-%.*s", (unsigned long long)(r % 100000), (int)(r >> 60),
                     "padding-padding-");
            root = insert(root, key, r & 0xFFFF);
        }
        total += sum_and_free(root);
    }
    return total;
}

/* ---- buffers ---- */

static uint64_t buffers(uint64_t seed) {
    uint64_t total = 0;
    for (int round = 0; round < 40 * scale; round++) {
        size_t cap = 16, len = 0;
        char *buf = xmalloc(cap);
        size_t target = 1000 + next(&seed) % (1 << 20);
        while (len < target) {
            size_t chunk = 1 + next(&seed) % 300;
            if (len + chunk > cap) {
                cap = (len + chunk) * 3 / 2;
                buf = realloc(buf, cap);
                if (!buf) exit(1);
            }
            memset(buf + len, (int)(chunk & 0x7F), chunk);
            len += chunk;
        }
        for (size_t i = 0; i < len; i += 4093) total += (unsigned char)buf[i];
        free(buf);
        size_t n = 1 + next(&seed) % 20000;
        uint32_t *table = calloc(n, sizeof *table);
        if (!table) exit(1);
        for (size_t i = 0; i < n; i += 7) table[i] = (uint32_t)i;
        for (size_t i = 0; i < n; i++) total += table[i];
        free(table);
    }
    return total;
}

/* ---- handoff ---- */

#define RING 4096

struct ring {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void *items[RING];
    size_t head, count;
    int done;
};

static struct ring rings[THREADS];

static void ring_put(struct ring *r, void *p) {
    pthread_mutex_lock(&r->lock);
    while (r->count == RING) pthread_cond_wait(&r->cond, &r->lock);
    r->items[(r->head + r->count++) % RING] = p;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* Takes up to max items; returns how many, 0 when the ring is done. */
static size_t ring_take(struct ring *r, void **out, size_t max) {
    pthread_mutex_lock(&r->lock);
    while (r->count == 0 && !r->done) pthread_cond_wait(&r->cond, &r->lock);
    size_t n = 0;
    while (r->count > 0 && n < max) {
        out[n++] = r->items[r->head];
        r->head = (r->head + 1) % RING;
        r->count--;
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return n;
}

static uint64_t consumed[THREADS];

/* Frees every message that arrives in ring `me` until the ring is done. */
static void *consumer(void *argp) {
    int me = (int)(intptr_t)argp;
    void *got[256];
    size_t n;
    while ((n = ring_take(&rings[me], got, 256)) > 0) {
        for (size_t i = 0; i < n; i++) {
            consumed[me] += *(uint32_t *)got[i];
            free(got[i]);
        }
    }
    return NULL;
}

/* Produces messages of random sizes into the next worker's ring. */
static uint64_t handoff(int me, uint64_t seed) {
    uint64_t produced = 0;
    struct ring *to = &rings[(me + 1) % THREADS];
    for (int i = 0; i < 100000 * scale; i++) {
        uint64_t r = next(&seed);
        size_t n = 4 + (r % 16 == 0 ? r % 8000 : r % 200);
        uint32_t *m = xmalloc(n);
        *m = (uint32_t)(r & 0xFF);
        produced += *m;
        ring_put(to, m);
    }
    return produced;
}

/* ---- mixed ---- */

static uint64_t mixed(uint64_t seed) {
    enum { SET = 4096 };
    void *set[SET] = {0};
    size_t sizes[SET] = {0};
    uint64_t total = 0;
    for (long i = 0; i < 250000L * scale; i++) {
        uint64_t r = next(&seed);
        size_t k = r % SET;
        if (set[k]) {
            total += ((unsigned char *)set[k])[sizes[k] - 1];
            free(set[k]);
        }
        size_t n = 8 << (r >> 59) % 16; /* 8 B .. 256 KiB, log-uniform */
        n += (r >> 20) % n;
        set[k] = xmalloc(n);
        sizes[k] = n;
        memset(set[k], (int)(r & 0xFF), n < 64 ? n : 64);
        ((unsigned char *)set[k])[n - 1] = (unsigned char)(r >> 8);
    }
    for (int k = 0; k < SET; k++) free(set[k]);
    return total;
}

/* ---- driver ---- */

struct job {
    int phase, me;
    uint64_t result;
};

static void *run_job(void *argp) {
    struct job *j = argp;
    uint64_t seed = 0x9E3779B97F4A7C15ull * (uint64_t)(j->me + 1) + (uint64_t)j->phase;
    switch (j->phase) {
    case 0: j->result = trees(seed); break;
    case 1: j->result = buffers(seed); break;
    case 2: j->result = handoff(j->me, seed); break;
    case 3: j->result = mixed(seed); break;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) scale = atoi(argv[1]);
    static const char *names[] = {"trees", "buffers", "handoff", "mixed"};
    for (int i = 0; i < THREADS; i++) {
        pthread_mutex_init(&rings[i].lock, NULL);
        pthread_cond_init(&rings[i].cond, NULL);
    }
    for (int phase = 0; phase < 4; phase++) {
        struct job jobs[THREADS];
        pthread_t t[THREADS], consumers[THREADS];
        if (phase == 2)
            for (int i = 0; i < THREADS; i++) pthread_create(&consumers[i], NULL, consumer, (void *)(intptr_t)i);
        for (int i = 0; i < THREADS; i++) {
            jobs[i] = (struct job){phase, i, 0};
            pthread_create(&t[i], NULL, run_job, &jobs[i]);
        }
        uint64_t sum = 0;
        for (int i = 0; i < THREADS; i++) {
            pthread_join(t[i], NULL);
            sum += jobs[i].result;
        }
        if (phase == 2) {
            /* Producers are done: let the consumers drain and exit. */
            uint64_t got = 0;
            for (int i = 0; i < THREADS; i++) {
                pthread_mutex_lock(&rings[i].lock);
                rings[i].done = 1;
                pthread_cond_broadcast(&rings[i].cond);
                pthread_mutex_unlock(&rings[i].lock);
            }
            for (int i = 0; i < THREADS; i++) {
                pthread_join(consumers[i], NULL);
                got += consumed[i];
            }
            if (got != sum) {
                fprintf(stderr, "handoff: produced %llu, consumed %llu\n", (unsigned long long)sum,
                        (unsigned long long)got);
                return 1;
            }
        }
        printf("%s %016llx\n", names[phase], (unsigned long long)sum);
    }
    return 0;
}
