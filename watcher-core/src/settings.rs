//! Plain settings, with their parsers and their defaults: what the command
//! line and the configuration file both produce, parsed and checked once.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    filter::{PathFilter, ProcessFilter},
    kind::Kind,
    user::{self, RunAs},
};

/// What to watch, and what the kernel and the event stream leave out.
#[derive(Clone, Debug)]
pub struct Plan {
    pub dirs: Vec<PathBuf>,
    pub kinds: Vec<Kind>,
    pub process: ProcessFilter,
    pub paths: PathFilter,
    pub ring_buffer_size: u32,
    /// At most one `modify` event per open file per this time.
    pub modify_interval: Duration,
    /// The kernel traces watcher's actions and tags their changes, rather
    /// than leaving them out: some job may want another's action's changes.
    pub tag_actions: bool,
}

/// What every job of a configuration shares: the kernel's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shared {
    pub ring_buffer_size: u32,
    pub modify_interval: Duration,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            ring_buffer_size: defaults::RING_BUFFER_BYTES,
            modify_interval: defaults::MODIFY_INTERVAL,
        }
    }
}

/// The defaults of the command line and the configuration file alike.
pub mod defaults {
    use std::time::Duration;

    /// Size of the kernel's event ring buffer.
    pub const RING_BUFFER_BYTES: u32 = 1 << 20;
    /// Least time between two `modify` events of one open file.
    pub const MODIFY_INTERVAL: Duration = Duration::from_secs(1);
    /// `run`: quiet time after the last change before the action runs.
    pub const SETTLE: Duration = Duration::from_secs(5);
    /// `run`: longest time a batch waits for the files in it still open
    /// for writing, once it is otherwise due.
    pub const MAX_WAIT: Duration = Duration::from_secs(300);
    /// `run`: least time from one start of the action to the next.
    pub const INTERVAL: Duration = Duration::from_secs(60);
    /// `run`: longest time the action may run.
    pub const TIMEOUT: Duration = Duration::from_secs(600);
    /// `run`: most distinct paths handed to one run.
    pub const MAX_PATHS: u32 = 10_000;
    /// `top`: time each report covers.
    pub const TOP_INTERVAL: Duration = Duration::from_secs(2);
    /// `top`: most rows in each table.
    pub const TOP_LIMIT: usize = 20;
}

/// A user name or a uid.
pub fn parse_uid(s: &str) -> Result<u32, String> {
    if let Ok(uid) = s.parse::<u32>() {
        return Ok(uid);
    }
    user::lookup(s)
        .map(|user| user.uid)
        .map_err(|e| e.to_string())
}

/// A user name or a uid that names a user, looked up once, here: a user
/// watcher cannot find is bad input, refused before anything starts.
pub fn parse_user(s: &str) -> Result<RunAs, String> {
    user::lookup(s).map_err(|e| e.to_string())
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

impl Default for Events {
    fn default() -> Self {
        Self(Kind::defaults())
    }
}

impl std::str::FromStr for Events {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_events(s)
    }
}

impl fmt::Display for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        f.write_str(&names.join(","))
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

/// A duration as `parse_duration` reads it and as help texts show it
/// (`500ms`, `5s`, `1m`, `10m`, `1h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(Self)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, ms) = (self.0.as_secs(), self.0.subsec_millis());
        match () {
            () if ms != 0 || secs == 0 => write!(f, "{}ms", self.0.as_millis()),
            () if secs % 3600 == 0 => write!(f, "{}h", secs / 3600),
            () if secs % 60 == 0 => write!(f, "{}m", secs / 60),
            () => write!(f, "{secs}s"),
        }
    }
}

/// A duration, or `0` for none: the least time between two `modify`
/// events of one open file (`0`: an event at every write), or the longest
/// wait for files open for writing (`0`: no wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanOrZero(pub Duration);

impl std::str::FromStr for SpanOrZero {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "0" {
            return Ok(Self(Duration::ZERO));
        }
        parse_duration(s).map(Self)
    }
}

impl fmt::Display for SpanOrZero {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            f.write_str("0")
        } else {
            Span(self.0).fmt(f)
        }
    }
}

/// A ring-buffer size as `parse_ring_size` reads it and as help texts
/// show it (`64k`, `1M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSize(pub u32);

impl std::str::FromStr for RingSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_ring_size(s).map(Self)
    }
}

impl fmt::Display for RingSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 30 => write!(f, "{}G", n >> 30),
            n if n >= 1 << 20 => write!(f, "{}M", n >> 20),
            n => write!(f, "{}k", n >> 10),
        }
    }
}

/// Where `--metrics` (and the configuration's `metrics`) serves: an IP
/// address and a port (`127.0.0.1:9464`, `[::1]:9464`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsAddr(pub SocketAddr);

impl std::str::FromStr for MetricsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(Self).map_err(|_| {
            format!("`{s}` is not an IP address and port such as 127.0.0.1:9464 or [::1]:9464")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            "127.0.0.1:9464".parse::<MetricsAddr>().map(|a| a.0.port()),
            Ok(9464)
        );
        assert!("[::1]:0".parse::<MetricsAddr>().is_ok());
        for bad in ["localhost:9464", "127.0.0.1", ":9464", "127.0.0.1:99999"] {
            assert!(bad.parse::<MetricsAddr>().is_err(), "{bad}");
        }
    }

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
    fn defaults_read_back_as_they_show() {
        for span in [
            defaults::SETTLE,
            defaults::INTERVAL,
            defaults::TIMEOUT,
            defaults::TOP_INTERVAL,
        ]
        .into_iter()
        .chain([Duration::from_millis(1500), Duration::from_secs(7200)])
        {
            assert_eq!(Span(span).to_string().parse(), Ok(Span(span)));
        }
        assert_eq!(Span(defaults::INTERVAL).to_string(), "1m");
        assert_eq!("0".parse(), Ok(SpanOrZero(Duration::ZERO)));
        assert_eq!("250ms".parse(), Ok(SpanOrZero(Duration::from_millis(250))));
        assert_eq!(SpanOrZero(Duration::ZERO).to_string(), "0");
        assert!("-1".parse::<SpanOrZero>().is_err());
        for size in [4096, 1 << 16, defaults::RING_BUFFER_BYTES, 1 << 30] {
            assert_eq!(RingSize(size).to_string().parse(), Ok(RingSize(size)));
        }
        assert_eq!(RingSize(defaults::RING_BUFFER_BYTES).to_string(), "1M");
        let default = Events::default();
        assert_eq!(default.to_string().parse(), Ok(default));
    }
}
