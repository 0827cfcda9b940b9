//! `watcher check`: whether this machine can run watcher, one line per
//! check. Exit status 0 when it can, 1 when something it needs is missing.

use aya::{maps::MapType, programs::ProgramType};
use watcher_common::SYSCALL_NAMES;

use crate::{
    bpf::{Probes, RING_BUFFER_BYTES, Setup},
    btf,
    event::Kind,
    filter::ProcessFilter,
    privileges, syscalls, tracefs,
};

/// Oldest kernel with the BPF ring buffer.
const MIN_KERNEL: (u8, u8) = (5, 8);

enum Status {
    Ok,
    /// Works, but something is worth knowing.
    Warn,
    Fail,
    /// Not checked because an earlier check failed.
    Skip,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, status: Status, what: &str, detail: &str) {
        let tag = match status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => {
                self.failed = true;
                "FAIL"
            }
            Status::Skip => "skip",
        };
        println!("{tag:<5} {what:<12} {detail}");
    }
}

/// Runs every check; returns whether watcher can run here.
pub fn run() -> bool {
    let mut r = Report { failed: false };

    let privileged = match privileges::check() {
        Ok(p) => {
            let who = if p.euid == 0 { "root" } else { "not root" };
            r.line(
                Status::Ok,
                "privileges",
                &format!("{who}, {}", p.caps.join(" ")),
            );
            true
        }
        Err(e) => {
            r.line(Status::Fail, "privileges", &e.to_string());
            false
        }
    };

    match procfs::KernelVersion::current() {
        Ok(v) if (v.major, v.minor) >= MIN_KERNEL => r.line(
            Status::Ok,
            "kernel",
            &format!("{}.{}.{}", v.major, v.minor, v.patch),
        ),
        Ok(v) => r.line(
            Status::Fail,
            "kernel",
            &format!(
                "{}.{}.{} is older than {}.{}, which brought the BPF ring buffer",
                v.major, v.minor, v.patch, MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
        Err(e) => r.line(
            Status::Fail,
            "kernel",
            &format!("cannot read the version: {e}"),
        ),
    }

    let kernel = match btf::kernel_offsets() {
        Ok(offsets) => {
            r.line(
                Status::Ok,
                "btf",
                &format!("{}, struct offsets read: exact matching", btf::VMLINUX),
            );
            Some(offsets)
        }
        Err(e) => {
            r.line(Status::Warn, "btf", &format!("{e}; {}", btf::FALLBACK));
            None
        }
    };

    let offsets = if !tracefs::is_mounted() {
        r.line(
            Status::Fail,
            "tracefs",
            &format!(
                "not mounted at {}; watcher mounts it at start, or run: mount -t tracefs tracefs {}",
                tracefs::TRACEFS,
                tracefs::TRACEFS
            ),
        );
        r.line(Status::Skip, "tracepoints", "needs tracefs");
        None
    } else {
        r.line(
            Status::Ok,
            "tracefs",
            &format!("mounted at {}", tracefs::TRACEFS),
        );
        let read = syscalls::read_specs()
            .and_then(|specs| tracefs::read_offsets(&specs).map(|offsets| (specs, offsets)));
        match read {
            Ok((specs, offsets)) => {
                r.line(
                    Status::Ok,
                    "tracepoints",
                    &format!(
                        "{} syscalls of {} traceable, argument offsets read",
                        specs.len(),
                        SYSCALL_NAMES.len() - 1
                    ),
                );
                Some((specs, offsets))
            }
            Err(e) => {
                r.line(Status::Fail, "tracepoints", &e.to_string());
                None
            }
        }
    };

    if !privileged {
        r.line(Status::Skip, "ring buffer", "needs privileges");
        r.line(Status::Skip, "programs", "needs privileges");
        return !r.failed;
    }
    match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => r.line(Status::Ok, "ring buffer", "supported"),
        Ok(false) => r.line(
            Status::Fail,
            "ring buffer",
            "BPF_MAP_TYPE_RINGBUF not supported",
        ),
        Err(e) => r.line(Status::Fail, "ring buffer", &format!("cannot probe: {e}")),
    }
    match aya::sys::is_program_supported(ProgramType::TracePoint) {
        Ok(true) => {}
        Ok(false) => r.line(
            Status::Fail,
            "programs",
            "tracepoint programs not supported",
        ),
        Err(e) => r.line(Status::Fail, "programs", &format!("cannot probe: {e}")),
    }
    match offsets {
        None => r.line(Status::Skip, "programs", "needs the tracepoints"),
        Some((specs, offsets)) => {
            let setup = Setup {
                watches: &[],
                edges: &[],
                specs: &specs,
                offsets: &offsets,
                kernel: kernel.as_ref(),
                ring_buffer_bytes: RING_BUFFER_BYTES,
                event_mask: Kind::mask(&Kind::ALL),
                filters: &ProcessFilter::default(),
            };
            match Probes::load(&setup) {
                Ok(_probes) => r.line(
                    Status::Ok,
                    "programs",
                    &format!(
                        "load, pass the verifier and attach to {} tracepoints",
                        specs.len() * 2 + tracefs::PROCESS_TRACEPOINTS.len()
                    ),
                ),
                Err(e) => r.line(Status::Fail, "programs", &e.to_string()),
            }
        }
    }
    !r.failed
}
