//! Throughput, loss and latency: writer processes against a running
//! watcher.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    child::open_new,
    process::{Proc, Ready},
};

/// How watcher consumes the events.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Mode {
    /// `trace --format json` to /dev/null.
    Trace,
    /// `run` with an action that records what it was told.
    Run,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Self::Trace => "`trace --format json` > /dev/null",
            Self::Run => "`run --settle 300ms`",
        }
    }
}

/// One burst: `writers` processes each creating `files` files (a create
/// and a write event each).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Case {
    pub mode: Mode,
    pub ring: &'static str,
    pub writers: usize,
}

/// What one burst gave.
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    /// Events the writers caused.
    pub made: u64,
    /// Events watcher delivered (printed, or handed to the action).
    pub delivered: u64,
    /// Kernel records counted as lost.
    pub lost: u64,
    /// From the first writer's start to the last one's end.
    pub seconds: f64,
    /// watcher's CPU time over `seconds`, in CPUs (1.0 = one CPU busy).
    pub cpu: f64,
}

impl Burst {
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.seconds
    }
}

/// The default ring buffer size, and the larger one measured beside it.
pub const RINGS: [&str; 2] = ["1M", "16M"];

/// `writers` directories of their own under `work/load`, made anew.
fn writer_dirs(work: &Path, writers: usize) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let tree = work.join("load");
    let _ = fs::remove_dir_all(&tree);
    let dirs: Vec<PathBuf> = (0..writers).map(|w| tree.join(format!("w{w}"))).collect();
    for dir in &dirs {
        fs::create_dir_all(dir)?;
    }
    Ok((tree, dirs))
}

/// One writer process in each of `dirs`, each creating `files` files; the
/// seconds from the first one's start to the last one's end.
fn write_in(dirs: &[PathBuf], files: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let writers: Vec<Child> = dirs
        .iter()
        .map(|dir| {
            Command::new(std::env::current_exe()?)
                .args(["child", "write"])
                .arg(dir)
                .arg(files.to_string())
                .spawn()
                .context("starting a writer")
        })
        .collect::<anyhow::Result<_>>()?;
    for mut w in writers {
        ensure!(w.wait()?.success(), "a writer failed");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The same writers with no tool running: the events they make per
/// second, the most any tool could deliver from them.
pub fn alone(work: &Path, writers: usize, files: u64) -> anyhow::Result<f64> {
    let (tree, dirs) = writer_dirs(work, writers)?;
    let seconds = write_in(&dirs, files)?;
    fs::remove_dir_all(&tree)?;
    Ok((2 * files * writers as u64) as f64 / seconds)
}

pub fn burst(watcher: &Path, work: &Path, case: Case, files: u64) -> anyhow::Result<Burst> {
    let (tree, dirs) = writer_dirs(work, case.writers)?;
    let log = work.join("load-runs.log");
    let _ = fs::remove_file(&log);
    let mut cmd = Command::new(watcher);
    match case.mode {
        Mode::Trace => {
            cmd.args(["trace", "--format", "json", "--stats"]);
        }
        Mode::Run => {
            cmd.args([
                "run",
                "--settle",
                "300ms",
                "--interval",
                "1ms",
                "--stdin-format",
                "none",
                "--shell",
            ]);
        }
    }
    cmd.args(["--ring-buffer-size", case.ring]).arg(&tree);
    if case.mode == Mode::Run {
        cmd.arg("--").arg(format!(
            "echo \"$WATCHER_EVENTS $WATCHER_LOST\" >> '{}'",
            log.display()
        ));
    }
    let proc = Proc::ready(&mut cmd, Ready::stderr("watching"))?;
    let cpu_before = cpu_seconds(proc.id())?;
    let seconds = write_in(&dirs, files)?;
    let made = 2 * files * case.writers as u64;
    let (delivered, lost, cpu_after) = match case.mode {
        Mode::Trace => {
            // Let the loss counters be read (every 200 ms) before stopping.
            thread::sleep(Duration::from_millis(500));
            let cpu = cpu_seconds(proc.id())?;
            let lines = proc.stop(libc::SIGINT)?;
            let (delivered, lost) = trace_stats(&lines)?;
            (delivered, lost, cpu)
        }
        Mode::Run => {
            let (delivered, lost) = run_totals(&log, made)?;
            let cpu = cpu_seconds(proc.id())?;
            drop(proc);
            (delivered, lost, cpu)
        }
    };
    fs::remove_dir_all(&tree)?;
    Ok(Burst {
        made,
        delivered,
        lost,
        seconds,
        cpu: (cpu_after - cpu_before) / seconds,
    })
}

/// Events and losses from `--stats`'s line: `watcher: stats: N events
/// (...), L lost, ...`.
fn trace_stats(lines: &[String]) -> anyhow::Result<(u64, u64)> {
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("watcher: stats: "))
        .context("watcher printed no stats")?;
    let number_before = |word: &str| -> Option<u64> {
        let end = line.find(word)?;
        line[..end]
            .trim_end()
            .rsplit([' ', '('])
            .next()?
            .parse()
            .ok()
    };
    Ok((
        number_before(" events").context("stats: events")?,
        number_before(" lost").context("stats: lost")?,
    ))
}

/// The sums of the action's records (`EVENTS LOST` per run), once the
/// action has seen every event made or no new run came for two seconds.
fn run_totals(log: &Path, made: u64) -> anyhow::Result<(u64, u64)> {
    let mut last = (0, 0);
    let mut since = Instant::now();
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        let mut sums = (0, 0);
        for line in text.lines() {
            let mut it = line.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(e)), Some(Ok(l))) => {
                    sums.0 += e;
                    sums.1 += l;
                }
                _ => bail!("the action recorded {line:?}"),
            }
        }
        if sums != last {
            last = sums;
            since = Instant::now();
        }
        if !text.is_empty() && (sums.0 >= made || since.elapsed() > Duration::from_secs(2)) {
            return Ok(sums);
        }
        ensure!(
            since.elapsed() < Duration::from_secs(30),
            "the action did not run after the burst"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// utime + stime of `pid`, seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks: u64 = fields
        .get(11..13)
        .context("/proc/PID/stat fields")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<_, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / hz)
}

fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Latencies, µs, of `files` creations one `gap` apart: from the moment
/// the writer's openat returned to the moment its event's line was read
/// from watcher's stdout, both on CLOCK_BOOTTIME (the clock the kernel
/// stamps events with).
pub fn latency(
    watcher: &Path,
    work: &Path,
    files: usize,
    gap: Duration,
) -> anyhow::Result<Vec<f64>> {
    let dir = work.join("latency");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let mut proc = Proc::ready(
        Command::new(watcher)
            .args(["trace", "--format", "json", "--events", "create"])
            .arg(&dir),
        Ready::stderr("watching").with_stdout(),
    )?;
    let stdout = proc.take_stdout().context("watcher's stdout")?;
    let reader = thread::spawn(move || {
        let mut seen = vec![0u64; files];
        let mut count = 0;
        for line in BufReader::new(stdout).lines() {
            let now = boottime_ns();
            let Ok(line) = line else { break };
            if let Some(i) = file_number(&line)
                && let Some(slot) = seen.get_mut(i)
                && *slot == 0
            {
                *slot = now;
                count += 1;
                if count == files {
                    break;
                }
            }
        }
        seen
    });
    let mut returned = Vec::with_capacity(files);
    for i in 0..files {
        let fd = open_new(&dir.join(format!("lat-{i}")))?;
        returned.push(boottime_ns());
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        thread::sleep(gap);
    }
    // Every event is in by now, or watcher's stop ends the reader.
    thread::sleep(Duration::from_millis(500));
    proc.stop(libc::SIGTERM)?;
    let seen = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    fs::remove_dir_all(&dir)?;
    let missing = seen.iter().filter(|&&t| t == 0).count();
    ensure!(
        missing == 0,
        "{missing} of {files} creations were not reported"
    );
    Ok(seen
        .iter()
        .zip(&returned)
        .map(|(&got, &ret)| (got as f64 - ret as f64) / 1e3)
        .collect())
}

/// N from a JSON line whose path ends in `/lat-N`.
fn file_number(line: &str) -> Option<usize> {
    let path = line.split("\"path\":\"").nth(1)?;
    let path = &path[..path.find('"')?];
    path.rsplit_once("/lat-")?.1.parse().ok()
}

/// The value at quantile `q` (0..=1) of sorted `v`, by nearest rank.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_watcher_prints() {
        let lines = vec![
            "watcher: watching /x".to_string(),
            "watcher: stats: 120 events (create 60, write 60), 7 lost, 0 left out by --include/--exclude".to_string(),
        ];
        assert_eq!(trace_stats(&lines).unwrap(), (120, 7));
        assert_eq!(
            file_number(r#"{"v":1,"event":"create","path":"/a/b/lat-42","name":"lat-42"}"#),
            Some(42)
        );
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            (quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)),
            (50.0, 99.0, 100.0)
        );
    }
}
