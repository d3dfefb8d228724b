//! The C library of gomalloc: `libgomalloc.so` and `libgomalloc.a`.
//!
//! ```sh
//! cargo build --release -p gomalloc-ffi
//! LD_PRELOAD=$PWD/target/release/libgomalloc.so python3 ...   # any program
//! cc prog.c -Iinclude target/release/libgomalloc.a -lpthread -ldl -lm   # static
//! ```
//!
//! # What it exports
//! - `libc_api.rs`: `malloc`, `free`, `calloc`, `realloc`, `reallocarray`,
//!   `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`,
//!   `malloc_usable_size`, `cfree`, C23's `free_sized`/`free_aligned_sized`
//!   and glibc's `__libc_*` entry points, with
//!   glibc's semantics, so a program that is preloaded with the library (or
//!   linked with the static one) allocates from gomalloc throughout, libc's
//!   internal allocations included.
//! - `cxx.rs`: the C++ `operator new`/`delete` family by mangled name.
//! - `gom.rs`: the prefixed API declared in `include/gomalloc.h`.
//! - `gc.rs`: `gom_gc_*`, the garbage-collected heap from C (forwarding to
//!   the core's `gc::raw`; these never run on a `malloc` path and may
//!   allocate and start threads).
//!
//! Every `extern "C"` function forwards to one Rust function (`imp.rs`,
//! `stats.rs`, `options.rs`), which makes each check once. Options are read
//! from the environment in `options.rs`.
//!
//! # Rules for every exported path
//! The first call may come before any constructor has run, from inside the
//! dynamic loader, from a thread that is being set up or torn down, or from a
//! signal-free but arbitrary point of libc (`fork`, `atexit`). So no exported
//! function allocates through anything but the core, uses `std` I/O,
//! `std::env`, `dlsym` or a lock of its own, with one exception: a throwing
//! `operator new` the heap cannot satisfy looks up the C++ runtime's
//! `new_handler` and `bad_alloc` thrower (`cxx.rs`). The crate is `no_std` (outside
//! its unit tests) to make that hold by construction; diagnostics go through
//! the core's allocation-free `os::eprint_line`/`os::fatal`.
//!
//! # No unwinding across the ABI
//! Nothing here panics: sizes are combined with checked arithmetic and every
//! failure is a return value or a deliberate `abort()` with a message. Should a
//! panic happen anyway (a bug), it cannot unwind into C: since Rust 1.81 a
//! panic that reaches an `extern "C"` function aborts the process
//! (`rust-version = "1.81"` in `Cargo.toml` makes that the floor). The four
//! throwing `operator new`s are `extern "C-unwind"`, so that the
//! `std::bad_alloc` they throw (or their `new_handler` throws) reaches the
//! C++ caller.
//!
//! # Threads and fork
//! The core gives each thread its cache on its first allocation and flushes
//! it from a `pthread` key destructor at thread exit, so threads that come
//! and go leak nothing; it registers `pthread_atfork` handlers on the first
//! small allocation, so the child of a multi-threaded `fork()` can allocate.
//! The library adds no state of its own beyond the options.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cxx;
pub mod gc;
pub mod gom;
mod imp;
pub mod libc_api;
mod options;
pub mod stats;

#[cfg(test)]
mod tests {
    use crate::options::Opt;
    use crate::stats::{GomStats, GOM_NUM_CLASSES};
    use std::string::String;

    fn header() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/gomalloc.h")).unwrap()
    }

    /// The value of `#define NAME value` in the header.
    fn define(h: &str, name: &str) -> i64 {
        let line = h
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["#define", name]))
            .unwrap_or_else(|| panic!("#define {name} missing from gomalloc.h"));
        line.split_whitespace().nth(2).unwrap().trim_end_matches('L').parse().unwrap()
    }

    /// The value of an enumerator `NAME = value,` in the header.
    fn enumerator(h: &str, name: &str) -> i64 {
        let line = h
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(name) && l[name.len()..].trim_start().starts_with('='))
            .unwrap_or_else(|| panic!("enumerator {name} missing from gomalloc.h"));
        let value = line.split('=').nth(1).unwrap().trim_start();
        value.split(|c: char| c == ',' || c.is_whitespace()).next().unwrap().parse().unwrap()
    }

    #[test]
    fn header_constants_match_the_library() {
        let h = header();
        assert_eq!(define(&h, "GOM_NUM_CLASSES"), GOM_NUM_CLASSES as i64);
        let v = |s: &str| -> i64 { s.parse().unwrap() };
        let version = v(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
            + v(env!("CARGO_PKG_VERSION_MINOR")) * 100
            + v(env!("CARGO_PKG_VERSION_PATCH"));
        assert_eq!(define(&h, "GOMALLOC_VERSION"), version);
        assert_eq!(i64::from(crate::gom::VERSION), version);
        assert_eq!(enumerator(&h, "GOM_OPTION_SHOW_STATS"), Opt::ShowStats as i64);
        assert_eq!(enumerator(&h, "GOM_OPTION_VERBOSE"), Opt::Verbose as i64);
        assert_eq!(enumerator(&h, "GOM_OPTION_PURGE_DELAY_MS"), Opt::PurgeDelayMs as i64);
        // struct gom_gc_stats: one 64-bit field per line of the header's
        // definition, in the order of `RawStats`.
        let gc = h.split("struct gom_gc_stats {").nth(1).unwrap().split("};").next().unwrap();
        let fields: std::vec::Vec<&str> = gc
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("uint64_t") || l.starts_with("int64_t"))
            .map(|l| l.split_whitespace().nth(1).unwrap().trim_end_matches(';'))
            .collect();
        assert_eq!(fields.len() * 8, core::mem::size_of::<gomalloc_core::gc::raw::RawStats>());
        assert_eq!(fields.first(), Some(&"size"));
        assert_eq!(fields.last(), Some(&"assist_cpu_max_ns"));
        assert_eq!(
            core::mem::size_of::<gomalloc_core::gc::raw::RawType>(),
            5 * core::mem::size_of::<usize>(),
            "gom_gc_type is five pointer-sized fields"
        );
        assert_eq!(
            core::mem::size_of::<GomStats>(),
            (13 + 3 * GOM_NUM_CLASSES) * core::mem::size_of::<usize>(),
            "gom_stats is all size_t, without padding"
        );
    }
}
