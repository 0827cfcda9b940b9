//! `watcher top`: changes per process and per path over an interval,
//! redrawn in place on a terminal, printed one report after another
//! otherwise, or once (`--once`).

use std::{
    io::{self, IsTerminal, Write},
    time::Duration,
};

use tokio::time::{Instant, sleep_until};
use watcher_core::{
    metrics::EventCounters,
    runner::nothing_to_reload,
    settings::Plan,
    source::Item,
    tally::{Sort, Tally},
    text::rfc3339,
};

use crate::session::{self, Options};

/// What `top` was asked for.
pub struct Settings {
    pub plan: Plan,
    /// Time each report covers.
    pub interval: Duration,
    pub sort: Sort,
    /// Most rows in each table.
    pub limit: usize,
    /// One report, then exit.
    pub once: bool,
}

pub async fn top(settings: Settings, options: Options) -> anyhow::Result<()> {
    let mut session = session::start(&settings.plan, options)?;
    let terminal = io::stdout().is_terminal() && !settings.once;
    let mut tally = Tally::default();
    let mut lost = 0;
    let mut due = Instant::now() + settings.interval;
    let mut counters = session.metrics().map(EventCounters::new);
    // What events name their watch among, for the metrics.
    let mut known = session.known();
    loop {
        let stopping = tokio::select! {
            item = session.next() => {
                if let Item::Moved(_) = item {
                    known = session.known();
                }
                if let Some(counters) = &mut counters {
                    counters.observe(&item, &known);
                }
                match item {
                    Item::Events(events) => {
                        events.iter().for_each(|ev| tally.add(ev));
                        continue;
                    }
                    Item::Lost(new) => {
                        lost += new.iter().map(|(_, n)| n).sum::<u64>();
                        continue;
                    }
                    // Logged by the session; the counts go on.
                    Item::Moved(_) => continue,
                    Item::Hup => {
                        tracing::info!("{}", nothing_to_reload("top"));
                        continue;
                    }
                    Item::Stop => true,
                }
            }
            () = sleep_until(due) => false,
        };
        let report = tally.render(settings.sort, settings.limit, lost);
        let mut out = io::stdout().lock();
        let written = if terminal {
            // Home, clear screen, then the report.
            write!(out, "\x1b[H\x1b[2J{report}")
        } else {
            writeln!(out, "{}\n{report}", rfc3339(session.clock().now()))
        };
        match written.and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
        if stopping || settings.once {
            return Ok(());
        }
        tally = Tally::default();
        lost = 0;
        due = Instant::now() + settings.interval;
    }
}
