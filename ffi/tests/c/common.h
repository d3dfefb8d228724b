/* Shared helpers of the C test programs of gomalloc's C library.
 *
 * Each program is built twice by ffi/tests/c_programs.rs: linked with
 * libgomalloc.a, and linked normally (-DGOM_PRELOAD) to run under
 * LD_PRELOAD=libgomalloc.so. In the second form a program cannot name a
 * gomalloc-only symbol at link time, so GOM(name) looks it up with dlsym
 * (and checks that it comes from libgomalloc.so); in the first form it is
 * the symbol itself. */
#ifndef GOM_TEST_COMMON_H
#define GOM_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gomalloc.h"

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

#ifdef GOM_PRELOAD
static inline void *gom_test_sym(const char *name) {
    void *p = dlsym(RTLD_DEFAULT, name);
    if (p == NULL) {
        fprintf(stderr, "symbol %s not found: is libgomalloc.so preloaded?\n", name);
        exit(2);
    }
    Dl_info info;
    if (dladdr(p, &info) == 0 || info.dli_fname == NULL || strstr(info.dli_fname, "libgomalloc") == NULL) {
        fprintf(stderr, "symbol %s resolves to %s, not libgomalloc.so\n", name,
                info.dli_fname ? info.dli_fname : "?");
        exit(2);
    }
    return p;
}
#define GOM(name) ((__typeof__(&name))gom_test_sym(#name))
#else
#define GOM(name) (&name)
#endif

/* True if p is a block of gomalloc's (so malloc really is gomalloc). */
static inline int gom_test_is_ours(const void *p) {
    return GOM(gom_usable_size)(p) != 0;
}

/* A word derived from a block's address, size and position: what a block
 * is filled with while it is live, so corruption and mix-ups are caught. */
static inline uint64_t gom_test_word(const void *p, size_t size, size_t i) {
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull ^ (uint64_t)size * 0xC2B2AE3D27D4EB4Full ^ i;
    x ^= x >> 29;
    return x * 0xBF58476D1CE4E5B9ull;
}

/* The next patterned offset after i: every word of the first 4 KiB, then
 * one word per 64 bytes (so big blocks cost little to fill and check, and any
 * two overlapping blocks still disagree somewhere). */
static inline size_t gom_test_next(size_t i) { return i < 4096 ? i + 8 : i + 64; }

/* Fills the first size bytes of p with its pattern (byte by byte at the
 * end, so any size works). */
static inline void gom_test_fill(unsigned char *p, size_t size) {
    for (size_t i = 0; i < size; i = gom_test_next(i)) {
        uint64_t w = gom_test_word(p, size, i);
        size_t n = size - i < 8 ? size - i : 8;
        memcpy(p + i, &w, n);
    }
}

/* Checks the pattern written by gom_test_fill for a block now at q that was
 * filled at p (they differ after a moving realloc), over the first n bytes. */
static inline int gom_test_verify(const unsigned char *q, const void *p, size_t size, size_t n) {
    for (size_t i = 0; i < n; i = gom_test_next(i)) {
        uint64_t w = gom_test_word(p, size, i);
        size_t k = n - i < 8 ? n - i : 8;
        if (memcmp(q + i, &w, k) != 0) return 0;
    }
    return 1;
}

/* A small xorshift generator, one per thread. */
static inline uint64_t gom_test_rand(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

#endif
