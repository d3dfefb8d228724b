//! Finalizers and weak handles: once-only, ordering, resurrection, cycles of
//! finalizable objects, weak clearing before finalizers, and weak upgrades
//! racing with concurrent marking.

use gomalloc::gc::{GcCell, GcConfig, Heap, Root, Trace, Weak, WeakCell, WeakRoot};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counts drops of the object holding it.
struct Tally(Arc<AtomicUsize>);

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
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
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_F00D
}

fn node<'gc>(m: &gomalloc::gc::Mutator<'gc>, id: u64, drops: &Arc<AtomicUsize>) -> gomalloc::gc::Gc<'gc, Node<'gc>> {
    m.alloc(Node { id, check: checksum(id), next: GcCell::new(None), _tally: Tally(drops.clone()) })
}

fn quiet_heap() -> Heap {
    Heap::with_config(GcConfig { gc_percent: -1, memory_limit: usize::MAX, trace: false })
}

fn cycle(heap: &Heap) {
    heap.collect();
    heap.wait_for_finalizers();
}

#[test]
fn a_finalizer_runs_once_after_the_object_is_unreachable() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let root: Root<Node<'static>> = heap.enter(|m| {
        let n = node(m, 7, &drops);
        let ran = ran.clone();
        m.set_finalizer::<Node<'static>>(n, move |_, n| {
            assert_eq!(n.check, checksum(n.id), "the finalizer saw a corrupted object");
            assert_eq!(n.id, 7);
            ran.fetch_add(1, Ordering::SeqCst);
        });
        m.root(n)
    });
    cycle(&heap);
    cycle(&heap);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "finalizer ran while the object was rooted");
    assert_eq!(heap.stats().finalizers_registered, 1);
    drop(root);
    cycle(&heap);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // The object survived the cycle that found it, for its finalizer.
    assert_eq!(drops.load(Ordering::SeqCst), 0, "object freed in the cycle that queued its finalizer");
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "object not freed after its finalizer ran");
    cycle(&heap);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "finalizer ran twice");
    let st = heap.stats();
    assert_eq!((st.finalizers_run, st.finalizers_registered, st.finalizers_ready), (1, 0, 0));
}

#[test]
fn objects_reached_only_from_a_finalizable_object_stay_whole_for_its_finalizer() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    heap.enter(|m| {
        let a = node(m, 1, &drops);
        let mut prev = a;
        for id in 2..=50 {
            let n = node(m, id, &drops);
            prev.next.set(m, Some(n));
            prev = n;
        }
        let seen = seen.clone();
        m.set_finalizer::<Node<'static>>(a, move |_, a| {
            let mut cur = Some(a);
            let mut ids = seen.lock().unwrap();
            while let Some(n) = cur {
                assert_eq!(n.check, checksum(n.id), "finalizer reached a freed object");
                ids.push(n.id);
                cur = n.next.get();
            }
        });
    });
    cycle(&heap);
    assert_eq!(*seen.lock().unwrap(), (1..=50).collect::<Vec<u64>>());
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 50, "the chain was not freed after the finalizer");
}

#[test]
fn a_finalizer_can_resurrect_its_object() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let saved: Arc<Mutex<Option<Root<Node<'static>>>>> = Arc::new(Mutex::new(None));
    heap.enter(|m| {
        let a = node(m, 11, &drops);
        let b = node(m, 12, &drops);
        a.next.set(m, Some(b));
        let (saved, ran) = (saved.clone(), ran.clone());
        m.set_finalizer::<Node<'static>>(a, move |m, a| {
            ran.fetch_add(1, Ordering::SeqCst);
            *saved.lock().unwrap() = Some(m.root(a));
        });
    });
    cycle(&heap);
    cycle(&heap);
    cycle(&heap);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "a resurrected object was freed");
    let root = saved.lock().unwrap().take().expect("finalizer stored the object");
    heap.enter(|m| {
        let a = root.get(m);
        assert_eq!((a.id, a.check), (11, checksum(11)));
        let b = a.next.get().unwrap();
        assert_eq!((b.id, b.check), (12, checksum(12)));
    });
    drop(root);
    cycle(&heap);
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "a finalizer ran again without being registered again");
}

#[test]
fn finalizers_run_in_reachability_order() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    heap.enter(|m| {
        // a -> b -> c, each finalizable: a first, then b, then c.
        let (a, b, c) = (node(m, 1, &drops), node(m, 2, &drops), node(m, 3, &drops));
        a.next.set(m, Some(b));
        b.next.set(m, Some(c));
        for n in [a, b, c] {
            let order = order.clone();
            m.set_finalizer::<Node<'static>>(n, move |_, n| order.lock().unwrap().push(n.id));
        }
    });
    cycle(&heap);
    assert_eq!(*order.lock().unwrap(), vec![1]);
    cycle(&heap);
    assert_eq!(*order.lock().unwrap(), vec![1, 2]);
    cycle(&heap);
    assert_eq!(*order.lock().unwrap(), vec![1, 2, 3]);
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn a_cycle_of_finalizable_objects_is_never_finalized_nor_freed() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    heap.enter(|m| {
        let (a, b) = (node(m, 1, &drops), node(m, 2, &drops));
        a.next.set(m, Some(b));
        b.next.set(m, Some(a));
        for n in [a, b] {
            let ran = ran.clone();
            m.set_finalizer::<Node<'static>>(n, move |_, _| {
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
        // A plain cycle beside it is collected as usual.
        let (c, d) = (node(m, 3, &drops), node(m, 4, &drops));
        c.next.set(m, Some(d));
        d.next.set(m, Some(c));
    });
    for _ in 0..4 {
        cycle(&heap);
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "only the plain cycle is freed");
    assert_eq!(heap.stats().finalizers_registered, 2);
    drop(heap);
    assert_eq!(drops.load(Ordering::SeqCst), 4, "dropping the heap drops the leaked cycle");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "finalizers do not run when the heap is dropped");
}

#[test]
fn a_panicking_finalizer_is_reported_and_the_next_one_runs() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    heap.enter(|m| {
        let a = node(m, 1, &drops);
        m.set_finalizer::<Node<'static>>(a, |_, _| panic!("finalizer panic (expected by the test)"));
        let b = node(m, 2, &drops);
        let ran = ran.clone();
        m.set_finalizer::<Node<'static>>(b, move |_, _| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    });
    cycle(&heap);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let st = heap.stats();
    assert_eq!((st.finalizers_run, st.finalizers_panicked), (2, 1));
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn a_cleared_finalizer_does_not_run() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicBool::new(false));
    heap.enter(|m| {
        let a = node(m, 1, &drops);
        let ran = ran.clone();
        m.set_finalizer::<Node<'static>>(a, move |_, _| ran.store(true, Ordering::SeqCst));
        assert!(m.clear_finalizer(a));
        assert!(!m.clear_finalizer(a));
    });
    cycle(&heap);
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(drops.load(Ordering::SeqCst), 1, "an object whose finalizer was cleared dies in one cycle");
}

#[test]
fn weak_handles_upgrade_while_alive_and_clear_after() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let (root, weak): (Root<Node<'static>>, WeakRoot<Node<'static>>) = heap.enter(|m| {
        let n = node(m, 5, &drops);
        (m.root(n), m.weak_root(n))
    });
    cycle(&heap);
    heap.enter(|m| {
        let n = weak.get(m).expect("rooted object's weak handle cleared");
        assert!(gomalloc::gc::Gc::ptr_eq(n, root.get(m)));
    });
    drop(root);
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    heap.enter(|m| assert!(weak.get(m).is_none(), "weak handle to a freed object upgraded"));
    assert!(heap.stats().weak_cleared >= 1);
}

#[test]
fn weak_handles_are_cleared_before_the_finalizer_runs() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let weak: Arc<WeakRoot<Node<'static>>> = Arc::new(heap.enter(|m| {
        let n = node(m, 9, &drops);
        let w = m.weak_root(n);
        m.set_finalizer::<Node<'static>>(n, |_, _| {});
        w
    }));
    let seen_in_finalizer = Arc::new(Mutex::new(None));
    heap.enter(|m| {
        // A second finalizable object whose finalizer looks at the weak
        // handle of the first: both are found unreachable in one cycle.
        let probe = node(m, 10, &drops);
        let (weak, seen) = (weak.clone(), seen_in_finalizer.clone());
        m.set_finalizer::<Node<'static>>(probe, move |m, _| {
            *seen.lock().unwrap() = Some(weak.get(m).is_some());
        });
    });
    cycle(&heap);
    assert_eq!(*seen_in_finalizer.lock().unwrap(), Some(false), "weak handle still upgradable in a finalizer");
    heap.enter(|m| assert!(weak.get(m).is_none()));
}

#[derive(Trace)]
struct Holder<'gc> {
    strong: GcCell<'gc, Node<'gc>>,
    weak: WeakCell<'gc, Node<'gc>>,
    fixed: Option<Weak<'gc, Node<'gc>>>,
}

#[test]
fn weak_handles_inside_objects_and_their_slots_are_collected() {
    let heap = quiet_heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let holder: Root<Holder<'static>> = heap.enter(|m| {
        let (a, b) = (node(m, 1, &drops), node(m, 2, &drops));
        let h = m.alloc(Holder {
            strong: GcCell::new(Some(a)),
            weak: WeakCell::new(Some(Weak::new(m, b))),
            fixed: Some(Weak::new(m, a)),
        });
        m.root(h)
    });
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "b is only weakly reachable");
    heap.enter(|m| {
        let h = holder.get(m);
        assert!(h.weak.get().unwrap().upgrade(m).is_none());
        let a = h.fixed.unwrap().upgrade(m).expect("a is strongly reachable");
        assert_eq!(a.check, checksum(1));
        // Replace the cleared weak handle with one to a live object, then
        // drop the strong edge: the weak handle clears, the slot goes.
        h.weak.set(m, Some(Weak::new(m, a)));
        h.strong.set(m, None);
    });
    cycle(&heap);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    heap.enter(|m| {
        let h = holder.get(m);
        assert!(h.weak.get().unwrap().upgrade(m).is_none());
        assert!(h.fixed.unwrap().upgrade(m).is_none());
        h.weak.set(m, None);
    });
    cycle(&heap);
    cycle(&heap);
    // Two slots remain listed at most (the `fixed` one is still reachable
    // but its target is gone, so it was dropped from the list).
    assert_eq!(heap.stats().weak_slots, 0, "cleared and dead slots stay listed");
}

/// Mutators create objects, keep some strongly, drop others, and upgrade
/// weak handles to all of them while automatic cycles run. An upgrade must
/// never yield a freed object (checksums), and once a weak handle has
/// cleared it stays cleared.
#[test]
fn weak_upgrades_race_with_concurrent_marking() {
    let heap = Heap::with_config(GcConfig { gc_percent: 25, memory_limit: usize::MAX, trace: false });
    let drops = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (heap, drops, made) = (heap.clone(), drops.clone(), made.clone());
            s.spawn(move || {
                let mut rng = t * 7919 + 1;
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let keep: Root<Holder<'static>> = heap.enter(|m| {
                    m.root(m.alloc(Holder { strong: GcCell::new(None), weak: WeakCell::new(None), fixed: None }))
                });
                let mut weaks: Vec<(u64, WeakRoot<Node<'static>>, bool)> = Vec::new();
                for round in 0..1000u64 {
                    heap.enter(|m| {
                        let keeper = keep.get(m);
                        for i in 0..200u64 {
                            let id = (t << 40) | (round << 16) | i;
                            let n = node(m, id, &drops);
                            made.fetch_add(1, Ordering::Relaxed);
                            // Chain a few strongly from the keeper.
                            if next() % 4 == 0 {
                                n.next.set(m, keeper.strong.get());
                                keeper.strong.set(m, Some(n));
                            }
                            if i % 10 == 0 {
                                weaks.push((id, m.weak_root(n), false));
                            }
                        }
                        if round % 50 == 49 {
                            keeper.strong.set(m, None);
                        }
                        // Upgrade a few: an upgrade while marking shades
                        // its object, so upgrading all would keep all.
                        for (id, w, cleared) in weaks.iter_mut() {
                            if next() % 16 != 0 {
                                continue;
                            }
                            match w.get(m) {
                                Some(n) => {
                                    assert!(!*cleared, "a cleared weak handle upgraded again");
                                    assert_eq!((n.id, n.check), (*id, checksum(*id)), "upgrade gave a freed object");
                                }
                                None => *cleared = true,
                            }
                        }
                    });
                    weaks.retain(|(_, _, cleared)| !*cleared || next() % 2 == 0);
                }
            });
        }
    });
    heap.collect();
    heap.collect();
    let st = heap.stats();
    eprintln!(
        "weak race: {} cycles, {} weak handles cleared, {} objects",
        st.cycles,
        st.weak_cleared,
        made.load(Ordering::SeqCst)
    );
    assert!(st.cycles >= 3, "automatic cycles ran ({} cycles)", st.cycles);
    assert!(st.weak_cleared > 0);
    drop(heap);
    assert_eq!(drops.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
}
