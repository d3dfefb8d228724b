//! A deliberate data race on memory from `GoMalloc`, for the ThreadSanitizer
//! step of `.ci/run` only: that step expects ThreadSanitizer to report this
//! race, which shows the sanitizer sees accesses to blocks gomalloc hands
//! out, so its silence on the test suites means something. Never run it
//! outside ThreadSanitizer: the race is undefined behaviour.

use gomalloc::GoMalloc;

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

fn main() {
    let counter = Box::into_raw(Box::new(0u64)) as usize;
    let bump = move || {
        // SAFETY: not safe — two threads write the same block without
        // synchronisation, on purpose (see the header); the block is live
        // until both threads are joined.
        unsafe { *(counter as *mut u64) += 1 };
    };
    let other = std::thread::spawn(bump);
    bump();
    other.join().unwrap();
    // SAFETY: both writers are joined; the block came from `Box::into_raw`.
    let total = unsafe { Box::from_raw(counter as *mut u64) };
    println!("counter = {total}");
}
