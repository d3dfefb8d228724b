//! GC handles: `Gc<'gc, T>`, the object layout `GcBox`, its type
//! descriptor, and `Rebrand`, which lets a handle kept between scopes
//! (`Root`) be re-branded for the next scope.
//!
//! Called by every other `gc` module. No state and no concurrency of its own.
//!
//! # Invariants
//! A `Gc<'gc, T>` exists only inside `Heap::enter`, where `'gc` is the
//! closure's invariant lifetime, so no handle outlives the scope it was made
//! in; every handle points at a live, initialised `GcBox<T>` for as long as
//! it exists (see the soundness argument in `mod.rs`).

use crate::gc::trace::{Trace, Tracer};
use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

/// Describes the type of the value in a `GcBox`: what the marker and the
/// sweeper need without knowing `T`.
pub struct TypeDesc {
    /// Calls `T::trace` on the value.
    pub trace: unsafe fn(*const GcBox<()>, &mut Tracer<'_>),
    /// Drops the value in place.
    pub drop: unsafe fn(*mut GcBox<()>),
    /// `T::HOLDS_GC`: objects that cannot hold handles are never traced.
    pub holds_gc: bool,
    /// `core::any::type_name::<T>()`, for diagnostics.
    pub name: fn() -> &'static str,
}

/// A GC object: the type descriptor, then the value.
#[repr(C)]
pub struct GcBox<T: ?Sized> {
    pub(crate) desc: &'static TypeDesc,
    pub(crate) value: T,
}

impl<T: Trace> GcBox<T> {
    /// The descriptor of `T`.
    pub(crate) const DESC: TypeDesc = TypeDesc {
        trace: trace_erased::<T>,
        drop: drop_erased::<T>,
        holds_gc: T::HOLDS_GC,
        name: core::any::type_name::<T>,
    };
}

/// # Safety
/// `obj` points to a live `GcBox<T>`.
unsafe fn trace_erased<T: Trace>(obj: *const GcBox<()>, tracer: &mut Tracer<'_>) {
    // A `trace` that unwinds leaves the marker's state (its grey stack, a
    // barrier, the collector thread itself) half done, and no cycle could
    // finish after it: stop the process with a message instead.
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            crate::os::fatal(format_args!(
                "GC: a Trace implementation panicked during marking (Trace::trace must not panic)"
            ));
        }
    }
    let guard = AbortOnUnwind;
    // SAFETY: the caller passes a live box of `T`, found through its
    // descriptor.
    unsafe { (*obj.cast::<GcBox<T>>()).value.trace(tracer) };
    core::mem::forget(guard);
}

/// # Safety
/// `obj` points to a live `GcBox<T>` that is never used again.
unsafe fn drop_erased<T: Trace>(obj: *mut GcBox<()>) {
    // SAFETY: the caller passes a live box of `T` and gives it up.
    unsafe { core::ptr::drop_in_place(&mut (*obj.cast::<GcBox<T>>()).value) }
}

/// Makes a lifetime invariant.
pub(crate) type Invariant<'gc> = PhantomData<fn(&'gc ()) -> &'gc ()>;

/// A handle to a GC object, valid for the scope `'gc` of one
/// `Heap::enter`. `Copy`; dereferences to `&T`.
pub struct Gc<'gc, T: Trace + 'gc> {
    ptr: NonNull<GcBox<T>>,
    _brand: Invariant<'gc>,
    // Handles stay on the thread of their scope: another thread is not a
    // mutator of this scope, and the collector would not see it.
    _not_send: PhantomData<*const ()>,
}

impl<'gc, T: Trace + 'gc> Gc<'gc, T> {
    /// Wraps an object pointer.
    ///
    /// # Safety
    /// `ptr` points at a live `GcBox<T>` that the collector keeps alive for
    /// all of `'gc` (it is reachable, black, or reached through a root).
    #[inline]
    pub(crate) unsafe fn from_raw(ptr: *const GcBox<T>) -> Self {
        // SAFETY: the caller passes a live, hence non-null, pointer.
        Gc { ptr: unsafe { NonNull::new_unchecked(ptr as *mut GcBox<T>) }, _brand: PhantomData, _not_send: PhantomData }
    }

    /// The object pointer, type-erased.
    #[inline]
    pub(crate) fn erased(&self) -> *const GcBox<()> {
        self.ptr.as_ptr() as *const GcBox<()>
    }

    /// The box pointer.
    #[inline]
    pub(crate) fn as_box(this: Gc<'gc, T>) -> NonNull<GcBox<T>> {
        this.ptr
    }

    /// True if both handles name the same object.
    #[inline]
    pub fn ptr_eq(a: Gc<'gc, T>, b: Gc<'gc, T>) -> bool {
        a.ptr == b.ptr
    }

    /// The object's address (stable: the collector does not move objects).
    #[inline]
    pub fn as_ptr(this: Gc<'gc, T>) -> *const T {
        // SAFETY: the box is live for 'gc.
        unsafe { &raw const (*this.ptr.as_ptr()).value }
    }
}

impl<'gc, T: Trace + 'gc> Clone for Gc<'gc, T> {
    #[inline]
    fn clone(&self) -> Self {
        *self
    }
}
impl<'gc, T: Trace + 'gc> Copy for Gc<'gc, T> {}

impl<'gc, T: Trace + 'gc> Deref for Gc<'gc, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the box is live and initialised for all of 'gc (type
        // invariant), and GC objects are only ever shared.
        unsafe { &(*self.ptr.as_ptr()).value }
    }
}

impl<'gc, T: Trace + fmt::Debug + 'gc> fmt::Debug for Gc<'gc, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// SAFETY: reports the handle itself.
unsafe impl<'gc, T: Trace + 'gc> Trace for Gc<'gc, T> {
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        tracer.visit(self);
    }
}

/// Types whose GC handles are branded with one lifetime, which can be
/// re-branded: `Of<'gc>` is the same type with its brand set to `'gc`.
/// `#[derive(Trace)]` implements it for types with at most one lifetime
/// parameter; `Root<Node<'static>>` then hands out `Gc<'gc, Node<'gc>>`.
///
/// # Safety
/// `Of<'a>` and `Of<'b>` must differ only in that lifetime (same layout,
/// same `Trace`), so a pointer to one is a pointer to the other.
pub unsafe trait Rebrand {
    /// The type with its brand set to `'gc`.
    type Of<'gc>: Trace + 'gc;
}

macro_rules! rebrand_static {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: the type has no lifetime to rebrand.
        unsafe impl Rebrand for $t {
            type Of<'gc> = $t;
        }
    )*};
}
rebrand_static!((), bool, char, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, String);

// SAFETY: the element type is rebranded, the container is the same.
unsafe impl<T: Rebrand> Rebrand for Vec<T> {
    type Of<'gc> = Vec<T::Of<'gc>>;
}
// SAFETY: as for `Vec`.
unsafe impl<T: Rebrand> Rebrand for Option<T> {
    type Of<'gc> = Option<T::Of<'gc>>;
}
// SAFETY: as for `Vec`.
unsafe impl<T: Rebrand> Rebrand for Box<T> {
    type Of<'gc> = Box<T::Of<'gc>>;
}
