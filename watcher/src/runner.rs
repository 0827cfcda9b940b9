//! `watcher run`: writes set a flag; every `--interval` the flag is checked
//! and, when it was set, the command runs (without a shell).

use std::{ffi::OsString, os::unix::ffi::OsStrExt, process::ExitStatus, time::Instant};

use tokio::{
    process::{Child, Command},
    time::MissedTickBehavior,
};

use crate::{
    cli::RunArgs,
    escape::escape,
    start::{LossWatch, start},
};

pub async fn run(args: RunArgs, verbose: bool) -> anyhow::Result<()> {
    let mut w = start(&args.dirs, verbose)?;
    let mut losses = LossWatch::default();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Writes since the action last started.
    let mut changes: u64 = 0;
    let mut lost = false;
    let mut running: Option<(Child, Instant)> = None;
    loop {
        tokio::select! {
            batch = w.events.next_batch(|ev| {
                match ev {
                    Ok(_) => changes += 1,
                    Err(e) => eprintln!("watcher: skipping a malformed event: {e}"),
                }
                Ok(())
            }) => batch?,
            _ = tick.tick() => {
                // A lost event may have been a write: run as if it were.
                lost |= losses.check(&w.probes) > 0;
                if (changes > 0 || lost) && running.is_none() {
                    running = Some((spawn(&args.command, changes, lost)?, Instant::now()));
                    changes = 0;
                    lost = false;
                }
            }
            status = wait(&mut running) => {
                let started = running.take().map(|(_, t)| t);
                report(status, started);
            }
            () = w.stop.wait() => break,
        }
    }
    Ok(())
}

fn spawn(command: &[OsString], changes: u64, lost: bool) -> anyhow::Result<Child> {
    let shown: Vec<String> = command.iter().map(|a| escape(a.as_bytes())).collect();
    let shown = shown.join(" ");
    let why = if lost {
        format!("{changes} changes, and events were lost")
    } else {
        format!("{changes} changes")
    };
    eprintln!("watcher: running {shown} ({why})");
    let (program, args) = command.split_first().expect("clap requires a command");
    Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {shown}: {e}"))
}

/// Waits for the running action, or forever when there is none.
async fn wait(running: &mut Option<(Child, Instant)>) -> std::io::Result<ExitStatus> {
    match running {
        Some((child, _)) => child.wait().await,
        None => std::future::pending().await,
    }
}

fn report(status: std::io::Result<ExitStatus>, started: Option<Instant>) {
    let took = started
        .map(|t| t.elapsed().as_secs_f64())
        .unwrap_or_default();
    match status {
        Ok(status) if status.success() => {
            eprintln!("watcher: action finished ({status}) after {took:.3}s");
        }
        Ok(status) => eprintln!("watcher: action failed ({status}) after {took:.3}s"),
        Err(e) => eprintln!("watcher: cannot wait for the action: {e}"),
    }
}
