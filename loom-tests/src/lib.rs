//! loom models of gomalloc's concurrent protocols. The models live in
//! `tests/` and only run when built with `RUSTFLAGS="--cfg gomalloc_loom"`,
//! which swaps the sync shim's types for loom's; see `README.md`.
//!
//! This library holds what the models share: a `Send` wrapper for block
//! addresses, the model builder with the default preemption bound, and
//! [`UserData`], loom-tracked cells that stand for the contents of blocks so
//! that loom can check the hand-off of a block from one user to the next.

#[cfg(gomalloc_loom)]
pub use model_support::*;

#[cfg(gomalloc_loom)]
mod model_support {
    use gomalloc::malloc::Allocator;
    use gomalloc::mcache::{CacheKind, MCache};
    use gomalloc::sizeclass::PAGE_SIZE;
    use gomalloc::span::{RemoteWord, Span, MAX_OBJECTS_PER_SPAN};
    use loom::cell::UnsafeCell;

    /// A block (or page run) address handed between model threads.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Block(pub *mut u8);

    // SAFETY: a block is a plain heap address; the models hand blocks between
    // threads the way a program does, and the allocator is built for that.
    unsafe impl Send for Block {}
    // SAFETY: as for `Send`; the address itself is never written through a
    // shared `Block`.
    unsafe impl Sync for Block {}

    impl Block {
        /// The address as an integer.
        pub fn addr(self) -> usize {
            self.0 as usize
        }
    }

    /// The outcomes a model reached over all its executions, so a model can
    /// check that the interleavings it is about were explored (a model whose
    /// racing steps never actually race proves nothing). Kept outside loom:
    /// recording an outcome adds no synchronisation to the model.
    #[derive(Default)]
    pub struct Outcomes(std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>>);

    impl Outcomes {
        /// No outcome yet.
        pub fn new() -> std::sync::Arc<Outcomes> {
            std::sync::Arc::new(Outcomes::default())
        }

        /// Records that an execution ended in `outcome`.
        pub fn saw(&self, outcome: &'static str) {
            *self.0.lock().unwrap().entry(outcome).or_default() += 1;
        }

        /// Asserts that every outcome in `expected` occurred, and no other.
        pub fn assert_exactly(&self, expected: &[&str]) {
            let seen = self.0.lock().unwrap();
            let mut got: Vec<&str> = seen.keys().copied().collect();
            let mut want = expected.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "outcomes reached (executions per outcome: {seen:?})");
        }
    }

    /// A model builder with preemption bound 2 unless `LOOM_MAX_PREEMPTIONS`
    /// says otherwise.
    pub fn builder() -> loom::model::Builder {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(2);
        }
        // The GC models wait in yielding loops (a weak upgrade waiting for
        // the flip, the collector waiting out barriers), and each atomic
        // access on such a path is a branch: loom's default of 1 000 is
        // reached by `weak_upgrade_races_the_cycle` once `shade` reads the
        // mark bit before its `fetch_or`. The interleavings explored stay
        // bounded by the preemption bound.
        if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
            b.max_branches = 20_000;
        }
        b
    }

    /// The contents of blocks, as loom sees them: one tracked cell per block
    /// address the model may hand out. The allocator writes its free-list
    /// links into raw memory that loom does not track, so a missing
    /// happens-before edge between the last user of a block and its next user
    /// is invisible to loom on the allocator's side. Models therefore "use"
    /// every block through these cells: [`UserData::touch`] after allocating
    /// it and before freeing it, as a program writes to its memory. A block
    /// handed out while its previous user's accesses do not happen-before the
    /// new user's (a weakened ordering, a block given to two users) is then
    /// reported by loom as a causality violation on the cell.
    ///
    /// The cells are keyed by address and created before the model threads
    /// start; looking them up involves no synchronisation.
    pub struct UserData {
        cells: Vec<(usize, UnsafeCell<u64>)>,
    }

    impl UserData {
        /// Cells for the first `per_span` slots of objects of each of `sizes`
        /// bytes in each of `pages` one-page spans from `base` on (spans of
        /// one page each), plus one cell per page start.
        pub fn new(base: usize, pages: usize, sizes: &[usize], per_span: usize) -> UserData {
            let mut addrs: Vec<usize> = Vec::new();
            for page in 0..pages {
                let start = base + page * PAGE_SIZE;
                addrs.push(start);
                for &size in sizes {
                    addrs.extend((0..per_span).map(|k| start + k * size));
                }
            }
            addrs.sort_unstable();
            addrs.dedup();
            UserData { cells: addrs.into_iter().map(|a| (a, UnsafeCell::new(0))).collect() }
        }

        /// A use of the block at `addr` by the calling thread: a tracked write.
        /// Panics when the model did not provide a cell for `addr`.
        pub fn touch(&self, addr: usize) {
            if !user_data_enabled() {
                return;
            }
            let i = self
                .cells
                .binary_search_by_key(&addr, |c| c.0)
                .unwrap_or_else(|_| panic!("no user-data cell for {addr:#x}: widen UserData::new"));
            // SAFETY: a plain write through loom's cell; loom checks that it
            // does not race with any other access to the same cell.
            self.cells[i].1.with_mut(|p| unsafe { *p += 1 });
        }
    }

    /// False when `GOMALLOC_LOOM_NO_USER_DATA` is set: the models then see only
    /// the allocator's own tracked cells (to show what loom misses without
    /// the user-data cells).
    fn user_data_enabled() -> bool {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| std::env::var_os("GOMALLOC_LOOM_NO_USER_DATA").is_none())
    }

    /// Allocates a block of `size` bytes from `cache`, checks it, and uses it.
    ///
    /// # Safety
    /// `cache` is the calling thread's cache of `a` (or a shared empty cache).
    pub unsafe fn alloc_use(a: &Allocator, cache: *mut MCache, size: usize, data: &UserData) -> Block {
        // SAFETY: forwarded caller contract.
        let p = unsafe { a.alloc(cache, size, 8) };
        assert!(!p.is_null(), "allocation failed");
        data.touch(p as usize);
        Block(p)
    }

    /// Uses the block `b` a last time and frees it through `cache`.
    ///
    /// # Safety
    /// `cache` as for `alloc_use`; `b` is a live block of `size` bytes of `a`
    /// that the caller gives up.
    pub unsafe fn use_free(a: &Allocator, cache: *mut MCache, b: Block, size: usize, data: &UserData) {
        data.touch(b.addr());
        // SAFETY: forwarded caller contract.
        unsafe { a.dealloc(cache, b.0, size, 8) };
    }

    /// Allocates the model's first block from `cache` and builds the
    /// user-data cells around the span it lands in (the lowest span the heap
    /// hands out): `pages` one-page spans from there, for objects of `sizes`.
    ///
    /// # Safety
    /// `cache` is the calling thread's cache of `a`.
    pub unsafe fn first_block(
        a: &Allocator,
        cache: *mut MCache,
        size: usize,
        pages: usize,
        sizes: &[usize],
    ) -> (UserData, Block) {
        // SAFETY: forwarded caller contract.
        let b = Block(unsafe { a.alloc(cache, size, 8) });
        assert!(!b.0.is_null(), "allocation failed");
        let data = UserData::new(span_base(a, b), pages, sizes, MAX_OBJECTS_PER_SPAN as usize);
        data.touch(b.addr());
        (data, b)
    }

    /// Frees `b` the way a thread whose cache was destroyed at exit does:
    /// through a dead shared cache, which publishes the free at once (and
    /// finishes the span's move when the free claims it).
    ///
    /// # Safety
    /// `b` is a live block of `size` bytes of `a` that the caller gives up.
    pub unsafe fn free_published(a: &Allocator, b: Block, size: usize, data: &UserData) {
        let mut dead = MCache::new(a.sentinel(), CacheKind::Dead);
        // SAFETY: a shared empty cache is never written; forwarded contract.
        unsafe { use_free(a, &mut dead, b, size, data) };
    }

    /// The span holding the live block `b`.
    pub fn span_of(a: &Allocator, b: Block) -> *mut Span {
        let s = a.heap().span_of(b.addr());
        assert!(!s.is_null(), "live block {:#x} has no span", b.addr());
        s
    }

    /// The first byte of the span holding the live block `b`.
    pub fn span_base(a: &Allocator, b: Block) -> usize {
        // SAFETY: the span holds a live block, so it is live.
        unsafe { (*span_of(a, b)).base }
    }

    /// The remote-free word of a span, read once every thread is done.
    ///
    /// # Safety
    /// `span` is live (still in the heap).
    pub unsafe fn remote_word(span: *mut Span) -> RemoteWord {
        // SAFETY: the caller's span is live.
        RemoteWord(unsafe { (*span).remote.load(gomalloc::sync::Ordering::Acquire) })
    }

    /// Asserts that no block in `blocks` occurs twice.
    pub fn assert_distinct(blocks: &[Block], what: &str) {
        let mut v: Vec<usize> = blocks.iter().map(|b| b.addr()).collect();
        v.sort_unstable();
        let n = v.len();
        v.dedup();
        assert_eq!(v.len(), n, "block handed out twice ({what})");
    }

    /// The end-of-model audit for one class of `size` bytes whose spans are
    /// one page of `MAX_OBJECTS_PER_SPAN` objects each, when no thread cache is alive and
    /// `live` are the only blocks of the class in use: a fresh cache takes
    /// every free slot of every span the class holds (central partial spans,
    /// completely free ones included) before the heap must cut a new span. It
    /// must get exactly `spans * MAX_OBJECTS_PER_SPAN - live` blocks, each distinct from
    /// the others and from `live` (none lost, none twice). Then every block
    /// is freed and all memory released: no page may stay in use.
    pub fn audit_class(a: &Allocator, size: usize, live: Vec<Block>, data: &UserData) {
        let spans = a.heap().counters().pages_in_use;
        let expected = spans * MAX_OBJECTS_PER_SPAN as usize - live.len();
        let c = a.new_cache();
        let mut got: Vec<Block> = Vec::new();
        loop {
            // SAFETY: `c` is this thread's cache.
            let b = unsafe { alloc_use(a, c, size, data) };
            if a.heap().counters().pages_in_use > spans {
                // A fresh span: every free slot of the old ones was taken.
                // SAFETY: `b` is ours, freed once.
                unsafe { use_free(a, c, b, size, data) };
                break;
            }
            got.push(b);
            assert!(got.len() <= expected, "more free blocks than slots: a block was handed out twice");
        }
        assert_eq!(got.len(), expected, "a freed block never came back (lost)");
        let mut all = got.clone();
        all.extend_from_slice(&live);
        assert_distinct(&all, "audit");
        for b in all {
            // SAFETY: every block is live and freed once, through this
            // thread's cache.
            unsafe { use_free(a, c, b, size, data) };
        }
        // SAFETY: `c` is not used again.
        unsafe { a.caches().destroy(a, c) };
        a.release_unused();
        let h = a.heap().counters();
        assert_eq!(h.pages_in_use, 0, "pages still in use after every block was freed");
        assert_eq!(h.dirty_free_pages, 0, "release_unused left dirty pages");
    }
}
