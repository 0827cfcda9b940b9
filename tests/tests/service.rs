//! `watcher serve`: a configuration's watches, each with its action;
//! reload on SIGHUP; systemd's readiness protocol; the capabilities the
//! shipped unit gives it; errors in a configuration.

use std::{
    collections::BTreeSet,
    fs,
    io::Read as _,
    os::unix::{fs::PermissionsExt as _, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use watcher_tests::{
    Tree, Watcher, eventually, helper_bin, recorded_runs, recorded_stdin, require_root, spawn,
    watcher_bin,
};

/// Writes `text` as a configuration file of mode 0644 and returns it.
fn config(tree: &Tree, name: &str, text: &str) -> PathBuf {
    let path = tree.root.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// A `[[watch]]` whose action is the `record` helper, logging to `log`.
fn watch(name: &str, dir: &Path, log: &Path, extra: &str) -> String {
    format!(
        "[[watch]]\nname = \"{name}\"\ndirs = [\"{}\"]\nsettle = \"100ms\"\ninterval = \"100ms\"\n\
         command = [\"{}\", \"{}\"]\n{extra}\n",
        dir.display(),
        helper_bin("record").display(),
        log.display()
    )
}

/// The paths every run `record` logged so far received on stdin.
fn received(log: &Path) -> Vec<String> {
    recorded_runs(log)
        .iter()
        .flat_map(|run| {
            recorded_stdin(run)
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8(p.to_vec()).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait_received(w: &Watcher, log: &Path, path: &Path) {
    let path = path.to_str().unwrap();
    eventually(
        &format!("{path} received"),
        || format!("received {:?}; stderr:\n{}", received(log), w.stderr()),
        || received(log).iter().any(|p| p == path).then_some(()),
    );
}

fn serve(config: &Path) -> Watcher {
    Watcher::start(&["serve".as_ref(), "--config".as_ref(), config.as_os_str()])
}

#[test]
fn each_watch_runs_its_own_action_with_its_own_filters() {
    let tree = Tree::new("serve");
    let media = tree.dir("all/media");
    let other = tree.dir("all/other");
    let (media_log, all_log) = (tree.root.join("media.log"), tree.root.join("all.log"));
    let file = config(
        &tree,
        "watcher.toml",
        &format!(
            "{}{}",
            watch(
                "media",
                &media,
                &media_log,
                "include = \"*.mp3\"\nevents = \"create\""
            ),
            watch(
                "all",
                &tree.root.join("all"),
                &all_log,
                "exclude = \"*.tmp\""
            ),
        ),
    );
    let w = serve(&file);
    let song = media.join("song.mp3");
    let text = media.join("notes.txt");
    let tmp = other.join("x.tmp");
    let kept = other.join("kept");
    for path in [&song, &text, &tmp, &kept] {
        fs::write(path, b"x").unwrap();
    }
    wait_received(&w, &media_log, &song);
    wait_received(&w, &all_log, &kept);
    wait_received(&w, &all_log, &song);
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert_eq!(received(&media_log), [song.to_str().unwrap()]);
    let all: BTreeSet<String> = received(&all_log).into_iter().collect();
    let expected: BTreeSet<String> = [&song, &text, &kept]
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(all, expected, "no x.tmp, and the nested watch's files");
    // The outer watch's action is told about its own directory.
    for run in recorded_runs(&all_log) {
        assert_eq!(
            run["env"]["WATCHER_WATCHES"],
            tree.root.join("all").to_str().unwrap()
        );
    }
    assert!(
        stopped.stderr.contains("watcher: 2 watches from ")
            && stopped.stderr.contains("media: running "),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_reload_adds_and_removes_watches_and_loses_nothing_on_the_others() {
    let tree = Tree::new("reload");
    let (kept, old, new) = (tree.dir("kept"), tree.dir("old"), tree.dir("new"));
    let logs = |n: &str| tree.root.join(format!("{n}.log"));
    let file = config(
        &tree,
        "watcher.toml",
        &format!(
            "{}{}",
            watch("kept", &kept, &logs("kept"), ""),
            watch("old", &old, &logs("old"), "")
        ),
    );
    let w = serve(&file);
    fs::write(old.join("before"), b"x").unwrap();
    wait_received(&w, &logs("old"), &old.join("before"));

    // A writer goes on in the kept watch throughout the reloads.
    const FILES: usize = 300;
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for i in $(seq {FILES}); do : > \"$0/f$i\"; sleep 0.01; done"
        ))
        .arg(&kept)
        .spawn()
        .unwrap();
    let updated = format!(
        "{}{}",
        watch("kept", &kept, &logs("kept"), ""),
        watch("new", &new, &logs("new"), "")
    );
    fs::write(&file, &updated).unwrap();
    w.send(libc::SIGHUP);
    w.wait_for_log(
        "watcher: reloaded: 2 watches (1 added, 1 kept, 1 removed)",
        1,
    );
    fs::write(new.join("added"), b"x").unwrap();
    fs::write(old.join("after"), b"x").unwrap();
    wait_received(&w, &logs("new"), &new.join("added"));

    // A broken configuration is refused; the running one stays.
    fs::write(&file, format!("{updated}settle = \n")).unwrap();
    w.send(libc::SIGHUP);
    w.wait_for_log(
        "watcher: error: reload refused, the running configuration stays: ",
        1,
    );
    fs::write(new.join("still"), b"x").unwrap();
    wait_received(&w, &logs("new"), &new.join("still"));

    assert!(writer.wait().unwrap().success());
    let expected: BTreeSet<String> = (1..=FILES)
        .map(|i| kept.join(format!("f{i}")).to_str().unwrap().to_owned())
        .collect();
    eventually(
        "every kept file received",
        || {
            let got: BTreeSet<String> = received(&logs("kept")).into_iter().collect();
            format!(
                "missing {:?}; stderr:\n{}",
                expected.difference(&got).collect::<Vec<_>>(),
                w.stderr()
            )
        },
        || {
            let got: BTreeSet<String> = received(&logs("kept")).into_iter().collect();
            (got == expected).then_some(())
        },
    );
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert_eq!(
        received(&logs("old")),
        [old.join("before").to_str().unwrap()],
        "nothing after the removal"
    );
    assert!(!stopped.stderr.contains("lost"), "{}", stopped.stderr);
}

/// systemd's protocol: `READY=1` once the programs are attached (a write
/// made as soon as it arrives is seen), `RELOADING=1` then `READY=1`
/// around a reload, `STOPPING=1` at the end.
#[test]
fn readiness_is_sent_once_attached() {
    require_root();
    let tree = Tree::new("notify");
    let dir = tree.dir("watched");
    let log = tree.root.join("action.log");
    let file = config(&tree, "watcher.toml", &watch("w", &dir, &log, ""));
    let socket_path = tree.root.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(watcher_tests::PATIENCE))
        .unwrap();
    let mut child = Command::new(watcher_bin())
        .args(["serve", "--config"])
        .arg(&file)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = recv();
    let first = dir.join("first");
    fs::write(&first, b"x").unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains("STATUS=watching 1 directory"), "{ready}");
    eventually(
        "the first write received",
        || format!("received {:?}", received(&log)),
        || (received(&log) == [first.to_str().unwrap()]).then_some(()),
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(recv(), "READY=1");
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(recv(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("cannot notify"), "{stderr}");
    // One watch of one directory, said in the singular.
    for said in [
        "watcher: 1 watch from ",
        "watcher: reloaded: 1 watch (0 added, 1 kept, 0 removed), 1 directory\n",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
}

/// The unit file's capability bounding set is enough: watcher runs as
/// root with exactly those capabilities, sees writes, and runs an action
/// as another user with none.
#[test]
fn the_units_capabilities_are_enough() {
    require_root();
    let unit =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/watcher.service"))
            .unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a CapabilityBoundingSet line")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert!(caps.contains(&"+bpf".to_owned()), "{caps:?}");
    let tree = Tree::new("caps");
    let dir = tree.dir("watched");
    // The action, run as nobody, writes its log in a directory it may.
    let logs = tree.dir("logs");
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o777)).unwrap();
    let log = logs.join("action.log");
    let file = config(
        &tree,
        "watcher.toml",
        &watch("w", &dir, &log, "user = \"nobody\""),
    );
    let w = Watcher::start_command(
        Command::new("setpriv")
            .arg(format!("--bounding-set=-all,{}", caps.join(",")))
            .arg(watcher_bin())
            .args(["serve", "--config"])
            .arg(&file),
    );
    let written = dir.join("written");
    fs::write(&written, b"x").unwrap();
    wait_received(&w, &log, &written);
    let run = &recorded_runs(&log)[0];
    assert_eq!(run["process"]["uid"], "65534 65534 65534 65534");
    assert_eq!(run["process"]["cap_eff"], "0000000000000000");
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert!(!stopped.stderr.contains("warning"), "{}", stopped.stderr);
}

/// Each kind of mistake gives one line naming the file, the line and the
/// key (docs/config.md lists these messages), and exit status 1; `check`
/// gives it with status 2.
#[test]
fn bad_configurations_are_refused_with_the_place_and_the_reason() {
    let tree = Tree::new("badconfig");
    let dir = tree.dir("watched");
    let good = format!(
        "[[watch]]\ndirs = [\"{}\"]\ncommand = [\"/bin/true\"]\n",
        dir.display()
    );
    let cases = [
        (
            "syntax.toml",
            format!("{good}settle = 5s\n"),
            "4: [[watch]] #1, settle: ",
        ),
        (
            "unknown.toml",
            format!("{good}setle = \"5s\"\n"),
            "4: [[watch]] #1, setle: unknown field `setle`, expected one of ",
        ),
        (
            "value.toml",
            format!("{good}timeout = \"ten minutes\"\n"),
            "4: [[watch]] #1, timeout: `ten minutes` is not a duration (e.g. 500ms, 10s, 2m)",
        ),
        (
            "missing.toml",
            "[[watch]]\ndirs = [\"/no/such/dir\"]\ncommand = [\"/bin/true\"]\n".to_owned(),
            "2: [[watch]] #1, dirs: /no/such/dir: no such directory",
        ),
        (
            "command.toml",
            format!("{good}shell = false\n").replace("/bin/true", "/no/such/program"),
            "3: [[watch]] #1, command: cannot run /no/such/program: no executable file there",
        ),
    ];
    for (name, text, expected) in cases {
        let path = config(&tree, name, &text);
        let (_, out) = spawn(Command::new(watcher_bin()).args(["serve", "-c"]).arg(&path));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let prefix = format!("watcher: {}:", path.display());
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.starts_with(&format!("{prefix}{expected}")),
            "{name}: {stderr}"
        );
        let (_, out) = spawn(Command::new(watcher_bin()).args(["check", "-c"]).arg(&path));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{name}: {stdout}");
        assert!(stdout.starts_with("FAIL  config       "), "{stdout}");
    }

    let open = config(&tree, "open.toml", &good);
    fs::set_permissions(&open, fs::Permissions::from_mode(0o666)).unwrap();
    let (_, out) = spawn(Command::new(watcher_bin()).args(["serve", "-c"]).arg(&open));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "watcher: {0}: writable by everyone (mode 0666); a configuration must be writable \
             by root only (chown root {0}; chmod go-w {0})\n",
            open.display()
        )
    );

    let fine = config(&tree, "fine.toml", &good);
    let (_, out) = spawn(Command::new(watcher_bin()).args(["check", "-c"]).arg(&fine));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "ok    config       {}: 1 watches\nok    watch        ",
            fine.display()
        )),
        "{stdout}"
    );
}

/// `--bpf-log` passes the programs' own debug lines on: an event whose
/// walk ends before its watch is decided says so.
#[test]
fn bpf_logs_are_off_by_default_and_on_with_the_flag() {
    let tree = Tree::new("bpflog");
    let dir = tree.dir("watched");
    let deep = watcher_tests::chain(&dir, watcher_common::MAX_WALK + 8);
    let with = Watcher::start(&["--bpf-log".as_ref(), "trace".as_ref(), dir.as_os_str()]);
    let without = Watcher::start(&["trace".as_ref(), dir.as_os_str()]);
    fs::write(deep.join("f"), b"x").unwrap();
    with.wait_for_log("watcher: debug: bpf: syscall ", 1);
    assert!(
        with.stderr().contains("event sent undecided"),
        "{}",
        with.stderr()
    );
    // The undecided event itself reached both.
    with.next_line();
    without.next_line();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!without.stderr().contains("bpf:"), "{}", without.stderr());
}

#[test]
fn a_reload_keeps_a_watch_whose_directory_went_away_and_refuses_a_new_missing_one() {
    let tree = Tree::new("reload-gone");
    let (media, other) = (tree.dir("media"), tree.dir("other"));
    let logs = |n: &str| tree.root.join(format!("{n}.log"));
    let both = format!(
        "{}{}",
        watch("media", &media, &logs("media"), ""),
        watch("other", &other, &logs("other"), "")
    );
    let file = config(&tree, "watcher.toml", &both);
    let w = serve(&file);
    fs::remove_dir(&media).unwrap();
    w.wait_for_log("no such directory: not watched until it is back", 1);
    w.send(libc::SIGHUP);
    w.wait_for_log(
        "watcher: reloaded: 2 watches (0 added, 2 kept, 0 removed)",
        1,
    );
    let missing = tree.root.join("missing");
    fs::write(
        &file,
        format!("{both}{}", watch("new", &missing, &logs("new"), "")),
    )
    .unwrap();
    w.send(libc::SIGHUP);
    w.wait_for_log("reload refused, the running configuration stays: ", 1);
    assert!(
        w.stderr()
            .contains(&format!("{}: no such directory", missing.display())),
        "{}",
        w.stderr()
    );
    fs::create_dir(&media).unwrap();
    w.wait_for_log("watched again, now the directory", 1);
    fs::write(media.join("back"), b"x").unwrap();
    wait_received(&w, &logs("media"), &media.join("back"));
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

#[test]
fn a_watch_ignores_its_own_actions_changes_and_not_another_watchs() {
    let tree = Tree::new("overlap");
    let incoming = tree.dir("incoming");
    let publish = tree.dir("publish");
    let (ingest_log, publish_log) = (tree.root.join("ingest.log"), tree.root.join("publish.log"));
    // ingest's action writes into publish's tree and into its own, then
    // records what it was given.
    let script = format!(
        "touch {}/out-$$ {}/own-$$ && exec \"$0\" {}",
        publish.display(),
        incoming.display(),
        ingest_log.display()
    );
    let file = config(
        &tree,
        "watcher.toml",
        &format!(
            "[[watch]]\nname = \"ingest\"\ndirs = [\"{}\"]\nsettle = \"100ms\"\n\
             interval = \"100ms\"\nshell = true\ncommand = [{:?}, \"{}\"]\n\n{}",
            incoming.display(),
            script,
            helper_bin("record").display(),
            watch("publish", &publish, &publish_log, "")
        ),
    );
    let w = serve(&file);
    let first = incoming.join("first");
    fs::write(&first, b"x").unwrap();
    wait_received(&w, &ingest_log, &first);
    // What ingest's action wrote for publish reaches publish.
    eventually(
        "publish to receive ingest's output",
        || {
            format!(
                "received {:?}; stderr:\n{}",
                received(&publish_log),
                w.stderr()
            )
        },
        || {
            received(&publish_log)
                .iter()
                .any(|p| p.starts_with(&format!("{}/out-", publish.display())))
                .then_some(())
        },
    );
    // What it wrote into its own tree is no change for ingest: the next
    // run has the next file only.
    let second = incoming.join("second");
    fs::write(&second, b"x").unwrap();
    wait_received(&w, &ingest_log, &second);
    let ingested: BTreeSet<String> = received(&ingest_log).into_iter().collect();
    let expected: BTreeSet<String> = [&first, &second]
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ingested, expected, "stderr:\n{}", w.stderr());
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}
