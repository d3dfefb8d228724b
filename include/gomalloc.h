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
 * __libc_memalign/__libc_valloc/__libc_pvalloc, and C++ operator new/delete
 * (plain, array, sized, aligned and nothrow). glibc's mallinfo2 and mallinfo
 * report gomalloc's heap (arena: mapped; uordblks: in use; fordblks: free
 * pages; fsmblks: free room in small-object spans; hblks: large objects;
 * keepcost: what a trim would release), malloc_trim is gom_collect (returns
 * 1 if memory went back to the OS) and malloc_stats prints gomalloc's table;
 * mallopt and malloc_info are glibc's own (they act on its unused heap).
 * Points where gomalloc's behaviour is worth knowing:
 *
 *  - Alignment of malloc: each request is rounded up to a size class (Go's
 *    67 classes up to 32 KiB); a block is aligned to 8 bytes if its class
 *    size is 8 or 24 (requests of 1-8 and 17-24 bytes), and to 16 bytes or
 *    more otherwise, so every object type that fits in the request is
 *    suitably aligned. Blocks over 32 KiB are aligned to 8 KiB.
 *  - calloc zeroes the bytes asked for; the slack up to malloc_usable_size
 *    may hold old data (glibc's is zero).
 *  - realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns NULL
 *    (glibc's choice). aligned_alloc rejects an alignment that is not a power
 *    of two with EINVAL (as glibc 2.38 and C23 do); memalign rounds it up to
 *    one (glibc's rule). Alignments above 32 GiB (2^35) fail with ENOMEM,
 *    about where glibc's begin to. Every NULL returned for lack of memory
 *    comes with errno = ENOMEM; free never changes errno.
 *  - Pointers gomalloc did not hand out (for instance blocks the dynamic
 *    loader allocated before the library took over): free ignores them,
 *    malloc_usable_size returns 0, and realloc stops the process with a
 *    message, since their size is unknown. Freeing an interior pointer or
 *    freeing twice stops the process with a message (the default build sees
 *    a double free of a small block only while the block heads its free
 *    list, and cannot tell a freed small block from a live one in realloc
 *    or malloc_usable_size; the secure build catches every case).
 *  - A throwing operator new that runs out of memory calls the installed
 *    std::new_handler and retries while there is one, then throws
 *    std::bad_alloc (both taken from the program's C++ runtime, libstdc++ or
 *    libc++). Called from a program with no C++ runtime loaded, it prints a
 *    message and calls abort(). The nothrow forms return NULL.
 *
 * Environment (read once, at load time):
 *   GOMALLOC_SHOW_STATS=1   print the statistics table to stderr at exit
 *   GOMALLOC_VERBOSE=1      print the allocator's decisions to stderr
 * Values: a decimal number, or true/false, yes/no, on/off.
 *
 * Every function here is thread-safe. The allocator's functions may be
 * called before main() and after exit() has started; the garbage-collected
 * heap's (gom_gc_*, at the end) start threads and use thread-local state,
 * so they are for ordinary program code.
 */
#ifndef GOMALLOC_H
#define GOMALLOC_H

#include <stddef.h>
#include <stdint.h>

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
 * for pointers that are not the start of a block (and, in the secure build,
 * for freed small blocks, whose slot size the default build returns). */
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

/* ======================================================================
 * The garbage-collected heap (gom_gc_*)
 *
 * A concurrent mark-sweep collector (the Rust API is gomalloc::gc; the
 * README's "The garbage-collected arena" explains it). Objects are
 * allocated with a type descriptor saying how to find their GC pointers
 * (a trace callback) and how to release what they own outside the heap
 * (a destructor). A collector thread per heap marks while the program runs;
 * threads are never stopped. In exchange the program follows these rules;
 * breaking one frees live objects or corrupts the heap:
 *
 *  1. Scopes. A thread uses GC objects only between gom_gc_enter(heap) and
 *     gom_gc_leave(heap). A pointer to a GC object held in a local variable,
 *     in malloc'ed memory or in a global is valid only until the thread
 *     leaves the scope, unless the object is rooted (gom_gc_root_new):
 *     keep a gom_gc_root, not the pointer, across gom_gc_leave. The pointer
 *     is also the obtaining thread's: to hand an object to another thread,
 *     publish it in a root or in a field of a reachable object, from which
 *     the other thread reads it inside its own scope. Scopes do
 *     not nest (per heap and thread). The collector finishes a cycle only
 *     when every thread has left the scope it was in when the cycle began:
 *     keep scopes short in long-running loops (leave and enter again). A
 *     thread that exits inside a scope leaves it as it exits.
 *  2. Writes. Every store of a GC pointer (or NULL) into a pointer field of
 *     a GC object goes through gom_gc_write, including the first one into a
 *     new object. Pointer fields are void*-sized and aligned. Fields that
 *     hold no GC pointer are plain data. Another thread reading a pointer
 *     field that may be written concurrently uses an atomic load, e.g.
 *     __atomic_load_n(&obj->field, __ATOMIC_ACQUIRE).
 *  3. Tracing. A type's trace callback calls gom_gc_mark(tracer, &field)
 *     for every pointer field that may hold a GC pointer, and for no other
 *     field (NULL fields are fine; new objects are zeroed). It runs on the
 *     collector thread while other threads run (or inside a gom_gc_* call
 *     of any thread), at any time after the object is allocated (also on
 *     the zeroed object): it must not write the object, allocate from or
 *     call into the GC heap (other than gom_gc_mark), and should decide
 *     which fields to mark from data fixed when the object was made (a
 *     vector's capacity, not its length: unused slots are NULL). Types
 *     without GC pointers pass NULL and are never traced.
 *  4. Destructors run once when an unreachable object is freed (on any
 *     thread, in no particular order) or when the heap shuts down. They may
 *     release malloc'ed memory and other resources the object owns, but
 *     must not touch other GC objects (they may already be freed) nor call
 *     any gom_gc_* function.
 *  5. Finalizers (gom_gc_set_finalizer) follow Go: run once, on the heap's
 *     finalizer thread, inside a scope (so they may call gom_gc_* on the
 *     heap they receive), after the object is found unreachable; they see
 *     the object and everything it reaches intact and may resurrect it
 *     (gom_gc_root_new). If finalizable A reaches finalizable B, A's runs
 *     first; objects in a cycle through finalizable objects are never
 *     finalized nor freed. Pending finalizers do not run at heap shutdown.
 *  6. Heaps. A GC pointer belongs to one heap: it may only be stored into
 *     objects, roots and weak handles of that heap. A heap does not survive
 *     fork(): its collector thread is not in the child, so there no cycle
 *     runs, gom_gc_collect never returns and gom_gc_heap_free aborts; a
 *     child that needs a GC heap makes a new one (as a Go program cannot
 *     fork its runtime either).
 *
 * Misuse the library can detect cheaply stops the process with a one-line
 * message on stderr ("gomalloc: gom_gc_...: ...") and abort(): a NULL heap
 * or type, an operation that needs a scope called outside one, nested or
 * unbalanced scopes, gom_gc_collect, gom_gc_heap_free or
 * gom_gc_thread_detach inside a scope of the same heap, gom_gc_collect or
 * gom_gc_wait_finalizers from a destroy callback, gom_gc_heap_free
 * while another thread is inside one, a pointer that is not the start of a
 * live object's payload of this heap (an object of another heap included),
 * a root or weak handle used with another heap, a slot outside its object,
 * gom_gc_write into an object whose type has no trace callback. Only
 * gom_gc_set_finalizer and gom_gc_stats return error codes.
 * Every function is thread-safe. Environment: GOMALLOC_GC_PERCENT,
 * GOMALLOC_MEMORY_LIMIT and GOMALLOC_GCTRACE=1 (see the README).
 * ====================================================================== */

/* A garbage-collected heap; several may coexist. */
typedef struct gom_gc_heap gom_gc_heap;
/* Passed to trace callbacks, for gom_gc_mark. */
typedef struct gom_gc_tracer gom_gc_tracer;
/* A root: keeps one object alive between scopes. */
typedef struct gom_gc_root gom_gc_root;
/* A weak handle: names an object without keeping it alive. */
typedef struct gom_gc_weak gom_gc_weak;

/* Calls gom_gc_mark(tracer, &obj->field) for each pointer field of obj. */
typedef void gom_gc_trace_fn(void *obj, gom_gc_tracer *tracer);
/* Releases what obj owns outside the GC heap (rule 4). */
typedef void gom_gc_destroy_fn(void *obj);
/* A finalizer: runs once after obj is found unreachable (rule 5). */
typedef void gom_gc_finalizer_fn(gom_gc_heap *heap, void *obj, void *arg);

/* Describes a type of GC object. Must outlive every object of the type
 * (a static const struct, typically). */
typedef struct gom_gc_type {
    size_t size;                /* payload bytes (0 allowed) */
    size_t align;               /* 0 (meaning 8) or a power of two up to 256 */
    gom_gc_trace_fn *trace;     /* NULL: the object holds no GC pointer */
    gom_gc_destroy_fn *destroy; /* NULL: nothing to release */
    const char *name;           /* for diagnostics; may be NULL */
} gom_gc_type;

/* A new heap, configured from the environment, with its collector thread.
 * Aborts if the thread cannot be started. */
gom_gc_heap *gom_gc_heap_new(void);

/* Gives up the heap pointer (not usable afterwards). The heap shuts down
 * (collector and finalizer threads stopped, destructors run for every
 * object, pending finalizers dropped) now, or when the last root or weak
 * handle still alive is freed, or, if a finalizer is running, when it
 * returns (the destructors then run on the finalizer thread). No thread
 * may be inside a scope of the heap. */
void gom_gc_heap_free(gom_gc_heap *heap);

/* Registers the calling thread with the heap now (gom_gc_enter does on
 * first use), so the first scope is cheaper. */
void gom_gc_thread_attach(gom_gc_heap *heap);

/* Returns the calling thread's allocation cache to the heap and forgets the
 * thread (as thread exit does), for a thread that keeps running but will not
 * use the heap for a while. Must be called outside a scope. */
void gom_gc_thread_detach(gom_gc_heap *heap);

/* Opens a scope on the calling thread (rule 1): the collector's safe point
 * is the scope boundary. May wait briefly while the collector flushes the
 * thread's cache. */
void gom_gc_enter(gom_gc_heap *heap);

/* Closes the calling thread's scope: pointers to unrooted objects held by
 * the thread become invalid. */
void gom_gc_leave(gom_gc_heap *heap);

/* Allocates a zeroed object of type->size bytes aligned to type->align
 * (inside a scope). Returns the payload; the object lives while it is
 * reachable from a root or a pointer held in the current scope. Aborts when
 * out of memory. May do a share of the collector's marking. */
void *gom_gc_alloc(gom_gc_heap *heap, const gom_gc_type *type);

/* Inside a trace callback: reports the GC pointer stored at *slot (NULL is
 * ignored). slot points to a pointer field of the object being traced. */
void gom_gc_mark(gom_gc_tracer *tracer, void *const *slot);

/* Stores value (a GC object of the heap, or NULL) into *slot, a pointer
 * field inside obj, through the write barrier (rule 2; inside a scope). */
void gom_gc_write(gom_gc_heap *heap, void *obj, void **slot, void *value);

/* A root holding obj (inside a scope); obj stays alive until the root is
 * freed or set to another object. */
gom_gc_root *gom_gc_root_new(gom_gc_heap *heap, void *obj);

/* The object the root holds (inside a scope of the root's heap). */
void *gom_gc_root_get(gom_gc_heap *heap, gom_gc_root *root);

/* Points the root at obj (inside a scope of the root's heap). */
void gom_gc_root_set(gom_gc_heap *heap, gom_gc_root *root, void *obj);

/* Frees a root (any thread, inside a scope or not). NULL is ignored. */
void gom_gc_root_free(gom_gc_root *root);

/* A weak handle to obj (inside a scope): it does not keep obj alive, and
 * lasts between scopes until freed. */
gom_gc_weak *gom_gc_weak_new(gom_gc_heap *heap, void *obj);

/* The object (inside a scope), or NULL once the collector has found it
 * unreachable; never an object the collector freed. */
void *gom_gc_weak_get(gom_gc_heap *heap, gom_gc_weak *weak);

/* Frees a weak handle (any thread). NULL is ignored. */
void gom_gc_weak_free(gom_gc_weak *weak);

/* Registers fn(heap, obj, arg) to run once after obj is found unreachable
 * (rule 5; inside a scope). With fn NULL, removes obj's finalizer if it has
 * not been queued yet. Returns 0; EEXIST if obj already has a finalizer;
 * with fn NULL, ENOENT if it has none. */
int gom_gc_set_finalizer(gom_gc_heap *heap, void *obj, gom_gc_finalizer_fn *fn, void *arg);

/* Runs a full cycle and the sweep after it, blocking (Go's runtime.GC):
 * everything unreachable when it is called is freed, or queued for its
 * finalizer, when it returns. Must be called outside a scope of the heap. */
void gom_gc_collect(gom_gc_heap *heap);

/* Blocks until every finalizer queued so far has run. Not from a
 * finalizer. */
void gom_gc_wait_finalizers(gom_gc_heap *heap);

/* Like GOGC: the next cycle starts when the heap reaches
 * live * (1 + percent/100); negative turns automatic cycles off (the memory
 * limit still applies). Returns the previous value. Default 100. */
int gom_gc_set_percent(gom_gc_heap *heap, int percent);

/* Like GOMEMLIMIT: a soft limit in bytes on the GC heap; cycles start early
 * to stay under it. SIZE_MAX: none (the default). Returns the previous
 * value. */
size_t gom_gc_set_memory_limit(gom_gc_heap *heap, size_t bytes);

/* The heap's figures. Versioned by size, as struct gom_stats: set `size`
 * to sizeof(struct gom_gc_stats). Every field is 64 bits; times are in
 * nanoseconds. */
struct gom_gc_stats {
    uint64_t size;                  /* in: bytes of this struct; out: bytes filled */
    uint64_t cycles;                /* cycles completed */
    uint64_t forced_cycles;         /* of which run by gom_gc_collect */
    uint64_t live_bytes;            /* marked live by the last cycle */
    uint64_t in_use_bytes;          /* in allocated objects now (live + unswept garbage) */
    uint64_t allocated_bytes;       /* allocated since the heap was created */
    uint64_t allocated_objects;     /* objects allocated since the heap was created */
    uint64_t freed_objects;         /* objects freed by sweeping */
    uint64_t freed_bytes;           /* bytes freed by sweeping */
    uint64_t heap_goal;             /* the next cycle's goal */
    int64_t gc_percent;             /* gom_gc_set_percent's setting */
    uint64_t memory_limit;          /* gom_gc_set_memory_limit's setting */
    uint64_t pause_total_ns;        /* time threads waited for the collector */
    uint64_t pause_count;           /* number of such waits */
    uint64_t pause_max_ns;          /* the longest */
    uint64_t mark_cpu_ns;           /* collector thread CPU time marking */
    uint64_t sweep_cpu_ns;          /* collector thread CPU time sweeping */
    uint64_t assist_ns;             /* time allocating threads spent marking */
    uint64_t last_cycle_ns;         /* wall time of the last cycle */
    uint64_t span_bytes;            /* bytes of all the heap's spans, thread caches included */
    uint64_t cached_spans;          /* spans in thread caches */
    uint64_t roots;                 /* roots alive (weak handles hold one each) */
    uint64_t weak_cleared;          /* weak handles cleared */
    uint64_t weak_slots;            /* weak handles the collector tracks */
    uint64_t finalizers_registered; /* objects with a finalizer not yet found unreachable */
    uint64_t finalizers_queued;     /* finalizers queued since the heap was created */
    uint64_t finalizers_ready;      /* queued and not yet run */
    uint64_t finalizers_run;        /* finalizers run */
    uint64_t assists;               /* allocation assists */
    uint64_t assist_max_ns;         /* the longest assist */
    uint64_t assist_cpu_max_ns;     /* the longest assist in thread CPU time */
};

/* Fills *stats with as many whole fields as its `size` says fit and sets
 * `size` to the bytes filled. Returns 0, or EINVAL when stats is NULL or
 * `size` is smaller than one field. */
int gom_gc_stats(gom_gc_heap *heap, struct gom_gc_stats *stats);

/* Nanoseconds the calling thread has spent, over all GC heaps, in their
 * slow paths: scope entries that wait for the collector or catch up with
 * it, allocation-cache refills (with their assists and lazy sweeps), large
 * allocations. Allocation fast paths and write barriers are not counted.
 * Cheap (a thread-local): read it around a stretch of work to see the
 * collector's share of it. */
uint64_t gom_gc_thread_slow_path_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* GOMALLOC_H */
