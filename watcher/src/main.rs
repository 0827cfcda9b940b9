//! watcher: watches directory trees for writes by tracing syscalls with
//! eBPF, and reports them or runs an action.
//!
//! This crate is the kernel side (BTF, tracefs, loading the programs, the
//! session over their ring buffer) and the commands; what needs neither
//! the kernel nor root is in `watcher-core`. Modules are declared from the
//! bottom layer up: each imports only those declared before it.

mod log;
mod btf;
mod kfunc;
mod tracefs;
mod syscalls;
mod bpf;
mod ring;
mod exporter;
mod session;
mod trace;
mod top;
mod run;
mod check;
mod cli;
mod man;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use watcher_core::error::Causes;

use crate::{
    cli::{Cli, Command},
    session::Options,
};

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
    log::init(
        cli.verbose.min(i8::MAX as u8) as i8 - cli.quiet.min(i8::MAX as u8) as i8,
        cli.bpf_log,
    );
    let options = Options {
        verbose: cli.verbose > 0,
        bpf_log: cli.bpf_log,
        metrics: match &cli.command {
            Command::Trace(args) => args.watch.metrics,
            Command::Top(args) => args.watch.metrics,
            Command::Run(args) => args.watch.metrics,
            Command::Serve(args) => args.metrics,
            _ => None,
        }
        .map(|m| m.0),
        reloads: matches!(cli.command, Command::Serve(_)),
    };
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
        Command::Check(args) => return ExitCode::from(check::run(args.config.as_deref())),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "watcher",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => man::write(&dir),
        Command::Trace(args) => runtime.block_on(trace::trace(args.settings(), options)),
        Command::Run(args) => runtime.block_on(async {
            // A bad user or command is bad input: refused before attaching.
            let job = args.job()?;
            run::run(job, args.watch.shared(), args.once, options).await
        }),
        Command::Serve(args) => runtime.block_on(run::serve(&args.config, options)),
        Command::Top(args) => runtime.block_on(top::top(args.settings(), options)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watcher: {}", Causes(&e));
            ExitCode::FAILURE
        }
    }
}
