//! The GC arena's behaviour: unreachable objects are dropped exactly once
//! and reachable ones never, through roots, cells and vectors, under forced
//! and automatic cycles, with one or several mutator threads.

use gomalloc::gc::{GcCell, GcConfig, GcVec, Heap, Root, Trace};
use std::collections::HashSet;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

static NEXT_TALLY: AtomicU64 = AtomicU64::new(1);
static DROPPED: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
static DOUBLE_DROPS: AtomicUsize = AtomicUsize::new(0);

/// Counts drops of the objects that hold it, and detects a second drop of
/// the same object (which would otherwise release its `Arc` twice): the
/// collector must drop every object at most once.
struct Tally {
    id: u64,
    count: ManuallyDrop<Arc<AtomicUsize>>,
}

#[allow(non_snake_case)]
fn Tally(count: Arc<AtomicUsize>) -> Tally {
    Tally { id: NEXT_TALLY.fetch_add(1, Ordering::Relaxed), count: ManuallyDrop::new(count) }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let first = DROPPED.lock().unwrap().get_or_insert_with(HashSet::new).insert(self.id);
        if !first {
            DOUBLE_DROPS.fetch_add(1, Ordering::SeqCst);
            eprintln!("double drop of object {}:\n{}", self.id, std::backtrace::Backtrace::force_capture());
            return;
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        // SAFETY: dropped once, here, on the first drop only.
        unsafe { ManuallyDrop::drop(&mut self.count) };
    }
}

/// Fails the test if any object anywhere was dropped twice.
fn assert_no_double_drop() {
    assert_eq!(DOUBLE_DROPS.load(Ordering::SeqCst), 0, "an object was dropped twice (see stderr)");
}

#[derive(Trace)]
struct Node<'gc> {
    id: u64,
    check: u64,
    next: GcCell<'gc, Node<'gc>>,
    #[gc(skip)]
    _tally: Tally,
}

fn checksum(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF
}

fn quiet_heap() -> Heap {
    Heap::with_config(GcConfig { gc_percent: -1, memory_limit: usize::MAX, trace: false })
}

#[test]
fn unreachable_objects_are_dropped_and_reachable_ones_kept() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    // A rooted chain of 1000 and 5000 garbage nodes.
    let root: Root<Node<'static>> = heap.enter(|m| {
        let mk = |id| m.alloc(Node { id, check: checksum(id), next: GcCell::new(None), _tally: Tally(drops.clone()) });
        let head = mk(0);
        let mut tail = head;
        for id in 1..1000 {
            let n = mk(id);
            tail.next.set(m, Some(n));
            tail = n;
        }
        for id in 1000..6000 {
            let _garbage = mk(id);
        }
        m.root(head)
    });
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 5000, "exactly the garbage was dropped");
    let n = heap.enter(|m| {
        let mut n = 0;
        let mut cur = Some(root.get(m));
        while let Some(node) = cur {
            assert_eq!(node.check, checksum(node.id), "node {} corrupted", node.id);
            assert_eq!(node.id, n);
            n += 1;
            cur = node.next.get();
        }
        n
    });
    assert_eq!(n, 1000);
    // Cut the chain in the middle: the second half dies.
    heap.enter(|m| {
        let mut cur = root.get(m);
        for _ in 0..499 {
            cur = cur.next.get().unwrap();
        }
        cur.next.set(m, None);
    });
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 5500);
    drop(root);
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 6000, "dropping the root frees the rest");
    let st = heap.stats();
    assert_eq!(st.cycles, 3);
    assert_eq!(st.forced_cycles, 3);
    assert_eq!(st.live_bytes, 0);
    assert_eq!(st.roots, 0);
    assert_no_double_drop();
}

#[test]
fn cycles_of_garbage_are_collected() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    heap.enter(|m| {
        for ring in 0..100u64 {
            let first = m.alloc(Node { id: ring, check: 0, next: GcCell::new(None), _tally: Tally(drops.clone()) });
            let mut prev = first;
            for i in 1..10 {
                let n = m.alloc(Node { id: i, check: 0, next: GcCell::new(None), _tally: Tally(drops.clone()) });
                prev.next.set(m, Some(n));
                prev = n;
            }
            prev.next.set(m, Some(first)); // close the ring
        }
    });
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 1000);
    assert_no_double_drop();
}

#[derive(Trace)]
struct Bag<'gc> {
    items: GcVec<'gc, Node<'gc>>,
    big: Vec<u64>,
}

#[test]
fn vectors_and_large_objects() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let bag: Root<Bag<'static>> = heap.enter(|m| {
        let bag = m.alloc(Bag { items: GcVec::new(), big: (0..100_000).collect() });
        for id in 0..300 {
            let n = m.alloc(Node { id, check: checksum(id), next: GcCell::new(None), _tally: Tally(drops.clone()) });
            bag.items.push(m, Some(n));
        }
        m.root(bag)
    });
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    heap.enter(|m| {
        let bag = bag.get(m);
        assert_eq!(bag.big.iter().sum::<u64>(), (0..100_000u64).sum());
        for _ in 0..100 {
            bag.items.pop(m);
        }
        bag.items.set(m, 0, None);
        assert_eq!(bag.items.len(), 200);
    });
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 101);
    // A large GC object (> 32 KiB) lives and dies like the others.
    let big_drops = Arc::new(AtomicUsize::new(0));
    #[derive(Trace)]
    struct Blob {
        bytes: [u64; 8192],
        #[gc(skip)]
        _tally: Tally,
    }
    heap.enter(|m| {
        let b = m.alloc(Blob { bytes: [7; 8192], _tally: Tally(big_drops.clone()) });
        assert_eq!(b.bytes[8191], 7);
    });
    heap.collect();
    assert_eq!(big_drops.load(Ordering::SeqCst), 1);
    assert_no_double_drop();
}

/// Two large vectors and a cell between them: the collector traces such an
/// object in passes of a bounded number of elements, resuming at a
/// (vector, index) position.
#[derive(Trace)]
struct TwoVectors<'gc> {
    a: GcVec<'gc, Node<'gc>>,
    middle: GcCell<'gc, Node<'gc>>,
    b: GcVec<'gc, Node<'gc>>,
}

#[test]
fn large_vectors_traced_in_passes_while_elements_move() {
    const PER_VECTOR: u64 = 6_000;
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    fn node<'gc>(
        m: &gomalloc::gc::Mutator<'gc>,
        id: u64,
        drops: &Arc<AtomicUsize>,
    ) -> gomalloc::gc::Gc<'gc, Node<'gc>> {
        m.alloc(Node { id, check: checksum(id), next: GcCell::new(None), _tally: Tally(drops.clone()) })
    }
    let root: Root<TwoVectors<'static>> = heap.enter(|m| {
        let t = m.alloc(TwoVectors { a: GcVec::new(), middle: GcCell::new(None), b: GcVec::new() });
        for id in 0..PER_VECTOR {
            t.a.push(m, Some(node(m, id, &drops)));
            t.b.push(m, Some(node(m, PER_VECTOR + id, &drops)));
        }
        t.middle.set(m, Some(node(m, 2 * PER_VECTOR, &drops)));
        m.root(t)
    });
    let total = 2 * PER_VECTOR as usize + 1;
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 0, "a vector element died while reachable");
    // Elements move between the vectors (popped from one end, pushed on the
    // other, so indices a pass has not reached empty out and refill) while
    // cycles run on another thread. None may die: each is in a vector or in
    // the mutator's scope at every moment.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut cycles = 0;
            while !stop.load(Ordering::Relaxed) || cycles < 3 {
                heap.collect();
                cycles += 1;
            }
            cycles
        })
    };
    let mut moved = 0u64;
    for round in 0..200 {
        heap.enter(|m| {
            let t = root.get(m);
            let (from, to) = if round % 2 == 0 { (&t.a, &t.b) } else { (&t.b, &t.a) };
            for _ in 0..(from.len() / 2) {
                let x = from.pop(m).expect("vector emptied");
                assert_eq!(x.check, checksum(x.id), "element {} freed or corrupted", x.id);
                to.push(m, Some(x));
                moved += 1;
            }
        });
    }
    stop.store(true, Ordering::Relaxed);
    let cycles = collector.join().unwrap();
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 0, "an element died while reachable ({cycles} cycles, {moved} moves)");
    heap.enter(|m| {
        let t = root.get(m);
        let mut ids: Vec<u64> = Vec::new();
        for v in [&t.a, &t.b] {
            for i in 0..v.len() {
                let x = v.get(i).expect("no empty slot");
                assert_eq!(x.check, checksum(x.id), "element {} freed or corrupted", x.id);
                ids.push(x.id);
            }
        }
        ids.push(t.middle.get().expect("middle").id);
        ids.sort_unstable();
        assert_eq!(ids, (0..total as u64).collect::<Vec<_>>());
    });
    drop(root);
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), total);
    assert_no_double_drop();
}

#[test]
fn automatic_cycles_keep_the_heap_bounded() {
    let heap = Heap::with_config(GcConfig { gc_percent: 100, memory_limit: usize::MAX, trace: false });
    let drops = Arc::new(AtomicUsize::new(0));
    let keep: Root<Node<'static>> = heap
        .enter(|m| m.root(m.alloc(Node { id: 0, check: 0, next: GcCell::new(None), _tally: Tally(drops.clone()) })));
    let mut made = 0usize;
    for round in 0..200u64 {
        heap.enter(|m| {
            for i in 0..5_000u64 {
                let n = m.alloc(Node {
                    id: round * 5000 + i,
                    check: checksum(i),
                    next: GcCell::new(None),
                    _tally: Tally(drops.clone()),
                });
                made += 1;
                if i % 1000 == 0 {
                    keep.get(m).next.set(m, Some(n)); // a few survive briefly
                }
            }
        });
    }
    heap.collect();
    let st = heap.stats();
    // How many automatic cycles run depends on how fast marking keeps up;
    // that at least one did, and that the heap stayed bounded, does not.
    assert!(st.cycles > st.forced_cycles, "no automatic cycle ran");
    // Everything but the root and its current successor was dropped.
    assert_eq!(drops.load(Ordering::SeqCst), made - 1);
    // 1M objects of ~64 bytes went through a heap whose goal stays near 4 MiB.
    assert!(st.span_bytes < 64 << 20, "heap stayed bounded: {} bytes of spans", st.span_bytes);
    assert_no_double_drop();
}

#[test]
fn several_mutator_threads_share_a_graph() {
    let heap = Heap::with_config(GcConfig { gc_percent: 50, memory_limit: usize::MAX, trace: false });
    let drops = Arc::new(AtomicUsize::new(0));
    const SLOTS: usize = 64;
    let table: Root<Bag<'static>> = heap.enter(|m| {
        let bag = m.alloc(Bag { items: GcVec::new(), big: Vec::new() });
        for id in 0..SLOTS as u64 {
            let n = m.alloc(Node { id, check: checksum(id), next: GcCell::new(None), _tally: Tally(drops.clone()) });
            bag.items.push(m, Some(n));
        }
        m.root(bag)
    });
    let table = Arc::new(table);
    let made = Arc::new(AtomicUsize::new(SLOTS));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (heap, table, drops, made) = (heap.clone(), table.clone(), drops.clone(), made.clone());
            s.spawn(move || {
                let mut x = t + 1;
                for round in 0..300u64 {
                    heap.enter(|m| {
                        let bag = table.get(m);
                        for _ in 0..200 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let slot = (x % SLOTS as u64) as usize;
                            // Visit: every reachable node must be intact.
                            let mut cur = bag.items.get(slot);
                            let mut depth = 0;
                            while let Some(n) = cur {
                                assert_eq!(n.check, checksum(n.id), "freed or corrupted node reached");
                                cur = n.next.get();
                                depth += 1;
                                if depth > 4 {
                                    n.next.set(m, None);
                                    break;
                                }
                            }
                            let id = (t << 40) | (round << 20) | (x & 0xFFFFF);
                            let fresh = m.alloc(Node {
                                id,
                                check: checksum(id),
                                next: GcCell::new(bag.items.get(slot)),
                                _tally: Tally(drops.clone()),
                            });
                            made.fetch_add(1, Ordering::Relaxed);
                            bag.items.set(m, slot, Some(fresh));
                        }
                    });
                }
            });
        }
    });
    // Count what is reachable now, then drop everything.
    let reachable = heap.enter(|m| {
        let bag = table.get(m);
        let mut n = 0;
        for i in 0..SLOTS {
            let mut cur = bag.items.get(i);
            while let Some(node) = cur {
                assert_eq!(node.check, checksum(node.id));
                n += 1;
                cur = node.next.get();
            }
        }
        n
    });
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), made.load(Ordering::Relaxed) - reachable);
    assert!(heap.stats().cycles > 1);
    assert_no_double_drop();
}

#[test]
fn every_object_size_up_to_64_kib_allocates_and_dies() {
    // Sizes around the classes whose spans have no room beside the GC header
    // (8, 16, 24, 32 KiB) must work too.
    #[derive(Trace)]
    struct Sized<const N: usize> {
        bytes: [u8; N],
        #[gc(skip)]
        _tally: Tally,
    }
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    fn make<const N: usize>(heap: &Heap, drops: &Arc<AtomicUsize>) {
        heap.enter(|m| {
            for i in 0..3u8 {
                let o = m.alloc(Sized::<N> { bytes: [i; N], _tally: Tally(drops.clone()) });
                assert!(o.bytes.iter().all(|&b| b == i));
            }
        });
    }
    make::<8>(&heap, &drops);
    make::<7000>(&heap, &drops);
    make::<8192>(&heap, &drops);
    make::<16000>(&heap, &drops);
    make::<24000>(&heap, &drops);
    make::<28000>(&heap, &drops);
    make::<32000>(&heap, &drops);
    make::<40000>(&heap, &drops);
    heap.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 24);
    drop(heap);
    assert_no_double_drop();
}

#[test]
fn slow_path_time_is_the_calling_threads_own() {
    let heap = Heap::new();
    std::thread::spawn(move || {
        assert_eq!(gomalloc::gc::thread_slow_path_time(), std::time::Duration::ZERO, "a new thread has none");
        // The first allocation refills an empty cache: a slow path.
        heap.enter(|m| {
            for i in 0..10_000u64 {
                m.alloc(i);
            }
        });
        let mine = gomalloc::gc::thread_slow_path_time();
        assert!(mine > std::time::Duration::ZERO, "refills were counted");
        std::thread::spawn(|| {
            assert_eq!(gomalloc::gc::thread_slow_path_time(), std::time::Duration::ZERO, "not another thread's");
        })
        .join()
        .unwrap();
    })
    .join()
    .unwrap();
}

#[derive(Trace)]
struct Numbers<'gc> {
    items: GcVec<'gc, u64>,
}

#[test]
fn span_bytes_counts_every_span_cached_ones_included() {
    let heap = quiet_heap();
    assert_eq!(heap.stats().span_bytes, 0, "a new heap holds no span");
    let numbers: Root<Numbers<'static>> = heap.enter(|m| {
        let n = m.alloc(Numbers { items: GcVec::new() });
        for i in 0..100_000u64 {
            n.items.push(m, Some(m.alloc(i)));
        }
        m.root(n)
    });
    // 100 000 objects of at least 16 bytes, some in spans this thread's
    // cache still holds: all counted.
    let held = heap.stats().span_bytes;
    assert!(held >= 100_000 * 16, "span_bytes {held} is below the objects' own size");
    assert!(held < 64 << 20, "span_bytes {held}: far more than the objects need");
    drop(numbers);
}
