//! The built-in signal action: what `pkill -HUP NAME` did, with no shell
//! and no extra process.

use std::{fs, io, path::PathBuf};

use watcher_common::TASK_COMM_LEN;

use crate::escape::{self, escape};

/// Who gets the signal.
#[derive(Clone, Debug)]
pub enum Recipient {
    /// Every process with exactly this name (as `pkill -x`): its `comm`,
    /// which the kernel cuts to 15 bytes.
    Name(String),
    Pid(i32),
    /// The pid written in this file, read anew each time.
    Pidfile(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("no process is named {}", escape(.0.as_bytes()))]
    NoProcess(String),
    #[error("cannot list processes: {0}")]
    Proc(#[from] procfs::ProcError),
    #[error("cannot read pid file {}: {source}", escape::path(path))]
    Pidfile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid file {} holds no pid", escape::path(.0))]
    BadPidfile(PathBuf),
    #[error("cannot signal pid {pid}: {source}")]
    Kill {
        pid: i32,
        #[source]
        source: io::Error,
    },
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("WINCH", libc::SIGWINCH),
];

/// Parses `HUP`, `SIGHUP`, `hup` or a number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is not a signal number"))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, sig)| sig)
        .ok_or_else(|| format!("unknown signal `{s}` (e.g. HUP, USR1, TERM, or a number)"))
}

pub fn signal_name(sig: i32) -> String {
    SIGNALS
        .iter()
        .find(|&&(_, s)| s == sig)
        .map_or_else(|| format!("signal {sig}"), |(n, _)| format!("SIG{n}"))
}

/// Sends `signal` to `target`; returns the pids that got it.
pub fn deliver(signal: i32, target: &Recipient) -> Result<Vec<i32>, SignalError> {
    let pids = match target {
        Recipient::Pid(pid) => vec![*pid],
        Recipient::Pidfile(path) => {
            let text = fs::read_to_string(path).map_err(|source| SignalError::Pidfile {
                path: path.clone(),
                source,
            })?;
            let pid = text
                .trim()
                .parse()
                .ok()
                .filter(|&p: &i32| p > 0)
                .ok_or_else(|| SignalError::BadPidfile(path.clone()))?;
            vec![pid]
        }
        Recipient::Name(name) => {
            // The kernel keeps TASK_COMM_LEN - 1 bytes of a name.
            let comm = &name.as_bytes()[..name.len().min(TASK_COMM_LEN - 1)];
            let me = std::process::id() as i32;
            let pids: Vec<i32> = procfs::process::all_processes()?
                .filter_map(Result::ok)
                // A process may be gone between listing and reading.
                .filter_map(|p| p.stat().ok())
                .filter(|stat| stat.pid != me && stat.comm.as_bytes() == comm)
                .map(|stat| stat.pid)
                .collect();
            if pids.is_empty() {
                return Err(SignalError::NoProcess(name.clone()));
            }
            pids
        }
    };
    for &pid in &pids {
        // SAFETY: kill(2) with a positive pid touches no memory.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(SignalError::Kill {
                pid,
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("HUP"), Ok(libc::SIGHUP));
        assert_eq!(parse_signal("sigusr1"), Ok(libc::SIGUSR1));
        assert_eq!(parse_signal("15"), Ok(libc::SIGTERM));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("999").is_err());
        assert_eq!(signal_name(libc::SIGHUP), "SIGHUP");
    }
}
