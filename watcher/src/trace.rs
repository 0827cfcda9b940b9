//! `watcher trace`: one line (or journal entry) per event.

use std::{collections::BTreeMap, io, time::Duration};

use crate::{
    bpf::Probes,
    cli::TraceArgs,
    event::{DecodeError, Event, Kind},
    output::Printer,
    start::{LossWatch, Options, Plan, Watching, start},
};

/// How often the loss counters are read and the watched directories
/// How often the loss counters are read (one map read when nothing was
/// lost): an `overflow` line follows within this time.
const LOSS_CHECK: Duration = Duration::from_millis(200);
/// How often the watched directories are looked at (one `statx` each: with
/// thousands of them, not five times a second), as `run` does.
const DIRS_CHECK: Duration = Duration::from_secs(1);

pub async fn trace(args: TraceArgs, options: Options) -> anyhow::Result<()> {
    // The output first: a file that cannot be opened stops watcher before
    // anything is loaded.
    let mut printer = Printer::new(args.format, args.output.clone(), args.color)?;
    let plan = args.watch.plan();
    let mut w = start(&plan, options)?;
    printer.watches = w.known();
    let mut losses = LossWatch::default();
    let mut tick = tokio::time::interval(LOSS_CHECK);
    let mut dirs_tick = tokio::time::interval(DIRS_CHECK);
    let clock = *w.events.clock();
    let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
    let report_losses =
        |printer: &mut Printer, losses: &mut LossWatch, probes: &mut Probes| -> io::Result<()> {
            let lost: u64 = losses.check(probes).iter().map(|(_, n)| n).sum();
            if lost > 0 {
                printer.overflow(clock.now(), lost, losses.total())?;
                printer.flush()?;
            }
            Ok(())
        };
    let result = loop {
        tokio::select! {
            batch = w.events.next_batch(|ev| show(&mut printer, &mut counts, ev)) => {
                if let Err(e) = batch.and_then(|()| printer.flush()) {
                    break Err(e);
                }
            }
            _ = tick.tick() => {
                if let Err(e) = report_losses(&mut printer, &mut losses, &mut w.probes) {
                    break Err(e);
                }
            }
            _ = dirs_tick.tick() => {
                if let Err(e) = follow(&mut w, &plan, &mut printer) {
                    break Err(e);
                }
            }
            _ = w.hup.recv() => {
                if let Err(e) = printer.reopen() {
                    break Err(e);
                }
            }
            () = w.stop.wait() => break Ok(()),
        }
    };
    // What is still in the ring buffer, then the last losses.
    let result = result
        .and_then(|()| w.events.drain(|ev| show(&mut printer, &mut counts, ev)))
        .and_then(|()| printer.flush())
        .and_then(|()| report_losses(&mut printer, &mut losses, &mut w.probes));
    if args.stats {
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
            losses.total(),
            w.events.filtered
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

/// Watches the directories named anew when one went away or was
/// replaced, and says so in the output.
fn follow(w: &mut Watching, plan: &Plan, printer: &mut Printer) -> io::Result<()> {
    let moved = w.follow(plan);
    if moved.is_empty() {
        return Ok(());
    }
    printer.watches = w.known();
    let now = w.events.clock().now();
    for m in &moved {
        printer.moved(now, m)?;
    }
    printer.flush()
}

/// Prints one event and counts it by kind.
fn show(
    printer: &mut Printer,
    counts: &mut BTreeMap<Kind, u64>,
    ev: Result<Event, DecodeError>,
) -> io::Result<()> {
    match ev {
        Ok(ev) => {
            *counts.entry(ev.kind).or_default() += 1;
            printer.event(&ev)
        }
        Err(e) => {
            tracing::warn!("skipping a malformed event: {e}");
            Ok(())
        }
    }
}
