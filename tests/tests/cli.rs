//! Bad input, signals, `check`, and tracefs: one clear line and the right
//! exit status, never a panic.

use std::{
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::Command,
};

use watcher_tests::{Tree, Watcher, require_root, spawn, watcher_bin};

/// Runs watcher to completion; returns (exit code, stdout, stderr).
fn watcher(args: &[&str]) -> (i32, String, String) {
    let (_, out) = spawn(Command::new(watcher_bin()).args(args));
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}", out.status));
    (
        code,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Exactly one line on stderr, starting with `watcher:`, and no panic.
fn one_clear_line(stderr: &str, expect: &str) {
    assert_eq!(stderr.lines().count(), 1, "not one line:\n{stderr}");
    assert!(stderr.starts_with("watcher: "), "{stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn a_missing_directory_is_refused() {
    require_root();
    let tree = Tree::new("missing");
    let missing = tree.root.join("nope");
    let (code, _, stderr) = watcher(&["trace", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    one_clear_line(&stderr, "no such directory");
}

#[test]
fn a_file_is_not_a_directory() {
    require_root();
    let tree = Tree::new("file");
    let file = tree.root.join("file");
    std::fs::write(&file, b"").unwrap();
    let (code, _, stderr) = watcher(&["run", file.to_str().unwrap(), "--", "true"]);
    assert_eq!(code, 1);
    one_clear_line(&stderr, "not a directory");
}

#[test]
fn a_hostile_directory_name_is_escaped_in_the_message() {
    require_root();
    let tree = Tree::new("hostile");
    let name = tree.root.join("x\n\x1b[2Jy");
    let (code, _, stderr) = watcher(&["trace", name.to_str().unwrap()]);
    assert_eq!(code, 1);
    one_clear_line(&stderr, "x\\n\\u{1b}[2Jy: no such directory");
}

#[test]
fn not_root_is_refused() {
    require_root();
    let tree = Tree::new("nobody");
    let mut cmd = Command::new(watcher_bin());
    cmd.args(["trace", tree.root.to_str().unwrap()])
        .uid(65534)
        .gid(65534);
    let (_, out) = spawn(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    one_clear_line(&String::from_utf8_lossy(&out.stderr), "needs root");
}

#[test]
fn invalid_arguments_are_one_line_with_status_2() {
    for args in [
        &["run", "--interval", "soon", "/tmp", "--", "true"][..],
        &["run", "--interval", "0", "/tmp", "--", "true"],
        &["run", "/tmp"],
        &["trace"],
        &["trace", "--format", "xml", "/tmp"],
        &["run", "--signal", "HUP", "/tmp"],
        &["run", "--signal", "NOPE", "--target-pid", "1", "/tmp"],
        &["run", "--target-pid", "1", "/tmp", "--", "true"],
        &[
            "run",
            "--signal",
            "HUP",
            "--target-pid",
            "1",
            "/tmp",
            "--",
            "true",
        ],
        &["run", "--signal", "HUP", "--target-pid", "0", "/tmp"],
        &[
            "run",
            "--signal",
            "HUP",
            "--target-pid",
            "1",
            "--user",
            "nobody",
            "/tmp",
        ],
        &[
            "run",
            "--signal",
            "HUP",
            "--target-pid",
            "1",
            "--shell",
            "/tmp",
        ],
        &["run", "--ring-buffer-size", "3k", "/tmp", "--", "true"],
        &["trace", "--format", "journal", "--output", "/tmp/x", "/tmp"],
        &["trace", "--uid", "no-such-user-here", "/tmp"],
        &["trace", "--comm", "longer-than-fifteen", "/tmp"],
        &["trace", "--include", "[a", "/tmp"],
        &["trace", "--pid", "0", "/tmp"],
        &["trace", "--color", "sometimes", "/tmp"],
        &["top", "--sort", "size", "/tmp"],
        &["top", "--interval", "0", "/tmp"],
        &["frobnicate"],
    ] {
        let (code, _, stderr) = watcher(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        one_clear_line(&stderr, "");
    }
    // Refused while the arguments are read, each with what is wrong.
    for (args, expect) in [
        (
            &["run", "--user", "no-such-user-here", "/tmp", "--", "true"][..],
            "no user named no-such-user-here",
        ),
        (
            &["trace", "--pid", "99999999", "/tmp"],
            "`99999999` is not a process id (from 1 to 4194303)",
        ),
        (
            &["trace", "--pid", "4194304", "/tmp"],
            "`4194304` is not a process id (from 1 to 4194303)",
        ),
        (
            &["run", "--signal", "HUP", "--target-pid", "99999999", "/tmp"],
            "`99999999` is not a process id (from 1 to 4194303)",
        ),
        (
            &["run", "--settle", "99999999999999h", "/tmp", "--", "true"],
            "`99999999999999h` is too large: a duration is at most 8760h (a year)",
        ),
        (
            &["run", "--interval", "8761h", "/tmp", "--", "true"],
            "is too large",
        ),
        (
            &["run", "--timeout", "1e400", "/tmp", "--", "true"],
            "unknown unit",
        ),
        (
            &[
                "run",
                "--timeout",
                "99999999999999999999999",
                "/tmp",
                "--",
                "true",
            ],
            "is too large",
        ),
        (&["top", "--interval", "9999999h", "/tmp"], "is too large"),
    ] {
        let (code, _, stderr) = watcher(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        one_clear_line(&stderr, expect);
    }
}

/// An error that comes from the system says it once, not once for the
/// message and again for its cause.
#[test]
fn a_system_error_is_said_once() {
    require_root();
    let tree = Tree::new("oserror");
    let missing = tree.root.join("nope");
    let missing = missing.to_str().unwrap();
    let output = format!("{missing}/events.log");
    let dir = tree.root.to_str().unwrap();
    for args in [
        &["serve", "--config", missing][..],
        &["trace", "--output", &output, dir],
    ] {
        let (code, _, stderr) = watcher(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        one_clear_line(&stderr, missing);
        assert_eq!(
            stderr.matches("No such file or directory").count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_missing_command_is_refused_before_watching() {
    require_root();
    let tree = Tree::new("nocommand");
    let dir = tree.root.to_str().unwrap();
    let (code, _, stderr) = watcher(&["run", dir, "--", "no-such-command-x", "arg"]);
    assert_eq!(code, 1);
    one_clear_line(
        &stderr,
        "cannot run no-such-command-x: command not found in PATH",
    );
    let (code, _, stderr) = watcher(&["run", dir, "--", "/nonexistent/tool"]);
    assert_eq!(code, 1);
    one_clear_line(
        &stderr,
        "cannot run /nonexistent/tool: no executable file there",
    );
}

#[test]
fn help_lists_the_commands_with_examples() {
    let (code, stdout, _) = watcher(&["--help"]);
    assert_eq!(code, 0);
    for word in ["trace", "run", "check", "Examples:"] {
        assert!(stdout.contains(word), "{word} missing from:\n{stdout}");
    }
}

#[test]
fn sigterm_and_sigint_detach_and_exit_zero() {
    let tree = Tree::new("signals");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let w = Watcher::start(&["trace", tree.root.to_str().unwrap()]);
        let stopped = w.signal(signal);
        assert_eq!(stopped.status.signal(), None, "{}", stopped.stderr);
        assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
    }
}

#[test]
fn check_passes_on_this_machine() {
    require_root();
    // Make sure tracefs is there (a watcher mounts it if it is not).
    let tree = Tree::new("check");
    drop(Watcher::start(&["trace", tree.root.to_str().unwrap()]));
    let (code, stdout, stderr) = watcher(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for what in [
        "privileges",
        "kernel",
        "btf",
        "memlock",
        "tracefs",
        "tracepoint",
        "ring buffer",
        "reads",
        "programs",
    ] {
        let line = stdout
            .lines()
            // Lines are `{status:<5} {check:<12} {detail}`.
            .find(|l| l.get(6..).is_some_and(|l| l.starts_with(what)))
            .unwrap_or_else(|| panic!("no {what} line:\n{stdout}"));
        assert!(line.starts_with("ok "), "{line}");
    }
}

/// Run by another user than root, `check` cannot read tracefs (mode 0700)
/// and says why, rather than that it is not mounted.
#[test]
fn check_as_another_user_says_not_root_about_tracefs() {
    require_root();
    // Make sure tracefs is there (a watcher mounts it if it is not).
    let tree = Tree::new("check-nobody");
    drop(Watcher::start(&["trace", tree.root.to_str().unwrap()]));
    let mut cmd = Command::new(watcher_bin());
    cmd.arg("check").uid(65534).gid(65534);
    let (_, out) = spawn(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The privileges line fails: watcher cannot run as nobody.
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.get(6..).is_some_and(|l| l.starts_with("tracefs ")))
        .unwrap_or_else(|| panic!("no tracefs line:\n{stdout}"));
    assert!(!line.contains("not mounted"), "{line}");
    assert!(
        line.contains("mounted at /sys/kernel/tracing, but not readable: not root"),
        "{line}"
    );
}

/// In a private mount namespace, with tracefs unmounted: `check` warns on
/// the tracefs line that watcher will mount it (exit status 3: runs with a
/// warning), and `trace` mounts it, says so, and works.
#[test]
fn unmounted_tracefs_is_reported_by_check_and_mounted_by_watcher() {
    let tree = Tree::new("tracefs");
    let script = r#"umount /sys/kernel/tracing 2>/dev/null; "$0" check; echo "check=$?"; exec "$0" trace "$1""#;
    let w = Watcher::start_command(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .arg(watcher_bin())
            .arg(&tree.root),
    );
    assert!(
        w.stderr()
            .contains("watcher: mounted tracefs at /sys/kernel/tracing"),
        "{}",
        w.stderr()
    );
    let mut line = w.next_line();
    let mut tracefs = None;
    let mut report = String::new();
    while !line.starts_with("check=") {
        if line.get(6..).is_some_and(|l| l.starts_with("tracefs ")) {
            tracefs = Some(line.clone());
        }
        report.push_str(&line);
        report.push('\n');
        line = w.next_line();
    }
    let tracefs = tracefs.unwrap_or_else(|| panic!("no tracefs line:\n{report}"));
    assert!(
        tracefs.starts_with(
            "warn  tracefs      not mounted at /sys/kernel/tracing: watcher mounts it at start"
        ),
        "{tracefs}"
    );
    assert!(!report.contains("FAIL"), "{report}");
    assert_eq!(line, "check=3", "{report}");
    let file = tree.root.join("seen");
    std::fs::write(&file, b"x").unwrap();
    let event = w.next_line();
    assert!(event.contains(file.to_str().unwrap()), "{event}");
    let stopped = w.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.stderr);
}

/// Completion scripts and man pages come from the command-line
/// definitions, subcommands and options included.
#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, stderr) = watcher(&["completions", shell]);
        assert_eq!(code, 0, "{stderr}");
        for word in ["serve", "config", "bpf-log", "stdin-format"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let (code, _, stderr) = watcher(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");

    let tree = Tree::new("man");
    let dir = tree.root.join("man1");
    let (code, _, stderr) = watcher(&["man", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for (page, words) in [
        (
            "watcher.1",
            &["watcher\\-serve(1)", "Examples:", "\\-\\-version"][..],
        ),
        (
            "watcher-serve.1",
            &["\\-\\-config", "SIGHUP", "\\-\\-verbose", "watcher.toml(5)"][..],
        ),
        (
            "watcher-run.1",
            &[
                "\\-\\-settle",
                "\\-\\-stdin\\-format",
                ".SH ENVIRONMENT",
                "WATCHER_WATCHES",
                "WATCHER_PATHS_OMITTED",
            ][..],
        ),
        ("watcher-check.1", &["Exit status 0"][..]),
        (
            "watcher.toml.5",
            &[
                ".TH watcher.toml 5",
                "\\fBring_buffer_size\\fR",
                "\\fBsettle\\fR",
                "\\fBprocess_name\\fR",
                ".SH \"RELOADING\"",
            ][..],
        ),
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(
            text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH"),
            "{page}"
        );
        for word in words {
            assert!(text.contains(word), "{page}: no {word}:\n{text}");
        }
    }
    // A subcommand takes no --version, and its page does not offer one.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if name.starts_with("watcher-") {
            assert!(!text.contains("\\-\\-version"), "{name}:\n{text}");
            let sub = name.trim_start_matches("watcher-").trim_end_matches(".1");
            let (code, _, _) = watcher(&[sub, "--version"]);
            assert_eq!(code, 2, "{sub} --version");
        }
    }
}

/// The shipped unit file is one systemd accepts, key by key.
#[test]
fn the_unit_file_is_valid() {
    let tree = Tree::new("unit");
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/watcher.service"),
    )
    .unwrap();
    let local = tree.root.join("watcher.service");
    std::fs::write(
        &local,
        unit.replace("/usr/local/bin/watcher", watcher_bin().to_str().unwrap()),
    )
    .unwrap();
    let (_, out) = spawn(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&local),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr, "", "systemd-analyze has remarks");
}
