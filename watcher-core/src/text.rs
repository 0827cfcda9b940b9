//! Events as readable text: one aligned line each, control characters
//! escaped.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::{escape::escape, event::Event, kind::Kind};

/// One aligned line: time, kind, pid, uid, comm, path (`OLD -> NEW` for
/// renames and links), then syscall and flags.
pub fn text_line(ev: &Event, color: bool) -> String {
    let flags = ev.syscall.flag_names(ev.flags);
    // Padded before it is painted, so that the columns stay aligned.
    let kind = paint(
        &format!("{:<11}", ev.kind.name()),
        kind_color(ev.kind),
        color,
    );
    format!(
        "{} {kind} {:>7} {:>5} {:<16} {}  ({}{}{}{}{})",
        rfc3339(ev.time_ns),
        ev.pid,
        ev.uid,
        escape(&ev.comm),
        paths_shown(ev),
        ev.syscall,
        if flags.is_empty() { "" } else { " " },
        flags,
        match ev.writes {
            Some(1) => ", 1 write".to_string(),
            Some(n) => format!(", {n} writes"),
            None => String::new(),
        },
        match ev.watch_id {
            None => ", watch undecided",
            Some(_) => "",
        },
    )
}

/// The event's path, escaped, as `OLD -> NEW` for renames and hard links;
/// a truncated path starts with `.../`; the path the writer used, when it
/// differs, follows in `[seen as ...]`.
pub fn paths_shown(ev: &Event) -> String {
    let shown = |path: &[u8], truncated, writer_path: &Option<Vec<u8>>| {
        let seen = writer_path
            .as_deref()
            .map(|p| format!(" [seen as {}]", escape(p)))
            .unwrap_or_default();
        format!(
            "{}{}{seen}",
            if truncated { ".../" } else { "" },
            escape(path)
        )
    };
    let old = ev
        .old
        .as_ref()
        .map(|old| format!("{} -> ", shown(&old.path, old.truncated, &old.writer_path)))
        .unwrap_or_default();
    format!("{old}{}", shown(&ev.path, ev.truncated, &ev.writer_path))
}

/// `text` in SGR color `sgr` when `color` is on.
pub fn paint(text: &str, sgr: &str, color: bool) -> String {
    if color {
        format!("\x1b[{sgr}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// SGR color of each kind in text on a terminal.
fn kind_color(kind: Kind) -> &'static str {
    match kind {
        Kind::Create | Kind::Mkdir | Kind::Link => "32",
        Kind::Delete => "31",
        Kind::Rename => "33",
        Kind::Write | Kind::CloseWrite | Kind::Modify => "34",
        Kind::Truncate => "35",
        Kind::Attrib => "36",
    }
}

/// RFC 3339 in UTC with nanoseconds.
pub fn rfc3339(time_ns: i128) -> String {
    let secs = time_ns.div_euclid(1_000_000_000) as i64;
    let nanos = time_ns.rem_euclid(1_000_000_000) as u32;
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_with_nanoseconds() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}
