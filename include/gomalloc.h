/*
 * gomalloc.h: the C interface of gomalloc, a memory allocator built like
 * the Go runtime's (size classes, per-thread caches, central lists and a
 * page heap).
 *
 * The library comes in two forms, both built by
 *     cargo build --release -p gomalloc-ffi
 *   target/release/libgomalloc.so  for LD_PRELOAD=.../libgomalloc.so program
 *   target/release/libgomalloc.a   to link in: cc prog.c -Iinclude
 *                                  target/release/libgomalloc.a -lpthread -ldl -lm
 *
 * Either form replaces the whole malloc family of the process, with glibc's
 * semantics: malloc, free, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size, cfree, C23's
 * free_sized and free_aligned_sized,
 * glibc's __libc_malloc/__libc_free/__libc_calloc/__libc_realloc/
 * __libc_memalign, and C++ operator new/delete (plain, array, sized, aligned
 * and nothrow). Points where gomalloc's behaviour is worth knowing:
 *
 *  - Alignment of malloc: each request is rounded up to a size class (Go's
 *    67 classes up to 32 KiB); a block is aligned to 8 bytes if its class
 *    size is 8 or 24 (requests of 1-8 and 17-24 bytes), and to 16 bytes or
 *    more otherwise, so every object type that fits in the request is
 *    suitably aligned. Blocks over 32 KiB are aligned to 8 KiB.
 *  - realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns NULL
 *    (glibc's choice). aligned_alloc rejects an alignment that is not a power
 *    of two with EINVAL (as glibc 2.38 and C23 do); memalign rounds it up to
 *    one (glibc's rule). Every NULL returned for lack of memory comes with
 *    errno = ENOMEM; free never changes errno.
 *  - Pointers gomalloc did not hand out (for instance blocks the dynamic
 *    loader allocated before the library took over): free ignores them,
 *    malloc_usable_size returns 0, and realloc stops the process with a
 *    message, since their size is unknown. Freeing an interior pointer or
 *    freeing twice stops the process with a message.
 *  - A throwing operator new that runs out of memory prints a message and
 *    calls abort(), as an uncaught std::bad_alloc would (no exception is
 *    thrown and no new_handler is called); the nothrow forms return NULL.
 *
 * Environment (read once, at load time):
 *   GOMALLOC_SHOW_STATS=1   print the statistics table to stderr at exit
 *   GOMALLOC_VERBOSE=1      print the allocator's decisions to stderr
 * Values: a decimal number, or true/false, yes/no, on/off.
 *
 * Every function here is thread-safe and may be called before main() and
 * after exit() has started.
 */
#ifndef GOMALLOC_H
#define GOMALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library version this header describes: major * 10000 + minor * 100 +
 * patch. Compare with gom_version() to detect a mismatched library. */
#define GOMALLOC_VERSION 100

/* Entries of gom_stats.classes: the size classes plus the unused class 0. */
#define GOM_NUM_CLASSES 68

/* Allocates size bytes, as malloc. A size of 0 gives a unique block that
 * may be freed. Returns NULL with errno = ENOMEM when out of memory. */
void *gom_malloc(size_t size);

/* Allocates n * size zeroed bytes, as calloc. Returns NULL with errno =
 * ENOMEM when the product overflows or memory is exhausted. */
void *gom_calloc(size_t n, size_t size);

/* Resizes p to size bytes, as realloc: the contents up to the smaller of the
 * old and new sizes are kept, possibly at a new address. gom_realloc(NULL, n)
 * is gom_malloc(n); gom_realloc(p, 0) frees p and returns NULL. On failure
 * returns NULL with errno = ENOMEM and p is left intact. p must be NULL or a
 * live block of gomalloc's. */
void *gom_realloc(void *p, size_t size);

/* Frees p, as free. NULL is ignored, as is a pointer outside gomalloc's heap
 * (reported under GOMALLOC_VERBOSE). errno is preserved. */
void gom_free(void *p);

/* Frees p, allocated with the given size (the size passed to the allocating
 * call; for a block from gom_calloc, n * size). The size is a hint that can
 * make the free faster; gomalloc's own records decide. NULL is ignored. */
void gom_free_sized(void *p, size_t size);

/* Allocates size bytes aligned to align, which must be a power of two (any,
 * including 1 and alignments beyond a page). Returns NULL with errno =
 * EINVAL for a bad alignment, ENOMEM when out of memory. Free with gom_free
 * or free. */
void *gom_malloc_aligned(size_t size, size_t align);

/* The number of bytes usable at p (at least what was requested), as
 * malloc_usable_size. 0 for NULL, for pointers gomalloc did not hand out and
 * for pointers that are not the start of a live block. */
size_t gom_usable_size(const void *p);

/* Gives the calling thread's cached spans back to the shared lists and
 * returns every free page to the OS now (madvise), like mi_collect(true) or
 * Go's debug.FreeOSMemory. */
void gom_collect(void);

/* Per-size-class figures. */
struct gom_class_stats {
    size_t object_size;    /* bytes per object of the class (0 for class 0) */
    size_t objects_in_use; /* objects allocated and not freed */
    size_t spans;          /* spans of the class taken from the page heap */
};

/* A snapshot of the allocator's figures. Fields are only ever appended in
 * later versions, so the struct is versioned by its size: set `size` to
 * sizeof(struct gom_stats) before calling gom_stats_get. While other threads
 * allocate, the figures are approximate. */
struct gom_stats {
    size_t size;                /* in: bytes of this struct; out: bytes filled */
    size_t bytes_in_use;        /* live blocks: small at class size, large at page size */
    size_t bytes_mapped;        /* address space reserved from the OS for arenas */
    size_t bytes_released;      /* free pages returned to the OS */
    size_t bytes_free_retained; /* free pages kept resident for reuse */
    size_t bytes_in_spans;      /* pages held by spans (small-object spans and large objects) */
    size_t bytes_metadata;      /* arena headers, span and cache records */
    size_t small_spans;         /* small-object spans in use */
    size_t large_objects;       /* large objects in use */
    size_t thread_caches;       /* thread caches alive (one per thread that allocated and has not exited) */
    size_t num_classes;         /* entries of classes[] (GOM_NUM_CLASSES) */
    struct gom_class_stats classes[GOM_NUM_CLASSES]; /* indexed by class; [0] unused */
    size_t purges;              /* madvise calls that returned free pages to the OS */
    size_t bytes_purged;        /* bytes those calls returned, in all */
};

/* Fills *stats with as many whole fields as its `size` field says fit
 * (callers built against an older, smaller struct get the fields they know)
 * and sets `size` to the number of bytes filled. Returns 0, or EINVAL when
 * stats is NULL or `size` is smaller than a size_t. Does not allocate. */
int gom_stats_get(struct gom_stats *stats);

/* Receives one line of gom_stats_print's table, NUL-terminated and without
 * its newline; the string is valid during the call only. */
typedef void gom_line_fn(const char *line, void *arg);

/* Prints the statistics table: to stderr when line is NULL, else by calling
 * line(text, arg) for each line. Does not allocate. */
void gom_stats_print(gom_line_fn *line, void *arg);

/* The options. Each starts from its environment variable (read once when the
 * library is loaded) and can be changed at run time. */
typedef enum gom_option_e {
    GOM_OPTION_SHOW_STATS = 0, /* GOMALLOC_SHOW_STATS: nonzero prints the statistics at exit */
    GOM_OPTION_VERBOSE = 1,    /* GOMALLOC_VERBOSE: nonzero prints the allocator's decisions */
    /* GOMALLOC_PURGE_DELAY_MS: free pages are returned to the OS by a
     * background thread once they have stayed free between one and two such
     * delays (default 500; 0: within about 10 ms; negative: no background
     * thread, free memory beyond max(16 MiB, 1/8 of the heap) is returned
     * as it is freed). */
    GOM_OPTION_PURGE_DELAY_MS = 2
} gom_option_t;

/* The current value of an option; -1 with errno = EINVAL for an unknown one. */
long gom_option_get(gom_option_t option);

/* Sets an option for the rest of the process. Returns 0, or EINVAL for an
 * unknown option. */
int gom_option_set(gom_option_t option, long value);

/* The library's version, as GOMALLOC_VERSION. */
int gom_version(void);

#ifdef __cplusplus
}
#endif

#endif /* GOMALLOC_H */
