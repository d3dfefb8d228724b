//! Remote frees: two threads free objects of a span into its remote list
//! (each through its own cache's pending chain, published when the cache is
//! destroyed) while the owning thread keeps allocating, which splices the
//! remote list or hands the span to the central list and takes another.
//!
//! Invariant: no block is handed out twice (every block the owner gets is
//! distinct from every block still live), and no block is lost (after all
//! frees, every page is back in the heap).
#![cfg(gomalloc_loom)]

use gomalloc::malloc::Allocator;
use loom::sync::Arc;
use loom::thread;

#[derive(Clone, Copy)]
struct Block(*mut u8);
// SAFETY: blocks are plain heap addresses handed between model threads.
unsafe impl Send for Block {}

const SIZE: usize = 64;

fn free_on_own_cache(a: &Allocator, b: Block) {
    let c = a.new_cache();
    // SAFETY: `c` is this thread's cache; `b` is a live block freed once;
    // destroying the cache publishes the free and gives up the cache.
    unsafe {
        a.dealloc(c, b.0, SIZE, 8);
        a.caches().destroy(a, c);
    }
}

#[test]
fn remote_frees_race_the_owner() {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(|| {
        let a = Arc::new(Allocator::new(None));
        let owner = a.new_cache();
        // Under loom a span holds three objects: take them all.
        // SAFETY: `owner` is this thread's cache.
        let p: Vec<Block> = (0..3).map(|_| Block(unsafe { a.alloc(owner, SIZE, 8) })).collect();
        let span = a.heap().span_of(p[0].0 as usize);
        assert!(p.iter().all(|b| a.heap().span_of(b.0 as usize) == span));

        let t1 = {
            let (a, b) = (a.clone(), p[0]);
            thread::spawn(move || free_on_own_cache(&a, b))
        };
        let t2 = {
            let (a, b) = (a.clone(), p[1]);
            thread::spawn(move || free_on_own_cache(&a, b))
        };
        // The owner allocates while the frees land: a splice, or a handoff
        // of the exhausted span to the central list and a new span.
        // SAFETY: `owner` is this thread's cache.
        let mut live = vec![p[2]];
        for _ in 0..2 {
            // SAFETY: as above.
            let q = Block(unsafe { a.alloc(owner, SIZE, 8) });
            assert!(!q.0.is_null());
            assert!(live.iter().all(|l| l.0 != q.0), "block handed out twice");
            live.push(q);
        }
        t1.join().unwrap();
        t2.join().unwrap();
        // Everything the frees returned is reachable again: allocate until
        // the freed slots come back, none twice.
        for _ in 0..2 {
            // SAFETY: as above.
            let q = Block(unsafe { a.alloc(owner, SIZE, 8) });
            assert!(live.iter().all(|l| l.0 != q.0), "block handed out twice");
            live.push(q);
        }
        for b in live {
            // SAFETY: each live block is freed once, by its owner's thread.
            unsafe { a.dealloc(owner, b.0, SIZE, 8) };
        }
        // SAFETY: the owner's cache is not used again.
        unsafe { a.caches().destroy(&a, owner) };
        a.release_unused();
        assert_eq!(a.heap().counters().pages_in_use, 0, "a block was lost");
    });
}
