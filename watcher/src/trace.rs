//! `watcher trace`: one line (or journal entry) per event.

use std::{collections::BTreeMap, io, path::PathBuf};

use watcher_core::{
    kind::Kind,
    metrics::EventCounters,
    output::{Color, Format, Printer},
    settings::Plan,
    source::Item,
};

use crate::session::{self, Options, Session};

/// What `trace` was asked for.
pub struct Settings {
    pub plan: Plan,
    pub format: Format,
    /// Events to this file rather than stdout.
    pub output: Option<PathBuf>,
    pub color: Color,
    /// Counts at exit, to stderr.
    pub stats: bool,
}

pub async fn trace(settings: Settings, options: Options) -> anyhow::Result<()> {
    // The output first: a file that cannot be opened stops watcher before
    // anything is loaded.
    let mut printer = Printer::new(settings.format, settings.output, settings.color)?;
    let mut session = session::start(&settings.plan, options)?;
    printer.watches = session.known();
    let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut counters = session.metrics().map(EventCounters::new);
    let result = loop {
        let item = session.next().await;
        if let Some(counters) = &mut counters {
            // The printer's watches are the session's, anew at each move.
            counters.observe(&item, &printer.watches);
        }
        let shown = match item {
            Item::Stop => break Ok(()),
            item => show(&mut printer, &mut session, &mut counts, item),
        };
        if let Err(e) = shown {
            break Err(e);
        }
    };
    if settings.stats {
        let total: u64 = counts.values().sum();
        let by_kind: Vec<String> = counts
            .iter()
            .map(|(kind, n)| format!("{} {n}", kind.name()))
            .collect();
        eprintln!(
            "watcher: stats: {total} events ({}), {} lost, {} left out by --include/--exclude",
            if by_kind.is_empty() {
                "none".to_string()
            } else {
                by_kind.join(", ")
            },
            session.lost_total(),
            session.filtered()
        );
    }
    match result {
        // The reader went away (`watcher trace | head`): not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => {
            r.map_err(|e| anyhow::anyhow!("cannot write events to {}: {e}", printer.destination()))
        }
    }
}

/// Writes one item out (counting events by kind) and flushes.
fn show(
    printer: &mut Printer,
    session: &mut Session,
    counts: &mut BTreeMap<Kind, u64>,
    item: Item,
) -> io::Result<()> {
    let now = || session.clock().now();
    match item {
        Item::Events(events) => {
            for ev in &events {
                *counts.entry(ev.kind).or_default() += 1;
                printer.event(ev)?;
            }
        }
        Item::Lost(lost) => {
            let lost = lost.iter().map(|(_, n)| n).sum();
            printer.overflow(now(), lost, session.lost_total())?;
        }
        Item::Moved(moved) => {
            printer.watches = session.known();
            for m in &moved {
                printer.moved(now(), m)?;
            }
        }
        Item::Hup => printer.reopen()?,
        Item::Stop => {}
    }
    printer.flush()
}
