//! The command line.

use std::{ffi::OsString, path::PathBuf};

use clap::{
    Args, Parser, Subcommand,
    builder::{PossibleValue, PossibleValuesParser, TypedValueParser},
};
use watcher_core::{
    choice::Choice,
    config,
    filter::{Comm, PathFilter, Pattern, ProcessFilter},
    output::{Color, Format},
    runner::{Action, CommandSpec, JobSpec, Recipient, StdinFormat, parse_signal},
    settings::{
        Events, MetricsAddr, Plan, RingSize, Shared, Span, SpanOrZero, defaults, parse_events,
        parse_pid, parse_target_pid, parse_uid, parse_user,
    },
    tally::Sort,
    user::RunAs,
};

use crate::{top, trace};

/// The values of a [`Choice`], with their help, for clap.
fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::CHOICES.iter().map(|&(_, name, help)| {
        let value = PossibleValue::new(name);
        if help.is_empty() {
            value
        } else {
            value.help(help)
        }
    });
    PossibleValuesParser::new(values).try_map(|name| T::parse(&name))
}

#[derive(Debug, Parser)]
#[command(
    name = "watcher",
    version,
    about = "Watch directory trees for writes by tracing syscalls with eBPF",
    after_help = "Examples:\n  \
        watcher trace /srv/media\n  \
        watcher trace --format json /srv/media /home/share\n  \
        watcher run /srv/media -- pkill -HUP minidlnad\n  \
        watcher top /srv\n  \
        watcher serve --config /etc/watcher/watcher.toml\n  \
        watcher check"
)]
pub struct Cli {
    /// Say more: -v logs each event and the verifier's log when a program
    /// is refused, -vv traces. RUST_LOG (e.g. RUST_LOG=debug) overrides
    /// -v and -q.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Say less: -q only warnings and errors, -qq only errors. The
    /// `watching` line is always printed.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log the eBPF programs' own debug lines (aya-log). Off by default:
    /// then their logging code is removed at load and costs nothing.
    #[arg(long, global = true)]
    pub bpf_log: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print one line per write under the watched directories. SIGHUP
    /// reopens the --output file.
    Trace(TraceArgs),
    /// Run a command after writes under the watched directories. SIGTERM
    /// and SIGINT stop a running action (SIGTERM to its process group,
    /// SIGKILL 5 seconds later) and exit; SIGHUP is logged and changes
    /// nothing.
    Run(Box<RunArgs>),
    /// Run every watch of a configuration file, as a service: SIGHUP
    /// reloads it in place; SIGTERM stops the running actions as `run`
    /// does, and exits.
    Serve(ServeArgs),
    /// Show changes per process and per path, refreshed every interval.
    /// SIGHUP is logged and changes nothing.
    Top(TopArgs),
    /// Check whether this machine can run watcher, and a configuration's
    /// watches: one line per check. Exit status 0: all is well; 1:
    /// watcher cannot run; 2: the configuration is bad; 3: watcher runs,
    /// with a warning (e.g. no BTF: paths matched by prefix; tracefs not
    /// mounted: watcher mounts it).
    Check(CheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (watcher.1, watcher-run.1, ..., watcher.toml.5)
    /// into DIR.
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    watcher serve\n  \
    watcher serve --config /etc/watcher/media.toml\n  \
    systemctl reload watcher    # sends SIGHUP: the configuration is read anew")]
pub struct ServeArgs {
    /// The configuration file (TOML; see watcher.toml(5) or docs/config.md).
    #[arg(long, short, default_value = config::DEFAULT_PATH, value_name = "FILE")]
    pub config: PathBuf,
    /// Serve metrics for Prometheus at http://ADDR:PORT/metrics (no
    /// authentication: keep it on localhost or behind a proxy). Overrides
    /// the configuration's `metrics`.
    #[arg(long, value_name = "ADDR:PORT", value_parser = |s: &str| s.parse::<MetricsAddr>())]
    pub metrics: Option<MetricsAddr>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    watcher check\n  \
    watcher check --config /etc/watcher/watcher.toml")]
pub struct CheckArgs {
    /// Also check this configuration file and every directory it watches.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What `trace` and `run` share.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Directories to watch, with everything below them.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Size of the kernel's event ring buffer: a power of two from 4k to
    /// 1G (e.g. 64k, 1M, 16M). When it is full, events are counted as lost.
    #[arg(
        long,
        default_value_t = RingSize(defaults::RING_BUFFER_BYTES),
        value_parser = |s: &str| s.parse::<RingSize>(),
        value_name = "BYTES"
    )]
    pub ring_buffer_size: RingSize,
    /// Kinds of change to report, comma-separated: write, create, delete,
    /// rename, mkdir, link, truncate, attrib, close_write, modify, or all.
    /// The default is every change of the tree's contents: all but attrib,
    /// close_write and modify.
    #[arg(long, default_value_t, value_parser = parse_events, value_name = "KINDS")]
    pub events: Events,
    /// With `--events modify`: at most one modify event per open file per
    /// this time (e.g. 500ms, 10s; 0: one per write); each counts the
    /// writes it stands for, and the close of the file counts those after
    /// the last one.
    #[arg(
        long,
        default_value_t = SpanOrZero(defaults::MODIFY_INTERVAL),
        value_parser = |s: &str| s.parse::<SpanOrZero>(),
        value_name = "TIME"
    )]
    pub modify_interval: SpanOrZero,
    /// Only changes by this process (thread group id; repeatable). Applied
    /// in the kernel.
    #[arg(long = "pid", value_name = "PID", value_parser = parse_pid)]
    pub pids: Vec<u32>,
    /// Only changes by processes with this real uid (a user name or a
    /// number; repeatable). Applied in the kernel.
    #[arg(long = "uid", value_name = "USER", value_parser = parse_uid)]
    pub uids: Vec<u32>,
    /// Only changes by processes with this name (the kernel's comm, at
    /// most 15 bytes; repeatable). Applied in the kernel.
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<Comm>,
    /// No changes by processes with this name (repeatable). Applied in the
    /// kernel.
    #[arg(long = "exclude-comm", value_name = "NAME")]
    pub exclude_comms: Vec<Comm>,
    /// Only changes to paths matching this glob (repeatable; .gitignore
    /// style: `*.mp3`, `music/**`, `/srv/media/new/`). Applied in user
    /// space.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<Pattern>,
    /// No changes to paths matching this glob (repeatable: `*.part`,
    /// `.*.swp`, `.git/`). Applied in user space.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<Pattern>,
    /// Serve metrics for Prometheus at http://ADDR:PORT/metrics, e.g.
    /// 127.0.0.1:9464 (no authentication: keep it on localhost or behind a
    /// proxy).
    #[arg(long, value_name = "ADDR:PORT", value_parser = |s: &str| s.parse::<MetricsAddr>())]
    pub metrics: Option<MetricsAddr>,
}

impl WatchArgs {
    /// What the kernel and the session are asked for.
    pub fn plan(&self) -> Plan {
        Plan {
            dirs: self.dirs.clone(),
            kinds: self.events.0.clone(),
            process: self.process_filter(),
            paths: self.path_filter(),
            ring_buffer_size: self.ring_buffer_size.0,
            modify_interval: self.modify_interval.0,
            // `trace` and `top` run no actions.
            tag_actions: false,
        }
    }

    /// The kernel's settings, for `run`'s one job.
    pub fn shared(&self) -> Shared {
        Shared {
            ring_buffer_size: self.ring_buffer_size.0,
            modify_interval: self.modify_interval.0,
        }
    }

    fn process_filter(&self) -> ProcessFilter {
        ProcessFilter {
            pids: self.pids.clone(),
            uids: self.uids.clone(),
            comms: self.comms.clone(),
            exclude_comms: self.exclude_comms.clone(),
        }
    }

    fn path_filter(&self) -> PathFilter {
        PathFilter {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Output format.
    #[arg(long, default_value = Format::Text.name(), value_parser = choice::<Format>())]
    pub format: Format,
    /// Append events to FILE instead of stdout (created mode 0640), and
    /// reopen it on SIGHUP, after logrotate moved it.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Color the text output.
    #[arg(long, default_value = Color::Auto.name(), value_parser = choice::<Color>(), value_name = "WHEN")]
    pub color: Color,
    /// Print counts at exit to stderr: events by kind, lost, and dropped by
    /// --include/--exclude.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    watcher top /srv\n  \
    watcher top --sort writes --interval 10s /home\n  \
    watcher top --once --interval 1m /srv/media > report.txt")]
pub struct TopArgs {
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Time each report covers.
    #[arg(
        long,
        default_value_t = Span(defaults::TOP_INTERVAL),
        value_parser = |s: &str| s.parse::<Span>(),
        value_name = "DURATION"
    )]
    pub interval: Span,
    /// Order of the rows.
    #[arg(long, default_value = Sort::Events.name(), value_parser = choice::<Sort>())]
    pub sort: Sort,
    /// Most rows in each table.
    #[arg(long, default_value_t = defaults::TOP_LIMIT, value_name = "N")]
    pub limit: usize,
    /// Print one report, after --interval or at SIGINT or SIGTERM, and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    watcher run /srv/media -- pkill -HUP minidlnad\n  \
    watcher run --settle 30s --interval 10m /srv/media -- /usr/local/bin/rescan\n  \
    watcher run --stdin-format jsonl /srv/incoming -- /usr/local/bin/ingest\n  \
    watcher run --signal HUP --process-name minidlnad /srv/media")]
pub struct RunArgs {
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Quiet time after the last change before the action runs, so a burst
    /// of changes makes one run (durations: 500ms, 10s, 2m, 1h; bare
    /// numbers are seconds; at most 8760h, a year).
    #[arg(
        long,
        default_value_t = Span(defaults::SETTLE),
        value_parser = |s: &str| s.parse::<Span>(),
        value_name = "DURATION"
    )]
    pub settle: Span,
    /// Once settled, longest time the action waits for the files of its
    /// batch still open for writing (by processes the filters keep) to be
    /// closed; then it runs, and is told which are still open
    /// (WATCHER_PATHS_OPEN). 0: it does not wait for them.
    #[arg(
        long,
        default_value_t = SpanOrZero(defaults::MAX_WAIT),
        value_parser = |s: &str| s.parse::<SpanOrZero>(),
        value_name = "DURATION"
    )]
    pub max_wait: SpanOrZero,
    /// Least time from one start of the action to the next.
    #[arg(
        long,
        default_value_t = Span(defaults::INTERVAL),
        value_parser = |s: &str| s.parse::<Span>(),
        value_name = "DURATION"
    )]
    pub interval: Span,
    /// Longest time the action may run: then its process group gets
    /// SIGTERM, and SIGKILL 5 seconds later.
    #[arg(
        long,
        default_value_t = Span(defaults::TIMEOUT),
        value_parser = |s: &str| s.parse::<Span>(),
        value_name = "DURATION"
    )]
    pub timeout: Span,
    /// Run the action once at start, before any change.
    #[arg(long)]
    pub run_at_start: bool,
    /// Exit after the first run, with status 0 if the action succeeded.
    #[arg(long)]
    pub once: bool,
    /// How the changed paths reach the action's stdin.
    #[arg(
        long,
        default_value = StdinFormat::Nul.name(),
        value_parser = choice::<StdinFormat>(),
        value_name = "FORMAT"
    )]
    pub stdin_format: StdinFormat,
    /// Most distinct paths handed to one run; the rest are counted in
    /// WATCHER_PATHS_OMITTED.
    #[arg(long, default_value_t = defaults::MAX_PATHS, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_paths: u32,
    /// Instead of COMMAND, send this signal (HUP, USR1, TERM, ... or a
    /// number) to the process named by --process-name, --target-pid or --pidfile.
    #[arg(long, value_parser = parse_signal, value_name = "SIGNAL", requires = "target", conflicts_with = "command")]
    pub signal: Option<i32>,
    /// With --signal: every process with exactly this name (as `pkill -x`).
    #[arg(long, group = "target", value_name = "NAME")]
    pub process_name: Option<String>,
    /// With --signal: this process.
    #[arg(long, group = "target", value_name = "PID", value_parser = parse_target_pid)]
    pub target_pid: Option<i32>,
    /// With --signal: the process whose pid is in FILE (read at each run).
    #[arg(long, group = "target", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Run the action as this user (name or uid), with that user's groups
    /// and no capabilities.
    #[arg(long, value_name = "USER", value_parser = parse_user, conflicts_with = "signal")]
    pub user: Option<RunAs>,
    /// Run `sh -c COMMAND ARG...` instead of executing COMMAND: COMMAND is
    /// a shell script (with ARGs as $0, $1, ...). What the script does with
    /// its input is your responsibility; file names still arrive only on
    /// stdin and never in the script.
    #[arg(long, conflicts_with = "signal")]
    pub shell: bool,
    /// The command and its arguments, executed directly (no shell).
    #[arg(
        last = true,
        required_unless_present = "signal",
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

impl TraceArgs {
    pub fn settings(self) -> trace::Settings {
        trace::Settings {
            plan: self.watch.plan(),
            format: self.format,
            output: self.output,
            color: self.color,
            stats: self.stats,
        }
    }

    /// What clap cannot say: the journal is not a file.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.format == Format::Journal && self.output.is_some() {
            return Err("--output goes with --format text or json, not journal");
        }
        Ok(())
    }
}

impl TopArgs {
    pub fn settings(self) -> top::Settings {
        top::Settings {
            plan: self.watch.plan(),
            interval: self.interval.0,
            sort: self.sort,
            limit: self.limit,
            once: self.once,
        }
    }
}

impl RunArgs {
    /// The job `watcher run` was given. A program that cannot run is bad
    /// input, refused before anything starts.
    pub fn job(&self) -> anyhow::Result<JobSpec> {
        let action = match self.signal {
            Some(signal) => {
                let target = match (&self.process_name, self.target_pid, &self.pidfile) {
                    (Some(name), _, _) => Recipient::Name(name.clone()),
                    (_, Some(pid), _) => Recipient::Pid(pid),
                    (_, _, Some(path)) => Recipient::Pidfile(path.clone()),
                    _ => anyhow::bail!("--signal needs --process-name, --target-pid or --pidfile"),
                };
                Action::Signal { signal, target }
            }
            None => Action::Command(CommandSpec::new(
                self.command.clone(),
                self.shell,
                self.user.clone(),
                self.stdin_format,
            )?),
        };
        Ok(JobSpec {
            // One job: its lines need no name.
            name: String::new(),
            dirs: self.watch.dirs.clone(),
            kinds: self.watch.events.0.clone(),
            process: self.watch.process_filter(),
            paths: self.watch.path_filter(),
            action,
            settle: self.settle.0,
            max_wait: self.max_wait.0,
            interval: self.interval.0,
            timeout: self.timeout.0,
            run_at_start: self.run_at_start,
            max_paths: self.max_paths as usize,
        })
    }

    /// What clap cannot say: a target needs `--signal` (clap's `requires`
    /// is not enforced when COMMAND is given too).
    pub fn validate(&self) -> Result<(), &'static str> {
        let has_target =
            self.process_name.is_some() || self.target_pid.is_some() || self.pidfile.is_some();
        if has_target && self.signal.is_none() {
            return Err("--process-name, --target-pid and --pidfile go with --signal");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let cli = Cli::try_parse_from(["watcher", "run", "/a", "/b", "--", "pkill", "-HUP", "x"])
            .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.watch.dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(args.command, ["pkill", "-HUP", "x"]);
        assert!(Cli::try_parse_from(["watcher", "run", "/a"]).is_err());
    }

    #[test]
    fn signal_and_its_target_go_together() {
        let run = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["watcher", "run"][..], args].concat())
                .map_err(|e| e.to_string())?;
            let Command::Run(args) = cli.command else {
                panic!("not run")
            };
            args.validate().map_err(str::to_owned)
        };
        assert!(run(&["--signal", "HUP", "--target-pid", "7", "/a"]).is_ok());
        assert!(run(&["--signal", "HUP", "--process-name", "x", "/a"]).is_ok());
        assert!(run(&["--signal", "HUP", "/a"]).is_err(), "no target");
        assert!(
            run(&["--target-pid", "7", "/a", "--", "true"]).is_err(),
            "target without signal"
        );
        assert!(run(&["--pidfile", "/p", "/a"]).is_err());
        assert!(
            run(&[
                "--signal",
                "HUP",
                "--target-pid",
                "7",
                "--pidfile",
                "/p",
                "/a"
            ])
            .is_err(),
            "two targets"
        );
        assert!(
            run(&["--signal", "HUP", "--target-pid", "7", "/a", "--", "true"]).is_err(),
            "signal and command"
        );
    }
}
