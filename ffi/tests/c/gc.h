/* The gom_gc_* functions through one table, filled once by gc_load(): in
 * the preload form each is looked up with dlsym (see common.h), and trace
 * callbacks call gom_gc_mark too often to look it up every time. */
#ifndef GOM_TEST_GC_H
#define GOM_TEST_GC_H

#include "common.h"

static struct {
    __typeof__(&gom_gc_heap_new) heap_new;
    __typeof__(&gom_gc_heap_free) heap_free;
    __typeof__(&gom_gc_thread_attach) thread_attach;
    __typeof__(&gom_gc_thread_detach) thread_detach;
    __typeof__(&gom_gc_enter) enter;
    __typeof__(&gom_gc_leave) leave;
    __typeof__(&gom_gc_alloc) alloc;
    __typeof__(&gom_gc_mark) mark;
    __typeof__(&gom_gc_write) write;
    __typeof__(&gom_gc_root_new) root_new;
    __typeof__(&gom_gc_root_get) root_get;
    __typeof__(&gom_gc_root_set) root_set;
    __typeof__(&gom_gc_root_free) root_free;
    __typeof__(&gom_gc_weak_new) weak_new;
    __typeof__(&gom_gc_weak_get) weak_get;
    __typeof__(&gom_gc_weak_free) weak_free;
    __typeof__(&gom_gc_set_finalizer) set_finalizer;
    __typeof__(&gom_gc_collect) collect;
    __typeof__(&gom_gc_wait_finalizers) wait_finalizers;
    __typeof__(&gom_gc_set_percent) set_percent;
    __typeof__(&gom_gc_set_memory_limit) set_memory_limit;
    __typeof__(&gom_gc_stats) stats;
    __typeof__(&gom_gc_thread_slow_path_ns) thread_slow_path_ns;
} G;

static inline void gc_load(void) {
    G.heap_new = GOM(gom_gc_heap_new);
    G.heap_free = GOM(gom_gc_heap_free);
    G.thread_attach = GOM(gom_gc_thread_attach);
    G.thread_detach = GOM(gom_gc_thread_detach);
    G.enter = GOM(gom_gc_enter);
    G.leave = GOM(gom_gc_leave);
    G.alloc = GOM(gom_gc_alloc);
    G.mark = GOM(gom_gc_mark);
    G.write = GOM(gom_gc_write);
    G.root_new = GOM(gom_gc_root_new);
    G.root_get = GOM(gom_gc_root_get);
    G.root_set = GOM(gom_gc_root_set);
    G.root_free = GOM(gom_gc_root_free);
    G.weak_new = GOM(gom_gc_weak_new);
    G.weak_get = GOM(gom_gc_weak_get);
    G.weak_free = GOM(gom_gc_weak_free);
    G.set_finalizer = GOM(gom_gc_set_finalizer);
    G.collect = GOM(gom_gc_collect);
    G.wait_finalizers = GOM(gom_gc_wait_finalizers);
    G.set_percent = GOM(gom_gc_set_percent);
    G.set_memory_limit = GOM(gom_gc_set_memory_limit);
    G.stats = GOM(gom_gc_stats);
    G.thread_slow_path_ns = GOM(gom_gc_thread_slow_path_ns);
}

static inline struct gom_gc_stats gc_stats(gom_gc_heap *h) {
    struct gom_gc_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    CHECK(G.stats(h, &s) == 0 && s.size == sizeof s, "gom_gc_stats");
    return s;
}

/* An atomic load of a pointer field another thread may write. */
#define GC_LOAD(field) __atomic_load_n(&(field), __ATOMIC_ACQUIRE)

#endif
