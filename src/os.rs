//! The allocator's only contact with the OS: reserving, releasing and
//! discarding address space, and writing diagnostics with `write(2)` from a
//! fixed stack buffer.
//!
//! Called by `fixalloc.rs` (metadata chunks) and `mheap.rs` (arenas, the
//! arena index, the scavenger). Stateless, so no lock. Nothing here allocates.

use core::fmt::{self, Write};
use core::ptr;

/// Maps `len` bytes of zeroed, readable and writable private memory whose
/// start is a multiple of `align` (a power of two at least the OS page).
/// Swap is not reserved (`MAP_NORESERVE`): pages cost memory only once
/// touched. With `checked`, the mapping is not `MAP_NORESERVE`, so that the
/// kernel's overcommit policy judges it as it judges glibc's `malloc` of a
/// large block (the default heuristic refuses one larger than RAM plus swap).
/// Returns null when the OS refuses.
pub fn map_aligned(len: usize, align: usize, checked: bool) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    let Some(reserve) = len.checked_add(align) else {
        return ptr::null_mut();
    };
    let base = map_with(reserve, if checked { 0 } else { libc::MAP_NORESERVE });
    if base.is_null() {
        return base;
    }
    let start = (base as usize + align - 1) & !(align - 1);
    let head = start - base as usize;
    let tail = reserve - head - len;
    // SAFETY: both ranges lie inside the mapping made above and are not used.
    unsafe {
        if head != 0 {
            unmap(base, head);
        }
        if tail != 0 {
            unmap((start + len) as *mut u8, tail);
        }
    }
    start as *mut u8
}

/// Maps `len` bytes of zeroed private memory (`MAP_NORESERVE`); null when
/// the OS refuses.
pub fn map(len: usize) -> *mut u8 {
    map_with(len, libc::MAP_NORESERVE)
}

fn map_with(len: usize, flags: libc::c_int) -> *mut u8 {
    // SAFETY: an anonymous mapping at an address of the kernel's choosing
    // touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Unmaps a range.
///
/// # Safety
/// `[addr, addr + len)` must be a range this module mapped that nothing uses
/// any more.
pub unsafe fn unmap(addr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe {
        libc::munmap(addr.cast(), len);
    }
}

/// Returns the pages of `[addr, addr + len)` to the OS; they read as zero
/// when next touched (private anonymous memory, `MADV_DONTNEED`). False if
/// the kernel refused: `MADV_DONTNEED` fails with `EINVAL` on locked pages
/// (`mlock`, `mlockall`), which then keep their contents, so the caller must
/// go on treating them as dirty.
///
/// # Safety
/// The range must be mapped by this module and hold no live data.
#[must_use]
pub unsafe fn release(addr: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and holds nothing live.
    unsafe { libc::madvise(addr.cast(), len, libc::MADV_DONTNEED) == 0 }
}

/// Faults in `[addr, addr + len)` writable without changing what it holds
/// (`MADV_POPULATE_WRITE`, Linux 5.14), so that whoever writes there next
/// takes no page fault. False if the kernel refused (too old, or out of
/// memory).
///
/// # Safety
/// The range must be mapped by this module (its contents are not touched).
pub unsafe fn populate(addr: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours; populating changes
    // no byte of it, so it may race with its users.
    unsafe { libc::madvise(addr.cast(), len, libc::MADV_POPULATE_WRITE) == 0 }
}

/// Makes `[addr, addr + len)` readable and writable (`rw`) or inaccessible;
/// a failure (the kernel's limit on mappings) leaves it as it was.
///
/// # Safety
/// The range must be mapped by this module and, when made inaccessible,
/// hold nothing anyone will touch until it is made accessible again.
pub unsafe fn protect(addr: *mut u8, len: usize, rw: bool) {
    let prot = if rw { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_NONE };
    // SAFETY: the caller guarantees the range is ours and unused meanwhile.
    unsafe {
        libc::mprotect(addr.cast(), len, prot);
    }
}

/// A fixed buffer that formats without allocating; output beyond its size is
/// cut.
pub struct StackWriter {
    buf: [u8; 512],
    len: usize,
}

impl StackWriter {
    /// An empty buffer.
    pub const fn new() -> StackWriter {
        StackWriter { buf: [0; 512], len: 0 }
    }

    /// Writes the buffered bytes to stderr with `write(2)` and empties it.
    pub fn flush_stderr(&mut self) {
        let mut done = 0;
        while done < self.len {
            // SAFETY: the slice `buf[done..len]` is initialised and in bounds.
            let n = unsafe { libc::write(2, self.buf.as_ptr().add(done).cast(), self.len - done) };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        self.len = 0;
    }
}

impl Default for StackWriter {
    fn default() -> Self {
        StackWriter::new()
    }
}

impl Write for StackWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush_stderr();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Writes one formatted line to stderr without allocating.
pub fn eprint_line(args: fmt::Arguments<'_>) {
    let mut w = StackWriter::new();
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
    w.flush_stderr();
}

/// Reports heap corruption or misuse in one line and stops the process
/// (`abort`, so no destructor or handler can touch the heap afterwards).
#[cold]
#[inline(never)]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut w = StackWriter::new();
    let _ = w.write_str("gomalloc: ");
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
    w.flush_stderr();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// A decimal integer, optionally negative, as environment variables and C
/// options spell numbers; `None` if it is not one or overflows. No
/// allocation, so option parsing can run before the allocator is set up.
#[doc(hidden)]
pub fn parse_decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}
