//! `GcStats`, like Go's `runtime.MemStats` for the GC heap, the pause ring,
//! and the one-line-per-cycle trace (`GOMALLOC_GCTRACE=1`, like
//! `GODEBUG=gctrace=1`).
//!
//! Called by `heap.rs` and `mutator.rs`. The ring is one mutex (a leaf);
//! the allocation and sweep totals are atomics (`ObjectTally`).
//!
//! A *pause* here is time a mutator spent blocked by the collector: waiting
//! to enter a scope while the collector flushed its cache, or handing its
//! spans to the sweeper after a flip. Mutators never stop for marking;
//! allocation assists (mutator time spent marking) are reported separately.

use crate::sync::{AtomicU64, Mutex, Ordering};
use std::time::Duration;

/// Objects and their bytes, added to by several threads (allocation
/// reports, sweeps) without a lock.
pub(crate) struct ObjectTally {
    objects: AtomicU64,
    bytes: AtomicU64,
}

impl ObjectTally {
    pub fn new() -> ObjectTally {
        ObjectTally { objects: AtomicU64::new(0), bytes: AtomicU64::new(0) }
    }

    /// Relaxed: totals for statistics; nothing is published through them.
    pub fn add(&self, objects: usize, bytes: usize) {
        self.objects.fetch_add(objects as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// (objects, bytes): each total is exact; read together they may be
    /// one addition apart.
    pub fn read(&self) -> (u64, u64) {
        (self.objects.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Pauses kept for `GcStats::recent_pauses`.
pub const PAUSE_RING: usize = 256;

/// Collector statistics.
#[derive(Clone, Debug, Default)]
pub struct GcStats {
    /// Cycles completed.
    pub cycles: u64,
    /// Of those, cycles forced by `Heap::collect`.
    pub forced_cycles: u64,
    /// Bytes marked live by the last cycle.
    pub live_bytes: usize,
    /// Bytes in allocated objects now (live plus not yet swept garbage).
    pub in_use_bytes: usize,
    /// Bytes allocated since the heap was created.
    pub allocated_bytes: u64,
    /// Objects allocated since the heap was created.
    pub allocated_objects: u64,
    /// Objects freed by sweeping.
    pub freed_objects: u64,
    /// Bytes freed by sweeping.
    pub freed_bytes: u64,
    /// The next cycle's goal: `in_use_bytes` should stay under it.
    pub heap_goal: usize,
    /// The `gc_percent` setting.
    pub gc_percent: i32,
    /// The soft memory limit (`usize::MAX`: none).
    pub memory_limit: usize,
    /// Sum of mutator pauses.
    pub pause_total: Duration,
    /// Number of mutator pauses.
    pub pause_count: u64,
    /// Longest mutator pause.
    pub pause_max: Duration,
    /// The last pauses, oldest first (at most 256).
    pub recent_pauses: Vec<Duration>,
    /// CPU time the collector thread spent marking.
    pub mark_cpu: Duration,
    /// CPU time the collector thread spent sweeping.
    pub sweep_cpu: Duration,
    /// Mutator time spent in allocation assists.
    pub assist_time: Duration,
    /// Number of allocation assists.
    pub assists: u64,
    /// Longest single assist: the most one refill can add to a mutator's
    /// allocation for the collector's sake.
    pub assist_max: Duration,
    /// Longest single assist in the mutator thread's CPU time: what
    /// `assist_max` is once time the thread spent descheduled (by the
    /// kernel or, on a VM, the host) is taken out.
    pub assist_cpu_max: Duration,
    /// Wall time of the last cycle.
    pub last_cycle: Duration,
    /// Bytes of all the heap's spans, those in mutator caches included.
    pub span_bytes: usize,
    /// Spans in mutator caches.
    pub cached_spans: usize,
    /// Registered roots.
    pub roots: usize,
    /// Weak handles cleared because their object was found unreachable.
    pub weak_cleared: u64,
    /// Weak slots the collector still tracks.
    pub weak_slots: usize,
    /// Objects with a finalizer not yet found unreachable.
    pub finalizers_registered: usize,
    /// Finalizers queued since the heap was created.
    pub finalizers_queued: u64,
    /// Finalizers queued and not yet run.
    pub finalizers_ready: usize,
    /// Finalizers run.
    pub finalizers_run: u64,
    /// Finalizers that panicked (counted in `finalizers_run` too).
    pub finalizers_panicked: u64,
}

/// The last `PAUSE_RING` pauses, their maximum, total and count.
#[derive(Default)]
pub(crate) struct PauseRing {
    inner: Mutex<RingInner>,
}

#[derive(Default)]
struct RingInner {
    ring: Vec<Duration>,
    next: usize,
    max: Duration,
    total: Duration,
    count: u64,
}

impl PauseRing {
    pub fn record(&self, d: Duration) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if r.ring.len() < PAUSE_RING {
            r.ring.push(d);
        } else {
            let i = r.next;
            r.ring[i] = d;
        }
        r.next = (r.next + 1) % PAUSE_RING;
        r.max = r.max.max(d);
        r.total += d;
        r.count += 1;
    }

    /// (recent pauses oldest first, max, total, count)
    pub fn snapshot(&self) -> (Vec<Duration>, Duration, Duration, u64) {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = Vec::with_capacity(r.ring.len());
        if r.ring.len() < PAUSE_RING {
            v.extend_from_slice(&r.ring);
        } else {
            v.extend_from_slice(&r.ring[r.next..]);
            v.extend_from_slice(&r.ring[..r.next]);
        }
        (v, r.max, r.total, r.count)
    }
}

/// Prints one line for a finished cycle, in the spirit of `gctrace=1`:
/// `gc 7 @1.204s: 0.011+2.310+0.042 ms start+mark+flip, 48->12 MiB, 24 MiB goal`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn trace_line(
    cycle: u64,
    since_start: Duration,
    start: Duration,
    mark: Duration,
    flip: Duration,
    in_use: usize,
    live: usize,
    goal: usize,
    forced: bool,
) {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    crate::os::eprint_line(format_args!(
        "gc {} @{:.3}s: {:.3}+{:.3}+{:.3} ms start+mark+flip, {:.1}->{:.1} MiB, {:.1} MiB goal{}",
        cycle,
        since_start.as_secs_f64(),
        ms(start),
        ms(mark),
        ms(flip),
        mib(in_use),
        mib(live),
        mib(goal),
        if forced { " (forced)" } else { "" }
    ));
}
