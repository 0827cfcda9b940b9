//! The configuration file of `watcher serve` (TOML): any number of
//! `[[watch]]` tables, each with its directories, filters and action.
//! docs/config.md describes every key.
//!
//! Values are checked while they are read (a directory must exist, a user
//! must be known, a duration must parse), so that every error can name the
//! file, the line and the key.

use std::{
    ffi::OsString,
    fmt, fs, io,
    marker::PhantomData,
    net::SocketAddr,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use serde::{
    Deserialize, Deserializer,
    de::{self, IntoDeserializer as _, SeqAccess, Visitor},
};
use toml::Spanned;

use crate::{
    choice::Choice,
    escape,
    filter::{Comm, PathFilter, Pattern, ProcessFilter},
    kind::Kind,
    runner::{self, Action, CommandSpec, JobSpec, Recipient, StdinFormat},
    settings::{
        Events, MetricsAddr, RingSize, Shared, Span, SpanOrZero, defaults, parse_pid, parse_uid,
    },
    user::{self, RunAs},
};

/// Where `watcher serve` reads its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/watcher/watcher.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", escape::path(path))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: {reason}; a configuration must be writable by root only (chown root {}; chmod go-w {})",
        escape::path(path),
        escape::path(file),
        escape::path(file)
    )]
    Unsafe {
        path: PathBuf,
        file: PathBuf,
        reason: String,
    },
    /// A mistake at a place in the file: `line` counts from 1, `key` is
    /// where it was found (`[[watch]] #2, settle`).
    #[error("{}:{line}: {}{message}", escape::path(path), key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: Option<String>,
        message: String,
    },
}

/// A configuration, checked.
#[derive(Debug)]
pub struct Config {
    /// The kernel's settings, for every job.
    pub shared: Shared,
    /// Where to serve metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    pub jobs: Vec<JobSpec>,
}

/// Reads, checks and returns the configuration at `path`. Every directory
/// must exist, except those `gone` excuses (watched, and gone since).
pub fn load(path: &Path, gone: &dyn Fn(&Path) -> bool) -> Result<Config, ConfigError> {
    check_owner(path)?;
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, gone).map_err(|e| {
        let (line, key) = locate(&text, e.offset, e.key.as_deref());
        ConfigError::Invalid {
            path: path.to_owned(),
            line,
            key,
            message: e.message,
        }
    })
}

/// A mistake at byte `offset`; `key` when the place alone does not say it.
#[derive(Debug)]
struct ParseError {
    offset: usize,
    key: Option<String>,
    message: String,
}

impl ParseError {
    fn at<T>(spanned: &Spanned<T>, key: &str, message: impl fmt::Display) -> Self {
        Self {
            offset: spanned.span().start,
            key: Some(key.to_owned()),
            message: message.to_string(),
        }
    }
}

fn parse(text: &str, gone: &dyn Fn(&Path) -> bool) -> Result<Config, ParseError> {
    let file: File = toml::from_str(text).map_err(|e| ParseError {
        offset: e.span().map_or(0, |s| s.start),
        key: None,
        message: e.message().trim_end().to_owned(),
    })?;
    if file.watch.is_empty() {
        return Err(ParseError {
            offset: text.len(),
            key: None,
            message: "no [[watch]] table: a configuration needs at least one".into(),
        });
    }
    let mut jobs: Vec<JobSpec> = Vec::new();
    for entry in &file.watch {
        let job = entry.get_ref().job(entry, gone)?;
        if jobs.iter().any(|j| j.name == job.name) {
            let offset = entry
                .get_ref()
                .name
                .as_ref()
                .map_or(entry.span().start, |n| n.span().start);
            return Err(ParseError {
                offset,
                key: Some("name".into()),
                message: format!(
                    "two watches are named `{}`; give each its own name",
                    job.name
                ),
            });
        }
        jobs.push(job);
    }
    Ok(Config {
        shared: Shared {
            ring_buffer_size: file
                .ring_buffer_size
                .map_or(defaults::RING_BUFFER_BYTES, |r| r.0.0),
            modify_interval: file
                .modify_interval
                .map_or(defaults::MODIFY_INTERVAL, |s| s.0.0),
        },
        metrics: file.metrics.map(|m| m.0.0),
        jobs,
    })
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    ring_buffer_size: Option<Parsed<RingSize>>,
    modify_interval: Option<Parsed<SpanOrZero>>,
    metrics: Option<Parsed<MetricsAddr>>,
    #[serde(default)]
    watch: Vec<Spanned<Entry>>,
}

/// One `[[watch]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<Spanned<Parsed<Name>>>,
    dirs: Spanned<OneOrMany<Parsed<Dir>>>,
    events: Option<OneOrMany<Parsed<Events>>>,
    #[serde(default)]
    pid: OneOrMany<Parsed<Pid>>,
    #[serde(default)]
    uid: OneOrMany<Parsed<Uid>>,
    #[serde(default)]
    comm: OneOrMany<Parsed<Comm>>,
    #[serde(default)]
    exclude_comm: OneOrMany<Parsed<Comm>>,
    #[serde(default)]
    include: OneOrMany<Parsed<Pattern>>,
    #[serde(default)]
    exclude: OneOrMany<Parsed<Pattern>>,
    settle: Option<Parsed<Span>>,
    max_wait: Option<Parsed<SpanOrZero>>,
    interval: Option<Parsed<Span>>,
    timeout: Option<Parsed<Span>>,
    #[serde(default)]
    run_at_start: bool,
    max_paths: Option<Spanned<u32>>,
    command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    shell: bool,
    user: Option<Parsed<User>>,
    stdin_format: Option<Parsed<Stdin>>,
    signal: Option<Parsed<Signal>>,
    process_name: Option<String>,
    target_pid: Option<Parsed<Pid>>,
    pidfile: Option<PathBuf>,
}

impl Entry {
    /// The job this table describes; `at` is the table, for the errors no
    /// single value is to blame for.
    fn job(&self, at: &Spanned<Self>, gone: &dyn Fn(&Path) -> bool) -> Result<JobSpec, ParseError> {
        let dirs: Vec<PathBuf> = self
            .dirs
            .get_ref()
            .0
            .iter()
            .map(|d| d.0.0.clone())
            .collect();
        if dirs.is_empty() {
            return Err(ParseError::at(&self.dirs, "dirs", "no directory given"));
        }
        for dir in dirs.iter().filter(|dir| !gone(dir)) {
            let shown = dir.display();
            let problem = match fs::metadata(dir) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => format!("{shown}: not a directory"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    format!("{shown}: no such directory")
                }
                Err(e) => format!("{shown}: {e}"),
            };
            return Err(ParseError::at(&self.dirs, "dirs", problem));
        }
        let name = match &self.name {
            Some(name) => name.get_ref().0.0.clone(),
            None => dirs[0].to_string_lossy().into_owned(),
        };
        let target = match (&self.process_name, &self.target_pid, &self.pidfile) {
            (None, None, None) => None,
            (Some(name), None, None) => Some(Recipient::Name(name.clone())),
            (None, Some(pid), None) => Some(Recipient::Pid(pid.0.0 as i32)),
            (None, None, Some(path)) => Some(Recipient::Pidfile(path.clone())),
            _ => {
                return Err(ParseError::at(
                    at,
                    "process_name",
                    "process_name, target_pid and pidfile name the signal's target: give one",
                ));
            }
        };
        let action = match (&self.signal, target, &self.command) {
            (Some(signal), Some(target), None) => {
                if self.user.is_some() || self.shell || self.stdin_format.is_some() {
                    return Err(ParseError::at(
                        at,
                        "signal",
                        "a signal action takes no user, shell or stdin_format",
                    ));
                }
                Action::Signal {
                    signal: signal.0.0,
                    target,
                }
            }
            (Some(_), None, _) => {
                return Err(ParseError::at(
                    at,
                    "signal",
                    "a signal needs a target: process_name, target_pid or pidfile",
                ));
            }
            (None, Some(_), _) => {
                return Err(ParseError::at(
                    at,
                    "process_name",
                    "process_name, target_pid and pidfile go with signal",
                ));
            }
            (Some(_), _, Some(command)) => {
                return Err(ParseError::at(
                    command,
                    "command",
                    "give either command or signal, not both",
                ));
            }
            (None, None, None) => {
                return Err(ParseError::at(
                    at,
                    "command",
                    "no action: give command = [\"program\", \"arg\", ...] or signal",
                ));
            }
            (None, None, Some(command)) => {
                let words = command.get_ref();
                if words.is_empty() {
                    return Err(ParseError::at(command, "command", "the command is empty"));
                }
                let spec = CommandSpec::new(
                    words.iter().map(OsString::from).collect(),
                    self.shell,
                    self.user.as_ref().map(|u| u.0.0.clone()),
                    self.stdin_format
                        .as_ref()
                        .map_or(StdinFormat::Nul, |s| s.0.0),
                )
                .map_err(|e| ParseError::at(command, "command", e))?;
                Action::Command(spec)
            }
        };
        let max_paths = match &self.max_paths {
            Some(n) if *n.get_ref() == 0 => {
                return Err(ParseError::at(n, "max_paths", "must be at least 1"));
            }
            Some(n) => *n.get_ref() as usize,
            None => defaults::MAX_PATHS as usize,
        };
        let duration =
            |d: &Option<Parsed<Span>>, default: Duration| d.as_ref().map_or(default, |d| d.0.0);
        let kinds = match &self.events {
            Some(events) => {
                let mut kinds: Vec<Kind> = Vec::new();
                for kind in events.0.iter().flat_map(|e| &e.0.0) {
                    if !kinds.contains(kind) {
                        kinds.push(*kind);
                    }
                }
                kinds
            }
            None => Kind::defaults(),
        };
        Ok(JobSpec {
            name,
            dirs,
            kinds,
            process: ProcessFilter {
                pids: self.pid.0.iter().map(|p| p.0.0).collect(),
                uids: self.uid.0.iter().map(|u| u.0.0).collect(),
                comms: self.comm.0.iter().map(|c| c.0).collect(),
                exclude_comms: self.exclude_comm.0.iter().map(|c| c.0).collect(),
            },
            paths: PathFilter {
                include: self.include.0.iter().map(|p| p.0.clone()).collect(),
                exclude: self.exclude.0.iter().map(|p| p.0.clone()).collect(),
            },
            action,
            settle: duration(&self.settle, defaults::SETTLE),
            max_wait: self.max_wait.as_ref().map_or(defaults::MAX_WAIT, |d| d.0.0),
            interval: duration(&self.interval, defaults::INTERVAL),
            timeout: duration(&self.timeout, defaults::TIMEOUT),
            run_at_start: self.run_at_start,
            max_paths,
        })
    }
}

/// A value read from a string (or a number, for the values that can be
/// one) and parsed as `T`; a parse error becomes an error at the value.
#[derive(Debug)]
struct Parsed<T>(T);

impl<'de, T: FromStr> Deserialize<'de> for Parsed<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
                Ok(s.to_owned())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<String, E> {
                Ok(n.to_string())
            }
        }
        let text = d.deserialize_any(Text)?;
        text.parse().map(Parsed).map_err(de::Error::custom)
    }
}

/// One value or an array of them: `uid = "www-data"` or
/// `uid = ["www-data", 1000]`.
#[derive(Debug)]
struct OneOrMany<T>(Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Values<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Values<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or an array of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element()? {
                    values.push(v);
                }
                Ok(values)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<T>, E> {
                T::deserialize(s.into_deserializer()).map(|v| vec![v])
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Vec<T>, E> {
                T::deserialize(n.into_deserializer()).map(|v| vec![v])
            }
        }
        d.deserialize_any(Values(PhantomData)).map(OneOrMany)
    }
}

/// A watch's name: shown in logs, and how a reload knows it again.
#[derive(Debug)]
struct Name(String);

impl FromStr for Name {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.chars().any(char::is_control) {
            return Err("a name must be non-empty, without control characters");
        }
        Ok(Self(s.to_owned()))
    }
}

/// A directory, as written: absolute (whether it exists is checked with
/// the job).
#[derive(Debug)]
struct Dir(PathBuf);

impl FromStr for Dir {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let path = PathBuf::from(s);
        if !path.is_absolute() {
            return Err(format!("`{s}` is relative: give an absolute path"));
        }
        Ok(Self(path))
    }
}

/// Every key a file takes, at the top level and in a `[[watch]]` table,
/// as serde's derive of [`File`] and [`Entry`] accepts them (what
/// watcher.toml(5) must document).
pub fn keys() -> Vec<&'static str> {
    /// A deserializer that only notes the fields a struct asks for.
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields noted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Fields(&mut fields));
        fields
    }
    fields::<File>()
        .iter()
        .chain(fields::<Entry>())
        .copied()
        .filter(|&k| k != "watch")
        .collect()
}

/// Wrappers that give the command line's parsers a `FromStr`.
macro_rules! parsed_with {
    ($($name:ident($ty:ty) = $parse:expr;)*) => {$(
        #[derive(Debug)]
        struct $name($ty);
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                ($parse)(s).map(Self)
            }
        }
    )*};
}

parsed_with! {
    Uid(u32) = parse_uid;
    Signal(i32) = runner::parse_signal;
    Pid(u32) = parse_pid;
    User(RunAs) = |s: &str| user::lookup(s).map_err(|e| e.to_string());
    Stdin(StdinFormat) = |s: &str| StdinFormat::parse(s)
        .map_err(|_| format!("unknown stdin_format `{s}`, expected nul, jsonl or none"));
}

/// Refuses a file that someone other than root could have written: its
/// owner and group, its mode, and those of the directory it is in.
fn check_owner(path: &Path) -> Result<(), ConfigError> {
    let unsafe_because = |at: &Path, reason: String| ConfigError::Unsafe {
        path: at.to_owned(),
        file: path.to_owned(),
        reason,
    };
    let read = |at: &Path| {
        fs::metadata(at).map_err(|source| ConfigError::Read {
            path: at.to_owned(),
            source,
        })
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let file = read(path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for (at, meta) in [(path, file), (dir, read(dir)?)] {
        let mode = meta.permissions().mode();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(unsafe_because(at, format!("owned by uid {}", meta.uid())));
        }
        // A sticky directory (/tmp) lets no one replace another's file.
        let sticky = meta.is_dir() && mode & 0o1000 != 0;
        if mode & 0o002 != 0 && !sticky {
            return Err(unsafe_because(
                at,
                format!("writable by everyone (mode {:04o})", mode & 0o7777),
            ));
        }
        if mode & 0o020 != 0 && meta.gid() != 0 && !sticky {
            return Err(unsafe_because(
                at,
                format!(
                    "writable by group {} (mode {:04o})",
                    meta.gid(),
                    mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// The line of byte `offset` (from 1), and the key there: the one given,
/// or the key of the `key = value` on that line, prefixed with the
/// `[[watch]]` table it belongs to.
fn locate(text: &str, offset: usize, key: Option<&str>) -> (usize, Option<String>) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let this_line = text[line_start..].lines().next().unwrap_or("");
    // The last header up to the offset's line names the table.
    let mut table: Option<String> = None;
    let mut watch_tables = 0;
    for l in text[..line_start].lines().chain([this_line]).map(str::trim) {
        if l.starts_with("[[watch]]") {
            watch_tables += 1;
            table = Some(format!("[[watch]] #{watch_tables}"));
        } else if l.starts_with('[') && !l.starts_with("[[") && l.ends_with(']') {
            table = Some(l.to_owned());
        }
    }
    let key = key.map(str::to_owned).or_else(|| {
        let (k, _) = this_line.split_once('=')?;
        let k = k.trim();
        (!k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .then(|| k.to_owned())
    });
    let place = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}, {k}")),
        (Some(t), None) => Some(t),
        (None, k) => k,
    };
    (line, place)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Lines a configuration is made of: every key, with values of the
    /// right and the wrong kind, and TOML's own syntax.
    fn config_line() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "name",
            "dirs",
            "events",
            "pid",
            "uid",
            "comm",
            "exclude_comm",
            "include",
            "exclude",
            "command",
            "signal",
            "process_name",
            "target_pid",
            "pidfile",
            "shell",
            "user",
            "stdin_format",
            "settle",
            "max_wait",
            "interval",
            "timeout",
            "run_at_start",
            "max_paths",
            "ring_buffer_size",
            "modify_interval",
            "metrics",
            "bogus",
        ]);
        let value = prop::sample::select(vec![
            r#""/tmp""#,
            r#"["/tmp", "/"]"#,
            "[]",
            r#""""#,
            "0",
            "-1",
            "4294967296",
            "true",
            r#""5s""#,
            r#""x""#,
            r#""HUP""#,
            r#"["true"]"#,
            r#""all""#,
            r#""1M""#,
            "{ a = 1 }",
            r#""\u0000""#,
            "1e400",
            r#""[""#,
            "'''\n'''",
            "\"\u{7f}\\n\"",
        ]);
        prop_oneof![
            (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            Just("[[watch]]".to_string()),
            Just("[watch]".to_string()),
            ".{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any text is accepted or refused with a place inside it and a
        /// message; nothing panics.
        #[test]
        fn any_configuration_is_accepted_or_refused(
            lines in prop::collection::vec(config_line(), 0..12),
        ) {
            let text = lines.join("\n");
            if let Err(e) = parse(&text, &|_| false) {
                let (line, _) = locate(&text, e.offset, e.key.as_deref());
                prop_assert!(line >= 1 && line <= text.lines().count() + 1, "line {}", line);
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn any_text_is_accepted_or_refused(text in "\\PC{0,200}") {
            if let Err(e) = parse(&text, &|_| false) {
                let _ = locate(&text, e.offset, e.key.as_deref());
            }
        }
    }

    fn error(text: &str) -> String {
        let e = parse(text, &|_| false).unwrap_err();
        let (line, key) = locate(text, e.offset, e.key.as_deref());
        format!("{line}: {}: {}", key.unwrap_or_default(), e.message)
    }

    #[test]
    fn a_full_watch_round_trips() {
        let text = r#"
            ring_buffer_size = "4M"

            [[watch]]
            name = "media"
            dirs = ["/tmp", "/"]
            events = ["create", "rename", "delete"]
            uid = ["root", 1000]
            comm = "rsync"
            include = ["*.mp3", "*.flac"]
            exclude = ".*.swp"
            settle = "30s"
            interval = "10m"
            timeout = "1h"
            run_at_start = true
            max_paths = 50
            command = ["/bin/sh", "-c", "exit 0"]
            stdin_format = "jsonl"

            [[watch]]
            dirs = ["/tmp"]
            signal = "USR1"
            process_name = "minidlnad"
        "#;
        let config = parse(text, &|_| false).unwrap();
        assert_eq!(config.shared.ring_buffer_size, 4 << 20);
        let [media, second] = &config.jobs[..] else {
            panic!("two jobs")
        };
        assert_eq!(media.name, "media");
        assert_eq!(media.dirs, [PathBuf::from("/tmp"), PathBuf::from("/")]);
        assert_eq!(media.kinds, [Kind::Create, Kind::Rename, Kind::Delete]);
        assert_eq!(media.process.uids, [0, 1000]);
        assert_eq!(media.process.comms, ["rsync".parse::<Comm>().unwrap()]);
        assert_eq!(media.paths.include.len(), 2);
        assert_eq!(media.paths.exclude.len(), 1);
        assert_eq!(media.settle, Duration::from_secs(30));
        assert_eq!(media.interval, Duration::from_secs(600));
        assert_eq!(media.timeout, Duration::from_secs(3600));
        assert!(media.run_at_start);
        assert_eq!(media.max_paths, 50);
        let Action::Command(command) = &media.action else {
            panic!("a command")
        };
        assert_eq!(command.command, ["/bin/sh", "-c", "exit 0"]);
        assert_eq!(command.stdin, StdinFormat::Jsonl);
        assert_eq!(second.name, "/tmp", "named after its first directory");
        assert_eq!(second.kinds, Kind::defaults());
        assert!(matches!(
            &second.action,
            Action::Signal { signal: libc::SIGUSR1, target: Recipient::Name(n) } if n == "minidlnad"
        ));
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let watch = "[[watch]]\ndirs = [\"/tmp\"]\ncommand = [\"/bin/true\"]\n";
        assert_eq!(
            error(&format!("{watch}settle = \"5x\"\n")),
            "4: [[watch]] #1, settle: unknown unit `x` (use ms, s, m or h)"
        );
        assert_eq!(
            error(&format!("{watch}{watch}sttle = \"5s\"\n")),
            "7: [[watch]] #2, sttle: unknown field `sttle`, expected one of `name`, `dirs`, \
             `events`, `pid`, `uid`, `comm`, `exclude_comm`, `include`, `exclude`, `settle`, \
             `max_wait`, `interval`, `timeout`, `run_at_start`, `max_paths`, `command`, `shell`, `user`, \
             `stdin_format`, `signal`, `process_name`, `target_pid`, `pidfile`"
        );
        assert_eq!(
            error(
                "[[watch]]\ndirs = [\n  \"/tmp\",\n  \"/no/such/dir\",\n]\ncommand = [\"/bin/true\"]\n"
            ),
            "2: [[watch]] #1, dirs: /no/such/dir: no such directory"
        );
        assert_eq!(
            error(&format!("{watch}max_paths = \"many\"\n")),
            "4: [[watch]] #1, max_paths: invalid type: string \"many\", expected u32"
        );
        assert_eq!(
            error("[[watch]]\ndirs = [\"/tmp\"]\n"),
            "1: [[watch]] #1, command: no action: give command = [\"program\", \"arg\", ...] or signal"
        );
        assert_eq!(
            error(&format!("{watch}user = \"no-such-user-here\"\n")),
            "4: [[watch]] #1, user: no user named no-such-user-here"
        );
        assert_eq!(
            error("[[watch]\ndirs = [\"/tmp\"]\n"),
            "1: : unclosed array table, expected `]`"
        );
        assert_eq!(
            error(&format!("{watch}bad\n")),
            "4: [[watch]] #1: key with no value, expected `=`"
        );
        assert_eq!(
            error("ring_buffer_size = \"3M\"\n"),
            "1: ring_buffer_size: `3M` must be a power of two from 4k to 1G"
        );
        assert_eq!(
            error(&format!("{watch}settle = \"99999999999999h\"\n")),
            "4: [[watch]] #1, settle: `99999999999999h` is too large: a duration is at most \
             8760h (a year)"
        );
        assert_eq!(
            error(&format!("{watch}pid = [1, 99999999]\n")),
            "4: [[watch]] #1, pid: `99999999` is not a process id (from 1 to 4194303)"
        );
        assert_eq!(
            error(&format!("{watch}name = \"a\"\n{watch}name = \"a\"\n")),
            "8: [[watch]] #2, name: two watches are named `a`; give each its own name"
        );
    }

    #[test]
    fn a_config_writable_by_others_is_refused() {
        let dir = std::env::temp_dir().join(format!("watcher-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join("watcher.toml");
        fs::write(&file, "").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        let refused = check_owner(&file).unwrap_err().to_string();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let accepted = check_owner(&file);
        fs::remove_dir_all(&dir).unwrap();
        assert!(
            refused.contains("writable by everyone (mode 0666)"),
            "{refused}"
        );
        assert!(accepted.is_ok(), "{accepted:?}");
    }
}
