//! GC torture test: mutator threads keep rewiring a shared random graph of
//! about a million objects through barriered cells while automatic cycles
//! run. Every object carries a checksum of its identity, verified on every
//! visit (a freed-and-reused object fails it). After the mutators stop and a
//! final `collect()`, the objects still alive must be exactly those reachable
//! from the root, and every other object must have been dropped exactly once
//! (drops are counted).
//!
//! Finalizers and weak handles are in the graph too: some fresh nodes get a
//! finalizer that checks the node and its children (a finalizer must never
//! see freed memory) and records its id (it must run once), and a weak root
//! the test keeps; nodes hold a weak edge (`peer`) that is upgraded and
//! checked on visits. At the end, what stays alive is what is reachable
//! from the root plus what cycles of finalizable objects keep (never
//! collected, by design): the test finds those through their weak roots,
//! which are never cleared while the objects live.
//!
//! Every node is held by one rooted vector (so about a million stay live)
//! and has two edges to other nodes, rewired at random; vector entries are
//! replaced by fresh nodes now and then, so old nodes die unless an edge
//! still reaches them. Scale: `GOMALLOC_TORTURE_NODES` (default 1,000,000)
//! and `GOMALLOC_TORTURE_ROUNDS` (default 60 per thread, 2,000 operations
//! each).

use gomalloc::gc::{Gc, GcCell, GcConfig, GcVec, Heap, Mutator, Root, Trace, Weak, WeakCell, WeakRoot};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

struct Tally(Arc<AtomicUsize>);
impl Drop for Tally {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Trace)]
struct Node<'gc> {
    id: u64,
    check: u64,
    left: GcCell<'gc, Node<'gc>>,
    right: GcCell<'gc, Node<'gc>>,
    peer: WeakCell<'gc, Node<'gc>>,
    #[gc(skip)]
    _tally: Tally,
}

#[derive(Trace)]
struct Table<'gc> {
    slots: GcVec<'gc, Node<'gc>>,
}

fn checksum(id: u64) -> u64 {
    (id ^ 0x5851_F42D_4C95_7F2D).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const THREADS: u64 = 4;

struct Counters {
    drops: Arc<AtomicUsize>,
    made: Arc<AtomicUsize>,
    next_id: Arc<AtomicUsize>,
}

impl Counters {
    fn node<'gc>(
        &self,
        m: &Mutator<'gc>,
        left: Option<Gc<'gc, Node<'gc>>>,
        right: Option<Gc<'gc, Node<'gc>>>,
    ) -> Gc<'gc, Node<'gc>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        self.made.fetch_add(1, Ordering::Relaxed);
        m.alloc(Node {
            id,
            check: checksum(id),
            left: GcCell::new(left),
            right: GcCell::new(right),
            peer: WeakCell::new(None),
            _tally: Tally(self.drops.clone()),
        })
    }
}

#[test]
fn torture_rewiring_a_million_object_graph() {
    let nodes = env("GOMALLOC_TORTURE_NODES", 1_000_000);
    let rounds = env("GOMALLOC_TORTURE_ROUNDS", 60);
    let heap = Heap::with_config(GcConfig { gc_percent: 100, memory_limit: usize::MAX, trace: false });
    let drops = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let next_id = Arc::new(AtomicUsize::new(1));
    let counters = Counters { drops: drops.clone(), made: made.clone(), next_id: next_id.clone() };
    let fresh = &counters;

    // Build: `nodes` nodes, all held by one rooted vector, each with edges
    // to two earlier nodes; in batches so each scope stays short.
    let table: Root<Table<'static>> = heap.enter(|m| m.root(m.alloc(Table { slots: GcVec::new() })));
    let mut rng = Rng(0x1234_5678);
    let mut built = 0;
    while built < nodes {
        heap.enter(|m| {
            let t = table.get(m);
            for _ in 0..10_000.min(nodes - built) {
                let (l, r) = if built == 0 {
                    (None, None)
                } else {
                    (t.slots.get(rng.below(built)), t.slots.get(rng.below(built)))
                };
                t.slots.push(m, Some(fresh.node(m, l, r)));
                built += 1;
            }
        });
    }

    // Rewire concurrently: random edges between live nodes, fresh nodes
    // (some finalizable), cut edges, weak edges, and vector entries replaced
    // (their old nodes live on only if an edge still reaches them).
    let table = Arc::new(table);
    let finalized: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let finalizable: Arc<Mutex<Vec<WeakRoot<Node<'static>>>>> = Arc::default();
    let weak_slots_made = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (heap, table) = (heap.clone(), table.clone());
            let (finalized, finalizable, weak_slots_made) = (finalized.clone(), finalizable.clone(), &weak_slots_made);
            s.spawn(move || {
                let mut rng = Rng(0xDEAD_BEEF ^ (t + 1).wrapping_mul(0x9E37_79B9));
                for _ in 0..rounds {
                    heap.enter(|m| {
                        let tab = table.get(m);
                        for _ in 0..2_000 {
                            let i = rng.below(nodes);
                            let Some(mut at) = tab.slots.get(i) else { continue };
                            // Walk a random path, checking every node visited.
                            for _ in 0..rng.below(8) {
                                assert_eq!(at.check, checksum(at.id), "a freed or corrupted node was reached");
                                let next = if rng.next() & 1 == 0 { at.left.get() } else { at.right.get() };
                                match next {
                                    Some(n) => at = n,
                                    None => break,
                                }
                            }
                            assert_eq!(at.check, checksum(at.id), "a freed or corrupted node was reached");
                            if let Some(p) = at.peer.get().and_then(|w| w.upgrade(m)) {
                                assert_eq!(p.check, checksum(p.id), "a weak upgrade reached a freed node");
                            }
                            let target = match rng.below(8) {
                                0 => {
                                    let n = fresh.node(m, at.left.get(), None);
                                    if rng.below(16) == 0 {
                                        let finalized = finalized.clone();
                                        m.set_finalizer::<Node<'static>>(n, move |_, n| {
                                            assert_eq!(n.check, checksum(n.id), "finalizer got a freed node");
                                            for c in [n.left.get(), n.right.get()].into_iter().flatten() {
                                                assert_eq!(c.check, checksum(c.id), "finalizer reached a freed node");
                                            }
                                            assert!(finalized.lock().unwrap().insert(n.id), "finalizer ran twice");
                                        });
                                        finalizable.lock().unwrap().push(m.weak_root(n));
                                        weak_slots_made.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Some(n)
                                }
                                1 => None,
                                _ => tab.slots.get(rng.below(nodes)),
                            };
                            if rng.below(16) == 0 {
                                at.peer.set(m, target.map(|n| Weak::new(m, n)));
                                weak_slots_made.fetch_add(1, Ordering::Relaxed);
                            }
                            if rng.next() & 1 == 0 {
                                at.left.set(m, target);
                            } else {
                                at.right.set(m, target);
                            }
                            if rng.below(8) == 0 {
                                let j = rng.below(nodes);
                                tab.slots.set(m, j, Some(fresh.node(m, tab.slots.get(i), None)));
                            }
                        }
                    });
                }
            });
        }
    });

    // Collect until finalizers settle: each cycle can queue finalizers
    // (whose objects survive it) and free what earlier finalizers released.
    settle(&heap);
    let alive = alive_nodes(&heap, Some(&table), &finalizable, nodes);
    let st = heap.stats();
    let made = made.load(Ordering::Relaxed);
    assert!(st.cycles > st.forced_cycles, "automatic cycles ran during the test");
    assert_eq!(st.finalizers_panicked, 0, "a finalizer found a freed or corrupted node (see stderr)");
    assert_eq!(st.finalizers_run as usize, finalized.lock().unwrap().len());
    assert_eq!(drops.load(Ordering::Relaxed), made - alive, "dropped = made - alive");
    // The last cycle marked the alive nodes (64-byte objects: a 48-byte node
    // behind an 8-byte header, in the 64-byte class), the table, and weak
    // slots (16 bytes each) — nothing else.
    let slots = weak_slots_made.load(Ordering::Relaxed);
    assert!(
        st.live_bytes >= alive * 64 && st.live_bytes <= alive * 64 + slots * 16 + 256,
        "live bytes {} for {} alive nodes",
        st.live_bytes,
        alive
    );
    eprintln!(
        "torture: {} nodes made, {} alive, {} dropped, {} finalized, {} weak cleared, {} cycles ({} forced), max pause {:?}",
        made,
        alive,
        drops.load(Ordering::Relaxed),
        st.finalizers_run,
        st.weak_cleared,
        st.cycles,
        st.forced_cycles,
        st.pause_max,
    );
    drop(table);
    settle(&heap);
    let leaked = alive_nodes(&heap, None, &finalizable, nodes);
    assert_eq!(drops.load(Ordering::Relaxed), made - leaked, "everything dies once the root is gone");
    assert_eq!(heap.stats().finalizers_panicked, 0);
    drop(finalizable);
    drop(heap);
    assert_eq!(drops.load(Ordering::Relaxed), made, "dropping the heap drops what finalizable cycles kept");
}

/// Runs cycles until one queues no finalizer and none is waiting, then one
/// more so the objects of the last finalizers run are freed.
fn settle(heap: &Heap) {
    loop {
        let before = heap.stats().finalizers_queued;
        heap.collect();
        heap.wait_for_finalizers();
        if heap.stats().finalizers_queued == before {
            break;
        }
    }
}

/// Nodes alive: reachable from the table (if given) or from a finalizable
/// node whose weak root still upgrades (a cycle of finalizable objects
/// keeps itself, and everything it reaches, forever). Checks each one.
fn alive_nodes(
    heap: &Heap,
    table: Option<&Root<Table<'static>>>,
    finalizable: &Mutex<Vec<WeakRoot<Node<'static>>>>,
    nodes: usize,
) -> usize {
    heap.enter(|m| {
        let mut stack: Vec<Gc<'_, Node<'_>>> = Vec::new();
        if let Some(table) = table {
            let tab = table.get(m);
            stack.extend((0..nodes).filter_map(|i| tab.slots.get(i)));
        }
        stack.extend(finalizable.lock().unwrap().iter().filter_map(|w| w.get(m)));
        let mut seen: HashSet<usize> = HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(&*n as *const Node as usize) {
                continue;
            }
            assert_eq!(n.check, checksum(n.id), "a freed or corrupted node is alive");
            stack.extend(n.left.get());
            stack.extend(n.right.get());
        }
        seen.len()
    })
}
