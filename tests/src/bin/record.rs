//! Test helper used as watcher's action: `record LOG [--hold FILE] [--exit N]`
//! appends one JSON line to LOG per run, with every `WATCHER_*` variable and
//! its stdin in hex (`{"env": {...}, "stdin_hex": "..."}`). With `--hold`
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
    let mut line = serde_json::to_vec(&serde_json::json!({"env": env, "stdin_hex": hex})).unwrap();
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
