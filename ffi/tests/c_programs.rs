//! The C and C++ programs of `tests/c/`, compiled with the system compilers
//! (`$CC`, default `cc`; `$CXX`, default `c++`) and run in two forms each:
//!
//! - *static*: linked with `libgomalloc.a`;
//! - *preload*: linked normally, run with `LD_PRELOAD=libgomalloc.so`.
//!
//! The library is built first by running `cargo build -p gomalloc-ffi` with
//! the release profile (or `$GOMALLOC_FFI_PROFILE`, e.g. `test` for debug
//! assertions), so the tests work on a fresh clone; the artefacts' paths come
//! from cargo's JSON messages, which honours any target-directory setting.
//! Every program runs under a time limit, so a deadlock fails instead of
//! hanging CI.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

struct Lib {
    so: PathBuf,
    a: PathBuf,
}

/// Builds the library once per test process.
fn lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| {
        let profile = std::env::var("GOMALLOC_FFI_PROFILE").unwrap_or_else(|_| "release".into());
        let manifest = Path::new(MANIFEST_DIR).join("Cargo.toml");
        // The library is built with the features this test crate has, so
        // `cargo test -p gomalloc-ffi --features secure` tests the secure one.
        let features = if cfg!(feature = "secure") { "secure" } else { "" };
        let out = Command::new(env!("CARGO"))
            .args(["build", "-p", "gomalloc-ffi", "--profile", &profile, "--features", features])
            .args(["--message-format", "json-render-diagnostics", "--manifest-path"])
            .arg(&manifest)
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "cargo build -p gomalloc-ffi --profile {profile} failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let find = |suffix: &str| -> PathBuf {
            stdout
                .lines()
                .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains("gomalloc-ffi"))
                .flat_map(|l| l.split('"'))
                .find(|s| s.ends_with(suffix))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("cargo reported no {suffix}:\n{stdout}"))
        };
        let lib = Lib { so: find("/libgomalloc.so"), a: find("/libgomalloc.a") };
        assert!(lib.so.is_file() && lib.a.is_file(), "missing {:?} or {:?}", lib.so, lib.a);
        lib
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Form {
    /// Linked with libgomalloc.a.
    Static,
    /// Linked normally, run with LD_PRELOAD.
    Preload,
}

fn is_cxx(src: &str) -> bool {
    src.ends_with(".cpp")
}

/// Compiles `tests/c/<src>` in `form` once per test process; returns the
/// executable.
fn program(src: &str, form: Form) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<(String, Form), PathBuf>>> = Mutex::new(None);
    let lib = lib();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(exe) = built.get(&(src.to_string(), form)) {
        return exe.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-c-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let stem = src.split('.').next().unwrap();
    let exe = dir.join(format!("{stem}-{}", if form == Form::Static { "static" } else { "preload" }));
    let c_dir = Path::new(MANIFEST_DIR).join("tests/c");
    let include = Path::new(MANIFEST_DIR).join("../include");
    let (compiler, std) = if is_cxx(src) {
        (std::env::var("CXX").unwrap_or_else(|_| "c++".into()), "-std=c++17")
    } else {
        (std::env::var("CC").unwrap_or_else(|_| "cc".into()), "-std=gnu11")
    };
    let mut cmd = Command::new(&compiler);
    cmd.args([std, "-O2", "-g", "-fno-builtin", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(&c_dir)
        .args(cfg!(feature = "secure").then_some("-DGOM_SECURE"))
        .arg(c_dir.join(src))
        .arg("-o")
        .arg(&exe);
    match form {
        Form::Static => {
            cmd.arg(&lib.a).args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"]);
        }
        Form::Preload => {
            cmd.arg("-DGOM_PRELOAD").args(["-lpthread", "-ldl"]);
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    built.insert((src.to_string(), form), exe.clone());
    exe
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!("status {:?}\n--- stdout\n{}--- stderr\n{}", self.status, self.stdout, self.stderr)
    }

    fn assert_ok(&self, what: &str) {
        assert!(self.status.success(), "{what}: {}", self.describe());
    }
}

/// Runs `exe args` in `form` with extra environment `env`, at most `limit`.
fn run(exe: &Path, form: Form, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("GOMALLOC_") || k == "LD_PRELOAD" {
            cmd.env_remove(k);
        }
    }
    if form == Form::Preload {
        cmd.env("LD_PRELOAD", &lib().so);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {exe:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!("{exe:?} {args:?} ({form:?}) did not finish in {limit:?}\n--- stdout\n{o}--- stderr\n{e}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// Linux's signal number of SIGABRT.
const SIGABRT: i32 = 6;

const MINUTE: Duration = Duration::from_secs(60);

fn run_ok(src: &str, form: Form, args: &[&str], expect: &str) -> Run {
    let exe = program(src, form);
    let r = run(&exe, form, args, &[], 3 * MINUTE);
    r.assert_ok(&format!("{src} ({form:?})"));
    assert!(r.stdout.contains(expect), "{src} ({form:?}) printed no {expect:?}: {}", r.describe());
    print!("{src} ({form:?}): {}", r.stdout);
    r
}

#[test]
fn header_compiles_as_strict_c11_and_cxx17() {
    let include = Path::new(MANIFEST_DIR).join("../include");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-c-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("header.c");
    std::fs::write(
        &src,
        "#include \"gomalloc.h\"\n#include \"gomalloc.h\"\n\
         static void line(const char *l, void *a) { (void)l; (void)a; }\n\
         int use(void);\n\
         int use(void) { struct gom_stats s; s.size = sizeof s; gom_stats_print(line, 0);\n\
         return gom_stats_get(&s) + (int)gom_option_get(GOM_OPTION_VERBOSE) + gom_version(); }\n",
    )
    .unwrap();
    let cases =
        [("cc", "c", "-std=c11"), ("cc", "c", "-std=c17"), ("c++", "c++", "-std=c++17"), ("c++", "c++", "-std=c++11")];
    for (compiler, lang, std) in cases {
        let out = Command::new(compiler)
            .args(["-x", lang, std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-I"])
            .arg(&include)
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "{compiler} {std}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn api_static() {
    run_ok("api.c", Form::Static, &[], "api: ok");
}

#[test]
fn api_preload() {
    run_ok("api.c", Form::Preload, &[], "api: ok");
}

/// Options from the environment: read (reported under GOMALLOC_VERBOSE) and
/// seen by gom_option_get (api.c checks), statistics printed at exit.
#[test]
fn options_from_the_environment() {
    for form in [Form::Static, Form::Preload] {
        let exe = program("api.c", form);
        let env = [("GOMALLOC_SHOW_STATS", "1"), ("GOMALLOC_VERBOSE", "1"), ("GOMALLOC_PURGE_DELAY_MS", "250")];
        let r = run(&exe, form, &[], &env, 3 * MINUTE);
        r.assert_ok("api with options");
        assert!(
            r.stderr.contains("gomalloc: options read from the environment: show_stats=1 verbose=1 purge_delay_ms=250"),
            "{}",
            r.describe()
        );
        // One table from api.c's own gom_stats_print(NULL, NULL), one at exit.
        assert_eq!(r.stderr.matches("gomalloc statistics").count(), 2, "no table at exit: {}", r.describe());
        assert!(r.stderr.trim_end().ends_with(|c: char| c.is_ascii_digit()), "the table comes last: {}", r.describe());
        let quiet = run(&exe, form, &[], &[("GOMALLOC_SHOW_STATS", "0")], 3 * MINUTE);
        quiet.assert_ok("api with show_stats=0");
        assert_eq!(quiet.stderr.matches("gomalloc statistics").count(), 1, "only gom_stats_print's own table");
    }
}

/// The default build ignores a foreign free (the secure build stops: see
/// `misuse_suite`).
#[cfg(not(feature = "secure"))]
#[test]
fn foreign_free_is_ignored() {
    for form in [Form::Static, Form::Preload] {
        let exe = program("api.c", form);
        let r = run(&exe, form, &["free-foreign"], &[("GOMALLOC_VERBOSE", "1")], MINUTE);
        r.assert_ok("free of a foreign pointer");
        assert!(r.stderr.contains("gomalloc: ignoring free of 0x"), "{}", r.describe());
        let r = run(&exe, form, &["free-foreign"], &[], MINUTE);
        r.assert_ok("free of a foreign pointer");
        assert!(!r.stderr.contains("gomalloc"), "silent without GOMALLOC_VERBOSE: {}", r.describe());
    }
}

/// The misuse suite (`tests/c/misuse.c`): each case must stop the process
/// with SIGABRT and exactly one stderr line that names the problem and the
/// address, in both link forms. A foreign free is ignored by the default
/// build (see the header) and stops the secure one.
#[test]
fn misuse_suite() {
    let secure = cfg!(feature = "secure");
    let mut cases = vec![
        ("double-free-small", "double free of"),
        ("double-free-large", "double free of"),
        ("interior-free", "interior pointer"),
        ("free-after-realloc", "double free of"),
    ];
    let foreign = ["foreign-free-stack", "foreign-free-mmap"];
    if secure {
        cases.extend(foreign.iter().map(|&c| (c, "not allocated by gomalloc")));
        cases.extend([
            ("double-free-not-at-head", "double free of"),
            ("write-past-end", "written past its end, at offset 50"),
            ("free-list-corruption", "free list corrupted"),
        ]);
    }
    for form in [Form::Static, Form::Preload] {
        let exe = program("misuse.c", form);
        for &(case, expect) in &cases {
            let r = run(&exe, form, &[case], &[], MINUTE);
            let addr = r.stdout.lines().find_map(|l| l.strip_prefix("addr=")).unwrap_or("(none)").to_string();
            let lines: Vec<&str> = r.stderr.lines().collect();
            assert_eq!(r.status.signal(), Some(SIGABRT), "misuse {case} ({form:?}) must abort: {}", r.describe());
            assert!(
                lines.len() == 1 && lines[0].starts_with("gomalloc: ") && lines[0].contains(expect),
                "misuse {case} ({form:?}): want one line saying {expect:?}: {}",
                r.describe()
            );
            // glibc's %p and the library's {:#x} both print 0x and lowercase hex.
            assert!(
                lines[0].contains(&addr),
                "misuse {case} ({form:?}): message does not name {addr}: {}",
                r.describe()
            );
            println!("misuse {case} ({form:?}): {}", lines[0]);
        }
        if !secure {
            for case in foreign {
                let r = run(&exe, form, &[case], &[], MINUTE);
                r.assert_ok(&format!("misuse {case} ({form:?})"));
                assert!(r.stdout.contains("ignored") && r.stderr.is_empty(), "{case} ({form:?}): {}", r.describe());
            }
        }
    }
}

/// Misuse that must stop the process with SIGABRT and a one-line message.
#[test]
fn misuse_aborts_with_a_message() {
    let cases = [
        ("api.c", "realloc-foreign", "gomalloc: realloc of 0x"),
        ("api.c", "double-free", "gomalloc: double free of 0x"),
        ("api.c", "interior-free", "interior pointer"),
        ("api.c", "interior-free-large", "interior pointer of a large object"),
        ("api.c", "interior-realloc", "interior pointer"),
        // A C program has no C++ runtime to throw std::bad_alloc with
        // (cxx.cpp checks the throw and the new_handler).
        ("api.c", "new-oom", "gomalloc: operator new: out of memory"),
    ];
    for form in [Form::Static, Form::Preload] {
        for (src, mode, message) in cases {
            let exe = program(src, form);
            let r = run(&exe, form, &[mode], &[], MINUTE);
            assert_eq!(r.status.signal(), Some(SIGABRT), "{src} {mode} ({form:?}) must abort: {}", r.describe());
            assert!(r.stderr.contains(message), "{src} {mode} ({form:?}): no {message:?}: {}", r.describe());
        }
    }
}

#[test]
fn stress_static() {
    run_ok("stress.c", Form::Static, &[], "stress: ok");
}

#[test]
fn stress_preload() {
    run_ok("stress.c", Form::Preload, &[], "stress: ok");
}

/// `reentry.c`: the library re-entered from inside itself, by fork handlers
/// registered before it and by `pthread_create` starting the scavenger.
fn reentry(form: Form) {
    run_ok("reentry.c", form, &["atfork"], "atfork ok");
    let exe = program("reentry.c", form);
    for size in (16..=1024).step_by(16) {
        let r = run(&exe, form, &["trim", &size.to_string()], &[], Duration::from_secs(30));
        r.assert_ok(&format!("reentry trim {size} ({form:?})"));
        assert!(r.stdout.contains("trim ok"), "reentry trim {size} ({form:?}): {}", r.describe());
    }
}

#[test]
fn reentry_static() {
    reentry(Form::Static);
}

#[test]
fn reentry_preload() {
    reentry(Form::Preload);
}

#[test]
fn fork_static() {
    run_ok("fork.c", Form::Static, &[], "rounds ok");
}

#[test]
fn fork_preload() {
    run_ok("fork.c", Form::Preload, &[], "rounds ok");
}

#[test]
fn thread_churn_static() {
    run_ok("churn.c", Form::Static, &[], "churn: ok");
}

#[test]
fn thread_churn_preload() {
    run_ok("churn.c", Form::Preload, &[], "churn: ok");
}

#[test]
fn cxx_static() {
    run_ok("cxx.cpp", Form::Static, &[], "cxx: ok");
}

#[test]
fn cxx_preload() {
    run_ok("cxx.cpp", Form::Preload, &[], "cxx: ok");
}

/// Out of memory under `RLIMIT_AS`: NULL and ENOMEM from every allocating
/// entry point, failed reallocs keep their blocks, recovery after frees.
#[test]
fn oom_static() {
    run_ok("oom.c", Form::Static, &[], "oom: ok");
}

#[test]
fn oom_preload() {
    run_ok("oom.c", Form::Preload, &[], "oom: ok");
}

#[test]
fn gc_api_static() {
    run_ok("gc_api.c", Form::Static, &[], "gc_api: ok");
}

#[test]
fn gc_api_preload() {
    run_ok("gc_api.c", Form::Preload, &[], "gc_api: ok");
}

/// Misuse of the GC API the library detects: SIGABRT and a one-line message.
#[test]
fn gc_misuse_aborts_with_a_message() {
    let cases = [
        ("alloc-outside-scope", "gomalloc: gom_gc_alloc: called outside gom_gc_enter/gom_gc_leave"),
        ("null-heap", "gomalloc: gom_gc_enter: the heap is NULL"),
        ("nested-enter", "gomalloc: gom_gc_enter: the thread is already inside a scope"),
        ("leave-outside", "gomalloc: gom_gc_leave: the thread is not inside a scope"),
        ("collect-in-scope", "gomalloc: gom_gc_collect: called inside a scope"),
        ("write-wrong-heap", "gomalloc: gom_gc_write (value): 0x"),
        ("root-wrong-heap", "gomalloc: gom_gc_root_get: the root belongs to another heap"),
        ("weak-wrong-heap", "gomalloc: gom_gc_weak_get: the weak handle belongs to another heap"),
        ("write-leaf-object", "gomalloc: gom_gc_write: the object's type has no trace callback"),
        ("free-while-other-inside", "gomalloc: gom_gc_heap_free: another thread is inside a scope of the heap"),
        ("write-bad-slot", "gomalloc: gom_gc_write: the slot is not an aligned pointer field"),
        ("write-not-object", "is not a live object of this GC heap"),
        ("collect-in-destroy", "gomalloc: gom_gc_collect: from a Drop (or destroy callback) run by a sweep"),
    ];
    for form in [Form::Static, Form::Preload] {
        let exe = program("gc_api.c", form);
        for (mode, message) in cases {
            let r = run(&exe, form, &[mode], &[], MINUTE);
            assert_eq!(r.status.signal(), Some(SIGABRT), "gc_api {mode} ({form:?}) must abort: {}", r.describe());
            assert!(r.stderr.contains(message), "gc_api {mode} ({form:?}): no {message:?}: {}", r.describe());
        }
    }
}

#[test]
fn gc_threads_static() {
    run_ok("gc_threads.c", Form::Static, &[], "gc_threads: ok");
}

#[test]
fn gc_threads_preload() {
    run_ok("gc_threads.c", Form::Preload, &[], "gc_threads: ok");
}
