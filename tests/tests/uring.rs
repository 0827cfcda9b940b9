//! Operations submitted through io_uring: opens, writes, renames,
//! deletes, mkdirs, links, truncates and allocations are reported with
//! the submitting process and `io_uring:OP` as their syscall; failed ones
//! are not; `run` acts on them. Without BTF they are not followed, and
//! watcher says which processes hold io_uring instances.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;
use watcher_tests::{
    Tree, Watcher, assert_valid, helper_bin, path_bytes, recorded_stdin, run_recording,
    runs_accounting_for, schema, spawn, watcher_bin, without_btf,
};

/// Runs the `uring` helper with `(OP, ARG)` pairs in `dir`; returns its
/// pid and one result per operation, or `None` when this kernel has no
/// io_uring (or has it disabled).
fn uring(dir: &Path, ops: &[(&str, &str)]) -> Option<(u32, Vec<String>)> {
    let mut cmd = Command::new(helper_bin("uring"));
    cmd.current_dir(dir);
    for (op, arg) in ops {
        cmd.arg(op).arg(arg);
    }
    let (pid, out) = spawn(&mut cmd);
    assert!(
        out.status.success(),
        "uring failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<String> = String::from_utf8(out.stdout)
        .expect("ASCII")
        .lines()
        .map(str::to_owned)
        .collect();
    // EPERM: disabled (kernel.io_uring_disabled); ENOSYS: not built.
    if results.len() == 1 && ops.len() > 1 && ["err 1", "err 38"].contains(&results[0].as_str()) {
        eprintln!("no io_uring here ({}): skipped", results[0]);
        return None;
    }
    Some((pid, results))
}

/// (event, syscall, path) of each event of `pid`.
fn seen(events: &[Value], pid: u32) -> Vec<(String, String, Vec<u8>)> {
    events
        .iter()
        .filter(|ev| ev["pid"] == pid)
        .map(|ev| {
            (
                ev["event"].as_str().unwrap().to_owned(),
                ev["syscall"].as_str().unwrap().to_owned(),
                path_bytes(ev),
            )
        })
        .collect()
}

fn e(event: &str, op: &str, path: &Path) -> (String, String, Vec<u8>) {
    (
        event.to_owned(),
        format!("io_uring:{op}"),
        path.as_os_str().as_encoded_bytes().to_vec(),
    )
}

#[test]
fn io_uring_operations_are_reported_with_the_submitting_process() {
    let tree = Tree::new("uring-ops");
    let media = tree.dir("media");
    let outside = tree.dir("outside");
    // One interval for the whole test: the writes before the close are
    // counted by the close's modify, whatever the machine's pace.
    let w = Watcher::trace_json_with(&["--events", "all", "--modify-interval", "1h"], &[&media]);
    let ops = [
        ("openat:wc", "new"),
        ("write", "hello"),
        ("writev", "more"),
        ("fallocate", "100"),
        ("ftruncate", "3"),
        ("close", "-"),
        ("mkdirat", "sub"),
        ("from", "new"),
        ("renameat", "sub/moved"),
        ("from", "sub/moved"),
        ("linkat", "hard"),
        ("symlinkat", "soft"),
        ("unlinkat", "hard"),
        ("openat2:wt", "sub/moved"),
        ("close", "-"),
        ("mkdirat", "empty"),
        ("rmdirat", "empty"),
        // Failures: no event.
        ("unlinkat", "missing"),
        ("mkdirat", "sub"),
        ("openat:w", "missing"),
        // A direct descriptor: opened into the ring's own table.
        ("direct:wc", "direct"),
        ("write", "x"),
        ("close", "-"),
    ];
    let Some((pid, results)) = uring(&media, &ops) else {
        return;
    };
    let mut want_results = vec!["ok"; ops.len()];
    want_results[17..20].copy_from_slice(&["err 2", "err 17", "err 2"]);
    assert_eq!(results, want_results);
    // The same operations outside the tree: nothing.
    let (other, results) = uring(&outside, &ops[..7]).unwrap();
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");

    let events = w.events_until_marker(&media);
    let schema = schema();
    for ev in &events {
        assert_valid(&schema, ev);
    }
    assert_eq!(seen(&events, other), []);
    let (new, sub) = (media.join("new"), media.join("sub"));
    let moved = sub.join("moved");
    let (hard, soft) = (media.join("hard"), media.join("soft"));
    let direct = media.join("direct");
    assert_eq!(
        seen(&events, pid),
        [
            e("create", "openat", &new),
            e("write", "openat", &new),
            e("modify", "write", &new),
            e("truncate", "ftruncate", &new),
            e("modify", "close", &new),
            e("close_write", "close", &new),
            e("mkdir", "mkdirat", &sub),
            e("rename", "renameat", &moved),
            e("link", "linkat", &hard),
            e("link", "symlinkat", &soft),
            e("delete", "unlinkat", &hard),
            e("truncate", "openat2", &moved),
            e("write", "openat2", &moved),
            e("close_write", "close", &moved),
            e("mkdir", "mkdirat", &media.join("empty")),
            e("delete", "unlinkat", &media.join("empty")),
            e("write", "openat", &direct),
            e("modify", "write", &direct),
        ]
    );
    let mine: Vec<&Value> = events.iter().filter(|ev| ev["pid"] == pid).collect();
    for ev in &mine {
        // The submitting thread, whichever thread completed it.
        assert_eq!(
            (&ev["tid"], &ev["comm"]),
            (&Value::from(pid), &Value::from("uring"))
        );
    }
    let first_modify = mine.iter().find(|ev| ev["event"] == "modify").unwrap();
    assert_eq!(first_modify["writes"], 1);
    // writev and fallocate, handed over at the close.
    assert_eq!(mine[4]["writes"], 2);
    assert_eq!(mine[7]["old_path"], Value::from(new.to_str().unwrap()));
    assert_eq!(mine[7]["name"], "sub/moved");
    assert_eq!(mine[8]["old_path"], Value::from(moved.to_str().unwrap()));
    assert_eq!(mine[10]["flags"], "");
    // The kernel adds O_LARGEFILE to io_uring's opens.
    assert_eq!(mine[11]["flags"], "O_WRONLY|O_TRUNC|O_LARGEFILE|O_CLOEXEC");
    // An fd for the opens and operations on the process's descriptors,
    // none for the direct descriptor.
    assert!(mine[0]["fd"].as_u64().is_some(), "{}", mine[0]);
    assert!(mine[3]["fd"].as_u64().is_some(), "{}", mine[3]);
    assert_eq!(mine[16].get("fd"), None, "{}", mine[16]);
    assert_eq!(mine[17].get("fd"), None, "{}", mine[17]);
}

/// With the default kinds no write can be selected, so the map that keeps
/// written files' verdicts has one entry: an io_uring `ftruncate` (a
/// `truncate`) takes its verdict without keeping it, file after file.
#[test]
fn io_uring_ftruncates_are_seen_with_the_default_kinds() {
    let tree = Tree::new("uring-truncate");
    let media = tree.dir("media");
    let outside = tree.dir("outside");
    let w = Watcher::trace_json_with(&[], &[&media]);
    let ops = [
        ("openat:wc", "a"),
        ("ftruncate", "3"),
        ("close", "-"),
        ("openat:wc", "b"),
        ("ftruncate", "5"),
        ("close", "-"),
        ("openat:w", "a"),
        ("ftruncate", "1"),
        ("close", "-"),
    ];
    let Some((pid, results)) = uring(&media, &ops) else {
        return;
    };
    assert_eq!(results, vec!["ok"; ops.len()]);
    let (other, results) = uring(&outside, &ops).unwrap();
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");

    let events = w.events_until_marker(&media);
    assert_eq!(seen(&events, other), []);
    let truncates: Vec<_> = seen(&events, pid)
        .into_iter()
        .filter(|(event, ..)| event == "truncate")
        .collect();
    let (a, b) = (media.join("a"), media.join("b"));
    assert_eq!(
        truncates,
        [
            e("truncate", "ftruncate", &a),
            e("truncate", "ftruncate", &b),
            e("truncate", "ftruncate", &a),
        ]
    );
}

#[test]
fn run_acts_on_changes_made_through_io_uring() {
    let tree = Tree::new("uring-run");
    let media = tree.dir("media");
    let log = tree.root.join("runs.log");
    let w = run_recording(&media, &log);
    let Some((_, results)) = uring(&media, &[("mkdirat", "album"), ("openat:wc", "album/song")])
    else {
        return;
    };
    assert_eq!(results, ["ok", "ok"]);
    // The mkdir, then the open (a create and a write).
    let runs = runs_accounting_for(&w, &log, 3);
    let stdin: Vec<u8> = runs.iter().flat_map(recorded_stdin).collect();
    let album = media.join("album");
    let want = [
        album.as_os_str().as_encoded_bytes(),
        b"\0",
        album.join("song").as_os_str().as_encoded_bytes(),
        b"\0",
    ]
    .concat();
    assert_eq!(stdin, want, "{runs:?}");
}

/// Without BTF io_uring is not followed, and the warning at start says
/// which processes hold io_uring instances at that moment.
#[test]
fn without_btf_processes_holding_io_uring_instances_are_named() {
    let tree = Tree::new("uring-nobtf");
    let mut holder = Command::new(helper_bin("opener"))
        .args(["uring", "-", "wait", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    // EPERM: io_uring disabled (kernel.io_uring_disabled); ENOSYS: not built.
    if ["err 1", "err 38"].contains(&first.trim()) {
        drop(holder.stdin.take());
        let _ = holder.wait();
        eprintln!("no io_uring here ({}): skipped", first.trim());
        return;
    }
    assert_eq!(first.trim(), "ok", "io_uring_setup");
    let w = Watcher::start_command(without_btf(r#"exec "$0" trace "$1""#).arg(&tree.root));
    let said = "operations submitted through io_uring are not seen; these processes hold io_uring \
                instances now: ";
    w.wait_for_log(said, 1);
    let log = w.stderr();
    let pids = log
        .lines()
        .find_map(|l| l.split_once(said).map(|(_, pids)| pids))
        .unwrap();
    let pid = holder.id().to_string();
    assert!(pids.split(' ').any(|p| p == pid), "{pid} not in: {log}");
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
}

/// `check` says io_uring is followed.
#[test]
fn check_says_io_uring_is_followed() {
    let (_, out) = spawn(Command::new(watcher_bin()).arg("check"));
    let report = String::from_utf8_lossy(&out.stdout);
    let line = report.lines().find(|l| l.contains(" io_uring ")).unwrap();
    assert!(line.starts_with("ok    io_uring "), "{report}");
    assert!(line.ends_with("operations followed"), "{line}");
}
