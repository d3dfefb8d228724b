//! Thread exit and fork under `GoMalloc` as the global allocator: a thread's
//! cache is flushed and destroyed when it exits (so thread churn does not
//! leak caches), and a child forked while other threads allocate can
//! allocate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: gomalloc::GoMalloc = gomalloc::GoMalloc;

#[test]
fn thread_churn_does_not_leak_caches() {
    let before = gomalloc::stats().thread_caches;
    for round in 0..20 {
        let handles: Vec<_> = (0..50)
            .map(|t| {
                std::thread::spawn(move || {
                    let v: Vec<Box<[u8]>> = (0..200).map(|i| vec![(t + i) as u8; 16 + i * 8].into()).collect();
                    v.iter().map(|b| b.len()).sum::<usize>()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 50 * (0..200).map(|i| 16 + i * 8).sum::<usize>(), "round {round}");
    }
    let after = gomalloc::stats().thread_caches;
    // Other tests in this binary may be running threads of their own.
    assert!(after <= before + 8, "caches before {before}, after 1000 threads {after}");
}

#[test]
fn forked_child_can_allocate_while_parent_threads_allocate() {
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (stop, running) = (stop.clone(), running.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                loop {
                    let v: Vec<Vec<u8>> = (0..64).map(|i| vec![t as u8; (i * 97) % 4000 + 1]).collect();
                    n += v.len() as u64;
                    let big = vec![1u8; 100_000];
                    n += big[99_999] as u64;
                    if n == 65 {
                        running.fetch_add(1, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Relaxed) {
                        return n;
                    }
                }
            })
        })
        .collect();
    // The forks must overlap the workers' allocations: wait until each has
    // allocated once. (Under load a new thread could otherwise first run
    // after the last fork, which once failed this test on a busy machine.)
    while running.load(Ordering::Relaxed) < 3 {
        std::thread::yield_now();
    }
    for _ in 0..20 {
        // SAFETY: fork in a test; the child only allocates, frees and exits
        // with `_exit`, never returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let v: Vec<String> = (0..10_000).map(|i| format!("child {i}")).collect();
            let big = vec![3u8; 1 << 20];
            let ok = v[9_999] == "child 9999" && big[12345] == 3;
            // SAFETY: `_exit` ends the child without running anything else.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        // Each worker returns (none was left waiting on a lock the forks held).
        w.join().unwrap();
    }
}
