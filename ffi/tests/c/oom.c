/* Out of memory through the C entry points. The program lowers its address-
 * space limit (setrlimit(RLIMIT_AS)) to what it uses plus HEADROOM, so the OS
 * refuses gomalloc's next arenas, then checks that:
 * - every allocating function returns NULL (posix_memalign: ENOMEM) with
 *   errno = ENOMEM for a request that cannot fit, and a failed realloc or
 *   reallocarray leaves its block intact;
 * - filling the address space with large blocks, then with small ones, ends
 *   in NULL + ENOMEM, not a crash, and every block keeps its pattern;
 * - after frees, large and small requests succeed again, and after freeing
 *   everything the statistics are back where they started.
 * The Rust side (tests/oom.rs) covers the global-allocator path. */
#include "common.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)
#define HEADROOM (320 * MIB)
#define MAXBLOCKS 400000

static unsigned char *blocks[MAXBLOCKS];
static size_t sizes[MAXBLOCKS];
static size_t nblocks;

static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL, "open /proc/self/statm");
    unsigned long pages = 0;
    CHECK(fscanf(f, "%lu", &pages) == 1, "read /proc/self/statm");
    fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

static void limit_address_space(void) {
    struct rlimit rl = {.rlim_cur = vm_size() + HEADROOM, .rlim_max = RLIM_INFINITY};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit");
}

/* NULL with errno = ENOMEM. */
#define CHECK_ENOMEM(expr)                                                      \
    do {                                                                        \
        errno = 0;                                                              \
        void *p_ = (expr);                                                      \
        CHECK(p_ == NULL && errno == ENOMEM, "%s: %p, errno %d", #expr, p_, errno); \
    } while (0)

static void huge_requests_fail(void) {
    const size_t huge = (size_t)1 << 30;
    CHECK_ENOMEM(malloc(huge));
    CHECK_ENOMEM(malloc(3 * huge));
    CHECK_ENOMEM(calloc(1, huge));
    CHECK_ENOMEM(calloc(huge >> 12, 1 << 12));
    CHECK_ENOMEM(aligned_alloc(MIB, huge));
    CHECK_ENOMEM(memalign(4096, huge));
    CHECK_ENOMEM(valloc(huge));
    CHECK_ENOMEM(pvalloc(huge));
    CHECK_ENOMEM(GOM(gom_malloc)(huge));
    CHECK_ENOMEM(GOM(gom_malloc_aligned)(huge, 64));
    void *r = (void *)&r;
    CHECK(posix_memalign(&r, 4096, huge) == ENOMEM && r == (void *)&r, "posix_memalign");

    unsigned char *big = malloc(MIB);
    unsigned char *small = malloc(100);
    CHECK(big != NULL && small != NULL, "1 MiB and 100 B fit under the limit");
    gom_test_fill(big, MIB);
    gom_test_fill(small, 100);
    CHECK_ENOMEM(realloc(big, 2 * huge));
    CHECK_ENOMEM(realloc(small, huge));
    CHECK_ENOMEM(reallocarray(big, huge >> 10, 1 << 11));
    CHECK_ENOMEM(GOM(gom_realloc)(small, huge));
    CHECK(gom_test_verify(big, big, MIB, MIB) && gom_test_verify(small, small, 100, 100),
          "a failed realloc changed its block");
    CHECK(malloc_usable_size(big) >= MIB, "the failed realloc kept the block");
    free(big);
    free(small);
}

/* Allocates blocks of `size` bytes until malloc fails (with ENOMEM). */
static size_t fill(size_t size) {
    size_t n = 0;
    for (;;) {
        CHECK(nblocks < MAXBLOCKS, "%d blocks of %zu B fit: the limit does not bite", MAXBLOCKS, size);
        errno = 0;
        unsigned char *p = malloc(size);
        if (p == NULL) {
            CHECK(errno == ENOMEM, "malloc(%zu) failed with errno %d", size, errno);
            return n;
        }
        gom_test_fill(p, size);
        blocks[nblocks] = p;
        sizes[nblocks] = size;
        nblocks++;
        n++;
    }
}

static void free_block(size_t i) {
    CHECK(gom_test_verify(blocks[i], blocks[i], sizes[i], sizes[i]), "block %zu of %zu B changed", i, sizes[i]);
    free(blocks[i]);
    blocks[i] = NULL;
}

static size_t in_use(void) {
    struct gom_stats st = {.size = sizeof st};
    CHECK(GOM(gom_stats_get)(&st) == 0, "gom_stats_get");
    return st.bytes_in_use;
}

int main(void) {
    size_t start = in_use();
    printf("oom: limit = address space + %zu MiB\n", HEADROOM / MIB);
    fflush(stdout);
    limit_address_space();
    huge_requests_fail();

    size_t n_large = fill(4 * MIB);
    size_t n_small = fill(30000) + fill(4000) + fill(100) + fill(24);
    CHECK(n_large >= 10, "only %zu blocks of 4 MiB fit", n_large);
    CHECK_ENOMEM(malloc(4 * MIB));
    CHECK_ENOMEM(malloc(30000));

    /* Free every other large block: both kinds are served again. */
    for (size_t i = 0; i < n_large; i += 2) free_block(i);
    unsigned char *again = malloc(4 * MIB);
    CHECK(again != NULL, "a large block after frees");
    unsigned char *again_small = calloc(1, 100);
    CHECK(again_small != NULL && again_small[99] == 0, "a small block after frees");
    free(again);
    free(again_small);
    for (size_t i = 0; i < nblocks; i++) {
        if (blocks[i] != NULL) free_block(i);
    }
    size_t end = in_use();
    CHECK(end <= start + 65536, "%zu bytes in use after freeing everything, %zu at the start", end, start);

    /* The same heap serves a second round. */
    huge_requests_fail();
    nblocks = 0;
    size_t n2 = fill(4 * MIB);
    CHECK(n2 + 2 >= n_large, "after recovery only %zu large blocks fit (first time %zu)", n2, n_large);
    for (size_t i = 0; i < nblocks; i++) free_block(i);
    printf("oom: ok (%zu large + %zu small blocks at the limit, %zu large again)\n", n_large, n_small, n2);
    return 0;
}
