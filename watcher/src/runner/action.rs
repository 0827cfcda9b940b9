//! Starting the action: no shell, what changed in its environment, the
//! changed paths on its stdin; and reporting how it ended.

use std::{
    ffi::OsString,
    io,
    os::unix::ffi::OsStrExt,
    process::{ExitStatus, Stdio},
    time::Instant,
};

use tokio::{
    io::AsyncWriteExt as _,
    process::{Child, Command},
};

use super::batch::Batch;
use crate::{escape::escape, watch::Watch};

/// How the changed paths reach the action's stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StdinFormat {
    /// Each path followed by a NUL byte (like `find -print0`).
    Nul,
    /// One JSON object per line: `{"path": ...}`, and a last line
    /// `{"truncated": true, "omitted": N}` when paths were left out.
    Jsonl,
    /// Nothing: stdin is /dev/null.
    None,
}

pub struct Running {
    child: Child,
    started: Instant,
}

/// Starts `command` for `batch`.
pub fn start(
    command: &[OsString],
    batch: &Batch,
    watches: &[Watch],
    stdin: StdinFormat,
) -> io::Result<Running> {
    let (program, args) = command.split_first().expect("clap requires a command");
    let shown: Vec<String> = command.iter().map(|a| escape(a.as_bytes())).collect();
    let lost = if batch.lost > 0 {
        format!(", {} events lost", batch.lost)
    } else {
        String::new()
    };
    eprintln!(
        "watcher: running {} ({} changes{lost})",
        shown.join(" "),
        batch.events
    );
    let roots: Vec<&[u8]> = watches
        .iter()
        .filter(|w| batch.watches.contains(&w.id))
        .map(|w| w.root.as_os_str().as_bytes())
        .collect();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(
            "WATCHER_WATCHES",
            std::ffi::OsStr::from_bytes(&roots.join(&b'\n')),
        )
        .env("WATCHER_EVENTS", batch.events.to_string())
        .env("WATCHER_WRITES", batch.writes.to_string())
        .env("WATCHER_LOST", batch.lost.to_string())
        .env("WATCHER_PATHS", batch.paths.len().to_string())
        .env("WATCHER_PATHS_OMITTED", batch.omitted.to_string())
        .stdin(if stdin == StdinFormat::None {
            Stdio::null()
        } else {
            Stdio::piped()
        });
    let mut child = cmd.spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        let data = stdin_bytes(batch, stdin);
        // In its own task: an action that does not read its stdin must not
        // hold up watcher. EPIPE (it exited without reading) is fine.
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    Ok(Running {
        child,
        started: Instant::now(),
    })
}

fn stdin_bytes(batch: &Batch, format: StdinFormat) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        StdinFormat::None => {}
        StdinFormat::Nul => {
            for path in &batch.paths {
                out.extend_from_slice(path);
                out.push(0);
            }
        }
        StdinFormat::Jsonl => {
            for path in &batch.paths {
                let mut obj = serde_json::Map::new();
                crate::output::insert_bytes(&mut obj, "path", path);
                let _ = serde_json::to_writer(&mut out, &obj);
                out.push(b'\n');
            }
            if batch.omitted > 0 {
                let _ = serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({"truncated": true, "omitted": batch.omitted}),
                );
                out.push(b'\n');
            }
        }
    }
    out
}

impl Running {
    /// Waits for the action to end and logs how it did.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await;
        let took = self.started.elapsed().as_secs_f64();
        match &status {
            Ok(s) if s.success() => eprintln!("watcher: action finished ({s}) after {took:.3}s"),
            Ok(s) => eprintln!("watcher: action failed ({s}) after {took:.3}s"),
            Err(e) => eprintln!("watcher: cannot wait for the action: {e}"),
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn batch(paths: &[&[u8]], cap: usize) -> Batch {
        let mut b = Batch::default();
        for p in paths {
            b.add(&Event::test_write(p, 0), cap);
        }
        b
    }

    #[test]
    fn nul_separated_paths_are_byte_exact() {
        let b = batch(&[b"/w/a\nb", b"/w/\xff$(x)"], 10);
        assert_eq!(stdin_bytes(&b, StdinFormat::Nul), b"/w/a\nb\0/w/\xff$(x)\0");
    }

    #[test]
    fn json_lines_mark_the_cap() {
        let b = batch(&[b"/w/a", b"/w/b", b"/w/c"], 1);
        let text = String::from_utf8(stdin_bytes(&b, StdinFormat::Jsonl)).unwrap();
        assert_eq!(
            text,
            "{\"path\":\"/w/a\"}\n{\"truncated\":true,\"omitted\":2}\n"
        );
    }
}
