//! `cargo xtask bench`: measurements side by side in one run, written to
//! BENCHMARKS.md. Every figure is the median, with min–max, of repeated
//! runs; nothing here is a pass/fail test.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{apt_packages, build, output, step};

/// Debian packages with the tools watcher is compared against.
const BENCH_PACKAGES: &[&str] = &["inotify-tools"];
/// How long a tool may take to start before it counts as failed.
const START_LIMIT: Duration = Duration::from_secs(600);

pub fn bench(root: &Path, quick: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads eBPF programs: run it as root");
    }
    apt_packages("benchmark tools", BENCH_PACKAGES)?;
    build()?;
    let watcher = root.join("target/release/watcher");
    let work = root.join("target/bench");
    let (sizes, runs): (&[usize], usize) = if quick {
        (&[10_000, 100_000], 3)
    } else {
        (&[10_000, 100_000, 1_000_000], 5)
    };

    let mut rows = Vec::new();
    for &size in sizes {
        let tree = work.join(format!("tree-{size}"));
        step(
            "bench scale",
            &format!("making a tree of {size} directories"),
        );
        make_tree(&tree, size)?;
        let mut w = Samples::default();
        let mut i = Samples::default();
        for run in 1..=runs {
            step(
                "bench scale",
                &format!("{size} directories, run {run}/{runs}"),
            );
            w.push(start_watcher(&watcher, &tree)?);
            i.push(start_inotifywait(&tree)?);
        }
        rows.push(ScaleRow { size, w, i });
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }

    let report = report(&rows, runs, quick);
    fs::write(root.join("BENCHMARKS.md"), report).context("writing BENCHMARKS.md")?;
    step("bench", "wrote BENCHMARKS.md");
    Ok(())
}

/// `size` directories under `root` (itself included), a thousand to a
/// parent, so that no directory is unusually large.
fn make_tree(root: &Path, size: usize) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root)?;
    let mut made = 1;
    let mut parent = 0;
    while made < size {
        let dir = root.join(format!("p{parent}"));
        fs::create_dir(&dir)?;
        made += 1;
        for child in 0..999 {
            if made >= size {
                break;
            }
            fs::create_dir(dir.join(format!("c{child}")))?;
            made += 1;
        }
        parent += 1;
    }
    Ok(())
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
    fn push(&mut self, s: Start) {
        self.0.push(s);
    }

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
#[derive(Clone, Copy)]
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

struct ScaleRow {
    size: usize,
    w: Samples,
    i: Samples,
}

/// A started tool, killed and reaped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a stderr line starting with `ready` and returns the time
/// since `start`; `None` when the tool ends, or writes `failed`, first.
fn wait_ready(
    child: &mut Child,
    start: Instant,
    ready: &str,
    failed: Option<&str>,
) -> anyhow::Result<Option<Duration>> {
    let err = child.stderr.take().context("stderr")?;
    for line in BufReader::new(err).lines() {
        let line = line?;
        if line.starts_with(ready) {
            return Ok(Some(start.elapsed()));
        }
        if failed.is_some_and(|f| line.contains(f)) || start.elapsed() > START_LIMIT {
            return Ok(None);
        }
    }
    Ok(None)
}

fn start_watcher(bin: &Path, tree: &Path) -> anyhow::Result<Start> {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .arg("trace")
        .arg(tree)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting watcher")?;
    let ready = wait_ready(&mut child, start, "watching", None)?;
    let running = Running(child);
    let ready = ready.context("watcher did not start")?;
    let pid = running.0.id();
    Ok(Start {
        ready: Some(ready),
        rss: rss(pid)?,
        maps: bpf_map_bytes(pid)?,
    })
}

fn start_inotifywait(tree: &Path) -> anyhow::Result<Start> {
    let start = Instant::now();
    let mut child = Command::new("inotifywait")
        .args([
            "-r",
            "-m",
            "-e",
            "modify,close_write,create,moved_to,delete",
        ])
        .arg(tree)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting inotifywait")?;
    let ready = wait_ready(
        &mut child,
        start,
        "Watches established",
        Some("upper limit"),
    )?;
    let running = Running(child);
    let rss = rss(running.0.id()).unwrap_or(0);
    Ok(Start {
        ready,
        rss,
        maps: 0,
    })
}

/// VmRSS of `pid`, bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS")
}

/// Kernel memory of the BPF maps `pid` holds open (`memlock` in their
/// fdinfo).
fn bpf_map_bytes(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        if !info.contains("map_type:") {
            continue;
        }
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

fn machine() -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let inotify = inotify_version();
    format!(
        "Linux {}, {cpu}, {cpus} CPUs, {mem_gib:.0} GiB; {inotify}; fs.inotify.max_user_watches = {}",
        kernel.trim(),
        max_user_watches().map_or("?".into(), |n| n.to_string())
    )
}

fn inotify_version() -> String {
    output(Command::new("inotifywait").arg("--help"))
        .or_else(|| {
            // `--help` exits non-zero in some versions; the first line is
            // on stdout either way.
            let out = Command::new("inotifywait").arg("--help").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .and_then(|help| help.lines().next().map(str::to_string))
        .unwrap_or_else(|| "inotifywait".into())
}

fn max_user_watches() -> Option<u64> {
    fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn report(rows: &[ScaleRow], runs: usize, quick: bool) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench{}`. Each figure is the median of {runs} runs, with the \
         range (min–max) in brackets; the tools are measured side by side in the same run, on \
         the same trees, with warm caches.\n",
        if quick { " --quick" } else { "" }
    );
    let _ = writeln!(md, "Machine: {}.\n", machine());
    let _ = writeln!(md, "## Scale: start-up and memory by tree size\n");
    let _ = writeln!(
        md,
        "Start-up is the time from spawning the tool to its ready line (`watching` for \
         `watcher trace DIR`, `Watches established.` for `inotifywait -r -m DIR`). Memory is \
         the resident set once ready, and for watcher also the kernel memory of its BPF maps \
         (`memlock` in fdinfo). Trees have a thousand directories to a parent.\n"
    );
    let _ = writeln!(
        md,
        "| directories | watcher start-up | watcher RSS | watcher BPF maps | inotifywait start-up | inotifywait RSS | inotifywait / watcher start-up |"
    );
    let _ = writeln!(md, "|---:|---|---|---|---|---|---:|");
    for row in rows {
        let w_ready = row.w.ready_ms();
        let i_ready = row.i.ready_ms();
        let (i_start, i_rss, ratio) = match (i_ready, w_ready) {
            (Some(i), Some(w)) => (
                i.show("ms", 0),
                row.i.mb(|s| s.rss).show("MB", 1),
                format!("{:.1}×", i.median / w.median),
            ),
            _ => (
                format!(
                    "fails: watch limit ({} watches)",
                    max_user_watches().map_or("?".into(), |n| n.to_string())
                ),
                "–".into(),
                "–".into(),
            ),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {i_start} | {i_rss} | {ratio} |",
            thousands(row.size),
            w_ready.map_or("–".into(), |s| s.show("ms", 0)),
            row.w.mb(|s| s.rss).show("MB", 1),
            row.w.mb(|s| s.maps).show("MB", 1),
        );
    }
    let _ = writeln!(
        md,
        "\nwatcher keeps nothing per directory (the kernel matches an opened file's ancestors \
         against the watched directories' identities), so its figures do not depend on the \
         tree; inotifywait walks the tree and places one watch per directory, each pinning an \
         inode in kernel memory, up to `fs.inotify.max_user_watches`."
    );
    md
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_numbers() {
        let s = Stat::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn trees_have_the_size_asked_for() {
        let dir = std::env::temp_dir().join(format!("xtask-tree-{}", std::process::id()));
        make_tree(&dir, 2_345).unwrap();
        let count = walk(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(count, 2_345);
    }

    fn walk(dir: &Path) -> usize {
        1 + fs::read_dir(dir)
            .unwrap()
            .map(|e| walk(&e.unwrap().path()))
            .sum::<usize>()
    }
}
