//! Start-up time and memory by tree size, beside `inotifywait -r`.

use std::{fs, path::Path, process::Command, time::Duration};

use anyhow::Context as _;

use crate::{
    fdinfo::FdInfo,
    process::{Proc, Ready},
    stat::Stat,
};

/// `size` directories under `root` (itself included), a thousand to a
/// parent, so that no directory is unusually large.
pub fn make_tree(root: &Path, size: usize) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root)?;
    let mut made = 1;
    let mut parent = 0;
    while made < size {
        let dir = root.join(format!("p{parent}"));
        fs::create_dir(&dir)?;
        made += 1;
        for child in 0..999 {
            if made >= size {
                break;
            }
            fs::create_dir(dir.join(format!("c{child}")))?;
            made += 1;
        }
        parent += 1;
    }
    Ok(())
}

/// One start of one tool.
#[derive(Clone, Copy)]
pub struct Start {
    /// Time from spawning to the tool saying it watches, or `None` when it
    /// gave up.
    pub ready: Option<Duration>,
    /// Resident memory once ready, bytes.
    pub rss: u64,
    /// Kernel memory the tool's BPF maps hold (watcher), bytes.
    pub maps: u64,
    /// Time from SIGINT to the exit (watcher), once ready.
    pub stop: Option<Duration>,
}

#[derive(Default)]
pub struct Samples(pub Vec<Start>);

impl Samples {
    pub fn ready_ms(&self) -> Option<Stat> {
        self.ms(|s| s.ready)
    }

    pub fn stop_ms(&self) -> Option<Stat> {
        self.ms(|s| s.stop)
    }

    /// Milliseconds of `f`, when every start has it.
    fn ms(&self, f: impl Fn(&Start) -> Option<Duration>) -> Option<Stat> {
        let ms: Option<Vec<f64>> = self
            .0
            .iter()
            .map(|s| f(s).map(|d| d.as_secs_f64() * 1e3))
            .collect();
        ms.map(|v| Stat::of(&v))
    }

    pub fn mb(&self, f: impl Fn(&Start) -> u64) -> Stat {
        let v: Vec<f64> = self.0.iter().map(|s| f(s) as f64 / 1e6).collect();
        Stat::of(&v)
    }
}

pub struct ScaleRow {
    pub size: usize,
    pub watcher: Samples,
    pub inotify: Samples,
}

pub fn start_watcher(bin: &Path, tree: &Path) -> anyhow::Result<Start> {
    let (proc, ready) = Proc::start(
        Command::new(bin).arg("trace").arg(tree),
        Ready::stderr("watching"),
    )?;
    let ready = ready.context("watcher did not start")?;
    let pid = proc.id();
    let (rss, maps) = (rss(pid)?, bpf_map_bytes(pid)?);
    Ok(Start {
        ready: Some(ready),
        rss,
        maps,
        stop: Some(proc.time_stop(libc::SIGINT)?),
    })
}

/// `inotifywait -r -m` on `tree`, for the changes watcher reports by default.
pub fn inotifywait(tree: &Path) -> Command {
    let mut cmd = Command::new("inotifywait");
    cmd.args([
        "-r",
        "-m",
        "-e",
        "modify,close_write,create,moved_to,delete",
    ])
    .arg(tree);
    cmd
}

pub fn start_inotifywait(tree: &Path) -> anyhow::Result<Start> {
    let (proc, ready) = Proc::start(
        &mut inotifywait(tree),
        Ready::stderr("Watches established").failing("upper limit"),
    )?;
    let rss = rss(proc.id()).unwrap_or(0);
    Ok(Start {
        ready,
        rss,
        maps: 0,
        stop: None,
    })
}

/// VmRSS of `pid`, bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS")
}

/// Kernel memory of the BPF maps `pid` holds open (`memlock` in their
/// fdinfo).
fn bpf_map_bytes(pid: u32) -> anyhow::Result<u64> {
    Ok(FdInfo::of(pid)?
        .iter()
        .filter(|info| info.get("map_type").is_some())
        .filter_map(|info| info.number("memlock"))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_have_the_size_asked_for() {
        let dir = std::env::temp_dir().join(format!("watcher-bench-tree-{}", std::process::id()));
        make_tree(&dir, 2_345).unwrap();
        let count = walk(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(count, 2_345);
    }

    fn walk(dir: &Path) -> usize {
        1 + fs::read_dir(dir)
            .unwrap()
            .map(|e| walk(&e.unwrap().path()))
            .sum::<usize>()
    }
}
