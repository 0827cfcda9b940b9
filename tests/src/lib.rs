//! Harness for watcher's end-to-end tests: they run the real binary, which
//! loads the real eBPF programs, as root, against real processes. Every
//! process and directory a test makes is cleaned up by a drop guard.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Write as _},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long anything may take before a test gives up. Generous: these
/// machines are shared; nothing here measures speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` until it gives a value, for at most [`PATIENCE`]; then
/// panics, saying `what` never happened, with `context()`.
pub fn eventually<T>(
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; {}",
            context()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit; kills it and panics after [`PATIENCE`].
fn wait_child(child: &mut Child, context: impl Fn() -> String) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {PATIENCE:?}: {}", context());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Directory holding the binaries of this build (target/<profile>).
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The watcher binary under test: `WATCHER_BIN` (set by `cargo xtask
/// test`), else the one next to this test's build.
pub fn watcher_bin() -> PathBuf {
    let bin = std::env::var_os("WATCHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| build_dir().join("watcher"));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

/// One of this crate's helper programs (src/bin/NAME.rs).
pub fn helper_bin(name: &str) -> PathBuf {
    let bin = build_dir().join(name);
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "end-to-end tests load eBPF programs and need root: run `cargo xtask test` as root"
    );
}

/// A fresh directory under /tmp, removed on drop.
pub struct Tree {
    pub root: PathBuf,
}

impl Tree {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("watcher-e2e-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create test tree");
        Self { root }
    }

    /// `root/rel`, created as a directory.
    pub fn dir(&self, rel: &str) -> PathBuf {
        let dir = self.root.join(rel);
        std::fs::create_dir_all(&dir).expect("create test dir");
        dir
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `base` with `depth` more directories named `d` below it, created: for
/// files deeper than the kernel's walk.
pub fn chain(base: &Path, depth: u32) -> PathBuf {
    let dir: PathBuf = std::iter::once(base.to_path_buf())
        .chain((0..depth).map(|_| PathBuf::from("d")))
        .collect();
    std::fs::create_dir_all(&dir).expect("create a deep chain");
    dir
}

/// A file system mounted for a test, unmounted on drop (declare it after the
/// [`Tree`] it is in, so that it goes first) unless it was already.
pub struct Mount(Option<PathBuf>);

impl Mount {
    pub fn tmpfs(at: &Path) -> Self {
        let (_, out) = spawn(
            Command::new("mount")
                .args(["-t", "tmpfs", "watcher-test"])
                .arg(at),
        );
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(Some(at.to_path_buf()))
    }

    /// A bind mount of `dir` on `at`.
    pub fn bind(dir: &Path, at: &Path) -> Self {
        run(
            "mount",
            &[OsStr::new("--bind"), dir.as_os_str(), at.as_os_str()],
        );
        Self(Some(at.to_path_buf()))
    }

    /// An overlay of `upper` (writable, with `work` beside it) on
    /// `lower`, at `at`: as a container's root or writable layer.
    pub fn overlay(lower: &Path, upper: &Path, work: &Path, at: &Path) -> Self {
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        run(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("overlay"),
                OsStr::new("overlay"),
                OsStr::new("-o"),
                OsStr::new(&options),
                at.as_os_str(),
            ],
        );
        Self(Some(at.to_path_buf()))
    }

    /// Unmounts it now.
    pub fn unmount(mut self) {
        let at = self.0.take().expect("mounted");
        run("umount", &[at.as_os_str()]);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(at) = &self.0 {
            let _ = spawn(Command::new("umount").arg(at));
        }
    }
}

/// A running watcher; killed on drop if the test did not stop it.
pub struct Watcher {
    child: Option<Child>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Closed when the stderr reader has taken the last line.
    stderr_done: Receiver<String>,
}

/// How a watcher ended.
pub struct Stopped {
    pub status: ExitStatus,
    pub stderr: String,
    /// The lines on stdout not read before the exit.
    pub stdout: Vec<String>,
}

impl Watcher {
    /// Starts `watcher ARGS...` and waits for its `watching` line.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Self {
        Self::start_command(Command::new(watcher_bin()).args(args))
    }

    /// Starts `cmd`, which runs watcher in some way, and waits for the
    /// `watching` line.
    pub fn start_command(cmd: &mut Command) -> Self {
        require_root();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watcher");
        let (out_tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err_tx, err_rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        let log = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
                let _ = err_tx.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        loop {
            match err_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("watching") => break,
                Ok(_) => {}
                Err(_) => panic!(
                    "watcher never said `watching`; stderr:\n{}",
                    stderr.lock().unwrap()
                ),
            }
        }
        Self {
            child: Some(child),
            stdout,
            stderr,
            stderr_done: err_rx,
        }
    }

    /// `watcher trace --format json --events write DIRS...`: one event
    /// per open for writing (tests/tests/kinds.rs covers the other kinds).
    pub fn trace_json(dirs: &[&Path]) -> Self {
        Self::trace_json_with(&["--events", "write"], dirs)
    }

    /// `watcher trace --format json OPTIONS... DIRS...`
    pub fn trace_json_with(options: &[&str], dirs: &[&Path]) -> Self {
        let mut args: Vec<&OsStr> = vec!["trace".as_ref(), "--format".as_ref(), "json".as_ref()];
        args.extend(options.iter().map(OsStr::new));
        args.extend(dirs.iter().map(|d| d.as_os_str()));
        Self::start(&args)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until watcher's log (its stderr) holds `text` `times` times.
    pub fn wait_for_log(&self, text: &str, times: usize) {
        eventually(
            &format!("{times} × {text:?} in the log"),
            || format!("stderr:\n{}", self.stderr()),
            || (self.stderr().matches(text).count() >= times).then_some(()),
        );
    }

    /// The next line on stdout.
    pub fn next_line(&self) -> String {
        match self.stdout.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no output for {PATIENCE:?}; stderr:\n{}", self.stderr())
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("watcher closed its output; stderr:\n{}", self.stderr())
            }
        }
    }

    /// JSON events up to and including the first that `last` accepts.
    pub fn events_through(&self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self.next_line();
            let ev: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let done = last(&ev);
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }

    /// Writes a marker file in `dir` (with `touch`) and returns every event
    /// up to its own. An event a test expects *not* to see would have come
    /// before the marker: the operation finished before the marker began.
    pub fn events_until_marker(&self, dir: &Path) -> Vec<Value> {
        static N: AtomicU32 = AtomicU32::new(0);
        let marker = dir.join(format!(".marker-{}", N.fetch_add(1, Ordering::Relaxed)));
        let (pid, out) = spawn(Command::new("touch").arg(&marker));
        assert!(out.status.success(), "touch {} failed", marker.display());
        let marker = marker.as_os_str().as_bytes().to_vec();
        self.events_through(|ev| ev["pid"] == pid && path_bytes(ev) == marker)
    }

    /// Sends `signal` (none if 0), waits for the exit and returns how it
    /// ended.
    pub fn signal(mut self, signal: libc::c_int) -> Stopped {
        let mut child = self.child.take().expect("running");
        if signal != 0 {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
        let status = wait_child(&mut child, || {
            format!("watcher, after signal {signal}; stderr:\n{}", self.stderr())
        });
        // The reader threads end with the output: every line is in.
        let stdout = self.stdout.iter().collect();
        let deadline = Instant::now() + PATIENCE;
        while let Err(RecvTimeoutError::Timeout) | Ok(_) = self
            .stderr_done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            assert!(
                Instant::now() < deadline,
                "watcher's stderr still open {PATIENCE:?} after it exited"
            );
        }
        Stopped {
            status,
            stderr: self.stderr(),
            stdout,
        }
    }

    /// Sends `signal` and leaves watcher running (SIGSTOP, SIGCONT).
    pub fn send(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }

    /// Waits for watcher to exit by itself.
    pub fn wait_exit(self) -> Stopped {
        self.signal(0)
    }

    pub fn stop(self) -> Stopped {
        self.signal(libc::SIGTERM)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A count the record helper found in its environment (`WATCHER_EVENTS`,
/// `WATCHER_LOST`, ...).
pub fn recorded_count(run: &Value, name: &str) -> u64 {
    run["env"][name]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no count {name} in {run}"))
}

/// The record helper's runs in `log`, once there are at least `n`.
pub fn wait_for_runs(w: &Watcher, log: &Path, n: usize) -> Vec<Value> {
    eventually(
        &format!("run {n}"),
        || format!("stderr:\n{}", w.stderr()),
        || {
            let runs = recorded_runs(log);
            (runs.len() >= n).then_some(runs)
        },
    )
}

/// The record helper's runs in `log`, once the events they were told of,
/// delivered (`WATCHER_EVENTS`) or lost (`WATCHER_LOST`), add up to
/// `made`; never more.
pub fn runs_accounting_for(w: &Watcher, log: &Path, made: u64) -> Vec<Value> {
    eventually(
        "delivered + lost = made",
        || format!("stderr:\n{}", w.stderr()),
        || {
            let runs = recorded_runs(log);
            let total: u64 = runs
                .iter()
                .map(|r| recorded_count(r, "WATCHER_EVENTS") + recorded_count(r, "WATCHER_LOST"))
                .sum();
            assert!(total <= made, "more than made: {runs:?}");
            (total == made).then_some(runs)
        },
    )
}

/// Runs a command to completion, killing it after [`PATIENCE`]; returns
/// its pid and output.
pub fn spawn(cmd: &mut Command) -> (u32, Output) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let read = |mut from: Box<dyn std::io::Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = from.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_child(&mut child, || format!("{cmd:?}"));
    let output = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    (pid, output)
}

/// Runs `program ARGS...`, checks it succeeded, and returns its pid.
pub fn run(program: &str, args: &[&OsStr]) -> u32 {
    let (pid, out) = spawn(Command::new(program).args(args));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

/// `watcher run --settle 100ms DIR -- record LOG`: each run of the
/// action is recorded in LOG by the `record` helper.
pub fn run_recording(dir: &Path, log: &Path) -> Watcher {
    run_recording_with(dir, log, &[])
}

/// As [`run_recording`], with `run`'s options `args` too.
pub fn run_recording_with(dir: &Path, log: &Path, args: &[&str]) -> Watcher {
    let record = helper_bin("record");
    let mut all: Vec<&OsStr> = vec!["run".as_ref(), "--settle".as_ref(), "100ms".as_ref()];
    all.extend(args.iter().map(OsStr::new));
    all.extend([
        dir.as_os_str(),
        "--".as_ref(),
        record.as_os_str(),
        log.as_os_str(),
    ]);
    Watcher::start(&all)
}

/// The `writer` helper, its file open before anything else happens.
pub struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    /// Starts `writer PATH OPS...` and waits until it holds PATH open.
    pub fn open(path: &Path, ops: &[&str]) -> Self {
        Self::start(Command::new(helper_bin("writer")).arg(path).args(ops))
    }

    /// `writer --tmpfile DIR OPS...`: an unnamed file in DIR.
    pub fn tmpfile(dir: &Path, ops: &[&str]) -> Self {
        Self::start(
            Command::new(helper_bin("writer"))
                .arg("--tmpfile")
                .arg(dir)
                .args(ops),
        )
    }

    fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut writer = Self {
            child,
            stdin,
            stdout,
        };
        writer.expect_line("open");
        writer
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn expect_line(&mut self, want: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("writer's output");
        assert_eq!(line.trim_end(), want, "writer said");
    }

    /// Lets it go on to its next `pause` (`paused`) or its end (`done`).
    pub fn step(&mut self, want: &str) {
        self.stdin.write_all(b"\n").expect("tell the writer");
        self.expect_line(want);
    }

    /// Lets it write to its end, and waits until it has exited.
    pub fn go(mut self) {
        self.step("done");
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "writer never exited");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(mut self) {
        self.child.kill().expect("kill the writer");
        self.child.wait().expect("wait for the writer");
    }
}

/// `sh -c SCRIPT watcher ARGS...` in a private mount namespace where the
/// kernel's BTF is hidden (an empty file bound over it).
pub fn without_btf(script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind /dev/null /sys/kernel/btf/vmlinux && {script}"
        ))
        .arg(watcher_bin());
    cmd
}

/// Runs `opener` with `(SYSCALL:FLAGS, path)` pairs; returns its pid and
/// one result per operation (`ok` or `err ERRNO`).
pub fn opener(ops: &[(&str, &Path)]) -> (u32, Vec<String>) {
    let mut cmd = Command::new(helper_bin("opener"));
    for (op, path) in ops {
        cmd.arg(op).arg(path);
    }
    let (pid, out) = spawn(&mut cmd);
    assert!(
        out.status.success(),
        "opener failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = String::from_utf8(out.stdout)
        .expect("ASCII")
        .lines()
        .map(str::to_owned)
        .collect();
    (pid, results)
}

/// An event's path as bytes (`path_base64` when it is not UTF-8).
pub fn path_bytes(ev: &Value) -> Vec<u8> {
    if let Some(b64) = ev["path_base64"].as_str() {
        return base64_decode(b64);
    }
    ev["path"].as_str().expect("path").as_bytes().to_vec()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// Events of one process.
pub fn of_pid(events: &[Value], pid: u32) -> Vec<&Value> {
    events.iter().filter(|ev| ev["pid"] == pid).collect()
}

/// The runs the `record` helper (the tests' action) logged to `log` so
/// far, one JSON object each.
pub fn recorded_runs(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record writes JSON"))
        .collect()
}

/// What one run of `record` received on its stdin.
pub fn recorded_stdin(run: &Value) -> Vec<u8> {
    let hex = run["stdin_hex"].as_str().expect("stdin_hex");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The documented JSON Lines schema, docs/events.schema.json.
pub fn schema() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.schema.json");
    let text = std::fs::read_to_string(path).expect("docs/events.schema.json");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// Panics, with the reasons, unless `line` validates against `schema`.
pub fn assert_valid(schema: &jsonschema::Validator, line: &Value) {
    let errors: Vec<String> = schema.iter_errors(line).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{line}\n{errors:#?}");
}

/// `bpf(cmd, attr)` with `attr` a `bpf_attr` prefix.
pub fn bpf(cmd: libc::c_long, attr: &[u64]) -> libc::c_long {
    // SAFETY: attr is a valid, zero-padded bpf_attr prefix of its size;
    // the pointers in it point to live buffers of the caller.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), size_of_val(attr) as u32) }
}

/// The ids after `key` (`map_id:`, `prog_id:`, `link_id:`) in the fdinfo
/// of process `pid`'s descriptors: the BPF objects it holds.
pub fn bpf_ids(pid: u32, key: &str) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .filter_map(|entry| {
            let info = std::fs::read_to_string(entry.ok()?.path()).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// The kernel's count of entries in watcher's map `name` (process `pid`),
/// and its `max_entries`: asked of the kernel by map id, key by key.
pub fn map_entries(pid: u32, name: &str) -> (u64, u32) {
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    for id in bpf_ids(pid, "map_id:") {
        let fd = bpf(BPF_MAP_GET_FD_BY_ID, &[id.into(), 0]);
        assert!(fd >= 0, "map {id}: {}", std::io::Error::last_os_error());
        // struct bpf_map_info: type, id, key_size, value_size, max_entries,
        // map_flags (u32 each), then the name (16 bytes).
        let mut map_info = [0u32; 20];
        let rc = bpf(
            BPF_OBJ_GET_INFO_BY_FD,
            &[
                fd as u64 | ((size_of_val(&map_info) as u64) << 32),
                map_info.as_mut_ptr() as u64,
            ],
        );
        assert_eq!(rc, 0, "map info: {}", std::io::Error::last_os_error());
        let bytes: Vec<u8> = map_info[6..10]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let found = bytes.split(|&b| b == 0).next() == Some(name.as_bytes());
        let (key_size, max_entries) = (map_info[2] as usize, map_info[4]);
        let mut count = 0;
        if found {
            let (mut key, mut next) = (vec![0u8; key_size], vec![0u8; key_size]);
            let mut at: u64 = 0; // NULL: the first key
            while bpf(
                BPF_MAP_GET_NEXT_KEY,
                &[fd as u64, at, next.as_mut_ptr() as u64, 0],
            ) == 0
            {
                count += 1;
                std::mem::swap(&mut key, &mut next);
                at = key.as_ptr() as u64;
            }
        }
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd as i32) };
        if found {
            return (count, max_entries);
        }
    }
    panic!("watcher (pid {pid}) holds no map {name}")
}
