//! Events as JSON (the schema is in docs/events.md) and as journal
//! fields: one list of fields for both.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde::{Serializer as _, ser::SerializeMap};

use crate::{
    escape::escape,
    event::{Event, Program},
    text::rfc3339,
};

/// Version of the JSON schema (`"v"` in every object; docs/events.md).
pub const SCHEMA_VERSION: u32 = 1;

/// A field's value, rendered by JSON and the journal alike.
#[derive(Debug)]
pub enum Field<'e> {
    /// Bytes from the kernel (paths, names): a JSON string, with a
    /// `_base64` twin when not UTF-8.
    Bytes(&'e [u8]),
    Text(Cow<'e, str>),
    Uint(u64),
    Int(i64),
    /// Present only when true.
    Flag,
    Null,
    /// Command-line arguments: a JSON array of strings, with a `_base64`
    /// twin array when one is not UTF-8.
    Args(&'e [Vec<u8>]),
}

impl Field<'_> {
    pub fn journal_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Bytes(b) => Some(b.to_vec()),
            Self::Text(t) => Some(t.as_bytes().to_vec()),
            Self::Uint(n) => Some(n.to_string().into_bytes()),
            Self::Int(n) => Some(n.to_string().into_bytes()),
            Self::Flag => Some(b"1".to_vec()),
            Self::Null => None,
            Self::Args(args) => Some(
                args.iter()
                    .map(|a| quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into_bytes(),
            ),
        }
    }
}

/// One argument of a command line, escaped, and in single quotes (as the
/// shell reads them) when it is empty or holds a space or a quote, so
/// that the arguments can be told apart.
fn quote(arg: &[u8]) -> String {
    let escaped = escape(arg);
    if escaped.is_empty() || escaped.contains([' ', '\'', '"']) {
        format!("'{}'", escaped.replace('\'', "'\\''"))
    } else {
        escaped
    }
}

/// Every field of an event, in the order of docs/events.md. Optional
/// fields are left out when they do not apply; flags only when true.
pub fn fields<'e>(ev: &'e Event, watch: Option<&'e [u8]>) -> Vec<(&'static str, Field<'e>)> {
    let who = &ev.who;
    // Not known: no executable, no arguments.
    const UNKNOWN: &Program = &Program {
        exe: None,
        exe_truncated: false,
        exe_deleted: false,
        cmdline: Vec::new(),
        cmdline_truncated: false,
    };
    let program = who.program.as_deref().unwrap_or(UNKNOWN);
    let opt = |v: Option<u32>| v.map_or(Field::Null, |v| Field::Uint(v.into()));
    // Room for every field (33 at most): one allocation.
    let mut f = Vec::with_capacity(33);
    f.extend([
        ("time", Field::Text(rfc3339(ev.time_ns).into())),
        ("event", Field::Text(ev.kind.name().into())),
        ("syscall", Field::Text(ev.syscall.name().into())),
        ("path", Field::Bytes(&ev.path)),
        ("name", Field::Bytes(&ev.name)),
    ]);
    if ev.truncated {
        f.push(("truncated", Field::Flag));
    }
    if let Some(writer_path) = &ev.writer_path {
        f.push(("writer_path", Field::Bytes(writer_path)));
    }
    if let Some(old) = &ev.old {
        f.push(("old_path", Field::Bytes(&old.path)));
        f.push(("old_name", Field::Bytes(&old.name)));
        if old.truncated {
            f.push(("old_truncated", Field::Flag));
        }
        if let Some(writer_path) = &old.writer_path {
            f.push(("old_writer_path", Field::Bytes(writer_path)));
        }
    }
    f.push(("watch", watch.map_or(Field::Null, Field::Bytes)));
    f.extend([
        ("pid", Field::Uint(ev.pid.into())),
        ("tid", Field::Uint(ev.tid.into())),
        ("ppid", opt(who.ppid)),
        ("uid", Field::Uint(ev.uid.into())),
        ("gid", Field::Uint(ev.gid.into())),
        ("euid", opt(who.euid)),
        ("egid", opt(who.egid)),
        ("loginuid", opt(who.loginuid)),
        ("comm", Field::Bytes(&ev.comm)),
        (
            "exe",
            program.exe.as_deref().map_or(Field::Null, Field::Bytes),
        ),
    ]);
    if program.exe_truncated {
        f.push(("exe_truncated", Field::Flag));
    }
    if program.exe_deleted {
        f.push(("exe_deleted", Field::Flag));
    }
    f.push(("cmdline", Field::Args(&program.cmdline)));
    if program.cmdline_truncated {
        f.push(("cmdline_truncated", Field::Flag));
    }
    let cgroup = who.cgroup.as_deref();
    f.extend([
        ("cgroup_id", Field::Uint(who.cgroup_id)),
        (
            "cgroup",
            cgroup.map_or(Field::Null, |c| Field::Bytes(&c.path)),
        ),
        (
            "container_id",
            cgroup
                .and_then(|c| c.container.as_deref())
                .map_or(Field::Null, |id| Field::Text(id.into())),
        ),
        ("mntns", opt(who.mntns)),
        ("flags", Field::Text(ev.syscall.flag_names(ev.flags).into())),
    ]);
    if let Some(fd) = ev.fd {
        f.push(("fd", Field::Int(fd)));
    }
    if let Some(writes) = ev.writes {
        f.push(("writes", Field::Uint(writes.into())));
    }
    f
}

/// Writes the JSON object of `fields` to `w`, with no value in between
/// (this runs for every event). Bytes that are not UTF-8 cannot be a JSON
/// string: their key holds a lossy rendering and `KEY_base64` the exact
/// bytes.
pub fn write_json<'f, 'e: 'f, W: Write>(
    w: W,
    fields: impl IntoIterator<Item = &'f (&'f str, Field<'e>)>,
) -> io::Result<()> {
    let mut ser = serde_json::Serializer::new(w);
    let mut map = ser.serialize_map(None)?;
    for (key, value) in fields {
        match value {
            Field::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => map.serialize_entry(key, s)?,
                Err(_) => {
                    map.serialize_entry(key, &String::from_utf8_lossy(b))?;
                    map.serialize_entry(&format!("{key}_base64"), &BASE64.encode(b))?;
                }
            },
            Field::Text(t) => map.serialize_entry(key, t.as_ref())?,
            Field::Uint(n) => map.serialize_entry(key, n)?,
            Field::Int(n) => map.serialize_entry(key, n)?,
            Field::Flag => map.serialize_entry(key, &true)?,
            Field::Null => map.serialize_entry(key, &())?,
            Field::Args(args) => {
                let lossy: Vec<Cow<str>> =
                    args.iter().map(|a| String::from_utf8_lossy(a)).collect();
                map.serialize_entry(key, &lossy)?;
                if args.iter().any(|a| std::str::from_utf8(a).is_err()) {
                    let exact: Vec<String> = args.iter().map(|a| BASE64.encode(a)).collect();
                    map.serialize_entry(&format!("{key}_base64"), &exact)?;
                }
            }
        }
    }
    SerializeMap::end(map).map_err(io::Error::from)
}

/// One line of the JSON output: `"v"`, then `fields`.
pub fn write_line<W: Write>(mut w: W, fields: &[(&str, Field)]) -> io::Result<()> {
    let version = ("v", Field::Uint(SCHEMA_VERSION.into()));
    write_json(&mut w, std::iter::once(&version).chain(fields))?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn json_is_written_as_serde_json_reads_it() {
        let args = [b"a\"b".to_vec(), b"\xff\n".to_vec()];
        let mut out = Vec::new();
        write_json(
            &mut out,
            &[
                ("path", Field::Bytes(b"/x/\xfe")),
                ("text", Field::Text("t\u{1b}".into())),
                ("n", Field::Uint(u64::MAX)),
                ("i", Field::Int(-100)),
                ("f", Field::Flag),
                ("z", Field::Null),
                ("cmdline", Field::Args(&args)),
                ("none", Field::Args(&[])),
            ],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "path": "/x/\u{fffd}", "path_base64": BASE64.encode(b"/x/\xfe"),
                "text": "t\u{1b}", "n": u64::MAX, "i": -100, "f": true, "z": null,
                "cmdline": ["a\"b", "\u{fffd}\n"],
                "cmdline_base64": [BASE64.encode(b"a\"b"), BASE64.encode(b"\xff\n")],
                "none": [],
            })
        );
        let mut empty = Vec::new();
        write_json(&mut empty, &[]).unwrap();
        assert_eq!(empty, b"{}");
    }

    #[test]
    fn journal_arguments_can_be_told_apart() {
        let args = [
            b"a b".to_vec(),
            Vec::new(),
            b"it's".to_vec(),
            b"x\n".to_vec(),
        ];
        let joined = Field::Args(&args).journal_bytes().unwrap();
        assert_eq!(joined, br"'a b' '' 'it'\''s' x\n");
    }
}
