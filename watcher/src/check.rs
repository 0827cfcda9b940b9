//! `watcher check`: whether this machine can run watcher, and whether a
//! configuration's watches can be set up; one line per check. Exit status
//! 0 when all is well, 1 when something watcher needs is missing, 2 when
//! the configuration is bad, 3 when watcher runs but with a warning.

use std::path::Path;

use aya::{maps::MapType, programs::ProgramType};
use watcher_common::{IoUringOffsets, TracepointOffsets};
use watcher_core::{
    config, filter::ProcessFilter, kind::Kind, privileges, settings::defaults, syscall::Syscall,
};

use crate::{
    bpf::{self, Loader, Probes, Setup},
    btf, kfunc, syscalls, tracefs,
};

/// Oldest kernel with every helper the programs call: the ring buffer
/// (5.8), `bpf_loop` (5.17) and the ring buffer's dynptrs (5.19), which
/// write an event of the exact size.
const MIN_KERNEL: (u8, u8) = (5, 19);

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
    warned: bool,
}

impl Report {
    fn line(&mut self, status: Status, what: &str, detail: &str) {
        let tag = match status {
            Status::Ok => "ok",
            Status::Warn => {
                self.warned = true;
                "warn"
            }
            Status::Fail => {
                self.failed = true;
                "FAIL"
            }
            Status::Skip => "skip",
        };
        say(tag, what, detail);
    }
}

/// Prints one line; a closed stdout (`check | head`) is not an error.
fn say(tag: &str, what: &str, detail: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{tag:<5} {what:<12} {detail}");
}

/// Oldest kernel that charges BPF memory to the cgroup rather than to
/// RLIMIT_MEMLOCK.
const MEMCG_KERNEL: (u8, u8) = (5, 11);

/// Runs every check, and those of the configuration at `config`; returns
/// the exit status.
pub fn run(config: Option<&Path>) -> u8 {
    let mut r = Report {
        failed: false,
        warned: false,
    };
    let config_bad = config.is_some_and(|path| !check_config(&mut r, path));
    check_machine(&mut r);
    if r.failed {
        1
    } else if config_bad {
        2
    } else if r.warned {
        3
    } else {
        0
    }
}

/// The configuration and each directory it watches; whether it loads.
fn check_config(r: &mut Report, path: &Path) -> bool {
    match config::load(path, &|_| false) {
        Ok(config) => {
            r.line(
                Status::Ok,
                "config",
                &format!("{}: {} watches", path.display(), config.jobs.len()),
            );
            for job in &config.jobs {
                for dir in &job.dirs {
                    r.line(
                        Status::Ok,
                        "watch",
                        &format!("{}: {} is a directory", job.name, dir.display()),
                    );
                }
            }
            true
        }
        Err(e) => {
            // Not `Fail`: the machine may be fine; exit status 2 says which.
            say("FAIL", "config", &e.to_string());
            false
        }
    }
}

/// What the machine offers.
fn check_machine(r: &mut Report) {
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
                "{}.{}.{} is older than {}.{}, which brought the ring buffer's dynptrs the programs use",
                v.major, v.minor, v.patch, MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
        Err(e) => r.line(
            Status::Fail,
            "kernel",
            &format!("cannot read the version: {e}"),
        ),
    }

    check_memlock(r);

    let kernel = match btf::kernel() {
        Ok(kernel) => {
            r.line(
                Status::Ok,
                "btf",
                &format!("{}, struct offsets read: exact matching", btf::VMLINUX),
            );
            Some(kernel)
        }
        Err(e) => {
            r.line(Status::Warn, "btf", &format!("{e}; {}", btf::FALLBACK));
            None
        }
    };

    let offsets = match tracefs::state() {
        tracefs::State::NotMounted => {
            // `trace`, `run`, `serve` and `top` mount it themselves (and
            // say so): watcher runs here, so a warning, not a failure.
            r.line(
                Status::Warn,
                "tracefs",
                &format!(
                    "not mounted at {}: watcher mounts it at start (or: mount -t tracefs tracefs {})",
                    tracefs::TRACEFS,
                    tracefs::TRACEFS
                ),
            );
            r.line(Status::Skip, "tracepoint", "needs tracefs mounted");
            None
        }
        tracefs::State::Unreadable(why) => {
            // Without the privileges to run watcher, it is their line that
            // fails, not the machine's tracefs.
            r.line(
                if privileged {
                    Status::Fail
                } else {
                    Status::Skip
                },
                "tracefs",
                &format!("mounted at {}, but not readable: {why}", tracefs::TRACEFS),
            );
            r.line(Status::Skip, "tracepoint", "needs tracefs readable");
            None
        }
        tracefs::State::Readable => {
            r.line(
                Status::Ok,
                "tracefs",
                &format!("mounted at {}", tracefs::TRACEFS),
            );
            let read = syscalls::read_specs()
                .and_then(|specs| syscalls::read_offsets(&specs).map(|offsets| (specs, offsets)));
            match read {
                Ok((specs, offsets)) => {
                    for syscall in Syscall::traced() {
                        let name = syscall.name();
                        if specs.iter().any(|s| s.syscall == syscall) {
                            r.line(
                                Status::Ok,
                                "tracepoint",
                                &format!("syscalls/sys_enter_{name}, sys_exit_{name}"),
                            );
                        } else {
                            r.line(
                                Status::Warn,
                                "tracepoint",
                                &format!(
                                    "syscalls/sys_enter_{name} is missing: changes made by {name} are not seen"
                                ),
                            );
                        }
                    }
                    // read_offsets read their formats, so they are there: a
                    // missing one makes it fail, reported by the Err arm.
                    for (category, name) in tracefs::PROCESS_TRACEPOINTS {
                        r.line(Status::Ok, "tracepoint", &format!("{category}/{name}"));
                    }
                    Some((specs, offsets))
                }
                Err(e) => {
                    r.line(Status::Fail, "tracepoint", &e.to_string());
                    None
                }
            }
        }
    };

    if !privileged {
        r.line(Status::Skip, "ring buffer", "needs privileges");
        r.line(Status::Skip, "programs", "needs privileges");
        return;
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
            let io_uring = io_uring_line(r, kernel.as_ref().map(|(_, btf)| btf), &offsets);
            let fast_reads = reads_line(r, kernel.as_ref().map(|(_, btf)| &**btf));
            let setup = Setup {
                specs: &specs,
                offsets: &offsets,
                kernel: kernel.as_ref().map(|(offsets, _)| offsets),
                io_uring: io_uring.as_ref(),
                ring_buffer_bytes: defaults::RING_BUFFER_BYTES,
                log_level: 0,
                fast_reads,
                watching: &bpf::Watching {
                    watches: &[],
                    edges: &[],
                    event_mask: Kind::mask(&Kind::ALL),
                    filters: &ProcessFilter::default(),
                    tag_actions: false,
                    modify_interval: defaults::MODIFY_INTERVAL,
                },
                kinds: Kind::mask(&Kind::ALL),
            };
            match Probes::load(&setup, Loader::start()) {
                Ok((probes, ..)) => r.line(
                    Status::Ok,
                    "programs",
                    &format!(
                        "load, pass the verifier and attach to {} tracepoints",
                        probes.attached()
                    ),
                ),
                Err(e) => r.line(Status::Fail, "programs", &e.to_string()),
            }
        }
    }
}

/// Whether io_uring operations are followed, on its own line: the
/// request's offsets when they are (exact mode only: with the kernel's
/// `btf`).
fn io_uring_line(
    r: &mut Report,
    btf: Option<&btf::KernelBtf>,
    offsets: &TracepointOffsets,
) -> Option<IoUringOffsets> {
    let Some(btf) = btf else {
        r.line(
            Status::Warn,
            "io_uring",
            "not followed without BTF: operations submitted through io_uring are not seen",
        );
        return None;
    };
    match btf::io_uring(btf, offsets) {
        Ok(Some(io)) => {
            r.line(
                Status::Ok,
                "io_uring",
                "io_uring/io_uring_submit_req, io_uring_complete: operations followed",
            );
            Some(io)
        }
        Ok(None) => {
            r.line(
                Status::Ok,
                "io_uring",
                "this kernel has no io_uring tracepoints: nothing to follow",
            );
            None
        }
        Err(e) => {
            r.line(
                Status::Warn,
                "io_uring",
                &format!("{e}: operations submitted through io_uring are not seen"),
            );
            None
        }
    }
}

/// Whether the BPF maps' memory fits: charged to the cgroup on newer
/// kernels, against RLIMIT_MEMLOCK on older ones.
fn check_memlock(r: &mut Report) {
    let newer = procfs::KernelVersion::current().is_ok_and(|v| (v.major, v.minor) >= MEMCG_KERNEL);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out pointer.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0;
    let shown = match (read, limit.rlim_cur) {
        (false, _) => "unknown".to_string(),
        (true, libc::RLIM_INFINITY) => "unlimited".to_string(),
        (true, n) => format!("{} KiB", n / 1024),
    };
    // The maps take about 8 MB with the default ring buffer.
    const NEEDED: u64 = 16 << 20;
    if newer {
        r.line(
            Status::Ok,
            "memlock",
            &format!("BPF memory is charged to the cgroup (RLIMIT_MEMLOCK {shown} does not apply)"),
        );
    } else if read && (limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= NEEDED) {
        r.line(Status::Ok, "memlock", &format!("RLIMIT_MEMLOCK {shown}"));
    } else {
        r.line(
            Status::Fail,
            "memlock",
            &format!("RLIMIT_MEMLOCK {shown} is below the 16 MiB the maps need: raise it (LimitMEMLOCK=infinity)"),
        );
    }
}

/// How the programs read kernel memory, on its own line: the kfunc's BTF
/// id when they read it with direct loads.
fn reads_line(r: &mut Report, btf: Option<&btf_rs::Btf>) -> Option<u32> {
    let Some(btf) = btf else {
        r.line(
            Status::Skip,
            "reads",
            "without BTF, kernel memory is read through bpf_probe_read_kernel",
        );
        return None;
    };
    let id = kfunc::fast_reads(btf);
    match id {
        Some(_) => r.line(
            Status::Ok,
            "reads",
            "kernel memory read with direct loads through bpf_rdonly_cast",
        ),
        None => r.line(Status::Warn, "reads", kfunc::SLOW_READS),
    }
    id
}
