//! Allocator statistics: the plain struct returned by [`crate::stats`] and its
//! allocation-free printer.
//!
//! Owns no state. The figures are gathered by `malloc.rs` from the page heap
//! (under the heap lock) and from span metadata; counts for spans that are
//! owned by a running thread cache are read without stopping that thread, so a
//! snapshot taken while other threads allocate is approximate. For a quiescent
//! heap each field is exact, with one caveat: a thread batches its frees into
//! spans it does not own (`mcache.rs`), and those count as in use until it
//! publishes them, at its next cache refill, `collect()`, `stats()` or exit.

use crate::sizeclass::NUM_CLASSES;
use core::fmt;

/// Per-size-class figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size of the class in bytes (0 for class 0, which is unused).
    pub object_size: usize,
    /// Objects of this class currently allocated (handed out and not freed).
    pub objects_in_use: usize,
    /// Spans of this class currently taken from the page heap.
    pub spans: usize,
}

/// A snapshot of the allocator's state, like `runtime.MemStats` or
/// `mi_stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes in live blocks: small objects at their class size, large
    /// objects at their page-rounded size.
    pub bytes_in_use: usize,
    /// Bytes of address space reserved from the OS for heap arenas.
    pub bytes_mapped: usize,
    /// Bytes of arena pages that are free and have been returned to the OS
    /// (`madvise(MADV_DONTNEED)`) and not reused since.
    pub bytes_released: usize,
    /// Bytes of arena pages that are free but still resident (kept for reuse).
    pub bytes_free_retained: usize,
    /// Bytes of pages held by spans (small-object spans and large objects).
    pub bytes_in_spans: usize,
    /// Bytes of allocator metadata (arena headers, span and cache records).
    pub bytes_metadata: usize,
    /// Small-object spans in use.
    pub small_spans: usize,
    /// Large objects (page-run spans) in use.
    pub large_objects: usize,
    /// Thread caches alive.
    pub thread_caches: usize,
    /// `madvise` calls that returned free pages to the OS since the process
    /// started (scavenger, background or synchronous, and `collect`).
    pub purges: usize,
    /// Bytes those calls returned (a page released twice counts twice).
    pub bytes_purged: usize,
    /// Per-class figures, indexed by size class (index 0 is unused).
    pub classes: [ClassStats; NUM_CLASSES],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            bytes_in_use: 0,
            bytes_mapped: 0,
            bytes_released: 0,
            bytes_free_retained: 0,
            bytes_in_spans: 0,
            bytes_metadata: 0,
            small_spans: 0,
            large_objects: 0,
            thread_caches: 0,
            purges: 0,
            bytes_purged: 0,
            classes: [ClassStats::default(); NUM_CLASSES],
        }
    }
}

impl fmt::Display for Stats {
    /// A table in the spirit of `MIMALLOC_SHOW_STATS`. Formatting through
    /// `core::fmt` allocates nothing when the sink does not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: f64 = 1024.0 * 1024.0;
        writeln!(f, "gomalloc statistics")?;
        let rows: [(&str, usize); 6] = [
            ("in use", self.bytes_in_use),
            ("in spans", self.bytes_in_spans),
            ("free, retained", self.bytes_free_retained),
            ("free, released", self.bytes_released),
            ("mapped", self.bytes_mapped),
            ("metadata", self.bytes_metadata),
        ];
        for (name, bytes) in rows {
            writeln!(f, "  {name:<16} {:>12} B  {:>10.2} MiB", bytes, bytes as f64 / MIB)?;
        }
        writeln!(
            f,
            "  small spans {}   large objects {}   thread caches {}",
            self.small_spans, self.large_objects, self.thread_caches
        )?;
        writeln!(f, "  purges {}   purged {:.2} MiB in all", self.purges, self.bytes_purged as f64 / MIB)?;
        writeln!(f, "  {:>5} {:>7} {:>12} {:>8}", "class", "size", "objects", "spans")?;
        for (class, c) in self.classes.iter().enumerate().skip(1) {
            if c.spans != 0 || c.objects_in_use != 0 {
                writeln!(f, "  {:>5} {:>7} {:>12} {:>8}", class, c.object_size, c.objects_in_use, c.spans)?;
            }
        }
        Ok(())
    }
}
