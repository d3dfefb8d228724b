//! Options: read once from the environment, without allocating, and changed
//! later through `gom_option_set`; plus the constructor and destructor the
//! library places in `.init_array` and `.fini_array`.
//!
//! Called by `imp.rs` (is `GOMALLOC_VERBOSE` on?) and `gom.rs`
//! (`gom_option_get`/`gom_option_set`). Calls `libc::getenv` and the core's
//! stderr writer. `GOMALLOC_PURGE_DELAY_MS` belongs to the core, which reads
//! it itself (a Rust program has it too): its option forwards to the core's
//! `purge_delay_ms`/`set_purge_delay_ms`.
//!
//! # When the environment is read
//! In the library's constructor (`.init_array`), which runs after libc's, or
//! earlier if an option is needed first (a verbose message, `gom_option_get`).
//! A read attempted before libc has set `environ` (a call from inside the
//! dynamic loader) does not count: the defaults answer and the next attempt
//! reads again. `getenv` allocates nothing; no `std::env` is used, because it
//! allocates and takes a lock.
//!
//! # Concurrency
//! One atomic per option, and a state word (`UNREAD` → `READING` → `READ`)
//! so exactly one thread reads the environment; others use the defaults while
//! it does (a few microseconds, once per process).

use core::ffi::{c_char, c_int, CStr};
use core::sync::atomic::{AtomicI64, AtomicU8, Ordering};

/// The options, numbered as `gom_option_t` in `include/gomalloc.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    /// `GOMALLOC_SHOW_STATS`: print the statistics table to stderr at exit.
    ShowStats = 0,
    /// `GOMALLOC_VERBOSE`: print the allocator's decisions to stderr.
    Verbose = 1,
    /// `GOMALLOC_PURGE_DELAY_MS`: the background scavenger's delay (the
    /// core's value).
    PurgeDelayMs = 2,
}

/// Every option with its environment variable.
const OPTIONS: [(Opt, &CStr); 2] = [(Opt::ShowStats, c"GOMALLOC_SHOW_STATS"), (Opt::Verbose, c"GOMALLOC_VERBOSE")];

impl Opt {
    /// The option numbered `n` in the C enum, if any.
    pub fn from_c(n: c_int) -> Option<Opt> {
        match n {
            0 => Some(Opt::ShowStats),
            1 => Some(Opt::Verbose),
            2 => Some(Opt::PurgeDelayMs),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Opt::ShowStats => "show_stats",
            Opt::Verbose => "verbose",
            Opt::PurgeDelayMs => "purge_delay_ms",
        }
    }
}

/// The values of the options this file keeps (indexed by `Opt`; the core
/// keeps `PurgeDelayMs`).
static VALUES: [AtomicI64; OPTIONS.len()] = [const { AtomicI64::new(0) }; OPTIONS.len()];

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);

extern "C" {
    /// libc's environment; null until libc has initialised itself.
    static environ: *const *const c_char;
}

/// Reads the environment unless that has been done. Cheap once done.
#[inline]
pub fn ensure_read() {
    // Acquire pairs with the Release in `read_environment`: the values are
    // those read from the environment (or set since).
    if STATE.load(Ordering::Acquire) != READ {
        read_environment();
    }
}

#[cold]
#[inline(never)]
fn read_environment() {
    // SAFETY: reading the pointer value of libc's `environ` (a plain global).
    if unsafe { environ }.is_null() {
        return;
    }
    if STATE.compare_exchange(UNREAD, READING, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return;
    }
    let mut bad: Option<(&CStr, &CStr)> = None;
    for (opt, var) in OPTIONS {
        // SAFETY: a NUL-terminated name; getenv allocates nothing. The
        // returned string stays valid while the environment is not changed,
        // which libc's users may not do concurrently with getenv anyway.
        let value = unsafe { libc::getenv(var.as_ptr()) };
        if value.is_null() {
            continue;
        }
        // SAFETY: getenv returns a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(value) };
        match parse(text.to_bytes()) {
            Some(v) => VALUES[opt as usize].store(v, Ordering::Relaxed),
            None => bad = Some((var, text)),
        }
    }
    // Release pairs with the Acquire in `ensure_read`.
    STATE.store(READ, Ordering::Release);
    if verbose() {
        let v = |o: Opt| VALUES[o as usize].load(Ordering::Relaxed);
        gomalloc_core::os::eprint_line(format_args!(
            "gomalloc: options read from the environment: {}={} {}={} {}={}",
            Opt::ShowStats.name(),
            v(Opt::ShowStats),
            Opt::Verbose.name(),
            v(Opt::Verbose),
            Opt::PurgeDelayMs.name(),
            gomalloc_core::purge_delay_ms()
        ));
    }
    if let Some((var, text)) = bad {
        gomalloc_core::os::eprint_line(format_args!(
            "gomalloc: ignoring {}={:?}: expected a number, true/false, yes/no or on/off",
            var.to_str().unwrap_or("?"),
            text
        ));
    }
}

/// An option value: a decimal integer, or a boolean word (case-insensitive).
fn parse(text: &[u8]) -> Option<i64> {
    const TRUE: [&[u8]; 3] = [b"true", b"yes", b"on"];
    const FALSE: [&[u8]; 3] = [b"false", b"no", b"off"];
    if TRUE.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        return Some(1);
    }
    if FALSE.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        return Some(0);
    }
    gomalloc_core::os::parse_decimal(text)
}

/// The current value of `opt`.
pub fn get(opt: Opt) -> i64 {
    if opt == Opt::PurgeDelayMs {
        return gomalloc_core::purge_delay_ms();
    }
    ensure_read();
    VALUES[opt as usize].load(Ordering::Relaxed)
}

/// Changes `opt` for the rest of the process.
pub fn set(opt: Opt, value: i64) {
    ensure_read();
    if opt == Opt::PurgeDelayMs {
        gomalloc_core::set_purge_delay_ms(value);
    } else {
        VALUES[opt as usize].store(value, Ordering::Relaxed);
    }
    if verbose() {
        gomalloc_core::os::eprint_line(format_args!("gomalloc: option {} set to {}", opt.name(), value));
    }
}

/// Is `GOMALLOC_VERBOSE` on? (Only asked on slow paths.)
pub fn verbose() -> bool {
    get(Opt::Verbose) != 0
}

/// The constructor: reads the environment as soon as libc is ready, so
/// `GOMALLOC_VERBOSE` reports the options even in a program that never hits a
/// slow path. Called by the loader (or libc's start code, when linked
/// statically) with `argc, argv, envp`, which it does not need.
extern "C" fn init(_argc: c_int, _argv: *const *const c_char, _envp: *const *const c_char) {
    ensure_read();
}

/// The destructor: the statistics table under `GOMALLOC_SHOW_STATS`. It runs
/// after the program's `atexit` handlers and, for the preloaded library,
/// after the destructors of the libraries loaded after it, so the figures are
/// those at the very end. Not run on `_exit` or a fatal signal.
extern "C" fn fini() {
    if get(Opt::ShowStats) != 0 {
        gomalloc_core::print_stats();
    }
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = init;

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_numbers_and_words() {
        assert_eq!(parse(b"1"), Some(1));
        assert_eq!(parse(b"0"), Some(0));
        assert_eq!(parse(b"250"), Some(250));
        assert_eq!(parse(b"-3"), Some(-3));
        assert_eq!(parse(b"TRUE"), Some(1));
        assert_eq!(parse(b"on"), Some(1));
        assert_eq!(parse(b"No"), Some(0));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"-"), None);
        assert_eq!(parse(b"1x"), None);
        assert_eq!(parse(b"99999999999999999999"), None);
    }
}
