//! `gc::Pool`, Go's `sync.Pool`: the victim generation driven by explicit GC
//! cycles, explicit and timed rotation, `clear`, taking from the shared part
//! across threads, thread exit, pool drop, no value lost or handed out twice
//! under concurrent use and rotation, and a `Drop` that uses the pool.

use gomalloc::gc::{GcConfig, Heap, Pool};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, LazyLock, Mutex};
use std::thread;
use std::time::Duration;

/// Numbers the values of one test and records which were dropped.
#[derive(Default)]
struct Tracker {
    next: AtomicU64,
    dropped: Mutex<Vec<u64>>,
}

impl Tracker {
    fn item(self: &Arc<Self>) -> Item {
        Item { id: self.next.fetch_add(1, Ordering::Relaxed), tracker: self.clone() }
    }

    fn dropped(&self) -> Vec<u64> {
        let mut d = self.dropped.lock().unwrap().clone();
        d.sort_unstable();
        d
    }

    fn created(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

struct Item {
    id: u64,
    tracker: Arc<Tracker>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.tracker.dropped.lock().unwrap().push(self.id);
    }
}

fn tracked_pool(t: &Arc<Tracker>) -> Pool<Item> {
    let t = t.clone();
    Pool::new(move || t.item())
}

/// A heap with no automatic cycles: only `collect` rotates its pools.
fn quiet_heap() -> Heap {
    Heap::with_config(GcConfig { gc_percent: -1, memory_limit: usize::MAX, trace: false })
}

/// Takes everything `try_get` can reach from the calling thread; returns
/// the ids (the values are dropped: check drops before draining).
fn drain(pool: &Pool<Item>) -> Vec<u64> {
    let mut ids: Vec<u64> = std::iter::from_fn(|| pool.try_get()).map(|v| v.id).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn a_value_survives_one_gc_cycle_and_is_dropped_at_the_second() {
    let heap = quiet_heap();
    let t = Arc::new(Tracker::default());
    let pool = {
        let t = t.clone();
        Pool::with_heap(&heap, move || t.item())
    };
    let (a, b) = (t.item(), t.item());
    pool.put(a); // this thread's slot
    pool.put(b); // the slot is full: the shared part
    heap.collect();
    assert_eq!(t.dropped(), Vec::<u64>::new(), "the first cycle only moves them to the victim generation");
    // Victims are still handed out; one goes back in, into the new primary
    // generation.
    let back = pool.try_get().expect("a victim is handed out");
    let kept = back.id;
    pool.put(back);
    heap.collect();
    let other = 1 - kept;
    assert_eq!(t.dropped(), vec![other], "the value left in the victim generation is dropped at the second cycle");
    heap.collect();
    assert_eq!(t.dropped(), vec![0, 1], "the value put back survived exactly one more cycle");
    assert!(pool.try_get().is_none());
    assert_eq!(heap.stats().cycles, 3);
    assert_eq!(t.created(), 2, "the constructor never ran");
}

#[test]
fn a_dropped_pool_leaves_the_heap_cycle_hooks() {
    let heap = quiet_heap();
    let t = Arc::new(Tracker::default());
    let pool = {
        let t = t.clone();
        Pool::with_heap(&heap, move || t.item())
    };
    pool.put(t.item());
    drop(pool);
    assert_eq!(t.dropped(), vec![0]);
    heap.collect(); // would run a dangling hook if the pool had not left
    assert_eq!(t.dropped(), vec![0]);
}

#[test]
fn a_panicking_drop_does_not_stop_the_collector() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("a pooled value's Drop panics (expected by the test)");
        }
    }
    let heap = quiet_heap();
    let pool = Pool::with_heap(&heap, || Bomb);
    pool.put(Bomb);
    let (done, cycles) = mpsc::channel();
    let h = heap.clone();
    thread::spawn(move || {
        for _ in 0..3 {
            h.collect(); // the second drops the value, on the collector thread
            done.send(()).unwrap();
        }
    });
    for i in 0..3 {
        cycles.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("cycle {i} never ended"));
    }
    assert_eq!(heap.stats().cycles, 3);
    assert!(pool.try_get().is_none());
}

#[test]
fn explicit_rotation_and_clear() {
    let t = Arc::new(Tracker::default());
    let pool = tracked_pool(&t);
    for _ in 0..3 {
        pool.put(t.item());
    }
    pool.rotate();
    assert!(t.dropped().is_empty());
    pool.rotate();
    assert_eq!(t.dropped(), vec![0, 1, 2]);
    assert!(pool.try_get().is_none());

    pool.put(t.item()); // 3
    pool.put(t.item()); // 4
    pool.rotate();
    pool.put(t.item()); // 5: primary, with 3 and 4 in the victim generation
    pool.clear();
    assert_eq!(t.dropped(), vec![0, 1, 2, 3, 4, 5], "clear drops both generations");
    assert!(pool.try_get().is_none());
    let fresh = pool.get();
    assert_eq!(fresh.id, 6, "an empty pool's get calls the constructor");
}

#[test]
fn get_prefers_the_own_slot_then_shared_then_victim() {
    let t = Arc::new(Tracker::default());
    let pool = tracked_pool(&t);
    pool.put(t.item()); // 0: slot
    pool.put(t.item()); // 1: shared
    pool.rotate(); // both victims
    pool.put(t.item()); // 2: slot
    pool.put(t.item()); // 3: shared
    let order: Vec<u64> = std::iter::from_fn(|| pool.try_get()).map(|v| v.id).collect();
    assert_eq!(&order[..2], &[2, 3]);
    assert_eq!(order.len(), 4);
}

#[test]
fn time_based_rotation() {
    let t = Arc::new(Tracker::default());
    let pool = tracked_pool(&t);
    pool.set_rotation_interval(Some(Duration::from_millis(20)));
    pool.put(t.item()); // 0
    thread::sleep(Duration::from_millis(60));
    pool.put(t.item()); // 1: rotates first (0 becomes a victim)
    assert!(t.dropped().is_empty());
    thread::sleep(Duration::from_millis(60));
    pool.put(t.item()); // 2: rotates (0 dropped, 1 a victim)
    assert_eq!(t.dropped(), vec![0]);
    pool.set_rotation_interval(None);
    thread::sleep(Duration::from_millis(60));
    pool.put(t.item()); // 3: no more rotation
    assert_eq!(t.dropped(), vec![0]);
    assert_eq!(drain(&pool), vec![1, 2, 3]);
}

#[test]
fn other_threads_take_from_the_shared_part_not_from_a_slot() {
    let t = Arc::new(Tracker::default());
    let pool = tracked_pool(&t);
    pool.put(t.item()); // 0: this thread's slot
    pool.put(t.item()); // 1: shared
    let stolen = thread::scope(|s| {
        s.spawn(|| {
            let first = pool.try_get().map(|v| v.id);
            let second = pool.try_get().map(|v| v.id);
            (first, second)
        })
        .join()
        .unwrap()
    });
    assert_eq!(stolen, (Some(1), None), "the shared value is taken, the other thread's slot is private");
    assert_eq!(pool.try_get().map(|v| v.id), Some(0));
}

#[test]
fn thread_exit_hands_the_slot_back() {
    let t = Arc::new(Tracker::default());
    let pool = tracked_pool(&t);
    // `join`, not the end of the scope: a scope ends when the closures
    // return, before the threads' thread-local destructors have run.
    thread::scope(|s| {
        s.spawn(|| pool.put(t.item())).join().unwrap(); // 0 in that thread's slot, then it exits
    });
    assert!(t.dropped().is_empty());
    assert_eq!(drain(&pool), vec![0], "the exited thread's value moved to the shared part");
}

#[test]
fn dropping_the_pool_drops_the_slots_of_live_threads() {
    let t = Arc::new(Tracker::default());
    let pool = tracked_pool(&t);
    pool.put(t.item()); // 0: slot
    pool.put(t.item()); // 1: shared
    pool.rotate(); // victims
    pool.put(t.item()); // 2: slot
    let pool = Arc::new(pool);
    let (put_done, wait_put) = mpsc::channel();
    let (release, wait_release) = mpsc::channel::<()>();
    let worker = {
        let (pool, t) = (pool.clone(), t.clone());
        thread::spawn(move || {
            pool.put(t.item()); // 3: the worker's slot
            drop(pool);
            put_done.send(()).unwrap();
            wait_release.recv().unwrap();
            // Exits after the pool is gone: nothing left to hand back.
        })
    };
    wait_put.recv().unwrap();
    drop(Arc::into_inner(pool).expect("the worker dropped its handle"));
    assert_eq!(t.dropped(), vec![0, 1, 2, 3], "the pool took every value with it");
    release.send(()).unwrap();
    worker.join().unwrap();
    assert_eq!(t.dropped(), vec![0, 1, 2, 3], "exactly once");
}

#[test]
fn concurrent_use_and_rotation_lose_and_duplicate_nothing() {
    const THREADS: usize = 4;
    const OPS: usize = 20_000;
    const HELD: usize = 8;
    // Each `get` creates at most one value.
    const MAX_IDS: usize = THREADS * OPS;

    struct Tagged {
        id: usize,
        table: Arc<Table>,
    }
    struct Table {
        next: AtomicUsize,
        held: Vec<AtomicBool>,
        drops: Vec<AtomicU8>,
    }
    impl Drop for Tagged {
        fn drop(&mut self) {
            self.table.drops[self.id].fetch_add(1, Ordering::SeqCst);
        }
    }

    let table = Arc::new(Table {
        next: AtomicUsize::new(0),
        held: (0..MAX_IDS).map(|_| AtomicBool::new(false)).collect(),
        drops: (0..MAX_IDS).map(|_| AtomicU8::new(0)).collect(),
    });
    let heap = quiet_heap();
    let pool = {
        let table = table.clone();
        Pool::with_heap(&heap, move || {
            let id = table.next.fetch_add(1, Ordering::Relaxed);
            assert!(id < MAX_IDS);
            Tagged { id, table: table.clone() }
        })
    };
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|w| {
                let (pool, table) = (&pool, &table);
                s.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(w as u64 + 1);
                    let mut mine: Vec<Tagged> = Vec::new();
                    for _ in 0..OPS {
                        if mine.len() < HELD && (mine.is_empty() || rng.gen_bool(0.5)) {
                            let v = pool.get();
                            assert!(
                                !table.held[v.id].swap(true, Ordering::SeqCst),
                                "value {} handed to two holders at once",
                                v.id
                            );
                            assert_eq!(table.drops[v.id].load(Ordering::SeqCst), 0, "a dropped value handed out");
                            mine.push(v);
                        } else if w == 0 && rng.gen_ratio(1, 256) {
                            pool.rotate(); // interleaved with the others' gets and puts for sure
                        } else {
                            let v = mine.swap_remove(rng.gen_range(0..mine.len()));
                            table.held[v.id].store(false, Ordering::SeqCst);
                            pool.put(v);
                        }
                    }
                    for v in mine {
                        table.held[v.id].store(false, Ordering::SeqCst);
                        pool.put(v);
                    }
                })
            })
            .collect();
        s.spawn(|| {
            // Rotations from the collector's hook and from a caller, while
            // the workers run.
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if n % 2 == 0 {
                    heap.collect();
                } else {
                    pool.rotate();
                }
                n += 1;
                thread::sleep(Duration::from_micros(200));
            }
        });
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    // The workers have exited: their slots are in the shared part.
    let mut drained = HashSet::new();
    let mut kept = Vec::new(); // dropped after the checks
    while let Some(v) = pool.try_get() {
        assert!(drained.insert(v.id), "value {} pooled twice", v.id);
        kept.push(v);
    }
    let created = table.next.load(Ordering::Relaxed);
    assert!(created >= HELD, "every worker held up to {HELD} values at once");
    for id in 0..created {
        let drops = table.drops[id].load(Ordering::SeqCst);
        let pooled = drained.contains(&id);
        assert!(
            (drops == 1) != pooled,
            "value {id}: dropped {drops} times, {} at the end",
            if pooled { "still pooled" } else { "not pooled" }
        );
    }
    drop(kept);
}

/// Values whose `Drop` uses the pool they were dropped by.
struct Reentrant {
    id: u64,
    reenter: bool,
}

static REENTRANT: LazyLock<Pool<Reentrant>> = LazyLock::new(|| Pool::new(|| Reentrant { id: 1000, reenter: false }));
static REENTRANT_DROPS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

impl Drop for Reentrant {
    fn drop(&mut self) {
        REENTRANT_DROPS.lock().unwrap().push(self.id);
        if self.reenter {
            let got = REENTRANT.try_get();
            REENTRANT.put(Reentrant { id: self.id + 100, reenter: false });
            if let Some(g) = got {
                REENTRANT.put(g);
            }
        }
    }
}

#[test]
fn a_drop_may_use_the_pool_that_drops_it() {
    let pool = &*REENTRANT;
    pool.put(Reentrant { id: 1, reenter: true });
    pool.put(Reentrant { id: 2, reenter: true });
    pool.rotate();
    pool.rotate(); // drops 1 and 2, whose drops put 101 and 102
    let mut drops = REENTRANT_DROPS.lock().unwrap().clone();
    drops.sort_unstable();
    assert_eq!(drops, vec![1, 2]);
    pool.put(Reentrant { id: 3, reenter: true });
    pool.clear(); // drops 101, 102 and 3, which puts 103
    drops = REENTRANT_DROPS.lock().unwrap().clone();
    drops.sort_unstable();
    assert_eq!(drops, vec![1, 2, 3, 101, 102]);
    let left: Vec<u64> = std::iter::from_fn(|| pool.try_get()).map(|v| v.id).collect();
    assert_eq!(left, vec![103]);
    // A value of a thread that exits with a re-entrant value in its slot.
    thread::scope(|s| {
        s.spawn(|| pool.put(Reentrant { id: 4, reenter: true })).join().unwrap();
    });
    pool.clear(); // drops 4, which puts 104
    assert_eq!(pool.try_get().map(|v| v.id), Some(104));
}
