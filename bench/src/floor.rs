//! The floor of watcher's design: an eBPF program that does nothing,
//! attached to the same tracepoints as watcher. It is loaded with the raw
//! `bpf` and `perf_event_open` syscalls, so that it is two instructions and
//! nothing else (no maps, no loader overhead to argue about).

use std::{
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, bail};

use crate::fdinfo::FdInfo;

// From linux/bpf.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
// From linux/perf_event.h (not in the libc crate).
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// `perf_event_attr` up to PERF_ATTR_SIZE_VER7.
const PERF_ATTR_SIZE: u32 = 128;

/// `bpf_attr` for BPF_PROG_LOAD, the fields used and zeros after them (the
/// kernel requires unused bytes to be zero).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u8; 64],
}

/// `perf_event_attr`: the fields used, then zeros.
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    rest: [u8; 104],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a bpf_attr variant of its full size, living across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The tracepoints (`sys_enter_openat`, `sched_process_exit`, …) that
/// process `pid` has eBPF links to, from its descriptors' fdinfo.
pub fn attached_tracepoints(pid: u32) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = FdInfo::of(pid)?
        .iter()
        .filter(|info| info.get("event_type") == Some("tracepoint"))
        .filter_map(|info| Some(info.get("tp_name")?.to_string()))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The empty program, attached; detached and unloaded on drop.
pub struct Floor {
    _prog: OwnedFd,
    _events: Vec<OwnedFd>,
}

impl Floor {
    /// Loads `r0 = 0; exit` and attaches it to each of `tracepoints`
    /// (found under any system in tracefs).
    pub fn attach(tracefs: &Path, tracepoints: &[String]) -> anyhow::Result<Self> {
        // mov64 r0, 0 (opcode 0xb7); exit (0x95): the opcode is the low byte.
        let insns: [u64; 2] = [0xb7, 0x95];
        let license = c"GPL";
        let mut load = ProgLoad {
            prog_type: BPF_PROG_TYPE_TRACEPOINT,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: *b"bench_empty\0\0\0\0\0",
            rest: [0; 64],
        };
        let fd = bpf(BPF_PROG_LOAD, &mut load).context("loading the empty eBPF program")?;
        // SAFETY: the kernel returned a new descriptor we now own.
        let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut events = Vec::new();
        for name in tracepoints {
            let id = tracepoint_id(tracefs, name)?;
            let attr = PerfEventAttr {
                kind: PERF_TYPE_TRACEPOINT,
                size: PERF_ATTR_SIZE,
                config: id,
                sample_period: 1,
                rest: [0; 104],
            };
            // SAFETY: attr is a perf_event_attr of PERF_ATTR_SIZE bytes. A
            // tracepoint's program runs on every CPU whatever the event's cpu.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &raw const attr,
                    -1,
                    0,
                    -1,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("perf_event_open for {name}"));
            }
            // SAFETY: as above.
            let event = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            for (request, arg) in [
                (PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()),
                (PERF_EVENT_IOC_ENABLE, 0),
            ] {
                // SAFETY: both requests take an int argument.
                if unsafe { libc::ioctl(event.as_raw_fd(), request, arg) } < 0 {
                    return Err(io::Error::last_os_error())
                        .with_context(|| format!("attaching the empty program to {name}"));
                }
            }
            events.push(event);
        }
        Ok(Self {
            _prog: prog,
            _events: events,
        })
    }
}

/// A tracepoint's id, from `events/SYSTEM/NAME/id` under whichever system
/// has it.
fn tracepoint_id(tracefs: &Path, name: &str) -> anyhow::Result<u64> {
    for system in fs::read_dir(tracefs.join("events"))? {
        let file = system?.path().join(name).join("id");
        if let Ok(id) = fs::read_to_string(&file) {
            return id
                .trim()
                .parse()
                .with_context(|| format!("reading {}", file.display()));
        }
    }
    bail!("no tracepoint {name} in {}", tracefs.display())
}
