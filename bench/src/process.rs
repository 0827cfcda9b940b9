//! The tools measured, started as processes of their own and timed until
//! they say they are ready.

use std::{
    io::{self, BufRead as _, BufReader, Read},
    process::{Child, ChildStdout, Command, Stdio},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// How long a tool may take to start before it counts as failed.
const START_LIMIT: Duration = Duration::from_secs(600);

/// Which output says a tool is ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// A tool's ready line, the text that says it gave up, and whether its
/// stdout is read (else it goes to /dev/null when it is not the ready
/// stream).
pub struct Ready {
    stream: Stream,
    line: &'static str,
    failed: Option<&'static str>,
    stdout: bool,
}

impl Ready {
    pub fn stderr(line: &'static str) -> Self {
        Self {
            stream: Stream::Stderr,
            line,
            failed: None,
            stdout: false,
        }
    }

    pub fn stdout(line: &'static str) -> Self {
        Self {
            stream: Stream::Stdout,
            line,
            failed: None,
            stdout: true,
        }
    }

    pub fn failing(self, failed: &'static str) -> Self {
        Self {
            failed: Some(failed),
            ..self
        }
    }

    pub fn with_stdout(self) -> Self {
        Self {
            stdout: true,
            ..self
        }
    }
}

/// A started tool, killed and reaped on drop. What it writes on the ready
/// stream after the ready line is read on (stderr lines kept for `stop`,
/// stdout thrown away), so that it never blocks on a full pipe.
pub struct Proc {
    child: Child,
    rest: Option<JoinHandle<Vec<String>>>,
    /// The last line read while waiting for the ready line.
    last: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        Ok(Self {
            child,
            rest: None,
            last: String::new(),
        })
    }

    /// Starts the tool and waits for its ready line; the time it took, or
    /// `None` when it gave up.
    pub fn start(cmd: &mut Command, ready: Ready) -> anyhow::Result<(Self, Option<Duration>)> {
        cmd.stdout(if ready.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        match ready.stream {
            Stream::Stderr => cmd.stderr(Stdio::piped()),
            Stream::Stdout => cmd.stderr(Stdio::null()),
        };
        let start = Instant::now();
        let mut proc = Self::spawn(cmd)?;
        let stream: Box<dyn Read + Send> = match ready.stream {
            Stream::Stderr => Box::new(proc.child.stderr.take().context("stderr")?),
            Stream::Stdout => Box::new(proc.child.stdout.take().context("stdout")?),
        };
        let mut lines = BufReader::new(stream);
        let mut took = None;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line)? == 0 {
                break;
            }
            if line.starts_with(ready.line) {
                took = Some(start.elapsed());
                break;
            }
            if ready.failed.is_some_and(|f| line.contains(f)) || start.elapsed() > START_LIMIT {
                break;
            }
        }
        proc.last = line.trim_end().to_string();
        let keep = ready.stream == Stream::Stderr;
        proc.rest = Some(thread::spawn(move || {
            if keep {
                lines.lines().map_while(Result::ok).collect()
            } else {
                let _ = io::copy(&mut lines, &mut io::sink());
                Vec::new()
            }
        }));
        Ok((proc, took))
    }

    /// Starts a tool that must get ready: an error with its last line
    /// when it does not.
    pub fn ready(cmd: &mut Command, ready: Ready) -> anyhow::Result<Self> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        match Self::start(cmd, ready)? {
            (proc, Some(_)) => Ok(proc),
            (proc, None) => bail!("{program} did not start: {}", proc.last),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Sends `signal`, waits for the exit (SIGKILL after a minute) and
    /// returns the stderr lines written after the ready line.
    pub fn stop(mut self, signal: libc::c_int) -> anyhow::Result<Vec<String>> {
        self.signal_and_wait(signal)?;
        Ok(self
            .rest
            .take()
            .and_then(|rest| rest.join().ok())
            .unwrap_or_default())
    }

    /// Sends `signal` and times the exit, to the millisecond (SIGKILL
    /// after a minute).
    pub fn time_stop(mut self, signal: libc::c_int) -> anyhow::Result<Duration> {
        self.signal_and_wait(signal)
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) -> anyhow::Result<Duration> {
        // SAFETY: the child is ours and not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let start = Instant::now();
        while self.child.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                bail!("{} did not stop", self.child.id());
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(start.elapsed())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
