//! `watcher run`: the action runs after writes, and not without them.

use std::{
    ffi::OsStr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use watcher_tests::{PATIENCE, Tree, Watcher, opener, opener_bin};

/// `watcher run --interval INTERVAL WATCHED -- ACTION...`
fn start(interval: &str, watched: &Path, action: &[&OsStr]) -> Watcher {
    let mut args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "--interval".as_ref(),
        interval.as_ref(),
        watched.as_os_str(),
        "--".as_ref(),
    ];
    args.extend(action);
    Watcher::start(&args)
}

/// Runs of the action so far: it appends a line to `log` each time.
fn runs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn wait_until(w: &Watcher, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; stderr:\n{}",
            w.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_action_runs_after_a_write_and_its_output_reaches_the_log() {
    let tree = Tree::new("run");
    let watched = tree.dir("media");
    let flag = tree.root.join("action-ran");
    // The action, `opener openat:wc FLAG`, creates FLAG and prints `ok`.
    let w = start(
        "200ms",
        &watched,
        &[
            opener_bin().as_os_str(),
            "openat:wc".as_ref(),
            flag.as_os_str(),
        ],
    );

    let (_, results) = opener(&[("openat:wc", &watched.join("new.mp3"))]);
    assert_eq!(results, ["ok"]);
    wait_until(&w, "the action", || flag.exists());
    assert_eq!(w.next_line(), "ok", "the action's stdout is watcher's");
    wait_until(&w, "the action's end", || {
        w.stderr().contains("action finished")
    });
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("watcher: running "),
        "{}",
        stopped.stderr
    );
    assert!(stopped.stderr.contains("(1 changes)"), "{}", stopped.stderr);
}

#[test]
fn no_action_without_a_write_under_the_watch() {
    let tree = Tree::new("run-idle");
    let watched = tree.dir("media");
    let outside = tree.dir("other");
    std::fs::write(watched.join("existing"), b"x").unwrap();
    let flag = tree.root.join("action-ran");
    let w = start(
        "100ms",
        &watched,
        &[
            opener_bin().as_os_str(),
            "openat:wc".as_ref(),
            flag.as_os_str(),
        ],
    );

    let (_, results) = opener(&[
        ("openat:r", &watched.join("existing")),
        ("openat:wc", &outside.join("file")),
        ("openat:w", &watched.join("missing")),
    ]);
    assert_eq!(results, ["ok", "ok", "err 2"]);
    // Ten intervals pass without a run. (A slow machine makes this check
    // weaker, never wrong.)
    thread::sleep(Duration::from_secs(1));
    assert!(
        !flag.exists(),
        "the action ran without a write; stderr:\n{}",
        w.stderr()
    );
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn each_interval_with_writes_runs_the_action_again() {
    let tree = Tree::new("run-again");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    std::fs::write(&log, "").unwrap();
    let w = start(
        "100ms",
        &watched,
        &[
            "sed".as_ref(),
            "-i".as_ref(),
            "$ a run".as_ref(),
            log.as_os_str(),
        ],
    );
    // sed appends nothing to an empty file, so give it a first line.
    std::fs::write(&log, "start\n").unwrap();
    for n in 1..=3 {
        let (_, results) = opener(&[("openat:wc", &watched.join(format!("file{n}")))]);
        assert_eq!(results, ["ok"]);
        wait_until(&w, &format!("run {n}"), || runs(&log) > n);
    }
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}
