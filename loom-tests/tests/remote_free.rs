//! Model 1, remote frees: threads free objects of a span the main thread's
//! cache owns, through its remote list, while the owner keeps allocating,
//! which splices the remote list or hands the exhausted span to the central
//! list and takes another.
//!
//! - `remote_frees_race_the_owner`: two threads each free one object through
//!   their own cache's pending chain, published when the cache is destroyed.
//! - `chain_and_single_frees_race_the_splice`: one thread frees two objects
//!   as one pending chain (one CAS for both), the other frees one object
//!   through a dead thread's shared cache, which publishes each free at once.
//!
//! Invariant: no block is handed out twice (the owner's blocks are distinct
//! from every live block, and each block's previous user's accesses
//! happen-before the next user's: `UserData`), and no block is lost: once
//! every thread is done, a fresh cache gets back exactly the free slots of
//! every span (`audit_class`), and after all frees no page is in use.
//!
//! Mutations tried (on d19e4b4, one at a time, both models run at
//! `LOOM_MAX_PREEMPTIONS=2`, reverted; none committed). Each change fails
//! both models, `remote_frees_race_the_owner` and
//! `chain_and_single_frees_race_the_splice`, with the same report:
//! - `Span::splice_remote`'s swap Acquire → Relaxed: "Causality violation:
//!   Concurrent write accesses to `UnsafeCell`" in `UserData::touch` from
//!   `alloc_use` (the freeing thread's last use of a block against the
//!   owner's first use after the splice). The links it takes are raw
//!   memory: with `GOMALLOC_LOOM_NO_USER_DATA=1` (allocator cells only)
//!   both models pass, the bug unseen.
//! - `Span::push_remote_chain`'s CAS AcqRel → Acquire (no Release): the
//!   same causality violation in both models (with the user-data cells).
//! - `Span::splice_remote` as an Acquire load and a separate Relaxed store
//!   of `OWNED` instead of one swap: the audit fails in both, "more free
//!   blocks than slots: a block was handed out twice" (a push landing
//!   between the two is not taken away from the remote list).
//! - `push_remote_chain` never claiming a `FULL` span: the audit fails in
//!   both, "a freed block never came back (lost)" (`remote_frees_…`: left
//!   1, right 3; `chain_and_single_…`: left 1, right 4).
#![cfg(gomalloc_loom)]

use gomalloc::malloc::Allocator;
use gomalloc::mcache::MCache;
use gomalloc_loom_tests::{
    alloc_use, assert_distinct, audit_class, builder, first_block, free_published, span_of, use_free, Block, UserData,
};
use loom::sync::Arc;
use loom::thread;

const SIZE: usize = 64;
/// Objects per span under loom.
const PER_SPAN: usize = gomalloc::span::MAX_OBJECTS_PER_SPAN as usize;

/// A fresh allocator, the user-data cells for its first spans, the main
/// thread's cache, and the three blocks of its first span.
fn setup() -> (Arc<Allocator>, Arc<UserData>, *mut MCache, Vec<Block>) {
    let a = Arc::new(Allocator::new(None));
    let owner = a.new_cache();
    // SAFETY: `owner` is this thread's cache.
    let (data, first) = unsafe { first_block(&a, owner, SIZE, 4, &[SIZE]) };
    let mut p = vec![first];
    for _ in 1..PER_SPAN {
        // SAFETY: as above.
        p.push(unsafe { alloc_use(&a, owner, SIZE, &data) });
    }
    let span = span_of(&a, first);
    assert!(p.iter().all(|&b| span_of(&a, b) == span));
    (a, Arc::new(data), owner, p)
}

/// The owner allocates `n` blocks while the frees land, checking each
/// against the blocks still live.
fn owner_allocates(a: &Allocator, owner: *mut MCache, data: &UserData, live: &mut Vec<Block>, n: usize) {
    for _ in 0..n {
        // SAFETY: `owner` is this thread's cache.
        let q = unsafe { alloc_use(a, owner, SIZE, data) };
        assert!(live.iter().all(|l| *l != q), "block handed out twice");
        live.push(q);
    }
}

fn finish(a: &Allocator, owner: *mut MCache, data: &UserData, live: Vec<Block>) {
    assert_distinct(&live, "owner");
    // SAFETY: the owner's cache is not used again.
    unsafe { a.caches().destroy(a, owner) };
    audit_class(a, SIZE, live, data);
}

#[test]
fn remote_frees_race_the_owner() {
    builder().check(|| {
        let (a, data, owner, p) = setup();
        let spawn_free = |b: Block| {
            let (a, data) = (a.clone(), data.clone());
            thread::spawn(move || {
                let c = a.new_cache();
                // SAFETY: `c` is this thread's cache; `b` is a live block
                // given to this thread, freed once; destroying the cache
                // publishes the free and gives up the cache.
                unsafe {
                    use_free(&a, c, b, SIZE, &data);
                    a.caches().destroy(&a, c);
                }
            })
        };
        let t1 = spawn_free(p[0]);
        let t2 = spawn_free(p[1]);
        let mut live = vec![p[2]];
        owner_allocates(&a, owner, &data, &mut live, 2);
        t1.join().unwrap();
        t2.join().unwrap();
        finish(&a, owner, &data, live);
    });
}

#[test]
fn chain_and_single_frees_race_the_splice() {
    builder().check(|| {
        let (a, data, owner, p) = setup();
        let chain = {
            let (a, data, b0, b1) = (a.clone(), data.clone(), p[0], p[1]);
            thread::spawn(move || {
                let c = a.new_cache();
                // SAFETY: `c` is this thread's cache; both blocks are live,
                // given to this thread and freed once. They share a span, so
                // they form one pending chain, published by `destroy`.
                unsafe {
                    use_free(&a, c, b0, SIZE, &data);
                    use_free(&a, c, b1, SIZE, &data);
                    a.caches().destroy(&a, c);
                }
            })
        };
        let single = {
            let (a, data, b2) = (a.clone(), data.clone(), p[2]);
            thread::spawn(move || {
                // A thread past its cache's destruction frees through the
                // shared dead cache: the free is published at once.
                // SAFETY: `b2` is live, given to this thread, freed once.
                unsafe { free_published(&a, b2, SIZE, &data) };
            })
        };
        let mut live = Vec::new();
        owner_allocates(&a, owner, &data, &mut live, 2);
        chain.join().unwrap();
        single.join().unwrap();
        finish(&a, owner, &data, live);
    });
}
