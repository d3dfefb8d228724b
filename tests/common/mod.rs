//! Helpers shared by the integration tests: seeds that can be overridden from the
//! environment and are printed on failure, random sizes and alignments, and fill
//! patterns (a single byte, or words derived from a block's address, size and tag)
//! that are written on allocation and verified before free.
//!
//! Each test file includes this module with `mod common;` and uses only part of it.
#![allow(dead_code)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Environment variable that overrides every test's default seed.
pub const SEED_VAR: &str = "GOMALLOC_SEED";

/// The seed for a test: `GOMALLOC_SEED` (decimal or `0x` hex) if set, else `default`.
pub fn seed(default: u64) -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{SEED_VAR}={text:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// Prints the seed (and how to rerun with it) if the owning scope unwinds.
pub struct SeedGuard {
    name: &'static str,
    seed: u64,
}

impl SeedGuard {
    pub fn new(name: &'static str, seed: u64) -> Self {
        SeedGuard { name, seed }
    }
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "!! {} failed with seed {:#x}; rerun with {}={:#x} cargo test {}",
                self.name, self.seed, SEED_VAR, self.seed, self.name
            );
        }
    }
}

/// A seeded RNG plus a guard that reports the seed on panic.
pub fn seeded(name: &'static str, default: u64) -> (SmallRng, SeedGuard) {
    let s = seed(default);
    (SmallRng::seed_from_u64(s), SeedGuard::new(name, s))
}

/// Uniform on a logarithmic scale over `lo..=hi` (both at least 1).
pub fn log_uniform(rng: &mut SmallRng, lo: usize, hi: usize) -> usize {
    debug_assert!(1 <= lo && lo <= hi);
    let (l, h) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
    let v = rng.gen_range(l..h).exp() as usize;
    v.clamp(lo, hi)
}

pub fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// splitmix64's finaliser: a cheap, well-mixed 64-bit hash.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The pattern seed of a block: depends on its address, size and tag, so a block
/// that shows another block's bytes (overlap, double issue, stale copy) fails.
pub fn pattern_seed(addr: usize, size: usize, tag: u64) -> u64 {
    mix64(addr as u64 ^ mix64(size as u64 ^ mix64(tag)))
}

const STEP: u64 = 0x9E37_79B9_7F4A_7C15;

fn word(seed: u64, i: usize) -> u64 {
    seed.wrapping_add((i as u64).wrapping_mul(STEP))
}

/// Writes the word pattern of `seed` over `len` bytes.
///
/// # Safety
/// `ptr..ptr+len` must be valid for writes.
pub unsafe fn fill_pattern(ptr: *mut u8, len: usize, seed: u64) {
    let words = len / 8;
    for i in 0..words {
        // SAFETY: word i lies inside `ptr..ptr+len` (caller's contract); unaligned write.
        unsafe { ptr.add(i * 8).cast::<u64>().write_unaligned(word(seed, i)) };
    }
    let tail = word(seed, words).to_le_bytes();
    for (j, b) in tail.iter().enumerate().take(len - words * 8) {
        // SAFETY: byte words*8+j < len, inside the caller's range.
        unsafe { ptr.add(words * 8 + j).write(*b) };
    }
}

/// Checks the word pattern of `seed` over `len` bytes; on mismatch returns the
/// first bad byte offset with the expected and found bytes.
///
/// # Safety
/// `ptr..ptr+len` must be valid for reads.
pub unsafe fn check_pattern(ptr: *const u8, len: usize, seed: u64) -> Result<(), (usize, u8, u8)> {
    let words = len / 8;
    // Fast pass: OR of XOR differences, 8 words at a time.
    let mut bad = 0u64;
    for i in 0..words {
        // SAFETY: word i lies inside `ptr..ptr+len` (caller's contract); unaligned read.
        let got = unsafe { ptr.add(i * 8).cast::<u64>().read_unaligned() };
        bad |= got ^ word(seed, i);
    }
    let tail = word(seed, words).to_le_bytes();
    for (j, b) in tail.iter().enumerate().take(len - words * 8) {
        // SAFETY: byte words*8+j < len, inside the caller's range.
        bad |= u64::from(unsafe { ptr.add(words * 8 + j).read() } ^ *b);
    }
    if bad == 0 {
        return Ok(());
    }
    for off in 0..len {
        let i = off / 8;
        let expected = word(seed, i).to_le_bytes()[off % 8];
        // SAFETY: off < len, inside the caller's range.
        let got = unsafe { ptr.add(off).read() };
        if got != expected {
            return Err((off, expected, got));
        }
    }
    unreachable!("fast pass found a difference that the byte pass did not")
}

/// First offset in `ptr..ptr+len` whose byte is not `byte`, if any.
///
/// # Safety
/// `ptr..ptr+len` must be valid for reads.
pub unsafe fn first_byte_not(ptr: *const u8, len: usize, byte: u8) -> Option<usize> {
    if len == 0 {
        return None;
    }
    // SAFETY: the caller guarantees the range is readable.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    let mut base = 0;
    for chunk in bytes.chunks(256) {
        // Branch-free accumulation vectorises; locate the byte only on failure.
        if chunk.iter().fold(0u8, |acc, &b| acc | (b ^ byte)) != 0 {
            return chunk.iter().position(|&b| b != byte).map(|p| base + p);
        }
        base += chunk.len();
    }
    None
}

/// A random request size, skewed to small: mostly 1..=1024, some up to 32 KiB,
/// `large_per_mille` of them large (32 KiB + 1 ..= `max_large`, log-uniform).
pub fn random_size(rng: &mut SmallRng, large_per_mille: u32, max_large: usize) -> usize {
    let r = rng.gen_range(0..1000u32);
    if r < large_per_mille {
        log_uniform(rng, 32 * 1024 + 1, max_large)
    } else if r < large_per_mille + 90 {
        log_uniform(rng, 1025, 32 * 1024)
    } else if r < 600 {
        rng.gen_range(1..=128)
    } else {
        rng.gen_range(129..=1024)
    }
}

/// A random power-of-two alignment: mostly 1..=16, `big_percent` % of the time
/// 32..=`max_align`.
pub fn random_align(rng: &mut SmallRng, big_percent: u32, max_align: usize) -> usize {
    if rng.gen_range(0..100) < big_percent {
        1 << rng.gen_range(5..=max_align.trailing_zeros())
    } else {
        1 << rng.gen_range(0..=4)
    }
}

/// The output of a test case run in a child process.
pub struct ChildRun {
    pub status: std::process::ExitStatus,
    /// stdout then stderr.
    pub output: String,
}

/// Runs test `case` of the current test binary alone in a child process (`--exact`,
/// `--nocapture`), with `var=case`, no `GOMALLOC_*` variable of the caller's and the
/// extra environment `env`, killing it after
/// `limit`. Cases that measure the whole process (RSS, address-space limits) use
/// this to stay clear of the other tests of their binary; the case itself tells the
/// parent from the child by `var`. The child runs without backtraces: symbolising
/// one allocates, which a case at its memory limit cannot afford.
pub fn run_case_in_child(case: &str, var: &str, env: &[(&str, &str)], limit: std::time::Duration) -> ChildRun {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([case, "--exact", "--nocapture", "--test-threads=1"])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GOMALLOC_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(var, case).envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn the test binary");
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().expect("stdout")));
    let err = pipe(Box::new(child.stderr.take().expect("stderr")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {case} did not finish in {limit:?}:\n{}{}", out.join().unwrap(), err.join().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    println!("--- child {case} ({status:?}):\n{output}");
    ChildRun { status, output }
}
