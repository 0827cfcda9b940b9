//! `watcher trace`: which opens are seen, and what an event says.

use std::{
    io::Write,
    os::unix::ffi::OsStrExt,
    path::Path,
    process::{Command, Stdio},
};

use chrono::{DateTime, Utc};
use serde_json::Value;
use watcher_tests::{Tree, Watcher, of_pid, opener, path_bytes, spawn};

fn flags(ev: &Value) -> Vec<&str> {
    ev["flags"].as_str().expect("flags").split('|').collect()
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

#[test]
fn a_write_under_the_watch_is_seen_with_its_writer() {
    let tree = Tree::new("write");
    let watched = tree.dir("media");
    let file = watched.join("song.mp3");
    let w = Watcher::trace_json(&[&watched]);

    let mut tee = Command::new("tee")
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = tee.id();
    tee.stdin.take().unwrap().write_all(b"data").unwrap();
    assert!(tee.wait().unwrap().success());
    let before = Utc::now();

    let events = w.events_through(|ev| ev["pid"] == pid);
    let ev = events.last().unwrap();
    assert_eq!(ev["event"], "write");
    assert_eq!(ev["syscall"], "openat");
    assert_eq!(path_bytes(ev), bytes(&file));
    assert_eq!(ev["watch"].as_str().unwrap().as_bytes(), bytes(&watched));
    assert_eq!(ev["tid"], pid, "tee is single-threaded");
    assert_eq!(ev["uid"], 0);
    assert_eq!(ev["gid"], 0);
    assert_eq!(ev["comm"], "tee");
    assert!(ev["fd"].as_i64().unwrap() >= 0);
    assert_eq!(flags(ev)[0], "O_WRONLY");
    assert!(
        flags(ev).contains(&"O_CREAT") && flags(ev).contains(&"O_TRUNC"),
        "{ev}"
    );
    let time: DateTime<Utc> = ev["time"].as_str().unwrap().parse().expect("RFC 3339");
    let nanos = ev["time"].as_str().unwrap().split('.').nth(1).unwrap();
    assert_eq!(nanos.len(), "123456789Z".len(), "nanoseconds: {ev}");
    // The clock conversion is right to well within a minute.
    assert!(
        (before - time).num_seconds().abs() < 60,
        "time {time} vs now {before}"
    );
}

#[test]
fn read_only_open_is_not_seen() {
    let tree = Tree::new("read");
    let watched = tree.dir("media");
    let file = watched.join("existing");
    std::fs::write(&file, b"x").unwrap();
    let w = Watcher::trace_json(&[&watched]);

    let (cat, out) = spawn(Command::new("cat").arg(&file));
    assert!(out.status.success());
    let (op, results) = opener(&[("openat:r", &file), ("open:r", &file)]);
    assert_eq!(results, ["ok", "ok"]);

    let events = w.events_until_marker(&watched);
    assert!(of_pid(&events, cat).is_empty(), "{events:?}");
    assert!(of_pid(&events, op).is_empty(), "{events:?}");
}

#[test]
fn write_outside_and_to_a_prefix_sibling_is_not_seen() {
    let tree = Tree::new("outside");
    let watched = tree.dir("media");
    let sibling = tree.dir("media2");
    let outside = tree.dir("other");
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        ("openat:wc", &sibling.join("file")),
        ("openat:wc", &outside.join("file")),
        ("openat:wc", &tree.root.join("media-file")),
    ]);
    assert_eq!(results, ["ok", "ok", "ok"]);

    let events = w.events_until_marker(&watched);
    assert!(of_pid(&events, op).is_empty(), "{events:?}");
}

#[test]
fn failed_open_is_not_seen() {
    let tree = Tree::new("failed");
    let watched = tree.dir("media");
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        // ENOENT: no O_CREAT.
        ("openat:w", &watched.join("missing")),
        // ENOENT: the parent is missing.
        ("openat:wc", &watched.join("no/such/dir")),
        // EISDIR: a directory cannot be opened for writing.
        ("openat:w", &watched),
    ]);
    assert_eq!(results, ["err 2", "err 2", "err 21"]);

    let events = w.events_until_marker(&watched);
    assert!(of_pid(&events, op).is_empty(), "{events:?}");
}

#[test]
fn creating_a_new_file_is_seen() {
    let tree = Tree::new("create");
    let watched = tree.dir("media");
    let sub = tree.dir("media/album");
    let new = sub.join("track01.flac");
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[("openat:wcx", &new)]);
    assert_eq!(results, ["ok"]);
    assert!(new.exists());

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(mine.len(), 1, "{events:?}");
    assert_eq!(path_bytes(mine[0]), bytes(&new));
    assert!(flags(mine[0]).contains(&"O_CREAT") && flags(mine[0]).contains(&"O_EXCL"));
}

#[test]
fn open_creat_and_openat2_are_each_seen() {
    let tree = Tree::new("syscalls");
    let watched = tree.dir("media");
    let (a, b, c, d) = (
        watched.join("a"),
        watched.join("b"),
        watched.join("c"),
        watched.join("d"),
    );
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        ("open:wc", &a),
        ("creat", &b),
        ("openat2:wc", &c),
        ("openat2:b", &a),
        ("openat2:r", &d),
    ]);
    assert_eq!(results, ["ok", "ok", "ok", "ok", "err 2"]);

    let events = w.events_until_marker(&watched);
    let seen: Vec<(String, Vec<u8>, String)> = of_pid(&events, op)
        .iter()
        .map(|ev| {
            (
                ev["syscall"].as_str().unwrap().to_owned(),
                path_bytes(ev),
                ev["flags"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("open".into(), bytes(&a), "O_WRONLY|O_CREAT".into()),
            ("creat".into(), bytes(&b), "O_WRONLY|O_CREAT|O_TRUNC".into()),
            ("openat2".into(), bytes(&c), "O_WRONLY|O_CREAT".into()),
            ("openat2".into(), bytes(&a), "O_RDWR".into()),
        ]
    );
}

#[test]
fn text_output_is_one_escaped_line_per_event() {
    let tree = Tree::new("text");
    let watched = tree.dir("media");
    let hostile = watched.join(std::ffi::OsStr::from_bytes(b"a\nb\x1b[31m$(touch x)\xff"));
    let w = Watcher::start(&[Path::new("trace").as_os_str(), watched.as_os_str()]);

    let (op, results) = opener(&[("openat:wc", &hostile)]);
    assert_eq!(results, ["ok"]);

    let line = w.next_line();
    assert!(line.contains(&format!(" {op} ")), "{line}");
    assert!(line.contains("opener"), "{line}");
    assert!(
        line.ends_with("/a\\nb\\u{1b}[31m$(touch x)\\xff  (openat O_WRONLY|O_CREAT)"),
        "{line}"
    );
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn non_utf8_paths_are_lossless_in_json() {
    let tree = Tree::new("utf8");
    let watched = tree.dir("media");
    let name = watched.join(std::ffi::OsStr::from_bytes(b"caf\xe9 \"quoted\" \\ \t.mp3"));
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[("openat:wc", &name)]);
    assert_eq!(results, ["ok"]);

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(mine.len(), 1);
    assert_eq!(path_bytes(mine[0]), bytes(&name));
}

#[test]
fn several_watches_name_the_one_that_matched() {
    let tree = Tree::new("several");
    let (one, two) = (tree.dir("one"), tree.dir("two"));
    let w = Watcher::trace_json(&[&one, &two]);

    let (op, results) = opener(&[("openat:wc", &two.join("f")), ("openat:wc", &one.join("f"))]);
    assert_eq!(results, ["ok", "ok"]);

    let events = w.events_until_marker(&one);
    let watches: Vec<&str> = of_pid(&events, op)
        .iter()
        .map(|ev| ev["watch"].as_str().unwrap())
        .collect();
    assert_eq!(watches, [two.to_str().unwrap(), one.to_str().unwrap()]);
}
