//! `watcher run`: batching, one run at a time, what the action receives.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use serde_json::Value;
use watcher_tests::{
    Mount, Tree, Watcher, chain, eventually, helper_bin, opener, recorded_count,
    recorded_runs as runs, recorded_stdin as stdin, runs_accounting_for, wait_for_runs,
};

/// `watcher run --events write OPTIONS... DIRS... [-- ACTION...]` (no `--` when ACTION is
/// empty, as with `--signal`).
fn run_watcher(options: &[&str], dirs: &[&Path], action: &[&OsStr]) -> Watcher {
    // One event per file written, which the counts below rely on
    // (tests/tests/kinds.rs covers the other kinds).
    let mut args: Vec<&OsStr> = vec!["run".as_ref(), "--events".as_ref(), "write".as_ref()];
    args.extend(options.iter().map(OsStr::new));
    args.extend(dirs.iter().map(|d| d.as_os_str()));
    if !action.is_empty() {
        args.push("--".as_ref());
        args.extend(action);
    }
    Watcher::start(&args)
}

/// `watcher run OPTIONS... WATCHED -- record LOG RECORD_ARGS...`
fn start(options: &[&str], watched: &Path, log: &Path, record_args: &[&OsStr]) -> Watcher {
    let record = helper_bin("record");
    let mut action = vec![record.as_os_str(), log.as_os_str()];
    action.extend(record_args);
    run_watcher(options, &[watched], &action)
}

fn env<'a>(run: &'a Value, name: &str) -> &'a str {
    run["env"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} not set in {run}"))
}

/// NUL-separated paths from an action's stdin.
fn nul_paths(run: &Value) -> BTreeSet<Vec<u8>> {
    let data = stdin(run);
    assert_eq!(data.last(), Some(&0), "each path ends with NUL");
    data[..data.len() - 1]
        .split(|&b| b == 0)
        .map(<[u8]>::to_vec)
        .collect()
}

fn write_files(paths: &[PathBuf]) {
    let ops: Vec<(&str, &Path)> = paths.iter().map(|p| ("openat:wc", p.as_path())).collect();
    let (_, results) = opener(&ops);
    assert!(results.iter().all(|r| r == "ok"), "{results:?}");
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

#[test]
fn a_burst_of_100_files_makes_exactly_one_run() {
    let tree = Tree::new("burst");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let w = start(
        &["--settle", "1s", "--interval", "100ms"],
        &watched,
        &log,
        &[],
    );

    let files: Vec<PathBuf> = (0..100)
        .map(|i| watched.join(format!("track{i:03}.flac")))
        .collect();
    write_files(&files);
    wait_for_runs(&w, &log, 1);
    // A later change is the next run: had the burst made two runs, the
    // second would come before it.
    write_files(&[watched.join("later")]);
    let runs = wait_for_runs(&w, &log, 2);
    assert_eq!(runs.len(), 2);
    assert_eq!(env(&runs[0], "WATCHER_EVENTS"), "100");
    assert_eq!(env(&runs[0], "WATCHER_WRITES"), "100");
    assert_eq!(env(&runs[0], "WATCHER_PATHS"), "100");
    assert_eq!(env(&runs[0], "WATCHER_LOST"), "0");
    assert_eq!(env(&runs[0], "WATCHER_WATCHES").as_bytes(), bytes(&watched));
    assert_eq!(
        nul_paths(&runs[0]),
        files.iter().map(|f| bytes(f)).collect()
    );
    assert_eq!(env(&runs[1], "WATCHER_EVENTS"), "1");
    assert_eq!(
        nul_paths(&runs[1]),
        BTreeSet::from([bytes(&watched.join("later"))])
    );
}

#[test]
fn changes_during_a_run_make_exactly_one_more() {
    let tree = Tree::new("during");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let release = tree.root.join("release");
    let w = start(
        &["--settle", "100ms", "--interval", "100ms"],
        &watched,
        &log,
        &["--hold".as_ref(), release.as_os_str()],
    );

    write_files(&[watched.join("first")]);
    wait_for_runs(&w, &log, 1);
    // The action is holding: these arrive while it runs.
    let during: Vec<PathBuf> = (0..5).map(|i| watched.join(format!("during{i}"))).collect();
    write_files(&during);
    write_files(&during);
    std::fs::write(&release, b"").unwrap();
    wait_for_runs(&w, &log, 2);
    write_files(&[watched.join("after")]);
    let runs = wait_for_runs(&w, &log, 3);
    let events: Vec<&str> = runs.iter().map(|r| env(r, "WATCHER_EVENTS")).collect();
    assert_eq!(events, ["1", "10", "1"], "{}", w.stderr());
    assert_eq!(
        env(&runs[1], "WATCHER_PATHS"),
        "5",
        "paths are deduplicated"
    );
    assert_eq!(
        nul_paths(&runs[1]),
        during.iter().map(|f| bytes(f)).collect()
    );
}

#[test]
fn hostile_names_reach_the_action_byte_exact_and_execute_nothing() {
    let tree = Tree::new("hostile");
    let watched = tree.dir("media");
    // A shell running these would create `pwned` in the action's working
    // directory, which is watcher's, which is this test's.
    let pwned = std::env::current_dir().unwrap().join("pwned");
    let names: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"new\nline".to_vec(),
        b"quote\"s and 'single'".to_vec(),
        b"back\\slash".to_vec(),
        b"$(touch pwned)".to_vec(),
        b"`touch pwned`;|&".to_vec(),
        b"invalid \xff\xfe utf8".to_vec(),
        b"\x1b[31mescape".to_vec(),
    ];
    let files: Vec<PathBuf> = names
        .iter()
        .map(|n| watched.join(OsStr::from_bytes(n)))
        .collect();
    for format in ["nul", "jsonl"] {
        let log = tree.root.join(format!("{format}.log"));
        let w = start(
            &["--settle", "100ms", "--stdin-format", format],
            &watched,
            &log,
            &[],
        );
        write_files(&files);
        let runs = wait_for_runs(&w, &log, 1);
        let got: BTreeSet<Vec<u8>> = if format == "nul" {
            nul_paths(&runs[0])
        } else {
            String::from_utf8(stdin(&runs[0]))
                .unwrap()
                .lines()
                .map(|l| watcher_tests::path_bytes(&serde_json::from_str(l).unwrap()))
                .collect()
        };
        assert_eq!(got, files.iter().map(|f| bytes(f)).collect(), "{format}");
        drop(w);
        for f in &files {
            std::fs::remove_file(f).unwrap();
        }
    }
    assert!(!pwned.exists(), "a file name was executed");
}

#[test]
fn the_path_cap_is_marked() {
    let tree = Tree::new("cap");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let w = start(
        &[
            "--settle",
            "100ms",
            "--max-paths",
            "3",
            "--stdin-format",
            "jsonl",
        ],
        &watched,
        &log,
        &[],
    );
    let files: Vec<PathBuf> = (0..10).map(|i| watched.join(format!("f{i}"))).collect();
    write_files(&files);
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(env(&runs[0], "WATCHER_PATHS"), "3");
    assert_eq!(env(&runs[0], "WATCHER_PATHS_OMITTED"), "7");
    let text = String::from_utf8(stdin(&runs[0])).unwrap();
    assert_eq!(
        text.lines().last(),
        Some(r#"{"truncated":true,"omitted":7}"#)
    );
}

#[test]
fn no_action_without_a_change_under_the_watch() {
    let tree = Tree::new("idle");
    let watched = tree.dir("media");
    let outside = tree.dir("other");
    std::fs::write(watched.join("existing"), b"x").unwrap();
    let log = tree.root.join("runs.log");
    let w = start(
        &["--settle", "50ms", "--interval", "50ms"],
        &watched,
        &log,
        &[],
    );

    let (_, results) = opener(&[
        ("openat:r", &watched.join("existing")),
        ("openat:wc", &outside.join("file")),
        ("openat:w", &watched.join("missing")),
    ]);
    assert_eq!(results, ["ok", "ok", "err 2"]);
    // Many settle times pass without a run. (A slow machine makes this
    // check weaker, never wrong.)
    thread::sleep(Duration::from_secs(1));
    assert!(
        runs(&log).is_empty(),
        "the action ran without a change; stderr:\n{}",
        w.stderr()
    );
    let stopped = w.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn run_at_start_and_once() {
    let tree = Tree::new("once");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let w = start(&["--run-at-start", "--once"], &watched, &log, &[]);
    let first = wait_for_runs(&w, &log, 1);
    assert_eq!(env(&first[0], "WATCHER_EVENTS"), "0");
    let stopped = w.wait_exit();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);

    let w = start(
        &["--settle", "50ms", "--once"],
        &watched,
        &log,
        &["--exit".as_ref(), "3".as_ref()],
    );
    write_files(&[watched.join("new")]);
    let stopped = w.wait_exit();
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains("watcher: the action failed (exit status: 3)"),
        "{}",
        stopped.stderr
    );
    assert_eq!(runs(&log).len(), 2);
}

#[test]
fn a_failing_action_is_logged_and_watcher_goes_on() {
    let tree = Tree::new("failing");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let w = start(
        &["--settle", "50ms", "--interval", "50ms"],
        &watched,
        &log,
        &["--exit".as_ref(), "7".as_ref()],
    );
    for n in 1..=2 {
        write_files(&[watched.join(format!("f{n}"))]);
        wait_for_runs(&w, &log, n);
    }
    w.wait_for_log("action failed (exit status: 7)", 2);
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

#[test]
fn a_hanging_action_is_killed_with_its_children_and_watcher_goes_on() {
    let tree = Tree::new("timeout");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let child_pid = tree.root.join("child.pid");
    let never = tree.root.join("never");
    let record = helper_bin("record");
    // The action starts a child that outlives it unless the whole process
    // group is killed, then holds forever.
    let script = r#"sleep 600 & echo $! > "$0"; exec "$1" "$2" --hold "$3""#;
    let w = run_watcher(
        &[
            "--settle",
            "50ms",
            "--interval",
            "50ms",
            "--timeout",
            "300ms",
        ],
        &[&watched],
        &[
            "sh".as_ref(),
            "-c".as_ref(),
            script.as_ref(),
            child_pid.as_os_str(),
            record.as_os_str(),
            log.as_os_str(),
            never.as_os_str(),
        ],
    );

    write_files(&[watched.join("a")]);
    wait_for_runs(&w, &log, 1);
    w.wait_for_log("action failed (signal: 15", 1);
    assert!(
        w.stderr()
            .contains("still running after 300ms: sending SIGTERM to its process group")
    );
    let sleeper: i32 = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Gone, or a zombie waiting for init to reap it.
    eventually("the end of the action's child", String::new, || {
        let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat"));
        (!stat.is_ok_and(|s| !s.contains(") Z "))).then_some(())
    });
    // Watching goes on.
    write_files(&[watched.join("b")]);
    wait_for_runs(&w, &log, 2);
}

#[test]
fn the_actions_output_goes_to_the_log_prefixed_and_escaped() {
    let tree = Tree::new("output");
    let watched = tree.dir("media");
    let script =
        r#"printf 'hello\n'; printf 'bad \033[2J line\n' >&2; head -c 10000 /dev/zero | tr '\0' x"#;
    let w = run_watcher(
        &["--settle", "50ms"],
        &[&watched],
        &["sh".as_ref(), "-c".as_ref(), script.as_ref()],
    );
    write_files(&[watched.join("a")]);
    w.wait_for_log("action finished", 1);
    let log = w.stop().stderr;
    let action: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("watcher: action["))
        .collect();
    assert!(action.iter().any(|l| l.ends_with("] out: hello")), "{log}");
    assert!(
        action
            .iter()
            .any(|l| l.ends_with("] err: bad \\u{1b}[2J line")),
        "{log}"
    );
    // 10,000 bytes without a newline: cut into lines of at most 4096.
    let xs: Vec<usize> = action
        .iter()
        .filter_map(|l| l.split_once("] out: ").map(|(_, rest)| rest))
        .filter(|rest| rest.starts_with('x'))
        .map(str::len)
        .collect();
    assert_eq!(xs, [4096, 4096, 1808]);
}

#[test]
fn an_action_writing_into_the_tree_does_not_loop() {
    let tree = Tree::new("loop");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let record = helper_bin("record");
    // The action writes into the tree itself and through a child of a
    // child, then records the run.
    let script =
        r#"echo x > "$0/by-action"; sh -c 'touch "$0/by-grandchild"' "$0" & wait; exec "$1" "$2""#;
    let w = run_watcher(
        &["--settle", "50ms", "--interval", "50ms"],
        &[&watched],
        &[
            "sh".as_ref(),
            "-c".as_ref(),
            script.as_ref(),
            watched.as_os_str(),
            record.as_os_str(),
            log.as_os_str(),
        ],
    );

    write_files(&[watched.join("outside-write")]);
    wait_for_runs(&w, &log, 1);
    assert!(watched.join("by-action").exists() && watched.join("by-grandchild").exists());
    // The next run is the next outside change's alone: had the action's
    // writes counted, they would have made a run before it, or joined it.
    write_files(&[watched.join("later")]);
    let runs = wait_for_runs(&w, &log, 2);
    assert_eq!(runs.len(), 2, "{}", w.stderr());
    assert_eq!(
        nul_paths(&runs[1]),
        BTreeSet::from([bytes(&watched.join("later"))])
    );
}

/// A `sleep 600` whose process name is unique to this test (its comm comes
/// from the name it was started by), to be signalled. SIGHUP has its
/// default action in it whatever the test runs under (`nohup` would pass
/// on an ignored SIGHUP, and the signal would never end it).
fn sleeper(tree: &Tree, name: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    let link = tree.root.join(name);
    std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
    let mut cmd = std::process::Command::new(&link);
    cmd.arg("600");
    // SAFETY: signal() is async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn died_of(child: &mut std::process::Child, w: &Watcher) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    eventually(
        "the signal",
        || format!("stderr:\n{}", w.stderr()),
        || {
            child
                .try_wait()
                .unwrap()
                .map(|status| status.signal().unwrap_or(0))
        },
    )
}

#[test]
fn signal_goes_to_the_named_process_the_pid_or_the_pidfile() {
    let tree = Tree::new("signal");
    let watched = tree.dir("media");
    let name = format!("hup{}", std::process::id() % 1_000_000);
    let pidfile = tree.root.join("daemon.pid");
    for (n, how) in ["--process-name", "--target-pid", "--pidfile"]
        .into_iter()
        .enumerate()
    {
        let mut target = sleeper(&tree, &format!("{name}{n}"));
        std::fs::write(&pidfile, format!("{}\n", target.id())).unwrap();
        let value = match how {
            "--process-name" => format!("{name}{n}"),
            "--target-pid" => target.id().to_string(),
            _ => pidfile.to_str().unwrap().to_owned(),
        };
        let w = run_watcher(
            &["--settle", "50ms", "--signal", "HUP", how, &value],
            &[&watched],
            &[],
        );
        write_files(&[watched.join(format!("new{n}"))]);
        assert_eq!(died_of(&mut target, &w), libc::SIGHUP, "{how}");
        w.wait_for_log(
            &format!("sent SIGHUP to pid {} (1 changes)", target.id()),
            1,
        );
    }
}

#[test]
fn signal_with_once_fails_clearly_when_nobody_is_there() {
    let tree = Tree::new("nobody");
    let watched = tree.dir("media");
    let w = run_watcher(
        &[
            "--run-at-start",
            "--once",
            "--signal",
            "USR1",
            "--process-name",
            "no-such-proc-x",
        ],
        &[&watched],
        &[],
    );
    let stopped = w.wait_exit();
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .ends_with("watcher: cannot send SIGUSR1: no process is named no-such-proc-x\n"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn with_a_tiny_ring_buffer_a_burst_still_runs_the_action_and_counts_every_loss() {
    let tree = Tree::new("tiny");
    let (quiet, busy) = (tree.dir("quiet"), tree.dir("busy"));
    let log = tree.root.join("runs.log");
    let record = helper_bin("record");
    let w = run_watcher(
        &[
            "--settle",
            "200ms",
            "--interval",
            "50ms",
            "--ring-buffer-size",
            "4k",
        ],
        &[&quiet, &busy],
        &[record.as_os_str(), log.as_os_str()],
    );

    // 2000 events of about 280 bytes each while watcher is stopped, as a
    // stalled reader would be: a 4 KiB ring buffer holds about 14.
    const FILES: u64 = 2000;
    let files: Vec<PathBuf> = (0..FILES)
        .map(|i| busy.join(format!("{i:05}-{}", "x".repeat(190))))
        .collect();
    w.send(libc::SIGSTOP);
    write_files(&files);
    w.send(libc::SIGCONT);

    // Every event is delivered or counted as lost: their sum is exact.
    let runs = runs_accounting_for(&w, &log, FILES);
    assert!(
        runs.iter().any(|r| recorded_count(r, "WATCHER_LOST") > 0),
        "nothing lost with 4k: {runs:?}"
    );
    assert!(
        w.stderr().contains("events lost (ring buffer full)"),
        "{}",
        w.stderr()
    );
    for run in &runs {
        assert_eq!(
            env(run, "WATCHER_WATCHES").as_bytes(),
            bytes(&busy),
            "only the busy watch changed"
        );
    }
}

#[test]
fn the_action_runs_as_the_given_user_without_capabilities() {
    let tree = Tree::new("user");
    let watched = tree.dir("media");
    // The action, as nobody, must be able to write its log.
    let logs = tree.dir("logs");
    std::os::unix::fs::chown(&logs, Some(65534), Some(65534)).unwrap();
    let log = logs.join("runs.log");
    let w = start(
        &["--settle", "50ms", "--user", "nobody"],
        &watched,
        &log,
        &[],
    );
    write_files(&[watched.join("a")]);
    let runs = wait_for_runs(&w, &log, 1);
    let process = &runs[0]["process"];
    assert_eq!(process["uid"], "65534 65534 65534 65534", "{process}");
    assert_eq!(process["gid"], "65534 65534 65534 65534", "{process}");
    assert_eq!(process["groups"], "65534", "{process}");
    assert_eq!(process["cap_eff"], "0000000000000000", "{process}");
    assert_eq!(process["cap_prm"], "0000000000000000", "{process}");
}

#[test]
fn an_unknown_user_is_refused_before_watching() {
    let tree = Tree::new("baduser");
    let (code, stderr) = {
        let (_, out) = watcher_tests::spawn(
            std::process::Command::new(watcher_tests::watcher_bin()).args([
                "run",
                "--user",
                "no-such-user-x",
                tree.root.to_str().unwrap(),
                "--",
                "true",
            ]),
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Bad input, like `--uid no-such-user-x`: status 2.
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "watcher: invalid value 'no-such-user-x' for '--user <USER>': no user named \
         no-such-user-x\n"
    );
}

#[test]
fn shell_runs_the_command_as_a_script_with_its_arguments() {
    let tree = Tree::new("shell");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let record = helper_bin("record");
    let w = run_watcher(
        &["--settle", "50ms", "--shell"],
        &[&watched],
        &[
            OsStr::new(r#"test "$WATCHER_EVENTS" = 1 && exec "$0" "$1""#),
            record.as_os_str(),
            log.as_os_str(),
        ],
    );
    let hostile = watched.join("$(touch pwned); `reboot`");
    write_files(std::slice::from_ref(&hostile));
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(nul_paths(&runs[0]), BTreeSet::from([bytes(&hostile)]));
    assert!(!std::env::current_dir().unwrap().join("pwned").exists());
}

#[test]
fn an_action_that_cannot_start_is_logged_and_watcher_goes_on() {
    let tree = Tree::new("vanished");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let tool = tree.root.join("tool");
    std::fs::copy(helper_bin("record"), &tool).unwrap();
    let w = run_watcher(
        &["--settle", "50ms", "--interval", "50ms"],
        &[&watched],
        &[tool.as_os_str(), log.as_os_str()],
    );
    std::fs::remove_file(&tool).unwrap();
    write_files(&[watched.join("a")]);
    w.wait_for_log("watcher: error: cannot start the action: ", 1);
    std::fs::copy(helper_bin("record"), &tool).unwrap();
    write_files(&[watched.join("b")]);
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(
        nul_paths(&runs[0]),
        BTreeSet::from([bytes(&watched.join("b"))])
    );
}

#[test]
fn a_change_too_deep_to_place_runs_the_action_for_every_watch() {
    let tree = Tree::new("deep");
    // On a filesystem of its own, so that other tests' watchers (on /tmp's)
    // can tell the deep file is not theirs.
    let fs = tree.dir("fs");
    let _mount = Mount::tmpfs(&fs);
    let music = fs.join("music");
    std::fs::create_dir(&music).unwrap();
    let video = tree.dir("video");
    let too_deep = chain(&music, watcher_common::MAX_WALK + 8);
    let log = tree.root.join("runs.log");
    let record = helper_bin("record");
    let w = run_watcher(
        &["--settle", "50ms", "--once"],
        &[&music, &video],
        &[record.as_os_str(), log.as_os_str()],
    );

    write_files(&[too_deep.join("file")]);
    let stopped = w.wait_exit();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    let run = &runs(&log)[0];
    // The kernel could not tell which watch, if any: the run is for all of
    // them, and the path, of which only the tail is known, is left out and
    // counted.
    let watches: Vec<&str> = env(run, "WATCHER_WATCHES").lines().collect();
    assert_eq!(watches, [music.to_str().unwrap(), video.to_str().unwrap()]);
    assert_eq!(env(run, "WATCHER_EVENTS"), "1");
    assert_eq!(env(run, "WATCHER_PATHS"), "0");
    assert_eq!(env(run, "WATCHER_PATHS_OMITTED"), "1");
    assert!(stdin(run).is_empty());
}

#[test]
fn sighup_is_logged_and_run_goes_on() {
    let tree = Tree::new("hup");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    let w = start(
        &["--settle", "50ms", "--interval", "50ms"],
        &watched,
        &log,
        &[],
    );
    // What a logrotate's `pkill -HUP -x watcher` does.
    w.send(libc::SIGHUP);
    w.wait_for_log("SIGHUP: `watcher run` has nothing to reload", 1);
    write_files(&[watched.join("a")]);
    let run = &wait_for_runs(&w, &log, 1)[0];
    assert_eq!(env(run, "WATCHER_EVENTS"), "1");
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

/// Whether any live process is left in process group `pgid` (a zombie
/// is dead: its reaping is up to whoever adopted it).
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read_to_string(p.path().join("stat")).is_ok_and(|stat| {
            // pid (comm) state ppid pgrp ...: comm may hold spaces.
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
    })
}

#[test]
fn stopping_run_terminates_the_running_action() {
    let tree = Tree::new("stopaction");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    // Holds until a file that never comes: the action runs on.
    let never = tree.root.join("never");
    // Started as `nohup` would, and with SIGTERM ignored too: the action
    // must not inherit that.
    let mut cmd = std::process::Command::new(watcher_tests::watcher_bin());
    cmd.args(["run", "--settle", "50ms"])
        .arg(&watched)
        .arg("--")
        .arg(helper_bin("record"))
        .arg(&log)
        .arg("--hold")
        .arg(&never);
    // SAFETY: signal() is async-signal-safe; nothing is allocated.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            Ok(())
        });
    }
    let w = Watcher::start_command(&mut cmd);
    write_files(&[watched.join("a")]);
    let run = &wait_for_runs(&w, &log, 1)[0];
    let pid = run["process"]["pid"].as_u64().unwrap() as u32;
    assert!(group_alive(pid));
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains(&format!("sending SIGTERM to action[{pid}]")),
        "{}",
        stopped.stderr
    );
    assert!(!stopped.stderr.contains("SIGKILL"), "{}", stopped.stderr);
    assert!(!group_alive(pid), "the action outlived watcher");
}

#[test]
fn an_action_that_ignores_sigterm_is_killed_at_stop() {
    let tree = Tree::new("stopkill");
    let watched = tree.dir("media");
    // It and its children ignore SIGTERM (an ignored signal stays ignored
    // across exec).
    let w = run_watcher(
        &["--settle", "50ms", "--shell"],
        &[&watched],
        &["trap '' TERM; echo started $$; sleep 1000 & wait".as_ref()],
    );
    write_files(&[watched.join("a")]);
    w.wait_for_log("out: started", 1);
    let stderr = w.stderr();
    let pid: u32 = stderr
        .lines()
        .find_map(|l| l.split("out: started ").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {stderr}"));
    assert!(group_alive(pid));
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    for said in [
        format!("sending SIGTERM to action[{pid}]"),
        format!("action[{pid}] still running 5s after SIGTERM: sending SIGKILL"),
    ] {
        assert!(stopped.stderr.contains(&said), "{said}: {}", stopped.stderr);
    }
    assert!(!group_alive(pid), "the action outlived watcher");
}

/// Capability numbers (linux/capability.h) an action must not have.
const WATCHER_ONLY: [(u32, &str); 3] = [(19, "sys_ptrace"), (38, "perfmon"), (39, "bpf")];

fn caps(run: &Value, set: &str) -> u64 {
    let hex = run["process"][set].as_str().unwrap();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn the_action_gets_neither_watchers_capabilities_nor_its_systemd_variables() {
    let tree = Tree::new("actioncaps");
    let watched = tree.dir("media");
    let log = tree.root.join("runs.log");
    // The unit's capabilities, as systemd would give them to watcher.
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/watcher.service"),
    )
    .unwrap();
    let bounding: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap()
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let notify = tree.root.join("notify");
    let _socket = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let record = helper_bin("record");
    let w = Watcher::start_command(
        std::process::Command::new("setpriv")
            .arg(format!("--bounding-set=-all,{}", bounding.join(",")))
            .arg("--inh-caps=-all")
            .arg(watcher_tests::watcher_bin())
            .args(["run", "--settle", "50ms", "--once"])
            .arg(&watched)
            .arg("--")
            .args([record.as_os_str(), log.as_os_str()])
            .env("NOTIFY_SOCKET", &notify)
            .env("JOURNAL_STREAM", "8:12345")
            .env("WATCHDOG_USEC", "30000000"),
    );
    write_files(&[watched.join("a")]);
    let stopped = w.wait_exit();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    let run = &runs(&log)[0];
    assert_eq!(run["systemd_env"], serde_json::json!([]), "{run}");
    let (bnd, eff) = (caps(run, "cap_bnd"), caps(run, "cap_eff"));
    for (cap, name) in WATCHER_ONLY {
        assert_eq!(bnd & (1 << cap), 0, "{name} in the bounding set: {run}");
        assert_eq!(eff & (1 << cap), 0, "{name} in the effective set: {run}");
    }
    // The rest of the unit's set stays, as it would for a root command:
    // CAP_DAC_READ_SEARCH (2) and CAP_KILL (5), say.
    assert_eq!(eff & (1 << 2 | 1 << 5), 1 << 2 | 1 << 5, "{run}");
    assert_eq!(caps(run, "cap_amb"), 0, "{run}");
}

/// WATCHER_WATCHES has one line per directory, each escaped (a backslash
/// as `\\`, a newline as `\n`): a directory whose name holds a newline is
/// still one line, which `printf '%b'` turns back into the name.
#[test]
fn a_watched_directory_with_a_newline_in_its_name_is_one_escaped_line() {
    let tree = Tree::new("newlinewatch");
    let odd = tree.dir("a\nb\\n c");
    let plain = tree.dir("plain");
    let log = tree.root.join("runs.log");
    let record = helper_bin("record");
    let w = run_watcher(
        &["--settle", "500ms"],
        &[&odd, &plain],
        &[record.as_os_str(), log.as_os_str()],
    );
    write_files(&[odd.join("f"), plain.join("f")]);
    let run = &wait_for_runs(&w, &log, 1)[0];
    let mut watches: Vec<&str> = env(run, "WATCHER_WATCHES").lines().collect();
    watches.sort_unstable();
    let odd_line = format!("{}/a\\nb\\\\n c", tree.root.display());
    let mut expected = [odd_line.as_str(), plain.to_str().unwrap()];
    expected.sort_unstable();
    assert_eq!(watches, expected, "{run}");
    for (line, dir) in [(odd_line.as_str(), &odd), (plain.to_str().unwrap(), &plain)] {
        let out = std::process::Command::new("sh")
            .args(["-c", "printf '%b' \"$1\"", "sh", line])
            .output()
            .unwrap();
        assert_eq!(out.stdout, bytes(dir), "{line}");
    }
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}
