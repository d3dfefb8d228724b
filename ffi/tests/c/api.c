/* Calls every symbol libgomalloc exports and checks results, errno and edge
 * cases: the malloc family with glibc's semantics, glibc's __libc_* names,
 * the C++ operators by mangled name, and the gom_* API.
 *
 * Without arguments: runs every check, prints "api: ok", exits 0.
 * With one argument: performs one misuse that must stop the process (the
 * harness expects SIGABRT and a message), or "free-foreign", which must be
 * ignored (with a message under GOMALLOC_VERBOSE=1). */
#include "common.h"

#include <malloc.h>
#include <stdalign.h>
#include <unistd.h>

/* Not declared by glibc's headers any more, or at all. */
void cfree(void *p);
void free_sized(void *p, size_t size);                          /* C23 */
void free_aligned_sized(void *p, size_t align, size_t size);    /* C23 */
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

/* C++ operators, by their mangled names (nothrow_t is passed by reference). */
void *_Znwm(size_t size);
void *_Znam(size_t size);
void *_ZnwmRKSt9nothrow_t(size_t size, const void *nt);
void *_ZnamRKSt9nothrow_t(size_t size, const void *nt);
void *_ZnwmSt11align_val_t(size_t size, size_t align);
void *_ZnamSt11align_val_t(size_t size, size_t align);
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, const void *nt);
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t align, const void *nt);
void _ZdlPv(void *p);
void _ZdaPv(void *p);
void _ZdlPvm(void *p, size_t size);
void _ZdaPvm(void *p, size_t size);
void _ZdlPvRKSt9nothrow_t(void *p, const void *nt);
void _ZdaPvRKSt9nothrow_t(void *p, const void *nt);
void _ZdlPvSt11align_val_t(void *p, size_t align);
void _ZdaPvSt11align_val_t(void *p, size_t align);
void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t align);
void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t align);
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const void *nt);
void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t align, const void *nt);

/* Sizes hidden from the compiler, which would reject the calls as too large. */
static volatile size_t huge_value = SIZE_MAX;
static volatile size_t huge_2_32 = (size_t)1 << 32;
#define HUGE ((size_t)huge_value)
#define HUGE_2_32 ((size_t)huge_2_32)

static const char nothrow_tag = 0; /* stands in for std::nothrow */
static unsigned char static_buffer[256]; /* memory gomalloc did not allocate */

/* Sizes covering every small class boundary region and large objects. */
static const size_t sizes[] = {0,    1,    7,    8,    9,     15,    16,    17,     24,     25,     31,
                               32,   33,   48,   64,   100,   127,   128,   129,    255,    256,    257,
                               511,  512,  513,  1000, 1024,  2048,  4095,  4096,   4097,   8191,   8192,
                               8193, 9000, 16384, 32767, 32768, 32769, 65536, 100000, 1 << 20, 3 << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static int aligned_to(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Checks a fresh block: ours, usable size at least size, fillable. */
static void check_block(void *p, size_t size, size_t align, const char *what) {
    CHECK(p != NULL, "%s(%zu) returned NULL", what, size);
    CHECK(aligned_to(p, align), "%s(%zu) = %p is not aligned to %zu", what, size, p, align);
    size_t usable = malloc_usable_size(p);
    CHECK(usable >= size && usable > 0, "%s(%zu): usable size %zu", what, size, usable);
    CHECK(GOM(gom_usable_size)(p) == usable, "%s: gom_usable_size disagrees", what);
    gom_test_fill(p, usable);
    CHECK(gom_test_verify(p, p, usable, usable), "%s: pattern", what);
}

static void test_malloc_free(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b, "malloc(0) must give unique blocks");
    CHECK(gom_test_is_ours(a), "malloc is not gomalloc's");
    /* libc's own allocations come from gomalloc too. */
    char *dup = strdup("libc allocates through the override");
    CHECK(dup != NULL && gom_test_is_ours(dup), "strdup is not served by gomalloc");
    free(dup);
    free(a);
    free(b);
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        void *p = malloc(n);
        /* Fundamental alignment for every object that fits the request. */
        size_t align = n <= 8 || (n > 16 && n <= 24) ? 8 : 16;
        check_block(p, n, align, "malloc");
        free(p);
    }
    free(NULL);
    errno = 0;
    CHECK(malloc(HUGE) == NULL && errno == ENOMEM, "malloc(HUGE): errno %d", errno);
    errno = 0;
    CHECK(malloc(HUGE / 2) == NULL && errno == ENOMEM, "malloc(HUGE/2): errno %d", errno);
    errno = 0;
    CHECK(malloc((size_t)1 << 62) == NULL && errno == ENOMEM, "malloc(2^62): errno %d", errno);
    /* free keeps errno (POSIX.1-2024, glibc 2.33+). */
    void *big = malloc(5 << 20);
    errno = 12345;
    free(big);
    free(malloc(40));
    CHECK(errno == 12345, "free changed errno to %d", errno);
#ifndef GOM_SECURE
    /* Pointers gomalloc did not hand out are ignored by free (the secure
     * build stops instead: misuse.c). */
    free(static_buffer);
    free(&static_buffer[8]);
#endif
    CHECK(malloc_usable_size(NULL) == 0, "usable size of NULL");
    CHECK(malloc_usable_size(static_buffer) == 0, "usable size of a foreign pointer");
    char *q = malloc(100);
    CHECK(malloc_usable_size(q + 8) == 0, "usable size of an interior pointer");
    free(q);
}

static void test_calloc(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        /* Dirty a block of the same size first so reuse is exercised. */
        unsigned char *d = malloc(n);
        memset(d, 0xA5, n);
        free(d);
        unsigned char *p = calloc(1, n);
        CHECK(p != NULL, "calloc(1, %zu)", n);
        for (size_t k = 0; k < n; k++) CHECK(p[k] == 0, "calloc(1, %zu)[%zu] = %u", n, k, p[k]);
        free(p);
        p = calloc(n, 3);
        CHECK(p != NULL, "calloc(%zu, 3)", n);
        for (size_t k = 0; k < n * 3; k++) CHECK(p[k] == 0, "calloc(%zu, 3)[%zu]", n, k);
        free(p);
    }
    CHECK(calloc(0, 0) != NULL, "calloc(0, 0) gives a unique block");
    errno = 0;
    CHECK(calloc(HUGE / 2, 3) == NULL && errno == ENOMEM, "calloc overflow: errno %d", errno);
    errno = 0;
    CHECK(calloc(3, HUGE / 2) == NULL && errno == ENOMEM, "calloc overflow: errno %d", errno);
    errno = 0;
    CHECK(calloc(HUGE_2_32, HUGE_2_32) == NULL && errno == ENOMEM, "calloc 2^64");
    errno = 0;
    CHECK(calloc(1, HUGE) == NULL && errno == ENOMEM, "calloc(1, HUGE): errno %d", errno);
}

static void test_realloc(void) {
    /* realloc(NULL, n) is malloc(n). */
    char *p = realloc(NULL, 10);
    CHECK(p != NULL && gom_test_is_ours(p), "realloc(NULL, 10)");
    /* Growing and shrinking through small and large sizes keeps the
     * contents up to the smaller size. */
    size_t old = 10;
    memset(p, 'x', old);
    static const size_t steps[] = {20, 100, 5000, 40000, 40001, 200000, 3 << 20, 100, 1, 65536, 24};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        char *q = realloc(p, n);
        CHECK(q != NULL, "realloc to %zu", n);
        size_t keep = old < n ? old : n;
        for (size_t k = 0; k < keep; k++) CHECK(q[k] == 'x', "realloc %zu -> %zu lost byte %zu", old, n, k);
        CHECK(malloc_usable_size(q) >= n, "realloc usable size");
        memset(q, 'x', n);
        p = q;
        old = n;
    }
    /* On failure: NULL, ENOMEM, and the old block intact. */
    errno = 0;
    CHECK(realloc(p, HUGE) == NULL && errno == ENOMEM, "realloc(p, HUGE): errno %d", errno);
    errno = 0;
    CHECK(realloc(p, (size_t)1 << 62) == NULL && errno == ENOMEM, "realloc(p, 2^62): errno %d", errno);
    for (size_t k = 0; k < old; k++) CHECK(p[k] == 'x', "failed realloc damaged the block");
    /* realloc(p, 0) frees p and returns NULL, errno untouched (glibc). */
    errno = 0;
    CHECK(realloc(p, 0) == NULL && errno == 0, "realloc(p, 0): errno %d", errno);

    /* reallocarray. */
    int *a = reallocarray(NULL, 10, sizeof(int));
    CHECK(a != NULL, "reallocarray(NULL, 10, 4)");
    for (int i = 0; i < 10; i++) a[i] = i;
    int *b = reallocarray(a, 1000, sizeof(int));
    CHECK(b != NULL, "reallocarray grow");
    for (int i = 0; i < 10; i++) CHECK(b[i] == i, "reallocarray lost %d", i);
    errno = 0;
    CHECK(reallocarray(b, HUGE / 2, 4) == NULL && errno == ENOMEM, "reallocarray overflow");
    for (int i = 0; i < 10; i++) CHECK(b[i] == i, "failed reallocarray damaged the block");
    free(b);
}

static void test_aligned(void) {
    long page = sysconf(_SC_PAGESIZE);
    void *p = (void *)&nothrow_tag;
    /* posix_memalign: EINVAL for 0, non-powers of two and non-multiples of
     * sizeof(void *); *memptr untouched on error. */
    static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(posix_memalign(&p, bad[i], 16) == EINVAL, "posix_memalign(%zu) must be EINVAL", bad[i]);
        CHECK(p == (void *)&nothrow_tag, "posix_memalign wrote *memptr on error");
    }
    CHECK(posix_memalign(&p, 64, HUGE) == ENOMEM, "posix_memalign ENOMEM");
    CHECK(p == (void *)&nothrow_tag, "posix_memalign wrote *memptr on error");
    for (size_t a = sizeof(void *); a <= ((size_t)1 << 22); a <<= 1) {
        static const size_t ns[] = {0, 1, 24, 100, 4096, 40000};
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            CHECK(posix_memalign(&p, a, ns[i]) == 0, "posix_memalign(%zu, %zu)", a, ns[i]);
            check_block(p, ns[i], a, "posix_memalign");
            free(p);
        }
    }
    /* Beyond the 64 MiB the heap's arenas are aligned to: still the
     * address that is aligned. Above 2^35: ENOMEM. */
    for (int shift = 26; shift <= 31; shift++) {
        size_t a = (size_t)1 << shift;
        CHECK(posix_memalign(&p, a, 100) == 0, "posix_memalign(2^%d, 100)", shift);
        check_block(p, 100, a, "posix_memalign");
        free(p);
    }
    errno = 0;
    CHECK(aligned_alloc((size_t)1 << 36, 64) == NULL && errno == ENOMEM, "aligned_alloc(2^36): errno %d", errno);
    /* aligned_alloc: powers of two only (EINVAL otherwise, as glibc 2.38). */
    errno = 0;
    CHECK(aligned_alloc(0, 16) == NULL && errno == EINVAL, "aligned_alloc(0): errno %d", errno);
    errno = 0;
    CHECK(aligned_alloc(24, 48) == NULL && errno == EINVAL, "aligned_alloc(24): errno %d", errno);
    errno = 0;
    CHECK(aligned_alloc(64, HUGE) == NULL && errno == ENOMEM, "aligned_alloc ENOMEM");
    for (size_t a = 1; a <= ((size_t)1 << 22); a <<= 1) {
        p = aligned_alloc(a, 3 * a);
        check_block(p, 3 * a, a, "aligned_alloc");
        free(p);
        p = aligned_alloc(a, 1);
        check_block(p, 1, a, "aligned_alloc");
        free(p);
    }
    /* memalign: glibc rounds a non-power of two up. */
    p = memalign(24, 100);
    check_block(p, 100, 32, "memalign(24)");
    free(p);
    p = memalign(0, 100);
    check_block(p, 100, 8, "memalign(0)");
    free(p);
    for (size_t a = 1; a <= ((size_t)1 << 20); a <<= 1) {
        p = memalign(a, 777);
        check_block(p, 777, a, "memalign");
        free(p);
    }
    errno = 0;
    CHECK(memalign(HUGE, 16) == NULL && errno == EINVAL, "memalign(HUGE): errno %d", errno);
    errno = 0;
    CHECK(memalign(64, HUGE) == NULL && errno == ENOMEM, "memalign ENOMEM: errno %d", errno);
    /* valloc and pvalloc: page-aligned; pvalloc rounds the size up. */
    p = valloc(10);
    check_block(p, 10, (size_t)page, "valloc");
    free(p);
    p = valloc(0);
    CHECK(p != NULL && aligned_to(p, (size_t)page), "valloc(0)");
    free(p);
    p = pvalloc(1);
    check_block(p, (size_t)page, (size_t)page, "pvalloc(1)");
    free(p);
    p = pvalloc(0);
    check_block(p, (size_t)page, (size_t)page, "pvalloc(0)");
    free(p);
    p = pvalloc((size_t)page + 1);
    check_block(p, 2 * (size_t)page, (size_t)page, "pvalloc(page + 1)");
    free(p);
    errno = 0;
    CHECK(pvalloc(HUGE - 10) == NULL && errno == ENOMEM, "pvalloc overflow: errno %d", errno);
    errno = 0;
    CHECK(valloc(HUGE) == NULL && errno == ENOMEM, "valloc ENOMEM: errno %d", errno);
}

/* glibc's introspection calls report on gomalloc's heap. */
static void test_introspection(void) {
    enum { N = 1000 };
    static void *blocks[N];
    struct mallinfo2 before = GOM(mallinfo2)();
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(1000);
        memset(blocks[i], i, 1000);
    }
    struct mallinfo2 during = GOM(mallinfo2)();
    CHECK(during.uordblks >= before.uordblks + N * 1000, "mallinfo2: uordblks %zu -> %zu after %d x 1000 B",
          before.uordblks, during.uordblks, N);
    CHECK(during.arena >= during.uordblks, "mallinfo2: arena %zu < uordblks %zu", during.arena, during.uordblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = GOM(mallinfo)();
#pragma GCC diagnostic pop
    CHECK(old.uordblks > 0 && (size_t)old.uordblks <= during.uordblks + (1 << 20), "mallinfo: uordblks %d", old.uordblks);
    for (int i = 0; i < N; i++) free(blocks[i]);
    /* Freed pages for malloc_trim to return. */
    char *big = malloc(64 << 20);
    memset(big, 1, 64 << 20);
    free(big);
    struct mallinfo2 after = GOM(mallinfo2)();
    CHECK(after.uordblks < during.uordblks, "mallinfo2: uordblks %zu after freeing, %zu before", after.uordblks,
          during.uordblks);
    CHECK(GOM(malloc_trim)(0) == 1, "malloc_trim released nothing");
    struct mallinfo2 trimmed = GOM(mallinfo2)();
    CHECK(trimmed.keepcost < after.keepcost || after.keepcost == 0, "malloc_trim: keepcost %zu -> %zu",
          after.keepcost, trimmed.keepcost);
    /* malloc_stats prints gomalloc's table to stderr. */
    char path[] = "/tmp/gomalloc-malloc-stats-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    GOM(malloc_stats)();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char text[256] = {0};
    ssize_t got = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    unlink(path);
    CHECK(got > 0 && strstr(text, "gomalloc statistics") != NULL, "malloc_stats printed: %s", text);
    /* glibc's other entry points. */
    void *p = GOM(__libc_valloc)(10);
    check_block(p, 10, (size_t)sysconf(_SC_PAGESIZE), "__libc_valloc");
    free(p);
    p = GOM(__libc_pvalloc)(10);
    check_block(p, (size_t)sysconf(_SC_PAGESIZE), (size_t)sysconf(_SC_PAGESIZE), "__libc_pvalloc");
    free(p);
}

static void test_glibc_names(void) {
    void *p = GOM(__libc_malloc)(100);
    check_block(p, 100, 16, "__libc_malloc");
    p = GOM(__libc_realloc)(p, 5000);
    check_block(p, 5000, 16, "__libc_realloc");
    GOM(__libc_free)(p);
    unsigned char *z = GOM(__libc_calloc)(10, 10);
    CHECK(z != NULL, "__libc_calloc");
    for (int i = 0; i < 100; i++) CHECK(z[i] == 0, "__libc_calloc not zeroed");
    GOM(cfree)(z);
    p = GOM(__libc_memalign)(256, 10);
    check_block(p, 10, 256, "__libc_memalign");
    GOM(cfree)(p);
    GOM(cfree)(NULL);
    p = malloc(333);
    GOM(free_sized)(p, 333);
    p = aligned_alloc(4096, 5000);
    GOM(free_aligned_sized)(p, 4096, 5000);
    GOM(free_sized)(NULL, 0);
    GOM(free_aligned_sized)(NULL, 64, 0);
    GOM(__libc_free)(NULL);
    errno = 0;
    CHECK(GOM(__libc_calloc)(HUGE, 2) == NULL && errno == ENOMEM, "__libc_calloc overflow");
}

static void test_cxx_operators(void) {
    const void *nt = &nothrow_tag;
    void *p = GOM(_Znwm)(10);
    check_block(p, 10, 8, "operator new");
    GOM(_ZdlPv)(p);
    p = GOM(_Znwm)(0);
    CHECK(p != NULL, "operator new(0)");
    GOM(_ZdlPv)(p);
    p = GOM(_Znam)(1000);
    check_block(p, 1000, 16, "operator new[]");
    GOM(_ZdaPv)(p);
    p = GOM(_Znwm)(48);
    GOM(_ZdlPvm)(p, 48);
    p = GOM(_Znam)(100000);
    GOM(_ZdaPvm)(p, 100000);
    p = GOM(_ZnwmRKSt9nothrow_t)(64, nt);
    check_block(p, 64, 16, "operator new(nothrow)");
    GOM(_ZdlPvRKSt9nothrow_t)(p, nt);
    p = GOM(_ZnamRKSt9nothrow_t)(64, nt);
    check_block(p, 64, 16, "operator new[](nothrow)");
    GOM(_ZdaPvRKSt9nothrow_t)(p, nt);
    errno = 0;
    CHECK(GOM(_ZnwmRKSt9nothrow_t)(HUGE, nt) == NULL && errno == ENOMEM, "nothrow new of HUGE");
    CHECK(GOM(_ZnamRKSt9nothrow_t)(HUGE / 2, nt) == NULL, "nothrow new[] of HUGE/2");
    for (size_t a = 1; a <= ((size_t)1 << 21); a <<= 1) {
        p = GOM(_ZnwmSt11align_val_t)(100, a);
        check_block(p, 100, a, "aligned new");
        GOM(_ZdlPvSt11align_val_t)(p, a);
        p = GOM(_ZnamSt11align_val_t)(3 * a, a);
        check_block(p, 3 * a, a, "aligned new[]");
        GOM(_ZdaPvSt11align_val_t)(p, a);
        p = GOM(_ZnwmSt11align_val_t)(50, a);
        GOM(_ZdlPvmSt11align_val_t)(p, 50, a);
        p = GOM(_ZnamSt11align_val_t)(70000, a);
        GOM(_ZdaPvmSt11align_val_t)(p, 70000, a);
        p = GOM(_ZnwmSt11align_val_tRKSt9nothrow_t)(10, a, nt);
        check_block(p, 10, a, "aligned nothrow new");
        GOM(_ZdlPvSt11align_val_tRKSt9nothrow_t)(p, a, nt);
        p = GOM(_ZnamSt11align_val_tRKSt9nothrow_t)(10, a, nt);
        check_block(p, 10, a, "aligned nothrow new[]");
        GOM(_ZdaPvSt11align_val_tRKSt9nothrow_t)(p, a, nt);
    }
    CHECK(GOM(_ZnwmSt11align_val_tRKSt9nothrow_t)(HUGE, 64, nt) == NULL, "aligned nothrow new OOM");
    CHECK(GOM(_ZnamSt11align_val_tRKSt9nothrow_t)(10, 48, nt) == NULL, "aligned nothrow new, bad alignment");
    /* Deleting NULL is a no-op for every form. */
    GOM(_ZdlPv)(NULL);
    GOM(_ZdaPv)(NULL);
    GOM(_ZdlPvm)(NULL, 8);
    GOM(_ZdaPvm)(NULL, 8);
    GOM(_ZdlPvRKSt9nothrow_t)(NULL, nt);
    GOM(_ZdaPvRKSt9nothrow_t)(NULL, nt);
    GOM(_ZdlPvSt11align_val_t)(NULL, 64);
    GOM(_ZdaPvSt11align_val_t)(NULL, 64);
    GOM(_ZdlPvmSt11align_val_t)(NULL, 8, 64);
    GOM(_ZdaPvmSt11align_val_t)(NULL, 8, 64);
    GOM(_ZdlPvSt11align_val_tRKSt9nothrow_t)(NULL, 64, nt);
    GOM(_ZdaPvSt11align_val_tRKSt9nothrow_t)(NULL, 64, nt);
}

static int lines_seen;
static int header_seen;
static void count_line(const char *line, void *arg) {
    CHECK(arg == &lines_seen, "callback argument");
    CHECK(strchr(line, '\n') == NULL, "a line holds no newline");
    if (lines_seen++ == 0 && strcmp(line, "gomalloc statistics") == 0) header_seen = 1;
}

static void test_gom_api(void) {
    CHECK(GOM(gom_version)() == GOMALLOC_VERSION, "gom_version %d, header %d", GOM(gom_version)(),
          GOMALLOC_VERSION);

    char *p = GOM(gom_malloc)(100);
    check_block(p, 100, 16, "gom_malloc");
    memset(p, 'y', 100);
    p = GOM(gom_realloc)(p, 100000);
    CHECK(p != NULL && p[99] == 'y', "gom_realloc");
    GOM(gom_free)(p);
    CHECK(GOM(gom_realloc)(GOM(gom_malloc)(5), 0) == NULL, "gom_realloc(p, 0)");
    p = GOM(gom_realloc)(NULL, 7);
    check_block(p, 7, 8, "gom_realloc(NULL)");
    GOM(gom_free_sized)(p, 7);
    GOM(gom_free)(NULL);
    GOM(gom_free_sized)(NULL, 3);
#ifndef GOM_SECURE
    GOM(gom_free)(static_buffer);
#endif

    unsigned char *z = GOM(gom_calloc)(100, 100);
    CHECK(z != NULL, "gom_calloc");
    for (int i = 0; i < 10000; i++) CHECK(z[i] == 0, "gom_calloc not zeroed");
    GOM(gom_free_sized)(z, 10000);
    errno = 0;
    CHECK(GOM(gom_calloc)(HUGE, HUGE) == NULL && errno == ENOMEM, "gom_calloc overflow");
    errno = 0;
    CHECK(GOM(gom_malloc)(HUGE) == NULL && errno == ENOMEM, "gom_malloc ENOMEM");

    for (size_t a = 1; a <= ((size_t)1 << 22); a <<= 1) {
        p = GOM(gom_malloc_aligned)(a + 1, a);
        check_block(p, a + 1, a, "gom_malloc_aligned");
        GOM(gom_free)(p);
    }
    errno = 0;
    CHECK(GOM(gom_malloc_aligned)(10, 0) == NULL && errno == EINVAL, "gom_malloc_aligned(align 0)");
    errno = 0;
    CHECK(GOM(gom_malloc_aligned)(10, 96) == NULL && errno == EINVAL, "gom_malloc_aligned(align 96)");
    CHECK(GOM(gom_usable_size)(NULL) == 0 && GOM(gom_usable_size)(static_buffer) == 0, "gom_usable_size");

    /* Statistics: the full struct, then smaller (older) versions. */
    struct gom_stats st;
    memset(&st, 0xEE, sizeof st);
    st.size = sizeof st;
    char *big = GOM(gom_malloc)(10 << 20);
    CHECK(GOM(gom_stats_get)(&st) == 0, "gom_stats_get");
    CHECK(st.size == sizeof st, "filled %zu of %zu bytes", st.size, sizeof st);
    CHECK(st.num_classes == GOM_NUM_CLASSES, "num_classes %zu", st.num_classes);
    CHECK(st.bytes_in_use >= (10 << 20), "bytes_in_use %zu", st.bytes_in_use);
    CHECK(st.bytes_mapped >= st.bytes_in_spans && st.bytes_in_spans >= (10 << 20), "mapped/spans");
    CHECK(st.large_objects >= 1 && st.thread_caches >= 1 && st.bytes_metadata > 0, "counts");
    CHECK(st.classes[0].object_size == 0 && st.classes[1].object_size == 8 && st.classes[2].object_size == 16,
          "class sizes");
    CHECK(st.classes[GOM_NUM_CLASSES - 1].object_size == 32768, "last class %zu",
          st.classes[GOM_NUM_CLASSES - 1].object_size);
    size_t words[8];
    for (int i = 0; i < 8; i++) words[i] = 0xABCDull;
    words[0] = 3 * sizeof(size_t);
    CHECK(GOM(gom_stats_get)((struct gom_stats *)(void *)words) == 0, "gom_stats_get, 3 fields");
    CHECK(words[0] == 3 * sizeof(size_t), "filled %zu", words[0]);
    CHECK(words[1] == st.bytes_in_use || words[1] != 0xABCDull, "bytes_in_use filled");
    CHECK(words[2] == st.bytes_mapped, "bytes_mapped filled");
    for (int i = 3; i < 8; i++) CHECK(words[i] == 0xABCDull, "word %d beyond the given size was written", i);
    words[0] = 2 * sizeof(size_t) + 5; /* not a whole number of fields */
    CHECK(GOM(gom_stats_get)((struct gom_stats *)(void *)words) == 0, "gom_stats_get, 2.6 fields");
    CHECK(words[0] == 2 * sizeof(size_t) && words[2] == st.bytes_mapped && words[3] == 0xABCDull,
          "partial field: filled %zu", words[0]);
    words[0] = sizeof(size_t);
    CHECK(GOM(gom_stats_get)((struct gom_stats *)(void *)words) == 0 && words[0] == sizeof(size_t),
          "gom_stats_get, size only");
    words[0] = 4;
    CHECK(GOM(gom_stats_get)((struct gom_stats *)(void *)words) == EINVAL, "gom_stats_get, size 4");
    CHECK(GOM(gom_stats_get)(NULL) == EINVAL, "gom_stats_get(NULL)");

    /* gom_collect returns the freed 10 MiB to the OS. */
    GOM(gom_free)(big);
    GOM(gom_collect)();
    struct gom_stats after = {.size = sizeof after};
    CHECK(GOM(gom_stats_get)(&after) == 0, "gom_stats_get");
    CHECK(after.bytes_free_retained == 0, "after gom_collect, %zu bytes still retained", after.bytes_free_retained);
    CHECK(after.bytes_released >= (10 << 20), "after gom_collect, only %zu bytes released", after.bytes_released);

    /* Printing: to stderr, and line by line to a callback. */
    GOM(gom_stats_print)(NULL, NULL);
    GOM(gom_stats_print)(count_line, &lines_seen);
    CHECK(header_seen && lines_seen >= 9, "callback saw %d lines", lines_seen);

    /* Options. */
    const char *env = getenv("GOMALLOC_SHOW_STATS");
    long show = GOM(gom_option_get)(GOM_OPTION_SHOW_STATS);
    CHECK(show == (env ? atol(env) : 0), "show_stats %ld with GOMALLOC_SHOW_STATS=%s", show, env ? env : "(unset)");
    env = getenv("GOMALLOC_VERBOSE");
    long verbose = GOM(gom_option_get)(GOM_OPTION_VERBOSE);
    CHECK(verbose == (env ? atol(env) : 0), "verbose %ld", verbose);
    CHECK(GOM(gom_option_set)(GOM_OPTION_VERBOSE, 7) == 0 && GOM(gom_option_get)(GOM_OPTION_VERBOSE) == 7, "set");
    CHECK(GOM(gom_option_set)(GOM_OPTION_VERBOSE, verbose) == 0, "set back");
    env = getenv("GOMALLOC_PURGE_DELAY_MS");
    long delay = GOM(gom_option_get)(GOM_OPTION_PURGE_DELAY_MS);
    CHECK(delay == (env ? atol(env) : 500), "purge_delay_ms %ld", delay);
    CHECK(GOM(gom_option_set)(GOM_OPTION_PURGE_DELAY_MS, 250) == 0 &&
              GOM(gom_option_get)(GOM_OPTION_PURGE_DELAY_MS) == 250,
          "set purge_delay_ms");
    CHECK(GOM(gom_option_set)(GOM_OPTION_PURGE_DELAY_MS, delay) == 0, "set back");
    CHECK(after.purges > 0 && after.bytes_purged >= (10 << 20), "after gom_collect: %zu purges, %zu bytes purged",
          after.purges, after.bytes_purged);
    errno = 0;
    CHECK(GOM(gom_option_get)((gom_option_t)99) == -1 && errno == EINVAL, "unknown option get");
    CHECK(GOM(gom_option_set)((gom_option_t)99, 1) == EINVAL, "unknown option set");
}

int main(int argc, char **argv) {
    if (argc > 1) {
        const char *mode = argv[1];
        void *p = malloc(64);
        if (strcmp(mode, "free-foreign") == 0) {
            free(static_buffer);
            free(p);
            puts("free-foreign: ignored");
            return 0;
        } else if (strcmp(mode, "realloc-foreign") == 0) {
            p = realloc(static_buffer, 100);
        } else if (strcmp(mode, "double-free") == 0) {
            free(p);
            free(p);
        } else if (strcmp(mode, "interior-free") == 0) {
            free((char *)p + 16);
        } else if (strcmp(mode, "interior-free-large") == 0) {
            char *q = malloc(1 << 20);
            free(q + 8192);
        } else if (strcmp(mode, "interior-realloc") == 0) {
            p = realloc((char *)p + 8, 100);
        } else if (strcmp(mode, "new-oom") == 0) {
            p = GOM(_Znwm)(HUGE / 2);
        } else {
            fprintf(stderr, "unknown mode %s\n", mode);
            return 2;
        }
        printf("%s: not stopped (%p)\n", mode, p);
        return 1;
    }
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_aligned();
    test_glibc_names();
    test_introspection();
    test_cxx_operators();
    test_gom_api();
    puts("api: ok");
    return 0;
}
