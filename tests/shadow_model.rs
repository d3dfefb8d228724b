//! Shadow-model oracle for `GoMalloc`, driven directly through `GlobalAlloc`.
//!
//! Every live block's range `[ptr, ptr + size)` is tracked in a `BTreeMap` (which, like
//! everything else in this binary, lives on the system allocator: `GoMalloc` is not the
//! global allocator here, so only the oracle's calls reach gomalloc). On every issue the
//! block must be non-null, aligned, disjoint from both neighbours (also by
//! `usable_size`), and have `usable_size >= size`. Every block carries a fill byte that is
//! verified in full before free and over the preserved prefix after `realloc`;
//! `alloc_zeroed` must return zeros; `realloc` must keep the pointer when the size class
//! does not change. At checkpoints (after `collect()`, which publishes batched frees)
//! the per-class object counts and large-object count in `stats()` must match the model
//! exactly; `stats_exact_after_free_into_unowned_span` checks exactness without it.
//!
//! Tests run one at a time (a process-wide lock), each on a fresh thread that is joined
//! (so its thread cache has been flushed), and each must leave `bytes_in_use`, the
//! per-class counts, `large_objects` and `thread_caches` exactly as it found them.
//!
//! Failures print the seed; rerun one test with `GOMALLOC_SEED=<seed> cargo test
//! --test shadow_model <name>`.
//!
//! The model encodes the default build's layout (a request's class is the smallest that
//! fits it, `usable_size` is the class size), so it is not built with the `secure`
//! feature, which pads every small request by a word and reports the requested size.
#![cfg(not(feature = "secure"))]

mod common;

use common::{first_byte_not, random_align, random_size, round_up, seeded};
use gomalloc::sizeclass::{CLASS_SIZE, MAX_SMALL_SIZE, NUM_CLASSES, PAGE_SIZE};
use gomalloc::{collect, stats, usable_size, GoMalloc, Stats};
use rand::rngs::SmallRng;
use rand::Rng;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// Serialises the tests of this file so that `stats()` is exact (quiescent heap).
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Runs `f` alone on a fresh thread, joins it, and checks that the heap's accounting
/// is back where it was.
fn exclusive<F: FnOnce() + Send + 'static>(name: &str, f: F) {
    let _guard = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let before = stats();
    let worker = std::thread::Builder::new().name(name.to_string()).spawn(f).expect("spawn");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
    let after = stats();
    assert_eq!(
        after.bytes_in_use, before.bytes_in_use,
        "{name}: bytes_in_use did not return to its starting value after freeing everything\n\
         before:\n{before}\nafter:\n{after}"
    );
    for (c, (a, b)) in after.classes.iter().zip(&before.classes).enumerate().skip(1) {
        assert_eq!(
            a.objects_in_use, b.objects_in_use,
            "{name}: class {c} ({} B) objects_in_use changed though every block was freed",
            a.object_size
        );
    }
    assert_eq!(after.large_objects, before.large_objects, "{name}: large_objects changed");
    assert_eq!(
        after.thread_caches, before.thread_caches,
        "{name}: thread_caches changed after the worker thread was joined (cache not released?)"
    );
}

/// Whether a request is served from a size class (by design: size <= 32 KiB and
/// alignment at most a page) rather than a page run.
fn is_small(size: usize, align: usize) -> bool {
    size <= MAX_SMALL_SIZE && align <= PAGE_SIZE
}

/// The class the design assigns: the smallest class whose size is at least `size`
/// and a multiple of `align`.
fn expected_class(size: usize, align: usize) -> usize {
    debug_assert!(is_small(size, align));
    (1..NUM_CLASSES)
        .find(|&c| CLASS_SIZE[c] as usize >= size && CLASS_SIZE[c] as usize % align == 0)
        .expect("a class exists for every small request")
}

/// One live block in the model: (requested size, layout, fill byte).
type Entry = (usize, Layout, u8);

/// Knobs of one random run.
#[derive(Clone, Copy)]
struct Profile {
    ops: u64,
    /// Upper bound on live blocks (phase targets are drawn in `0..=max_live`).
    max_live: usize,
    /// Upper bound on live requested bytes.
    max_bytes: usize,
    realloc_percent: u32,
    zeroed_percent: u32,
    large_per_mille: u32,
    max_large: usize,
    big_align_percent: u32,
    max_align: usize,
    /// Ops per phase (the live-count target changes every phase).
    phase_len: u64,
    /// Probability (per mille) of calling `collect()` at a phase boundary.
    collect_per_mille: u32,
    /// Full model-vs-stats and content check every this many ops.
    checkpoint_every: u64,
}

const DEFAULT: Profile = Profile {
    ops: 700_000,
    max_live: 20_000,
    max_bytes: 256 << 20,
    realloc_percent: 15,
    zeroed_percent: 20,
    large_per_mille: 2,
    max_large: 4 << 20,
    big_align_percent: 5,
    max_align: 64 << 10,
    phase_len: 25_000,
    collect_per_mille: 100,
    checkpoint_every: 100_000,
};

struct Oracle {
    name: &'static str,
    seed: u64,
    op: u64,
    live: BTreeMap<usize, Entry>,
    /// Addresses of live blocks, for uniform random choice.
    keys: Vec<usize>,
    live_bytes: usize,
    next_fill: u8,
    base: Stats,
}

impl Oracle {
    fn new(name: &'static str, seed: u64) -> Self {
        Oracle {
            name,
            seed,
            op: 0,
            live: BTreeMap::new(),
            keys: Vec::new(),
            live_bytes: 0,
            next_fill: 0,
            base: stats(),
        }
    }

    fn fill_byte(&mut self) -> u8 {
        // Never 0, so that zeroed memory is told apart from a filled block.
        self.next_fill = self.next_fill.wrapping_add(97);
        if self.next_fill == 0 {
            self.next_fill = 1;
        }
        self.next_fill
    }

    fn ctx(&self) -> String {
        format!("[{} seed {:#x} op {} live {}]", self.name, self.seed, self.op, self.live.len())
    }

    /// Checks a freshly issued block against the model (which must not hold it).
    fn check_issue(&self, ptr: *mut u8, layout: Layout, what: &str) {
        let p = ptr as usize;
        let size = layout.size();
        assert!(!ptr.is_null(), "{} {what}({layout:?}) returned null", self.ctx());
        assert_eq!(p % layout.align(), 0, "{} {what}({layout:?}) = {p:#x} misaligned", self.ctx());
        let usable = usable_size(ptr);
        assert!(
            matches!(usable, Some(n) if n >= size),
            "{} {what}({layout:?}) = {p:#x}: usable_size = {usable:?}, want >= {size}",
            self.ctx()
        );
        let end = p + usable.unwrap_or(size).max(size);
        if let Some((&q, &(qsize, qlayout, _))) = self.live.range(..=p).next_back() {
            let qend = q + usable_size(q as *const u8).unwrap_or(qsize).max(qsize);
            assert!(
                qend <= p,
                "{} {what}({layout:?}) = {p:#x}..{end:#x} overlaps live block {q:#x}..{qend:#x} \
                 ({qlayout:?})",
                self.ctx()
            );
        }
        if let Some((&q, &(_, qlayout, _))) = self.live.range(p..).next() {
            assert!(
                end <= q,
                "{} {what}({layout:?}) = {p:#x}..{end:#x} overlaps live block at {q:#x} \
                 ({qlayout:?})",
                self.ctx()
            );
        }
    }

    fn insert(&mut self, ptr: *mut u8, layout: Layout, fill: u8) {
        let size = layout.size();
        // SAFETY: `ptr` is a live block of `size` bytes just issued to us.
        unsafe { ptr.write_bytes(fill, size) };
        self.live.insert(ptr as usize, (size, layout, fill));
        self.keys.push(ptr as usize);
        self.live_bytes += size;
    }

    fn verify(&self, p: usize, len: usize, fill: u8, what: &str) {
        // SAFETY: `p` is a live block of at least `len` bytes in the model.
        if let Some(off) = unsafe { first_byte_not(p as *const u8, len, fill) } {
            // SAFETY: off < len, inside the block.
            let got = unsafe { (p as *const u8).add(off).read() };
            panic!(
                "{} {what}: block {p:#x} (len {len}) corrupted at offset {off}: \
                 expected {fill:#04x}, found {got:#04x}",
                self.ctx()
            );
        }
    }

    fn alloc(&mut self, layout: Layout, zeroed: bool) -> usize {
        let ptr = if zeroed {
            // SAFETY: layout has non-zero size.
            unsafe { GoMalloc.alloc_zeroed(layout) }
        } else {
            // SAFETY: layout has non-zero size.
            unsafe { GoMalloc.alloc(layout) }
        };
        let what = if zeroed { "alloc_zeroed" } else { "alloc" };
        self.check_issue(ptr, layout, what);
        if zeroed {
            self.verify(ptr as usize, layout.size(), 0, "alloc_zeroed content");
        }
        let fill = self.fill_byte();
        self.insert(ptr, layout, fill);
        ptr as usize
    }

    fn free_at(&mut self, index: usize) {
        let p = self.keys.swap_remove(index);
        let (size, layout, fill) = self.live.remove(&p).expect("key is live");
        self.live_bytes -= size;
        self.verify(p, size, fill, "before dealloc");
        let usable = usable_size(p as *const u8);
        assert!(
            matches!(usable, Some(n) if n >= size),
            "{} live block {p:#x} ({layout:?}) has usable_size {usable:?} before dealloc",
            self.ctx()
        );
        // SAFETY: `p` was issued by GoMalloc with `layout` and is freed once.
        unsafe { GoMalloc.dealloc(p as *mut u8, layout) };
    }

    fn realloc_at(&mut self, index: usize, new_size: usize) {
        let p = self.keys[index];
        let (size, layout, fill) = self.live.remove(&p).expect("key is live");
        self.live_bytes -= size;
        self.verify(p, size, fill, "before realloc");
        let new_layout = Layout::from_size_align(new_size, layout.align()).expect("layout");
        // SAFETY: `p` is live with `layout`; new_size is non-zero and fits the alignment.
        let q = unsafe { GoMalloc.realloc(p as *mut u8, layout, new_size) };
        let what = format!("realloc({p:#x}, {layout:?} -> {new_size})");
        self.check_issue(q, new_layout, &what);
        self.verify(q as usize, size.min(new_size), fill, &format!("prefix after {what}"));
        let align = layout.align();
        if is_small(size, align)
            && is_small(new_size, align)
            && expected_class(size, align) == expected_class(new_size, align)
        {
            assert_eq!(
                q as usize,
                p,
                "{} {what} moved the block although the size class ({} B) did not change",
                self.ctx(),
                CLASS_SIZE[expected_class(size, align)]
            );
        }
        let new_fill = self.fill_byte();
        // SAFETY: `q` is live with `new_size` bytes.
        unsafe { q.write_bytes(new_fill, new_size) };
        self.keys[index] = q as usize;
        self.live.insert(q as usize, (new_size, new_layout, new_fill));
        self.live_bytes += new_size;
    }

    /// `usable_size` must reject interior pointers of live blocks.
    fn probe_interior(&self, rng: &mut SmallRng) {
        let p = self.keys[rng.gen_range(0..self.keys.len())];
        let (size, layout, _) = self.live[&p];
        if size < 2 {
            return;
        }
        let off = rng.gen_range(1..size);
        let got = usable_size((p + off) as *const u8);
        assert_eq!(
            got,
            None,
            "{} usable_size of interior pointer {:#x} (block {p:#x}, {layout:?}, offset {off}) \
             should be None",
            self.ctx(),
            p + off
        );
    }

    /// Compares `stats()` with the model and verifies every live block's contents.
    ///
    /// Calls `collect()` first: a free into a span this thread's cache does not own is
    /// batched and counted as in use until the thread publishes it (refill, flush or
    /// collect). That gap is checked on its own by
    /// `stats_exact_after_free_into_unowned_span`; here it must not hide the rest.
    fn checkpoint(&self) {
        collect();
        let now = stats();
        let mut per_class = [0usize; NUM_CLASSES];
        let (mut large, mut min_bytes) = (0usize, 0usize);
        for (&p, &(size, layout, fill)) in &self.live {
            if is_small(size, layout.align()) {
                let c = expected_class(size, layout.align());
                per_class[c] += 1;
                min_bytes += CLASS_SIZE[c] as usize;
            } else {
                large += 1;
                min_bytes += round_up(size, PAGE_SIZE);
            }
            self.verify(p, size, fill, "checkpoint");
        }
        for c in 1..NUM_CLASSES {
            assert_eq!(
                now.classes[c].object_size,
                CLASS_SIZE[c] as usize,
                "{} stats().classes[{c}].object_size",
                self.ctx()
            );
            let delta = now.classes[c].objects_in_use as isize - self.base.classes[c].objects_in_use as isize;
            assert_eq!(
                delta,
                per_class[c] as isize,
                "{} stats(): class {c} ({} B) objects_in_use grew by {delta}, the model has {} \
                 live objects of that class\n{now}",
                self.ctx(),
                CLASS_SIZE[c],
                per_class[c]
            );
        }
        let large_delta = now.large_objects as isize - self.base.large_objects as isize;
        assert_eq!(
            large_delta,
            large as isize,
            "{} stats().large_objects grew by {large_delta}, the model has {large} large blocks",
            self.ctx()
        );
        let bytes_delta = now.bytes_in_use as isize - self.base.bytes_in_use as isize;
        assert!(
            bytes_delta >= min_bytes as isize,
            "{} stats().bytes_in_use grew by {bytes_delta}, less than the {min_bytes} bytes the \
             model's live blocks occupy at least\n{now}",
            self.ctx()
        );
        assert!(
            now.bytes_in_spans >= now.bytes_in_use,
            "{} bytes_in_spans {} < bytes_in_use {}",
            self.ctx(),
            now.bytes_in_spans,
            now.bytes_in_use
        );
        assert!(
            now.bytes_mapped >= now.bytes_in_spans + now.bytes_free_retained + now.bytes_released,
            "{} bytes_mapped is less than spans + free retained + released\n{now}",
            self.ctx()
        );
    }

    fn free_all(&mut self) {
        while !self.keys.is_empty() {
            let last = self.keys.len() - 1;
            self.free_at(last);
        }
        assert_eq!(self.live_bytes, 0);
    }
}

/// Random alloc / alloc_zeroed / realloc / dealloc in phases whose live-count target
/// moves between 0 and `max_live`, so spans fill, drain, return to the heap and get
/// reused (also after `collect()` released them).
fn run_random(name: &'static str, default_seed: u64, prof: Profile) {
    exclusive(name, move || {
        let (mut rng, _guard) = seeded(name, default_seed);
        let mut o = Oracle::new(name, common::seed(default_seed));
        let mut target = 0usize;
        while o.op < prof.ops {
            o.op += 1;
            if o.op % prof.phase_len == 1 {
                target = rng.gen_range(0..=prof.max_live);
                if rng.gen_range(0..1000) < prof.collect_per_mille {
                    collect();
                }
            }
            if o.op % prof.checkpoint_every == 0 {
                o.checkpoint();
            }
            if !o.keys.is_empty() && rng.gen_range(0..64) == 0 {
                o.probe_interior(&mut rng);
            }
            let r = rng.gen_range(0..100u32);
            let over = o.keys.len() >= prof.max_live || o.live_bytes >= prof.max_bytes;
            if !o.keys.is_empty() && r < prof.realloc_percent && !over {
                let i = rng.gen_range(0..o.keys.len());
                let old = o.live[&o.keys[i]].0;
                let new_size = match rng.gen_range(0..4) {
                    // Often within the same class or a neighbouring one.
                    0 => (old as isize + rng.gen_range(-64..=64)).max(1) as usize,
                    1 => (old / 2).max(1),
                    2 => old * 2,
                    _ => random_size(&mut rng, prof.large_per_mille * 2, prof.max_large),
                };
                let new_size = new_size.min(prof.max_large);
                o.realloc_at(i, new_size);
                continue;
            }
            let want_alloc = if o.keys.is_empty() {
                true
            } else if over {
                false
            } else if o.keys.len() < target {
                rng.gen_ratio(3, 4)
            } else {
                rng.gen_ratio(1, 4)
            };
            if want_alloc {
                let size = random_size(&mut rng, prof.large_per_mille, prof.max_large);
                let align = random_align(&mut rng, prof.big_align_percent, prof.max_align);
                let layout = Layout::from_size_align(size, align).expect("layout");
                let zeroed = rng.gen_range(0..100) < prof.zeroed_percent;
                o.alloc(layout, zeroed);
            } else {
                let i = rng.gen_range(0..o.keys.len());
                o.free_at(i);
            }
        }
        o.checkpoint();
        o.free_all();
        o.checkpoint();
    });
}

#[test]
fn random_mixed() {
    run_random("random_mixed", 0x5EED_0001, DEFAULT);
}

#[test]
fn random_small_heavy() {
    run_random(
        "random_small_heavy",
        0x5EED_0002,
        Profile { ops: 800_000, large_per_mille: 0, big_align_percent: 1, max_align: 256, ..DEFAULT },
    );
}

#[test]
fn random_realloc_heavy() {
    run_random(
        "random_realloc_heavy",
        0x5EED_0003,
        Profile { ops: 600_000, realloc_percent: 45, zeroed_percent: 10, ..DEFAULT },
    );
}

#[test]
fn random_large_and_aligned() {
    run_random(
        "random_large_and_aligned",
        0x5EED_0004,
        Profile {
            ops: 250_000,
            max_live: 4_000,
            large_per_mille: 20,
            big_align_percent: 30,
            phase_len: 10_000,
            ..DEFAULT
        },
    );
}

#[test]
fn random_churn_with_collect() {
    run_random(
        "random_churn_with_collect",
        0x5EED_0005,
        Profile {
            ops: 650_000,
            max_live: 3_000,
            zeroed_percent: 40,
            phase_len: 5_000,
            collect_per_mille: 300,
            checkpoint_every: 50_000,
            ..DEFAULT
        },
    );
}

/// For every class: fill several spans, free every other block, reallocate as many,
/// and check that no new block overlaps a survivor and that survivors are intact.
#[test]
fn same_class_reuse_never_overlaps() {
    exclusive("same_class_reuse_never_overlaps", || {
        let mut o = Oracle::new("same_class_reuse_never_overlaps", 0);
        for (c, &size) in CLASS_SIZE.iter().enumerate().skip(1) {
            let size = size as usize;
            // Enough objects for at least three 64 KiB worth of spans, at least 64.
            let n = (3 * (64 << 10) / size).max(64);
            let layout = Layout::from_size_align(size, 8).expect("layout");
            for round in 0..3 {
                o.op = (c * 10 + round) as u64;
                while o.keys.len() < n {
                    o.alloc(layout, round == 1);
                }
                // Free every other block (by address order, so holes are interleaved).
                let doomed: HashSet<usize> = o.live.keys().copied().step_by(2).collect();
                let mut i = 0;
                while i < o.keys.len() {
                    if doomed.contains(&o.keys[i]) {
                        o.free_at(i); // swap_remove: look at index i again
                    } else {
                        i += 1;
                    }
                }
                o.checkpoint();
            }
            o.free_all();
            o.checkpoint();
        }
    });
}

/// Every size 1..=32768 round-trips with several alignments and gets exactly the
/// size class the design gives it; large sizes in steps up to 4 MiB too.
///
/// Size 0 is not tried: `GlobalAlloc::alloc` requires a non-zero size.
#[test]
fn every_size_round_trips() {
    exclusive("every_size_round_trips", || {
        let mut o = Oracle::new("every_size_round_trips", 0);
        for size in 1..=MAX_SMALL_SIZE {
            o.op = size as u64;
            let align = [1, 2, 4, 8, 16, 64, 4096][size % 7];
            let layout = Layout::from_size_align(size, align).expect("layout");
            let p = o.alloc(layout, size % 3 == 0);
            let class = expected_class(size, align);
            assert_eq!(
                usable_size(p as *const u8),
                Some(CLASS_SIZE[class] as usize),
                "usable_size of a {size}-byte block (align {align}) should be its class size"
            );
            // Keep a few live so consecutive sizes of a class share a span.
            if o.keys.len() > 8 {
                o.free_at(0);
            }
        }
        o.free_all();
        let mut size = MAX_SMALL_SIZE + 1;
        while size <= 4 << 20 {
            o.op = size as u64;
            for align in [8, PAGE_SIZE, 16 << 10, 64 << 10] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                o.alloc(layout, align == PAGE_SIZE);
            }
            o.free_all();
            size = size * 5 / 4 + 1;
        }
        // Small sizes with alignments above a page go to page runs.
        for align in [16 << 10, 32 << 10, 64 << 10, 1 << 20] {
            for size in [1, 100, 8192, 32768] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                o.alloc(layout, false);
            }
        }
        o.checkpoint();
        o.free_all();
    });
}

/// `realloc` keeps the pointer within a class, moves it across classes, and keeps the
/// prefix in every case (small -> small, small -> large, large -> small, large -> large).
#[test]
fn realloc_within_and_across_classes() {
    exclusive("realloc_within_and_across_classes", || {
        let mut o = Oracle::new("realloc_within_and_across_classes", 0);
        for c in 1..NUM_CLASSES {
            let lo = CLASS_SIZE[c - 1] as usize + 1;
            let hi = CLASS_SIZE[c] as usize;
            for align in [1, 8, 16] {
                if hi % align != 0 {
                    continue;
                }
                let layout = Layout::from_size_align(lo, align).expect("layout");
                o.alloc(layout, false);
                let i = o.keys.len() - 1;
                // realloc_at asserts the pointer is kept within the class.
                o.realloc_at(i, hi);
                o.realloc_at(i, lo);
                o.realloc_at(i, hi + 1); // next class (or large)
                o.realloc_at(i, 200_000); // large
                o.realloc_at(i, 300_000); // large -> large
                o.realloc_at(i, 150_000);
                o.realloc_at(i, lo); // back to small
            }
        }
        o.checkpoint();
        o.free_all();
    });
}

/// `alloc_zeroed` returns zeros also when it reuses dirty memory (small and large),
/// and after `collect()` has returned the pages to the OS.
#[test]
fn alloc_zeroed_after_reuse_and_collect() {
    exclusive("alloc_zeroed_after_reuse_and_collect", || {
        let mut o = Oracle::new("alloc_zeroed_after_reuse_and_collect", 0);
        let sizes = [8, 24, 100, 512, 1024, 3000, 8192, 20000, 32768, 40000, 300_000, 3 << 20];
        for round in 0..4 {
            for &size in &sizes {
                let layout = Layout::from_size_align(size, 8).expect("layout");
                for _ in 0..(256 * 1024 / size).clamp(2, 64) {
                    // Dirty blocks (fill bytes are never 0) ...
                    o.alloc(layout, false);
                }
            }
            o.free_all();
            if round % 2 == 1 {
                collect();
            }
            for &size in &sizes {
                let layout = Layout::from_size_align(size, 8).expect("layout");
                for _ in 0..(256 * 1024 / size).clamp(2, 64) {
                    // ... then zeroed ones over the same memory (checked in `alloc`).
                    o.alloc(layout, true);
                }
            }
            o.free_all();
        }
    });
}

/// Blocks of every class (and large ones) are freed by another thread, some while the
/// allocating thread still runs and some after it has exited; with both threads
/// quiescent the per-class counts must match exactly what is still live (pending remote
/// frees are not "in use"), and everything must be accounted back at the end.
#[test]
fn remote_frees_are_accounted() {
    exclusive("remote_frees_are_accounted", || {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<(usize, Entry)>>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let freer = std::thread::spawn(move || {
            // Give this thread a live cache, so its remote frees take the batched path.
            let one = Layout::from_size_align(8, 8).expect("layout");
            // SAFETY: non-zero size; the block is freed right away, by its allocator.
            unsafe { GoMalloc.dealloc(GoMalloc.alloc(one), one) };
            for batch in rx {
                for (p, (size, layout, fill)) in batch {
                    // SAFETY: the block is live with `size` bytes, handed over to us.
                    let bad = unsafe { first_byte_not(p as *const u8, size, fill) };
                    assert_eq!(bad, None, "remote free: block {p:#x} ({layout:?}) corrupted");
                    // SAFETY: issued by GoMalloc with `layout`; freed once, here.
                    unsafe { GoMalloc.dealloc(p as *mut u8, layout) };
                }
                collect(); // publishes this thread's batched remote frees
                done_tx.send(()).expect("ack");
                if go_rx.recv().is_err() {
                    break;
                }
            }
        });
        // The allocating thread hands two thirds of its blocks to the freer each round,
        // then exits while the rest are still live.
        let allocator = std::thread::spawn(move || {
            let mut o = Oracle::new("remote_frees_are_accounted", 0);
            for round in 0..4 {
                o.op = round;
                for &size in CLASS_SIZE.iter().skip(1) {
                    for k in 0..40 {
                        let size = size as usize - k % 3;
                        o.alloc(Layout::from_size_align(size, 8).expect("layout"), false);
                    }
                }
                for size in [40_000, 100_000, 1 << 20] {
                    o.alloc(Layout::from_size_align(size, 8).expect("layout"), false);
                }
                let mut batch = Vec::new();
                let mut i = 0;
                while i < o.keys.len() {
                    if (o.keys[i] / 16) % 3 != 0 {
                        let p = o.keys.swap_remove(i);
                        let e = o.live.remove(&p).expect("live");
                        o.live_bytes -= e.0;
                        batch.push((p, e));
                    } else {
                        i += 1;
                    }
                }
                tx.send(batch).expect("freer alive");
                done_rx.recv().expect("freer done");
                // Both threads are quiescent now.
                o.checkpoint();
                go_tx.send(()).expect("freer alive");
            }
            (o, tx, go_tx, done_rx)
        });
        let (mut o, tx, go_tx, done_rx) = allocator.join().expect("allocating thread");
        // Its cache is gone; its blocks are still live and counted.
        o.checkpoint();
        let rest: Vec<(usize, Entry)> = o.live.iter().map(|(&p, &e)| (p, e)).collect();
        o.live.clear();
        o.keys.clear();
        o.live_bytes = 0;
        tx.send(rest).expect("freer alive");
        done_rx.recv().expect("freer done");
        drop(go_tx);
        freer.join().expect("freer");
        o.checkpoint();
    });
}

/// The `Stats` contract: `objects_in_use` counts objects "handed out and not freed",
/// exact for a quiescent heap. A single thread frees objects into a span its cache does
/// not own (after `collect()` gave the span back to the central list) and then asks for
/// the figures, with nothing else running: the frees must already be counted.
#[test]
fn stats_exact_after_free_into_unowned_span() {
    exclusive("stats_exact_after_free_into_unowned_span", || {
        let size = 48;
        let layout = Layout::from_size_align(size, 8).expect("layout");
        let class = expected_class(size, 8);
        let ptrs: Vec<usize> = (0..10)
            .map(|_| {
                // SAFETY: non-zero size.
                let p = unsafe { GoMalloc.alloc(layout) };
                assert!(!p.is_null());
                p as usize
            })
            .collect();
        collect(); // the span now belongs to the central list, not to this thread
        let before = stats().classes[class].objects_in_use;
        // SAFETY: issued above with `layout`, freed once.
        unsafe { GoMalloc.dealloc(ptrs[0] as *mut u8, layout) };
        let after_one = stats().classes[class].objects_in_use;
        for &p in &ptrs[1..] {
            // SAFETY: issued above with `layout`, freed once.
            unsafe { GoMalloc.dealloc(p as *mut u8, layout) };
        }
        let after_all = stats().classes[class].objects_in_use;
        collect();
        let after_collect = stats().classes[class].objects_in_use;
        assert_eq!(
            (after_one, after_all),
            (before - 1, before - 10),
            "class {class} ({size} B) objects_in_use: {before} with 10 of ours live, \
             {after_one} after freeing one, {after_all} after freeing all ten, \
             {after_collect} after collect(): frees are not counted until published"
        );
    });
}

/// `usable_size` is a safe function: any pointer that is not the start of a live
/// block of ours gives `None`, and it must never crash.
#[test]
fn usable_size_rejects_foreign_pointers() {
    exclusive("usable_size_rejects_foreign_pointers", || {
        let on_stack = 0u64;
        let system_box = Box::new([0u8; 64]);
        let mut foreign: Vec<usize> = vec![
            0,
            1,
            8,
            4096,
            PAGE_SIZE,
            1 << 30,
            1 << 40,
            (1 << 47) - PAGE_SIZE,
            1 << 47,
            (1 << 48) - 8,
            1 << 48,
            1 << 56,
            usize::MAX - 7,
            &on_stack as *const u64 as usize,
            system_box.as_ptr() as usize,
            usable_size as *const () as usize,
        ];
        let mut o = Oracle::new("usable_size_rejects_foreign_pointers", 0);
        let small = o.alloc(Layout::from_size_align(100, 8).expect("layout"), false);
        let large = o.alloc(Layout::from_size_align(100_000, 8).expect("layout"), false);
        foreign.extend([small + 1, small + 8, small + 64, large + 8, large + PAGE_SIZE]);
        foreign.extend([large + 3 * PAGE_SIZE, large + 12 * PAGE_SIZE]);
        for &p in &foreign {
            assert_eq!(usable_size(p as *const u8), None, "usable_size({p:#x}) should be None");
        }
        assert!(usable_size(small as *const u8).is_some_and(|n| n >= 100));
        assert!(usable_size(large as *const u8).is_some_and(|n| n >= 100_000));
        o.free_all();
    });
}
