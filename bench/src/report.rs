//! BENCHMARKS.md: the targets first, then each measurement's table.

use std::{fmt::Write as _, fs, process::Command};

use crate::{
    charts::Chart,
    load,
    overhead::{Case, Costs, Profile, Tool, added},
    scale::ScaleRow,
    stat::Stat,
};

pub struct Report<'a> {
    /// The charts drawn beside the report, named after `chart_stem`.
    pub charts: &'a [Chart],
    pub chart_stem: &'a str,
    pub quick: bool,
    pub runs: usize,
    pub load_runs: usize,
    pub files: u64,
    pub latency_files: usize,
    pub costs: &'a Costs,
    pub profile: &'a Profile,
    pub tracepoints: &'a [String],
    /// The file (b) and (c) open.
    pub outside: &'a std::path::Path,
    pub audit_skipped: Option<&'a str>,
    pub bursts: &'a [(load::Case, Vec<load::Burst>)],
    /// Events per second the writers make with no tool, by writer count.
    pub alone: &'a [(usize, Vec<f64>)],
    pub latencies: &'a [Vec<f64>],
    pub scale: &'a [ScaleRow],
    pub minutes: f64,
}

/// One target: what it asks, what was measured, and whether it holds.
struct Target {
    what: &'static str,
    measured: String,
    met: Option<bool>,
}

impl Report<'_> {
    /// The line that shows `chart`, when it was drawn.
    fn chart(&self, md: &mut String, chart: Chart) {
        if self.charts.contains(&chart) {
            let _ = writeln!(md, "![{}]({})\n", chart.alt(), chart.file(self.chart_stem));
        }
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `cargo xtask bench{}` in {:.0} minutes. Each figure is the median of {} \
             runs ({} for each throughput burst), with the range (min–max) in brackets; the \
             tools are measured side by side in the same run, and differences and ratios are \
             taken within each run.\n",
            if self.quick { " --quick" } else { "" },
            self.minutes.ceil(),
            self.runs,
            self.load_runs,
        );
        let _ = writeln!(md, "Machine: {}.\n", machine());
        self.targets(&mut md);
        self.overhead(&mut md);
        self.throughput(&mut md);
        self.latency(&mut md);
        self.scale(&mut md);
        md
    }

    fn targets(&self, md: &mut String) {
        let mut targets = Vec::new();
        let add = |tool, case| added(self.costs, tool, case).map(|s| s.median);
        let ns = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:+.0} ns"));

        let a_empty = add(Tool::Empty, Case::Getppid);
        let a_watcher = [Tool::Trace, Tool::Run]
            .into_iter()
            .filter_map(|t| add(t, Case::Getppid))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        targets.push(Target {
            what: "(a) added cost within 10% of the empty program's",
            measured: format!(
                "watcher {} (the more of trace and run), empty program {}",
                ns(a_watcher),
                ns(a_empty)
            ),
            met: a_watcher.zip(a_empty).map(|(w, e)| w <= e + e.abs() * 0.1),
        });
        let b = add(Tool::Trace, Case::WriteOutside);
        let b_bpftrace = add(Tool::Bpftrace, Case::WriteOutside);
        targets.push(Target {
            what: "(b) added cost no more than bpftrace's",
            measured: format!("watcher {}, bpftrace {}", ns(b), ns(b_bpftrace)),
            met: b.zip(b_bpftrace).map(|(w, t)| w <= t),
        });
        let (k_watcher, k_bpftrace) = (
            self.profile.per_write(Tool::Trace),
            self.profile.per_write(Tool::Bpftrace),
        );
        targets.push(Target {
            what: "(b) time inside the programs per open for writing + close: at most 150 ns, \
                   and no more than bpftrace's",
            measured: format!(
                "watcher {}, bpftrace {}",
                k_watcher.map_or("–".into(), |v| format!("{v:.0} ns")),
                k_bpftrace.map_or("–".into(), |v| format!("{v:.0} ns"))
            ),
            met: k_watcher.zip(k_bpftrace).map(|(w, t)| w <= 150.0 && w <= t),
        });
        let b_audit = add(Tool::Audit, Case::WriteOutside);
        targets.push(Target {
            what: "(b) added cost at most half of kernel audit's",
            measured: match self.audit_skipped {
                Some(why) => format!("audit not measured: {why}"),
                None => format!("watcher {}, audit {}", ns(b), ns(b_audit)),
            },
            met: b.zip(b_audit).map(|(w, a)| w <= a / 2.0),
        });
        let d = add(Tool::Trace, Case::WriteInside);
        targets.push(Target {
            what: "(d) added cost at most 2× (b)'s",
            measured: format!("(d) {}, (b) {}", ns(d), ns(b)),
            met: d.zip(b).map(|(d, b)| d <= 2.0 * b),
        });
        let d_bpftrace = add(Tool::Bpftrace, Case::WriteInside);
        targets.push(Target {
            what: "(d) added cost no more than bpftrace's",
            measured: format!("watcher {}, bpftrace {}", ns(d), ns(d_bpftrace)),
            met: d.zip(d_bpftrace).map(|(w, t)| w <= t),
        });
        let e = add(Tool::Modify, Case::WriteData);
        let e_empty = add(Tool::Empty, Case::WriteData);
        targets.push(Target {
            what: "(e) `modify` on an unrelated write(): added cost within 2× the empty program's",
            measured: format!("watcher {}, empty program {}", ns(e), ns(e_empty)),
            met: e.zip(e_empty).map(|(w, e)| w <= 2.0 * e),
        });
        for mode in [load::Mode::Trace, load::Mode::Run] {
            // The best writer count at the default ring buffer whose every run lost nothing.
            let best = self
                .bursts
                .iter()
                .filter(|(c, runs)| {
                    c.mode == mode
                        && c.ring == load::RINGS[0]
                        && runs.iter().all(|r| r.lost == 0 && r.delivered >= r.made)
                })
                .map(|(c, runs)| {
                    let rates: Vec<f64> = runs.iter().map(load::Burst::rate).collect();
                    (c.writers, Stat::of(&rates).median)
                })
                .max_by(|x, y| x.1.total_cmp(&y.1));
            targets.push(Target {
                what: match mode {
                    load::Mode::Trace => {
                        "≥ 200k delivered events/s with zero loss, default settings (trace)"
                    }
                    load::Mode::Run => {
                        "≥ 200k delivered events/s with zero loss, default settings (run)"
                    }
                },
                measured: best.map_or("every writer count lost events".into(), |(w, r)| {
                    format!("{:.0}k/s with {w} writers", r / 1e3)
                }),
                met: Some(best.is_some_and(|(_, r)| r >= 200e3)),
            });
        }
        for (mode, writers, floor, what) in [
            (
                load::Mode::Trace,
                1,
                300e3,
                "trace: ≥ 300k delivered events/s with zero loss, 1 writer, default ring buffer",
            ),
            (
                load::Mode::Run,
                2,
                400e3,
                "run: ≥ 400k delivered events/s with zero loss, 2 writers, default ring buffer",
            ),
        ] {
            let burst = self
                .bursts
                .iter()
                .find(|(c, _)| c.mode == mode && c.ring == load::RINGS[0] && c.writers == writers);
            let alone = self
                .alone
                .iter()
                .find(|(w, _)| *w == writers)
                .map(|(_, rates)| Stat::of(rates).median);
            targets.push(Target {
                what,
                measured: burst.map_or("not measured".into(), |(_, runs)| {
                    let rates: Vec<f64> = runs.iter().map(load::Burst::rate).collect();
                    let lost: u64 = runs.iter().map(|r| r.lost).sum();
                    format!(
                        "{:.0}k/s, {lost} lost over {} runs; the writers alone make {}",
                        Stat::of(&rates).median / 1e3,
                        runs.len(),
                        alone.map_or("–".into(), |a| format!("{:.0}k/s", a / 1e3))
                    )
                }),
                met: burst.map(|(_, runs)| {
                    let rates: Vec<f64> = runs.iter().map(load::Burst::rate).collect();
                    runs.iter().all(|r| r.lost == 0 && r.delivered >= r.made)
                        && Stat::of(&rates).median >= floor
                }),
            });
        }
        let p99 = self.latency_stats().map(|[_, p99, _]| p99.median);
        targets.push(Target {
            what: "p99 latency under 1 ms",
            measured: p99.map_or("–".into(), |v| format!("{v:.0} µs")),
            met: p99.map(|v| v < 1000.0),
        });
        let worst = |f: &dyn Fn(&ScaleRow) -> Option<f64>| {
            self.scale
                .iter()
                .filter_map(f)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        };
        let start = worst(&|r| r.watcher.ready_ms().map(|s| s.median));
        targets.push(Target {
            what: "start-up under 100 ms whatever the tree size",
            measured: start.map_or("–".into(), |v| format!("{v:.0} ms at most")),
            met: start.map(|v| v < 100.0),
        });
        let stop = worst(&|r| r.watcher.stop_ms().map(|s| s.median));
        targets.push(Target {
            what: "ready in at most 50 ms and stopped (SIGINT to exit) in at most 300 ms, \
                   whatever the tree size",
            measured: format!(
                "start-up {}, stop {}",
                start.map_or("–".into(), |v| format!("{v:.0} ms at most")),
                stop.map_or("–".into(), |v| format!("{v:.0} ms at most"))
            ),
            met: start.zip(stop).map(|(a, o)| a <= 50.0 && o <= 300.0),
        });
        let rss = worst(&|r| Some(r.watcher.mb(|s| s.rss).median));
        targets.push(Target {
            what: "RSS under 20 MB whatever the tree size",
            measured: rss.map_or("–".into(), |v| format!("{v:.1} MB at most")),
            met: rss.map(|v| v < 20.0),
        });

        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(
            md,
            "Medians from the tables below. \"Added cost\" is the time per operation minus the \
             time with nothing attached, in the same run. For (d) the target compares watcher's \
             added cost inside the watched tree with its added cost outside it.\n"
        );
        let _ = writeln!(md, "| target | measured | |\n|---|---|---|");
        for t in &targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                t.what,
                t.measured,
                match t.met {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "not measured",
                }
            );
        }
        md.push('\n');
    }

    fn overhead(&self, md: &mut String) {
        let _ = writeln!(md, "## Syscall overhead\n");
        let _ = writeln!(
            md,
            "Nanoseconds per operation, in a loop in a fresh process (after a tenth as warm-up): \
             (a) `getppid`, which no tool watches; (b) open for writing (`O_WRONLY|O_CREAT`) and \
             close of a file outside the watched directory; (c) read-only open and close of the \
             same file; (d) open for writing and close of a file inside the watched directory, \
             which each tool reports; (e) `write` of a byte to a file outside the tree, opened \
             once, which only `modify` traces. The empty program (`r0 = 0; exit`) is attached \
             to the tracepoints watcher attaches with every kind ({} of them: {}), which is the \
             cost of this design before it does any work. The bpftrace script does watcher's \
             basic job the simple way: openat only, write flags at entry, the name read at exit \
             and compared with the directory's path (no relative names, no other syscalls). \
             Kernel audit runs with auditd writing its log.\n",
            self.tracepoints.len(),
            self.tracepoints.join(", ")
        );
        let tools: Vec<Tool> = Tool::ALL
            .into_iter()
            .filter(|t| self.costs.contains_key(&(*t, Case::Getppid)))
            .collect();
        let header = Case::ALL.map(Case::label).join(" | ");
        let rule = "|---".repeat(Case::ALL.len() + 1);
        let _ = writeln!(md, "| attached | {header} |\n{rule}|");
        for &tool in &tools {
            let cells: Vec<String> = Case::ALL
                .iter()
                .map(|&case| {
                    self.costs
                        .get(&(tool, case))
                        .map_or("–".into(), |v| Stat::of(v).show("ns", 0))
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", tool.label(), cells.join(" | "));
        }
        let _ = writeln!(md, "\nAdded cost per operation:\n");
        let _ = writeln!(md, "| attached | {header} |\n{rule}|");
        for &tool in tools.iter().filter(|&&t| t != Tool::Nothing) {
            let cells: Vec<String> = Case::ALL
                .iter()
                .map(|&case| {
                    added(self.costs, tool, case).map_or("–".into(), |s| {
                        format!("{:+.0} ns ({:+.0}–{:+.0})", s.median, s.min, s.max)
                    })
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", tool.label(), cells.join(" | "));
        }
        if let Some(why) = self.audit_skipped {
            let _ = writeln!(md, "\nKernel audit was not measured: {why}.");
        }
        md.push('\n');
        self.chart(md, Chart::Overhead);
        self.programs(md);
    }

    /// Where watcher's time goes, from the kernel's own timing of each
    /// program, and what limits it.
    fn programs(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "### Where watcher's time goes
"
        );
        let _ = writeln!(
            md,
            "Mean time inside watcher's programs per call while (b) and (d) run with the \
             default kinds and (e) with every kind, timed by the kernel \
             (`kernel.bpf_stats_enabled`, on for this step only), and the instructions the \
             verifier processed for each program at load.\n"
        );
        let _ = writeln!(
            md,
            "| program | {} | {} | {} | verified instructions |\n|---|---|---|---|---|",
            Case::WriteOutside.label(),
            Case::WriteInside.label(),
            Case::WriteData.label()
        );
        let mut names: Vec<&str> = self
            .profile
            .programs
            .iter()
            .map(|p| p.program.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let cost = |case| {
                self.profile
                    .programs
                    .iter()
                    .find(|p| p.program == name && p.case == case)
            };
            let ns = |case| cost(case).map_or("–".into(), |p| format!("{:.0} ns", p.ns));
            let _ = writeln!(
                md,
                "| `{name}` | {} | {} | {} | {} |",
                ns(Case::WriteOutside),
                ns(Case::WriteInside),
                ns(Case::WriteData),
                cost(Case::WriteOutside)
                    .or(cost(Case::WriteInside))
                    .or(cost(Case::WriteData))
                    .map_or("–".into(), |p| thousands(p.insns as usize))
            );
        }
        let _ = writeln!(
            md,
            "\nA hit is handed over to watcher's event program by a tail call (the event path \
             is checked by the verifier once, there, rather than in every program that sends \
             events): its time is counted in its caller's above; it verified {} instructions.",
            thousands(self.profile.emit_insns as usize)
        );
        let per_write = |tool| {
            self.profile
                .per_write(tool)
                .map_or("–".into(), |ns| format!("{ns:.0} ns"))
        };
        let _ = writeln!(
            md,
            "\nAll of a tool's programs together, per open for writing + close outside the \
             tree (b) (their time over the loop's operations, warm-up included): watcher {}, \
             the bpftrace script {}.",
            per_write(Tool::Trace),
            per_write(Tool::Bpftrace)
        );
        let _ = writeln!(
            md,
            "\nWhat limits (b): at entry only the name is known, and a relative name, a \
             directory fd, `..` or a symlink may lead into the tree, so `sys_exit` reads the \
             open's arguments from the registers the kernel saved at entry (opens have no \
             enter program), finds the opened file (five loads from the task) and walks from \
             it up to the root, testing each ancestor's identity against a bitmap of the \
             watched directories; a file whose every ancestor's bit is clear ends there, \
             before the process is looked up (only where a bit is set does the full walk, \
             with its hash lookups, decide). Kernel memory is read with direct loads: the \
             `bpf_rdonly_cast` kfunc makes an address a pointer the verifier lets the \
             program load from, where `bpf_probe_read_kernel` costs a helper call per read; \
             the walk costs a few loads per level (here {} levels). The bpftrace script only \
             compares the name's first bytes with the directory's path: cheaper per call, \
             blind to relative names, `..`, symlinks and directory fds, and to every syscall \
             but openat. Kernel audit matches a `-w` watch on the inode it resolves anyway, \
             but once enabled it costs every syscall of every process ((a) above).\n",
            self.depth()
        );
        let _ = writeln!(
            md,
            "What limits (d): a hit is turned into an event in the kernel: a second walk up \
             the tree that writes the file's canonical path, the process's executable path \
             and command line (with a process image's first event only: the loop here is \
             one process, whose later events leave them out and get them back in user \
             space), and the ring-buffer record, which user space then decodes and \
             writes out (on the other CPU here). That is `sys_exit`'s extra time inside the \
             tree in the table above; it is what watcher reports that the others do not \
             (exact path, process, executable, command line).\n"
        );
        let _ = writeln!(
            md,
            "What limits (e): a write's entry program finds the descriptor's `struct file` \
             (four loads: the task's file table, its size, its array, the slot), reads its \
             dentry and looks the file up among those decided before; the first write of a file walks up from it as (b) does. A write \
             outside every tree ends there; its exit program only finds no stash.\n"
        );
    }

    /// Components in the overhead files' path below `/`.
    fn depth(&self) -> usize {
        self.outside.components().count() - 1
    }

    fn throughput(&self, md: &mut String) {
        let _ = writeln!(md, "## Throughput and loss\n");
        let _ = writeln!(
            md,
            "Writer processes, each creating {} new files in a directory of its own in the \
             watched tree as fast as it can (open with `O_CREAT`, write a byte, close: a create \
             and a write event each). Delivered is what watcher printed (`--stats`) or handed to \
             the action (`WATCHER_EVENTS`, summed over runs), per second of the writers' burst; \
             lost is the kernel's count of records that did not fit in the ring buffer. watcher \
             CPU is its user + system time over the burst (1.0 = one CPU). The first rows are \
             the same writers with no tool running: the events they make per second, the most \
             any tool could deliver from them.\n",
            thousands(self.files as usize)
        );
        let _ = writeln!(
            md,
            "What limits it: the writers themselves first (the first rows): each file costs a \
             writer its kernel work, and watcher adds its event to it (`sys_exit` inside the \
             tree above), not a wakeup of watcher per event: while watcher reads (it looks \
             again 500 µs after a look that read records, and tells the programs when), a \
             record goes without one (a wakeup is an interrupt on the writing CPU, in a VM a \
             trap to the host: it once cost a writer here more than the event itself). \
             Then watcher's own CPU (last column, in CPUs): `run` spends about half a \
             microsecond per event (decoding, placing and batching it; the events of a process \
             image share one copy of its executable and command line), `trace` one to two, as \
             it also writes each event out as JSON. With more writers than CPUs, watcher gets \
             a share of a CPU while the writers make events faster than that; a late turn on \
             the CPU is what a burst's losses come from. The ring buffer holds the difference \
             until it is \
             full: the default 1 MiB holds a few thousand events, 16 MiB this whole burst. \
             Nothing is lost \
             silently: `trace` prints an `overflow` line with the count, and `run` treats a \
             loss as a change, so its action still runs.\n"
        );
        let _ = writeln!(
            md,
            "| watcher | ring buffer | writers | events made | delivered per second | lost | watcher CPU |\n|---|---|---:|---:|---|---|---|"
        );
        for (writers, rates) in self.alone {
            let _ = writeln!(
                md,
                "| nothing: the writers alone | – | {writers} | {} | {} | – | – |",
                thousands(2 * self.files as usize * writers),
                Stat::of(&rates.iter().map(|r| r / 1e3).collect::<Vec<_>>()).show("k/s", 0),
            );
        }
        for (case, runs) in self.bursts {
            let stat =
                |f: &dyn Fn(&load::Burst) -> f64| Stat::of(&runs.iter().map(f).collect::<Vec<_>>());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                case.mode.label(),
                case.ring,
                case.writers,
                thousands(runs.first().map_or(0, |r| r.made) as usize),
                stat(&|r| r.rate() / 1e3).show("k/s", 0),
                stat(&|r| r.lost as f64).show("", 0).replace(" (", "("),
                stat(&|r| r.cpu).show("", 2).replace(" (", "("),
            );
        }
        md.push('\n');
        self.chart(md, Chart::Throughput);
    }

    /// p50, p99 and max, each over the runs.
    fn latency_stats(&self) -> Option<[Stat; 3]> {
        if self.latencies.is_empty() {
            return None;
        }
        let per_run: Vec<[f64; 3]> = self
            .latencies
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.sort_by(f64::total_cmp);
                [0.5, 0.99, 1.0].map(|q| load::quantile(&v, q))
            })
            .collect();
        Some([0, 1, 2].map(|i| Stat::of(&per_run.iter().map(|r| r[i]).collect::<Vec<_>>())))
    }

    fn latency(&self, md: &mut String) {
        let _ = writeln!(md, "## Latency\n");
        let _ = writeln!(
            md,
            "{} files created a millisecond apart under `watcher trace --format json --events \
             create`; each latency runs from the moment the writer's openat returned to the \
             moment the bench read the event's line from watcher's stdout, both on \
             CLOCK_BOOTTIME (the clock the kernel stamps events with). It includes the pipe and \
             the JSON rendering.\n",
            thousands(self.latency_files)
        );
        if let Some([p50, p99, max]) = self.latency_stats() {
            let _ = writeln!(md, "| p50 | p99 | max |\n|---|---|---|");
            let _ = writeln!(
                md,
                "| {} | {} | {} |\n",
                p50.show("µs", 0),
                p99.show("µs", 0),
                max.show("µs", 0)
            );
        }
    }

    fn scale(&self, md: &mut String) {
        let _ = writeln!(md, "## Scale: start-up, stop and memory by tree size\n");
        let _ = writeln!(
            md,
            "Start-up is the time from spawning the tool to its ready line (`watching` for \
             `watcher trace DIR`, `Watches established.` for `inotifywait -r -m DIR`); stop is \
             the time from SIGINT, once ready, to watcher's exit (its programs detached). Memory \
             is the resident set once ready, and for watcher also the kernel memory of its BPF \
             maps (`memlock` in fdinfo). Trees have a thousand directories to a parent.\n"
        );
        let _ = writeln!(
            md,
            "| directories | watcher start-up | watcher stop | watcher RSS | watcher BPF maps | inotifywait start-up | inotifywait RSS | inotifywait / watcher start-up |"
        );
        let _ = writeln!(md, "|---:|---|---|---|---|---|---|---:|");
        for row in self.scale {
            let w_ready = row.watcher.ready_ms();
            let i_ready = row.inotify.ready_ms();
            let (i_start, i_rss, ratio) = match (i_ready, w_ready) {
                (Some(i), Some(w)) => (
                    i.show("ms", 0),
                    row.inotify.mb(|s| s.rss).show("MB", 1),
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
                "| {} | {} | {} | {} | {} | {i_start} | {i_rss} | {ratio} |",
                thousands(row.size),
                w_ready.map_or("–".into(), |s| s.show("ms", 0)),
                row.watcher
                    .stop_ms()
                    .map_or("–".into(), |s| s.show("ms", 0)),
                row.watcher.mb(|s| s.rss).show("MB", 1),
                row.watcher.mb(|s| s.maps).show("MB", 1),
            );
        }
        let _ = writeln!(
            md,
            "\nwatcher keeps nothing per directory (the kernel matches an opened file's ancestors \
             against the watched directories' identities), so its figures do not depend on the \
             tree; inotifywait walks the tree and places one watch per directory, each pinning \
             an inode in kernel memory, up to `fs.inotify.max_user_watches`."
        );
        let _ = writeln!(
            md,
            "\nWhat limits start-up, in order: reading the kernel's BTF for the offsets the \
             programs use and the tracepoints' formats; making the maps (the LRU hashes are \
             allocated whole); the kernel's verifier, which checks each program as it is \
             loaded (the programs are loaded at once, a thread each; the event path is one \
             program the others reach by a tail call, checked once, and the longest: the \
             verified instructions are in \"Where watcher's time goes\" above); attaching a \
             tracepoint per syscall the kinds need. \
             What limits stop: detaching each syscall tracepoint waits for the kernel (an RCU \
             grace period per tracepoint, which the kernel serialises), and watcher attaches \
             one per syscall the kinds need (and an enter one for closes and writes); two raw \
             tracepoints on all syscalls would detach in a millisecond, but their programs \
             would cost every syscall of the machine 35-45 ns, where these cost it about 10."
        );
        md.push('\n');
        self.chart(md, Chart::Scale);
    }
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
    let first_line = |cmd: &mut Command, fallback: &str| {
        // Some tools print their version on stderr or exit non-zero.
        cmd.output()
            .ok()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text
            })
            .and_then(|t| t.lines().next().map(str::trim).map(str::to_string))
            .unwrap_or_else(|| fallback.to_string())
    };
    format!(
        "Linux {}, {cpu}, {cpus} CPUs, {mem_gib:.0} GiB; {}; {}; {}; fs.inotify.max_user_watches = {}",
        kernel.trim(),
        first_line(Command::new("inotifywait").arg("--help"), "inotifywait"),
        first_line(Command::new("bpftrace").arg("--version"), "bpftrace"),
        first_line(Command::new("auditctl").arg("-v"), "auditctl"),
        max_user_watches().map_or("?".into(), |n| n.to_string())
    )
}

fn max_user_watches() -> Option<u64> {
    fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
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
    fn numbers() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }
}
