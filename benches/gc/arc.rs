//! The `Arc` baselines of the GC benches: binary-trees and the long-lived
//! graph with reference counting, so the same code measures `Arc` on
//! whichever global allocator the including bench binary installs
//! (`benches/gc.rs`: gomalloc; `benches/gc_system.rs`: the system
//! allocator).
//!
//! Graph edges are `Mutex<Option<Arc<_>>>`: `Arc` has no barriered cell, and
//! an uncontended lock is the usual way to make a shared edge mutable.

use super::common::{checksum, corrupt, next_op, Op, Rng, FIRST_ID, MIN_DEPTH, WALK};
use std::sync::{Arc, Mutex};

pub struct TreeNode {
    l: Option<Arc<TreeNode>>,
    r: Option<Arc<TreeNode>>,
}

fn make(depth: u32) -> Arc<TreeNode> {
    if depth == 0 {
        Arc::new(TreeNode { l: None, r: None })
    } else {
        Arc::new(TreeNode { l: Some(make(depth - 1)), r: Some(make(depth - 1)) })
    }
}

fn check(t: &TreeNode) -> u64 {
    1 + t.l.as_deref().map_or(0, check) + t.r.as_deref().map_or(0, check)
}

/// Binary-trees at `max_depth`; returns the sum of every check.
pub fn binary_trees(max_depth: u32) -> u64 {
    let mut sum = check(&make(max_depth + 1));
    let long_lived = make(max_depth);
    let mut d = MIN_DEPTH;
    while d <= max_depth {
        for _ in 0..super::common::iterations(d, max_depth) {
            sum += check(&make(d));
        }
        d += 2;
    }
    sum + check(&long_lived)
}

pub struct Node {
    id: u64,
    check: u64,
    edges: [Mutex<Option<Arc<Node>>>; 2],
}

impl Node {
    fn edge(&self, side: usize) -> Option<Arc<Node>> {
        self.edges[side].lock().unwrap().clone()
    }
}

/// The long-lived graph: a table of `n` slots.
pub struct Graph {
    table: Vec<Arc<Node>>,
    next_id: u64,
    rng: Rng,
}

impl Graph {
    pub fn build(n: usize, seed: u64) -> Graph {
        let mut rng = Rng(seed);
        let mut table: Vec<Arc<Node>> = Vec::with_capacity(n);
        for i in 0..n {
            let id = FIRST_ID + i as u64;
            let pick = |rng: &mut Rng, table: &Vec<Arc<Node>>| {
                if i == 0 {
                    None
                } else {
                    Some(table[rng.below(i)].clone())
                }
            };
            let a = pick(&mut rng, &table);
            let b = pick(&mut rng, &table);
            table.push(Arc::new(Node { id, check: checksum(id), edges: [Mutex::new(a), Mutex::new(b)] }));
        }
        Graph { table, next_id: FIRST_ID + n as u64, rng }
    }

    /// Runs `ops` operations; returns a checksum of what the reads saw.
    pub fn run(&mut self, ops: usize) -> u64 {
        let n = self.table.len();
        let mut sum = 0u64;
        for _ in 0..ops {
            match next_op(&mut self.rng, n) {
                Op::Replace { slot, a, b } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let edges = [Mutex::new(Some(self.table[a].clone())), Mutex::new(Some(self.table[b].clone()))];
                    self.table[slot] = Arc::new(Node { id, check: checksum(id), edges });
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
                            corrupt("Arc graph", cur.id, cur.check);
                        }
                        sum = sum.wrapping_add(cur.id);
                        match cur.edge((path & 1) as usize) {
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
