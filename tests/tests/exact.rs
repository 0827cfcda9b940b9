//! Exact matching: whatever way a path was spelled (relative, from a
//! directory fd, through `..` or symlinks), an open is matched by where the
//! file really is, in the kernel, and reported under its real path.

use std::{
    os::unix::{ffi::OsStrExt, fs::symlink},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use watcher_common::MAX_WALK;
use watcher_tests::{Mount, Tree, Watcher, chain, of_pid, opener, path_bytes, spawn, without_btf};

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// Each event's path, as bytes.
fn paths(events: &[&Value]) -> Vec<Vec<u8>> {
    events.iter().map(|ev| path_bytes(ev)).collect()
}

fn watch_of(ev: &Value) -> &str {
    ev["watch"]
        .as_str()
        .unwrap_or_else(|| panic!("no watch: {ev}"))
}

#[test]
fn relative_names_are_placed_from_the_cwd() {
    let tree = Tree::new("chdir");
    let watched = tree.dir("media");
    let deep = tree.dir("media/sub/dir");
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        ("chdir", &deep),
        ("openat:wc", Path::new("a")),
        // From a parent of the tree.
        ("chdir", &tree.root),
        ("openat:wc", Path::new("media/sub/dir/b")),
        ("open:w", Path::new("media/sub/dir/a")),
    ]);
    assert_eq!(results, ["ok"; 5]);

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(
        paths(&mine),
        [
            bytes(&deep.join("a")),
            bytes(&deep.join("b")),
            bytes(&deep.join("a"))
        ]
    );
    let names: Vec<&str> = mine.iter().map(|ev| ev["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "media/sub/dir/b", "media/sub/dir/a"]);
    for ev in &mine {
        assert_eq!(watch_of(ev).as_bytes(), bytes(&watched));
        assert!(ev.get("truncated").is_none(), "{ev}");
    }
}

#[test]
fn dirfd_inside_the_tree_is_seen_and_outside_is_not() {
    let tree = Tree::new("dirfd");
    let watched = tree.dir("media");
    let album = tree.dir("media/album");
    let outside = tree.dir("other");
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        ("dirfd", &album),
        ("openat:wc", Path::new("in")),
        ("openat2:bc", Path::new("in2")),
        ("dirfd", &outside),
        ("openat:wc", Path::new("out")),
        ("openat2:wc", Path::new("out2")),
    ]);
    assert_eq!(results, ["ok"; 6]);

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(
        paths(&mine),
        [bytes(&album.join("in")), bytes(&album.join("in2"))]
    );
    assert_eq!(mine[1]["syscall"], "openat2");
}

#[test]
fn dotdot_is_resolved_both_ways() {
    let tree = Tree::new("dotdot");
    let watched = tree.dir("media");
    let sub = tree.dir("media/sub");
    let outside = tree.dir("other");
    let w = Watcher::trace_json(&[&watched]);

    // Spelled under the watch, lying outside: not seen.
    let leaving = watched.join("sub/../../other/abs");
    let (op, results) = opener(&[
        ("chdir", &sub),
        ("openat:wc", Path::new("../../other/leave")),
        ("openat:wc", &leaving),
        // Spelled outside, lying under the watch: seen.
        ("chdir", &outside),
        ("openat:wc", Path::new("../media/enter")),
    ]);
    assert_eq!(results, ["ok"; 5]);
    assert!(outside.join("leave").exists() && outside.join("abs").exists());

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(paths(&mine), [bytes(&watched.join("enter"))]);
    assert_eq!(mine[0]["name"], "../media/enter");
}

#[test]
fn symlinks_are_followed_to_where_the_file_is() {
    let tree = Tree::new("symlink");
    let watched = tree.dir("media");
    let album = tree.dir("media/album");
    let outside = tree.dir("other");
    // Outside, pointing in; inside, pointing out.
    let link_in = tree.root.join("link-in");
    let link_out = watched.join("link-out");
    symlink(&album, &link_in).unwrap();
    symlink(&outside, &link_out).unwrap();
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        ("openat:wc", &link_in.join("via-link")),
        ("openat:wc", &link_out.join("escaped")),
    ]);
    assert_eq!(results, ["ok", "ok"]);
    assert!(outside.join("escaped").exists());

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(paths(&mine), [bytes(&album.join("via-link"))]);
    assert_eq!(
        mine[0]["name"].as_str().unwrap().as_bytes(),
        bytes(&link_in.join("via-link"))
    );
}

#[test]
fn a_renamed_watch_is_still_watched_under_its_new_path() {
    let tree = Tree::new("renamed");
    let watched = tree.dir("media");
    let w = Watcher::trace_json(&[&watched]);

    let renamed = tree.root.join("library");
    std::fs::rename(&watched, &renamed).unwrap();
    let (op, results) = opener(&[("openat:wc", &renamed.join("new"))]);
    assert_eq!(results, ["ok"]);

    let events = w.events_until_marker(&renamed);
    let mine = of_pid(&events, op);
    assert_eq!(paths(&mine), [bytes(&renamed.join("new"))]);
    // The watch keeps the name it was given.
    assert_eq!(watch_of(mine[0]).as_bytes(), bytes(&watched));
}

#[test]
fn a_filesystem_mounted_below_the_watch_is_covered() {
    let tree = Tree::new("mounted");
    let watched = tree.dir("media");
    let point = tree.dir("media/usb");
    let _mount = Mount::tmpfs(&point);
    let inner = point.join("album");
    std::fs::create_dir(&inner).unwrap();
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        ("openat:wc", &inner.join("track")),
        ("chdir", &inner),
        ("openat:wc", Path::new("relative")),
    ]);
    assert_eq!(results, ["ok"; 3]);

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(
        paths(&mine),
        [bytes(&inner.join("track")), bytes(&inner.join("relative"))]
    );
    assert_eq!(watch_of(mine[0]).as_bytes(), bytes(&watched));
}

#[test]
fn nested_and_disjoint_watches_each_name_the_innermost() {
    let tree = Tree::new("nested");
    let outer = tree.dir("music");
    let inner = tree.dir("music/incoming");
    let other = tree.dir("video");
    let w = Watcher::trace_json(&[&outer, &inner, &other]);

    let (op, results) = opener(&[
        ("openat:wc", &outer.join("a")),
        ("openat:wc", &inner.join("b")),
        ("openat:wc", &other.join("c")),
        ("chdir", &inner),
        ("openat:wc", Path::new("../d")),
    ]);
    assert_eq!(results, ["ok"; 5]);

    let events = w.events_until_marker(&outer);
    let mine = of_pid(&events, op);
    let got: Vec<(Vec<u8>, &str)> = mine
        .iter()
        .map(|ev| (path_bytes(ev), watch_of(ev)))
        .collect();
    let want = [
        (outer.join("a"), &outer),
        (inner.join("b"), &inner),
        (other.join("c"), &other),
        (outer.join("d"), &outer),
    ];
    let want: Vec<(Vec<u8>, &str)> = want
        .iter()
        .map(|(p, w)| (bytes(p), w.to_str().unwrap()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_big_tree_costs_nothing_and_deep_files_are_never_decided_wrongly() {
    let tree = Tree::new("big");
    // A filesystem of its own: a file deeper than the walk on a device that
    // holds a watch is sent to every watcher that watches on that device,
    // and other tests watch on /tmp's.
    let fs = tree.dir("fs");
    let _mount = Mount::tmpfs(&fs);
    let watched = fs.join("media");
    std::fs::create_dir(&watched).unwrap();
    // 100,000 directories: 100 artists of 1,000 albums.
    for artist in 0..100 {
        let artist = watched.join(format!("artist{artist}"));
        std::fs::create_dir(&artist).unwrap();
        for album in 0..1000 {
            std::fs::create_dir(artist.join(format!("album{album}"))).unwrap();
        }
    }
    // Depth 30 under the watch, and a chain deeper than the walk.
    let depth30: PathBuf = std::iter::once(watched.clone())
        .chain((1..=30).map(|i| PathBuf::from(format!("d{i}"))))
        .collect();
    std::fs::create_dir_all(&depth30).unwrap();
    let too_deep = chain(&watched, MAX_WALK + 8);
    // As deep, on a device with no watch: decided (not watched) without
    // walking it, since nothing on that device can be a watch.
    let elsewhere = chain(&tree.dir("elsewhere"), MAX_WALK + 8);
    let w = Watcher::trace_json(&[&watched]);

    let (op, results) = opener(&[
        ("openat:wc", &depth30.join("file")),
        ("openat:wc", &watched.join("artist99/album999/track")),
        ("openat:wc", &too_deep.join("file")),
        ("openat:wc", &elsewhere.join("file")),
    ]);
    assert_eq!(results, ["ok"; 4]);

    let events = w.events_until_marker(&watched);
    let mine = of_pid(&events, op);
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert_eq!(path_bytes(mine[0]), bytes(&depth30.join("file")));
    assert_eq!(
        path_bytes(mine[1]),
        bytes(&watched.join("artist99/album999/track"))
    );
    for ev in &mine[..2] {
        assert_eq!(watch_of(ev).as_bytes(), bytes(&watched));
    }
    // Past the walk's bound the kernel cannot tell: the event is sent, with
    // no watch and marked truncated, and its path is the tail it has.
    let deep = mine[2];
    assert_eq!(deep["watch"], Value::Null, "{deep}");
    assert_eq!(deep["truncated"], true, "{deep}");
    let tail = String::from_utf8(path_bytes(deep)).unwrap();
    assert!(
        tail.ends_with("d/d/d/file") && !tail.starts_with('/'),
        "{tail}"
    );
    assert_eq!(
        deep["name"].as_str().unwrap().as_bytes(),
        bytes(&too_deep.join("file"))
    );
}

#[test]
fn without_btf_check_warns_and_watching_falls_back_to_prefixes() {
    let (_, out) = spawn(&mut without_btf(r#""$0" check"#));
    let report = String::from_utf8_lossy(&out.stdout);
    // 3: watcher runs, with a warning.
    assert_eq!(out.status.code(), Some(3), "{report}");
    let btf_line = report.lines().find(|l| l.contains(" btf ")).unwrap();
    assert!(btf_line.starts_with("warn  btf "), "{report}");
    assert!(btf_line.contains("matching by path prefix"), "{btf_line}");
    // The programs read kernel memory through the helper then: the
    // events below come through that path.
    let reads_line = report.lines().find(|l| l.contains(" reads ")).unwrap();
    assert!(reads_line.contains("bpf_probe_read_kernel"), "{report}");

    let tree = Tree::new("nobtf");
    let watched = tree.dir("media");
    let sub = tree.dir("media/sub");
    let w =
        Watcher::start_command(without_btf(r#"exec "$0" trace --format json "$1""#).arg(&watched));
    assert!(
        w.stderr().contains("watcher: warning: ") && w.stderr().contains("matching by path prefix"),
        "{}",
        w.stderr()
    );
    // Absolute names by prefix in the kernel; relative ones placed from
    // the writer's cwd in user space. The writer waits, so it is there.
    let (abs, results) = opener(&[("openat:wc", &sub.join("abs"))]);
    assert_eq!(results, ["ok"]);
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg("cd \"$0\" && : > rel && sleep 60")
        .arg(&sub)
        .spawn()
        .unwrap();
    let rel = sh.id();
    let events = w.events_through(|ev| ev["pid"] == rel);
    let _ = sh.kill();
    let _ = sh.wait();
    assert_eq!(paths(&of_pid(&events, abs)), [bytes(&sub.join("abs"))]);
    let placed = events.last().unwrap();
    assert_eq!(path_bytes(placed), bytes(&sub.join("rel")));
    assert_eq!(placed["name"], "rel");
    assert_eq!(watch_of(placed).as_bytes(), bytes(&watched));
}
