//! Real standard-library workloads with `GoMalloc` as the global allocator: vector
//! growth and shrinking, string building and formatting, `HashMap`/`BTreeMap` churn,
//! boxed slices of many sizes, threads passing heap data through channels, a shared
//! `Arc<Mutex<Vec<_>>>`, and sorting. Every test checks its results (sums, lengths,
//! contents), and that std's heap pointers really come from gomalloc (`usable_size`).

mod common;

use gomalloc::{usable_size, GoMalloc};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

/// Asserts that `ptr` is the start of a live gomalloc block of at least `len` bytes.
fn assert_ours(ptr: *const u8, len: usize, what: &str) {
    let n = usable_size(ptr);
    assert!(
        matches!(n, Some(n) if n >= len),
        "{what}: {ptr:p} should be a gomalloc block of >= {len} bytes, usable_size = {n:?}"
    );
}

fn value_of(k: u64) -> u64 {
    common::mix64(k)
}

#[test]
fn vec_growth_and_shrink() {
    const N: u64 = 4_000_000;
    let mut v: Vec<u64> = Vec::new();
    let mut expect_sum = 0u64;
    for i in 0..N {
        let x = value_of(i);
        v.push(x);
        expect_sum = expect_sum.wrapping_add(x);
    }
    assert_eq!(v.len() as u64, N);
    assert_ours(v.as_ptr().cast(), v.len() * 8, "Vec<u64> buffer");
    v.truncate(1000);
    v.shrink_to_fit();
    assert!(v.capacity() >= 1000 && v.capacity() < 2000, "capacity {}", v.capacity());
    assert_ours(v.as_ptr().cast(), 8000, "shrunk Vec<u64> buffer");
    assert!(v.iter().enumerate().all(|(i, &x)| x == value_of(i as u64)));
    let sum = (0..N).map(value_of).fold(0u64, u64::wrapping_add);
    assert_eq!(sum, expect_sum);

    // Many vectors growing in turn: their reallocations interleave in the heap.
    let mut rng = SmallRng::seed_from_u64(1);
    let mut vecs: Vec<Vec<u32>> = (0..1000).map(|_| Vec::new()).collect();
    for round in 0..200u32 {
        for (j, vec) in vecs.iter_mut().enumerate() {
            let k = rng.gen_range(0..20);
            vec.extend((0..k).map(|t| round * 100_000 + j as u32 * 20 + t));
        }
        if round % 50 == 49 {
            for vec in vecs.iter_mut().step_by(3) {
                vec.shrink_to_fit();
            }
        }
    }
    for (j, vec) in vecs.iter().enumerate() {
        // Each round appended a run t = 0..k of (round, j, t) values, in order.
        let mut last_round = None;
        let mut next_t = 0;
        for &x in vec {
            let (round, rest) = (x / 100_000, x % 100_000);
            assert_eq!(rest / 20, j as u32, "vector {j} holds another vector's value {x}");
            if last_round != Some(round) {
                assert!(last_round < Some(round), "vector {j}: rounds out of order");
                last_round = Some(round);
                next_t = 0;
            }
            assert_eq!(rest % 20, next_t, "vector {j}: value {x} out of place");
            next_t += 1;
        }
    }

    // Vec<u8> growth by extend, then shrink.
    let mut bytes: Vec<u8> = Vec::new();
    for i in 0..3_000_000u32 {
        bytes.push((i % 251) as u8);
    }
    bytes.shrink_to_fit();
    assert_eq!(bytes.len(), 3_000_000);
    assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[test]
fn string_building_and_formatting() {
    let mut s = String::new();
    let mut expect_len = 0;
    for i in 0..300_000u32 {
        write!(s, "{i},").expect("write to String");
        expect_len += i.to_string().len() + 1;
    }
    assert_eq!(s.len(), expect_len);
    assert_ours(s.as_ptr(), s.len(), "String buffer");
    let sum: u64 = s.split(',').filter(|t| !t.is_empty()).map(|t| t.parse::<u64>().unwrap()).sum();
    assert_eq!(sum, 299_999 * 300_000 / 2);

    let parts: Vec<String> = (0..50_000).map(|i| format!("item-{i:05}-{:x}", i * 7)).collect();
    let joined = parts.join("|");
    assert_eq!(joined.split('|').count(), 50_000);
    assert_eq!(joined.split('|').nth(12_345), Some(format!("item-12345-{:x}", 12_345 * 7).as_str()));
    let upper = joined.to_uppercase();
    assert_eq!(upper.len(), joined.len());
    assert!(upper.starts_with("ITEM-00000-0|ITEM-00001-7|"));
    let replaced = joined.replace("item", "entry");
    assert_eq!(replaced.len(), joined.len() + 50_000);
    let repeated = "abc".repeat(1_000_000);
    assert_eq!(repeated.len(), 3_000_000);
    assert_eq!(repeated.matches("cab").count(), 999_999);

    // Strings of growing lengths, kept alive together, then checked.
    let strings: Vec<String> = (0..5_000).map(|n| "x".repeat(n) + &n.to_string()).collect();
    for (n, st) in strings.iter().enumerate() {
        assert_eq!(st.len(), n + n.to_string().len());
        assert!(st[..n].bytes().all(|b| b == b'x') && st[n..] == n.to_string());
    }
}

#[test]
fn hashmap_insert_remove_churn() {
    let mut rng = SmallRng::seed_from_u64(common::seed(2));
    let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut present: HashSet<u64> = HashSet::new();
    let value = |k: u64| -> Vec<u8> {
        let len = (k % 97) as usize + (k % 7 == 0) as usize * 4000;
        (0..len).map(|i| (k as usize + i) as u8).collect()
    };
    for round in 0..8 {
        for _ in 0..60_000 {
            let k = rng.gen_range(0..200_000u64);
            if rng.gen_ratio(2, 3) {
                map.insert(k, value(k));
                present.insert(k);
            } else {
                let removed = map.remove(&k);
                assert_eq!(removed.is_some(), present.remove(&k), "key {k}");
                if let Some(v) = removed {
                    assert_eq!(v, value(k), "round {round}: removed value of {k} corrupted");
                }
            }
        }
        assert_eq!(map.len(), present.len());
        for (&k, v) in &map {
            assert!(present.contains(&k));
            assert_eq!(*v, value(k), "round {round}: value of {k} corrupted");
        }
        if round == 4 {
            map.retain(|k, _| k % 3 != 0);
            present.retain(|k| k % 3 != 0);
            map.shrink_to_fit();
        }
    }
}

#[test]
fn btreemap_churn_and_order() {
    let mut rng = SmallRng::seed_from_u64(common::seed(3));
    let mut map: BTreeMap<String, u64> = BTreeMap::new();
    let mut expect_sum = 0u64;
    for _ in 0..300_000 {
        let k = rng.gen_range(0..100_000u64);
        let key = format!("key-{k:08}");
        if rng.gen_ratio(3, 5) {
            if let Some(old) = map.insert(key, k * 3) {
                assert_eq!(old, k * 3);
            } else {
                expect_sum += k * 3;
            }
        } else if let Some(v) = map.remove(&key) {
            assert_eq!(v, k * 3);
            expect_sum -= v;
        }
    }
    assert_eq!(map.values().sum::<u64>(), expect_sum);
    let keys: Vec<&String> = map.keys().collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "BTreeMap keys out of order");
    for (key, &v) in &map {
        let k: u64 = key["key-".len()..].parse().unwrap();
        assert_eq!(v, k * 3);
    }
    let range_count = map.range("key-00010000".to_string().."key-00020000".to_string()).count();
    let direct = map.keys().filter(|k| k.as_str() >= "key-00010000" && k.as_str() < "key-00020000");
    assert_eq!(range_count, direct.count());
}

#[test]
fn boxed_slices_of_many_sizes() {
    let mut sizes: Vec<usize> = (0..=4096).collect();
    sizes.extend((4097..=70_000).step_by(97));
    for shift in 4..=23 {
        let p = 1usize << shift;
        sizes.extend([p - 1, p, p + 1]);
    }
    let mut rng = SmallRng::seed_from_u64(common::seed(4));
    sizes.shuffle(&mut rng);
    let boxes: Vec<Box<[u8]>> =
        sizes.iter().map(|&n| (0..n).map(|i| (i ^ n) as u8).collect::<Vec<u8>>().into_boxed_slice()).collect();
    let mut total = 0usize;
    for (b, &n) in boxes.iter().zip(&sizes) {
        assert_eq!(b.len(), n);
        if n > 0 {
            assert_ours(b.as_ptr(), n, "Box<[u8]>");
        }
        assert!(b.iter().enumerate().all(|(i, &x)| x == (i ^ n) as u8), "box of {n} bytes");
        total += n;
    }
    assert_eq!(total, sizes.iter().sum::<usize>());
    // Drop in a random order, reallocating some sizes in between.
    let mut boxes: Vec<Option<Box<[u8]>>> = boxes.into_iter().map(Some).collect();
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.shuffle(&mut rng);
    for (k, &i) in order.iter().enumerate() {
        let b = boxes[i].take().expect("dropped once");
        let n = sizes[i];
        assert!(b.iter().enumerate().all(|(j, &x)| x == (j ^ n) as u8), "box of {n} bytes");
        drop(b);
        if k % 3 == 0 {
            let z = vec![0u8; n].into_boxed_slice();
            assert!(z.iter().all(|&x| x == 0), "vec![0; {n}] not zeroed");
        }
    }
}

#[test]
fn threads_pass_heap_data_through_channels() {
    const PRODUCERS: u64 = 8;
    const MESSAGES: u64 = 20_000;
    let (tx, rx) = mpsc::channel::<(u64, Vec<u64>, String)>();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for m in 0..MESSAGES {
                    let len = ((p * 31 + m) % 50) as usize;
                    let payload: Vec<u64> = (0..len as u64).map(|i| p * 1_000_000 + i).collect();
                    tx.send((p, payload, format!("{p}:{m}"))).expect("send");
                }
            })
        })
        .collect();
    drop(tx);
    // A pipeline stage on another thread: doubles every value, passes strings along.
    let (tx2, rx2) = mpsc::channel::<(u64, Vec<u64>, String)>();
    let stage = thread::spawn(move || {
        for (p, mut v, s) in rx {
            v.iter_mut().for_each(|x| *x *= 2);
            tx2.send((p, v, s)).expect("send stage 2");
        }
    });
    let mut count = [0u64; PRODUCERS as usize];
    let mut sum = 0u64;
    for (p, v, s) in rx2 {
        let (sp, sm) = s.split_once(':').expect("p:m");
        assert_eq!(sp.parse::<u64>().unwrap(), p);
        let m: u64 = sm.parse().unwrap();
        assert_eq!(m, count[p as usize], "messages from producer {p} out of order");
        assert_eq!(v.len() as u64, (p * 31 + m) % 50);
        for (i, &x) in v.iter().enumerate() {
            assert_eq!(x, 2 * (p * 1_000_000 + i as u64));
        }
        sum += v.iter().sum::<u64>();
        count[p as usize] += 1;
    }
    for h in producers {
        h.join().expect("producer");
    }
    stage.join().expect("stage");
    assert!(count.iter().all(|&c| c == MESSAGES));
    let mut expect = 0u64;
    for p in 0..PRODUCERS {
        for m in 0..MESSAGES {
            let len = (p * 31 + m) % 50;
            expect += 2 * (p * 1_000_000 * len + len * len.saturating_sub(1) / 2);
        }
    }
    assert_eq!(sum, expect);
}

#[test]
fn arc_mutex_vec_shared_across_threads() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20_000;
    let shared: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let deque: Arc<Mutex<VecDeque<Box<u64>>>> = Arc::new(Mutex::new(VecDeque::new()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (shared, deque) = (Arc::clone(&shared), Arc::clone(&deque));
            thread::spawn(move || {
                let mut popped = 0u64;
                for i in 0..PER_THREAD {
                    shared.lock().unwrap().push(format!("t{t}-i{i}"));
                    deque.lock().unwrap().push_back(Box::new((t * PER_THREAD + i) as u64));
                    if i % 2 == 1 {
                        // Frees a box most likely allocated by another thread.
                        popped += *deque.lock().unwrap().pop_front().expect("non-empty");
                    }
                }
                popped
            })
        })
        .collect();
    let popped: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    let mut all = Arc::try_unwrap(shared).expect("sole owner").into_inner().unwrap();
    assert_eq!(all.len(), THREADS * PER_THREAD);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), THREADS * PER_THREAD, "duplicate entries");
    let mut expect: Vec<String> =
        (0..THREADS).flat_map(|t| (0..PER_THREAD).map(move |i| format!("t{t}-i{i}"))).collect();
    expect.sort();
    assert_eq!(all, expect);
    let rest: u64 = deque.lock().unwrap().drain(..).map(|b| *b).sum();
    let n = (THREADS * PER_THREAD) as u64;
    assert_eq!(popped + rest, n * (n - 1) / 2);
}

#[test]
fn sorting_large_vectors() {
    let mut rng = SmallRng::seed_from_u64(common::seed(5));
    let mut v: Vec<u64> = (0..2_000_000).map(|_| rng.gen()).collect();
    let (sum, xor) = v.iter().fold((0u64, 0u64), |(s, x), &e| (s.wrapping_add(e), x ^ e));
    let mut w = v.clone();
    v.sort_unstable();
    w.sort(); // stable sort allocates a scratch buffer
    assert!(v.windows(2).all(|p| p[0] <= p[1]));
    assert_eq!(v, w);
    assert_eq!(v.iter().fold((0u64, 0u64), |(s, x), &e| (s.wrapping_add(e), x ^ e)), (sum, xor));

    let mut strings: Vec<String> = (0..300_000).map(|_| format!("{:x}", rng.gen::<u32>())).collect();
    let total_len: usize = strings.iter().map(String::len).sum();
    strings.sort();
    assert!(strings.windows(2).all(|p| p[0] <= p[1]));
    assert_eq!(strings.iter().map(String::len).sum::<usize>(), total_len);

    // Stable sort by key keeps equal keys in input order.
    let mut pairs: Vec<(u16, u32)> = (0..1_000_000u32).map(|i| (rng.gen_range(0..1000), i)).collect();
    pairs.sort_by_key(|&(k, _)| k);
    assert!(pairs.windows(2).all(|p| p[0].0 < p[1].0 || (p[0].0 == p[1].0 && p[0].1 < p[1].1)));
}
