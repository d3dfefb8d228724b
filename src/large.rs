//! Large objects: requests over 32 KiB, or aligned beyond a page, take a
//! page-run span straight from the page heap and give it straight back.
//!
//! Called by `malloc.rs`. Calls `mheap.rs`. No state and no lock of its own
//! (the heap lock covers the run). Growth in place and the zeroing shortcut
//! live in `mheap.rs` (`resize_in_place`, `Span::needzero`).

use crate::malloc::Allocator;
use crate::os;
use crate::sizeclass::{PAGE_SHIFT, PAGE_SIZE};
use crate::span::Span;
use core::ptr;

impl Allocator {
    /// A run of pages for `size` bytes aligned to `align`; with `zero`, its
    /// first `size` bytes read as zero (cleared only if the pages may hold old
    /// data: memory fresh from the OS is not touched). Null when out of memory.
    pub(crate) fn alloc_large(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        let Some(npages) = size.checked_add(PAGE_SIZE - 1).map(|s| (s >> PAGE_SHIFT).max(1)) else {
            return ptr::null_mut();
        };
        let align_pages = (align >> PAGE_SHIFT).max(1);
        let span = self.heap().alloc_span(npages, align_pages, 0);
        if span.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: a fresh large span owned by this call; its pages are ours.
        unsafe {
            let base = (*span).base as *mut u8;
            if zero && (*span).needzero {
                ptr::write_bytes(base, 0, size);
            }
            base
        }
    }

    /// Frees the large object at `ptr`, held by `span`.
    ///
    /// # Safety
    /// `span` is the live large span the page table gives for `ptr`.
    pub(crate) unsafe fn free_large(&self, span: *mut Span, ptr: *mut u8) {
        // SAFETY: the caller's span is live.
        if unsafe { (*span).base } != ptr as usize {
            os::fatal(format_args!(
                "invalid free of {:#x}: not the start of a block (interior pointer of a large object)",
                ptr as usize
            ));
        }
        // SAFETY: the caller frees its live block; the span holds nothing else.
        unsafe { self.heap().free_span(span) };
    }
}
