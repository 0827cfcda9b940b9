//! Operations submitted through io_uring, which make no syscall of their
//! own: `io_uring/io_uring_submit_req` fires in the submitting thread once
//! the request is prepared (its names copied into the kernel), and
//! `io_uring/io_uring_complete` when its result is posted, often on one of
//! the ring's worker threads (same process, same files, cwd and root).
//!
//! The submission program keeps what an event needs in `IO_REQS`, by the
//! request's address, for the operations `IO_SPECS` (the equivalent
//! syscall's spec, by opcode) says are selected: write-opens, names
//! (rename, unlink, mkdir, symlink, link) with copies of the names (the
//! kernel frees its own before the completion), and writes, truncates and
//! allocations of files under a watch (decided there, as `sys_enter` does
//! for a descriptor). A close is handled at submission, as `sys_enter`
//! handles `close`. The completion program takes the entry back, and
//! turns a successful operation into an event as `sys_exit` does.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_probe_read_kernel_str,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use watcher_common::{
    IoStash, PATH_MAX, SyscallSpec, TASK_COMM_LEN, event_kind, event_status, io_op,
    open_flags::has_write_intent, shape, verdict,
};

use super::{
    process::admit,
    syscalls::{OPEN_KINDS, closing},
};
use crate::{
    config::{event_mask, io_offsets, kernel_offsets, tp_offsets},
    error::Error,
    event::hand_over,
    files::{count_rename, count_write, track_write_fd, verdict_of},
    maps::{IO_REQS, IO_SCRATCH, IO_SPECS, WRITE_FDS, op},
    read::read,
    scratch::Hit,
    vfs::file_of_fd,
};

#[tracepoint]
pub fn io_uring_submit(ctx: TracePointContext) -> u32 {
    let _ = try_submit(&ctx);
    0
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    if let Err(Error::Helper(e)) = try_complete(&ctx) {
        debug!(&ctx, target: "bpf", "io_uring_complete: a helper failed with {}, no event", e);
    }
    0
}

/// The spec of operation `opcode`, when one of the selected kinds needs
/// it.
#[inline(always)]
fn spec(opcode: u32) -> Option<&'static SyscallSpec> {
    IO_SPECS
        .get(opcode)
        .filter(|spec| spec.select & event_mask() != 0)
}

/// A request's `int` member at `offset` (an fd, a slot, flags).
#[inline(always)]
fn int(req: u64, offset: u32) -> Result<i32, Error> {
    Ok(read::<u32>(req, offset)? as i32)
}

/// Copies the kernel's copy of a name (`struct filename *` at `req +
/// offset`) into `dst`; false when it cannot be read.
#[inline(always)]
fn copy_name(req: u64, offset: u32, dst: &mut [u8; PATH_MAX]) -> Result<bool, Error> {
    let filename: u64 = read(req, offset)?;
    let name: u64 = read(filename, io_offsets().filename_name)?;
    // SAFETY: the helper writes at most PATH_MAX bytes, `dst`'s size, and
    // checks the address itself (a bad one fails the read, never faults).
    let n = unsafe {
        bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), PATH_MAX as u32, name as *const _)
    };
    Ok(n > 0)
}

#[inline(always)]
fn try_submit(ctx: &TracePointContext) -> Result<(), Error> {
    let tp = tp_offsets();
    // SAFETY: the helper behind `read_at` fails rather than faults on a bad
    // address, and any bytes are a valid integer.
    let opcode =
        unsafe { ctx.read_at::<u8>(tp.io_submit_opcode as usize) }.map_err(Error::helper)?;
    let Some(spec) = spec(u32::from(opcode)) else {
        return Ok(());
    };
    // SAFETY: as above.
    let req = unsafe { ctx.read_at::<u64>(tp.io_submit_req as usize) }.map_err(Error::helper)?;
    // SAFETY: as above.
    let req_flags =
        unsafe { ctx.read_at::<u64>(tp.io_submit_flags as usize) }.map_err(Error::helper)?;
    let off = io_offsets();
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let stash = IO_SCRATCH.get_ptr_mut(0).ok_or(Error::NoScratch)?;
    // SAFETY: this CPU's value of the per-CPU map, valid and aligned while
    // the program runs, which does not nest.
    let stash: &mut IoStash = unsafe { &mut *stash };
    stash.file = 0;
    stash.flags = 0;
    stash.status = 0;
    stash.opcode = u32::from(opcode);
    stash.dfd2 = 0;
    let [first, second] = &mut stash.names;
    match spec.shape {
        shape::OPEN | shape::OPEN_HOW => {
            stash.flags = read(req, off.open_flags)?;
            if !has_write_intent(stash.flags) {
                return Ok(());
            }
            stash.dfd = int(req, off.open_dfd)?;
            if int(req, off.open_file_slot)? != 0 {
                stash.status = event_status::DIRECT;
            }
            copy_name(req, off.open_filename, first)?;
        }
        shape::PATH => {
            let (dfd, name) = match opcode {
                io_op::UNLINKAT => {
                    stash.flags = u64::from(int(req, off.unlink_flags)? as u32);
                    (off.unlink_dfd, off.unlink_filename)
                }
                io_op::MKDIRAT => (off.mkdir_dfd, off.mkdir_filename),
                // symlinkat: the new name is the link; the old one is its
                // contents, not a file it changes.
                _ => (off.link_new_dfd, off.link_newpath),
            };
            stash.dfd = int(req, dfd)?;
            copy_name(req, name, first)?;
        }
        shape::PATHS => {
            let (old_dfd, old, new_dfd, new, flags) = if opcode == io_op::RENAMEAT {
                (
                    off.rename_old_dfd,
                    off.rename_oldpath,
                    off.rename_new_dfd,
                    off.rename_newpath,
                    off.rename_flags,
                )
            } else {
                (
                    off.link_old_dfd,
                    off.link_oldpath,
                    off.link_new_dfd,
                    off.link_newpath,
                    off.link_flags,
                )
            };
            stash.dfd = int(req, old_dfd)?;
            stash.dfd2 = int(req, new_dfd)?;
            stash.flags = u64::from(int(req, flags)? as u32);
            copy_name(req, old, first)?;
            copy_name(req, new, second)?;
        }
        shape::WRITE | shape::ALLOCATE | shape::FD => {
            stash.dfd = int(req, off.kiocb_fd)?;
            // A registered file's verdict is taken at completion, where
            // the request holds the file.
            if req_flags & io_op::FIXED_FILE == 0 {
                let file = file_of_fd(kernel_offsets(), i64::from(stash.dfd))?;
                // Most writes on the machine stop here, at a lookup.
                if verdict_of(file)? == verdict::MISS {
                    return Ok(());
                }
                stash.file = file;
            }
        }
        shape::CLOSE => {
            let fd = int(req, off.close_fd)?;
            if int(req, off.close_file_slot)? != 0 {
                return Ok(());
            }
            let key = watcher_common::FdKey {
                tgid,
                fd: fd as u32,
            };
            // SAFETY: only whether the entry exists is used, not the reference.
            if unsafe { WRITE_FDS.get(&key) }.is_none() {
                return Ok(());
            }
            let Some((origin, _)) = admit(tgid, spec.kind) else {
                return Ok(());
            };
            // A close fails only on a descriptor that is not open.
            return closing(ctx, spec, tgid, fd as u32, origin);
        }
        _ => return Ok(()),
    }
    let Some((origin, event)) = admit(tgid, spec.kind) else {
        return Ok(());
    };
    (stash.origin, stash.event) = (origin, event);
    stash.tid = bpf_get_current_pid_tgid() as u32;
    stash.comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    IO_REQS.insert(&req, stash, 0).map_err(Error::helper)
}

#[inline(always)]
fn try_complete(ctx: &TracePointContext) -> Result<(), Error> {
    let tp = tp_offsets();
    // SAFETY: the helper behind `read_at` fails rather than faults on a bad
    // address, and any bytes are a valid integer.
    let req = unsafe { ctx.read_at::<u64>(tp.io_complete_req as usize) }.map_err(Error::helper)?;
    // Most completions on the machine stop here, at a lookup.
    let Some(stash) = IO_REQS.get_ptr(&req) else {
        return Ok(());
    };
    let result = complete(ctx, req, stash);
    // After the event: its names were read from the entry.
    let _ = IO_REQS.remove(&req);
    result
}

#[inline(always)]
fn complete(ctx: &TracePointContext, req: u64, stash: *const IoStash) -> Result<(), Error> {
    // SAFETY: as in `try_complete`.
    let res = unsafe { ctx.read_at::<i32>(tp_offsets().io_complete_res as usize) }
        .map_err(Error::helper)?;
    if res < 0 {
        return Ok(());
    }
    // SAFETY: a pointer to a map value, valid and aligned while the program
    // runs (the entry is removed after this returns); plain data.
    let stash = unsafe { &*stash };
    let spec = IO_SPECS.get(stash.opcode).ok_or(Error::NoSpec)?;
    if spec.kind == event_kind::RENAME {
        count_rename();
    }
    if stash.event == 0 {
        return Ok(());
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let ret = i64::from(res);
    let op = op().ok_or(Error::NoScratch)?;
    op.len = 1;
    op.origin = stash.origin;
    let mut quiet = false;
    let mut opened = false;
    let mut count = 0;
    let [first, second] = &mut op.targets;
    let [name, name2] = &stash.names;
    // Opened into, or working on, a direct descriptor: no fd of the
    // process.
    let mut direct = stash.status & event_status::DIRECT != 0;
    match spec.shape {
        shape::OPEN | shape::OPEN_HOW => {
            // A direct descriptor is no fd of the process: the name leads
            // to the file.
            let file = if direct {
                0
            } else {
                file_of_fd(kernel_offsets(), ret)?
            };
            first.reset(file, i64::from(stash.dfd), name.as_ptr() as u64);
            quiet = event_mask() & OPEN_KINDS == 0;
            opened = true;
        }
        shape::PATH => first.reset(0, i64::from(stash.dfd), name.as_ptr() as u64),
        shape::PATHS => {
            first.reset(0, i64::from(stash.dfd), name.as_ptr() as u64);
            second.reset(0, i64::from(stash.dfd2), name2.as_ptr() as u64);
            op.len = 2;
        }
        shape::WRITE | shape::ALLOCATE | shape::FD => {
            let fixed = stash.file == 0;
            direct = fixed;
            let file = if fixed {
                let file: u64 = read(req, io_offsets().kiocb_file)?;
                if verdict_of(file)? == verdict::MISS {
                    return Ok(());
                }
                file
            } else {
                stash.file
            };
            if spec.shape == shape::FD {
                first.reset(file, i64::from(stash.dfd), 0);
            } else {
                // A write of nothing changed nothing; fallocate returns 0.
                if spec.shape == shape::WRITE && res == 0 {
                    return Ok(());
                }
                let written = count_write(file);
                if !fixed {
                    track_write_fd(tgid, i64::from(stash.dfd), written.watch);
                }
                if written.due == 0 {
                    return Ok(());
                }
                count = written.due;
                first.reset(file, i64::from(stash.dfd), 0);
            }
        }
        _ => return Ok(()),
    }
    // The names are the entry's copies, in kernel memory.
    first.kernel_name = 1;
    second.kernel_name = 1;
    if direct {
        first.status |= event_status::DIRECT;
    }
    hand_over(
        ctx,
        &Hit {
            kind: spec.kind,
            syscall: spec.id,
            flags: stash.flags,
            ret,
            quiet,
            opened,
            count,
            submitter: Some((stash.tid, stash.comm)),
            track: opened && !direct,
            io_req: req,
            exiting: 0,
        },
    )
}
