//! `watcher run`: run a command (or send a signal) after changes, batched
//! and one at a time.
//!
//! Every event joins the current batch. The action starts once the batch
//! is not empty, nothing has happened for `--settle`, at least `--interval`
//! has passed since the last start, and no run is going on. Events that
//! arrive during a run form the next batch, so they cause exactly one more
//! run after it. Lost events, and watches the kernel flagged as changed
//! without an event (unless --include or --exclude are given), count as
//! changes.

mod action;
mod batch;
mod signal;
mod user;

use std::{mem, time::Duration};

pub use action::StdinFormat;
pub use signal::parse_signal;
use tokio::time::{Instant, sleep_until};
pub use user::lookup as lookup_user;

use self::{
    action::Running,
    batch::Batch,
    signal::{Target, deliver, signal_name},
};
use crate::{
    bpf::Probes,
    cli::RunArgs,
    start::{LossWatch, start},
};

pub async fn run(args: RunArgs, verbose: bool) -> anyhow::Result<()> {
    // A bad user or command is bad input: refuse it before attaching.
    let user = args.user.as_deref().map(user::lookup).transpose()?;
    if args.signal.is_none() && !args.shell {
        action::check_program(&args.command[0])?;
    }
    let mut w = start(&args.watch, verbose)?;
    let mut losses = LossWatch::default();
    let mut check_tick = tokio::time::interval(Duration::from_secs(1));
    let mut batch = Batch::default();
    let mut last_change: Option<Instant> = None;
    let mut last_start: Option<Instant> = None;
    let mut running: Option<Running> = None;
    let target = match (&args.process_name, args.target_pid, &args.pidfile) {
        (Some(name), _, _) => Some(Target::Name(name.clone())),
        (_, Some(pid), _) => Some(Target::Pid(pid)),
        (_, _, Some(path)) => Some(Target::Pidfile(path.clone())),
        _ => None,
    };
    let spec = action::Spec {
        command: &args.command,
        shell: args.shell,
        user: user.as_ref(),
        stdin: args.stdin_format,
    };
    // Starts the action for `batch`: a command, which runs on, or a signal,
    // which is done at once (Ok(None)).
    let fire = |batch: &Batch| -> anyhow::Result<Option<Running>> {
        match (args.signal, &target) {
            (Some(sig), Some(target)) => {
                let name = signal_name(sig);
                match deliver(sig, target) {
                    Ok(pids) => {
                        let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
                        eprintln!(
                            "watcher: sent {name} to pid {} ({} changes)",
                            pids.join(", "),
                            batch.events
                        );
                    }
                    Err(e) if args.once => anyhow::bail!("cannot send {name}: {e}"),
                    Err(e) => eprintln!("watcher: cannot send {name}: {e}"),
                }
                Ok(None)
            }
            _ => match action::start(&spec, batch, &w.watches) {
                Ok(running) => Ok(Some(running)),
                Err(e) if args.once => anyhow::bail!("cannot start the action: {e}"),
                Err(e) => {
                    eprintln!("watcher: cannot start the action: {e}");
                    Ok(None)
                }
            },
        }
    };

    if args.run_at_start {
        running = fire(&batch)?;
        last_start = Some(Instant::now());
        if running.is_none() && args.once {
            return Ok(());
        }
    }
    loop {
        let due = match (&running, batch.is_empty(), last_change) {
            (None, false, Some(change)) => {
                let settled = change + args.settle;
                Some(last_start.map_or(settled, |s| settled.max(s + args.interval)))
            }
            _ => None,
        };
        tokio::select! {
            batch_read = w.events.next_batch(|ev| {
                match ev {
                    Ok(ev) => batch.add(&ev, args.max_paths as usize),
                    Err(e) => eprintln!("watcher: skipping a malformed event: {e}"),
                }
                Ok(())
            }) => {
                batch_read?;
                last_change = Some(Instant::now());
            }
            _ = check_tick.tick() => {
                // Lost events, and watches the kernel flagged, are changes
                // even when no event arrived for them.
                let was_empty = batch.is_empty();
                batch.add_lost(&losses.check(&w.probes));
                // The kernel flags every hit, also those --include and
                // --exclude leave out: then only events count.
                if !w.events.filters_paths() {
                    batch.flag(&take_flags(&mut w.probes));
                }
                if was_empty && !batch.is_empty() {
                    last_change = Some(Instant::now());
                }
            }
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                // The flags raised by this batch's events are spent; those
                // raised from now on belong to the next batch.
                take_flags(&mut w.probes);
                let done = mem::take(&mut batch);
                running = fire(&done)?;
                last_start = Some(Instant::now());
                if running.is_none() && args.once {
                    return Ok(());
                }
            }
            status = wait(&mut running, args.timeout) => {
                running = None;
                if args.once {
                    let status = status?;
                    anyhow::ensure!(status.success(), "the action failed ({status})");
                    return Ok(());
                }
            }
            () = w.stop.wait() => return Ok(()),
        }
    }
}

/// The watches the kernel flagged as changed, clearing the flags.
fn take_flags(probes: &mut Probes) -> Vec<u32> {
    probes.take_dirty().unwrap_or_else(|e| {
        eprintln!("watcher: cannot read the change flags: {e}");
        Vec::new()
    })
}

/// Waits for the running action, or forever when there is none.
async fn wait(
    running: &mut Option<Running>,
    limit: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    match running {
        Some(r) => r.wait(limit).await,
        None => std::future::pending().await,
    }
}
