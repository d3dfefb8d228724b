//! gomalloc's demonstration workload.
//!
//! ```text
//! cargo run --release --example workload            # about 4 seconds
//! cargo run --release --example workload -- 10      # run for 10 seconds
//! ```
//!
//! Installs `GoMalloc` as the global allocator, so everything below — maps,
//! strings, channels, thread spawning, formatting — allocates through it.
//! For a few seconds these run side by side:
//!
//! * `maps` (2 threads): build `HashMap<String, String>`s of up to 30 000
//!   entries, check every entry, remove a third of them, regroup the rest
//!   into a `BTreeMap<String, Vec<u32>>`, check it, tear it all down. The
//!   last three `BTreeMap`s of each thread stay alive until the end.
//! * `pipeline` (5 threads): 2 producers fill `Vec<u8>` buffers (64 B to
//!   3 MiB) with a pattern and send them to a relay thread, which appends a
//!   trailer (a `realloc` of a block another thread allocated) and passes
//!   them on to 2 consumers, which check every byte and drop them (a remote
//!   free). Counts, bytes and a signature must balance at the end.
//! * `vec growth` (1 thread): `Vec<u64>` pushed one element at a time to up to
//!   16 MiB, shrunk; a `String` and a `Vec<u8>` grown piecewise; all checked.
//! * `large` (1 thread): a window of buffers of 33 KiB to 6 MiB, half of them
//!   from `vec![0; n]` (`alloc_zeroed`, checked to be all zero), every one
//!   filled and checked in full when it is evicted.
//! * `churn` (1 thread plus short-lived ones): batches of 4 threads that each
//!   build small maps and strings and return some of them, so memory outlives
//!   the thread (and thread cache) that allocated it.
//!
//! Meanwhile the main thread samples `gomalloc::stats()` every 10 ms. At the
//! end it prints a summary of each part, the statistics at the sampled peak,
//! and the statistics after dropping everything and calling
//! `gomalloc::collect()`, then the peak RSS and elapsed time. It exits with
//! status 0 when every self-check passed and 1 otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use gomalloc::{GoMalloc, Stats};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[global_allocator]
static GLOBAL: GoMalloc = GoMalloc;

const SEED: u64 = 0x5eed_f00d_a110_c8ed;
const DEFAULT_SECONDS: f64 = 4.0;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// After everything is dropped and collected, more than this still in use
/// counts as a leak (the workload moves gigabytes; the main thread itself
/// keeps a few KiB).
const LEAK_LIMIT: usize = 16 << 20;

// ---------------------------------------------------------------------------
// self-checks

static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn fail(msg: String) {
    eprintln!("SELF-CHECK FAILED: {msg}");
    FAILURES.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
}

/// Records a failure (and carries on) unless `$cond` holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            fail(format!($($msg)+));
        }
    };
}

/// A cheap 64-bit mixer (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------
// maps

#[derive(Default)]
struct MapsReport {
    rounds: u64,
    inserted: u64,
    removed: u64,
    /// The last few maps, kept alive until the end of the run.
    kept: VecDeque<BTreeMap<String, Vec<u32>>>,
}

/// The value stored under key `i` of a round: 8 to 40 hex digits.
fn map_value(out: &mut String, salt: u64, i: u32) {
    out.clear();
    let h = mix(salt ^ u64::from(i));
    for r in 0..=(i % 5) {
        let _ = write!(out, "{:08x}", (h >> (r * 8)) as u32);
    }
}

fn maps_worker(id: u64, deadline: Instant) -> MapsReport {
    let mut rng = SmallRng::seed_from_u64(SEED ^ id);
    let mut report = MapsReport::default();
    let mut expect = String::new();
    while Instant::now() < deadline {
        report.rounds += 1;
        let round = report.rounds;
        let n: u32 = rng.gen_range(1_000..=30_000);
        let salt: u64 = rng.gen();

        let mut map: HashMap<String, String> = HashMap::new();
        for i in 0..n {
            let mut v = String::new();
            map_value(&mut v, salt, i);
            map.insert(format!("m{id}-{round}-{i}"), v);
        }
        report.inserted += u64::from(n);
        check!(map.len() == n as usize, "maps: {} entries, expected {n}", map.len());

        // Every entry holds the value its key's index calls for.
        let (mut bad, mut index_sum) = (0u64, 0u64);
        for (k, v) in &map {
            let i: u32 = k.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(u32::MAX);
            map_value(&mut expect, salt, i);
            bad += u64::from(*v != expect);
            index_sum += u64::from(i);
        }
        let n64 = u64::from(n);
        check!(bad == 0, "maps: {bad} entries of {n} hold the wrong value");
        check!(
            index_sum == n64 * (n64 - 1) / 2,
            "maps: key indices sum to {index_sum}, expected {}",
            n64 * (n64 - 1) / 2
        );

        // Remove every third key (frees in hash order, not allocation order).
        for i in (0..n).step_by(3) {
            if map.remove(&format!("m{id}-{round}-{i}")).is_none() {
                fail(format!("maps: key {i} missing at removal"));
            }
        }
        let removed = u64::from(n.div_ceil(3));
        report.removed += removed;
        check!(
            map.len() as u64 == n64 - removed,
            "maps: {} entries after removal, expected {}",
            map.len(),
            n64 - removed
        );

        // Regroup by the first two hex digits of the value.
        let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (k, v) in map.drain() {
            let i: u32 = k.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(u32::MAX);
            groups.entry(v[..2].to_string()).or_default().push(i);
        }
        let count: usize = groups.values().map(Vec::len).sum();
        let sum: u64 = groups.values().flatten().map(|&i| u64::from(i)).sum();
        let kept_sum: u64 = (0..n).filter(|i| i % 3 != 0).map(u64::from).sum();
        check!(
            count as u64 == n64 - removed && sum == kept_sum,
            "maps: regrouped {count} indices summing to {sum}, expected {} summing to {kept_sum}",
            n64 - removed
        );
        check!(groups.keys().zip(groups.keys().skip(1)).all(|(a, b)| a < b), "maps: BTreeMap keys out of order");
        report.kept.push_back(groups);
        if report.kept.len() > 3 {
            report.kept.pop_front();
        }
    }
    report
}

// ---------------------------------------------------------------------------
// pipeline

struct Packet {
    producer: u8,
    seq: u64,
    len: usize,
    data: Vec<u8>,
}

/// Counts that producers and consumers must agree on.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Tally {
    packets: u64,
    bytes: u64,
    over_32k: u64,
    over_1m: u64,
    signature: u64,
}

impl Tally {
    fn add(&mut self, producer: u8, seq: u64, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
        self.over_32k += u64::from(len > 32 << 10);
        self.over_1m += u64::from(len > 1 << 20);
        self.signature = self.signature.wrapping_add(mix((u64::from(producer) << 56) ^ seq ^ ((len as u64) << 20)));
    }

    fn merge(mut self, o: Tally) -> Tally {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.over_32k += o.over_32k;
        self.over_1m += o.over_1m;
        self.signature = self.signature.wrapping_add(o.signature);
        self
    }
}

fn packet_key(producer: u8, seq: u64) -> u8 {
    mix((u64::from(producer) << 56) ^ seq) as u8
}

/// Byte `j` of a packet's payload.
fn pattern(key: u8, j: usize) -> u8 {
    (j ^ (j >> 8) ^ (j >> 16)) as u8 ^ key
}

fn packet_len(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..1000u32) {
        0..=849 => rng.gen_range(64..=4 << 10),
        850..=969 => rng.gen_range((4 << 10) + 1..=64 << 10),
        970..=994 => rng.gen_range((64 << 10) + 1..=512 << 10),
        _ => rng.gen_range(1 << 20..=3 << 20),
    }
}

fn producer(id: u8, deadline: Instant, tx: SyncSender<Packet>) -> Tally {
    let mut rng = SmallRng::seed_from_u64(SEED ^ 0x100 ^ u64::from(id));
    let mut tally = Tally::default();
    let mut seq = 0;
    while Instant::now() < deadline {
        let len = packet_len(&mut rng);
        let key = packet_key(id, seq);
        let mut data = Vec::with_capacity(len);
        data.extend((0..len).map(|j| pattern(key, j)));
        tally.add(id, seq, len);
        let packet = Packet { producer: id, seq, len, data };
        if tx.send(packet).is_err() {
            fail(format!("pipeline: producer {id} lost its relay"));
            break;
        }
        seq += 1;
    }
    tally
}

/// Appends the sequence number as a trailer (growing a buffer allocated by
/// another thread) and deals packets to the consumers in turn.
fn relay(rx: Receiver<Packet>, outs: Vec<SyncSender<Packet>>) -> u64 {
    let mut relayed = 0;
    for mut p in rx {
        p.data.extend_from_slice(&p.seq.to_le_bytes());
        if outs[relayed as usize % outs.len()].send(p).is_err() {
            fail("pipeline: relay lost a consumer".to_string());
            break;
        }
        relayed += 1;
    }
    relayed
}

fn consumer(rx: Receiver<Packet>) -> Tally {
    let mut tally = Tally::default();
    for p in rx {
        let key = packet_key(p.producer, p.seq);
        let body_ok =
            p.data.len() == p.len + 8 && p.data[..p.len].iter().enumerate().all(|(j, &b)| b == pattern(key, j));
        let trailer_ok = p.data.len() >= 8 && p.data[p.data.len() - 8..] == p.seq.to_le_bytes();
        check!(body_ok && trailer_ok, "pipeline: packet {}/{} of {} bytes arrived corrupted", p.producer, p.seq, p.len);
        tally.add(p.producer, p.seq, p.len);
        // `p.data` is dropped here: a free of a block from another thread.
    }
    tally
}

// ---------------------------------------------------------------------------
// vec growth

#[derive(Default)]
struct VecReport {
    rounds: u64,
    regrowths: u64,
    largest: usize,
}

fn vec_worker(deadline: Instant) -> VecReport {
    let mut r = VecReport::default();
    while Instant::now() < deadline {
        r.rounds += 1;
        let n: u64 = 1 << (17 + r.rounds % 5); // 128 Ki to 2 Mi elements
        let mut v: Vec<u64> = Vec::new();
        let mut cap = 0;
        for i in 0..n {
            v.push(mix(i));
            if v.capacity() != cap {
                cap = v.capacity();
                r.regrowths += 1;
            }
        }
        r.largest = r.largest.max(v.capacity() * 8);
        let sum = v.iter().fold(0u64, |s, &x| s.wrapping_add(x));
        let expect = (0..n).fold(0u64, |s, i| s.wrapping_add(mix(i)));
        check!(sum == expect, "vec growth: Vec<u64> of {n} lost contents");
        v.truncate(v.len() / 5);
        v.shrink_to_fit();
        let ok = v.iter().enumerate().all(|(i, &x)| x == mix(i as u64));
        check!(ok, "vec growth: contents changed by shrink_to_fit");
        drop(v);

        let mut s = String::new();
        let m: u64 = 60_000;
        for i in 0..m {
            let before = s.capacity();
            let _ = write!(s, "{i};");
            r.regrowths += u64::from(s.capacity() != before);
        }
        let parsed: u64 = s.split(';').filter_map(|x| x.parse::<u64>().ok()).sum();
        check!(parsed == m * (m - 1) / 2, "vec growth: String contents lost");

        let chunk: Vec<u8> = (0..=255u8).collect();
        let mut bytes: Vec<u8> = Vec::new();
        while bytes.len() < 3 << 20 {
            let before = bytes.capacity();
            bytes.extend_from_slice(&chunk[..100]);
            r.regrowths += u64::from(bytes.capacity() != before);
        }
        let ok = bytes.chunks(100).all(|c| c == &chunk[..c.len()]);
        check!(ok, "vec growth: Vec<u8> contents lost");
    }
    r
}

// ---------------------------------------------------------------------------
// large buffers

#[derive(Default)]
struct LargeReport {
    buffers: u64,
    bytes: u64,
    zeroed: u64,
    over_1m: u64,
    /// The window at the end of the run, kept alive until the end.
    window: Vec<(Vec<u8>, u8)>,
}

fn large_worker(deadline: Instant) -> LargeReport {
    const WINDOW: usize = 6;
    let mut rng = SmallRng::seed_from_u64(SEED ^ 0x200);
    let mut r = LargeReport::default();
    let check_buf = |buf: &[u8], key: u8| {
        let ok = buf.iter().enumerate().all(|(j, &b)| b == pattern(key, j));
        check!(ok, "large: buffer of {} bytes corrupted", buf.len());
    };
    while Instant::now() < deadline {
        let len = match rng.gen_range(0..100u32) {
            0..=59 => rng.gen_range((33 << 10)..=256 << 10),
            60..=84 => rng.gen_range((256 << 10) + 1..=1 << 20),
            _ => rng.gen_range((1 << 20) + 1..=6 << 20),
        };
        let key: u8 = rng.gen();
        let mut buf = if rng.gen() {
            let zeroed = vec![0u8; len];
            let ok = zeroed.iter().all(|&b| b == 0);
            check!(ok, "large: vec![0; {len}] is not all zero");
            r.zeroed += 1;
            zeroed
        } else {
            Vec::with_capacity(len)
        };
        buf.clear();
        buf.extend((0..len).map(|j| pattern(key, j)));
        r.buffers += 1;
        r.bytes += len as u64;
        r.over_1m += u64::from(len > 1 << 20);
        if r.window.len() < WINDOW {
            r.window.push((buf, key));
        } else {
            let slot = rng.gen_range(0..WINDOW);
            let (old, old_key) = std::mem::replace(&mut r.window[slot], (buf, key));
            check_buf(&old, old_key);
        }
    }
    for (buf, key) in &r.window {
        check_buf(buf, *key);
    }
    r
}

// ---------------------------------------------------------------------------
// thread churn

#[derive(Default)]
struct ChurnReport {
    threads: u64,
    /// Strings allocated by threads that have exited, kept until the end.
    kept: Vec<Vec<String>>,
}

/// What one short-lived thread does: builds a map and a set, returns every
/// other string it made.
fn churn_job(seed: u64) -> Vec<String> {
    let map: HashMap<u64, String> = (0..600).map(|i| (i, format!("c{seed}:{i}"))).collect();
    let set: BTreeSet<&str> = map.values().map(String::as_str).collect();
    check!(set.len() == 600, "churn: set of {} strings, expected 600", set.len());
    (0..600).step_by(2).map(|i| map[&i].clone()).collect()
}

fn churn_worker(deadline: Instant) -> ChurnReport {
    let mut r = ChurnReport::default();
    while Instant::now() < deadline {
        let seeds: Vec<u64> = (0..4).map(|t| r.threads + t).collect();
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| thread::Builder::new().name(format!("churn-{seed}")).spawn(move || churn_job(seed)))
            .collect();
        let mut batch = Vec::new();
        for (seed, h) in seeds.into_iter().zip(handles) {
            match h.map_err(|e| e.to_string()).and_then(|h| h.join().map_err(|_| "panicked".to_string())) {
                Ok(strings) => {
                    let ok = strings.len() == 300
                        && strings.iter().enumerate().all(|(k, s)| *s == format!("c{seed}:{}", 2 * k));
                    check!(ok, "churn: thread {seed} returned wrong strings");
                    batch.push(strings);
                }
                Err(e) => fail(format!("churn: thread {seed}: {e}")),
            }
            r.threads += 1;
        }
        // Frees the previous batch: memory of threads that have exited.
        r.kept = batch;
    }
    r
}

// ---------------------------------------------------------------------------
// process figures

/// Peak resident set size: `VmHWM` from /proc/self/status, else
/// `getrusage(RUSAGE_SELF).ru_maxrss`. `VmHWM` comes first because Linux
/// keeps `ru_maxrss` across `execve`, so under `cargo run` it would start at
/// cargo's own peak.
fn peak_rss_bytes() -> u64 {
    let hwm_kib: Option<u64> = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    });
    let kib = hwm_kib.unwrap_or_else(|| {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is valid for writes of one `rusage`.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        // SAFETY: getrusage succeeded and initialised `usage`.
        let usage = unsafe { usage.assume_init() };
        // On Linux `ru_maxrss` is in KiB.
        u64::try_from(usage.ru_maxrss).unwrap_or(0)
    });
    kib * 1024
}

/// Current resident set size from /proc/self/statm (0 where unavailable).
fn rss_now_bytes() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let resident: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    resident * u64::try_from(page).unwrap_or(4096)
}

// ---------------------------------------------------------------------------
// main

struct Reports {
    maps: Vec<MapsReport>,
    produced: Tally,
    relayed: u64,
    consumed: Tally,
    vecs: VecReport,
    large: LargeReport,
    churn: ChurnReport,
}

/// Joins a worker, recording a failure (and returning the default) if it
/// panicked.
fn join<T: Default>(name: &str, h: thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|_| {
        fail(format!("{name}: thread panicked"));
        T::default()
    })
}

/// Runs every part until `deadline`, sampling `stats()` meanwhile; returns
/// the reports, the peak sample, when it was taken and how many were taken.
fn run(start: Instant, deadline: Instant) -> (Reports, Stats, Duration, u64) {
    thread::scope(|s| {
        let spawn = |name: &str| thread::Builder::new().name(name.to_string());
        let maps: Vec<_> = (0..2)
            .map(|id| {
                spawn(&format!("maps-{id}")).spawn_scoped(s, move || maps_worker(id, deadline)).expect("spawn maps")
            })
            .collect();

        let (tx, rx) = sync_channel::<Packet>(32);
        let mut outs = Vec::new();
        let mut consumers = Vec::new();
        for c in 0..2 {
            let (ctx, crx) = sync_channel::<Packet>(16);
            outs.push(ctx);
            consumers
                .push(spawn(&format!("consumer-{c}")).spawn_scoped(s, move || consumer(crx)).expect("spawn consumer"));
        }
        let relay = spawn("relay").spawn_scoped(s, move || relay(rx, outs)).expect("spawn relay");
        let producers: Vec<_> = (0..2u8)
            .map(|id| {
                let tx = tx.clone();
                spawn(&format!("producer-{id}"))
                    .spawn_scoped(s, move || producer(id, deadline, tx))
                    .expect("spawn producer")
            })
            .collect();
        drop(tx);

        let vecs = spawn("vec-growth").spawn_scoped(s, move || vec_worker(deadline)).expect("spawn vec growth");
        let large = spawn("large").spawn_scoped(s, move || large_worker(deadline)).expect("spawn large");
        let churn = spawn("churn").spawn_scoped(s, move || churn_worker(deadline)).expect("spawn churn");

        // Sample until every worker has finished.
        let mut peak = gomalloc::stats();
        let mut peak_at = start.elapsed();
        let mut samples = 1;
        let running = || {
            maps.iter().any(|h| !h.is_finished())
                || consumers.iter().any(|h| !h.is_finished())
                || !relay.is_finished()
                || !vecs.is_finished()
                || !large.is_finished()
                || !churn.is_finished()
        };
        while running() {
            thread::sleep(SAMPLE_EVERY);
            let now = gomalloc::stats();
            samples += 1;
            if now.bytes_in_use > peak.bytes_in_use {
                peak = now;
                peak_at = start.elapsed();
            }
        }

        let produced = producers.into_iter().fold(Tally::default(), |t, h| t.merge(join("producer", h)));
        let consumed = consumers.into_iter().fold(Tally::default(), |t, h| t.merge(join("consumer", h)));
        let reports = Reports {
            maps: maps.into_iter().map(|h| join("maps", h)).collect(),
            produced,
            relayed: join("relay", relay),
            consumed,
            vecs: join("vec growth", vecs),
            large: join("large", large),
            churn: join("churn", churn),
        };
        (reports, peak, peak_at, samples)
    })
}

/// Reads one figure out of a `Stats`.
type StatsField = fn(&Stats) -> usize;

fn print_summary(r: &Reports) {
    let rounds: u64 = r.maps.iter().map(|m| m.rounds).sum();
    let inserted: u64 = r.maps.iter().map(|m| m.inserted).sum();
    let removed: u64 = r.maps.iter().map(|m| m.removed).sum();
    println!("  maps        2 threads    {rounds} rounds, {inserted} entries inserted, {removed} removed");
    let p = &r.produced;
    println!(
        "  pipeline    5 threads    {} buffers, {:.1} MiB ({} > 32 KiB, {} > 1 MiB), {} relayed, {} consumed",
        p.packets,
        mib(p.bytes),
        p.over_32k,
        p.over_1m,
        r.relayed,
        r.consumed.packets
    );
    println!(
        "  vec growth  1 thread     {} rounds, {} regrowths (realloc), largest {:.1} MiB",
        r.vecs.rounds,
        r.vecs.regrowths,
        mib(r.vecs.largest as u64)
    );
    println!(
        "  large       1 thread     {} buffers, {:.1} MiB ({} zeroed, {} > 1 MiB)",
        r.large.buffers,
        mib(r.large.bytes),
        r.large.zeroed,
        r.large.over_1m
    );
    println!("  churn       1 thread     {} short-lived threads", r.churn.threads);
}

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let seconds = match arg.as_deref() {
        None => DEFAULT_SECONDS,
        Some(s) => match s.parse::<f64>() {
            Ok(x) if x > 0.0 && x <= 3600.0 => x,
            _ => {
                eprintln!("usage: workload [SECONDS]   (default {DEFAULT_SECONDS})");
                return ExitCode::from(2);
            }
        },
    };
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!("gomalloc workload: {seconds} s on {cpus} CPU(s); 10 worker threads plus thread churn");

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let (reports, peak, peak_at, samples) = run(start, deadline);
    let run_time = start.elapsed();

    check!(
        reports.produced == reports.consumed,
        "pipeline: produced {:?} but consumed {:?}",
        reports.produced,
        reports.consumed
    );
    check!(
        reports.relayed == reports.produced.packets,
        "pipeline: produced {} packets but relayed {}",
        reports.produced.packets,
        reports.relayed
    );

    println!("\nwhat ran (every part checks its own results):");
    print_summary(&reports);

    println!(
        "\n== gomalloc::stats() at peak: highest bytes_in_use of {samples} samples, at {:.2} s \
         (approximate: threads were running) ==",
        peak_at.as_secs_f64()
    );
    print!("{peak}");

    let live = gomalloc::stats();
    drop(reports);
    let dropped = gomalloc::stats();
    gomalloc::collect();
    let collected = gomalloc::stats();

    println!("\n== gomalloc::stats() after dropping everything and gomalloc::collect() ==");
    print!("{collected}");

    println!("\nreturning memory:");
    println!("  {:<32} {:>12} {:>12} {:>12}", "MiB", "workers done", "all dropped", "collected");
    let rows: [(&str, StatsField); 4] = [
        ("in use", |s| s.bytes_in_use),
        ("free, retained", |s| s.bytes_free_retained),
        ("free, released to the OS", |s| s.bytes_released),
        ("mapped", |s| s.bytes_mapped),
    ];
    for (name, field) in rows {
        println!(
            "  {name:<32} {:>12.2} {:>12.2} {:>12.2}",
            mib(field(&live) as u64),
            mib(field(&dropped) as u64),
            mib(field(&collected) as u64)
        );
    }
    println!(
        "  collect() released {:.2} MiB more to the OS",
        mib(collected.bytes_released.saturating_sub(dropped.bytes_released) as u64)
    );
    check!(
        collected.bytes_in_use <= LEAK_LIMIT,
        "leak: {} bytes still in use after dropping everything (limit {LEAK_LIMIT})",
        collected.bytes_in_use
    );

    println!(
        "\npeak RSS {:.1} MiB (VmHWM), RSS now {:.1} MiB, workload {:.2} s, total {:.2} s",
        mib(peak_rss_bytes()),
        mib(rss_now_bytes()),
        run_time.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );

    let failures = FAILURES.lock().unwrap_or_else(|e| e.into_inner()).len();
    if failures == 0 {
        println!("result: OK, all self-checks passed");
        ExitCode::SUCCESS
    } else {
        println!("result: FAILED, {failures} self-check(s) failed (details on stderr)");
        ExitCode::FAILURE
    }
}
