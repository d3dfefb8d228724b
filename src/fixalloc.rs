//! The metadata allocator (Go's `fixalloc`): fixed-size records for span and
//! thread-cache metadata, carved from `mmap`ed chunks and recycled through a
//! free list. The allocator never allocates its own metadata from itself.
//!
//! Called by `mheap.rs` (span records, under the heap lock) and `mcache.rs`
//! (cache records, under the registry lock). Not thread-safe by itself: the
//! caller's lock protects it. Chunks are never unmapped while the owner lives,
//! so a record's memory stays valid (if recycled) after it is freed; this is
//! what makes a racy read of a stale span record harmless.

use crate::os;
use core::mem::{align_of, size_of};
use core::ptr;

/// Bytes mapped at a time for records.
const CHUNK_BYTES: usize = 256 << 10;

#[repr(C)]
struct FreeRecord {
    next: *mut FreeRecord,
}

/// A chunk header, kept at the start of each chunk so `Drop` can unmap them.
#[repr(C)]
struct Chunk {
    next: *mut Chunk,
}

/// Hands out zeroed, properly aligned records of type `T`.
#[derive(Debug)]
pub struct FixAlloc<T> {
    free: *mut FreeRecord,
    bump: usize,
    end: usize,
    chunks: *mut Chunk,
    /// Records handed out and not freed.
    pub in_use: usize,
    /// Bytes mapped for records.
    pub mapped: usize,
    _marker: core::marker::PhantomData<T>,
}

// SAFETY: the pointers name chunks this allocator mapped; they are not tied
// to a thread, and the owner's lock serialises all use.
unsafe impl<T> Send for FixAlloc<T> {}

impl<T> FixAlloc<T> {
    const STRIDE: usize = {
        let a = if align_of::<T>() > 8 { align_of::<T>() } else { 8 };
        let s = if size_of::<T>() > 8 { size_of::<T>() } else { 8 };
        (s + a - 1) & !(a - 1)
    };

    /// An allocator that has mapped nothing yet.
    pub const fn new() -> Self {
        FixAlloc {
            free: ptr::null_mut(),
            bump: 0,
            end: 0,
            chunks: ptr::null_mut(),
            in_use: 0,
            mapped: 0,
            _marker: core::marker::PhantomData,
        }
    }

    /// A zeroed record, or null when the OS refuses memory.
    pub fn alloc(&mut self) -> *mut T {
        let rec = if !self.free.is_null() {
            let rec = self.free;
            // SAFETY: records on the free list were handed out by this
            // allocator and freed; the list link is their first word.
            unsafe {
                self.free = (*rec).next;
                ptr::write_bytes(rec.cast::<u8>(), 0, Self::STRIDE);
            }
            rec.cast::<T>()
        } else {
            if self.bump + Self::STRIDE > self.end && !self.grow() {
                return ptr::null_mut();
            }
            let rec = self.bump as *mut T;
            self.bump += Self::STRIDE;
            rec
        };
        self.in_use += 1;
        rec
    }

    /// Returns a record to the free list.
    ///
    /// # Safety
    /// `rec` came from `alloc` on this allocator and is not used afterwards
    /// (other than by racy readers that tolerate stale contents).
    pub unsafe fn free(&mut self, rec: *mut T) {
        let rec = rec.cast::<FreeRecord>();
        // SAFETY: the record is ours and at least a pointer wide.
        unsafe { (*rec).next = self.free };
        self.free = rec;
        self.in_use -= 1;
    }

    fn grow(&mut self) -> bool {
        let chunk = os::map(CHUNK_BYTES);
        if chunk.is_null() {
            return false;
        }
        let header = chunk.cast::<Chunk>();
        // SAFETY: the chunk is freshly mapped and large enough for its header.
        unsafe { (*header).next = self.chunks };
        self.chunks = header;
        let first = (chunk as usize + size_of::<Chunk>() + align_of::<T>().max(8) - 1) & !(align_of::<T>().max(8) - 1);
        self.bump = first;
        self.end = chunk as usize + CHUNK_BYTES;
        self.mapped += CHUNK_BYTES;
        true
    }
}

impl<T> Drop for FixAlloc<T> {
    fn drop(&mut self) {
        let mut c = self.chunks;
        while !c.is_null() {
            // SAFETY: every chunk on the list was mapped by `grow` with
            // CHUNK_BYTES; the owner is being dropped, so no record is used.
            unsafe {
                let next = (*c).next;
                os::unmap(c.cast(), CHUNK_BYTES);
                c = next;
            }
        }
    }
}

impl<T> Default for FixAlloc<T> {
    fn default() -> Self {
        FixAlloc::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_distinct_zeroed_and_recycled() {
        let mut fa: FixAlloc<[u64; 5]> = FixAlloc::new();
        let mut recs = std::vec::Vec::new();
        for i in 0..20_000u64 {
            let r = fa.alloc();
            assert!(!r.is_null());
            // SAFETY: fresh record of the right type.
            unsafe {
                assert_eq!(*r, [0; 5]);
                *r = [i; 5];
            }
            recs.push(r);
        }
        assert!(fa.mapped > CHUNK_BYTES, "crossed a chunk boundary");
        for (i, &r) in recs.iter().enumerate() {
            // SAFETY: live record written above.
            unsafe { assert_eq!(*r, [i as u64; 5]) };
        }
        let victim = recs[777];
        // SAFETY: freed once, not used again.
        unsafe { fa.free(victim) };
        let again = fa.alloc();
        assert_eq!(again, victim, "free list is reused first");
        // SAFETY: fresh record.
        unsafe { assert_eq!(*again, [0; 5], "recycled records come back zeroed") };
        assert_eq!(fa.in_use, 20_000);
    }
}
