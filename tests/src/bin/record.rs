//! Test helper used as watcher's action: `record LOG [--hold FILE] [--exit N]`
//! appends one JSON line to LOG per run, with every `WATCHER_*` variable,
//! its stdin in hex, its ids, pid and capabilities from /proc, and the
//! names of the systemd variables it got, and the size of each file its
//! stdin names (NUL-separated; null when there is none) when it runs
//! (`{"env": {...}, "systemd_env": [...], "stdin_hex": "...", "sizes":
//! [...], "process": {"uid": ...}}`). With `--hold`
//! it then waits until FILE exists; with `--exit` it exits with N.

use std::{
    fs::OpenOptions,
    io::{Read, Write},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let log = PathBuf::from(
        args.next()
            .expect("usage: record LOG [--hold FILE] [--exit N]"),
    );
    let (mut hold, mut exit) = (None, 0);
    while let Some(flag) = args.next() {
        let value = args.next().expect("flag value");
        match flag.to_str() {
            Some("--hold") => hold = Some(PathBuf::from(value)),
            Some("--exit") => {
                exit = value
                    .to_str()
                    .and_then(|v| v.parse().ok())
                    .expect("exit code")
            }
            _ => panic!("unknown flag {flag:?}"),
        }
    }
    let mut stdin = Vec::new();
    std::io::stdin()
        .read_to_end(&mut stdin)
        .expect("read stdin");
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .filter(|(k, _)| k.starts_with("WATCHER_"))
        .map(|(k, v)| (k, v.into()))
        .collect();
    let hex: String = stdin.iter().map(|b| format!("{b:02x}")).collect();
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let process = serde_json::json!({
        "uid": field("Uid:"),
        "gid": field("Gid:"),
        "groups": field("Groups:"),
        "cap_eff": field("CapEff:"),
        "cap_prm": field("CapPrm:"),
        "cap_bnd": field("CapBnd:"),
        "cap_amb": field("CapAmb:"),
        "pid": std::process::id(),
    });
    // What systemd gives a service for itself, if it reached the action.
    let systemd: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| {
            ["NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_", "LISTEN_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    let sizes: Vec<Option<u64>> = stdin
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            use std::os::unix::ffi::OsStrExt as _;
            std::fs::metadata(std::ffi::OsStr::from_bytes(p))
                .ok()
                .map(|m| m.len())
        })
        .collect();
    let mut line = serde_json::to_vec(&serde_json::json!({
        "env": env,
        "systemd_env": systemd,
        "stdin_hex": hex,
        "sizes": sizes,
        "process": process,
    }))
    .unwrap();
    line.push(b'\n');
    // One append: a whole line or nothing, even if runs overlapped.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("open log")
        .write_all(&line)
        .expect("write log");
    if let Some(hold) = hold {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !hold.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
    std::process::exit(exit);
}
