//! `gom_stats_get` and `gom_stats_print`: the C view of the core's
//! [`Stats`](gomalloc_core::Stats) and its printer; glibc's `mallinfo2` and
//! `mallinfo` from the same figures.
//!
//! Called by `gom.rs` and `libc_api.rs`. Calls the core's `stats()` and `print_stats()`. No
//! state; nothing here allocates (the table is formatted through a line
//! buffer on the stack).

use core::ffi::{c_char, c_int, c_void};
use core::fmt::{self, Write};
use core::mem::size_of;
use core::ptr;
use gomalloc_core::sizeclass::NUM_CLASSES;

/// `struct gom_class_stats` of `include/gomalloc.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GomClassStats {
    /// Object size of the class in bytes.
    pub object_size: usize,
    /// Objects of the class allocated and not freed.
    pub objects_in_use: usize,
    /// Spans of the class taken from the page heap.
    pub spans: usize,
}

/// `struct gom_stats` of `include/gomalloc.h`: every field a `size_t`, new
/// fields only ever appended, so a caller compiled against an older header
/// (a smaller `size`) gets the fields it knows.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GomStats {
    /// Bytes the caller's struct has (in); bytes filled (out).
    pub size: usize,
    /// See [`gomalloc_core::Stats`] for the meaning of each figure.
    pub bytes_in_use: usize,
    /// Address space reserved for arenas.
    pub bytes_mapped: usize,
    /// Free pages returned to the OS.
    pub bytes_released: usize,
    /// Free pages kept resident for reuse.
    pub bytes_free_retained: usize,
    /// Pages held by spans.
    pub bytes_in_spans: usize,
    /// Allocator metadata.
    pub bytes_metadata: usize,
    /// Small-object spans in use.
    pub small_spans: usize,
    /// Large objects in use.
    pub large_objects: usize,
    /// Thread caches alive.
    pub thread_caches: usize,
    /// Entries of `classes` (`GOM_NUM_CLASSES`).
    pub num_classes: usize,
    /// Per-class figures; index 0 is unused.
    pub classes: [GomClassStats; NUM_CLASSES],
    /// `madvise` calls that returned free pages to the OS.
    pub purges: usize,
    /// Bytes those calls returned.
    pub bytes_purged: usize,
}

/// Size classes, as `GOM_NUM_CLASSES` in the header (checked by a test).
pub const GOM_NUM_CLASSES: usize = NUM_CLASSES;

fn snapshot() -> GomStats {
    let s = gomalloc_core::global_allocator().stats();
    let mut out = GomStats {
        size: size_of::<GomStats>(),
        bytes_in_use: s.bytes_in_use,
        bytes_mapped: s.bytes_mapped,
        bytes_released: s.bytes_released,
        bytes_free_retained: s.bytes_free_retained,
        bytes_in_spans: s.bytes_in_spans,
        bytes_metadata: s.bytes_metadata,
        small_spans: s.small_spans,
        large_objects: s.large_objects,
        thread_caches: s.thread_caches,
        num_classes: NUM_CLASSES,
        classes: [GomClassStats::default(); NUM_CLASSES],
        purges: s.purges,
        bytes_purged: s.bytes_purged,
    };
    for (o, c) in out.classes.iter_mut().zip(s.classes.iter()) {
        *o = GomClassStats { object_size: c.object_size, objects_in_use: c.objects_in_use, spans: c.spans };
    }
    out
}

/// glibc's `mallinfo2`, filled from gomalloc's figures in the spirit of
/// each field (glibc's describe its own arenas, which gomalloc does not
/// have): `arena` the address space mapped for the heap, `hblks` the large
/// objects in use, `uordblks` the bytes in live blocks, `fsmblks` the free
/// room inside small-object spans, `fordblks` the free pages (resident or
/// released), `keepcost` the free resident pages `malloc_trim` would
/// release. The other fields are 0.
pub fn mallinfo2() -> libc::mallinfo2 {
    let s = gomalloc_core::global_allocator().stats();
    libc::mallinfo2 {
        arena: s.bytes_mapped,
        ordblks: 0,
        smblks: 0,
        hblks: s.large_objects,
        hblkhd: 0,
        usmblks: 0,
        fsmblks: s.bytes_in_spans.saturating_sub(s.bytes_in_use),
        uordblks: s.bytes_in_use,
        fordblks: s.bytes_free_retained + s.bytes_released,
        keepcost: s.bytes_free_retained,
    }
}

/// glibc's `mallinfo`: `mallinfo2` with each figure capped at `INT_MAX`
/// (glibc's wraps around).
pub fn mallinfo() -> libc::mallinfo {
    let m = mallinfo2();
    let int = |v: usize| v.min(c_int::MAX as usize) as c_int;
    libc::mallinfo {
        arena: int(m.arena),
        ordblks: int(m.ordblks),
        smblks: int(m.smblks),
        hblks: int(m.hblks),
        hblkhd: int(m.hblkhd),
        usmblks: int(m.usmblks),
        fsmblks: int(m.fsmblks),
        uordblks: int(m.uordblks),
        fordblks: int(m.fordblks),
        keepcost: int(m.keepcost),
    }
}

/// Fills as much of `*out` as its leading `size` field says it has room for,
/// in whole fields, and sets `size` to the bytes filled. Returns 0, or EINVAL
/// when `out` is null or too small for even the `size` field.
///
/// # Safety
/// `out` is null or points to at least `out->size` writable bytes, aligned
/// for `size_t`.
pub unsafe fn get(out: *mut GomStats) -> c_int {
    if out.is_null() {
        return libc::EINVAL;
    }
    // Only `size` is read: the caller's struct may be smaller than ours.
    // SAFETY: the caller's contract: the struct starts with its size.
    let room = unsafe { out.cast::<usize>().read() };
    if room < size_of::<usize>() {
        return libc::EINVAL;
    }
    let filled = room.min(size_of::<GomStats>()) / size_of::<usize>() * size_of::<usize>();
    let full = snapshot();
    // SAFETY: `filled` bytes fit both in our struct and in the caller's; the
    // two do not overlap (ours is on this stack frame).
    unsafe {
        ptr::copy_nonoverlapping((&full as *const GomStats).cast::<u8>(), out.cast::<u8>(), filled);
        out.cast::<usize>().write(filled);
    }
    0
}

/// The line callback of `gom_stats_print`.
pub type LineFn = unsafe extern "C" fn(line: *const c_char, arg: *mut c_void);

/// Collects formatted text into lines and hands each, NUL-terminated and
/// without its newline, to the callback. A line longer than the buffer is
/// passed on in pieces.
struct LineSink {
    f: LineFn,
    arg: *mut c_void,
    buf: [u8; 256],
    len: usize,
}

impl LineSink {
    fn emit(&mut self) {
        // The last byte is always left for the terminator.
        self.buf[self.len] = 0;
        // SAFETY: the callback's contract (see `print`); the line is a
        // NUL-terminated string that lives for the call.
        unsafe { (self.f)(self.buf.as_ptr().cast(), self.arg) };
        self.len = 0;
    }
}

impl Write for LineSink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                self.emit();
            } else {
                if self.len == self.buf.len() - 1 {
                    self.emit();
                }
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Prints the statistics table to stderr, or line by line to `f`.
///
/// # Safety
/// `f`, if given, may be called with `arg` and a string valid for the call.
pub unsafe fn print(f: Option<LineFn>, arg: *mut c_void) {
    match f {
        None => gomalloc_core::print_stats(),
        Some(f) => {
            let mut sink = LineSink { f, arg, buf: [0; 256], len: 0 };
            let _ = write!(sink, "{}", gomalloc_core::global_allocator().stats());
            if sink.len != 0 {
                sink.emit();
            }
        }
    }
}
