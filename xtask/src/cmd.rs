//! Running commands: a progress line per step, a failure that names the
//! command, and the Debian packages a step needs, installed when missing.

use std::{ffi::OsString, process::Command};

use anyhow::{Context as _, bail, ensure};

/// Prints a progress line: what xtask does, and on what.
pub fn step(what: &str, detail: &str) {
    eprintln!("xtask: {what:<24} {detail}");
}

/// Arguments as one line, for a progress line.
pub fn show(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}

/// Runs a command and returns its stdout, or None when it cannot run or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the Debian `packages` that are missing; `what` names them in
/// the progress line.
pub fn apt_packages(what: &str, packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|pkg| {
            output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", pkg]))
                .as_deref()
                != Some("installed")
        })
        .collect();
    if missing.is_empty() {
        step(what, "already installed");
        return Ok(());
    }
    step(what, &format!("installing {}", missing.join(" ")));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "installing {} needs root: run `sudo apt-get install {}` or run xtask as root",
            missing.join(" "),
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
