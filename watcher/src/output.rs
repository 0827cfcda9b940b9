//! Writing events as readable text or as JSON Lines.

use std::{
    io::{self, Write},
    os::unix::ffi::OsStrExt,
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::{
    escape::escape,
    event::{Event, is_open},
    watch::Watch,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One aligned line per event, control characters escaped.
    Text,
    /// One JSON object per line.
    Json,
}

pub struct Printer<'a, W: Write> {
    format: Format,
    out: W,
    watches: &'a [Watch],
}

impl<'a, W: Write> Printer<'a, W> {
    pub fn new(format: Format, out: W, watches: &'a [Watch]) -> Self {
        Self {
            format,
            out,
            watches,
        }
    }

    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        let watch = self
            .watches
            .iter()
            .find(|w| Some(w.id) == ev.watch_id)
            .map(|w| w.root.as_os_str().as_bytes());
        match self.format {
            Format::Text => {
                let shown = |path: &[u8], truncated| {
                    format!("{}{}", if truncated { ".../" } else { "" }, escape(path))
                };
                let old = ev
                    .old
                    .as_ref()
                    .map(|old| format!("{} -> ", shown(&old.path, old.truncated)))
                    .unwrap_or_default();
                let flags = flag_names(ev.syscall, ev.flags);
                writeln!(
                    self.out,
                    "{} {:<11} {:>7} {:<16} {old}{}  ({}{}{}{})",
                    rfc3339(ev.time_ns),
                    ev.kind.name(),
                    ev.pid,
                    escape(&ev.comm),
                    shown(&ev.path, ev.truncated),
                    ev.syscall,
                    if flags.is_empty() { "" } else { " " },
                    flags,
                    match ev.watch_id {
                        None => ", watch undecided",
                        Some(_) => "",
                    },
                )
            }
            Format::Json => {
                let mut obj = Map::new();
                obj.insert("time".into(), rfc3339(ev.time_ns).into());
                obj.insert("event".into(), ev.kind.name().into());
                obj.insert("syscall".into(), ev.syscall.into());
                insert_bytes(&mut obj, "path", &ev.path);
                insert_bytes(&mut obj, "name", &ev.name);
                if ev.truncated {
                    obj.insert("truncated".into(), true.into());
                }
                if let Some(old) = &ev.old {
                    insert_bytes(&mut obj, "old_path", &old.path);
                    insert_bytes(&mut obj, "old_name", &old.name);
                    if old.truncated {
                        obj.insert("old_truncated".into(), true.into());
                    }
                }
                match watch {
                    Some(watch) => insert_bytes(&mut obj, "watch", watch),
                    None => {
                        obj.insert("watch".into(), Value::Null);
                    }
                }
                obj.insert("pid".into(), ev.pid.into());
                obj.insert("tid".into(), ev.tid.into());
                obj.insert("uid".into(), ev.uid.into());
                obj.insert("gid".into(), ev.gid.into());
                insert_bytes(&mut obj, "comm", &ev.comm);
                obj.insert("flags".into(), json!(flag_names(ev.syscall, ev.flags)));
                if let Some(fd) = ev.fd {
                    obj.insert("fd".into(), fd.into());
                }
                serde_json::to_writer(&mut self.out, &Value::Object(obj))?;
                self.out.write_all(b"\n")
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Inserts `bytes` as a string under `key`. Bytes that are not UTF-8
/// cannot be a JSON string: then `key` holds a lossy rendering and
/// `key_base64` the exact bytes.
pub fn insert_bytes(obj: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            obj.insert(key.into(), s.into());
        }
        Err(_) => {
            obj.insert(key.into(), String::from_utf8_lossy(bytes).into());
            obj.insert(format!("{key}_base64"), base64(bytes).into());
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 3339 in UTC with nanoseconds.
pub fn rfc3339(time_ns: i128) -> String {
    let secs = time_ns.div_euclid(1_000_000_000) as i64;
    let nanos = time_ns.rem_euclid(1_000_000_000) as u32;
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The flags argument of `syscall` by name, `|`-separated, with unknown
/// bits in octal (opens) or hex; empty when there are none.
pub fn flag_names(syscall: &str, flags: u64) -> String {
    const RENAME: &[(u64, &str)] = &[
        (libc::RENAME_NOREPLACE as u64, "RENAME_NOREPLACE"),
        (libc::RENAME_EXCHANGE as u64, "RENAME_EXCHANGE"),
        (libc::RENAME_WHITEOUT as u64, "RENAME_WHITEOUT"),
    ];
    const AT: &[(u64, &str)] = &[
        (libc::AT_SYMLINK_NOFOLLOW as u64, "AT_SYMLINK_NOFOLLOW"),
        (libc::AT_REMOVEDIR as u64, "AT_REMOVEDIR"),
        (libc::AT_SYMLINK_FOLLOW as u64, "AT_SYMLINK_FOLLOW"),
        (libc::AT_EMPTY_PATH as u64, "AT_EMPTY_PATH"),
    ];
    if is_open(syscall) {
        return open_flag_names(flags);
    }
    let named = if syscall == "renameat2" { RENAME } else { AT };
    let mut names = Vec::new();
    let mut rest = flags;
    for &(bits, name) in named {
        if rest & bits == bits {
            names.push(name.to_string());
            rest &= !bits;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join("|")
}

/// Open flags by name, `|`-separated, with unknown bits in octal.
fn open_flag_names(flags: u64) -> String {
    const NAMED: &[(i32, &str)] = &[
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_NOCTTY, "O_NOCTTY"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_SYNC, "O_SYNC"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_LARGEFILE, "O_LARGEFILE"),
        (libc::O_TMPFILE, "O_TMPFILE"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
    ];
    let mut names = vec![
        match flags & libc::O_ACCMODE as u64 {
            0 => "O_RDONLY",
            1 => "O_WRONLY",
            2 => "O_RDWR",
            _ => "O_ACCMODE",
        }
        .to_string(),
    ];
    let mut rest = flags & !(libc::O_ACCMODE as u64);
    for &(bits, name) in NAMED {
        let bits = bits as u64;
        // Multi-bit flags (O_SYNC, O_TMPFILE) need all their bits.
        if rest & bits == bits && bits != 0 {
            names.push(name.to_string());
            rest &= !bits;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#o}"));
    }
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let watches = [Watch {
            id: 0,
            root: "/srv/media".into(),
            key: watcher_common::InodeKey::default(),
            named: Vec::new(),
        }];
        let mut buf = Vec::new();
        Printer::new(format, &mut buf, &watches).event(ev).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn flags_by_name() {
        assert_eq!(flag_names("openat", 0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(
            flag_names("open", (libc::O_RDWR | libc::O_SYNC) as u64),
            "O_RDWR|O_SYNC"
        );
        assert_eq!(
            flag_names("creat", 0o2 | 1 << 40),
            "O_RDWR|0o20000000000000"
        );
        assert_eq!(flag_names("renameat2", 2), "RENAME_EXCHANGE");
        assert_eq!(
            flag_names("unlinkat", 0x200 | 1 << 20),
            "AT_REMOVEDIR|0x100000"
        );
        assert_eq!(flag_names("rename", 0), "");
    }

    #[test]
    fn time_is_rfc3339_with_nanoseconds() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
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

    #[test]
    fn hostile_names_stay_on_one_line_and_lossless() {
        let name = b"/srv/media/a\nb\x1b[2J$(touch /tmp/pwned)\xff";
        let text = render(Format::Text, &event(name));
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.contains("a\\nb\\x1b[2J$(touch /tmp/pwned)\\xff"));
        let json = render(Format::Json, &event(name));
        assert_eq!(json.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["path_base64"], base64(name));
    }
}
