//! A fixed number of allocate/free pairs through `GoMalloc`, for counting
//! the fast path's instructions under callgrind (wall-clock timing belongs to
//! the criterion benches):
//!
//! ```sh
//! cargo build --release --example pairs [--features secure]
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out target/release/examples/pairs 1000000 64
//! ```
//!
//! Run it twice with different counts: the difference of the instruction
//! totals divided by the difference of the counts is the cost of one pair,
//! without start-up and the first span's refill.

use core::alloc::{GlobalAlloc, Layout};
use gomalloc::GoMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let layout = Layout::from_size_align(size, 8).expect("valid layout");
    let mut sum = 0usize;
    for _ in 0..n {
        // SAFETY: a non-zero-size layout; the block is freed once, with it.
        unsafe {
            let p = GoMalloc.alloc(layout);
            assert!(!p.is_null());
            p.write_volatile(1);
            sum = sum.wrapping_add(p as usize & 0xff);
            GoMalloc.dealloc(p, layout);
        }
    }
    println!("{n} pairs of {size} bytes ({sum})");
}
