//! Where events go: stdout, a file (`--output`) or the systemd journal, in
//! the format asked for.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, IsTerminal, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use crate::{
    choice::Choice,
    escape::{self, escape},
    event::Event,
    journal::Journal,
    json::{self, Field, fields},
    text::{paint, paths_shown, rfc3339, text_line},
    watch::{Moved, Watch},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Journal,
}

impl Choice for Format {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            Self::Text,
            "text",
            "One aligned line per event, control characters escaped",
        ),
        (
            Self::Json,
            "json",
            "One JSON object per line (schema in docs/events.md)",
        ),
        (
            Self::Journal,
            "journal",
            "Structured entries in the systemd journal (WATCHER_* fields)",
        ),
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl Choice for Color {
    const CHOICES: &'static [(Self, &'static str, &'static str)] = &[
        (
            Self::Auto,
            "auto",
            "When writing text to a terminal, unless NO_COLOR is set",
        ),
        (Self::Always, "always", ""),
        (Self::Never, "never", ""),
    ];
}

/// Where events go.
enum Sink {
    Stdout(BufWriter<io::Stdout>),
    /// `--output FILE`: appended to, reopened on SIGHUP (logrotate).
    File(PathBuf, BufWriter<File>),
    Journal(Journal),
    #[cfg(test)]
    Buffer(Vec<u8>),
}

impl Sink {
    fn writer(&mut self) -> Option<&mut dyn Write> {
        match self {
            Self::Stdout(w) => Some(w),
            Self::File(_, w) => Some(w),
            Self::Journal(_) => None,
            #[cfg(test)]
            Self::Buffer(b) => Some(b),
        }
    }
}

/// Why an output file is refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    // The cause is in the message, not a source of its own: every line
    // that shows the error shows it once.
    #[error("cannot open {}: {cause}", escape::path(.path))]
    Open { path: PathBuf, cause: io::Error },
    #[error("{}: a symbolic link; name the file itself", escape::path(.0))]
    Symlink(PathBuf),
    #[error(
        "{}: writable by everyone (mode {mode:04o}); remove that first (chmod o-w)",
        escape::path(.path)
    )]
    WorldWritable { path: PathBuf, mode: u32 },
    #[error(
        "{}: owned by another user (uid {owner}) in a sticky directory anyone may write to; \
         write somewhere only root can",
        escape::path(.path)
    )]
    OthersInSticky { path: PathBuf, owner: u32 },
    #[error("{}: not a regular file or a character device", escape::path(.0))]
    NotAFile(PathBuf),
}

/// Creates or appends to `path`, readable by its owner and group only when
/// it is created. A final symbolic link is not followed (one planted in
/// /tmp could point at any file root can write); an existing file anyone
/// may write to, or one another user owns in a sticky directory such as
/// /tmp, is refused: others could rewrite the record. Character devices
/// (`/dev/null`) are taken as they are.
fn open_output(path: &Path) -> Result<File, OutputError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|cause| {
            // ELOOP, or EACCES for O_CREAT in a sticky directory.
            if path.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
                OutputError::Symlink(path.to_owned())
            } else {
                OutputError::Open {
                    path: path.to_owned(),
                    cause,
                }
            }
        })?;
    let open_err = |cause| OutputError::Open {
        path: path.to_owned(),
        cause,
    };
    let meta = file.metadata().map_err(open_err)?;
    let kind = meta.file_type();
    if kind.is_char_device() {
        return Ok(file);
    }
    if !kind.is_file() {
        return Err(OutputError::NotAFile(path.to_owned()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(OutputError::WorldWritable {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = dir.metadata().map_err(open_err)?;
        let sticky_open = dir.permissions().mode() & 0o1002 == 0o1002;
        if sticky_open && meta.uid() != dir.uid() {
            return Err(OutputError::OthersInSticky {
                path: path.to_owned(),
                owner: meta.uid(),
            });
        }
    }
    Ok(file)
}

pub struct Printer {
    format: Format,
    sink: Sink,
    /// The watches, for the JSON and journal `watch` field: set once they
    /// are known, after the output was opened.
    pub watches: Vec<Watch>,
    color: bool,
    /// The line being written: rendered here, then written whole (the
    /// sink's writer is called once per event, not for every piece).
    line: Vec<u8>,
}

impl Printer {
    /// Events in `format` to `output` (stdout when `None`).
    pub fn new(format: Format, output: Option<PathBuf>, color: Color) -> anyhow::Result<Self> {
        let sink = match (format, output) {
            // `TraceArgs::validate` refuses an output file with it.
            (Format::Journal, _) => Sink::Journal(
                Journal::connect()
                    .map_err(|e| anyhow::anyhow!("cannot reach the systemd journal: {e}"))?,
            ),
            (_, Some(path)) => {
                let file = open_output(&path)?;
                Sink::File(path, BufWriter::new(file))
            }
            (_, None) => Sink::Stdout(BufWriter::new(io::stdout())),
        };
        let color = format == Format::Text
            && match color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    matches!(sink, Sink::Stdout(_))
                        && io::stdout().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                }
            };
        Ok(Self {
            format,
            sink,
            watches: Vec::new(),
            color,
            line: Vec::new(),
        })
    }

    #[cfg(test)]
    fn to_buffer(format: Format, watches: Vec<Watch>) -> Self {
        Self {
            format,
            sink: Sink::Buffer(Vec::new()),
            watches,
            color: false,
            line: Vec::new(),
        }
    }

    /// `--output FILE`: reopens it, after logrotate moved it away. When it
    /// cannot be opened anew, events go on to the file open until now
    /// (none is lost), and the reason is logged.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File(path, w) = &mut self.sink {
            w.flush()?;
            match open_output(path) {
                Ok(file) => *w = BufWriter::new(file),
                Err(e) => {
                    tracing::error!("SIGHUP: {e}; events still go to the file open until now")
                }
            }
        }
        Ok(())
    }

    /// Where events go, for messages: the file's path, stdout or the
    /// journal.
    pub fn destination(&self) -> String {
        match &self.sink {
            Sink::Stdout(_) => "stdout".into(),
            Sink::File(path, _) => escape::path(path),
            Sink::Journal(_) => "the systemd journal".into(),
            #[cfg(test)]
            Sink::Buffer(_) => "a buffer".into(),
        }
    }

    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        // The field list only for the formats that use it: text is the
        // default, and this runs for every event.
        let watch = || {
            self.watches
                .iter()
                .find(|w| Some(w.id) == ev.watch_id)
                .map(|w| w.root.as_os_str().as_bytes())
        };
        match self.format {
            Format::Text => {
                let line = text_line(ev, self.color);
                let w = self.sink.writer().ok_or_else(no_writer)?;
                w.write_all(line.as_bytes())?;
                w.write_all(b"\n")
            }
            Format::Json => {
                self.line.clear();
                json::write_line(&mut self.line, &fields(ev, watch()))?;
                let w = self.sink.writer().ok_or_else(no_writer)?;
                w.write_all(&self.line)
            }
            Format::Journal => {
                let fields = fields(ev, watch());
                let message = format!(
                    "{} {} by {}[{}]",
                    ev.kind.name(),
                    paths_shown(ev),
                    escape(&ev.comm),
                    ev.pid
                );
                Self::journal(&mut self.sink, &message, 6, &fields, Some(ev.pid))
            }
        }
    }

    /// Events the kernel could not send (the ring buffer was full): `lost`
    /// since the last report, `total` since start.
    pub fn overflow(&mut self, time_ns: i128, lost: u64, total: u64) -> io::Result<()> {
        let fields = vec![
            ("time", Field::Text(rfc3339(time_ns).into())),
            ("event", Field::Text("overflow".into())),
            ("lost", Field::Uint(lost)),
            ("lost_total", Field::Uint(total)),
        ];
        let message = format!("{lost} events lost (ring buffer full), {total} in all");
        match self.format {
            Format::Text => {
                let kind = paint("overflow", "1;31", self.color);
                let w = self.sink.writer().ok_or_else(no_writer)?;
                writeln!(w, "{} {kind:<11} {message}", rfc3339(time_ns))
            }
            Format::Json => json::write_line(self.sink.writer().ok_or_else(no_writer)?, &fields),
            Format::Journal => Self::journal(&mut self.sink, &message, 4, &fields, None),
        }
    }

    /// A watched directory went away, or is watched again.
    pub fn moved(&mut self, time_ns: i128, m: &Moved) -> io::Result<()> {
        let (kind, root) = match m {
            Moved::Gone { root, .. } => ("unwatched", root),
            Moved::Back { root, .. } => ("rewatched", root),
        };
        let message = m.message();
        let mut fields = vec![
            ("time", Field::Text(rfc3339(time_ns).into())),
            ("event", Field::Text(kind.into())),
            ("watch", Field::Bytes(root.as_os_str().as_bytes())),
        ];
        match m {
            Moved::Gone { why, .. } => fields.push(("reason", Field::Text(why.as_str().into()))),
            Moved::Back { replaced: true, .. } => fields.push(("replaced", Field::Flag)),
            Moved::Back { .. } => {}
        }
        match self.format {
            Format::Text => {
                let shown = paint(kind, "1;33", self.color);
                let w = self.sink.writer().ok_or_else(no_writer)?;
                writeln!(w, "{} {shown:<11} {message}", rfc3339(time_ns))
            }
            Format::Json => json::write_line(self.sink.writer().ok_or_else(no_writer)?, &fields),
            Format::Journal => Self::journal(&mut self.sink, &message, 4, &fields, None),
        }
    }

    fn journal(
        sink: &mut Sink,
        message: &str,
        priority: u8,
        fields: &[(&str, Field)],
        object_pid: Option<u32>,
    ) -> io::Result<()> {
        let Sink::Journal(journal) = sink else {
            return Err(no_writer());
        };
        let mut entry: Vec<(String, Vec<u8>)> = vec![
            ("MESSAGE".into(), message.as_bytes().to_vec()),
            ("PRIORITY".into(), priority.to_string().into_bytes()),
            ("SYSLOG_IDENTIFIER".into(), b"watcher".to_vec()),
        ];
        if let Some(pid) = object_pid {
            // journald adds the OBJECT_* fields of that process if it still runs.
            entry.push(("OBJECT_PID".into(), pid.to_string().into_bytes()));
        }
        for (key, value) in fields {
            if let Some(bytes) = value.journal_bytes() {
                entry.push((format!("WATCHER_{}", key.to_ascii_uppercase()), bytes));
            }
        }
        journal.send(&entry)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.sink.writer() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

fn no_writer() -> io::Error {
    io::Error::other("the journal takes entries, not lines")
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsStr, sync::Arc};

    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use serde_json::Value;

    use super::*;
    use crate::event::Program;

    fn event(path: &[u8]) -> Event {
        Event {
            time_ns: 1_700_000_000_123_456_789,
            pid: 42,
            tid: 43,
            flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64,
            comm: b"tee".to_vec(),
            ..Event::test_write(path, 0)
        }
    }

    fn render(format: Format, ev: &Event) -> String {
        let watches = vec![Watch {
            id: 0,
            root: "/srv/media".into(),
            key: watcher_common::InodeKey::default(),
            named: Vec::new(),
        }];
        let mut printer = Printer::to_buffer(format, watches);
        printer.event(ev).unwrap();
        let Sink::Buffer(buf) = printer.sink else {
            unreachable!()
        };
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_directory_gone_or_back_is_one_escaped_line() {
        let root = PathBuf::from(OsStr::from_bytes(b"/srv/m\nx\xff"));
        let gone = Moved::Gone {
            dir: root.clone(),
            root: root.clone(),
            why: "/srv/m\\nx\\xff: no such directory".into(),
        };
        let back = Moved::Back {
            dir: root.clone(),
            root,
            id: 1,
            replaced: true,
        };
        let print = |format, m: &Moved| {
            let mut printer = Printer::to_buffer(format, Vec::new());
            printer.moved(0, m).unwrap();
            let Sink::Buffer(buf) = printer.sink else {
                unreachable!()
            };
            String::from_utf8(buf).unwrap()
        };
        let text = print(Format::Text, &gone);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(" unwatched   /srv/m\\nx\\xff: no such directory: not watched until")
        );
        assert!(print(Format::Text, &back).contains(" rewatched   /srv/m\\nx\\xff: another"));
        let json: Value = serde_json::from_str(&print(Format::Json, &back)).unwrap();
        assert_eq!(json["event"], "rewatched");
        assert_eq!(json["replaced"], true);
        assert_eq!(json["watch_base64"], STANDARD.encode(b"/srv/m\nx\xff"));
        let json: Value = serde_json::from_str(&print(Format::Json, &gone)).unwrap();
        assert_eq!(json["reason"], "/srv/m\\nx\\xff: no such directory");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let line = render(Format::Json, &event(b"/srv/media/a.mp3"));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "write");
        assert_eq!(v["path"], "/srv/media/a.mp3");
        assert_eq!(v["watch"], "/srv/media");
        assert_eq!(v["name"], "/srv/media/a.mp3");
        assert!(v.get("truncated").is_none());
        assert_eq!(v["pid"], 42);
        assert_eq!(v["tid"], 43);
        assert_eq!(v["comm"], "tee");
        assert_eq!(v["flags"], "O_WRONLY|O_CREAT|O_TRUNC");
        assert!(v.get("path_base64").is_none());
    }

    /// `exe_deleted` is a flag: after `exe_truncated` in JSON, present only
    /// when true, and `WATCHER_EXE_DELETED=1` in the journal.
    #[test]
    fn a_deleted_executable_is_a_flag() {
        let mut ev = event(b"/srv/media/a");
        let mut program = Program {
            exe: Some(b"/usr/local/bin/gone".to_vec()),
            ..Program::default()
        };
        ev.who.program = Some(Arc::new(program.clone()));
        let v: Value = serde_json::from_str(&render(Format::Json, &ev)).unwrap();
        assert!(v.get("exe_deleted").is_none(), "{v}");
        program.exe_deleted = true;
        ev.who.program = Some(Arc::new(program));
        let line = render(Format::Json, &ev);
        assert!(
            line.contains(r#""exe":"/usr/local/bin/gone","exe_deleted":true,"cmdline""#),
            "{line}"
        );
        let f = fields(&ev, None);
        let (_, flag) = f.iter().find(|(k, _)| *k == "exe_deleted").unwrap();
        assert_eq!(flag.journal_bytes(), Some(b"1".to_vec()));
    }

    #[test]
    fn hostile_names_stay_on_one_line_and_lossless() {
        let name = b"/srv/media/a\nb\x1b[2J$(touch /tmp/pwned)\xff";
        let text = render(Format::Text, &event(name));
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.contains("a\\nb\\u{1b}[2J$(touch /tmp/pwned)\\xff"));
        let json = render(Format::Json, &event(name));
        assert_eq!(json.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["path_base64"], STANDARD.encode(name));
    }
}
