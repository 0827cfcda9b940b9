//! Every kind of change, not only open-for-write: rename, delete, mkdir,
//! link, create, truncate, attrib and close_write, by coreutils and by the
//! `*at()` forms with a dirfd.

use std::{
    ffi::OsStr,
    fs,
    os::unix::{ffi::OsStrExt, fs::symlink},
    path::Path,
    process::Command,
};

use serde_json::Value;
use watcher_tests::{Tree, Watcher, assert_valid, of_pid, opener, path_bytes, run, schema, spawn};

/// `watcher trace --format json --events KINDS DIRS...`
fn trace(events: &str, dirs: &[&Path]) -> Watcher {
    Watcher::trace_json_with(&["--events", events], dirs)
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn old_path(ev: &Value) -> Option<Vec<u8>> {
    ev["old_path"].as_str().map(|s| s.as_bytes().to_vec())
}

/// (kind, path) of each event.
fn kinds<'a>(events: impl IntoIterator<Item = &'a Value>) -> Vec<(String, Vec<u8>)> {
    events
        .into_iter()
        .map(|ev| (ev["event"].as_str().unwrap().to_owned(), path_bytes(ev)))
        .collect()
}

fn k(kind: &str, path: &Path) -> (String, Vec<u8>) {
    (kind.to_owned(), bytes(path))
}

fn os(p: &Path) -> &OsStr {
    p.as_os_str()
}

#[test]
fn coreutils_one_program_per_kind() {
    let tree = Tree::new("kinds");
    let media = tree.dir("media");
    let w = trace("all", &[&media]);
    let album = media.join("album");
    let song = album.join("song");
    let moved = album.join("moved");
    let hard = album.join("hard");
    let soft = album.join("soft");
    let fifo = album.join("fifo");
    let node = album.join("node");

    // For each program's pid, the (kind, path) of its events.
    type Expected = Vec<(String, Vec<u8>)>;
    let mut expect: Vec<(u32, Expected)> = Vec::new();
    let mut step = |program: &str, args: &[&OsStr], want: Vec<(String, Vec<u8>)>| {
        expect.push((run(program, args), want));
    };
    step("mkdir", &[os(&album)], vec![k("mkdir", &album)]);
    step(
        "touch",
        &[os(&song)],
        vec![
            k("create", &song),
            k("write", &song),
            k("close_write", &song),
            k("attrib", &song),
        ],
    );
    step("mv", &[os(&song), os(&moved)], vec![k("rename", &moved)]);
    step("ln", &[os(&moved), os(&hard)], vec![k("link", &hard)]);
    step(
        "ln",
        &["-s".as_ref(), "moved".as_ref(), os(&soft)],
        vec![k("link", &soft)],
    );
    step(
        "truncate",
        &["-s".as_ref(), "0".as_ref(), os(&moved)],
        vec![
            k("write", &moved),
            k("truncate", &moved),
            k("close_write", &moved),
        ],
    );
    step(
        "chmod",
        &["600".as_ref(), os(&moved)],
        vec![k("attrib", &moved)],
    );
    step(
        "chown",
        &["nobody".as_ref(), os(&moved)],
        vec![k("attrib", &moved)],
    );
    step("mkfifo", &[os(&fifo)], vec![k("create", &fifo)]);
    step(
        "mknod",
        &[os(&node), "p".as_ref()],
        vec![k("create", &node)],
    );
    step("rm", &[os(&hard)], vec![k("delete", &hard)]);
    step(
        "rm",
        &["-r".as_ref(), os(&album)],
        vec![
            k("delete", &moved),
            k("delete", &soft),
            k("delete", &fifo),
            k("delete", &node),
            k("delete", &album),
        ],
    );

    let events = w.events_until_marker(&media);
    for (pid, want) in expect {
        let mut got = kinds(of_pid(&events, pid));
        let mut want = want;
        if want.len() > 1 && want.iter().all(|(kind, _)| kind == "delete") {
            // rm -r deletes the files in directory order, then the
            // directory.
            let files = want.len() - 1;
            let sorted = files.min(got.len());
            got[..sorted].sort();
            want[..files].sort();
        }
        assert_eq!(got, want, "{events:#?}");
    }
    let rename = events.iter().find(|e| e["event"] == "rename").unwrap();
    assert_eq!(old_path(rename), Some(bytes(&song)));
    assert_eq!(rename["syscall"], "renameat2");
    let link = events.iter().find(|e| e["event"] == "link").unwrap();
    assert_eq!(old_path(link), Some(bytes(&moved)));
}

#[test]
fn rename_into_out_of_and_within_the_tree() {
    let tree = Tree::new("renames");
    let media = tree.dir("media");
    let outside = tree.dir("outside");
    let (a_out, a_in, b_in, b_out) = (
        outside.join("a"),
        media.join("a"),
        media.join("b"),
        outside.join("b"),
    );
    fs::write(&a_out, b"a").unwrap();
    let w = trace("rename,create", &[&media]);

    let into = run("mv", &[os(&a_out), os(&a_in)]);
    let within = run("mv", &[os(&a_in), os(&b_in)]);
    let out = run("mv", &[os(&b_in), os(&b_out)]);
    let elsewhere = run("mv", &[os(&b_out), os(&a_out)]);

    let events = w.events_until_marker(&media);
    let one = |pid| {
        let evs = of_pid(&events, pid);
        assert_eq!(evs.len(), 1, "{events:#?}");
        (old_path(evs[0]).unwrap(), path_bytes(evs[0]))
    };
    assert_eq!(one(into), (bytes(&a_out), bytes(&a_in)));
    assert_eq!(one(within), (bytes(&a_in), bytes(&b_in)));
    assert_eq!(one(out), (bytes(&b_in), bytes(&b_out)));
    assert!(of_pid(&events, elsewhere).is_empty(), "{events:#?}");
    let watch = |pid| of_pid(&events, pid)[0]["watch"].clone();
    assert_eq!(watch(out).as_str().unwrap().as_bytes(), bytes(&media));
}

#[test]
fn at_forms_with_a_dirfd() {
    let tree = Tree::new("at");
    let media = tree.dir("media");
    let outside = tree.dir("outside");
    fs::write(media.join("x"), b"x").unwrap();
    fs::write(media.join("y"), b"y").unwrap();
    let w = trace("all", &[&media]);
    let p = |name: &str| media.join(name);
    let rel = |name: &'static str| Path::new(name);

    let (pid, results) = opener(&[
        ("dirfd", &media),
        ("mkdirat", rel("d")),
        ("mknodat", rel("d/fifo")),
        ("symlinkat", rel("s")),
        ("fchmodat", rel("x")),
        ("utimensat", rel("x")),
        ("futimesat", rel("x")),
        ("from", rel("x")),
        ("linkat", rel("d/x2")),
        ("exchange", rel("y")),
        ("from", rel("y")),
        ("renameat", rel("d/y2")),
        ("unlinkat", rel("d/fifo")),
        ("unlinkat", rel("d/x2")),
        ("unlinkat", rel("d/y2")),
        ("rmdirat", rel("d")),
        // The same in a directory outside: nothing.
        ("dirfd", &outside),
        ("mkdirat", rel("d")),
        ("rmdirat", rel("d")),
    ]);
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");
    let events = w.events_until_marker(&media);
    let got: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = of_pid(&events, pid)
        .into_iter()
        .map(|ev| {
            (
                ev["event"].as_str().unwrap().to_owned(),
                path_bytes(ev),
                old_path(ev),
            )
        })
        .collect();
    let e = |kind: &str, path: &str, old: Option<&str>| {
        (kind.to_owned(), bytes(&p(path)), old.map(|o| bytes(&p(o))))
    };
    assert_eq!(
        got,
        [
            e("mkdir", "d", None),
            e("create", "d/fifo", None),
            e("link", "s", None),
            e("attrib", "x", None),
            e("attrib", "x", None),
            e("attrib", "x", None),
            e("link", "d/x2", Some("x")),
            e("rename", "y", Some("x")),
            e("rename", "d/y2", Some("y")),
            e("delete", "d/fifo", None),
            e("delete", "d/x2", None),
            e("delete", "d/y2", None),
            e("delete", "d", None),
        ],
        "{events:#?}"
    );
    let exchange = of_pid(&events, pid)[7];
    assert_eq!(exchange["syscall"], "renameat2");
    assert_eq!(exchange["flags"], "RENAME_EXCHANGE");
}

#[test]
fn a_file_opened_by_handle_and_times_set_by_the_old_calls() {
    let tree = Tree::new("handle");
    let media = tree.dir("media");
    let outside = tree.dir("outside");
    let (file, away) = (media.join("h"), outside.join("h"));
    fs::write(&file, b"x").unwrap();
    fs::write(&away, b"x").unwrap();
    let w = trace("all", &[&media]);
    let (pid, results) = opener(&[
        ("handle:w", &file),
        ("handle:w", &away),
        ("utime", &file),
        ("utimes", &file),
        ("utime", &away),
    ]);
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");
    let events = w.events_until_marker(&media);
    let mine = of_pid(&events, pid);
    let got: Vec<(String, String, Vec<u8>)> = mine
        .iter()
        .map(|ev| {
            (
                ev["event"].as_str().unwrap().to_owned(),
                ev["syscall"].as_str().unwrap().to_owned(),
                path_bytes(ev),
            )
        })
        .collect();
    let e = |kind: &str, syscall: &str| (kind.to_owned(), syscall.to_owned(), bytes(&file));
    assert_eq!(
        got,
        [
            // Opened by handle: no name, the path is the file's.
            e("write", "open_by_handle_at"),
            e("modify", "write"),
            e("close_write", "close"),
            e("attrib", "utime"),
            e("attrib", "utimes"),
        ],
        "{events:#?}"
    );
    assert_eq!(mine[0]["name"], "");
    assert_eq!(mine[0]["flags"], "O_WRONLY");
    let validator = schema();
    for ev in mine {
        assert_valid(&validator, ev);
    }
}

#[test]
fn names_relative_to_the_cwd_and_through_dotdot() {
    let tree = Tree::new("relnames");
    let media = tree.dir("media");
    let sub = tree.dir("media/sub");
    let other = tree.dir("other");
    let w = trace("mkdir,delete,create", &[&media]);

    let (pid, results) = opener(&[
        ("chdir", &sub),
        ("mkdirat", Path::new("../in")),
        ("mkdirat", Path::new("../../other/out")),
        ("chdir", &other),
        ("mkdirat", Path::new("../media/sub/back")),
        ("mkdirat", Path::new("x/../../media/again")),
        ("rmdirat", Path::new("../media/in")),
    ]);
    // `x/..` needs x.
    assert_eq!(results[5], "err 2", "{results:?}");
    fs::create_dir(other.join("x")).unwrap();
    let (pid2, results2) = opener(&[
        ("chdir", &other),
        ("mkdirat", Path::new("x/../../media/again")),
    ]);
    assert!(
        results.iter().enumerate().all(|(i, r)| i == 5 || r == "ok"),
        "{results:?}"
    );
    assert_eq!(results2, ["ok", "ok"]);
    let events = w.events_until_marker(&media);
    assert_eq!(
        kinds(of_pid(&events, pid)),
        [
            k("mkdir", &media.join("in")),
            k("mkdir", &sub.join("back")),
            k("delete", &media.join("in")),
        ],
        "{events:#?}"
    );
    // Up after going down: decided in user space from the joined path.
    assert_eq!(
        kinds(of_pid(&events, pid2)),
        [k("mkdir", &media.join("again"))],
        "{events:#?}"
    );
}

#[test]
fn names_through_the_symlinked_path_the_watch_was_named_by() {
    let tree = Tree::new("linkedwatch");
    let real = tree.dir("real/media");
    let link = tree.dir("links").join("media");
    symlink(&real, &link).unwrap();
    fs::write(real.join("f"), b"f").unwrap();
    let w = trace("delete,create", &[&link]);
    let pid = run("rm", &[os(&link.join("f"))]);
    let events = w.events_until_marker(&real);
    // The name is joined as written below the directory it starts from
    // (here /): the kernel cannot resolve the symlink in it.
    assert_eq!(
        kinds(of_pid(&events, pid)),
        [k("delete", &link.join("f"))],
        "{events:#?}"
    );
    assert_eq!(
        of_pid(&events, pid)[0]["watch"]
            .as_str()
            .unwrap()
            .as_bytes(),
        bytes(&real)
    );
}

#[test]
fn names_through_a_symlink_in_the_tree_are_where_it_leads() {
    let tree = Tree::new("linkedname");
    let media = tree.dir("media");
    let album = tree.dir("media/album");
    let other = tree.dir("other");
    // In the tree: one link leading out of it, one within it.
    let out = media.join("out");
    let within = media.join("in");
    symlink(&other, &out).unwrap();
    symlink(&album, &within).unwrap();
    for f in [other.join("victim"), other.join("a"), album.join("song")] {
        fs::write(f, b"f").unwrap();
    }
    let w = trace("delete,mkdir,rename,create", &[&media]);

    let rm = run("rm", &[os(&out.join("victim")), os(&within.join("song"))]);
    let mkdir = run("mkdir", &[os(&out.join("d")), os(&within.join("d"))]);
    let mv = run("mv", &[os(&out.join("a")), os(&out.join("b"))]);
    assert!(!other.join("victim").exists() && other.join("d").is_dir());
    assert!(other.join("b").exists());

    let events = w.events_until_marker(&media);
    let writer = |ev: &Value| ev["writer_path"].as_str().map(|s| s.as_bytes().to_vec());
    let rms = of_pid(&events, rm);
    assert_eq!(
        kinds(rms.clone()),
        [k("delete", &album.join("song"))],
        "{events:#?}"
    );
    assert_eq!(writer(rms[0]), Some(bytes(&within.join("song"))));
    let mkdirs = of_pid(&events, mkdir);
    assert_eq!(
        kinds(mkdirs.clone()),
        [k("mkdir", &album.join("d"))],
        "{events:#?}"
    );
    assert_eq!(writer(mkdirs[0]), Some(bytes(&within.join("d"))));
    assert!(of_pid(&events, mv).is_empty(), "{events:#?}");
    let validator = schema();
    for ev in rms.iter().chain(&mkdirs) {
        assert_valid(&validator, ev);
    }
}

#[test]
fn a_symlink_into_the_tree_named_as_a_watch_is_followed_by_name() {
    let tree = Tree::new("linkedsub");
    let media = tree.dir("media");
    let album = tree.dir("media/album");
    let link = tree.dir("home").join("album");
    symlink(&album, &link).unwrap();
    fs::write(album.join("f"), b"f").unwrap();
    let w = trace("delete,create", &[&media, &link]);
    let pid = run("rm", &[os(&link.join("f"))]);
    let events = w.events_until_marker(&media);
    let evs = of_pid(&events, pid);
    assert_eq!(
        kinds(evs.clone()),
        [k("delete", &link.join("f"))],
        "{events:#?}"
    );
    assert_eq!(evs[0]["watch"].as_str().unwrap().as_bytes(), bytes(&album));
}

#[test]
fn nested_watches_name_the_innermost_for_names_too() {
    let tree = Tree::new("nestednames");
    let music = tree.dir("music");
    let incoming = tree.dir("music/incoming");
    let w = trace("mkdir,create", &[&music, &incoming]);
    let pid = run("mkdir", &[os(&incoming.join("new"))]);
    let events = w.events_until_marker(&music);
    let evs = of_pid(&events, pid);
    assert_eq!(evs.len(), 1, "{events:#?}");
    assert_eq!(
        evs[0]["watch"].as_str().unwrap().as_bytes(),
        bytes(&incoming)
    );
}

#[test]
fn sed_in_place_and_atomic_saves_report_the_final_name() {
    let tree = Tree::new("saves");
    let media = tree.dir("media");
    let target = media.join("notes.txt");
    fs::write(&target, b"old\n").unwrap();
    let w = trace("write,rename", &[&media]);

    let sed = run("sed", &["-i".as_ref(), "s/old/new/".as_ref(), os(&target)]);
    let script = format!(
        "printf saved > {0}/.notes.txt.swp && mv {0}/.notes.txt.swp {0}/notes.txt",
        media.display()
    );
    run("sh", &["-c".as_ref(), script.as_ref()]);
    let events = w.events_until_marker(&media);
    let last = *of_pid(&events, sed).last().expect("events");
    assert_eq!(last["event"], "rename", "{events:#?}");
    assert_eq!(path_bytes(last), bytes(&target));
    let renames: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "rename" && e["comm"] == "mv")
        .collect();
    assert_eq!(renames.len(), 1, "{events:#?}");
    assert_eq!(path_bytes(renames[0]), bytes(&target));
    assert_eq!(fs::read(&target).unwrap(), b"saved");
}

#[test]
fn cp_gives_create_write_close_write_in_order() {
    let tree = Tree::new("cp");
    let media = tree.dir("media");
    let src = tree.dir("src").join("song");
    fs::write(&src, vec![7u8; 100_000]).unwrap();
    let w = trace("all", &[&media]);
    let dst = media.join("song");
    let pid = run("cp", &[os(&src), os(&dst)]);
    let events = w.events_until_marker(&media);
    let mine: Vec<(String, Vec<u8>)> = kinds(of_pid(&events, pid))
        .into_iter()
        .filter(|(_, path)| path == &bytes(&dst))
        .collect();
    // However cp copies (copy_file_range, read and write), its data is
    // one or more modify events, after the open and before the close.
    let modified = mine.iter().filter(|(kind, _)| kind == "modify").count();
    assert!(modified >= 1, "{events:#?}");
    assert_eq!(
        mine.iter()
            .filter(|(kind, _)| kind != "modify")
            .cloned()
            .collect::<Vec<_>>(),
        [k("create", &dst), k("write", &dst), k("close_write", &dst)],
        "{events:#?}"
    );
    assert_eq!(
        mine[2..2 + modified],
        vec![k("modify", &dst); modified],
        "{events:#?}"
    );
}

#[test]
fn a_process_that_exits_without_close_still_gives_close_write() {
    let tree = Tree::new("exitclose");
    let media = tree.dir("media");
    let file = media.join("held");
    let w = trace("close_write", &[&media]);
    // The shell opens fd 3 for writing and exits without closing it. An fd
    // 3 it inherited (e.g. `flock FILE cmd` leaves its lock there) is closed
    // first: else the shell opens the file on another fd, moves it to 3 and
    // closes the first, and that close is the file's close_write.
    let script = format!("exec 3>&-; exec 3>{}; exit 0", file.display());
    let pid = run("sh", &["-c".as_ref(), script.as_ref()]);
    let events = w.events_until_marker(&media);
    let evs = of_pid(&events, pid);
    assert_eq!(
        kinds(evs.iter().copied()),
        [k("close_write", &file)],
        "{events:#?}"
    );
    assert_eq!(evs[0]["syscall"], "exit");
    assert_eq!(evs[0]["fd"], 3);
}

#[test]
fn failed_syscalls_give_nothing() {
    let tree = Tree::new("failed");
    let media = tree.dir("media");
    let full = tree.dir("media/full");
    fs::write(full.join("f"), b"f").unwrap();
    let w = trace("all", &[&media]);
    let missing = media.join("missing");
    let mut pids = Vec::new();
    for (program, args) in [
        ("rm", vec![os(&missing)]),
        ("rmdir", vec![os(&full)]),
        ("mkdir", vec![os(&full)]),
        ("mv", vec![os(&missing), os(&media.join("to"))]),
        ("ln", vec![os(&missing), os(&media.join("l"))]),
        ("chmod", vec!["600".as_ref(), os(&missing)]),
        (
            "truncate",
            vec!["-c".as_ref(), "-s".as_ref(), "0".as_ref(), os(&missing)],
        ),
    ] {
        let (pid, out) = spawn(Command::new(program).args(&args));
        if program != "truncate" {
            assert!(!out.status.success(), "{program} should fail");
        }
        pids.push(pid);
    }
    let events = w.events_until_marker(&media);
    for pid in pids {
        assert!(of_pid(&events, pid).is_empty(), "{events:#?}");
    }
}

#[test]
fn events_select_the_kinds() {
    let tree = Tree::new("select");
    let media = tree.dir("media");
    let w = trace("delete", &[&media]);
    let file = media.join("f");
    let touch = run("touch", &[os(&file)]);
    let rm = run("rm", &[os(&file)]);
    let marker_dir = media.join("m");
    fs::create_dir(&marker_dir).unwrap();
    // The marker is a delete too: touch then rm.
    let marker = marker_dir.join("marker");
    fs::write(&marker, b"").unwrap();
    let last = run("rm", &[os(&marker)]);
    let events = w.events_through(|ev| ev["pid"] == last);
    assert!(of_pid(&events, touch).is_empty(), "{events:#?}");
    assert_eq!(kinds(of_pid(&events, rm)), [k("delete", &file)]);
}

#[test]
fn removing_the_watched_directory_itself_is_reported_with_its_watch() {
    let tree = Tree::new("rmwatch");
    let media = tree.dir("media");
    let w = trace("delete", &[&media]);
    let pid = run("rmdir", &[os(&media)]);
    let events = w.events_through(|ev| ev["pid"] == pid);
    let ev = events.last().unwrap();
    assert_eq!(kinds([ev]), [k("delete", &media)]);
    assert_eq!(ev["watch"].as_str().unwrap().as_bytes(), bytes(&media));
}
