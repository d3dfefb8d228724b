//! The pages a GC heap's collector populates ahead of its mutators are
//! those the heap will grow back into: no more than it held at its last
//! cycle's end, even when its goal is far larger. The reservation was the
//! goal plus 10%, and with `gc_percent` raised to 10^6 over a few MiB live
//! the collector faulted in tens of GiB the heap had never used, until the
//! process was killed. Here a 4 GiB memory limit caps the goal, so that the
//! old rule would populate about 4 GiB (checked: it does), not the machine.
//!
//! One test in its own process: it reads the process-wide page heap.

use gomalloc::gc::{GcConfig, GcVec, Heap, Root, Trace};
use std::time::{Duration, Instant};

#[derive(Trace)]
struct Blob {
    _payload: [u64; 31],
}

#[derive(Trace)]
struct Keep<'gc> {
    items: GcVec<'gc, Blob>,
}

const MIB: usize = 1 << 20;

#[test]
fn the_collector_populates_no_more_than_the_heap_held() {
    let heap = Heap::with_config(GcConfig { gc_percent: 100, memory_limit: 4096 * MIB, trace: false });
    // About 8 MiB live.
    let _keep: Root<Keep<'static>> = heap.enter(|m| {
        let k = m.alloc(Keep { items: GcVec::new() });
        for _ in 0..32 * 1024 {
            k.items.push(m, Some(m.alloc(Blob { _payload: [7; 31] })));
        }
        m.root(k)
    });
    heap.collect();
    let cycles = heap.stats().cycles;
    // Garbage until an automatic cycle is under way; then the goal jumps.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !heap.is_marking() && heap.stats().cycles == cycles {
        assert!(Instant::now() < deadline, "no automatic cycle started");
        heap.enter(|m| {
            for _ in 0..1000 {
                m.alloc(Blob { _payload: [1; 31] });
            }
        });
    }
    heap.set_gc_percent(1_000_000);
    // Runs after the automatic cycle, and after what it populated.
    heap.collect();
    let st = heap.stats();
    assert!(st.cycles >= cycles + 2, "cycles {} -> {}", cycles, st.cycles);
    assert!(
        st.heap_goal >= 3000 * MIB,
        "goal {} MiB: the memory limit should cap it near 3.75 GiB",
        st.heap_goal / MIB
    );
    let retained = gomalloc::stats().bytes_free_retained;
    assert!(
        retained < 256 * MIB,
        "{} MiB of free pages resident with {} MiB live: populated for a goal of {} MiB",
        retained / MIB,
        st.live_bytes / MIB,
        st.heap_goal / MIB
    );
}
