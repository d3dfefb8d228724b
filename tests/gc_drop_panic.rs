//! A `Drop` that panics while the heap sweeps its object. Sweeps run on the
//! collector thread, in `collect()`, and lazily inside a mutator's
//! allocation, far from the code that made the object; a panic that escaped
//! a lazy sweep once left the span both in the mutator's cache and on a
//! list, so it was handed back twice, its pages freed twice, and the heap
//! waited for ever for the sweep to end. Now the sweep catches the panic,
//! reports it and goes on: every object is dropped exactly once, the live
//! ones never, and the heap keeps working.

use gomalloc::gc::{Gc, GcConfig, GcVec, Heap, Mutator, Root, Trace};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Objects made in all, live and garbage.
const OBJECTS: usize = 400_000;
/// Objects kept alive through the root.
const LIVE: usize = 20_000;
/// One garbage object in this many panics when dropped.
const ARMED_EVERY: usize = 10_000;

struct Bomb {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
        if self.id >= LIVE && self.id % ARMED_EVERY == 0 {
            panic!("Drop panic {} (expected by the test)", self.id);
        }
    }
}

#[derive(Trace)]
struct Obj {
    #[gc(skip)]
    bomb: Bomb,
    check: u64,
}

#[derive(Trace)]
struct Keep<'gc> {
    objs: GcVec<'gc, Obj>,
}

fn make<'gc>(m: &Mutator<'gc>, id: usize, drops: &Arc<Vec<AtomicUsize>>) -> Gc<'gc, Obj> {
    m.alloc(Obj { bomb: Bomb { id, drops: drops.clone() }, check: checksum(id) })
}

fn checksum(id: usize) -> u64 {
    (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xB0B
}

#[test]
fn a_panicking_drop_during_sweeps_is_contained() {
    // The expected panics, one line each from the default hook, would bury
    // the test's output; any other panic is still printed.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let expected = info.payload().downcast_ref::<String>().is_some_and(|s| s.contains("expected by the test"));
        if !expected {
            default_hook(info);
        }
    }));

    let drops: Arc<Vec<AtomicUsize>> = Arc::new((0..OBJECTS).map(|_| AtomicUsize::new(0)).collect());
    // Cycles every few MiB of allocation, so that sweeps of every kind run
    // while the mutator allocates.
    let heap = Heap::with_config(GcConfig { gc_percent: 25, ..GcConfig::default() });
    let keep: Root<Keep<'static>> = heap.enter(|m| {
        let k = m.alloc(Keep { objs: GcVec::new() });
        for id in 0..LIVE {
            k.objs.push(m, Some(make(m, id, &drops)));
        }
        m.root(k)
    });
    for chunk in (LIVE..OBJECTS).collect::<Vec<_>>().chunks(1000) {
        heap.enter(|m| {
            for &id in chunk {
                make(m, id, &drops);
            }
        });
    }
    heap.collect();
    heap.collect();
    let cycles = heap.stats().cycles;
    let dropped = |id: usize| drops[id].load(Ordering::SeqCst);
    for id in 0..LIVE {
        assert_eq!(dropped(id), 0, "live object {id} was dropped");
    }
    for id in LIVE..OBJECTS {
        assert_eq!(dropped(id), 1, "garbage object {id} dropped {} times", dropped(id));
    }
    // The heap still works: the live objects are intact, new ones can be
    // made and collected.
    heap.enter(|m| {
        let k = keep.get(m);
        for id in 0..LIVE {
            let o = k.objs.get(id).expect("a live object went missing");
            assert_eq!((o.bomb.id, o.check), (id, checksum(id)), "live object {id} corrupted");
        }
        for _ in 0..10_000 {
            m.alloc(Obj { bomb: Bomb { id: 1, drops: drops.clone() }, check: 0 });
        }
    });
    heap.collect();
    assert_eq!(dropped(1), 10_000, "objects made after the panics were not all dropped");
    drop(keep);
    drop(heap);
    for id in (0..LIVE).filter(|&id| id != 1) {
        assert_eq!(dropped(id), 1, "object {id} dropped {} times by the end", dropped(id));
    }
    eprintln!("{cycles} cycles; {} drops panicked", (LIVE..OBJECTS).filter(|id| id % ARMED_EVERY == 0).count());
}
