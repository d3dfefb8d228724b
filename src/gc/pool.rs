//! `Pool<T>`: a cache of reusable values with the semantics of Go's
//! `sync.Pool` — a per-thread slot, a shared part any thread can take from,
//! and a victim generation: a pooled value survives one rotation and is
//! dropped at the second.
//!
//! The values are ordinary Rust values (buffers, scratch structures), not GC
//! objects. A rotation happens at the start of every cycle of the heap given
//! to [`Pool::with_heap`] (a cycle hook, `HeapInner::add_cycle_hook`, as Go's
//! `poolCleanup` runs at the start of a GC), when the interval set by
//! [`Pool::set_rotation_interval`] has passed (checked by `get` and `put`,
//! no thread of its own), or on [`Pool::rotate`].
//!
//! Called by users. Calls `heap.rs` (the cycle hook) and, for the per-thread
//! slot registry, the thread-local `POOL_SLOTS` in `globals.rs`.
//!
//! # Structure
//! - *Slots*: one per (thread, pool), an `Option<T>` behind a `SpinLocked`
//!   (`crate::sync`: one atomic exchange to take, a store to release). Its
//!   thread takes the lock on every `get`/`put`; other threads take it only
//!   to rotate, clear or drop the pool, for a few instructions, so it is
//!   uncontended in the steady state and a waiter never waits long. The
//!   thread finds its slot through `POOL_SLOTS`, a short list of
//!   registrations keyed by the pool's address; the pool lists every slot
//!   too (`PoolInner::slots`), for rotation.
//! - *Shared*: a `Vec<T>` behind a `Locked`: `put` pushes there when the
//!   slot is full, `get` pops there when the slot is empty.
//! - *Victim*: the previous generation, a `Vec<T>` behind a `Locked`,
//!   consulted by `get` after the shared part and before the constructor.
//!
//! `get` order: own slot, shared, victim, constructor. `put` order: own slot,
//! shared. Rotation: slots and shared become the victim, the old victim is
//! dropped.
//!
//! # Concurrency
//! Lock order: `rotation`, then `slots`, then one slot; `rotation`, then
//! `shared`; `rotation`, then `victim`. `get`/`put` take one lock at a time
//! and never under `rotation`. No lock is held while a `T` is dropped or
//! the constructor runs: both are user code and may use any pool, this one
//! included. The rotation interval and time are relaxed atomics: hints,
//! whose only effect is to start a rotation, which the locks order.
//! Not built under `gomalloc_loom` (it uses `std` thread-locals and time).
//! A thread's own slot is found without any lock; `POOL_SLOTS` is touched
//! only by its thread.
//!
//! # Invariants
//! - Every pooled value is in exactly one place: a slot, `shared`,
//!   `victim`, or for a moment a local of a rotation (under `rotation`) or
//!   of a thread exit moving its slot to `shared`. Nothing is lost or
//!   handed out twice.
//! - A registration in `POOL_SLOTS` keeps its pool's allocation (weakly) and
//!   its slot (strongly) alive, so a pool address found there names a live
//!   `PoolInner<T>` allocation of the registering pool's `T`, and the slot
//!   pointer stays valid until the registration is dropped: at thread exit,
//!   or when the pool is gone.
//! - Thread exit moves the slot's value to `shared` (if the pool is gone,
//!   its drop already emptied the slot); dropping the pool drops every
//!   value, in slots of live threads too.

use crate::gc::Heap;
use crate::globals::POOL_SLOTS;
use crate::sync::{AtomicU64, Locked, Ordering, SpinLocked};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A cache of reusable `T`s, as Go's `sync.Pool`. `Send` and `Sync`: share
/// it by reference, in an `Arc` or in a `static`.
///
/// ```
/// use gomalloc::gc::{Heap, Pool};
///
/// let heap = Heap::new();
/// // Rotated at each of `heap`'s GC cycles.
/// let pool = Pool::with_heap(&heap, || Vec::<u8>::with_capacity(4096));
/// let mut buf = pool.get(); // a pooled buffer, or a new one from the constructor
/// buf.extend_from_slice(b"request");
/// buf.clear();
/// pool.put(buf); // back in this thread's slot
/// assert!(pool.get().capacity() >= 4096); // the same buffer (dropped here)
/// pool.put(pool.get());
/// heap.collect(); // the buffer moves to the victim generation: still available
/// heap.collect(); // and is dropped at the second cycle
/// assert!(pool.try_get().is_none());
/// ```
///
/// A value may be dropped by any thread that rotates the pool: the heap's
/// collector thread, a thread whose `get`/`put` finds the rotation interval
/// passed, or a caller of `rotate`/`clear`. A `Drop` that blocks on the
/// heap (`Heap::collect`) would stall the collector; one that panics there
/// is reported on stderr and the collector goes on.
///
/// A thread's slot joins the shared part when the thread's thread-local
/// destructors run, after its closure returns: after `JoinHandle::join`,
/// not necessarily by the end of a `thread::scope`.
pub struct Pool<T: Send + 'static> {
    inner: Arc<PoolInner<T>>,
    /// The heap holds this hook weakly; dropping the pool unregisters it.
    _hook: Option<Arc<dyn Fn() + Send + Sync>>,
}

struct PoolInner<T> {
    ctor: Box<dyn Fn() -> T + Send + Sync>,
    /// Every registered slot, for rotation and drop.
    slots: Locked<Vec<Arc<Slot<T>>>>,
    shared: Locked<Vec<T>>,
    victim: Locked<Vec<T>>,
    /// Held for a whole rotation or clear, so concurrent ones do not drop a
    /// generation after a single rotation.
    rotation: Locked<()>,
    /// Time-based rotation period in nanoseconds; 0 for none.
    interval_ns: AtomicU64,
    /// `coarse_now_ns()` at the last rotation of any kind.
    last_rotation_ns: AtomicU64,
}

/// One thread's private slot in one pool.
struct Slot<T> {
    pool: Weak<PoolInner<T>>,
    value: SpinLocked<Option<T>>,
}

/// What thread exit and the pruning of registrations need from a slot,
/// whatever its `T`.
trait ThreadSlot: Send + Sync {
    fn pool_alive(&self) -> bool;
    /// The owning thread is gone: hand the value back to the pool.
    fn thread_exit(&self);
}

impl<T: Send> ThreadSlot for Slot<T> {
    fn pool_alive(&self) -> bool {
        self.pool.strong_count() > 0
    }

    fn thread_exit(&self) {
        // If the pool is gone its drop emptied the slot; otherwise the value
        // joins the shared part, where any thread can take it.
        if let Some(pool) = self.pool.upgrade() {
            if let Some(v) = self.value.with(Option::take) {
                pool.shared.with(|s| s.push(v));
            }
            pool.slots.with(|slots| slots.retain(|s| !core::ptr::eq(Arc::as_ptr(s), self)));
        }
    }
}

/// A thread's registration of its slot in one pool (an entry of
/// `POOL_SLOTS`).
pub(crate) struct SlotRegistration {
    /// The pool's `PoolInner` address: its identity while `slot` holds a
    /// weak reference to it.
    pool_id: usize,
    /// `slot`'s address, as the concrete `Slot<T>` the pool knows.
    slot_ptr: *const (),
    slot: Arc<dyn ThreadSlot>,
}

impl Drop for SlotRegistration {
    fn drop(&mut self) {
        self.slot.thread_exit();
    }
}

impl<T: Send + 'static> Pool<T> {
    /// A pool whose `get` calls `ctor` when it has nothing to hand out.
    /// It rotates only on [`rotate`](Pool::rotate) and, once set, at the
    /// [rotation interval](Pool::set_rotation_interval).
    pub fn new(ctor: impl Fn() -> T + Send + Sync + 'static) -> Pool<T> {
        Pool {
            inner: Arc::new(PoolInner {
                ctor: Box::new(ctor),
                slots: Locked::new(Vec::new()),
                shared: Locked::new(Vec::new()),
                victim: Locked::new(Vec::new()),
                rotation: Locked::new(()),
                interval_ns: AtomicU64::new(0),
                last_rotation_ns: AtomicU64::new(coarse_now_ns()),
            }),
            _hook: None,
        }
    }

    /// A pool rotated at the start of every GC cycle of `heap`, as Go's
    /// pools are: a value put before a cycle is dropped by the one after,
    /// unless taken in between. The pool does not keep the heap alive;
    /// once the heap is gone it rotates as a [`Pool::new`] one.
    pub fn with_heap(heap: &Heap, ctor: impl Fn() -> T + Send + Sync + 'static) -> Pool<T> {
        let mut pool = Pool::new(ctor);
        let weak = Arc::downgrade(&pool.inner);
        let hook: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            // On the collector thread: a panicking `T::drop` must not end it.
            let rotated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Some(inner) = weak.upgrade() {
                    inner.rotate();
                }
            }));
            if rotated.is_err() {
                eprintln!("gomalloc::gc: a pooled value's Drop panicked during a GC cycle's Pool rotation");
            }
        });
        heap.inner.add_cycle_hook(&hook);
        pool._hook = Some(hook);
        pool
    }

    /// A pooled value, or a new one from the constructor.
    #[inline]
    pub fn get(&self) -> T {
        match self.try_get() {
            Some(v) => v,
            None => self.construct(),
        }
    }

    /// A pooled value: this thread's slot, else the shared part, else the
    /// victim generation. `None` if the pool is empty.
    #[inline]
    pub fn try_get(&self) -> Option<T> {
        self.check_interval();
        if let Some(slot) = self.local_slot() {
            if let Some(v) = slot.value.with(Option::take) {
                return Some(v);
            }
        }
        self.get_slow()
    }

    /// Gives `value` to the pool: this thread's slot if it is empty, else
    /// the shared part.
    #[inline]
    pub fn put(&self, value: T) {
        self.check_interval();
        let rest = match self.local_slot() {
            Some(slot) => slot.value.with(|s| match s {
                None => {
                    *s = Some(value);
                    None
                }
                Some(_) => Some(value),
            }),
            None => Some(value),
        };
        if let Some(v) = rest {
            self.put_slow(v);
        }
    }

    /// Rotates now: every pooled value moves to the victim generation, and
    /// the previous victims are dropped (on this thread, after the pool's
    /// locks are released).
    pub fn rotate(&self) {
        self.inner.rotate();
    }

    /// Drops every pooled value, of both generations, on this thread.
    pub fn clear(&self) {
        let (primary, victim) = self.inner.rotation.with(|_| {
            let primary = self.inner.take_primary();
            let victim = self.inner.victim.with(core::mem::take);
            (primary, victim)
        });
        drop(primary);
        drop(victim);
    }

    /// Rotates the pool every `interval` (`None`: no time-based rotation,
    /// the default), counted from now and then from the last rotation of any
    /// kind. Checked at each `get`/`put`, against a coarse clock (a few
    /// milliseconds of resolution): an idle pool keeps its values until its
    /// next use.
    pub fn set_rotation_interval(&self, interval: Option<Duration>) {
        let ns = interval.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
        self.inner.last_rotation_ns.store(coarse_now_ns(), Ordering::Relaxed);
        self.inner.interval_ns.store(ns, Ordering::Relaxed);
    }

    #[inline]
    fn check_interval(&self) {
        // Relaxed: the interval is a hint; a rotation's effects are ordered
        // by the pool's locks, not by this word.
        let interval = self.inner.interval_ns.load(Ordering::Relaxed);
        if interval != 0 {
            self.inner.rotate_if_due(interval);
        }
    }

    #[cold]
    #[inline(never)]
    fn construct(&self) -> T {
        (self.inner.ctor)()
    }

    #[cold]
    #[inline(never)]
    fn get_slow(&self) -> Option<T> {
        if let Some(v) = self.inner.shared.with(Vec::pop) {
            return Some(v);
        }
        self.inner.victim.with(Vec::pop)
    }

    #[cold]
    #[inline(never)]
    fn put_slow(&self, value: T) {
        self.inner.shared.with(|s| s.push(value));
    }

    /// The calling thread's slot in this pool, registering it on first use;
    /// `None` while the thread's registrations are being destroyed (thread
    /// exit), when the shared part serves instead. Use the slot at once:
    /// no user code may run between this call and the use.
    #[inline]
    fn local_slot(&self) -> Option<&Slot<T>> {
        let id = Arc::as_ptr(&self.inner) as usize;
        let found = POOL_SLOTS.try_with(|regs| {
            let regs = regs.try_borrow().ok()?;
            regs.iter().find(|r| r.pool_id == id).map(|r| r.slot_ptr)
        });
        match found {
            // SAFETY: a registration with this pool's id was made by this
            // pool (the id is the address of its `PoolInner`, which every
            // registration naming it keeps allocated), so `slot_ptr` is a
            // `Slot<T>` of this `T`. The registration owns the slot and is
            // dropped only at thread exit (when `try_with` fails, as above)
            // or once the pool is dead; `&self` keeps it alive. The caller
            // uses the slot before any user code could run on this thread.
            Ok(Some(p)) => Some(unsafe { &*p.cast::<Slot<T>>() }),
            Ok(None) => self.register(),
            Err(_) => None,
        }
    }

    #[cold]
    #[inline(never)]
    fn register(&self) -> Option<&Slot<T>> {
        let slot = Arc::new(Slot { pool: Arc::downgrade(&self.inner), value: SpinLocked::new(None) });
        let slot_ptr = Arc::as_ptr(&slot);
        let pool_id = Arc::as_ptr(&self.inner) as usize;
        let dead = POOL_SLOTS.try_with(|regs| {
            let mut regs = regs.try_borrow_mut().ok()?;
            // Registrations of pools that are gone; dropped below, outside
            // the borrow.
            let (live, dead): (Vec<_>, Vec<_>) =
                core::mem::take(&mut *regs).into_iter().partition(|r| r.slot.pool_alive());
            *regs = live;
            regs.push(SlotRegistration { pool_id, slot_ptr: slot_ptr.cast(), slot: slot.clone() });
            Some(dead)
        });
        let Ok(Some(dead)) = dead else { return None };
        drop(dead);
        self.inner.slots.with(|s| s.push(slot));
        // SAFETY: the registration just pushed owns the slot (see
        // `local_slot`), and `&self` keeps the pool alive.
        Some(unsafe { &*slot_ptr })
    }
}

impl<T: Send> PoolInner<T> {
    /// Empties the slots and the shared part. The caller holds `rotation`.
    fn take_primary(&self) -> Vec<T> {
        let mut primary = self.shared.with(core::mem::take);
        self.slots.with(|slots| {
            for s in slots.iter() {
                if let Some(v) = s.value.with(Option::take) {
                    primary.push(v);
                }
            }
        });
        primary
    }

    fn rotate(&self) {
        let old = self.rotation.with(|_| {
            let primary = self.take_primary();
            self.last_rotation_ns.store(coarse_now_ns(), Ordering::Relaxed);
            self.victim.with(|v| core::mem::replace(v, primary))
        });
        // Outside every lock: `T::drop` may use this pool.
        drop(old);
    }

    #[cold]
    #[inline(never)]
    fn rotate_if_due(&self, interval: u64) {
        let now = coarse_now_ns();
        let last = self.last_rotation_ns.load(Ordering::Relaxed);
        // Relaxed CAS: it only elects one thread to rotate; what the rotation
        // moves is ordered by the locks it takes.
        if now.saturating_sub(last) >= interval
            && self.last_rotation_ns.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.rotate();
        }
    }
}

impl<T> Drop for PoolInner<T> {
    fn drop(&mut self) {
        // Threads still alive hold their slots; empty them, so every value
        // goes with the pool. `shared` and `victim` drop with the fields.
        let slots = self.slots.with(core::mem::take);
        for s in slots {
            drop(s.value.with(Option::take));
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: a few nanoseconds to read, a
/// few milliseconds of resolution, enough for rotation intervals.
fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}
