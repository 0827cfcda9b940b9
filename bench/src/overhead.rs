//! Syscall overhead: the cost of four operations with nothing attached,
//! with watcher, with an empty eBPF program on the same tracepoints, and
//! with the tools that do the same job another way.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    child::Op,
    fdinfo::FdInfo,
    floor::{Floor, attached_tracepoints},
    process::{Proc, Ready},
    progress::step,
    scale::inotifywait,
    stat::Stat,
};

/// What is attached while the operations run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Tool {
    Nothing,
    Empty,
    Trace,
    Modify,
    Run,
    Bpftrace,
    Audit,
    Inotify,
}

impl Tool {
    pub const ALL: [Self; 8] = [
        Self::Nothing,
        Self::Empty,
        Self::Trace,
        Self::Modify,
        Self::Run,
        Self::Bpftrace,
        Self::Audit,
        Self::Inotify,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Nothing => "nothing attached",
            Self::Empty => "empty eBPF program, same tracepoints",
            Self::Trace => "`watcher trace --format json` > /dev/null",
            Self::Modify => "`watcher trace --format json --events all` (with modify) > /dev/null",
            Self::Run => "`watcher run DIR -- true`",
            Self::Bpftrace => "bpftrace script (openat, write flags, prefix)",
            Self::Audit => "kernel audit, `auditctl -w DIR -p wa`",
            Self::Inotify => "`inotifywait -r -m DIR` > /dev/null",
        }
    }
}

/// The operations, each in a loop of its own.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Case {
    Getppid,
    WriteOutside,
    ReadOutside,
    WriteInside,
    WriteData,
}

impl Case {
    pub const ALL: [Self; 5] = [
        Self::Getppid,
        Self::WriteOutside,
        Self::ReadOutside,
        Self::WriteInside,
        Self::WriteData,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Getppid => "(a) getppid",
            Self::WriteOutside => "(b) open for write + close, outside",
            Self::ReadOutside => "(c) read-only open + close",
            Self::WriteInside => "(d) open for write + close, inside",
            Self::WriteData => "(e) write() of a byte, outside",
        }
    }

    fn op(self) -> Op {
        match self {
            Self::Getppid => Op::Getppid,
            Self::WriteOutside | Self::WriteInside => Op::OpenWrite,
            Self::ReadOutside => Op::OpenRead,
            Self::WriteData => Op::Write,
        }
    }
}

/// ns per operation, every run, by tool and case.
pub type Costs = BTreeMap<(Tool, Case), Vec<f64>>;

pub struct Bench<'a> {
    pub watcher: &'a Path,
    pub work: &'a Path,
    pub quick: bool,
}

/// The files and directories the loops use.
struct Layout {
    watched: PathBuf,
    inside: PathBuf,
    outside: PathBuf,
}

impl Bench<'_> {
    pub fn run(&self, runs: usize) -> anyhow::Result<(Costs, Vec<String>, Option<String>)> {
        let layout = self.layout()?;
        let tracepoints = self.watcher_tracepoints(&layout.watched)?;
        let audit = AuditBaseline::new()?;
        let mut costs = Costs::new();
        for run in 1..=runs {
            for tool in Tool::ALL {
                if tool == Tool::Audit && audit.skipped.is_some() {
                    continue;
                }
                step("overhead", &format!("run {run}/{runs}: {}", tool.label()));
                let armed = self.arm(tool, &layout, &tracepoints)?;
                for case in Case::ALL {
                    let ns = self.measure(case, &layout)?;
                    costs.entry((tool, case)).or_default().push(ns);
                }
                drop(armed);
            }
        }
        Ok((costs, tracepoints, audit.skipped.clone()))
    }

    /// The time inside watcher's programs per call, and their size, while
    /// (b) and (d) run with the default kinds, and (e) with every kind
    /// (kernel.bpf_stats_enabled: the kernel times each program run; on
    /// for this step only, as it costs a little).
    pub fn profile(&self) -> anyhow::Result<Profile> {
        let layout = self.layout()?;
        step(
            "profile",
            "watcher's and bpftrace's programs, timed by the kernel",
        );
        let _stats = BpfStats::on()?;
        let mut costs = Vec::new();
        let mut per_write = Vec::new();
        let mut emit_insns = 0;
        let default_kinds: &[&str] = &[];
        for (events, cases) in [
            (default_kinds, &[Case::WriteOutside, Case::WriteInside][..]),
            (&["--events", "all"], &[Case::WriteData]),
        ] {
            let proc = Proc::ready(
                Command::new(self.watcher)
                    .args(["trace", "--format", "json"])
                    .args(events)
                    .arg(&layout.watched),
                Ready::stderr("watching"),
            )?;
            for &case in cases {
                let before = program_stats(proc.id())?;
                let total = kernel_ns(proc.id())?;
                self.measure(case, &layout)?;
                if case == Case::WriteOutside {
                    let ns = kernel_ns(proc.id())? - total;
                    per_write.push((Tool::Trace, ns as f64 / self.operations(case) as f64));
                }
                let after = program_stats(proc.id())?;
                if let Some(emit) = after.get(UNATTACHED) {
                    emit_insns = emit.insns;
                }
                for (name, a) in &after {
                    let b = before.get(name).copied().unwrap_or_default();
                    let runs = a.runs - b.runs;
                    if runs > 0 && name.starts_with("sys_") {
                        costs.push(ProgramCost {
                            case,
                            program: name.clone(),
                            ns: (a.ns - b.ns) as f64 / runs as f64,
                            insns: a.insns,
                        });
                    }
                }
            }
        }
        let script = self.work.join("overhead.bt");
        fs::write(&script, bpftrace_script(&layout.watched))?;
        let bpftrace = Proc::ready(
            Command::new("bpftrace").arg(&script),
            Ready::stdout("ready"),
        )?;
        let total = kernel_ns(bpftrace.id())?;
        self.measure(Case::WriteOutside, &layout)?;
        let ns = kernel_ns(bpftrace.id())? - total;
        per_write.push((
            Tool::Bpftrace,
            ns as f64 / self.operations(Case::WriteOutside) as f64,
        ));
        Ok(Profile {
            programs: costs,
            per_write,
            emit_insns,
        })
    }

    /// The file (b) and (c) open, beside the watched directory.
    pub fn outside(&self) -> PathBuf {
        self.work.join("overhead/outside/file")
    }

    fn layout(&self) -> anyhow::Result<Layout> {
        let base = self.work.join("overhead");
        let _ = fs::remove_dir_all(&base);
        let layout = Layout {
            watched: base.join("watched"),
            inside: base.join("watched/file"),
            outside: self.outside(),
        };
        for file in [&layout.inside, &layout.outside] {
            fs::create_dir_all(file.parent().context("parent")?)?;
            fs::write(file, "")?;
        }
        Ok(layout)
    }

    /// The tracepoints watcher attaches with every kind (the default
    /// kinds' and the writes'), asked of the kernel while it runs.
    fn watcher_tracepoints(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let proc = Proc::ready(
            Command::new(self.watcher)
                .args(["trace", "--events", "all"])
                .arg(dir),
            Ready::stderr("watching"),
        )?;
        let names = attached_tracepoints(proc.id())?;
        ensure!(!names.is_empty(), "watcher has no tracepoint attached");
        Ok(names)
    }

    /// The operations a loop of `case` times.
    fn iterations(&self, case: Case) -> u64 {
        match (case, self.quick) {
            (Case::Getppid, true) => 300_000,
            (Case::Getppid, false) => 2_000_000,
            (_, true) => 30_000,
            (_, false) => 200_000,
        }
    }

    /// The operations a loop of `case` makes, with its warm-up (see
    /// `child ops`).
    fn operations(&self, case: Case) -> u64 {
        let timed = self.iterations(case);
        timed + timed / 10 + 1
    }

    fn measure(&self, case: Case, layout: &Layout) -> anyhow::Result<f64> {
        let iterations = self.iterations(case);
        let path = if case == Case::WriteInside {
            &layout.inside
        } else {
            &layout.outside
        };
        // The operation as the child's command line names it.
        let op = clap::ValueEnum::to_possible_value(&case.op()).context("an operation's name")?;
        let out = Command::new(std::env::current_exe()?)
            .args(["child", "ops", op.get_name(), &iterations.to_string()])
            .arg(path)
            .stderr(Stdio::inherit())
            .output()
            .context("running the syscall loop")?;
        ensure!(out.status.success(), "the syscall loop failed");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("the syscall loop's output")
    }

    fn arm(&self, tool: Tool, layout: &Layout, tracepoints: &[String]) -> anyhow::Result<Armed> {
        let dir = &layout.watched;
        Ok(match tool {
            Tool::Nothing => Armed::Nothing,
            Tool::Empty => Armed::Empty {
                _floor: Floor::attach(Path::new(TRACEFS), tracepoints)?,
            },
            Tool::Trace => Armed::Process {
                _proc: Proc::ready(
                    Command::new(self.watcher)
                        .args(["trace", "--format", "json"])
                        .arg(dir),
                    Ready::stderr("watching"),
                )?,
            },
            Tool::Modify => Armed::Process {
                _proc: Proc::ready(
                    Command::new(self.watcher)
                        .args(["trace", "--format", "json", "--events", "all"])
                        .arg(dir),
                    Ready::stderr("watching"),
                )?,
            },
            Tool::Run => Armed::Process {
                _proc: Proc::ready(
                    Command::new(self.watcher)
                        .arg("run")
                        .arg(dir)
                        .args(["--", "true"]),
                    Ready::stderr("watching"),
                )?,
            },
            Tool::Bpftrace => {
                let script = self.work.join("overhead.bt");
                fs::write(&script, bpftrace_script(dir))?;
                Armed::Process {
                    _proc: Proc::ready(
                        Command::new("bpftrace").arg(&script),
                        Ready::stdout("ready"),
                    )?,
                }
            }
            Tool::Audit => Armed::Audit {
                _audit: Audit::arm(dir)?,
            },
            Tool::Inotify => Armed::Process {
                _proc: Proc::ready(&mut inotifywait(dir), Ready::stderr("Watches established"))?,
            },
        })
    }
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// What is attached, held until it is dropped (which detaches it).
enum Armed {
    Nothing,
    Empty { _floor: Floor },
    Process { _proc: Proc },
    Audit { _audit: Audit },
}

/// bpftrace doing watcher's basic job: a write-flag filter on openat's
/// entry, the name read at exit and kept when it starts with the watched
/// directory's path. It prints `ready` once its probes are attached (BEGIN
/// fires after them).
fn bpftrace_script(dir: &Path) -> String {
    let prefix = format!("{}/", dir.display());
    // O_WRONLY | O_RDWR | O_CREAT | O_TRUNC
    format!(
        r#"BEGIN {{ printf("ready\n"); }}
tracepoint:syscalls:sys_enter_openat /args->flags & 0x243/ {{ @name[tid] = args->filename; }}
tracepoint:syscalls:sys_exit_openat /@name[tid]/ {{
  if (args->ret >= 0) {{
    $p = str(@name[tid]);
    if (strncmp($p, "{prefix}", {len}) == 0) {{ printf("%d %s %s\n", pid, comm, $p); }}
  }}
  delete(@name[tid]);
}}
"#,
        len = prefix.len()
    )
}

fn auditctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .context("running auditctl")?;
    ensure!(
        out.status.success(),
        "auditctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Kernel audit, once enabled, audits every process started afterwards
/// until the next boot, even with no rules. A `never,task` rule keeps new
/// processes out of it while audit is not the tool measured; all rules are
/// removed at the end. A machine that has audit rules of its own is left
/// alone (audit is then not measured).
struct AuditBaseline {
    skipped: Option<String>,
}

impl AuditBaseline {
    fn new() -> anyhow::Result<Self> {
        let rules = auditctl(&["-l"])?;
        if rules.trim() != "No rules" {
            return Ok(Self {
                skipped: Some("this machine has audit rules of its own".into()),
            });
        }
        auditctl(&["-a", "never,task"])?;
        Ok(Self { skipped: None })
    }
}

impl Drop for AuditBaseline {
    fn drop(&mut self) {
        if self.skipped.is_none() {
            let _ = auditctl(&["-D"]);
        }
    }
}

/// auditd running and a watch rule on the directory; undone on drop.
struct Audit {
    _daemon: Proc,
}

impl Audit {
    fn arm(dir: &Path) -> anyhow::Result<Self> {
        auditctl(&["-D"])?;
        let mut daemon = Proc::spawn(
            Command::new("auditd")
                .arg("-n")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let start = Instant::now();
        loop {
            let status = auditctl(&["-s"])?;
            if status
                .lines()
                .any(|l| l.starts_with("pid ") && l != "pid 0")
            {
                break;
            }
            if let Some(status) = daemon.try_wait()? {
                bail!("auditd exited: {status}");
            }
            ensure!(
                start.elapsed() < Duration::from_secs(10),
                "auditd did not register with the kernel"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        auditctl(&["-e", "1"])?;
        let dir = dir.to_str().context("the bench directory is not UTF-8")?;
        auditctl(&["-w", dir, "-p", "wa", "-k", "watcher-bench"])?;
        Ok(Self { _daemon: daemon })
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = auditctl(&["-D"]);
        let _ = auditctl(&["-a", "never,task"]);
        let _ = auditctl(&["-e", "0"]);
    }
}

/// Per-run differences from the run with nothing attached.
pub fn added(costs: &Costs, tool: Tool, case: Case) -> Option<Stat> {
    let base = costs.get(&(Tool::Nothing, case))?;
    let with = costs.get(&(tool, case))?;
    let diffs: Vec<f64> = with.iter().zip(base).map(|(w, b)| w - b).collect();
    Some(Stat::of(&diffs))
}

/// What `profile` measured.
pub struct Profile {
    /// Watcher's programs, each.
    pub programs: Vec<ProgramCost>,
    /// The time inside all the programs of a tool per open for writing +
    /// close outside the tree ((b)), for watcher (`Tool::Trace`) and the
    /// bpftrace script.
    pub per_write: Vec<(Tool, f64)>,
    /// The instructions the verifier processed for watcher's event
    /// program, which is reached by tail calls and attached to nothing.
    pub emit_insns: u64,
}

impl Profile {
    /// `per_write` of `tool`.
    pub fn per_write(&self, tool: Tool) -> Option<f64> {
        self.per_write
            .iter()
            .find(|(t, _)| *t == tool)
            .map(|(_, ns)| *ns)
    }
}

/// One of watcher's programs during one case.
pub struct ProgramCost {
    pub case: Case,
    /// `sys_enter` or `sys_exit`.
    pub program: String,
    /// Mean time per run.
    pub ns: f64,
    /// Instructions the verifier processed when it loaded the program.
    pub insns: u64,
}

#[derive(Clone, Copy, Default)]
struct ProgramStats {
    ns: u64,
    runs: u64,
    insns: u64,
}

/// Run time, run count and verified instructions of the programs `pid`
/// has attached, by program (`sys_enter`, `sys_exit`, or the tracepoint),
/// from the fdinfo of its links and programs; a program attached to
/// nothing (watcher's event program, reached by tail calls, whose time
/// the kernel counts in its callers') as [`UNATTACHED`].
fn program_stats(pid: u32) -> anyhow::Result<BTreeMap<String, ProgramStats>> {
    let mut names = BTreeMap::new();
    for info in FdInfo::of(pid)? {
        if let (Some(id), Some(tp)) = (info.get("prog_id"), info.get("tp_name")) {
            let name = ["sys_enter", "sys_exit"]
                .into_iter()
                .find(|p| tp.starts_with(p))
                .unwrap_or(tp);
            names.insert(id.to_string(), name.to_string());
        }
    }
    Ok(programs(pid)?
        .into_iter()
        .map(|(id, s)| {
            (
                names
                    .get(&id)
                    .map_or(UNATTACHED, String::as_str)
                    .to_string(),
                s,
            )
        })
        .collect())
}

const UNATTACHED: &str = "unattached";

/// The time the kernel has spent in all the programs `pid` holds.
fn kernel_ns(pid: u32) -> anyhow::Result<u64> {
    Ok(programs(pid)?.values().map(|s| s.ns).sum())
}

/// The programs `pid` holds a descriptor of, by id, from their fdinfo.
fn programs(pid: u32) -> anyhow::Result<BTreeMap<String, ProgramStats>> {
    let mut stats = BTreeMap::new();
    for info in FdInfo::of(pid)? {
        if let (Some(id), Some(ns), Some(runs)) = (
            info.get("prog_id"),
            info.number("run_time_ns"),
            info.number("run_cnt"),
        ) {
            stats.insert(
                id.to_string(),
                ProgramStats {
                    ns,
                    runs,
                    insns: info.number("verified_insns").unwrap_or(0),
                },
            );
        }
    }
    Ok(stats)
}

/// kernel.bpf_stats_enabled on, restored on drop.
struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn on() -> anyhow::Result<Self> {
        let before = fs::read_to_string(BPF_STATS).context("reading kernel.bpf_stats_enabled")?;
        fs::write(BPF_STATS, "1").context("setting kernel.bpf_stats_enabled")?;
        Ok(Self { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.before.trim());
    }
}
