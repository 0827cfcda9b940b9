//! `watcher trace`: one line per event.

use std::{
    io::{self, BufWriter},
    time::Duration,
};

use crate::{
    cli::TraceArgs,
    output::Printer,
    start::{LossWatch, start},
};

pub async fn trace(args: TraceArgs, verbose: bool) -> anyhow::Result<()> {
    let mut w = start(&args.watch, verbose)?;
    let stdout = io::stdout();
    let mut printer = Printer::new(args.format, BufWriter::new(stdout.lock()), &w.watches);
    let mut losses = LossWatch::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            batch = w.events.next_batch(|ev| match ev {
                Ok(ev) => printer.event(&ev),
                Err(e) => {
                    eprintln!("watcher: skipping a malformed event: {e}");
                    Ok(())
                }
            }) => {
                if let Err(e) = batch.and_then(|()| printer.flush()) {
                    break Err(e);
                }
            }
            _ = tick.tick() => {
                losses.check(&w.probes);
            }
            () = w.stop.wait() => break Ok(()),
        }
    };
    losses.check(&w.probes);
    match result {
        // The reader went away (`watcher trace | head`): not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| anyhow::anyhow!("cannot write events: {e}")),
    }
}
