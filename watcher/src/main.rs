//! watcher: watches directory trees for writes by tracing syscalls with
//! eBPF, and reports them or runs an action.

mod bpf;
mod btf;
mod cgroup;
mod check;
mod cli;
mod escape;
mod event;
mod filter;
mod journal;
mod output;
mod place;
mod privileges;
mod runner;
mod start;
mod syscalls;
mod top;
mod trace;
mod tracefs;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's message up to its first blank line (some
            // messages list the missing arguments on the lines below),
            // without its "error: " prefix and the usage that follows.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            eprintln!(
                "watcher: {}",
                message.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let invalid = match &cli.command {
        Command::Run(args) => args.validate().err(),
        Command::Trace(args) => args.validate().err(),
        _ => None,
    };
    if let Some(e) = invalid {
        eprintln!("watcher: {e}");
        return ExitCode::from(2);
    }
    let verbose = cli.verbose > 0;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("watcher: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Check => {
            return if check::run() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Trace(args) => runtime.block_on(trace::trace(args, verbose)),
        Command::Run(args) => runtime.block_on(runner::run(args, verbose)),
        Command::Top(args) => runtime.block_on(top::top(args, verbose)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watcher: {e:#}");
            ExitCode::FAILURE
        }
    }
}
