//! The traced implementations of the GC benches: gomalloc's GC arena, the
//! `gc` crate (thread-local, stop-the-world mark-sweep) and `dumpster`'s
//! `sync` variant (reference counting with cycle detection). Each runs the
//! same binary-trees and long-lived-graph workloads as `arc.rs`.
//!
//! Included by `benches/gc.rs` through `#[path]`.

use super::common::{checksum, corrupt, iterations, next_op, Op, Rng, FIRST_ID, MIN_DEPTH, WALK};

/// gomalloc's GC arena.
pub mod arena {
    use super::*;
    use gomalloc::gc::{Gc, GcCell, GcVec, Heap, Mutator, Root, Trace};

    /// Objects are `Send + Sync`, so handles inside them live in cells
    /// (`Gc` itself is neither); the edges are never changed after
    /// allocation, so no barrier runs.
    #[derive(Trace)]
    pub struct TreeNode<'gc> {
        l: GcCell<'gc, TreeNode<'gc>>,
        r: GcCell<'gc, TreeNode<'gc>>,
    }

    fn make<'gc>(m: &Mutator<'gc>, depth: u32) -> Gc<'gc, TreeNode<'gc>> {
        if depth == 0 {
            m.alloc(TreeNode { l: GcCell::new(None), r: GcCell::new(None) })
        } else {
            let l = make(m, depth - 1);
            let r = make(m, depth - 1);
            m.alloc(TreeNode { l: GcCell::new(Some(l)), r: GcCell::new(Some(r)) })
        }
    }

    fn check(t: &TreeNode<'_>) -> u64 {
        1 + t.l.get().map_or(0, |c| check(&c)) + t.r.get().map_or(0, |c| check(&c))
    }

    /// Binary-trees at `max_depth` in `heap`. A scope covers at least 2^12
    /// nodes' worth of small trees, so scope entry is not what is measured,
    /// and at most one tree, so cycles can end between trees.
    pub fn binary_trees(heap: &Heap, max_depth: u32) -> u64 {
        let mut sum = heap.enter(|m| check(&make(m, max_depth + 1)));
        let long_lived: Root<TreeNode<'static>> = heap.enter(|m| m.root(make(m, max_depth)));
        let mut d = MIN_DEPTH;
        while d <= max_depth {
            let per_scope = 1u64 << 12u32.saturating_sub(d);
            let mut left = iterations(d, max_depth);
            while left > 0 {
                let k = left.min(per_scope);
                sum += heap.enter(|m| (0..k).map(|_| check(&make(m, d))).sum::<u64>());
                left -= k;
            }
            d += 2;
        }
        sum + heap.enter(|m| check(&long_lived.get(m)))
    }

    #[derive(Trace)]
    pub struct Node<'gc> {
        id: u64,
        check: u64,
        edges: [GcCell<'gc, Node<'gc>>; 2],
    }

    /// Table slots live in chunks, each its own `GcVec`, so that mutators
    /// touching different chunks do not share a lock (the collector traces
    /// a vector in passes of 1024 elements, each under the vector's lock).
    #[derive(Trace)]
    pub struct Chunk<'gc> {
        slots: GcVec<'gc, Node<'gc>>,
    }

    #[derive(Trace)]
    pub struct Table<'gc> {
        chunks: Vec<GcCell<'gc, Chunk<'gc>>>,
    }

    pub const CHUNK: usize = 1024;

    /// The long-lived graph in a GC heap.
    pub struct Graph {
        pub heap: Heap,
        table: Root<Table<'static>>,
        n: usize,
        next_id: u64,
        pub rng: Rng,
    }

    #[inline]
    fn chunk<'gc>(t: &Table<'gc>, c: usize) -> Gc<'gc, Chunk<'gc>> {
        t.chunks[c].get().expect("graph chunks are never empty")
    }

    #[inline]
    fn slot<'gc>(t: &Table<'gc>, i: usize) -> Gc<'gc, Node<'gc>> {
        chunk(t, i / CHUNK).slots.get(i % CHUNK).expect("graph slots are never empty")
    }

    /// Ops per `enter` scope: short scopes let cycles end (rule 4 in
    /// `gomalloc::gc`).
    pub const OPS_PER_SCOPE: usize = 256;

    impl Graph {
        pub fn build(heap: Heap, n: usize, seed: u64) -> Graph {
            let mut rng = Rng(seed);
            let nchunks = n.div_ceil(CHUNK);
            let table: Root<Table<'static>> = heap.enter(|m| {
                let chunks = (0..nchunks).map(|_| GcCell::new(Some(m.alloc(Chunk { slots: GcVec::new() })))).collect();
                m.root(m.alloc(Table { chunks }))
            });
            let mut i = 0;
            while i < n {
                heap.enter(|m| {
                    let t = table.get(m);
                    let end = (i + 4096).min(n);
                    while i < end {
                        let id = FIRST_ID + i as u64;
                        let a = if i == 0 { None } else { Some(slot(&t, rng.below(i))) };
                        let b = if i == 0 { None } else { Some(slot(&t, rng.below(i))) };
                        let node = m.alloc(Node { id, check: checksum(id), edges: [GcCell::new(a), GcCell::new(b)] });
                        chunk(&t, i / CHUNK).slots.push(m, Some(node));
                        i += 1;
                    }
                });
            }
            Graph { heap, table, n, next_id: FIRST_ID + n as u64, rng }
        }

        /// One operation inside scope `m`; returns what a read saw.
        #[inline]
        pub fn op<'gc>(&mut self, m: &Mutator<'gc>, t: &Table<'gc>) -> u64 {
            match next_op(&mut self.rng, self.n) {
                Op::Replace { slot: s, a, b } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let edges = [GcCell::new(Some(slot(t, a))), GcCell::new(Some(slot(t, b)))];
                    let node = m.alloc(Node { id, check: checksum(id), edges });
                    chunk(t, s / CHUNK).slots.set(m, s % CHUNK, Some(node));
                    0
                }
                Op::Rewire { a, b, side } => {
                    let (x, y) = (slot(t, a), slot(t, b));
                    if x.id != y.id {
                        let (newer, older) = if x.id > y.id { (x, y) } else { (y, x) };
                        newer.edges[side].set(m, Some(older));
                    }
                    0
                }
                Op::Read { slot: s, mut path } => {
                    let mut sum = 0u64;
                    let mut cur = slot(t, s);
                    for _ in 0..WALK {
                        if cur.check != checksum(cur.id) {
                            corrupt("gomalloc GC graph", cur.id, cur.check);
                        }
                        sum = sum.wrapping_add(cur.id);
                        match cur.edges[(path & 1) as usize].get() {
                            Some(next) => cur = next,
                            None => break,
                        }
                        path >>= 1;
                    }
                    sum
                }
            }
        }

        /// Runs `ops` operations in scopes of `OPS_PER_SCOPE`.
        pub fn run(&mut self, ops: usize) -> u64 {
            let mut sum = 0u64;
            let mut left = ops;
            let heap = self.heap.clone();
            while left > 0 {
                let k = left.min(OPS_PER_SCOPE);
                sum = sum.wrapping_add(heap.enter(|m| {
                    let t = self.table.get(m);
                    (0..k).fold(0u64, |s, _| s.wrapping_add(self.op(m, &t)))
                }));
                left -= k;
            }
            sum
        }

        /// Runs `units` units of `per_unit` operations, a scope of
        /// `OPS_PER_SCOPE` at a time, calling `f(unit_index)` before each
        /// unit and once more at the end (with `units`), from inside the
        /// scope, so `f` can timestamp every unit, scope entries included.
        pub fn run_timed(&mut self, units: usize, per_unit: usize, mut f: impl FnMut(usize)) -> u64 {
            let per_scope = (OPS_PER_SCOPE / per_unit).max(1);
            let heap = self.heap.clone();
            let mut sum = 0u64;
            let mut u = 0;
            f(0);
            while u < units {
                let k = (units - u).min(per_scope);
                sum = sum.wrapping_add(heap.enter(|m| {
                    let t = self.table.get(m);
                    let mut s = 0u64;
                    for j in 0..k {
                        for _ in 0..per_unit {
                            s = s.wrapping_add(self.op(m, &t));
                        }
                        if j + 1 < k {
                            f(u + j + 1);
                        }
                    }
                    s
                }));
                u += k;
                // The last unit of a scope ends after `leave`, so the next
                // unit's gap covers the next `enter` and its waits.
                f(u);
            }
            sum
        }
    }
}

/// The `gc` crate (thread-local heap, stop-the-world collection).
// `gc_derive` emits its impls inside a `const _` block.
#[allow(non_local_definitions)]
pub mod gc_crate {
    use super::*;
    use gc::{Finalize, Gc, GcCell, Trace};

    #[derive(Trace, Finalize)]
    pub struct TreeNode {
        l: Option<Gc<TreeNode>>,
        r: Option<Gc<TreeNode>>,
    }

    fn make(depth: u32) -> Gc<TreeNode> {
        if depth == 0 {
            Gc::new(TreeNode { l: None, r: None })
        } else {
            Gc::new(TreeNode { l: Some(make(depth - 1)), r: Some(make(depth - 1)) })
        }
    }

    fn check(t: &TreeNode) -> u64 {
        1 + t.l.as_deref().map_or(0, check) + t.r.as_deref().map_or(0, check)
    }

    pub fn binary_trees(max_depth: u32) -> u64 {
        let mut sum = check(&make(max_depth + 1));
        let long_lived = make(max_depth);
        let mut d = MIN_DEPTH;
        while d <= max_depth {
            for _ in 0..iterations(d, max_depth) {
                sum += check(&make(d));
            }
            d += 2;
        }
        sum + check(&long_lived)
    }

    #[derive(Trace, Finalize)]
    pub struct Node {
        #[unsafe_ignore_trace]
        id: u64,
        #[unsafe_ignore_trace]
        check: u64,
        edges: [GcCell<Option<Gc<Node>>>; 2],
    }

    pub struct Graph {
        table: Vec<Gc<Node>>,
        next_id: u64,
        rng: Rng,
    }

    impl Graph {
        pub fn build(n: usize, seed: u64) -> Graph {
            let mut rng = Rng(seed);
            let mut table: Vec<Gc<Node>> = Vec::with_capacity(n);
            for i in 0..n {
                let id = FIRST_ID + i as u64;
                let a = if i == 0 { None } else { Some(table[rng.below(i)].clone()) };
                let b = if i == 0 { None } else { Some(table[rng.below(i)].clone()) };
                table.push(Gc::new(Node { id, check: checksum(id), edges: [GcCell::new(a), GcCell::new(b)] }));
            }
            Graph { table, next_id: FIRST_ID + n as u64, rng }
        }

        pub fn run(&mut self, ops: usize) -> u64 {
            let n = self.table.len();
            let mut sum = 0u64;
            for _ in 0..ops {
                match next_op(&mut self.rng, n) {
                    Op::Replace { slot, a, b } => {
                        let id = self.next_id;
                        self.next_id += 1;
                        let edges =
                            [GcCell::new(Some(self.table[a].clone())), GcCell::new(Some(self.table[b].clone()))];
                        self.table[slot] = Gc::new(Node { id, check: checksum(id), edges });
                    }
                    Op::Rewire { a, b, side } => {
                        let (x, y) = (&self.table[a], &self.table[b]);
                        if x.id != y.id {
                            let (newer, older) = if x.id > y.id { (x, y) } else { (y, x) };
                            *newer.edges[side].borrow_mut() = Some(older.clone());
                        }
                    }
                    Op::Read { slot, mut path } => {
                        let mut cur = self.table[slot].clone();
                        for _ in 0..WALK {
                            if cur.check != checksum(cur.id) {
                                corrupt("gc crate graph", cur.id, cur.check);
                            }
                            sum = sum.wrapping_add(cur.id);
                            let next = cur.edges[(path & 1) as usize].borrow().clone();
                            match next {
                                Some(next) => cur = next,
                                None => break,
                            }
                            path >>= 1;
                        }
                    }
                }
            }
            sum
        }
    }
}

/// `dumpster::sync` (concurrent reference counting with cycle detection).
pub mod dumpster_sync {
    use super::*;
    use dumpster::sync::Gc;
    use dumpster::Trace;
    use std::sync::Mutex;

    #[derive(Trace)]
    pub struct TreeNode {
        l: Option<Gc<TreeNode>>,
        r: Option<Gc<TreeNode>>,
    }

    fn make(depth: u32) -> Gc<TreeNode> {
        if depth == 0 {
            Gc::new(TreeNode { l: None, r: None })
        } else {
            Gc::new(TreeNode { l: Some(make(depth - 1)), r: Some(make(depth - 1)) })
        }
    }

    fn check(t: &TreeNode) -> u64 {
        1 + t.l.as_deref().map_or(0, check) + t.r.as_deref().map_or(0, check)
    }

    pub fn binary_trees(max_depth: u32) -> u64 {
        let mut sum = check(&make(max_depth + 1));
        let long_lived = make(max_depth);
        let mut d = MIN_DEPTH;
        while d <= max_depth {
            for _ in 0..iterations(d, max_depth) {
                sum += check(&make(d));
            }
            d += 2;
        }
        sum + check(&long_lived)
    }

    #[derive(Trace)]
    pub struct Node {
        id: u64,
        check: u64,
        edges: [Mutex<Option<Gc<Node>>>; 2],
    }

    pub struct Graph {
        table: Vec<Gc<Node>>,
        next_id: u64,
        rng: Rng,
    }

    impl Graph {
        pub fn build(n: usize, seed: u64) -> Graph {
            let mut rng = Rng(seed);
            let mut table: Vec<Gc<Node>> = Vec::with_capacity(n);
            for i in 0..n {
                let id = FIRST_ID + i as u64;
                let a = if i == 0 { None } else { Some(table[rng.below(i)].clone()) };
                let b = if i == 0 { None } else { Some(table[rng.below(i)].clone()) };
                table.push(Gc::new(Node { id, check: checksum(id), edges: [Mutex::new(a), Mutex::new(b)] }));
            }
            Graph { table, next_id: FIRST_ID + n as u64, rng }
        }

        pub fn run(&mut self, ops: usize) -> u64 {
            let n = self.table.len();
            let mut sum = 0u64;
            for _ in 0..ops {
                match next_op(&mut self.rng, n) {
                    Op::Replace { slot, a, b } => {
                        let id = self.next_id;
                        self.next_id += 1;
                        let edges = [Mutex::new(Some(self.table[a].clone())), Mutex::new(Some(self.table[b].clone()))];
                        self.table[slot] = Gc::new(Node { id, check: checksum(id), edges });
                    }
                    Op::Rewire { a, b, side } => {
                        let (x, y) = (&self.table[a], &self.table[b]);
                        if x.id != y.id {
                            let (newer, older) = if x.id > y.id { (x, y) } else { (y, x) };
                            *newer.edges[side].lock().unwrap() = Some(older.clone());
                        }
                    }
                    Op::Read { slot, mut path } => {
                        let mut cur = self.table[slot].clone();
                        for _ in 0..WALK {
                            if cur.check != checksum(cur.id) {
                                corrupt("dumpster graph", cur.id, cur.check);
                            }
                            sum = sum.wrapping_add(cur.id);
                            let next = cur.edges[(path & 1) as usize].lock().unwrap().clone();
                            match next {
                                Some(next) => cur = next,
                                None => break,
                            }
                            path >>= 1;
                        }
                    }
                }
            }
            sum
        }
    }
}
