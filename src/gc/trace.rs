//! `Trace`: how the collector finds the GC handles inside a value, and the
//! implementations for the standard types it may appear in.
//!
//! Called by the marker (`mark.rs`), through the type descriptor of each
//! object. No state, no concurrency of its own: `trace` runs on the marker
//! thread while mutators run, so it may only read what mutators cannot change
//! except through barriered cells (`cell.rs`), whose `trace` reads atomics.
//! That is why `Trace` is implemented for immutable containers (`Box`, `Vec`,
//! `Option`, tuples, arrays) and not for `Cell`, `RefCell` or `Mutex`: a
//! traced value mutated behind the collector's back could hide a live
//! object.

use crate::gc::ptr::{Gc, GcBox};

/// Types the collector can trace.
///
/// # Safety
/// `trace` must visit every `Gc` handle the value holds, directly or through
/// owned data, and must not change the value. It must not panic: a panic
/// while the collector traces stops the process (with a message), as the
/// mark could not be finished. `HOLDS_GC` may be false only if
/// no value of the type can hold a handle. Any handle the value holds must be
/// changeable only through barriered cells while the value is reachable.
/// `#[derive(Trace)]` (from `gomalloc-derive`) writes a correct
/// implementation for structs and enums.
pub unsafe trait Trace {
    /// Whether a value of this type can hold GC handles. Objects of types
    /// that cannot are never traced (Go's "noscan" spans).
    const HOLDS_GC: bool = true;

    /// Reports every GC handle held by `self` to `tracer`.
    fn trace(&self, tracer: &mut Tracer<'_>);
}

/// Handles copied out of a `GcVec` per lock acquisition while tracing it.
const COPY_CHUNK: usize = 128;

/// Receives the handles a value holds, during marking.
///
/// An object's trace may be split into passes (Go splits large objects into
/// "oblets" for the same reason): a pass visits at most `room` elements of
/// growable vectors (`GcVec`), and says where it stopped, so that marking
/// one object of a million handles is not one uninterruptible step that an
/// allocation assist or the vector's own lock must wait out. The first pass
/// visits every other handle; later passes visit vector elements only, from
/// where the previous one stopped. Vectors are numbered in trace order,
/// which is fixed for an object (its structure is immutable; only cells
/// change), and an element keeps its index while it is in the vector
/// (`GcVec` has no insert or remove in the middle), so a position is a
/// (vector, index) pair. Splitting is sound because every element that
/// leaves a vector, or is overwritten, while marking is shaded by the
/// barrier, and every element that enters is shaded too: an element a later
/// pass does not find was shaded when it left.
pub struct Tracer<'a> {
    pub(crate) sink: &'a mut dyn FnMut(*const GcBox<()>),
    /// Where this pass starts: (vector number, element index). (0, 0) is a
    /// first pass.
    resume: (usize, usize),
    /// Vectors seen so far in this pass.
    vectors: usize,
    /// Vector elements this pass may still visit.
    room: usize,
    /// Where this pass stopped, if it left elements for a later pass.
    stopped: Option<(usize, usize)>,
}

impl<'a> Tracer<'a> {
    /// A tracer that visits everything in one pass.
    pub(crate) fn whole(sink: &'a mut dyn FnMut(*const GcBox<()>)) -> Tracer<'a> {
        Tracer::pass(sink, (0, 0), usize::MAX)
    }

    /// A pass starting at `resume` that visits at most `room` vector
    /// elements.
    pub(crate) fn pass(sink: &'a mut dyn FnMut(*const GcBox<()>), resume: (usize, usize), room: usize) -> Tracer<'a> {
        Tracer { sink, resume, vectors: 0, room, stopped: None }
    }

    /// Where the pass stopped, if the object needs another.
    pub(crate) fn stopped(&self) -> Option<(usize, usize)> {
        self.stopped
    }

    /// Reports one handle.
    #[inline]
    pub fn visit<T: Trace>(&mut self, gc: &Gc<'_, T>) {
        self.visit_raw(gc.erased());
    }

    /// Reports an erased object pointer (cells that store raw pointers).
    #[inline]
    pub(crate) fn visit_raw(&mut self, obj: *const GcBox<()>) {
        if !obj.is_null() && self.resume == (0, 0) {
            (self.sink)(obj);
        }
    }

    /// Reports the elements of a growable vector (called once per vector),
    /// as much of them as this pass covers. `copy(start, buf)` takes the
    /// vector's lock, copies the elements from `start` into as much of `buf`
    /// as they fill, and returns the vector's length at that moment.
    ///
    /// The lock is held for one copy of at most `COPY_CHUNK` handles, never
    /// while they are reported: reporting shades them (a span lookup and an
    /// atomic OR each, a cache miss apiece), and a mutator reading the
    /// vector blocked on the lock for as long as the marker shaded a whole
    /// pass, or for a whole time slice when the marker was preempted inside
    /// it. Between copies the vector may change; that is the same case as
    /// between passes (see the type's docs), so it needs no lock: an element
    /// that left was shaded by the barrier, one that entered too, and nothing
    /// is freed while marking, so a copied handle is live when it is shaded.
    pub(crate) fn visit_elements(&mut self, copy: &mut dyn FnMut(usize, &mut [*mut GcBox<()>]) -> usize) {
        let number = self.vectors;
        self.vectors += 1;
        if self.stopped.is_some() || number < self.resume.0 {
            return;
        }
        let mut at = if number == self.resume.0 { self.resume.1 } else { 0 };
        let mut buf = [core::ptr::null_mut(); COPY_CHUNK];
        loop {
            let want = self.room.min(COPY_CHUNK);
            let len = copy(at, &mut buf[..want]);
            let got = len.saturating_sub(at).min(want);
            for &p in &buf[..got] {
                if !p.is_null() {
                    (self.sink)(p);
                }
            }
            self.room -= got;
            at += got;
            if at >= len {
                return;
            }
            if self.room == 0 {
                self.stopped = Some((number, at));
                return;
            }
        }
    }
}

/// Implements `Trace` for types that hold no GC handles.
macro_rules! leaf_trace {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: the type holds no GC handle.
        unsafe impl Trace for $t {
            const HOLDS_GC: bool = false;
            #[inline]
            fn trace(&self, _: &mut Tracer<'_>) {}
        }
    )*};
}

leaf_trace!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    str,
    String,
    std::time::Duration,
    std::time::Instant,
    core::sync::atomic::AtomicBool,
    core::sync::atomic::AtomicU32,
    core::sync::atomic::AtomicU64,
    core::sync::atomic::AtomicUsize,
    core::sync::atomic::AtomicI32,
    core::sync::atomic::AtomicI64,
    core::sync::atomic::AtomicIsize,
);

// SAFETY: forwards to the element type; a `Box` owns its contents.
unsafe impl<T: Trace + ?Sized> Trace for Box<T> {
    const HOLDS_GC: bool = T::HOLDS_GC;
    #[inline]
    fn trace(&self, t: &mut Tracer<'_>) {
        (**self).trace(t)
    }
}

// SAFETY: visits every element; a GC object's slice is never mutated (objects
// are reached through shared references only).
unsafe impl<T: Trace> Trace for [T] {
    const HOLDS_GC: bool = T::HOLDS_GC;
    #[inline]
    fn trace(&self, t: &mut Tracer<'_>) {
        if T::HOLDS_GC {
            for x in self {
                x.trace(t);
            }
        }
    }
}

// SAFETY: forwards to the slice of its elements.
unsafe impl<T: Trace> Trace for Vec<T> {
    const HOLDS_GC: bool = T::HOLDS_GC;
    #[inline]
    fn trace(&self, t: &mut Tracer<'_>) {
        self.as_slice().trace(t)
    }
}

// SAFETY: forwards to the slice of its elements.
unsafe impl<T: Trace, const N: usize> Trace for [T; N] {
    const HOLDS_GC: bool = T::HOLDS_GC;
    #[inline]
    fn trace(&self, t: &mut Tracer<'_>) {
        self.as_slice().trace(t)
    }
}

// SAFETY: visits the value if present.
unsafe impl<T: Trace> Trace for Option<T> {
    const HOLDS_GC: bool = T::HOLDS_GC;
    #[inline]
    fn trace(&self, t: &mut Tracer<'_>) {
        if let Some(x) = self {
            x.trace(t);
        }
    }
}

// SAFETY: visits whichever side is present.
unsafe impl<T: Trace, E: Trace> Trace for Result<T, E> {
    const HOLDS_GC: bool = T::HOLDS_GC || E::HOLDS_GC;
    #[inline]
    fn trace(&self, t: &mut Tracer<'_>) {
        match self {
            Ok(x) => x.trace(t),
            Err(e) => e.trace(t),
        }
    }
}

macro_rules! tuple_trace {
    ($($name:ident)+) => {
        // SAFETY: visits every element.
        unsafe impl<$($name: Trace),+> Trace for ($($name,)+) {
            const HOLDS_GC: bool = false $(|| $name::HOLDS_GC)+;
            #[allow(non_snake_case)]
            #[inline]
            fn trace(&self, t: &mut Tracer<'_>) {
                let ($($name,)+) = self;
                $($name.trace(t);)+
            }
        }
    };
}
tuple_trace!(A);
tuple_trace!(A B);
tuple_trace!(A B C);
tuple_trace!(A B C D);
tuple_trace!(A B C D E);
tuple_trace!(A B C D E F);

// SAFETY: holds nothing.
unsafe impl<T: ?Sized> Trace for core::marker::PhantomData<T> {
    const HOLDS_GC: bool = false;
    #[inline]
    fn trace(&self, _: &mut Tracer<'_>) {}
}

// SAFETY: a shared reference to 'static data cannot point into the GC heap
// (GC objects are never 'static).
unsafe impl<T: ?Sized + 'static> Trace for &'static T {
    const HOLDS_GC: bool = false;
    #[inline]
    fn trace(&self, _: &mut Tracer<'_>) {}
}

/// Support for `#[derive(Trace)]`; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// Implemented for every type with a `Drop` impl, and by the derive for
    /// the derived type: the two impls conflict exactly when the derived
    /// type implements `Drop`, which the collector forbids (a `Drop` could
    /// reach a GC object that the same sweep already freed).
    pub trait MustNotImplDrop {}
    #[allow(drop_bounds)]
    impl<T: Drop> MustNotImplDrop for T {}

    /// Compile-time check that a `#[gc(skip)]` field holds no GC handle:
    /// handles are branded with a non-'static lifetime.
    pub fn assert_static<T: 'static + ?Sized>() {}

    /// Compile-time check that a traced field implements `Trace`.
    pub fn assert_trace<T: super::Trace + ?Sized>() {}
}
