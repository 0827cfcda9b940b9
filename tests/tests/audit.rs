//! The audit trail: who made each change, read by the kernel during the
//! syscall; the JSON schema; filters; loss accounting; output to a file,
//! to the journal; and `watcher top`.

use std::{
    ffi::OsStr,
    fs,
    os::unix::{
        ffi::OsStrExt,
        fs::{MetadataExt, PermissionsExt},
        net::UnixDatagram,
    },
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use watcher_tests::{
    Tree, Watcher, assert_valid, eventually, helper_bin, of_pid, opener, path_bytes, run, schema,
    spawn, watcher_bin,
};

/// `watcher trace --format json ARGS... DIR`
fn trace(args: &[&str], dir: &Path) -> Watcher {
    Watcher::trace_json_with(args, &[dir])
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// The inode number in `/proc/PID/ns/mnt`'s link.
fn mount_ns(pid: &str) -> u64 {
    let link = fs::read_link(format!("/proc/{pid}/ns/mnt")).expect("ns link");
    ns_inode(link.to_str().unwrap())
}

/// N in a namespace link's `mnt:[N]`.
fn ns_inode(link: &str) -> u64 {
    let link = link.trim();
    link["mnt:[".len()..link.len() - 1].parse().unwrap()
}

#[test]
fn a_short_lived_writer_is_attributed_from_the_kernel() {
    let tree = Tree::new("short-lived");
    let media = tree.dir("media");
    let w = Watcher::trace_json(&[&media]);
    let file = media.join("quick");
    // opener execs, makes one syscall and exits at once: nothing about it
    // is left in /proc by the time watcher sees the event.
    let (pid, _) = opener(&[("openat:wc", &file)]);
    let events = w.events_until_marker(&media);
    let ev = of_pid(&events, pid)[0];
    let helper = helper_bin("opener");
    assert_eq!(ev["comm"], "opener");
    assert_eq!(
        ev["exe"].as_str().unwrap(),
        s(&helper.canonicalize().unwrap())
    );
    assert_eq!(ev["cmdline"], json!([s(&helper), "openat:wc", s(&file)]));
    assert!(ev.get("cmdline_truncated").is_none());
    assert_eq!(ev["ppid"], std::process::id());
    assert_eq!(
        (&ev["uid"], &ev["euid"], &ev["gid"]),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(ev["mntns"], mount_ns("self"));
    // The cgroup v2 id is its directory's inode; the path is found from it.
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    assert_eq!(ev["cgroup"], own);
    if let Some(root) = cgroup2_root() {
        let ino = fs::metadata(format!("{root}{own}")).unwrap().ino();
        assert_eq!(ev["cgroup_id"], ino);
    }
}

/// The kernel sends a process image's executable and command line with
/// its first event only, and user space gives them back to the later
/// ones; an exec starts a new image, named by its own first event even
/// when it writes once and exits at once.
#[test]
fn every_event_of_a_process_image_is_named_and_an_exec_starts_a_new_one() {
    let tree = Tree::new("images");
    let media = tree.dir("media");
    let w = Watcher::trace_json(&[&media]);
    let (first, second, execed) = (
        media.join("first"),
        media.join("second"),
        media.join("execed"),
    );
    let opener = helper_bin("opener");
    let script = r#"echo a > "$1"; echo b >> "$2"; echo c > "$2"; exec "$0" openat:wc "$3""#;
    let (pid, out) = spawn(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&opener)
            .args([&first, &second, &execed]),
    );
    assert!(out.status.success(), "{out:?}");
    let events = w.events_until_marker(&media);
    let on = |file: &Path| -> Vec<&Value> {
        of_pid(&events, pid)
            .into_iter()
            .filter(|ev| path_bytes(ev) == file.as_os_str().as_bytes())
            .collect()
    };
    let shell = fs::canonicalize("/bin/sh").unwrap();
    let by_shell: Vec<&Value> = [&first, &second].into_iter().flat_map(|f| on(f)).collect();
    // A write for each of the three opens.
    assert_eq!(by_shell.len(), 3, "{events:#?}");
    for ev in by_shell {
        assert_eq!(ev["exe"].as_str().unwrap(), s(&shell), "{ev}");
        assert_eq!(
            ev["cmdline"],
            json!([
                "sh",
                "-c",
                script,
                s(&opener),
                s(&first),
                s(&second),
                s(&execed)
            ]),
            "{ev}"
        );
    }
    let by_opener = on(&execed);
    assert!(!by_opener.is_empty(), "{events:#?}");
    for ev in by_opener {
        assert_eq!(
            ev["exe"].as_str().unwrap(),
            s(&opener.canonicalize().unwrap()),
            "{ev}"
        );
        assert_eq!(
            ev["cmdline"],
            json!([s(&opener), "openat:wc", s(&execed)]),
            "{ev}"
        );
    }
}

#[test]
fn a_writer_whose_executable_was_deleted_is_marked() {
    let validator = schema();
    let tree = Tree::new("deleted-exe");
    let media = tree.dir("media");
    let copy = tree.dir("bin").join("gone-opener");
    // Copied by `cp`, not by this process: a descriptor of ours open for
    // writing could be inherited by a process another test forks at that
    // moment, and exec would fail with ETXTBSY.
    run("cp", &[helper_bin("opener").as_os_str(), copy.as_os_str()]);
    let copy = copy.canonicalize().unwrap();
    let w = Watcher::trace_json(&[&media]);
    let by_deleted = media.join("by-deleted");
    let by_normal = media.join("by-normal");
    // The copy removes its own file first, then writes: by then it runs an
    // executable that no longer has a name. No waiting between the two.
    let (deleted_pid, out) = spawn(
        Command::new(&copy)
            .arg("unlinkat")
            .arg(&copy)
            .arg("openat:wc")
            .arg(&by_deleted),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\nok\n");
    assert!(!copy.exists());
    let (normal_pid, _) = opener(&[("openat:wc", &by_normal)]);
    let events = w.events_until_marker(&media);
    for ev in &events {
        assert_valid(&validator, ev);
    }
    let ev = of_pid(&events, deleted_pid)[0];
    assert_eq!(path_bytes(ev), by_deleted.as_os_str().as_bytes());
    assert_eq!(ev["exe"].as_str().unwrap(), s(&copy), "{ev}");
    assert_eq!(ev["exe_deleted"], true, "{ev}");
    assert_eq!(ev["comm"], "gone-opener");
    let ev = of_pid(&events, normal_pid)[0];
    assert_eq!(path_bytes(ev), by_normal.as_os_str().as_bytes());
    assert_eq!(
        ev["exe"].as_str().unwrap(),
        s(&helper_bin("opener").canonicalize().unwrap())
    );
    assert!(ev.get("exe_deleted").is_none(), "{ev}");
    // The marker's `touch` too.
    assert!(events.last().unwrap().get("exe_deleted").is_none());
}

/// Where cgroup v2 is mounted, if it is.
fn cgroup2_root() -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|l| {
        let (mount, fs) = l.split_once(" - ")?;
        fs.starts_with("cgroup2 ")
            .then(|| mount.split(' ').nth(4).unwrap().to_string())
    })
}

#[test]
fn effective_ids_a_long_command_line_and_a_container_cgroup() {
    let Some(root) = cgroup2_root() else {
        eprintln!("no cgroup v2 here: skipped");
        return;
    };
    let tree = Tree::new("who");
    let media = tree.dir("media");
    fs::set_permissions(&media, fs::Permissions::from_mode(0o777)).unwrap();
    let id = "0123456789abcdef".repeat(4);
    let cgroup = Path::new(&root).join(format!("docker-{id}.scope"));
    fs::create_dir(&cgroup).unwrap();
    let w = Watcher::trace_json(&[&media]);
    let file = media.join("by-nobody");
    // The shell moves itself into the cgroup, then writes as euid 65534
    // (real uid still 0; `-p` keeps the shell from resetting it) with an argument that makes its command line
    // longer than the 1,024 bytes an event carries.
    let long = "x".repeat(1500);
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec setpriv --euid 65534 --egid 65534 --clear-groups \
         sh -p -c ': > {}' sh {long}",
        cgroup.display(),
        file.display()
    );
    let (_, out) = spawn(Command::new("sh").args(["-c", &script]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = w.events_until_marker(&media);
    // Removed only now: watcher finds the path of a cgroup that exists.
    let _ = fs::remove_dir(&cgroup);
    let ev = events
        .iter()
        .find(|ev| path_bytes(ev) == file.as_os_str().as_bytes())
        .expect("the write");
    assert_eq!(
        (&ev["uid"], &ev["euid"], &ev["egid"]),
        (&json!(0), &json!(65534), &json!(65534))
    );
    assert_eq!(ev["comm"], "sh");
    assert_eq!(ev["cgroup"], format!("/docker-{id}.scope"));
    assert_eq!(ev["container_id"], id);
    assert_eq!(ev["cmdline_truncated"], true);
    let args = ev["cmdline"].as_array().unwrap();
    let script = format!(": > {}", file.display());
    assert_eq!(
        args[..4],
        [json!("sh"), json!("-p"), json!("-c"), json!(script)]
    );
    let carried: usize = args.iter().map(|a| a.as_str().unwrap().len() + 1).sum();
    // Every byte carried, the last argument cut without its NUL.
    assert_eq!(carried - 1, 1024);
}

#[test]
fn a_writer_in_another_mount_namespace_is_seen_with_its_namespace() {
    let tree = Tree::new("mntns");
    let media = tree.dir("media");
    let w = Watcher::trace_json(&[&media]);
    let file = media.join("from-ns");
    let script = format!("readlink /proc/self/ns/mnt; : > {}", file.display());
    let (pid, out) = spawn(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = ns_inode(&String::from_utf8(out.stdout).unwrap());
    assert_ne!(ns, mount_ns("self"));
    let events = w.events_until_marker(&media);
    let ev = of_pid(&events, pid)[0];
    assert_eq!(path_bytes(ev), file.as_os_str().as_bytes());
    assert_eq!(ev["mntns"], ns);
    assert_eq!(ev["comm"], "sh");
}

#[test]
fn a_writer_in_a_chroot_is_seen_with_its_namespace() {
    let tree = Tree::new("chroot");
    let media = tree.dir("media");
    let jail = tree.dir("jail");
    let w = Watcher::trace_json(&[&media]);
    // A root made of bind mounts (in a mount namespace of its own, gone
    // with the shell), with the watched directory inside as /media.
    let script = format!(
        "for d in usr bin sbin lib lib64 media; do \
           [ -e /$d ] || [ $d = media ] || continue; mkdir -p {jail}/$d; done && \
         for d in usr bin sbin lib lib64; do \
           [ -e /$d ] && mount --bind /$d {jail}/$d; done; \
         mount --bind {media} {jail}/media && \
         chroot {jail} /bin/sh -c 'readlink /proc/self/ns/mnt 2>/dev/null; : > /media/jailed'",
        jail = jail.display(),
        media = media.display(),
    );
    let (_, out) = spawn(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = w.events_until_marker(&media);
    let ev = events
        .iter()
        .find(|ev| ev["name"] == "/media/jailed")
        .unwrap_or_else(|| panic!("the write in the chroot: {events:?}"));
    // Named by the watch's path; the writer's path is the one it saw
    // from its root, through the bind mount.
    assert_eq!(path_bytes(ev), media.join("jailed").as_os_str().as_bytes());
    assert_eq!(ev["writer_path"], "/media/jailed");
    assert_eq!(ev["watch"], media.to_str().unwrap());
    assert_ne!(ev["mntns"], mount_ns("self"));
    // So is the shell's executable: the one bound into the jail.
    let exe = ev["exe"].as_str().unwrap();
    assert!(exe.starts_with(jail.to_str().unwrap()), "{exe}");
}

#[test]
fn delivered_plus_lost_is_exactly_what_was_produced() {
    let tree = Tree::new("loss");
    let media = tree.dir("media");
    let w = trace(&["--events", "write", "--ring-buffer-size", "4k"], &media);
    // Stopped, watcher reads nothing: the 4 KiB ring buffer fills after a
    // few events and the rest are counted as lost.
    w.send(libc::SIGSTOP);
    const FILES: usize = 300;
    let names: Vec<_> = (0..FILES).map(|i| media.join(format!("f{i}"))).collect();
    let ops: Vec<(&str, &Path)> = names.iter().map(|n| ("openat:wc", n.as_path())).collect();
    let (pid, _) = opener(&ops);
    w.send(libc::SIGCONT);
    // Stopping drains the ring buffer and reports the last losses.
    let stopped = w.signal(libc::SIGINT);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let lines = w_lines(stopped.stdout);
    let delivered = lines.iter().filter(|ev| ev["pid"] == pid).count();
    let lost: u64 = lines
        .iter()
        .filter(|ev| ev["event"] == "overflow")
        .map(|ev| ev["lost"].as_u64().unwrap())
        .sum();
    assert!(lost > 0, "nothing lost: {delivered} delivered");
    assert_eq!(delivered as u64 + lost, FILES as u64, "{}", stopped.stderr);
    let last = lines.iter().rfind(|ev| ev["event"] == "overflow").unwrap();
    assert_eq!(last["lost_total"], lost);
}

fn w_lines(stdout: Vec<String>) -> Vec<Value> {
    stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn every_kind_validates_against_the_documented_schema() {
    let validator = schema();
    let tree = Tree::new("schema");
    let media = tree.dir("media");
    let w = trace(&["--events", "all"], &media);
    let f = |n: &str| media.join(n);
    let a = f("a");
    let b = f("b\u{1b}[31m\n");
    let bad = media.join(OsStr::from_bytes(b"bad\xff"));
    run("touch", &[a.as_os_str()]);
    run("truncate", &["-s".as_ref(), "0".as_ref(), a.as_os_str()]);
    run("chmod", &["600".as_ref(), a.as_os_str()]);
    run("mv", &[a.as_os_str(), b.as_os_str()]);
    run("ln", &[b.as_os_str(), bad.as_os_str()]);
    run("mkdir", &[f("d").as_os_str()]);
    run("rm", &[b.as_os_str()]);
    run(
        "sh",
        &[
            "-c".as_ref(),
            "exec 3> \"$1\"".as_ref(),
            "sh".as_ref(),
            f("c").as_os_str(),
        ],
    );
    let events = w.events_until_marker(&media);
    let kinds: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|ev| ev["event"].as_str().unwrap())
        .collect();
    for kind in [
        "write",
        "create",
        "delete",
        "rename",
        "mkdir",
        "link",
        "truncate",
        "attrib",
        "close_write",
    ] {
        assert!(kinds.contains(kind), "no {kind} event among {kinds:?}");
    }
    assert!(events.iter().any(|ev| ev.get("path_base64").is_some()));
    for ev in &events {
        assert_valid(&validator, ev);
    }
    // The overflow record too.
    let lossy = trace(&["--events", "write", "--ring-buffer-size", "4k"], &media);
    lossy.send(libc::SIGSTOP);
    let names: Vec<_> = (0..100).map(|i| media.join(format!("o{i}"))).collect();
    let ops: Vec<(&str, &Path)> = names.iter().map(|n| ("openat:wc", n.as_path())).collect();
    opener(&ops);
    lossy.send(libc::SIGCONT);
    let stopped = lossy.signal(libc::SIGINT);
    let lines = w_lines(stopped.stdout);
    let overflow = lines
        .iter()
        .find(|ev| ev["event"] == "overflow")
        .expect("an overflow");
    assert_valid(&validator, overflow);
    // And the schema is strict: an unknown field fails.
    let mut extra = events[0].clone();
    extra["surprise"] = json!(1);
    assert!(!validator.is_valid(&extra));
}

#[test]
fn process_filters_are_applied_in_the_kernel() {
    let tree = Tree::new("proc-filters");
    let media = tree.dir("media");
    fs::set_permissions(&media, fs::Permissions::from_mode(0o777)).unwrap();
    let by = |name: &str| media.join(name);
    let as_nobody = |file: &Path| {
        run(
            "setpriv",
            &[
                "--reuid=65534".as_ref(),
                "--regid=65534".as_ref(),
                "--clear-groups".as_ref(),
                "touch".as_ref(),
                file.as_os_str(),
            ],
        )
    };
    // Each case: the filter, then one change it leaves out, then a marker
    // it keeps (and nothing else in between).
    {
        let w = trace(&["--events", "create", "--comm", "touch"], &media);
        run("cp", &["/dev/null".as_ref(), by("by-cp").as_os_str()]);
        let events = w.events_until_marker(&media);
        assert_eq!(events.len(), 1, "{events:?}");
    }
    {
        let w = trace(
            &["--events", "create,mkdir", "--exclude-comm", "cp"],
            &media,
        );
        run("cp", &["/dev/null".as_ref(), by("by-cp-2").as_os_str()]);
        run("mkdir", &[by("by-mkdir").as_os_str()]);
        let events = w.events_until_marker(&media);
        let comms: Vec<&Value> = events.iter().map(|ev| &ev["comm"]).collect();
        assert_eq!(comms, [&json!("mkdir"), &json!("touch")]);
    }
    {
        let w = trace(&["--events", "create", "--uid", "root"], &media);
        as_nobody(&by("by-nobody"));
        let events = w.events_until_marker(&media);
        assert_eq!(events.len(), 1, "{events:?}");
        let w = trace(&["--events", "create", "--uid", "nobody"], &media);
        as_nobody(&by("by-nobody-2"));
        let ev = w.events_through(|_| true);
        assert_eq!(ev[0]["uid"], 65534);
    }
    {
        // A shell that waits on its stdin, so that its pid is known before
        // watcher starts.
        let mut shell = Command::new("sh")
            .args(["-c", "read _; : > \"$1\"; : > \"$2\"", "sh"])
            .arg(by("by-pid"))
            .arg(by("by-pid-end"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = shell.id().to_string();
        let w = trace(&["--events", "create", "--pid", &pid], &media);
        run("touch", &[by("by-other").as_os_str()]);
        use std::io::Write as _;
        shell.stdin.take().unwrap().write_all(b"\n").unwrap();
        assert!(shell.wait().unwrap().success());
        let events = w.events_through(|ev| path_bytes(ev).ends_with(b"by-pid-end"));
        let paths: Vec<Vec<u8>> = events.iter().map(path_bytes).collect();
        assert_eq!(
            paths,
            [by("by-pid"), by("by-pid-end")].map(|p| p.as_os_str().as_bytes().to_vec())
        );
    }
}

#[test]
fn path_globs_include_and_exclude() {
    let tree = Tree::new("globs");
    let media = tree.dir("media");
    let git = tree.dir("media/repo/.git/objects");
    let w = trace(
        &[
            "--events",
            "create",
            "--exclude",
            "*.part",
            "--exclude",
            ".git/",
            "--exclude",
            ".*.swp",
        ],
        &media,
    );
    for name in ["a.mp3.part", ".notes.swp", "keep.txt"] {
        run("touch", &[media.join(name).as_os_str()]);
    }
    run("touch", &[git.join("obj").as_os_str()]);
    run(
        "mv",
        &[
            media.join("a.mp3.part").as_os_str(),
            media.join("a.mp3").as_os_str(),
        ],
    );
    let events = w.events_until_marker(&media);
    let names: Vec<String> = events
        .iter()
        .map(|ev| {
            let p = path_bytes(ev);
            String::from_utf8_lossy(&p[media.as_os_str().len() + 1..]).into_owned()
        })
        .collect();
    assert_eq!(names[0], "keep.txt", "{names:?}");
    assert!(names[1].starts_with(".marker-"), "{names:?}");
    assert_eq!(names.len(), 2);
    let stopped = w.stop();
    assert!(stopped.status.success());

    let w = trace(
        &["--events", "create,rename", "--include", "*.mp3", "--stats"],
        &media,
    );
    run(
        "touch",
        &[
            media.join("b.txt").as_os_str(),
            media.join("b.mp3").as_os_str(),
        ],
    );
    run(
        "mv",
        &[
            media.join("keep.txt").as_os_str(),
            media.join("keep.mp3").as_os_str(),
        ],
    );
    run("touch", &[media.join("end.mp3").as_os_str()]);
    let events = w.events_through(|ev| path_bytes(ev).ends_with(b"end.mp3"));
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|ev| {
            let p = path_bytes(ev);
            (
                ev["event"].as_str().unwrap().to_owned(),
                String::from_utf8_lossy(&p[media.as_os_str().len() + 1..]).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("create", "b.mp3"),
            ("rename", "keep.mp3"),
            ("create", "end.mp3")
        ]
        .map(|(k, p)| (k.to_owned(), p.to_owned()))
    );
    let stopped = w.signal(libc::SIGINT);
    assert!(
        stopped.stderr.contains(
            "stats: 3 events (create 2, rename 1), 0 lost, 1 left out by --include/--exclude"
        ),
        "{}",
        stopped.stderr
    );
}

/// `watcher trace --format json --events create --output OUTPUT DIR`
fn trace_to(output: &Path, dir: &Path) -> Watcher {
    Watcher::start(&[
        "trace".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "--events".as_ref(),
        "create".as_ref(),
        "--output".as_ref(),
        output.as_os_str(),
        dir.as_os_str(),
    ])
}

#[test]
fn output_file_is_reopened_on_sighup_and_not_world_writable() {
    let tree = Tree::new("output");
    let media = tree.dir("media");
    let log = tree.root.join("events.log");
    let w = trace_to(&log, &media);
    let contains = |path: &Path, name: &str| {
        fs::read_to_string(path).is_ok_and(|text| text.contains(&format!("/{name}\"")))
    };
    run("touch", &[media.join("before").as_os_str()]);
    eventually("the first event in the file", String::new, || {
        contains(&log, "before").then_some(())
    });
    let rotated = tree.root.join("events.log.1");
    fs::rename(&log, &rotated).unwrap();
    w.send(libc::SIGHUP);
    eventually("the file reopened", String::new, || {
        log.exists().then_some(())
    });
    run("touch", &[media.join("after").as_os_str()]);
    eventually("the second event in the new file", String::new, || {
        contains(&log, "after").then_some(())
    });
    assert!(!contains(&rotated, "after"));
    assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777, 0o640);
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn journal_entries_carry_structured_fields() {
    let tree = Tree::new("journal");
    let media = tree.dir("media");
    // A stand-in for journald: a datagram socket bound where watcher,
    // in its own mount namespace, finds /run/systemd/journal/socket.
    let sockdir = tree.dir("journal");
    let socket = UnixDatagram::bind(sockdir.join("socket")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let script = format!(
        "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && \
         mount --bind {} /run/systemd/journal && exec {} trace --format journal --events create {}",
        sockdir.display(),
        watcher_bin().display(),
        media.display()
    );
    let w = Watcher::start_command(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    let file = media.join("new\nline");
    run("touch", &[file.as_os_str()]);
    let mut buf = vec![0; 1 << 16];
    let n = socket.recv(&mut buf).expect("a journal entry");
    let fields = parse_journal(&buf[..n]);
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("SYSLOG_IDENTIFIER"), Some(b"watcher".to_vec()));
    assert_eq!(get("WATCHER_EVENT"), Some(b"create".to_vec()));
    assert_eq!(
        get("WATCHER_PATH"),
        Some(file.as_os_str().as_bytes().to_vec())
    );
    assert_eq!(get("WATCHER_COMM"), Some(b"touch".to_vec()));
    assert_eq!(get("OBJECT_PID"), get("WATCHER_PID"));
    assert!(get("WATCHER_EXE").is_some_and(|e| e.ends_with(b"/touch")));
    assert_eq!(get("PRIORITY"), Some(b"6".to_vec()));
    drop(w);
}

/// A journald of its own, in a mount namespace of its own (tmpfs on /run
/// and /var/log: it writes nothing of the machine's): killed on drop.
struct Journald(std::process::Child);

impl Journald {
    fn start() -> Self {
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(
                "mount -t tmpfs none /run && mount -t tmpfs none /var/log && \
                 mkdir -p /run/systemd/journal && exec /lib/systemd/systemd-journald",
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let journald = Self(child);
        // Its sockets, as its namespace sees them.
        let socket = format!("/proc/{}/root/run/systemd/journal/socket", journald.pid());
        eventually(
            "journald's socket",
            || socket.clone(),
            || Path::new(&socket).exists().then_some(()),
        );
        journald
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// `program ARGS...` in journald's mount namespace.
    fn enter(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid(), "-m", "--"]).arg(program);
        cmd
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readmes_journal_example_reads_watchers_events_from_a_real_journald() {
    // The command line the README gives, as it gives it.
    let readme = include_str!("../../README.md");
    let example: Vec<&str> = readme
        .lines()
        .find(|l| l.starts_with("journalctl -o json"))
        .expect("the README's journalctl example")
        .split_whitespace()
        .collect();
    let tree = Tree::new("journald");
    let media = tree.dir("media");
    let journald = Journald::start();
    let w = Watcher::start_command(
        journald
            .enter(watcher_bin())
            .args(["trace", "--format", "journal", "--events", "create"])
            .arg(&media),
    );
    let file = media.join("report \"$(id)\".csv");
    let pid = run("touch", &[file.as_os_str()]);
    let (program, args) = example.split_first().unwrap();
    let entry = eventually(
        "the create in the journal",
        || w.stderr(),
        || {
            let (_, out) = spawn(journald.enter(program).args(args));
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .find(|e| e["WATCHER_PATH"] == file.to_str().unwrap())
        },
    );
    assert_eq!(entry["WATCHER_EVENT"], "create");
    assert_eq!(entry["WATCHER_PID"], pid.to_string());
    assert_eq!(entry["WATCHER_COMM"], "touch");
    drop(w);
}

/// The journal's native protocol: `KEY=value\n`, or `KEY\n` + 64-bit
/// little-endian length + value + `\n`.
fn parse_journal(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n').expect("a field line");
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((
                String::from_utf8(line[..eq].to_vec()).unwrap(),
                line[eq + 1..].to_vec(),
            ));
            data = &data[end + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).unwrap();
            let len = u64::from_le_bytes(data[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = data[end + 9..end + 9 + len].to_vec();
            assert_eq!(data[end + 9 + len], b'\n');
            fields.push((key, value));
            data = &data[end + 10 + len..];
        }
    }
    fields
}

#[test]
fn top_once_counts_a_scripted_workload() {
    let tree = Tree::new("top");
    let media = tree.dir("media");
    let w = Watcher::start(&[
        "top".as_ref(),
        "--once".as_ref(),
        "--interval".as_ref(),
        "1h".as_ref(),
        "--sort".as_ref(),
        "events".as_ref(),
        media.as_os_str(),
    ]);
    // One process makes 5 files (create + write each); another deletes 2.
    let names: Vec<_> = (0..5).map(|i| media.join(format!("t{i}"))).collect();
    let ops: Vec<(&str, &Path)> = names.iter().map(|n| ("openat:wc", n.as_path())).collect();
    let (writer, _) = opener(&ops);
    let rm = run("rm", &[names[0].as_os_str(), names[1].as_os_str()]);
    // --once with an hour's interval: the report comes at SIGINT, after the
    // ring buffer is drained.
    let stopped = w.signal(libc::SIGINT);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let report = stopped.stdout.join("\n");
    let row = |pid: u32| {
        report
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("no row for {pid}:\n{report}"))
            .split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
    };
    // EVENTS WRITES CREATES DELETES RENAMES
    assert_eq!(row(writer), ["10", "5", "5", "0", "0"], "{report}");
    assert_eq!(row(rm), ["2", "0", "0", "2", "0"], "{report}");
    let t0 = report
        .lines()
        .find(|l| l.ends_with(&format!("{}", names[0].display())))
        .unwrap_or_else(|| panic!("no row for t0:\n{report}"));
    assert_eq!(
        t0.split_whitespace().take(5).collect::<Vec<_>>(),
        ["3", "1", "1", "1", "0"]
    );
    // Most events first: the writer's row comes before rm's.
    let pos = |pid: u32| report.find(&format!(" {pid} ")).unwrap();
    assert!(pos(writer) < pos(rm), "{report}");
}

/// `watcher ARGS...` that exits by itself: its status and stderr.
fn refused(args: &[&OsStr]) -> (Option<i32>, String) {
    let (_, out) = spawn(Command::new(watcher_bin()).args(args));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_is_never_a_symlink_nor_another_users_file_in_a_sticky_directory() {
    let tree = Tree::new("outsafe");
    let media = tree.dir("media");
    // A /tmp of the test's own: sticky, anyone may write.
    let tmp = tree.dir("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    let nobody = 65534;
    // A root file, and a link to it that another user planted.
    let precious = tree.root.join("precious");
    fs::write(&precious, b"root's\n").unwrap();
    let link = tmp.join("x.log");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(nobody), Some(nobody)).unwrap();
    // A file another user made there.
    let theirs = tmp.join("y.log");
    fs::write(&theirs, b"").unwrap();
    std::os::unix::fs::chown(&theirs, Some(nobody), Some(nobody)).unwrap();
    for (output, expect) in [
        (&link, "a symbolic link; name the file itself"),
        (
            &theirs,
            "owned by another user (uid 65534) in a sticky directory",
        ),
    ] {
        let (code, stderr) = refused(&[
            "trace".as_ref(),
            "--output".as_ref(),
            output.as_os_str(),
            media.as_os_str(),
        ]);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("watcher: "), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!stderr.contains("watching"), "{stderr}");
    }
    assert_eq!(fs::read(&precious).unwrap(), b"root's\n");
    assert_eq!(fs::metadata(&theirs).unwrap().len(), 0);
    // A character device anyone may write to is fine.
    let w = trace_to(Path::new("/dev/null"), &media);
    run("touch", &[media.join("a").as_os_str()]);
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn output_errors_name_the_file_and_a_failed_reopen_keeps_the_old_one() {
    let tree = Tree::new("outerr");
    let media = tree.dir("media");
    let logs = tree.dir("logs");
    let log = logs.join("events.log");
    let w = trace_to(&log, &media);
    fs::remove_dir_all(&logs).unwrap();
    w.send(libc::SIGHUP);
    w.wait_for_log("events still go to the file open until now", 1);
    // Still there, and still writing.
    run("touch", &[media.join("after").as_os_str()]);
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let said: Vec<&str> = stopped
        .stderr
        .lines()
        .filter(|l| l.contains("events.log"))
        .collect();
    assert_eq!(said.len(), 1, "{}", stopped.stderr);
    assert!(
        said[0].contains(&format!("SIGHUP: cannot open {}", log.display())),
        "{}",
        said[0]
    );

    // A write that fails names where it went.
    let w = trace_to(Path::new("/dev/full"), &media);
    run("touch", &[media.join("full").as_os_str()]);
    let stopped = w.wait_exit();
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains("watcher: cannot write events to /dev/full: No space left on device"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn top_takes_sighup_and_goes_on() {
    let tree = Tree::new("tophup");
    let media = tree.dir("media");
    let w = Watcher::start(&[
        "top".as_ref(),
        "--once".as_ref(),
        "--interval".as_ref(),
        "1h".as_ref(),
        media.as_os_str(),
    ]);
    w.send(libc::SIGHUP);
    w.wait_for_log("SIGHUP: `watcher top` has nothing to reload", 1);
    let (writer, _) = opener(&[("openat:wc", &media.join("a"))]);
    let stopped = w.signal(libc::SIGINT);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let report = stopped.stdout.join("\n");
    assert!(
        report
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&writer.to_string())),
        "{report}"
    );
}
