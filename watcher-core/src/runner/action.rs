//! Starting the action: no shell, what changed in its environment, the
//! changed paths on its stdin; and reporting how it ended.

use std::{
    ffi::{OsStr, OsString},
    io,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt as _},
    path::Path,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    process::{Child, Command},
    time::{Instant, timeout, timeout_at},
};

use super::batch::Batch;
use crate::{
    choice::Choice,
    escape::escape,
    json::{Field, write_json},
    metrics::Outcome,
    user::RunAs,
    watch::Watch,
};

/// How the changed paths reach the action's stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinFormat {
    Nul,
    Jsonl,
    None,
}

impl Choice for StdinFormat {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            Self::Nul,
            "nul",
            "Each path followed by a NUL byte (like `find -print0`)",
        ),
        (
            Self::Jsonl,
            "jsonl",
            "One JSON object per line: `{\"path\": ...}`, and a last line `{\"truncated\": \
             true, \"omitted\": N}` when paths were left out",
        ),
        (Self::None, "none", "Nothing: stdin is /dev/null"),
    ];
}

/// Time between SIGTERM and SIGKILL when the action times out, or is
/// still running when watcher stops.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// Variables systemd sets for watcher itself, removed from the action's
/// environment.
const SYSTEMD_ONLY: [&str; 7] = [
    "NOTIFY_SOCKET",
    "JOURNAL_STREAM",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];
/// Longest line of the action's output that is logged as one line.
const MAX_LOG_LINE: usize = 4096;

pub struct Running {
    child: Child,
    /// Also its process group id: the action leads a group of its own.
    pid: i32,
    started: Instant,
}

/// How to start the action's command.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    pub command: Vec<OsString>,
    /// Run `sh -c COMMAND ARGS...` instead of COMMAND directly.
    pub shell: bool,
    pub user: Option<RunAs>,
    pub stdin: StdinFormat,
}

impl CommandSpec {
    /// A command action, from the command line or a configuration: a
    /// program that cannot run is bad input, refused here, before anything
    /// starts (a shell script is the shell's to run). `command` is not
    /// empty.
    pub fn new(
        command: Vec<OsString>,
        shell: bool,
        user: Option<RunAs>,
        stdin: StdinFormat,
    ) -> Result<Self, ProgramError> {
        if !shell && let Some(program) = command.first() {
            check_program(program)?;
        }
        Ok(Self {
            command,
            shell,
            user,
            stdin,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot run {}: {reason}", escape(.program.as_bytes()))]
pub struct ProgramError {
    program: OsString,
    reason: &'static str,
}

/// Checks that `program` names an executable file, as execvp would find
/// it: a path when it has a `/`, else in `PATH`.
fn check_program(program: &OsStr) -> Result<(), ProgramError> {
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let is_path = program.as_bytes().contains(&b'/');
    let found = if is_path {
        executable(Path::new(program))
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| executable(&dir.join(program)))
        })
    };
    if found {
        Ok(())
    } else {
        Err(ProgramError {
            program: program.to_owned(),
            reason: if is_path {
                "no executable file there"
            } else {
                "command not found in PATH"
            },
        })
    }
}

/// Starts a job's action for `batch`; `label` starts its log line,
/// `watches` are the job's.
pub fn start(
    label: &str,
    spec: &CommandSpec,
    batch: &Batch,
    watches: &[Watch],
) -> io::Result<Running> {
    let CommandSpec {
        command,
        shell,
        user,
        stdin,
    } = spec;
    let (shell, stdin) = (*shell, *stdin);
    let shown: Vec<String> = command.iter().map(|a| escape(a.as_bytes())).collect();
    let mut lost = String::new();
    if batch.lost > 0 {
        lost += &format!(", {} events lost", batch.lost);
    }
    if batch.replaced > 0 {
        lost += &format!(", {} directories gone, back or replaced", batch.replaced);
    }
    tracing::info!(
        "{label}running {} ({} changes{lost})",
        shown.join(" "),
        batch.events
    );
    let roots: Vec<Vec<u8>> = watches
        .iter()
        .filter(|w| batch.touches(w.id))
        .map(|w| crate::escape::escape_line(w.root.as_os_str().as_bytes()))
        .collect();
    let mut cmd = if shell {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").args(command);
        cmd
    } else {
        let (program, args) = command.split_first().expect("clap requires a command");
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    };
    // First (pre_exec closures run in order): dropping from the bounding
    // set needs CAP_SETPCAP, which a switch to another user takes away.
    // SAFETY: for_action only makes syscalls and allocates nothing.
    unsafe { cmd.pre_exec(crate::privileges::for_action) };
    // A signal ignored when watcher was started (under `nohup`, say) stays
    // ignored across exec: the action starts with the default actions, so
    // that the SIGTERM of a timeout or a stop ends it.
    // SAFETY: signal() is async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    if let Some(user) = user {
        user.apply(&mut cmd);
    }
    // watcher's own connection to systemd (readiness, watchdog, its
    // journal stream, sockets it was given) is not the action's.
    for var in SYSTEMD_ONLY {
        cmd.env_remove(var);
    }
    cmd.env("WATCHER_WATCHES", OsStr::from_bytes(&roots.join(&b'\n')))
        .env("WATCHER_EVENTS", batch.events.to_string())
        .env("WATCHER_WRITES", batch.writes.to_string())
        .env("WATCHER_LOST", batch.lost.to_string())
        .env("WATCHER_REPLACED", batch.replaced.to_string())
        .env("WATCHER_PATHS", batch.paths.len().to_string())
        .env("WATCHER_PATHS_OMITTED", batch.omitted.to_string())
        .env("WATCHER_PATHS_OPEN", batch.open.len().to_string())
        .stdin(if stdin == StdinFormat::None {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout reaches its children.
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id().map_or(0, |id| id as i32);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(log_lines(out, pid, "out"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_lines(err, pid, "err"));
    }
    if let Some(mut pipe) = child.stdin.take() {
        let data = stdin_bytes(batch, stdin);
        // In its own task: an action that does not read its stdin must not
        // hold up watcher. EPIPE (it exited without reading) is fine.
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    Ok(Running {
        child,
        pid,
        started: Instant::now(),
    })
}

/// Copies the action's output to watcher's log, a line at a time, escaped
/// and prefixed. Memory stays bounded whatever the action prints: longer
/// lines are cut into pieces of MAX_LOG_LINE bytes.
async fn log_lines(mut from: impl AsyncRead + Unpin, pid: i32, stream: &'static str) {
    let mut line = Vec::with_capacity(MAX_LOG_LINE);
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                line.push(b);
            }
            if b == b'\n' || line.len() == MAX_LOG_LINE {
                tracing::info!("action[{pid}] {stream}: {}", escape(&line));
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        tracing::info!("action[{pid}] {stream}: {}", escape(&line));
    }
}

fn stdin_bytes(batch: &Batch, format: StdinFormat) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        StdinFormat::None => {}
        StdinFormat::Nul => {
            for path in &batch.paths {
                out.extend_from_slice(path);
                out.push(0);
            }
            // An empty path, which no file has, then those still open.
            if !batch.open.is_empty() {
                out.push(0);
                for path in &batch.open {
                    out.extend_from_slice(path);
                    out.push(0);
                }
            }
        }
        StdinFormat::Jsonl => {
            // Writing to a Vec cannot fail.
            let open = |path: &Vec<u8>| batch.open.contains(path);
            for path in &batch.paths {
                let mut fields = vec![("path", Field::Bytes(path))];
                if open(path) {
                    fields.push(("open", Field::Flag));
                }
                let _ = write_json(&mut out, &fields);
                out.push(b'\n');
            }
            for path in batch.open.iter().filter(|p| !batch.paths.contains(p)) {
                let _ = write_json(
                    &mut out,
                    &[("path", Field::Bytes(path)), ("open", Field::Flag)],
                );
                out.push(b'\n');
            }
            if batch.omitted > 0 {
                let _ = write_json(
                    &mut out,
                    &[
                        ("truncated", Field::Flag),
                        ("omitted", Field::Uint(batch.omitted)),
                    ],
                );
                out.push(b'\n');
            }
        }
    }
    out
}

/// How a run of a command ended.
#[derive(Debug)]
pub struct Ended {
    pub status: io::Result<ExitStatus>,
    /// It ran past its timeout and was stopped.
    pub timed_out: bool,
    pub took: Duration,
}

impl Ended {
    pub fn outcome(&self) -> Outcome {
        match &self.status {
            _ if self.timed_out => Outcome::Timeout,
            Ok(s) if s.success() => Outcome::Success,
            Ok(_) => Outcome::Failure,
            Err(_) => Outcome::Error,
        }
    }
}

impl Running {
    /// Waits for the action to end and logs how it did. After `limit`, its
    /// process group gets SIGTERM, and SIGKILL KILL_GRACE later.
    pub async fn wait(&mut self, limit: Duration) -> Ended {
        let mut timed_out = false;
        let status = match timeout_at(self.started + limit, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                timed_out = true;
                tracing::warn!(
                    "action[{}] still running after {limit:?}: sending SIGTERM to its process group",
                    self.pid
                );
                self.signal_group(libc::SIGTERM);
                match timeout(KILL_GRACE, self.child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::warn!("action[{}] ignored SIGTERM: sending SIGKILL", self.pid);
                        self.signal_group(libc::SIGKILL);
                        self.child.wait().await
                    }
                }
            }
        };
        let took = self.started.elapsed();
        let secs = took.as_secs_f64();
        match &status {
            Ok(s) if s.success() => tracing::info!("action finished ({s}) after {secs:.3}s"),
            Ok(s) => tracing::warn!("action failed ({s}) after {secs:.3}s"),
            Err(e) => tracing::error!("cannot wait for the action: {e}"),
        }
        Ended {
            status,
            timed_out,
            took,
        }
    }

    /// The action's pid, which is also its process group's id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn signal_group(&self, signal: libc::c_int) {
        signal_group(self.pid, signal);
    }
}

/// Sends `signal` to the process group an action with pid `pid` leads.
pub fn signal_group(pid: i32, signal: libc::c_int) {
    if pid > 0 {
        // SAFETY: a negative pid addresses the action's process group,
        // which it leads; no memory is involved.
        unsafe { libc::kill(-pid, signal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn batch(paths: &[&[u8]], cap: usize) -> Batch {
        let mut b = Batch::default();
        for p in paths {
            b.add(&Event::test_write(p, 0), Some(&[0]), cap);
        }
        b
    }

    #[test]
    fn nul_separated_paths_are_byte_exact() {
        let b = batch(&[b"/w/a\nb", b"/w/\xff$(x)"], 10);
        assert_eq!(stdin_bytes(&b, StdinFormat::Nul), b"/w/a\nb\0/w/\xff$(x)\0");
    }

    #[test]
    fn json_lines_mark_the_cap() {
        let b = batch(&[b"/w/a", b"/w/b", b"/w/c"], 1);
        let text = String::from_utf8(stdin_bytes(&b, StdinFormat::Jsonl)).unwrap();
        assert_eq!(
            text,
            "{\"path\":\"/w/a\"}\n{\"truncated\":true,\"omitted\":2}\n"
        );
    }

    #[test]
    fn files_still_open_are_marked_in_each_format() {
        let mut b = batch(&[b"/w/a", b"/w/b"], 10);
        b.open = vec![b"/w/b".to_vec(), b"/w/log".to_vec()];
        assert_eq!(
            stdin_bytes(&b, StdinFormat::Nul),
            b"/w/a\0/w/b\0\0/w/b\0/w/log\0"
        );
        let text = String::from_utf8(stdin_bytes(&b, StdinFormat::Jsonl)).unwrap();
        assert_eq!(
            text,
            "{\"path\":\"/w/a\"}\n{\"path\":\"/w/b\",\"open\":true}\n\
             {\"path\":\"/w/log\",\"open\":true}\n"
        );
    }
}
