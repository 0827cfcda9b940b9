//! Every route into a watched tree: a file is under a watch when the
//! watched directory is its ancestor in its file system, whatever mount,
//! bind mount, mount namespace or chroot the process reached it through,
//! for opens and for changes by name. Events name it by the watch's path
//! and keep the path the process used in `writer_path`.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use serde_json::Value;
use watcher_tests::{
    Mount, PATIENCE, Tree, Watcher, assert_valid, helper_bin, of_pid, opener, path_bytes,
    recorded_stdin, run_recording, runs_accounting_for, schema,
};

/// The `opener` helper, stopped at its `wait` until [`Staged::finish`]:
/// what comes before (a namespace, a mount, a chroot) is set up first.
struct Staged {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    results: Vec<String>,
}

impl Staged {
    /// Starts `opener OPS...` and waits for the results of the operations
    /// before its `wait`.
    fn start(ops: &[(&str, &Path)]) -> Self {
        let before = ops
            .iter()
            .position(|(op, _)| *op == "wait")
            .expect("a wait");
        let mut cmd = Command::new(helper_bin("opener"));
        for (op, path) in ops {
            cmd.arg(op).arg(path);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn opener");
        let mut staged = Self {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            child,
            results: Vec::new(),
        };
        while staged.results.len() < before {
            let mut line = String::new();
            staged.stdout.read_line(&mut line).expect("opener's output");
            assert!(!line.is_empty(), "opener ended early: {:?}", staged.results);
            staged.results.push(line.trim_end().to_owned());
        }
        assert!(
            staged.results.iter().all(|r| r == "ok"),
            "setting up: {:?}",
            staged.results
        );
        staged
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets it go on past its `wait`; its results, all of them.
    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        for line in (&mut self.stdout).lines() {
            self.results.push(line.expect("opener's output"));
        }
        let deadline = std::time::Instant::now() + PATIENCE;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(std::time::Instant::now() < deadline, "opener hangs");
            std::thread::yield_now();
        }
        self.results
    }
}

/// A watched `media` holding `media/incoming/old`, and a process set up
/// as a container runtime sets one up: its own mount namespace,
/// `media/incoming` bound at its `/data`, chrooted; `then`, its
/// operations after that, wait for [`Staged::finish`]. The watch and the
/// volume's directory.
fn container(tree: &Tree, then: &[(&str, &Path)]) -> (PathBuf, PathBuf, Staged) {
    let media = tree.dir("media");
    let incoming = tree.dir("media/incoming");
    std::fs::write(incoming.join("old"), "x").unwrap();
    let jail = tree.dir("jail");
    let data = tree.dir("jail/data");
    let mut ops = vec![
        ("unshare", Path::new("-")),
        ("from", &incoming),
        ("bind", &data),
        ("chroot", &jail),
        ("wait", Path::new("-")),
    ];
    ops.extend(then);
    let staged = Staged::start(&ops);
    (media, incoming, staged)
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// (event, path, writer_path) of each event, checked against the schema.
fn seen(events: &[&Value]) -> Vec<(String, Vec<u8>, Option<String>)> {
    let schema = schema();
    events
        .iter()
        .map(|ev| {
            assert_valid(&schema, ev);
            (
                ev["event"].as_str().unwrap().to_owned(),
                path_bytes(ev),
                ev["writer_path"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn e(event: &str, path: &Path, writer: Option<&str>) -> (String, Vec<u8>, Option<String>) {
    (event.to_owned(), bytes(path), writer.map(str::to_owned))
}

fn own_mntns() -> u64 {
    let link = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let link = link.to_str().unwrap();
    link["mnt:[".len()..link.len() - 1].parse().unwrap()
}

#[test]
fn a_container_volume_is_reported_under_the_watch_with_the_writers_path() {
    let tree = Tree::new("volume");
    let (media, incoming, container) = container(
        &tree,
        &[
            ("openat:wc", Path::new("/data/new")),
            ("unlinkat", Path::new("/data/old")),
            ("mkdirat", Path::new("/data/d")),
            ("from", Path::new("/data/new")),
            ("renameat", Path::new("/data/d/moved")),
            ("chdir", Path::new("/data/d")),
            ("openat:wc", Path::new("here")),
        ],
    );
    let data = tree.root.join("jail/data");
    let pid = container.pid();
    let w = Watcher::trace_json_with(&["--events", "all"], &[&media]);
    // The same directory seen from this namespace is a plain one: a name
    // through it is not in the tree.
    let (host, results) = opener(&[("mkdirat", &data.join("plain"))]);
    assert_eq!(results, ["ok"]);

    let results = container.finish();
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");
    let events = w.events_until_marker(&media);
    assert_eq!(of_pid(&events, host), Vec::<&Value>::new());
    let mine = of_pid(&events, pid);
    assert_eq!(
        seen(&mine),
        [
            e("create", &incoming.join("new"), Some("/data/new")),
            e("write", &incoming.join("new"), Some("/data/new")),
            e("close_write", &incoming.join("new"), Some("/data/new")),
            e("delete", &incoming.join("old"), Some("/data/old")),
            e("mkdir", &incoming.join("d"), Some("/data/d")),
            e("rename", &incoming.join("d/moved"), Some("/data/d/moved")),
            e("create", &incoming.join("d/here"), Some("/data/d/here")),
            e("write", &incoming.join("d/here"), Some("/data/d/here")),
            e(
                "close_write",
                &incoming.join("d/here"),
                Some("/data/d/here")
            ),
        ]
    );
    let rename = mine.iter().find(|ev| ev["event"] == "rename").unwrap();
    assert_eq!(
        rename["old_path"].as_str().unwrap().as_bytes(),
        bytes(&incoming.join("new"))
    );
    assert_eq!(rename["old_writer_path"], "/data/new");
    for ev in &mine {
        assert_eq!(ev["watch"].as_str().unwrap().as_bytes(), bytes(&media));
        let mntns = ev["mntns"].as_u64().unwrap();
        assert_ne!(mntns, own_mntns(), "{ev}");
    }
}

#[test]
fn a_bind_mount_here_is_reported_under_the_watch_for_opens_and_names() {
    let tree = Tree::new("bind");
    let media = tree.dir("media");
    let music = tree.dir("media/music");
    std::fs::write(music.join("old"), "x").unwrap();
    let whole = tree.dir("mnt/whole");
    let part = tree.dir("mnt/part");
    let _whole = Mount::bind(&media, &whole);
    let _part = Mount::bind(&music, &part);
    let w = Watcher::trace_json_with(&["--events", "all"], &[&media]);

    let (op, results) = opener(&[
        ("openat:wc", &part.join("a")),
        ("unlinkat", &whole.join("music/old")),
        ("chdir", &part),
        ("mkdirat", Path::new("d")),
        ("unlinkat", &media.join("music/a")),
    ]);
    assert_eq!(results, ["ok"; 5]);

    let events = w.events_until_marker(&media);
    let at = |p: &Path| p.to_str().map(str::to_owned);
    assert_eq!(
        seen(&of_pid(&events, op)),
        [
            e("create", &music.join("a"), at(&part.join("a")).as_deref()),
            e("write", &music.join("a"), at(&part.join("a")).as_deref()),
            e(
                "close_write",
                &music.join("a"),
                at(&part.join("a")).as_deref()
            ),
            e(
                "delete",
                &music.join("old"),
                at(&whole.join("music/old")).as_deref()
            ),
            e("mkdir", &music.join("d"), at(&part.join("d")).as_deref()),
            // Through the watch's own path: nothing else to say.
            e("delete", &music.join("a"), None),
        ]
    );
}

/// A watch on an overlay's upper directory (a container's writable layer,
/// seen from the host) sees what is written through the merged one, as
/// inotify on the upper directory would: named under the watch, with the
/// merged path as the writer's; a watch on the merged directory keeps
/// seeing it under its own path.
#[test]
fn an_overlays_upper_directory_sees_writes_through_the_merged_one() {
    let tree = Tree::new("overlay");
    let lower = tree.dir("lower");
    std::fs::write(lower.join("old"), "x").unwrap();
    std::fs::create_dir(lower.join("ldir")).unwrap();
    let upper = tree.dir("upper");
    let work = tree.dir("work");
    let merged = tree.dir("merged");
    let _overlay = Mount::overlay(&lower, &upper, &work, &merged);
    let w = Watcher::trace_json_with(&["--events", "all"], &[&upper]);
    let on_merged = Watcher::trace_json_with(&["--events", "all"], &[&merged]);

    let (op, results) = opener(&[
        ("openat:wc", &merged.join("new")),
        // A lower file, copied up to be written.
        ("openat:w", &merged.join("old")),
        // In a lower directory, copied up first.
        ("openat:wc", &merged.join("ldir/x")),
        // By names relative to a directory of the overlay.
        ("chdir", &merged),
        ("mkdirat", Path::new("d")),
        ("from", Path::new("new")),
        ("renameat", Path::new("d/moved")),
        ("unlinkat", Path::new("old")),
        ("chdir", &merged.join("ldir")),
        ("unlinkat", Path::new("x")),
        // By absolute names through the merged directory.
        ("mkdirat", &merged.join("abs")),
        ("from", &merged.join("abs")),
        ("renameat", &merged.join("ldir/abs")),
        ("unlinkat", &merged.join("d/moved")),
    ]);
    assert_eq!(results, ["ok"; 14]);

    let at = |p: &Path| p.to_str().map(str::to_owned);
    let through = |rel: &str| (upper.join(rel), at(&merged.join(rel)));
    let mut want = Vec::new();
    for (event, rel) in [
        ("create", "new"),
        ("write", "new"),
        ("close_write", "new"),
        ("write", "old"),
        ("close_write", "old"),
        ("create", "ldir/x"),
        ("write", "ldir/x"),
        ("close_write", "ldir/x"),
        ("mkdir", "d"),
        ("rename", "d/moved"),
        ("delete", "old"),
        ("delete", "ldir/x"),
        ("mkdir", "abs"),
        ("rename", "ldir/abs"),
        ("delete", "d/moved"),
    ] {
        let (path, writer) = through(rel);
        want.push(e(event, &path, writer.as_deref()));
    }
    let events = w.events_until_marker(&upper);
    let mine = of_pid(&events, op);
    assert_eq!(seen(&mine), want);
    let rename = mine.iter().find(|ev| ev["event"] == "rename").unwrap();
    assert_eq!(rename["old_path"], at(&upper.join("new")).unwrap());
    assert_eq!(rename["old_writer_path"], at(&merged.join("new")).unwrap());

    // The merged directory's watch: its own paths, nothing else to say.
    let events = on_merged.events_until_marker(&merged);
    let plain: Vec<_> = want
        .iter()
        .map(|(event, path, _)| {
            let rel = Path::new(std::str::from_utf8(path).unwrap())
                .strip_prefix(&upper)
                .unwrap();
            e(event, &merged.join(rel), None)
        })
        .collect();
    assert_eq!(seen(&of_pid(&events, op)), plain);
}

#[test]
fn a_namespace_made_after_start_is_followed() {
    let tree = Tree::new("later");
    let media = tree.dir("media");
    let sub = tree.dir("media/sub");
    let point = tree.dir("elsewhere/m");
    let w = Watcher::trace_json_with(&["--events", "all"], &[&media]);

    let staged = Staged::start(&[
        ("unshare", Path::new("-")),
        ("from", &sub),
        ("bind", &point),
        ("wait", Path::new("-")),
        ("mkdirat", &point.join("d")),
        ("rmdirat", &point.join("d")),
    ]);
    w.wait_for_log("mounts changed: following", 1);
    let pid = staged.pid();
    let results = staged.finish();
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");

    let events = w.events_until_marker(&media);
    let writer = point.join("d");
    let writer = writer.to_str();
    assert_eq!(
        seen(&of_pid(&events, pid)),
        [
            e("mkdir", &sub.join("d"), writer),
            e("delete", &sub.join("d"), writer),
        ]
    );
}

#[test]
fn run_acts_on_a_change_through_a_containers_volume() {
    let tree = Tree::new("volume-run");
    let log = tree.root.join("runs.log");
    let (media, incoming, container) = container(
        &tree,
        &[
            ("unlinkat", Path::new("/data/old")),
            ("openat:wc", Path::new("/data/new")),
        ],
    );
    let w = run_recording(&media, &log);
    let results = container.finish();
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");
    // The delete, then the open (a create and a write): the action is
    // given the paths under the watch.
    let runs = runs_accounting_for(&w, &log, 3);
    let stdin: Vec<u8> = runs.iter().flat_map(recorded_stdin).collect();
    let want = [
        bytes(&incoming.join("old")),
        b"\0".to_vec(),
        bytes(&incoming.join("new")),
        b"\0".to_vec(),
    ]
    .concat();
    assert_eq!(stdin, want, "{runs:?}");
}

#[test]
fn run_acts_on_a_delete_through_a_symlink_in_the_tree_only_where_it_leads_in() {
    let tree = Tree::new("symlink-run");
    let log = tree.root.join("runs.log");
    let media = tree.dir("media");
    let album = tree.dir("media/album");
    let other = tree.dir("other");
    std::os::unix::fs::symlink(&other, media.join("out")).unwrap();
    std::os::unix::fs::symlink(&album, media.join("in")).unwrap();
    std::fs::write(other.join("victim"), b"v").unwrap();
    std::fs::write(album.join("song"), b"s").unwrap();
    let w = run_recording(&media, &log);
    let (_, results) = opener(&[
        ("unlinkat", &media.join("out/victim")),
        ("unlinkat", &media.join("in/song")),
    ]);
    assert_eq!(results, ["ok", "ok"]);
    // One change: the delete out of the tree is none.
    let runs = runs_accounting_for(&w, &log, 1);
    let stdin: Vec<u8> = runs.iter().flat_map(recorded_stdin).collect();
    assert_eq!(stdin, [bytes(&album.join("song")), b"\0".to_vec()].concat());
}
