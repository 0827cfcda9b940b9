//! `modify`: data written to a file under a watch through any descriptor,
//! including one opened before watcher started, inherited over fork or
//! duplicated; coalesced per open file, with a count of the writes.

use std::{os::unix::ffi::OsStrExt, path::Path, process::Command};

use serde_json::Value;
use watcher_tests::{
    Tree, Watcher, Writer, assert_valid, helper_bin, path_bytes, recorded_count, recorded_stdin,
    runs_accounting_for, schema, spawn,
};

/// (event, syscall, writes) of each event of `pid`.
fn shape(events: &[Value], pid: u32) -> Vec<(String, String, Option<u64>)> {
    events
        .iter()
        .filter(|ev| ev["pid"] == pid)
        .map(|ev| {
            (
                ev["event"].as_str().unwrap().to_owned(),
                ev["syscall"].as_str().unwrap().to_owned(),
                ev["writes"].as_u64(),
            )
        })
        .collect()
}

/// Every event up to a marker in `dir`, each checked against the schema.
fn checked_events(w: &Watcher, dir: &Path) -> Vec<Value> {
    let events = w.events_until_marker(dir);
    let schema = schema();
    for ev in &events {
        assert_valid(&schema, ev);
    }
    events
}

fn e(event: &str, syscall: &str, writes: Option<u64>) -> (String, String, Option<u64>) {
    (event.to_owned(), syscall.to_owned(), writes)
}

#[test]
fn every_write_syscall_through_a_descriptor_opened_before_start_is_a_modify() {
    let tree = Tree::new("modify-calls");
    let media = tree.dir("media");
    let log = media.join("log");
    let calls = [
        "write",
        "pwrite64",
        "writev",
        "pwritev",
        "pwritev2",
        "sendfile",
        "copy_file_range",
        "splice",
        "fallocate",
    ];
    let mut ops: Vec<&str> = calls.iter().flat_map(|c| [*c, "1"]).collect();
    ops.push("close");
    let writer = Writer::open(&log, &ops);
    let pid = writer.pid();
    // 0: every write is an event, so each names its own syscall.
    let w = Watcher::trace_json_with(
        &["--events", "modify,close_write", "--modify-interval", "0"],
        &[&media],
    );
    writer.go();
    let events = checked_events(&w, &media);
    let mut want: Vec<_> = calls
        .iter()
        .map(|c| {
            let syscall = if *c == "sendfile" { "sendfile64" } else { c };
            e("modify", syscall, Some(1))
        })
        .collect();
    want.push(e("close_write", "close", None));
    assert_eq!(shape(&events, pid), want, "{events:#?}");
    // Its writes to its stdout, a pipe, are no events.
    for ev in events.iter().filter(|ev| ev["pid"] == pid) {
        assert_eq!(path_bytes(ev), log.as_os_str().as_bytes());
        assert_eq!(ev["name"], "");
        assert!(ev["fd"].as_i64().is_some_and(|fd| fd >= 0), "{ev}");
    }
}

#[test]
fn writes_are_coalesced_per_open_file_and_every_one_is_counted() {
    let tree = Tree::new("modify-coalesce");
    let media = tree.dir("media");
    let log = media.join("log");
    // 50 writes, 20 by a child through the inherited descriptor (it exits
    // holding it), 30 through a duplicate that is then closed; the first
    // descriptor is still open when the writer exits.
    let writer = Writer::open(
        &log,
        &[
            "write", "50", "fork", "20", "dup", "write", "30", "close", "keep",
        ],
    );
    let pid = writer.pid();
    let w = Watcher::trace_json_with(
        &["--events", "modify,close_write", "--modify-interval", "1h"],
        &[&media],
    );
    writer.go();
    let events = checked_events(&w, &media);
    let child = events
        .iter()
        .find(|ev| ev["ppid"] == pid)
        .and_then(|ev| ev["pid"].as_u64())
        .expect("the child's events") as u32;
    // Within the hour, one modify for the first write; the child's exit
    // hands over the 49 + 20 after it and forgets the file, so the
    // duplicate's first write is an event again, and its close hands
    // over the other 29.
    assert_eq!(
        shape(&events, pid),
        [
            e("modify", "write", Some(1)),
            e("modify", "write", Some(1)),
            e("modify", "close", Some(29)),
            e("close_write", "close", None),
            e("close_write", "exit", None),
        ],
        "{events:#?}"
    );
    assert_eq!(
        shape(&events, child),
        [
            e("modify", "exit", Some(69)),
            e("close_write", "exit", None)
        ],
        "{events:#?}"
    );
    let counted: u64 = events
        .iter()
        .filter(|ev| ev["event"] == "modify")
        .map(|ev| ev["writes"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 100);
}

#[test]
fn an_open_file_renamed_into_the_tree_is_modified_there_and_not_after_it_leaves() {
    let tree = Tree::new("modify-rename");
    let media = tree.dir("media");
    let outside = tree.dir("outside");
    let before = outside.join("f");
    let inside = media.join("f");
    let gone = outside.join("g");
    // `create`: for the marker.
    let w = Watcher::trace_json_with(
        &["--events", "modify,create", "--modify-interval", "0"],
        &[&media],
    );
    // The helper writes once at each step; the test moves the file in
    // between through `mv` (a rename by another process).
    let mut writer = Writer::open(
        &before,
        &["write", "1", "pause", "write", "1", "pause", "write", "1"],
    );
    let pid = writer.pid();
    writer.step("paused");
    let (_, out) = spawn(Command::new("mv").arg(&before).arg(&inside));
    assert!(out.status.success());
    writer.step("paused");
    let (_, out) = spawn(Command::new("mv").arg(&inside).arg(&gone));
    assert!(out.status.success());
    writer.go();
    let events = w.events_until_marker(&media);
    let mine: Vec<Vec<u8>> = events
        .iter()
        .filter(|ev| ev["pid"] == pid)
        .map(path_bytes)
        .collect();
    assert_eq!(mine, [inside.as_os_str().as_bytes()], "{events:#?}");
}

#[test]
fn run_acts_on_writes_through_a_descriptor_opened_before_start() {
    let tree = Tree::new("modify-run");
    let media = tree.dir("media");
    let file = media.join("db");
    let log = tree.root.join("runs.log");
    let writer = Writer::open(&file, &["write", "10", "close"]);
    let record = helper_bin("record");
    let w = Watcher::start(&[
        "run".as_ref(),
        "--events".as_ref(),
        "modify".as_ref(),
        "--modify-interval".as_ref(),
        "1h".as_ref(),
        "--settle".as_ref(),
        "100ms".as_ref(),
        media.as_os_str(),
        "--".as_ref(),
        record.as_os_str(),
        log.as_os_str(),
    ]);
    writer.go();
    // The first write, then the close handing over the other 9: two
    // events, in one run or two, all about the file.
    let runs = runs_accounting_for(&w, &log, 2);
    for run in &runs {
        assert_eq!(recorded_count(run, "WATCHER_LOST"), 0);
        let stdin = recorded_stdin(run);
        assert_eq!(
            stdin,
            [file.as_os_str().as_bytes(), b"\0"].concat(),
            "{run}"
        );
    }
}

#[test]
fn close_write_for_a_file_unlinked_while_open_and_for_an_o_tmpfile_file() {
    let tree = Tree::new("modify-unlinked");
    let media = tree.dir("media");
    let shm = media.join("db-shm");
    // Open before watcher starts, written, removed, written again, closed:
    // as SQLite's -shm, or Python's open/unlink/close.
    let unlinked = Writer::open(&shm, &["write", "3", "unlink", "write", "2", "close"]);
    let w = Watcher::trace_json_with(
        &[
            "--events",
            "modify,close_write,delete,write",
            "--modify-interval",
            "1h",
        ],
        &[&media],
    );
    // Opened after the start: its open is seen too.
    let unnamed = Writer::tmpfile(&media, &["write", "1", "close"]);
    let (first, second) = (unlinked.pid(), unnamed.pid());
    unlinked.go();
    unnamed.go();
    let events = checked_events(&w, &media);
    assert_eq!(
        shape(&events, first),
        [
            e("modify", "write", Some(1)),
            e("delete", "unlink", None),
            e("modify", "close", Some(4)),
            e("close_write", "close", None),
        ],
        "{events:#?}"
    );
    for ev in events.iter().filter(|ev| ev["pid"] == first) {
        assert_eq!(path_bytes(ev), shm.as_os_str().as_bytes(), "{ev}");
    }
    assert_eq!(
        shape(&events, second),
        [
            e("write", "openat", None),
            e("modify", "write", Some(1)),
            e("close_write", "close", None),
        ],
        "{events:#?}"
    );
    // The kernel names an O_TMPFILE file `#INODE` until it is linked.
    let prefix = [media.as_os_str().as_bytes(), b"/#"].concat();
    for ev in events.iter().filter(|ev| ev["pid"] == second) {
        assert!(path_bytes(ev).starts_with(&prefix), "{ev}");
    }
}
