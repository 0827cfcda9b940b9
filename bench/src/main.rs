//! The benchmark behind `cargo xtask bench`: measurements side by side in
//! one run, written to BENCHMARKS.md. Every figure is the median, with
//! min–max, of repeated runs; nothing here is a pass/fail test (the targets
//! are reported, not enforced).
//!
//! xtask installs the tools measured beside watcher (`inotify-tools`,
//! `bpftrace`, `auditd`) and builds watcher, then runs this binary with the
//! paths it needs. The loops and writers run in processes of their own: this
//! same binary, started again with the hidden `child` subcommand.

mod progress;
mod stat;
mod fdinfo;
mod process;
mod child;
mod floor;
mod scale;
mod load;
mod overhead;
mod charts;
mod report;

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::{progress::step, scale::Samples};

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

/// A tmpfs directory for the throughput and latency writers.
const SHM: &str = "/dev/shm/watcher-bench";

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
    writers: &[1, 2],
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
    let profile = overhead.profile()?;

    // Writers work in memory, so that the disk does not set the pace.
    let shm = Path::new(SHM);
    fs::create_dir_all(shm)?;
    let mut alone = Vec::new();
    for &writers in plan.writers {
        let mut rates = Vec::new();
        for run in 1..=plan.load_runs {
            step(
                "throughput",
                &format!("{writers} writers alone, run {run}/{}", plan.load_runs),
            );
            rates.push(load::alone(shm, writers, plan.files)?);
        }
        alone.push((writers, rates));
    }
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

    let stem = report
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("BENCHMARKS");
    let dir = report.parent().unwrap_or(Path::new("."));
    let data = charts::Data {
        costs: &costs,
        bursts: &bursts,
        alone: &alone,
        scale: &rows,
    };
    let drawn = charts::draw(&data, dir, stem).unwrap_or_else(|e| {
        step("charts", &format!("not drawn: {e:#}"));
        Vec::new()
    });
    let markdown = report::Report {
        charts: &drawn,
        chart_stem: stem,
        quick,
        runs: plan.runs,
        load_runs: plan.load_runs,
        files: plan.files,
        latency_files: plan.latency_files,
        costs: &costs,
        profile: &profile,
        tracepoints: &tracepoints,
        outside: &overhead.outside(),
        audit_skipped: audit_skipped.as_deref(),
        bursts: &bursts,
        alone: &alone,
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
