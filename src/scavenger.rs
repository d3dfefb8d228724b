//! The background scavenger: returns free pages to the OS once they have
//! stayed free longer than a delay (`GOMALLOC_PURGE_DELAY_MS`, default
//! 500 ms; 0 = as soon as possible; negative = no background thread), so
//! resident memory falls after a peak while a steady workload, which reuses
//! its free pages within the delay, never pays for `madvise` and the page
//! faults that follow.
//!
//! Owns [`Scavenger`], the control block embedded in the page heap (delay,
//! thread state, wake-up word), the thread's loop, and the step it repeats,
//! [`Allocator::scavenge_tick`]. Called by `mheap.rs` (`free_span` asks
//! [`Scavenger::background`] whether to defer to the thread, then
//! [`Scavenger::after_free`] outside the heap lock to start or wake it), by
//! `globals.rs` (the hook that spawns the thread for the process-wide
//! allocator, fork) and by `lib.rs` (the delay API). Calls `mheap.rs`
//! (`scavenge_aged`), `mcentral.rs` and `large.rs` (their kept spans go back
//! to the heap), and the sync shim (futex, raw thread).
//!
//! # Ageing
//! The heap marks pages *fresh* when they are freed. Every tick (period =
//! the delay, at least `MIN_PERIOD_MS`) releases the free dirty pages that
//! are not fresh, then clears every fresh mark: a page is released once it
//! has been free for a whole period, so between one and two delays after its
//! last free. A tick also hands the spans kept for reuse by the central lists
//! (`KEEP_EMPTY` per class) and by the large-object cache back to the heap,
//! where they age like any freed page. Thread caches keep their spans.
//!
//! # The floor
//! GC heaps free most of their pages at each sweep and take them all back
//! before their next cycle. They reserve those pages (`reserve`: the goal
//! plus 10%, within the memory limit) and count the
//! pages they hold (`held`); the difference is the floor, free dirty pages a
//! tick leaves alone however old (the lowest ones, which first fit and the
//! page heap's preference for dirty runs hand out next). Without it, a tick
//! between a sweep and the refill released the freed pages and the refill
//! faulted every one back in.
//!
//! # When the thread runs
//! It is started lazily, by the first `free_span` that leaves dirty free
//! pages (so a preloaded program that never frees a span never gets one),
//! with a raw `pthread` outside every allocator lock. It ticks while free
//! dirty pages remain, then sleeps on a futex until a `free_span` wakes it.
//! A tick takes the heap lock per run it releases and drops it for the
//! `madvise` (`MHeap::scavenge_aged`), so allocations never wait on the
//! kernel's page release.
//! Frees that stay in the central lists or the large-object cache (at most a
//! few MiB) do not wake it; they are handed back at its next tick. While it
//! runs, `free_span` does no synchronous scavenging. Without a thread (a heap
//! built as a value, a negative delay, or a thread the OS refused) the
//! synchronous policy of `mheap.rs` applies.
//!
//! # Concurrency
//! The control block is atomics only. The thread state and the delay are
//! read under the heap lock by `free_span` and written outside it, so a
//! decision may use a value a moment old: harmless either way (one free's
//! pages are scavenged synchronously, or left to the next tick). The lost
//! wake-up is excluded by the heap lock: the thread publishes `IDLE` before
//! it checks, under the heap lock, that no dirty page is free, and a freeing
//! thread reads the word after its own heap-lock section. Fork: the child has
//! no scavenger thread; `reset_after_fork` forgets it, and the next free
//! starts one.

use crate::malloc::Allocator;
use crate::sizeclass::NUM_CLASSES;
use crate::sync::{fence, maybe_const_fn, AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};

/// The delay used when neither the environment nor the API set one.
pub const DEFAULT_DELAY_MS: i64 = 500;
/// Shortest tick period (the period for a delay of 0).
pub const MIN_PERIOD_MS: u64 = 10;

/// Starts the scavenger thread of the process-wide allocator; false when the
/// OS refuses. Installed by `globals.rs`.
pub type SpawnFn = fn() -> bool;

/// `thread`: never started (or forgotten after fork, or delay negative).
const NONE: u32 = 0;
/// `thread`: being started by one freeing thread.
const STARTING: u32 = 1;
/// `thread`: running.
const RUNNING: u32 = 2;
/// `thread`: the OS refused to start it; the synchronous policy applies.
const FAILED: u32 = 3;

/// `wake`: the thread is working (or there is none).
const BUSY: u32 = 0;
/// `wake`: the thread sleeps until a free wakes it.
const IDLE: u32 = 1;
/// `wake`: the thread sleeps for one period.
#[cfg(not(gomalloc_loom))]
const NAPPING: u32 = 2;

/// The scavenger's control block, one per page heap.
pub struct Scavenger {
    delay_ms: AtomicI64,
    /// The environment was read, or the API set the delay (which then wins).
    configured: AtomicBool,
    thread: AtomicU32,
    wake: AtomicU32,
    spawn: Option<SpawnFn>,
    /// Pages that GC heaps expect to hold by their next cycle (the sum of
    /// their reservations, see `reserve`).
    reserved: AtomicUsize,
    /// Pages GC heaps hold now (see `held`).
    held: AtomicUsize,
}

impl Scavenger {
    maybe_const_fn! {
        /// A control block with no thread; `spawn`, if given, starts one.
        pub fn new(spawn: Option<SpawnFn>) -> Scavenger {
            Scavenger {
                delay_ms: AtomicI64::new(DEFAULT_DELAY_MS),
                configured: AtomicBool::new(false),
                thread: AtomicU32::new(NONE),
                wake: AtomicU32::new(BUSY),
                spawn,
                reserved: AtomicUsize::new(0),
                held: AtomicUsize::new(0),
            }
        }
    }

    /// Should a free leave its pages to the background thread? True when a
    /// thread exists or can be started and the delay is not negative. Read
    /// under the heap lock, so it only loads.
    #[inline]
    pub fn background(&self) -> bool {
        self.spawn.is_some()
            && self.thread.load(Ordering::Relaxed) != FAILED
            && self.delay_ms.load(Ordering::Relaxed) >= 0
    }

    /// After a free that left pages to the thread, with no lock held: starts
    /// the thread if there is none, wakes it if it sleeps until work comes.
    pub fn after_free(&self) {
        let state = self.thread.load(Ordering::Relaxed);
        if state == NONE {
            self.start();
        } else if state == RUNNING {
            // Relaxed: the heap lock, released just before, orders the free's
            // pages before the thread's next look (see the module docs).
            self.wake_if_idle();
        }
    }

    /// Wakes the thread if it sleeps until work comes.
    fn wake_if_idle(&self) {
        if self.wake.load(Ordering::Relaxed) == IDLE
            && self.wake.compare_exchange(IDLE, BUSY, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.notify();
        }
    }

    #[cold]
    #[inline(never)]
    fn start(&self) {
        if self.thread.compare_exchange(NONE, STARTING, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        self.configure();
        let Some(spawn) = self.spawn else { return };
        let next = if self.delay_ms.load(Ordering::Relaxed) < 0 {
            NONE
        } else if spawn() {
            RUNNING
        } else {
            FAILED
        };
        self.thread.store(next, Ordering::Relaxed);
    }

    fn notify(&self) {
        #[cfg(not(gomalloc_loom))]
        crate::sync::futex_wake(&self.wake, 1);
    }

    /// Reads `GOMALLOC_PURGE_DELAY_MS` once, unless the API set the delay.
    fn configure(&self) {
        if self.configured.load(Ordering::Relaxed) {
            return;
        }
        #[cfg(not(gomalloc_loom))]
        match env_delay() {
            EnvDelay::NotYet => return,
            EnvDelay::Unset => {}
            EnvDelay::Value(ms) => {
                // Only if the API did not set one meanwhile.
                if !self.configured.swap(true, Ordering::Relaxed) {
                    self.delay_ms.store(ms, Ordering::Relaxed);
                }
            }
        }
        self.configured.store(true, Ordering::Relaxed);
    }

    /// The delay in milliseconds (negative: no background scavenging).
    pub fn delay_ms(&self) -> i64 {
        self.configure();
        self.delay_ms.load(Ordering::Relaxed)
    }

    /// Sets the delay for the rest of the process (it overrides the
    /// environment). A sleeping thread wakes to apply it; a delay of 0 or
    /// more allows a thread to start at the next free of a span.
    pub fn set_delay_ms(&self, ms: i64) {
        self.configured.store(true, Ordering::Relaxed);
        self.delay_ms.store(ms, Ordering::Relaxed);
        if self.wake.swap(BUSY, Ordering::Relaxed) != BUSY {
            self.notify();
        }
    }

    /// Free dirty pages the scavenger leaves alone, whatever their age: the
    /// pages GC heaps will take again before their next cycle, so that a
    /// collected heap refilling to its goal reuses resident pages instead
    /// of faulting in ones released a moment ago (Go's scavenger keeps the
    /// heap goal plus 10% for the same reason). Zero without GC heaps.
    pub fn floor_pages(&self) -> usize {
        self.reserved.load(Ordering::Relaxed).saturating_sub(self.held.load(Ordering::Relaxed))
    }

    /// A GC heap changes its reservation from `old` to `new` pages (its goal
    /// with slack; 0 when it is dropped). A lower floor may leave pages to
    /// release: a sleeping thread wakes to look.
    pub fn reserve(&self, old: usize, new: usize) {
        if new >= old {
            self.reserved.fetch_add(new - old, Ordering::Relaxed);
        } else {
            self.reserved.fetch_sub(old - new, Ordering::Relaxed);
            // A Dekker pair with `sleep_until_woken` (it stores IDLE, fences,
            // then reads the floor): either this reads IDLE and wakes the
            // thread, or the thread reads the lower floor and stays awake.
            // No lock orders the two, unlike a free's pages and the counters.
            fence(Ordering::SeqCst);
            self.wake_if_idle();
        }
    }

    /// A GC heap took (`add`) or gave back (`sub`) span pages.
    pub fn held(&self, add: usize, sub: usize) {
        if add != 0 {
            self.held.fetch_add(add, Ordering::Relaxed);
        }
        if sub != 0 {
            self.held.fetch_sub(sub, Ordering::Relaxed);
        }
    }

    /// True while a background thread exists.
    pub fn running(&self) -> bool {
        self.thread.load(Ordering::Relaxed) == RUNNING
    }

    /// In a child after `fork()`: no scavenger thread exists there.
    pub fn reset_after_fork(&self) {
        if self.thread.load(Ordering::Relaxed) != FAILED {
            self.thread.store(NONE, Ordering::Relaxed);
        }
        self.wake.store(BUSY, Ordering::Relaxed);
    }
}

impl Allocator {
    /// One step of the background scavenger: hands the spans kept for reuse
    /// by the large-object cache and the central lists back to the heap, then
    /// releases the free pages that have not been freed since the previous
    /// step (every free page when the delay is 0). Returns true when free
    /// dirty pages remain (the next step has work).
    pub fn scavenge_tick(&self) -> bool {
        self.large_cache().release_cached(self.heap());
        for class in 1..NUM_CLASSES {
            self.central(class).release_empty(self.heap());
        }
        let all = self.heap().scavenger().delay_ms() == 0;
        let (_, remaining) = self.heap().scavenge_aged(all);
        remaining > self.heap().scavenger().floor_pages()
    }
}

/// The thread's loop: tick once per period while free dirty pages above the
/// floor remain, sleep until woken otherwise (and while the delay is negative).
#[cfg(not(gomalloc_loom))]
fn run(a: &Allocator) -> ! {
    let s = a.heap().scavenger();
    loop {
        let delay = s.delay_ms();
        if delay < 0 {
            s.sleep_until_woken(a, false);
            continue;
        }
        let period = (delay as u64).max(MIN_PERIOD_MS);
        s.wake.store(NAPPING, Ordering::Relaxed);
        crate::sync::futex_wait_timeout(&s.wake, NAPPING, Some(period));
        s.wake.store(BUSY, Ordering::Relaxed);
        if !a.scavenge_tick() {
            s.sleep_until_woken(a, true);
        }
    }
}

#[cfg(not(gomalloc_loom))]
impl Scavenger {
    /// Sleeps until `after_free` or `set_delay_ms` wakes the thread; with
    /// `only_if_no_work`, returns at once if free dirty pages appeared since
    /// the last tick.
    fn sleep_until_woken(&self, a: &Allocator, only_if_no_work: bool) {
        self.wake.store(IDLE, Ordering::Relaxed);
        // SeqCst: pairs with the fence in `reserve` (a lowered floor is
        // seen here, or that call sees IDLE).
        fence(Ordering::SeqCst);
        // The counters are read under the heap lock: a free that added
        // pages before this read is seen here; one after it sees IDLE.
        if only_if_no_work && a.heap().counters().releasable_pages() > self.floor_pages() {
            self.wake.store(BUSY, Ordering::Relaxed);
            return;
        }
        while self.wake.load(Ordering::Relaxed) == IDLE {
            crate::sync::futex_wait_timeout(&self.wake, IDLE, None);
        }
    }
}

/// The scavenger thread's entry: `arg` is the `&'static Allocator` it serves.
#[cfg(not(gomalloc_loom))]
extern "C" fn thread_main(arg: *mut core::ffi::c_void) -> *mut core::ffi::c_void {
    // SAFETY: `spawn` passes a pointer to an allocator that lives for the
    // rest of the process (a static).
    let a = unsafe { &*(arg as *const Allocator) };
    run(a)
}

/// Stack of the scavenger thread: its deepest call is a tick through the
/// tiers, a few KiB.
#[cfg(not(gomalloc_loom))]
const STACK_BYTES: usize = 128 << 10;

/// Starts the scavenger thread for `a`. Called with no allocator lock held.
#[cfg(not(gomalloc_loom))]
pub fn spawn(a: &'static Allocator) -> bool {
    crate::sync::spawn_detached(thread_main, a as *const Allocator as *mut core::ffi::c_void, STACK_BYTES)
}

#[cfg(not(gomalloc_loom))]
enum EnvDelay {
    /// libc has not set up the environment yet (a call from the loader).
    NotYet,
    Unset,
    Value(i64),
}

/// `GOMALLOC_PURGE_DELAY_MS` through `getenv`, which allocates nothing (no
/// `std::env`, which does). A value that is not an integer is ignored.
#[cfg(not(gomalloc_loom))]
fn env_delay() -> EnvDelay {
    extern "C" {
        static environ: *const *const core::ffi::c_char;
    }
    // SAFETY: reading the pointer value of libc's `environ` (a plain global).
    if unsafe { environ }.is_null() {
        return EnvDelay::NotYet;
    }
    // SAFETY: a NUL-terminated name; getenv returns null or a NUL-terminated
    // string that stays valid while nobody changes the environment.
    let text = unsafe {
        let p = libc::getenv(c"GOMALLOC_PURGE_DELAY_MS".as_ptr());
        if p.is_null() {
            return EnvDelay::Unset;
        }
        core::ffi::CStr::from_ptr(p).to_bytes()
    };
    crate::os::parse_decimal(text).map_or_else(
        || {
            crate::os::eprint_line(format_args!("gomalloc: ignoring GOMALLOC_PURGE_DELAY_MS: expected an integer"));
            EnvDelay::Unset
        },
        EnvDelay::Value,
    )
}

#[cfg(all(test, not(gomalloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_delays() {
        assert_eq!(crate::os::parse_decimal(b"500"), Some(500));
        assert_eq!(crate::os::parse_decimal(b"0"), Some(0));
        assert_eq!(crate::os::parse_decimal(b"-1"), Some(-1));
        assert_eq!(crate::os::parse_decimal(b""), None);
        assert_eq!(crate::os::parse_decimal(b"5s"), None);
        assert_eq!(crate::os::parse_decimal(b"99999999999999999999"), None);
    }

    #[test]
    fn a_heap_value_has_no_background_thread() {
        let s = Scavenger::new(None);
        assert!(!s.background(), "without a spawn hook the synchronous policy applies");
        s.after_free();
        assert!(!s.running());
    }
}
