//! The action runs on finished files: a batch whose files are still open
//! for writing waits for their close (or their writer's death), at most
//! `--max-wait`, after which the action is told which are still open.

use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use serde_json::json;
use watcher_tests::{
    Tree, Watcher, Writer, helper_bin, recorded_count, recorded_runs, recorded_stdin, run,
    run_recording_with, wait_for_runs,
};

/// `path` followed by a NUL.
fn nul(path: &Path) -> Vec<u8> {
    [path.as_os_str().as_bytes(), b"\0"].concat()
}

fn upload(tree: &Tree) -> (PathBuf, PathBuf, PathBuf) {
    let media = tree.dir("media");
    (media.join("upload.csv"), tree.root.join("runs.log"), media)
}

#[test]
fn a_file_written_past_settle_is_handed_over_whole_after_its_close() {
    let tree = Tree::new("hold-whole");
    let (file, log, media) = upload(&tree);
    let w = run_recording_with(&media, &log, &[]);
    let mut writer = Writer::open(
        &file,
        &[
            "write", "100", "pause", "write", "100", "pause", "write", "100", "close",
        ],
    );
    writer.step("paused");
    // Quiet for --settle, but the file is open: the batch waits.
    w.wait_for_log("waiting for 1 file open for writing to be closed", 1);
    writer.step("paused");
    writer.go();
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["sizes"], json!([300]), "the whole file: {runs:?}");
    assert_eq!(recorded_stdin(&runs[0]), nul(&file));
    assert_eq!(recorded_count(&runs[0], "WATCHER_PATHS_OPEN"), 0);
}

#[test]
fn a_file_open_past_max_wait_is_named_as_still_open() {
    let tree = Tree::new("hold-cap");
    let (file, log, media) = upload(&tree);
    let w = run_recording_with(&media, &log, &["--max-wait", "1s"]);
    let mut writer = Writer::open(&file, &["write", "10", "pause", "close"]);
    writer.step("paused");
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(recorded_count(&runs[0], "WATCHER_PATHS_OPEN"), 1);
    // The changed paths, an empty one, then those still open.
    assert_eq!(
        recorded_stdin(&runs[0]),
        [nul(&file), b"\0".to_vec(), nul(&file)].concat()
    );
    w.wait_for_log("1 file still open for writing after --max-wait 1s", 1);
    writer.go();
}

#[test]
fn a_writer_killed_mid_write_releases_the_batch() {
    let tree = Tree::new("hold-kill");
    let (file, log, media) = upload(&tree);
    // The default --max-wait (5m) is past the test's patience: only the
    // writer's end lets the action run.
    let w = run_recording_with(&media, &log, &[]);
    let mut writer = Writer::open(&file, &["write", "10", "pause", "close"]);
    writer.step("paused");
    w.wait_for_log("waiting for 1 file open for writing to be closed", 1);
    writer.kill();
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(runs[0]["sizes"], json!([10]));
    assert_eq!(recorded_count(&runs[0], "WATCHER_PATHS_OPEN"), 0);
}

#[test]
fn a_writer_the_filters_leave_out_holds_nothing() {
    let tree = Tree::new("hold-excluded");
    let (_, log, media) = upload(&tree);
    let w = run_recording_with(&media, &log, &["--exclude", "*.part"]);
    let mut writer = Writer::open(&media.join("a.part"), &["write", "10", "pause", "close"]);
    writer.step("paused");
    let other = media.join("b");
    run("touch", &[other.as_os_str()]);
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(recorded_stdin(&runs[0]), nul(&other));
    assert_eq!(recorded_count(&runs[0], "WATCHER_PATHS_OPEN"), 0);
    writer.go();
}

#[test]
fn serve_runs_a_free_watch_on_time_and_keeps_a_held_one_across_a_reload() {
    let tree = Tree::new("hold-serve");
    let (held, free) = (tree.dir("held"), tree.dir("free"));
    let (held_log, free_log) = (tree.root.join("held.log"), tree.root.join("free.log"));
    let record = helper_bin("record");
    let watch = |name: &str, dir: &Path, log: &Path| {
        format!(
            "[[watch]]\nname = \"{name}\"\ndirs = [{dir:?}]\ncommand = [{record:?}, {log:?}]\n\
             settle = \"100ms\"\n"
        )
    };
    let config = tree.root.join("watcher.toml");
    std::fs::write(
        &config,
        [
            watch("held", &held, &held_log),
            watch("free", &free, &free_log),
        ]
        .concat(),
    )
    .unwrap();
    let w = Watcher::start(&["serve".as_ref(), "--config".as_ref(), config.as_os_str()]);
    let file = held.join("upload.csv");
    let mut writer = Writer::open(&file, &["write", "10", "pause", "write", "10", "close"]);
    writer.step("paused");
    w.wait_for_log("held: waiting for 1 file open for writing to be closed", 1);
    let other = free.join("b");
    run("touch", &[other.as_os_str()]);
    let free_runs = wait_for_runs(&w, &free_log, 1);
    assert_eq!(recorded_stdin(&free_runs[0]), nul(&other));
    // Held, with the default --max-wait: no run until the close.
    assert!(recorded_runs(&held_log).is_empty());
    w.send(libc::SIGHUP);
    w.wait_for_log("reloaded:", 1);
    writer.go();
    let held_runs = wait_for_runs(&w, &held_log, 1);
    assert_eq!(held_runs[0]["sizes"], json!([20]));
    assert_eq!(recorded_stdin(&held_runs[0]), nul(&file));
}

#[test]
fn with_modify_a_descriptor_opened_before_start_holds_the_batch() {
    let tree = Tree::new("hold-modify");
    let (file, log, media) = upload(&tree);
    // Opened before watcher starts: only its writes are seen.
    let mut writer = Writer::open(&file, &["write", "10", "pause", "write", "10", "close"]);
    let w = run_recording_with(&media, &log, &["--events", "all"]);
    writer.step("paused");
    w.wait_for_log("waiting for 1 file open for writing to be closed", 1);
    writer.go();
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(runs[0]["sizes"], json!([20]));
    assert_eq!(recorded_count(&runs[0], "WATCHER_PATHS_OPEN"), 0);
}

#[test]
fn once_with_a_signal_waits_for_the_close_too() {
    let tree = Tree::new("hold-signal");
    let (file, _, media) = upload(&tree);
    let mut target = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let pid = target.id().to_string();
    let w = Watcher::start(&[
        "run",
        "--settle",
        "100ms",
        "--once",
        "--signal",
        "CONT",
        "--target-pid",
        &pid,
        media.to_str().unwrap(),
    ]);
    let mut writer = Writer::open(&file, &["write", "10", "pause", "close"]);
    writer.step("paused");
    w.wait_for_log("waiting for 1 file open for writing to be closed", 1);
    assert!(!w.stderr().contains("sent SIGCONT"), "{}", w.stderr());
    writer.go();
    let stopped = w.wait_exit();
    let _ = target.kill();
    let _ = target.wait();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains(&format!("sent SIGCONT to pid {pid}")),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_shell_redirection_holds_the_batch_through_its_copy_of_the_descriptor() {
    let tree = Tree::new("hold-shell");
    let (file, log, media) = upload(&tree);
    let w = run_recording_with(&media, &log, &[]);
    // `> FILE`: the shell opens it, moves it onto stdout and closes the
    // descriptor it opened; it writes through its copy.
    let mut shell = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec >\"$1\"; echo one; read line; echo two")
        .arg("sh")
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    w.wait_for_log("waiting for 1 file open for writing to be closed", 1);
    drop(shell.stdin.take());
    assert!(shell.wait().expect("sh").success());
    let runs = wait_for_runs(&w, &log, 1);
    assert_eq!(runs[0]["sizes"], json!([8]));
}
