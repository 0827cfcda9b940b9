//! The benchmark behind `cargo xtask bench`: measurements side by side in
//! one run, written to BENCHMARKS.md. Every figure is the median, with
//! min–max, of repeated runs; nothing here is a pass/fail test (the targets
//! are reported, not enforced).
//!
//! xtask installs the tools measured beside watcher (`inotify-tools`,
//! `bpftrace`, `auditd`) and builds watcher, then runs this binary with the
//! paths it needs. The loops and writers run in processes of their own: this
//! same binary, started again with the hidden `child` subcommand.

mod child;
mod floor;
mod load;
mod overhead;
mod report;
mod scale;

use std::{
    fs,
    io::{self, BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child as Process, ChildStdout, Command, ExitCode, Stdio},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "watcher-bench", subcommand_negates_reqs = true)]
struct Cli {
    /// The watcher binary to measure (target/release/watcher).
    #[arg(long, required = true)]
    watcher: Option<PathBuf>,
    /// A directory for the benchmark's files (target/bench).
    #[arg(long, required = true)]
    work: Option<PathBuf>,
    /// The report to write (BENCHMARKS.md).
    #[arg(long, required = true)]
    report: Option<PathBuf>,
    /// Fewer sizes and runs (a few minutes).
    #[arg(long)]
    quick: bool,
    #[command(subcommand)]
    child: Option<Spawned>,
}

#[derive(Subcommand)]
enum Spawned {
    /// The benchmark's own loops and writers, in processes of their own.
    #[command(hide = true)]
    Child {
        #[command(subcommand)]
        what: child::Child,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.child {
        Some(Spawned::Child { what }) => child::child(what),
        None => match (cli.watcher, cli.work, cli.report) {
            (Some(watcher), Some(work), Some(report)) => bench(&watcher, &work, &report, cli.quick),
            _ => Err(anyhow::anyhow!(
                "--watcher, --work and --report are required"
            )),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watcher-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A progress line on stderr.
fn step(what: &str, detail: &str) {
    eprintln!("watcher-bench: {what:<10} {detail}");
}

/// A tmpfs directory for the throughput and latency writers.
const SHM: &str = "/dev/shm/watcher-bench";
/// How long a tool may take to start before it counts as failed.
const START_LIMIT: Duration = Duration::from_secs(600);

/// How much is measured: `--quick` or the full run.
struct Plan {
    /// Repetitions of each measurement.
    runs: usize,
    /// Repetitions of each throughput burst (each start and stop of
    /// watcher takes about two seconds).
    load_runs: usize,
    /// Tree sizes for start-up and memory.
    sizes: &'static [usize],
    /// Writer counts for throughput.
    writers: &'static [usize],
    /// Files each writer creates.
    files: u64,
    /// Creations timed for latency, a millisecond apart.
    latency_files: usize,
}

const QUICK: Plan = Plan {
    runs: 3,
    load_runs: 2,
    sizes: &[10_000, 100_000],
    writers: &[1, 4],
    files: 10_000,
    latency_files: 1_000,
};

const FULL: Plan = Plan {
    runs: 5,
    load_runs: 5,
    sizes: &[10_000, 100_000, 1_000_000],
    writers: &[1, 2, 4],
    files: 50_000,
    latency_files: 5_000,
};

fn bench(watcher: &Path, work: &Path, report: &Path, quick: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads eBPF programs: run it as root");
    }
    fs::create_dir_all(work)?;
    let plan = if quick { QUICK } else { FULL };
    let started = Instant::now();

    let overhead = overhead::Bench {
        watcher,
        work,
        quick,
    };
    let (costs, tracepoints, audit_skipped) = overhead.run(plan.runs)?;
    let programs = overhead.profile()?;

    // Writers work in memory, so that the disk does not set the pace.
    let shm = Path::new(SHM);
    fs::create_dir_all(shm)?;
    let mut bursts = Vec::new();
    for mode in [load::Mode::Trace, load::Mode::Run] {
        for ring in load::RINGS {
            for &writers in plan.writers {
                let case = load::Case {
                    mode,
                    ring,
                    writers,
                };
                let mut runs = Vec::new();
                for run in 1..=plan.load_runs {
                    step(
                        "throughput",
                        &format!(
                            "{}, ring {ring}, {writers} writers, run {run}/{}",
                            mode.label(),
                            plan.load_runs
                        ),
                    );
                    runs.push(load::burst(watcher, shm, case, plan.files)?);
                }
                bursts.push((case, runs));
            }
        }
    }

    let mut latencies = Vec::new();
    for run in 1..=plan.runs {
        step("latency", &format!("run {run}/{}", plan.runs));
        latencies.push(load::latency(
            watcher,
            shm,
            plan.latency_files,
            Duration::from_millis(1),
        )?);
    }

    fs::remove_dir_all(shm)?;

    let mut rows = Vec::new();
    for &size in plan.sizes {
        let tree = work.join(format!("tree-{size}"));
        step("scale", &format!("making a tree of {size} directories"));
        scale::make_tree(&tree, size)?;
        let mut w = Samples::default();
        let mut i = Samples::default();
        for run in 1..=plan.runs {
            step(
                "scale",
                &format!("{size} directories, run {run}/{}", plan.runs),
            );
            w.0.push(scale::start_watcher(watcher, &tree)?);
            i.0.push(scale::start_inotifywait(&tree)?);
        }
        rows.push(scale::ScaleRow {
            size,
            watcher: w,
            inotify: i,
        });
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }

    let markdown = report::Report {
        quick,
        runs: plan.runs,
        load_runs: plan.load_runs,
        files: plan.files,
        latency_files: plan.latency_files,
        costs: &costs,
        programs: &programs,
        tracepoints: &tracepoints,
        outside: &overhead.outside(),
        audit_skipped: audit_skipped.as_deref(),
        bursts: &bursts,
        latencies: &latencies,
        scale: &rows,
        minutes: started.elapsed().as_secs_f64() / 60.0,
    };
    fs::write(report, markdown.markdown())
        .with_context(|| format!("writing {}", report.display()))?;
    step(
        "report",
        &format!(
            "wrote {} ({:.1} minutes)",
            report.display(),
            started.elapsed().as_secs_f64() / 60.0
        ),
    );
    Ok(())
}

/// One of a process's descriptors, as /proc/PID/fdinfo describes it
/// (`key:\tvalue` lines).
struct FdInfo(String);

impl FdInfo {
    /// The descriptors of process `pid` (those that close meanwhile are
    /// left out).
    fn of(pid: u32) -> anyhow::Result<Vec<Self>> {
        let mut infos = Vec::new();
        for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
            if let Ok(info) = fs::read_to_string(entry?.path()) {
                infos.push(Self(info));
            }
        }
        Ok(infos)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }
}

/// One start of one tool.
#[derive(Clone, Copy)]
struct Start {
    /// Time from spawning to the tool saying it watches, or `None` when it
    /// gave up.
    ready: Option<Duration>,
    /// Resident memory once ready, bytes.
    rss: u64,
    /// Kernel memory the tool's BPF maps hold (watcher), bytes.
    maps: u64,
}

#[derive(Default)]
struct Samples(Vec<Start>);

impl Samples {
    fn ready_ms(&self) -> Option<Stat> {
        let ms: Option<Vec<f64>> = self
            .0
            .iter()
            .map(|s| s.ready.map(|d| d.as_secs_f64() * 1e3))
            .collect();
        ms.map(|v| Stat::of(&v))
    }

    fn mb(&self, f: impl Fn(&Start) -> u64) -> Stat {
        let v: Vec<f64> = self.0.iter().map(|s| f(s) as f64 / 1e6).collect();
        Stat::of(&v)
    }
}

/// Median, min and max.
#[derive(Clone, Copy, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if !n.is_multiple_of(2) {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    fn show(self, unit: &str, digits: usize) -> String {
        format!(
            "{:.d$} {unit} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// Which output says a tool is ready.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// A tool's ready line, the text that says it gave up, and whether its
/// stdout is read (else it goes to /dev/null when it is not the ready
/// stream).
struct Ready {
    stream: Stream,
    line: &'static str,
    failed: Option<&'static str>,
    stdout: bool,
}

impl Ready {
    fn stderr(line: &'static str) -> Self {
        Self {
            stream: Stream::Stderr,
            line,
            failed: None,
            stdout: false,
        }
    }

    fn stdout(line: &'static str) -> Self {
        Self {
            stream: Stream::Stdout,
            line,
            failed: None,
            stdout: true,
        }
    }

    fn failing(self, failed: &'static str) -> Self {
        Self {
            failed: Some(failed),
            ..self
        }
    }

    fn with_stdout(self) -> Self {
        Self {
            stdout: true,
            ..self
        }
    }
}

/// A started tool, killed and reaped on drop. What it writes on the ready
/// stream after the ready line is read on (stderr lines kept for `stop`,
/// stdout thrown away), so that it never blocks on a full pipe.
struct Proc {
    child: Process,
    rest: Option<JoinHandle<Vec<String>>>,
    /// The last line read while waiting for the ready line.
    last: String,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> anyhow::Result<Self> {
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
    fn start(cmd: &mut Command, ready: Ready) -> anyhow::Result<(Self, Option<Duration>)> {
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
    fn ready(cmd: &mut Command, ready: Ready) -> anyhow::Result<Self> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        match Self::start(cmd, ready)? {
            (proc, Some(_)) => Ok(proc),
            (proc, None) => bail!("{program} did not start: {}", proc.last),
        }
    }

    fn id(&self) -> u32 {
        self.child.id()
    }

    fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Sends `signal`, waits for the exit (SIGKILL after a minute) and
    /// returns the stderr lines written after the ready line.
    fn stop(mut self, signal: libc::c_int) -> anyhow::Result<Vec<String>> {
        // SAFETY: the child is ours and not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let start = Instant::now();
        while self.child.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                bail!("{} did not stop", self.child.id());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(self
            .rest
            .take()
            .and_then(|rest| rest.join().ok())
            .unwrap_or_default())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let s = Stat::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(s.show("ms", 1), "2.5 ms (1.0–10.0)");
    }
}
