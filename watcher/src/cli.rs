//! The command line.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    event::Kind,
    filter::{Comm, PathFilter, Pattern, ProcessFilter},
    output::{Color, Format},
    runner::{RunAs, StdinFormat, parse_signal},
};

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
    Run(RunArgs),
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
    #[arg(long, short, default_value = crate::config::DEFAULT_PATH, value_name = "FILE")]
    pub config: PathBuf,
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
    #[arg(long, default_value = "1M", value_parser = parse_ring_size, value_name = "BYTES")]
    pub ring_buffer_size: u32,
    /// Kinds of change to report, comma-separated: write, create, delete,
    /// rename, mkdir, link, truncate, attrib, close_write, or all. The
    /// default is every change of the tree's contents: all but attrib and
    /// close_write.
    #[arg(
        long,
        default_value = "write,create,delete,rename,mkdir,link,truncate",
        value_parser = parse_events,
        value_name = "KINDS"
    )]
    pub events: Events,
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
}

impl WatchArgs {
    pub fn process_filter(&self) -> ProcessFilter {
        ProcessFilter {
            pids: self.pids.clone(),
            uids: self.uids.clone(),
            comms: self.comms.clone(),
            exclude_comms: self.exclude_comms.clone(),
        }
    }

    pub fn path_filter(&self) -> PathFilter {
        PathFilter {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

/// A user name or a uid.
pub fn parse_uid(s: &str) -> Result<u32, String> {
    if let Ok(uid) = s.parse::<u32>() {
        return Ok(uid);
    }
    crate::runner::lookup_user(s)
        .map(|user| user.uid)
        .map_err(|e| e.to_string())
}

/// A user name or a uid that names a user, looked up once, here: a user
/// watcher cannot find is bad input, refused before anything starts.
pub fn parse_user(s: &str) -> Result<RunAs, String> {
    crate::runner::lookup_user(s).map_err(|e| e.to_string())
}

/// One more than the largest pid Linux can give (`PID_MAX_LIMIT`, the
/// highest `kernel.pid_max`).
pub const PID_MAX_LIMIT: u32 = 4 << 20;

/// A process id: from 1 to PID_MAX_LIMIT - 1.
pub fn parse_pid(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|pid| (1..PID_MAX_LIMIT).contains(pid))
        .ok_or_else(|| {
            format!(
                "`{s}` is not a process id (from 1 to {})",
                PID_MAX_LIMIT - 1
            )
        })
}

/// A process id, as `kill` takes it.
pub fn parse_target_pid(s: &str) -> Result<i32, String> {
    parse_pid(s).map(|pid| pid as i32)
}

/// The kinds `--events` selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Events(pub Vec<Kind>);

pub fn parse_events(s: &str) -> Result<Events, String> {
    if s == "all" {
        return Ok(Events(Kind::ALL.to_vec()));
    }
    let mut kinds = Vec::new();
    for name in s.split(',') {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown event kind `{name}`; kinds are {}, or all",
                    names.join(", ")
                )
            })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(Events(kinds))
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Append events to FILE instead of stdout (created mode 0640), and
    /// reopen it on SIGHUP, after logrotate moved it.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Color the text output.
    #[arg(long, value_enum, default_value_t = Color::Auto, value_name = "WHEN")]
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
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Order of the rows.
    #[arg(long, value_enum, default_value_t = Sort::Events)]
    pub sort: Sort,
    /// Most rows in each table.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,
    /// Print one report, after --interval or at SIGINT or SIGTERM, and exit.
    #[arg(long)]
    pub once: bool,
}

/// How `top` orders its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// Most changes first.
    Events,
    /// Most opens for writing first.
    Writes,
    /// By process id (paths: most changes first).
    Pid,
    /// By process name and by path.
    Name,
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
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,
    /// Least time from one start of the action to the next.
    #[arg(long, default_value = "1m", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Longest time the action may run: then its process group gets
    /// SIGTERM, and SIGKILL 5 seconds later.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Run the action once at start, before any change.
    #[arg(long)]
    pub run_at_start: bool,
    /// Exit after the first run, with status 0 if the action succeeded.
    #[arg(long)]
    pub once: bool,
    /// How the changed paths reach the action's stdin.
    #[arg(long, value_enum, default_value_t = StdinFormat::Nul, value_name = "FORMAT")]
    pub stdin_format: StdinFormat,
    /// Most distinct paths handed to one run; the rest are counted in
    /// WATCHER_PATHS_OMITTED.
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
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
    /// What clap cannot say: the journal is not a file.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.format == Format::Journal && self.output.is_some() {
            return Err("--output goes with --format text or json, not journal");
        }
        Ok(())
    }
}

impl RunArgs {
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

/// Parses `4096`, `64k` or `16M` (binary units) into a ring-buffer size:
/// a power of two from one page to 1 GiB.
pub fn parse_ring_size(s: &str) -> Result<u32, String> {
    let (number, scale) = match s.trim().to_ascii_lowercase() {
        t if t.ends_with('k') => (t[..t.len() - 1].to_owned(), 1 << 10),
        t if t.ends_with('m') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t if t.ends_with('g') => (t[..t.len() - 1].to_owned(), 1 << 30),
        t => (t, 1),
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("`{s}` is not a size (e.g. 64k, 1M)"))?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!("`{s}` must be a power of two from 4k to 1G"));
    }
    Ok(bytes as u32)
}

/// The longest duration watcher takes: a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `10`, `1.5`, `500ms`, `10s`, `2m` or `1h` into a positive
/// duration of at most MAX_DURATION.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(format!("`{s}` is not a duration (e.g. 500ms, 10s, 2m)"));
    }
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit `{unit}` (use ms, s, m or h)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let too_large = || {
        format!(
            "`{s}` is too large: a duration is at most {}h (a year)",
            MAX_DURATION.as_secs() / 3600
        )
    };
    let duration = Duration::try_from_secs_f64(value * scale).map_err(|_| too_large())?;
    if duration > MAX_DURATION {
        return Err(too_large());
    }
    if duration.is_zero() {
        return Err(format!("`{s}` must be a positive duration"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        assert_eq!(
            parse_events("delete,rename,delete"),
            Ok(Events(vec![Kind::Delete, Kind::Rename]))
        );
        assert_eq!(parse_events("all"), Ok(Events(Kind::ALL.to_vec())));
        for bad in ["", "writes", "write,", "all,write"] {
            assert!(parse_events(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for bad in [
            "", "abc", "0", "0s", "-1", "5 days", "1e9999", "ms", "1.2.3",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for zero in ["0", "0s", "0.0000000001"] {
            assert_eq!(
                parse_duration(zero),
                Err(format!("`{zero}` must be a positive duration"))
            );
        }
        for huge in [
            "8761h",
            "31536001",
            "99999999999999h",
            "18446744073709551616",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(
                parse_duration(huge),
                Err(format!(
                    "`{huge}` is too large: a duration is at most 8760h (a year)"
                ))
            );
        }
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid("1"), Ok(1));
        assert_eq!(parse_pid("4194303"), Ok(4_194_303));
        assert_eq!(parse_target_pid("4194303"), Ok(4_194_303));
        for bad in ["", "0", "-1", "x", "4194304", "99999999", "4294967296"] {
            assert_eq!(
                parse_pid(bad),
                Err(format!("`{bad}` is not a process id (from 1 to 4194303)"))
            );
            assert!(parse_target_pid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_are_looked_up_when_parsed() {
        let found = |s| parse_user(s).map(|u| (u.name, u.uid));
        assert_eq!(found("root"), Ok(("root".to_owned(), 0)));
        assert_eq!(found("0"), Ok(("root".to_owned(), 0)));
        assert_eq!(
            found("no-such-user-here"),
            Err("no user named no-such-user-here".to_owned())
        );
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert_eq!(parse_ring_size("64k"), Ok(65536));
        assert_eq!(parse_ring_size("1M"), Ok(1 << 20));
        assert_eq!(parse_ring_size("1g"), Ok(1 << 30));
        for bad in [
            "",
            "1000",
            "2048",
            "3M",
            "2G",
            "x",
            "-4k",
            "99999999999999999999k",
        ] {
            assert!(parse_ring_size(bad).is_err(), "{bad}");
        }
    }

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
