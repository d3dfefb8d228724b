//! Finalizers: a function registered on an object runs once, on the heap's
//! finalizer thread, after the collector finds the object unreachable.
//!
//! Called by user code (`Mutator::set_finalizer`) and by the collector
//! (`heap.rs`: at the start of a cycle and at the end of marking). Runs user
//! code only on its own thread, inside a mutator scope, with no allocator or
//! GC lock held. The table is one mutex (a leaf, never held while tracing
//! or running user code).
//!
//! # Semantics (Go's)
//! - A finalizable object's children are traced at the start of every cycle
//!   (and when the finalizer is registered during marking), but the object
//!   itself is not. So when it is unreachable, everything it reaches is
//!   still marked: the finalizer receives the object whole, never a freed
//!   neighbour.
//! - At the end of marking, weak handles to unmarked objects are cleared
//!   first; then each unmarked finalizable object is marked (it survives
//!   this cycle), its finalizer leaves the table and joins the ready queue.
//!   Objects in the ready queue are roots until their finalizer takes them.
//! - The finalizer runs once. It may resurrect the object (store it in a
//!   root or a reachable cell); if it does not, the object and what only it
//!   reached die at the next cycle. A finalizer is not run again unless one
//!   is registered again.
//! - Ordering: if finalizable A reaches finalizable B, A's finalizer runs
//!   first; B becomes unreachable only after A is gone (a cycle later).
//! - A cycle through finalizable objects keeps every object of it marked
//!   (each is a child of another): such cycles are never finalized nor
//!   freed, as in Go. Put finalizers on objects outside cycles.
//! - Pending finalizers do not run when the heap is dropped (the objects
//!   are dropped with the heap), as Go does not run them at exit.
//! - A panic in a finalizer is caught, reported on stderr and counted; the
//!   finalizer thread goes on.

use crate::gc::heap::{HeapInner, HeapRef};
use crate::gc::mutator::Mutator;
use crate::gc::ptr::{Gc, GcBox, Rebrand};
use crate::sync::thread::{self, JoinHandle, ThreadId};
use crate::sync::{Condvar, Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

/// A finalizer with its type erased: called with the object's address.
pub(crate) type ErasedFinalizer = Box<dyn for<'gc> FnOnce(&Mutator<'gc>, *const GcBox<()>) + Send>;

/// The heap's finalizers.
#[derive(Default)]
pub(crate) struct FinalizerTable {
    /// Registered, object not yet found unreachable.
    pub registered: HashMap<usize, ErasedFinalizer>,
    /// Found unreachable, waiting to run (their objects are roots).
    pub ready: VecDeque<(usize, ErasedFinalizer)>,
    /// Finalizers running now (0 or 1).
    pub running: usize,
    /// Finalizers run.
    pub run: u64,
    /// Finalizers that panicked.
    pub panicked: u64,
    /// The finalizer thread has been started.
    pub started: bool,
    /// The heap is being dropped.
    pub shutdown: bool,
}

/// The finalizer table with the finalizer thread's wake-ups.
#[derive(Default)]
pub(crate) struct Finalizers {
    pub table: Mutex<FinalizerTable>,
    /// Signalled when work arrives or on shutdown.
    pub wake: Condvar,
    /// Signalled when the ready queue drains.
    pub idle: Condvar,
    pub thread: Mutex<Option<(JoinHandle<()>, ThreadId)>>,
}

impl Finalizers {
    pub fn lock(&self) -> MutexGuard<'_, FinalizerTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<'gc> Mutator<'gc> {
    /// Registers `f` to run once, on the heap's finalizer thread, after
    /// `gc` is found unreachable; `f` receives the object (see the module
    /// docs of `gomalloc::gc` for the rules). `R` names the object's type
    /// with any brand, as for [`Root`](crate::gc::Root).
    ///
    /// Panics if the object already has a finalizer.
    pub fn set_finalizer<R: Rebrand>(
        &self,
        gc: Gc<'gc, R::Of<'gc>>,
        f: impl for<'a> FnOnce(&Mutator<'a>, Gc<'a, R::Of<'a>>) + Send + 'static,
    ) {
        assert!(
            self.try_set_finalizer::<R>(gc, f),
            "gomalloc::gc: set_finalizer on an object that already has a finalizer"
        );
    }

    /// `set_finalizer`, but false (and `f` dropped) if the object already
    /// has a finalizer: the check and the registration under one hold of
    /// the table's lock, so that of two threads racing, one wins and the
    /// other is told.
    pub(crate) fn try_set_finalizer<R: Rebrand>(
        &self,
        gc: Gc<'gc, R::Of<'gc>>,
        f: impl for<'a> FnOnce(&Mutator<'a>, Gc<'a, R::Of<'a>>) + Send + 'static,
    ) -> bool {
        let erased: ErasedFinalizer = Box::new(move |m: &Mutator<'_>, p: *const GcBox<()>| call::<R, _>(f, m, p));
        let heap = self.heap();
        let obj = gc.erased();
        let rejected = self.state().with_barrier(heap, |marking| {
            let mut t = heap.finalizers.lock();
            if t.registered.contains_key(&(obj as usize)) {
                return Some(erased);
            }
            t.registered.insert(obj as usize, erased);
            drop(t);
            if marking {
                // The cycle's start traced the table without this entry:
                // trace the object's children now, in the barrier, so they
                // are marked if the object turns out unreachable.
                heap.trace_object(obj);
            }
            None
        });
        if rejected.is_some() {
            // Dropped here, out of the table's lock and the barrier: what
            // the closure captured runs user `Drop`s, which may panic.
            drop(rejected);
            return false;
        }
        heap.ensure_finalizer_thread(&self.heap_arc());
        true
    }

    /// Removes `gc`'s finalizer, if it has one that has not been queued yet.
    /// Returns true if one was removed.
    pub fn clear_finalizer<T: crate::gc::Trace + 'gc>(&self, gc: Gc<'gc, T>) -> bool {
        let removed = self.heap().finalizers.lock().registered.remove(&(gc.erased() as usize));
        removed.is_some()
    }
}

/// Calls a typed finalizer with the object of its erased call.
fn call<'a, R: Rebrand, F>(f: F, m: &Mutator<'a>, p: *const GcBox<()>)
where
    F: for<'b> FnOnce(&Mutator<'b>, Gc<'b, R::Of<'b>>),
{
    // SAFETY: `p` is the object the finalizer was registered on, with type
    // `R::Of<'_>` (the registration's types), taken from the ready queue
    // inside this scope and shaded if marking: live for the scope.
    f(m, unsafe { Gc::from_raw(p as *const GcBox<R::Of<'a>>) })
}

impl HeapInner {
    /// At a cycle's start (after the roots): shades the ready objects and
    /// the children of every registered finalizable object.
    pub(crate) fn shade_finalizer_roots(&self) {
        let (ready, registered): (Vec<usize>, Vec<usize>) = {
            let t = self.finalizers.lock();
            (t.ready.iter().map(|(o, _)| *o).collect(), t.registered.keys().copied().collect())
        };
        for obj in ready {
            self.shade(obj as *const GcBox<()>);
        }
        for obj in registered {
            // Entries are only removed by this collector thread (later, at
            // termination) or by `clear_finalizer`, whose object stays
            // allocated at least until this cycle's sweep.
            self.trace_object(obj as *const GcBox<()>);
        }
    }

    /// At the end of marking, after weak handles are cleared: queues the
    /// finalizers of unmarked objects and marks those objects. Returns the
    /// number queued.
    pub(crate) fn queue_finalizers(&self) -> usize {
        let mut t = self.finalizers.lock();
        let dead: Vec<usize> =
            t.registered.keys().copied().filter(|&o| !self.is_marked(o as *const GcBox<()>)).collect();
        for &obj in &dead {
            self.mark_only(obj as *const GcBox<()>);
            let f = t.registered.remove(&obj).expect("listed above");
            t.ready.push_back((obj, f));
        }
        if !dead.is_empty() {
            self.finalizers.wake.notify_one();
        }
        dead.len()
    }

    /// Starts the finalizer thread if it is not running.
    pub(crate) fn ensure_finalizer_thread(&self, me: &Arc<HeapInner>) {
        {
            let mut t = self.finalizers.lock();
            if t.started || t.shutdown {
                return;
            }
            t.started = true;
        }
        let weak = Arc::downgrade(me);
        let fins = self.finalizers.clone();
        let handle = thread::Builder::new()
            .name(format!("gomalloc-gc-fin-{}", self.id))
            .spawn(move || finalizer_main(weak, fins))
            .expect("gomalloc: cannot start the GC finalizer thread");
        let id = handle.thread().id();
        *self.finalizers.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some((handle, id));
    }

    /// Blocks until every queued finalizer has run.
    pub(crate) fn wait_finalizers(&self) {
        let on_thread = self.finalizers.thread.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, id)| *id)
            == Some(thread::current().id());
        assert!(!on_thread, "gomalloc::gc: wait_for_finalizers called from a finalizer");
        let mut t = self.finalizers.lock();
        while (!t.ready.is_empty() || t.running != 0) && !t.shutdown {
            t = self.finalizers.idle.wait(t).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops the finalizer thread (the heap is being dropped); pending
    /// finalizers are dropped without running.
    pub(crate) fn stop_finalizers(&self) {
        let pending = {
            let mut t = self.finalizers.lock();
            t.shutdown = true;
            (std::mem::take(&mut t.ready), std::mem::take(&mut t.registered))
        };
        self.finalizers.wake.notify_all();
        self.finalizers.idle.notify_all();
        let thread = self.finalizers.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((handle, id)) = thread {
            if id != thread::current().id() {
                let _ = handle.join();
            }
        }
        drop(pending);
    }
}

/// The finalizer thread: runs ready finalizers one at a time. It holds the
/// heap strongly only while a finalizer runs, so dropping the last `Heap`
/// is not delayed by an idle finalizer thread.
fn finalizer_main(heap: Weak<HeapInner>, fins: Arc<Finalizers>) {
    loop {
        {
            let mut t = fins.lock();
            while !t.shutdown && t.ready.is_empty() {
                t = fins.wake.wait(t).unwrap_or_else(|e| e.into_inner());
            }
            if t.shutdown {
                return;
            }
            t.running += 1;
        }
        let Some(inner) = heap.upgrade().and_then(HeapRef::revive) else { return };
        let heap_handle = crate::gc::Heap { inner };
        let outcome = heap_handle.enter(|m| {
            let h = m.heap();
            // Taking the object off the ready queue deletes a root: while
            // marking, shade it (the deletion barrier of `root.rs`).
            let next = h.root_barrier(|marking| {
                let e = h.finalizers.lock().ready.pop_front();
                if let (Some((obj, _)), true) = (&e, marking) {
                    h.shade(*obj as *const GcBox<()>);
                }
                e
            });
            next.map(|(obj, f)| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(m, obj as *const GcBox<()>))).is_ok()
            })
        });
        let inner = heap_handle.inner.0.clone();
        drop(heap_handle);
        {
            let mut t = inner.finalizers.lock();
            t.running -= 1;
            match outcome {
                Some(true) => t.run += 1,
                Some(false) => {
                    t.run += 1;
                    t.panicked += 1;
                    crate::os::eprint_line(format_args!("gomalloc::gc: a finalizer panicked; continuing"));
                }
                None => {}
            }
            if t.ready.is_empty() && t.running == 0 {
                inner.finalizers.idle.notify_all();
            }
        }
    }
}
