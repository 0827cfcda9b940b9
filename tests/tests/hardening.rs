//! Hardening: load, faults and hostile input. Nothing is lost silently:
//! every change is reported or counted as lost, and watcher goes on.

use std::{
    collections::BTreeSet,
    ffi::{CString, OsStr},
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;
use watcher_tests::{
    Mount, Tree, Watcher, assert_valid, bpf, bpf_ids, eventually, helper_bin, map_entries,
    path_bytes, recorded_count, recorded_runs as runs, recorded_stdin as stdin, run,
    runs_accounting_for, schema, spawn, wait_for_runs, watcher_bin, without_btf,
};

const WRITERS: usize = 8;
const FILES: usize = 10_000;

/// Starts a writer creating `files` in `dir`; it is waited for by the caller.
fn writer(dir: &Path, files: usize) -> Child {
    let mut cmd = Command::new(helper_bin("opener"));
    for i in 0..files {
        cmd.arg("openat:wc").arg(dir.join(format!("f{i}")));
    }
    cmd.stdout(Stdio::null()).spawn().expect("start a writer")
}

#[test]
fn eight_writers_of_ten_thousand_files_are_each_reported_or_counted() {
    let tree = Tree::new("load");
    let mnt = tree.dir("mnt");
    let _mount = Mount::tmpfs(&mnt);
    let dirs: Vec<PathBuf> = (0..WRITERS)
        .map(|w| {
            let dir = mnt.join(format!("w{w}"));
            std::fs::create_dir(&dir).unwrap();
            dir
        })
        .collect();
    let log = tree.root.join("runs.log");
    let trace = Watcher::trace_json_with(&["--events", "create"], &[&mnt]);
    let record = helper_bin("record");
    let run = Watcher::start(&[
        OsStr::new("run"),
        "--events".as_ref(),
        "create".as_ref(),
        "--settle".as_ref(),
        "300ms".as_ref(),
        // The losses, read after the first run, make a second one.
        "--interval".as_ref(),
        "100ms".as_ref(),
        "--stdin-format".as_ref(),
        "none".as_ref(),
        mnt.as_os_str(),
        "--".as_ref(),
        record.as_os_str(),
        log.as_os_str(),
    ]);

    let mut writers: Vec<Child> = dirs.iter().map(|d| writer(d, FILES)).collect();
    for w in &mut writers {
        assert!(w.wait().unwrap().success(), "a writer failed");
    }
    let made = WRITERS * FILES;
    let expected: BTreeSet<Vec<u8>> = dirs
        .iter()
        .flat_map(|d| (0..FILES).map(move |i| d.join(format!("f{i}"))))
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();

    // trace: each file once as a create event, or in an overflow count.
    let mut created = BTreeSet::new();
    let mut lost = 0;
    while created.len() + lost < made {
        let line = trace.next_line();
        let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match ev["event"].as_str() {
            Some("create") => {
                let path = path_bytes(&ev);
                assert!(expected.contains(&path), "not one of ours: {line}");
                assert!(created.insert(path), "reported twice: {line}");
            }
            Some("overflow") => lost += ev["lost"].as_u64().unwrap() as usize,
            _ => panic!("unexpected: {line}"),
        }
    }
    assert_eq!(created.len() + lost, made);
    eprintln!("trace: {} reported, {lost} counted lost", created.len());

    // run: the action ran after the burst and was told of every event,
    // delivered or lost.
    let runs = runs_accounting_for(&run, &log, made as u64);
    eprintln!(
        "run: {} runs, {} lost",
        runs.len(),
        runs.iter()
            .map(|r| recorded_count(r, "WATCHER_LOST"))
            .sum::<u64>()
    );
}

/// `bpf(BPF_{PROG,MAP,LINK}_GET_FD_BY_ID)`: whether the object still exists.
fn bpf_object_exists(cmd: libc::c_long, id: u32) -> bool {
    let fd = bpf(cmd, &[id.into(), 0]);
    if fd >= 0 {
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENOENT),
        "bpf({cmd}, {id})"
    );
    false
}

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

#[test]
fn sigkill_leaves_no_program_link_or_map_behind() {
    let tree = Tree::new("sigkill");
    let w = Watcher::trace_json_with(&["--events", "all"], &[&tree.root]);
    let pid = w.pid();
    let mut objects = BTreeSet::new();
    for (key, cmd) in [
        ("link_id:", BPF_LINK_GET_FD_BY_ID),
        ("prog_id:", BPF_PROG_GET_FD_BY_ID),
        ("map_id:", BPF_MAP_GET_FD_BY_ID),
    ] {
        objects.extend(bpf_ids(pid, key).into_iter().map(|id| (cmd, id)));
    }
    let count = |cmd| objects.iter().filter(|(c, _)| *c == cmd).count();
    // Every kind there: a link for each of 53 syscalls' exits, the enter
    // ones of closes and writes, the process and io_uring tracepoints (69
    // here), a program for each kind of tracepoint, and the maps.
    assert!(
        count(BPF_LINK_GET_FD_BY_ID) > 60
            && count(BPF_PROG_GET_FD_BY_ID) >= 4
            && count(BPF_MAP_GET_FD_BY_ID) > 10,
        "{objects:?}"
    );
    assert!(objects.iter().all(|&(cmd, id)| bpf_object_exists(cmd, id)));
    let stopped = w.signal(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&stopped.status),
        Some(libc::SIGKILL)
    );
    eventually(
        "every program, link and map freed",
        || format!("{objects:?}"),
        || {
            objects
                .iter()
                .all(|&(cmd, id)| !bpf_object_exists(cmd, id))
                .then_some(())
        },
    );
}

/// VmHWM (peak resident memory) of `pid`, in kB.
fn peak_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn an_action_flooding_gigabytes_of_output_leaves_memory_bounded() {
    let tree = Tree::new("flood");
    let watched = tree.dir("w");
    let done = tree.root.join("done");
    // 1.5 GiB: one line without an end, many short lines, and stderr.
    let script = "head -c 1G /dev/zero; yes flood | head -c 256M; \
                  head -c 256M /dev/zero >&2; touch \"$1\"";
    let w = Watcher::start(&[
        OsStr::new("-q"),
        "run".as_ref(),
        "--settle".as_ref(),
        "100ms".as_ref(),
        // Not the default minute: the second run must not wait for it.
        "--interval".as_ref(),
        "100ms".as_ref(),
        "--shell".as_ref(),
        watched.as_os_str(),
        "--".as_ref(),
        script.as_ref(),
        "flood".as_ref(),
        done.as_os_str(),
    ]);
    std::fs::write(watched.join("a"), b"x").unwrap();
    eventually(
        "the flood to end",
        || w.stderr(),
        || done.exists().then_some(()),
    );
    let peak = peak_kb(w.pid());
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} kB after 1.5 GiB of output"
    );
    // And it goes on: the next change runs the action again.
    std::fs::remove_file(&done).unwrap();
    std::fs::write(watched.join("b"), b"x").unwrap();
    eventually(
        "a second run",
        || w.stderr(),
        || done.exists().then_some(()),
    );
}

#[test]
fn an_action_that_crashes_is_logged_and_runs_again_at_the_next_change() {
    let tree = Tree::new("crash");
    let watched = tree.dir("w");
    let w = Watcher::start(&[
        OsStr::new("run"),
        "--settle".as_ref(),
        "100ms".as_ref(),
        "--interval".as_ref(),
        "100ms".as_ref(),
        "--shell".as_ref(),
        watched.as_os_str(),
        "--".as_ref(),
        "kill -SEGV $$".as_ref(),
    ]);
    for (i, name) in ["a", "b"].iter().enumerate() {
        std::fs::write(watched.join(name), b"x").unwrap();
        w.wait_for_log("action failed (signal: 11", i + 1);
    }
    assert!(!w.stderr().contains("panicked"), "{}", w.stderr());
}

/// Makes `depth` directories named `name` one in another below `base`,
/// each through a descriptor of its parent (the whole path is longer
/// than the kernel takes in one name); returns the path.
fn deep(base: &Path, name: &[u8], depth: usize) -> PathBuf {
    let cname = CString::new(name).unwrap();
    let base_c = CString::new(base.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on NUL-terminated names and our descriptors.
    let mut fd = unsafe { libc::open(base_c.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY) };
    let mut path = base.to_path_buf();
    for _ in 0..depth {
        // SAFETY: as above: `fd` is ours and open, `cname` NUL-terminated.
        unsafe {
            assert_eq!(libc::mkdirat(fd, cname.as_ptr(), 0o755), 0, "mkdirat");
            let next = libc::openat(fd, cname.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            assert!(next >= 0, "openat");
            libc::close(fd);
            fd = next;
        }
        path.push(OsStr::from_bytes(name));
    }
    // SAFETY: ours.
    unsafe { libc::close(fd) };
    path
}

#[test]
fn names_of_255_bytes_and_paths_past_4096_bytes_stay_exact_or_marked() {
    let tree = Tree::new("long");
    let watched = tree.dir("w");
    // 255 bytes, hostile throughout.
    let mut long_name = b"\n\t\"'\\$(touch pwned)\x1b[2J\xff".to_vec();
    long_name.resize(255, b'x');
    let long_file = watched.join(OsStr::from_bytes(&long_name));
    // 17 directories of 250 bytes: more than 4096 bytes of path.
    let dir_name = vec![b'd'; 250];
    let deep_dir = deep(&watched, &dir_name, 17);
    let deep_file = deep_dir.join("f");
    assert!(deep_file.as_os_str().len() > 4096);

    let log = tree.root.join("runs.log");
    let record = helper_bin("record");
    let trace = Watcher::trace_json_with(&["--events", "create"], &[&watched]);
    let text = Watcher::start(&[
        OsStr::new("trace"),
        "--color".as_ref(),
        "never".as_ref(),
        "--events".as_ref(),
        "create".as_ref(),
        watched.as_os_str(),
    ]);
    let run = Watcher::start(&[
        OsStr::new("run"),
        "--events".as_ref(),
        "create".as_ref(),
        "--settle".as_ref(),
        "200ms".as_ref(),
        watched.as_os_str(),
        "--".as_ref(),
        record.as_os_str(),
        log.as_os_str(),
    ]);

    std::fs::write(&long_file, b"x").unwrap();
    // The deep file by a relative name, from the deepest directory.
    let mut cmd = Command::new(helper_bin("opener"));
    for _ in 0..17 {
        cmd.arg("chdir").arg(OsStr::from_bytes(&dir_name));
    }
    let (_, out) = spawn(cmd.current_dir(&watched).args(["openat:wc", "f"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // JSON: the long name exact; the deep path exact or marked truncated,
    // then the end of the real one.
    let events = trace.events_through(|ev| ev["name"] == "f");
    let long = events
        .iter()
        .find(|ev| path_bytes(ev) == long_file.as_os_str().as_bytes())
        .unwrap_or_else(|| panic!("no event for the 255-byte name: {events:?}"));
    assert_eq!(long["event"], "create");
    let deep_ev = events.last().unwrap();
    let got = path_bytes(deep_ev);
    if deep_ev["truncated"] == true {
        assert!(
            deep_file.as_os_str().as_bytes().ends_with(&got),
            "{deep_ev}"
        );
    } else {
        assert_eq!(got, deep_file.as_os_str().as_bytes());
    }

    // Text: one line per event, nothing raw.
    let lines = [text.next_line(), text.next_line()];
    for line in &lines {
        assert!(
            !line.contains(['\n', '\t', '\u{1b}']),
            "a raw control character: {line:?}"
        );
    }
    assert!(lines[0].contains("\\n\\t"), "{lines:?}");

    // The action: the long name byte-exact on stdin, the deep path there
    // too or counted as omitted.
    let runs = eventually(
        "a run with both",
        || run.stderr(),
        || {
            let runs = runs(&log);
            let seen: u64 = runs
                .iter()
                .map(|r| {
                    recorded_count(r, "WATCHER_PATHS") + recorded_count(r, "WATCHER_PATHS_OMITTED")
                })
                .sum();
            (seen >= 2).then_some(runs)
        },
    );
    let all: Vec<u8> = runs.iter().flat_map(stdin).collect();
    let paths: BTreeSet<&[u8]> = all.split(|&b| b == 0).filter(|p| !p.is_empty()).collect();
    assert!(
        paths.contains(long_file.as_os_str().as_bytes()),
        "{paths:?}"
    );
    let omitted: u64 = runs
        .iter()
        .map(|r| recorded_count(r, "WATCHER_PATHS_OMITTED"))
        .sum();
    assert!(
        paths.contains(deep_file.as_os_str().as_bytes()) || omitted == 1,
        "{paths:?}, {omitted} omitted"
    );
    assert!(!std::env::current_dir().unwrap().join("pwned").exists());
}

/// Every option given a value it cannot take: one line, `watcher: `, no
/// panic, a non-zero status, before anything is watched.
#[test]
fn every_flag_refuses_its_invalid_values_clearly() {
    let tree = Tree::new("flags");
    let dir = tree.root.to_str().unwrap();
    let file = tree.root.join("file");
    std::fs::write(&file, b"").unwrap();
    let file = file.to_str().unwrap();
    // An output file others may write to.
    let shared = tree.root.join("shared.log");
    std::fs::write(&shared, b"").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o666)).unwrap();
    let shared = shared.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["trace", "--ring-buffer-size", "3k", dir],
        &["trace", "--ring-buffer-size", "2G", dir],
        &["trace", "--ring-buffer-size", "lots", dir],
        &["trace", "--events", "write,bogus", dir],
        &["trace", "--events", "", dir],
        &["trace", "--pid", "-1", dir],
        &["trace", "--pid", "x", dir],
        &["trace", "--uid", "no-such-user-here", dir],
        &["trace", "--comm", "a-name-longer-than-15", dir],
        &["trace", "--exclude-comm", "", dir],
        &["trace", "--include", "a[", dir],
        &["trace", "--exclude", "{a", dir],
        &["trace", "--format", "xml", dir],
        &["trace", "--color", "sometimes", dir],
        &["trace", "-o", "/nonexistent-dir/events", dir],
        &["trace", "-o", shared, dir],
        &["trace", "-v", "-q", dir],
        &["trace", "relative/dir"],
        &["trace", file],
        &["trace"],
        &["run", "--settle", "soon", dir, "--", "true"],
        &["run", "--settle", "5y", dir, "--", "true"],
        &["run", "--interval", "0s", dir, "--", "true"],
        &["run", "--timeout", "-1s", dir, "--", "true"],
        &["run", "--stdin-format", "xml", dir, "--", "true"],
        &["run", "--max-paths", "-3", dir, "--", "true"],
        &["run", "--signal", "NOPE", "--target-pid", "1", dir],
        &["run", "--signal", "HUP", dir],
        &["run", "--target-pid", "0", "--signal", "HUP", dir],
        &["run", "--pidfile", "/nonexistent", dir, "--", "true"],
        &["run", "--user", "no-such-user-here", dir, "--", "true"],
        &["run", dir, "--", "/nonexistent/program"],
        &["run", dir],
        &["top", "--sort", "size", dir],
        &["top", "--interval", "never", dir],
        &["serve", "--config", "/nonexistent.toml"],
        &["completions", "tcsh"],
        &["--bogus"],
        &["frobnicate"],
    ];
    for args in cases {
        let (_, out) = spawn(Command::new(watcher_bin()).args(*args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            matches!(out.status.code(), Some(1..=3)),
            "{args:?}: {:?}",
            out.status
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("watcher: "),
            "{args:?}: not one `watcher: ` line:\n{stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("watching"), "{args:?} started: {stderr}");
    }
}

/// Reads trace's JSON lines until each `(event, watch)` record in `wanted`
/// has come; returns every line read.
fn records_until(w: &Watcher, wanted: &[(&str, &Path)]) -> Vec<Value> {
    let mut missing = wanted.to_vec();
    let mut seen = Vec::new();
    while !missing.is_empty() {
        let line = w.next_line();
        let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        missing
            .retain(|(event, dir)| ev["event"] != *event || ev["watch"] != dir.to_str().unwrap());
        seen.push(ev);
    }
    seen
}

#[test]
fn a_deleted_or_replaced_watched_directory_is_reported_and_watched_again() {
    let tree = Tree::new("replaced");
    let media = tree.dir("media");
    let w = Watcher::trace_json_with(&["--events", "create"], &[&media]);
    let schema = schema();

    // Deleted: reported; watched again once it is back.
    std::fs::remove_dir(&media).unwrap();
    let gone = records_until(&w, &[("unwatched", &media)]);
    let reason = gone.last().unwrap()["reason"].as_str().unwrap();
    assert!(reason.ends_with(": no such directory"), "{reason}");
    std::fs::create_dir(&media).unwrap();
    let back = records_until(&w, &[("rewatched", &media)]);
    assert_eq!(back.last().unwrap().get("replaced"), None);
    w.events_until_marker(&media);

    // Replaced in one go: moved away and made anew.
    let old = tree.root.join("media.old");
    std::fs::rename(&media, &old).unwrap();
    std::fs::create_dir(&media).unwrap();
    let replaced = records_until(&w, &[("rewatched", &media)]);
    // `replaced`, unless a look came between the two and saw it gone.
    let seen_gone = replaced.iter().any(|ev| ev["event"] == "unwatched");
    assert_eq!(
        replaced.last().unwrap().get("replaced").is_some(),
        !seen_gone,
        "{replaced:?}"
    );
    // The old directory is no longer watched (under the name of the new
    // one), the new one is.
    run("touch", &[old.join("stale").as_os_str()]);
    let events = w.events_until_marker(&media);
    assert!(
        events
            .iter()
            .all(|ev| ev["event"] == "create" && !ev["path"].as_str().unwrap().contains("stale")),
        "{events:?}"
    );
    for ev in gone.iter().chain(&back).chain(&replaced) {
        assert_valid(&schema, ev);
    }
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains("no such directory: not watched until it is back")
            && stopped.stderr.contains("watched again"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn an_unmounted_filesystem_is_reported_and_its_mount_point_followed() {
    let tree = Tree::new("unmount");
    let mnt = tree.dir("mnt");
    let mount = Mount::tmpfs(&mnt);
    let inner = mnt.join("inner");
    std::fs::create_dir(&inner).unwrap();
    let w = Watcher::trace_json_with(&["--events", "create"], &[&mnt, &inner]);
    w.events_until_marker(&inner);

    // The mount point is now the directory under it; inner is gone.
    mount.unmount();
    let lines = records_until(&w, &[("rewatched", &mnt), ("unwatched", &inner)]);
    let rewatched = lines.iter().find(|ev| ev["event"] == "rewatched").unwrap();
    assert_eq!(rewatched["replaced"], true, "{lines:?}");
    w.events_until_marker(&mnt);

    // Mounted again: both watched again.
    let _mount = Mount::tmpfs(&mnt);
    std::fs::create_dir(&inner).unwrap();
    records_until(&w, &[("rewatched", &mnt), ("rewatched", &inner)]);
    let events = w.events_until_marker(&inner);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["watch"], inner.to_str().unwrap());
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

/// The record helper's `n`th run (from 1) in `log`, once it is there.
fn nth_run(w: &Watcher, log: &Path, n: usize) -> Value {
    wait_for_runs(w, log, n).swap_remove(n - 1)
}

#[test]
fn a_watched_directory_going_away_or_coming_back_runs_the_action() {
    let tree = Tree::new("replaced-run");
    let media = tree.dir("media");
    let log = tree.root.join("runs.log");
    let w = Watcher::start(&[
        OsStr::new("run"),
        // Not the delete of the directory itself: one run for each step.
        "--events".as_ref(),
        "create".as_ref(),
        "--settle".as_ref(),
        "100ms".as_ref(),
        "--interval".as_ref(),
        "100ms".as_ref(),
        media.as_os_str(),
        "--".as_ref(),
        helper_bin("record").as_os_str(),
        log.as_os_str(),
    ]);
    std::fs::remove_dir(&media).unwrap();
    let gone = nth_run(&w, &log, 1);
    assert_eq!(recorded_count(&gone, "WATCHER_REPLACED"), 1, "{gone}");
    assert_eq!(gone["env"]["WATCHER_WATCHES"], "", "{gone}");
    std::fs::create_dir(&media).unwrap();
    let back = nth_run(&w, &log, 2);
    assert_eq!(recorded_count(&back, "WATCHER_REPLACED"), 1, "{back}");
    assert_eq!(back["env"]["WATCHER_WATCHES"], media.to_str().unwrap());
    let file = media.join("new");
    run("touch", &[file.as_os_str()]);
    let changed = nth_run(&w, &log, 3);
    assert_eq!(recorded_count(&changed, "WATCHER_REPLACED"), 0, "{changed}");
    assert!(stdin(&changed).starts_with(file.as_os_str().as_bytes()));
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(runs(&log).len(), 3, "{}", stopped.stderr);
}

#[test]
fn per_thread_and_per_fd_maps_are_emptied_by_exits_and_stay_bounded() {
    let tree = Tree::new("churn");
    let mnt = tree.dir("mnt");
    let _mount = Mount::tmpfs(&mnt);
    // A ring buffer that holds the burst the exit makes.
    let w = Watcher::trace_json_with(
        &[
            "--events",
            "close_write,create",
            "--ring-buffer-size",
            "64M",
        ],
        &[&mnt],
    );
    let entries = |map| map_entries(w.pid(), map);

    // A process that exits with 2,000 descriptors open for writing: each
    // is closed by the exit, one close_write each, and forgotten.
    const HELD: usize = 2_000;
    let held: Vec<PathBuf> = (0..HELD).map(|i| mnt.join(format!("held{i}"))).collect();
    let ops: Vec<(&str, &Path)> = held.iter().map(|p| ("openat:wck", p.as_path())).collect();
    let (_, results) = watcher_tests::opener(&ops);
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");
    let mut closed = BTreeSet::new();
    while closed.len() < HELD {
        let line = w.next_line();
        let ev: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(ev["event"], "overflow", "{line}");
        if ev["event"] == "close_write" {
            assert!(closed.insert(path_bytes(&ev)), "closed twice: {line}");
        }
    }
    let expected: BTreeSet<Vec<u8>> = held
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();
    assert_eq!(closed, expected);
    assert_eq!(entries("WRITE_FDS").0, 0);
    assert_eq!(entries("WRITERS").0, 0);

    // Threads that do not return: 200 processes blocked opening a FIFO for
    // writing (no reader). With BTF an open keeps nothing per thread (its
    // exit reads the arguments from the saved registers): the map stays as
    // it was, and changes are still reported.
    let fifo = mnt.join("fifo");
    assert!(watcher_tests::opener(&[("mknodat", &fifo)]).1 == ["ok"]);
    let before = entries("STASH").0;
    let blocked = block_on_fifo(&fifo);
    w.events_until_marker(&mnt);
    assert_eq!(entries("STASH").0, before);
    drop(blocked);
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);

    // Without BTF an open is kept from its entry to its exit: each blocked
    // one holds an entry while it waits and, killed, none.
    let w = Watcher::start_command(without_btf(r#"exec "$0" trace --format json "$1""#).arg(&mnt));
    let entries = |map| map_entries(w.pid(), map);
    let before = entries("STASH").0;
    let blocked = block_on_fifo(&fifo);
    let (in_flight, max) = eventually(
        "every blocked open stashed",
        || format!("{:?}", entries("STASH")),
        || {
            let (n, max) = entries("STASH");
            (n >= before + blocked.0.len() as u64).then_some((n, max))
        },
    );
    assert!(in_flight <= u64::from(max));
    w.events_until_marker(&mnt);
    drop(blocked);
    eventually(
        "the killed opens' entries gone",
        || format!("{:?}", entries("STASH")),
        || (entries("STASH").0 <= before).then_some(()),
    );
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

/// 200 processes blocked opening `fifo` for writing (it has no reader),
/// killed and reaped when dropped (also when the test fails first).
fn block_on_fifo(fifo: &Path) -> Blocked {
    Blocked(
        (0..200)
            .map(|_| {
                Command::new(helper_bin("opener"))
                    .arg("openat:w")
                    .arg(fifo)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    )
}

struct Blocked(Vec<Child>);

impl Drop for Blocked {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn thousands_of_directories_are_watched_and_the_limit_says_what_to_do() {
    let tree = Tree::new("many");
    let max = watcher_common::MAX_WATCHES as usize;
    let dirs: Vec<PathBuf> = (0..=max)
        .map(|i| {
            let dir = tree.root.join(format!("d{i:04}"));
            std::fs::create_dir(&dir).unwrap();
            dir
        })
        .collect();
    // 2,000 on the command line, each its own watch.
    let some = &dirs[..2000];
    let args: Vec<&Path> = some.iter().map(PathBuf::as_path).collect();
    let w = Watcher::trace_json(&args);
    for dir in [&some[0], &some[1999]] {
        let file = dir.join("f");
        run("touch", &[file.as_os_str()]);
        let ev = w.events_through(|ev| path_bytes(ev) == file.as_os_str().as_bytes());
        let ev = ev.last().unwrap();
        assert_eq!(ev["watch"].as_str(), dir.to_str(), "{ev}");
    }
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    // One more than the limit: one line that says how to go past it.
    let mut cmd = Command::new(watcher_bin());
    cmd.arg("trace").args(&dirs);
    let (_, out) = spawn(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} directories given, watcher can watch at most {max}",
            max + 1
        )) && stderr.contains("watch the directories they have in common instead"),
        "{stderr}"
    );
}
