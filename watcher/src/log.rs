//! Logging to stderr through `tracing`: one line per message, `watcher: `
//! first, the level after it unless it is info. `-v`/`-q` move the level,
//! `RUST_LOG` (e.g. `RUST_LOG=debug`) replaces it. Under systemd, when
//! stderr is the journal (`JOURNAL_STREAM`), each line starts with its
//! syslog priority (`<4>`), which the journal turns into the entry's
//! priority.

use std::{fmt, os::fd::AsRawFd as _};

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// The target the eBPF programs' own logs (`--bpf-log`) are given.
pub const BPF_TARGET: &str = "bpf";

/// Starts logging. `verbosity` is the number of `-v` less the number of
/// `-q`; `bpf_log` lets the eBPF programs' debug lines through.
pub fn init(verbosity: i8, bpf_log: bool) {
    let level = match verbosity {
        i8::MIN..=-2 => Level::ERROR,
        -1 => Level::WARN,
        0 => Level::INFO,
        1 => Level::DEBUG,
        2..=i8::MAX => Level::TRACE,
    };
    // watcher's own lines at `level`; other crates' (aya's) warnings only,
    // unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let bpf = if bpf_log { "debug" } else { "off" };
        EnvFilter::new(format!("warn,watcher={level},{BPF_TARGET}={bpf}"))
    });
    let format = Line {
        journal: stderr_is_journal(),
    };
    // Fails only when a subscriber is already set: not in this program.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(format)
        .try_init();
}

/// Whether stderr is the journal's stream (`JOURNAL_STREAM` is `dev:ino`
/// of the socket systemd connected it to).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    // SAFETY: stat is plain data; all zeros is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on stderr with a valid out buffer.
    if unsafe { libc::fstat(std::io::stderr().as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino)
}

/// `[<priority>]watcher: [level: ][bpf: ]message`.
struct Line {
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Lines from the `log` crate (aya, aya-log) carry their target
        // in fields; normalized, they read as tracing's own.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let (priority, label) = match *meta.level() {
            Level::ERROR => (3, "error: "),
            Level::WARN => (4, "warning: "),
            Level::INFO => (6, ""),
            Level::DEBUG => (7, "debug: "),
            Level::TRACE => (7, "trace: "),
        };
        if self.journal {
            write!(writer, "<{priority}>")?;
        }
        write!(writer, "watcher: {label}")?;
        if meta.target() == BPF_TARGET {
            write!(writer, "bpf: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
