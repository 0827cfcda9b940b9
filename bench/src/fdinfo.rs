//! What /proc/PID/fdinfo says of a process's descriptors (eBPF links,
//! programs and maps among them).

use std::fs;

/// One of a process's descriptors, as /proc/PID/fdinfo describes it
/// (`key:\tvalue` lines).
pub struct FdInfo(String);

impl FdInfo {
    /// The descriptors of process `pid` (those that close meanwhile are
    /// left out).
    pub fn of(pid: u32) -> anyhow::Result<Vec<Self>> {
        let mut infos = Vec::new();
        for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
            if let Ok(info) = fs::read_to_string(entry?.path()) {
                infos.push(Self(info));
            }
        }
        Ok(infos)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }
}
