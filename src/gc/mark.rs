//! Marking: shading objects grey, the shared grey queue, and draining it.
//!
//! Called by the collector thread (`heap.rs`), by mutators' write barriers and
//! root operations (`mutator.rs`, `cell.rs`, `root.rs`) and by allocation
//! assists. Calls `gcspan.rs` to set mark bits.
//!
//! # Concurrency
//! Mark bits are set with an atomic `fetch_or`; whoever flips a bit from 0 to
//! 1 owns tracing that object and pushes it on the grey queue (a `Mutex`-ed
//! stack: barrier pushes happen only while marking) or, inside `drain`, on
//! the drainer's own stack, which goes back to the queue a block at a time
//! when it grows and before `drain` returns. The queue is a stack of
//! fixed-size blocks (Go's workbufs, without the per-thread caching), so a
//! push or a hand-back never moves more than one block under the lock. An
//! object is white while its bit is clear, grey while it is set and it sits
//! in a queue, black once traced. An object with large vectors is traced in
//! passes of `TRACE_PASS` elements (`Tracer`); between passes it stays grey
//! in the queue's `resumed` list, so marking one object is never a long,
//! uninterruptible step. Tracing reads only immutable
//! fields and barriered cells' atomics.
//!
//! A mutator's write barrier shades into a `GreyBuffer` of its own (Go's
//! per-P `gcWork`), behind a lock only the owner and the collector take:
//! a full buffer goes to the shared queue in one hold of its lock, and the
//! collector takes every buffer (`flush_mutator_greys`) before it decides
//! that no grey object is left, and again after the last barriers of the
//! cycle. The shared lock and the shared `marked_bytes` counter, taken once
//! per white object a barrier shaded, were the cost barriers paid while
//! the marker held or wrote them.

use crate::gc::gcspan::GcSpan;
use crate::gc::heap::HeapInner;
use crate::gc::ptr::GcBox;
use crate::gc::trace::Tracer;
use crate::sync::Ordering;

/// Entries per grey-queue block (8 KiB).
const GREY_BLOCK: usize = 1024;
/// Empty blocks kept for reuse.
const SPARE_BLOCKS: usize = 16;
/// Vector elements one tracing pass over an object visits (see `Tracer`).
const TRACE_PASS: usize = 1024;

/// An object whose trace stopped part-way: resume at (vector, index).
pub(crate) struct Resume {
    obj: usize,
    at: (usize, usize),
}

/// The shared grey queue: a stack of blocks of at most `GREY_BLOCK`
/// entries. One growing `Vec` was the first design; doubling it while a
/// mutator's barrier held the lock copied and faulted in tens of MiB at
/// once, the longest mutator pauses the graph benchmark measured.
pub(crate) struct GreyQueue {
    /// Non-empty blocks; only the last may be partly full.
    blocks: Vec<Vec<usize>>,
    /// Empty blocks with `GREY_BLOCK` capacity.
    spare: Vec<Vec<usize>>,
    /// Objects partly traced (large vectors), still grey.
    resumed: Vec<Resume>,
}

impl GreyQueue {
    pub(crate) fn new() -> GreyQueue {
        GreyQueue { blocks: Vec::new(), spare: Vec::new(), resumed: Vec::new() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.resumed.is_empty()
    }

    fn take_resumed(&mut self) -> Option<Resume> {
        self.resumed.pop()
    }

    /// The last block, if it has room; else a new (or spare) one.
    fn open_block(&mut self) -> &mut Vec<usize> {
        if self.blocks.last().is_none_or(|b| b.len() == GREY_BLOCK) {
            let block = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(GREY_BLOCK));
            self.blocks.push(block);
        }
        let last = self.blocks.len() - 1;
        &mut self.blocks[last]
    }

    pub(crate) fn push(&mut self, obj: usize) {
        self.open_block().push(obj);
    }

    pub(crate) fn extend(&mut self, mut objs: &[usize]) {
        while !objs.is_empty() {
            let block = self.open_block();
            let n = objs.len().min(GREY_BLOCK - block.len());
            block.extend_from_slice(&objs[..n]);
            objs = &objs[n..];
        }
    }

    /// Moves up to `n` entries from the top of the queue to `into`.
    fn take(&mut self, n: usize, into: &mut Vec<usize>) {
        let Some(block) = self.blocks.last_mut() else { return };
        let at = block.len().saturating_sub(n);
        into.extend(block.drain(at..));
        if block.is_empty() {
            let block = self.blocks.pop().expect("the last block");
            if self.spare.len() < SPARE_BLOCKS {
                self.spare.push(block);
            }
        }
    }
}

/// Entries of a mutator's grey buffer (2 KiB).
pub(crate) const GREY_BUFFER: usize = 256;

/// Objects a mutator's barriers marked and that still need tracing, and
/// the bytes they marked, not yet on the shared queue and counter.
pub(crate) struct GreyBuffer {
    objs: [usize; GREY_BUFFER],
    len: usize,
    marked: usize,
}

impl GreyBuffer {
    pub(crate) const fn new() -> GreyBuffer {
        GreyBuffer { objs: [0; GREY_BUFFER], len: 0, marked: 0 }
    }

    /// True if it holds no object and no uncounted byte.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.marked == 0
    }
}

/// What `mark_grey` did.
enum Grey {
    /// Marked by this call (its size in bytes); it holds handles, so it
    /// must be traced.
    Trace(usize),
    /// Marked by this call (its size); it holds no handle.
    Leaf(usize),
    /// Already marked (or null): nothing to do.
    Already,
}

impl HeapInner {
    /// Shades `obj` grey if it is white. Returns true if this call marked it.
    #[inline]
    pub(crate) fn shade(&self, obj: *const GcBox<()>) -> bool {
        match self.mark_grey(obj) {
            Grey::Trace(bytes) => {
                self.marked_bytes.fetch_add(bytes, Ordering::Relaxed);
                self.grey.lock().unwrap_or_else(|e| e.into_inner()).push(obj as usize);
                true
            }
            Grey::Leaf(bytes) => {
                self.marked_bytes.fetch_add(bytes, Ordering::Relaxed);
                true
            }
            Grey::Already => false,
        }
    }

    /// Shades `obj` grey if it is white, queueing it (and counting its
    /// bytes) in a mutator's buffer `buf`. For write barriers, which run
    /// inside `MutatorState::with_barrier`: the collector takes the buffer
    /// after it has waited such barriers out.
    #[inline]
    pub(crate) fn shade_buffered(&self, obj: *const GcBox<()>, buf: &crate::sync::Mutex<GreyBuffer>) {
        match self.mark_grey(obj) {
            Grey::Trace(bytes) => {
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                if b.len == GREY_BUFFER {
                    self.flush_grey_buffer(&mut b);
                }
                let at = b.len;
                b.objs[at] = obj as usize;
                b.len = at + 1;
                b.marked += bytes;
            }
            Grey::Leaf(bytes) => buf.lock().unwrap_or_else(|e| e.into_inner()).marked += bytes,
            Grey::Already => {}
        }
    }

    /// Moves a grey buffer's objects to the shared queue and its bytes to
    /// `marked_bytes`.
    pub(crate) fn flush_grey_buffer(&self, b: &mut GreyBuffer) {
        if b.len != 0 {
            self.grey.lock().unwrap_or_else(|e| e.into_inner()).extend(&b.objs[..b.len]);
            b.len = 0;
        }
        if b.marked != 0 {
            self.marked_bytes.fetch_add(b.marked, Ordering::Relaxed);
            b.marked = 0;
        }
    }

    /// Sets the mark bit of `obj` (if it is not null); says whether this
    /// call marked it and whether it then needs tracing. The caller queues
    /// an object it must trace and counts the bytes in `marked_bytes`.
    #[inline]
    fn mark_grey(&self, obj: *const GcBox<()>) -> Grey {
        if obj.is_null() {
            return Grey::Already;
        }
        // SAFETY: handles and cell contents always point at live objects of
        // this heap (module invariant of `ptr.rs`; cells are branded).
        let span = unsafe { &*GcSpan::of(self.pages, obj) };
        let index = span.index_of(obj);
        debug_assert!(
            span.is_allocated(index),
            "gomalloc::gc: shade of a free slot {obj:?} (span {:p}, slot {index}, span gen {}, heap gen {}, marking {})",
            span as *const GcSpan,
            span.sweepgen.load(Ordering::Relaxed),
            self.sweepgen.load(Ordering::Relaxed),
            self.marking.load(Ordering::Relaxed)
        );
        if !span.mark(index) {
            return Grey::Already;
        }
        // SAFETY: the object is live and initialised (see above).
        if unsafe { (*obj).desc.holds_gc } {
            Grey::Trace(span.elem_size)
        } else {
            Grey::Leaf(span.elem_size)
        }
    }

    /// True if `obj` is marked in the cycle in progress or just finished.
    pub(crate) fn is_marked(&self, obj: *const GcBox<()>) -> bool {
        // SAFETY: callers pass live objects of this heap.
        let span = unsafe { &*GcSpan::of(self.pages, obj) };
        span.is_marked(span.index_of(obj))
    }

    /// Sets the mark bit of `obj` without tracing it (a finalizable object
    /// found unreachable, whose children were traced at the cycle's start).
    pub(crate) fn mark_only(&self, obj: *const GcBox<()>) {
        // SAFETY: callers pass live objects of this heap.
        let span = unsafe { &*GcSpan::of(self.pages, obj) };
        if span.mark(span.index_of(obj)) {
            self.marked_bytes.fetch_add(span.elem_size, Ordering::Relaxed);
        }
    }

    /// Marks an object allocated black and, while marking, shades what it
    /// already points to: its fields were written without a barrier, and a
    /// mutator that turned black in the middle of a scope may have stored
    /// handles it held from before the cycle. After termination every
    /// mutator entered after the cycle began, so everything it can store is
    /// already marked, and shading would only set bits that belong to the
    /// next cycle.
    ///
    /// Returns the bytes marked, for the caller to add to `marked_bytes` in
    /// batches (see `MutatorCache::black_bytes`).
    ///
    /// Runs outside a barrier: the shading is needed only for handles a
    /// scope older than the cycle still holds, and termination waits for
    /// such a scope to end (rule 4), which orders these shades before it; a
    /// scope entered after the cycle began holds only marked objects, so
    /// its shades do nothing. A barrier here cost a SeqCst fence per
    /// allocation while marking, the mutator's largest cost in binary-trees.
    pub(crate) fn mark_new(&self, obj: *const GcBox<()>) -> usize {
        // SAFETY: a freshly allocated, initialised object of this heap.
        let span = unsafe { &*GcSpan::of(self.pages, obj) };
        span.mark_fresh(span.index_of(obj));
        // SAFETY: as above. SeqCst: ordered with the collector's SeqCst
        // store that ends marking (see `run_cycle`).
        if unsafe { (*obj).desc.holds_gc } && self.marking.load(Ordering::SeqCst) {
            self.trace_object(obj);
        }
        span.elem_size
    }

    /// Traces one object: shades every handle it holds.
    pub(crate) fn trace_object(&self, obj: *const GcBox<()>) {
        let mut sink = |child: *const GcBox<()>| {
            self.shade(child);
        };
        let mut tracer = Tracer::whole(&mut sink);
        // SAFETY: a grey object is live until the sweep after this cycle.
        unsafe { ((*obj).desc.trace)(obj, &mut tracer) };
    }

    /// Traces grey objects until the queue is empty or about `budget` units
    /// of work are done, one unit per object traced and per handle it holds
    /// (an object of a thousand handles costs a thousand times a leaf's
    /// parent: an assist budgeted in objects once took tens of milliseconds
    /// when it popped large vectors). Returns the work done.
    ///
    /// The children this finds go to a stack of the caller's own, not the
    /// shared queue: one lock per object shaded was the marker's largest
    /// cost. The stack is empty, or handed back to the shared queue, before
    /// this returns, so a caller that ends marking on an empty shared queue
    /// (the collector) or runs inside a barrier (an assist) leaves no grey
    /// object unseen.
    pub(crate) fn drain(&self, budget: usize) -> usize {
        let mut done = 0;
        // Added to `marked_bytes` once, at the end: one shared counter
        // written per object marked was a cache line the marker and every
        // allocating mutator fought over.
        let mut marked = 0usize;
        let mut local: Vec<usize> = Vec::with_capacity(256);
        while done < budget {
            let (obj, resume) = match local.pop() {
                Some(obj) => (obj, (0, 0)),
                None => {
                    let mut q = self.grey.lock().unwrap_or_else(|e| e.into_inner());
                    q.take(64, &mut local);
                    if !local.is_empty() {
                        continue;
                    }
                    match q.take_resumed() {
                        Some(r) => (r.obj, r.at),
                        None => break,
                    }
                }
            };
            let obj = obj as *const GcBox<()>;
            let mut handles = 0usize;
            let mut sink = |child: *const GcBox<()>| {
                handles += 1;
                match self.mark_grey(child) {
                    Grey::Trace(bytes) => {
                        marked += bytes;
                        local.push(child as usize);
                    }
                    Grey::Leaf(bytes) => marked += bytes,
                    Grey::Already => {}
                }
            };
            // A pass never takes more than the budget left, so one assist
            // (512 units) cannot trace a whole 1 024-element pass: its
            // longest took 686 µs of CPU on the graph benchmark with them.
            let room = TRACE_PASS.min(budget - done).max(1);
            let mut tracer = Tracer::pass(&mut sink, resume, room);
            // SAFETY: a grey object is live until the sweep after this cycle.
            unsafe { ((*obj).desc.trace)(obj, &mut tracer) };
            if let Some(at) = tracer.stopped() {
                // Still grey: the rest of its vectors in a later pass.
                self.grey.lock().unwrap_or_else(|e| e.into_inner()).resumed.push(Resume { obj: obj as usize, at });
            }
            done = done.saturating_add(1 + handles);
            if local.len() >= 2 * GREY_BLOCK {
                // Share a block: others (assists) find work, and the stack
                // never holds so much that handing it back stalls barriers.
                let at = local.len() - GREY_BLOCK;
                self.grey.lock().unwrap_or_else(|e| e.into_inner()).extend(&local[at..]);
                local.truncate(at);
            }
        }
        if !local.is_empty() {
            self.grey.lock().unwrap_or_else(|e| e.into_inner()).extend(&local);
        }
        if marked != 0 {
            self.marked_bytes.fetch_add(marked, Ordering::Relaxed);
        }
        done
    }

    /// True if no grey object is queued.
    pub(crate) fn grey_empty(&self) -> bool {
        self.grey.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}
