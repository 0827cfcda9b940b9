//! Process lifetimes. For `EXCLUDED`: a process forked by watcher or by an
//! excluded process is excluded from birth (so an action cannot write
//! before it is known), and leaves the map when it exits. For
//! `close_write`: a process that exits with descriptors still open for
//! writing under a watch closes them then.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::bpf_loop,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use watcher_common::{FdKey, MAX_WRITE_FDS, SYSCALL_EXIT, TASK_COMM_LEN, event_kind, filter};

use crate::{
    config::{event_mask, filters, kernel_offsets, tag_actions, tp_offsets, watcher_tgid},
    event::{emit, hand_over},
    files::{close_is_event, take_pending},
    maps::{ACTION_SLOT, EXCLUDED, FILTER_COMMS, FILTER_PIDS, FILTER_UIDS, WRITE_FDS, WRITERS, op},
    scratch::Hit,
    vfs::{fd_table_size, file_of_fd},
};

/// What becomes of the syscalls of process `tgid`: `None` when they are
/// left out (watcher's own, and its actions' unless they are tagged),
/// else `Some(slot)` of the action it belongs to, 0 for any other
/// process.
#[inline(always)]
pub fn origin(tgid: u32) -> Option<u32> {
    if tgid == watcher_tgid() {
        return None;
    }
    // Verifier: a plain u32, not an Option<&u32>, as in passes_filters.
    // SAFETY: the value is copied out at once, and any bytes are a valid
    // integer (a value being replaced meanwhile could at worst be garbage).
    match unsafe { EXCLUDED.get(&tgid) }.copied().unwrap_or(0) {
        0 => Some(0),
        _ if !tag_actions() => None,
        slot => Some(slot),
    }
}

/// Whether a change of `kind` by process `tgid` (the current one) is
/// looked at: `None` when it is left out, else its origin (see
/// [`origin`]) and 1 when it may be an event, 0 when only what it does to
/// watcher's state counts: a rename by a process left out, or traced for
/// `modify` alone, still moves files under open ones.
#[inline(always)]
pub fn admit(tgid: u32, kind: u32) -> Option<(u32, u32)> {
    let rename = kind == event_kind::RENAME;
    match origin(tgid) {
        Some(origin) if passes_filters(tgid) => {
            let selected = event_mask() & event_kind::bit(kind) != 0;
            Some((origin, u32::from(!rename || selected)))
        }
        _ if rename => Some((0, 0)),
        _ => None,
    }
}

/// Whether the current process passes the process filters that are on.
#[inline(always)]
pub fn passes_filters(tgid: u32) -> bool {
    let on = filters();
    if on == 0 {
        return true;
    }
    // SAFETY: only whether the entry exists is used, not the reference.
    if on & filter::PID != 0 && unsafe { FILTER_PIDS.get(&tgid) }.is_none() {
        return false;
    }
    if on & filter::UID != 0 {
        let uid = bpf_get_current_uid_gid() as u32;
        // SAFETY: only whether the entry exists is used, not the reference.
        if unsafe { FILTER_UIDS.get(&uid) }.is_none() {
            return false;
        }
    }
    if on & (filter::COMM | filter::EXCLUDE_COMM) != 0 {
        let comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
        // Verifier: a plain u8, not an Option<u8>, whose payload the
        // compiler reads even when it is None (an uninitialised register
        // the verifier refuses).
        // SAFETY: the value is copied out at once, and any bytes are a valid
        // integer (a value being replaced meanwhile could at worst be garbage).
        let listed = unsafe { FILTER_COMMS.get(&comm) }.copied().unwrap_or(0);
        if on & filter::COMM != 0 && listed != filter::COMM_INCLUDE {
            return false;
        }
        if listed == filter::COMM_EXCLUDE {
            return false;
        }
    }
    true
}

/// Runs in the parent. A child of watcher is an action, of the slot user
/// space set in `ACTION_SLOT` before it forked; a child of an action
/// belongs to its parent's. A new thread has the parent's tgid, which is
/// already covered; its tid, inserted too, is removed when it exits.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    let slot = if parent == watcher_tgid() {
        // At least 1: a slot of 0 would read as "not an action".
        ACTION_SLOT.get(0).copied().unwrap_or(0).max(1)
    } else {
        // SAFETY: the value is copied out at once, and any bytes are a valid
        // integer (a value being replaced meanwhile could at worst be garbage).
        unsafe { EXCLUDED.get(&parent) }.copied().unwrap_or(0)
    };
    if slot != 0 {
        // SAFETY: the helper behind `read_at` fails rather than faults on a bad
        // address, and any bytes are a valid integer.
        if let Ok(child) = unsafe { ctx.read_at::<u32>(tp_offsets().fork_child_pid as usize) } {
            let _ = EXCLUDED.insert(&child, &slot, 0);
        }
    }
    0
}

/// Runs for every exiting thread; the `EXCLUDED` key is only present for
/// excluded processes (and the threads of their forks). Runs before the
/// kernel closes the exiting process's descriptors.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Taken before the thread's entry goes (the leader's is the process's).
    let origin = origin(tgid);
    let _ = EXCLUDED.remove(&(pid_tgid as u32));
    // The last thread out closes the descriptors.
    // SAFETY: the helper behind `read_at` fails rather than faults on a bad
    // address, and any bytes are a valid integer.
    let group_dead =
        unsafe { ctx.read_at::<u8>(tp_offsets().exit_group_dead as usize) }.unwrap_or(0) != 0;
    // SAFETY: only whether the entry exists is used, not the reference.
    if group_dead && unsafe { WRITERS.get(&tgid) }.is_some() {
        let _ = WRITERS.remove(&tgid);
        let Some(op) = op() else { return 0 };
        op.origin = origin.unwrap_or(0);
        let fds = fd_table_size(kernel_offsets())
            .unwrap_or(0)
            .min(MAX_WRITE_FDS);
        // The event program looks through the descriptors.
        let _ = hand_over(&ctx, &Hit::exiting(fds));
    }
    0
}

/// The `close_write`s of the exiting process's descriptors below `fds`,
/// in the event program.
#[inline(always)]
pub fn close_at_exit(fds: u32) {
    // SAFETY: `close_at_exit_cb` has the signature `bpf_loop` calls, and
    // takes no context, so the null one is never read.
    unsafe { bpf_loop(fds, close_at_exit_cb as *mut c_void, ptr::null_mut(), 0) };
}

/// Descriptor `fd` of the exiting process: a `close_write` when it was
/// open for writing under a watch.
#[inline(never)]
extern "C" fn close_at_exit_cb(fd: u64, _ctx: *mut c_void) -> i64 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = FdKey {
        tgid,
        fd: fd as u32,
    };
    // SAFETY: only whether the entry exists is used, not the reference.
    if unsafe { WRITE_FDS.get(&key) }.is_none() {
        return 0;
    }
    let _ = WRITE_FDS.remove(&key);
    let (Ok(file), Some(op)) = (file_of_fd(kernel_offsets(), fd as i64), op()) else {
        return 0;
    };
    let count = take_pending(file);
    if !close_is_event(count) {
        return 0;
    }
    op.len = 1;
    op.targets[0].reset(file, fd as i64, 0);
    op.hit = Hit::close_write(SYSCALL_EXIT, count);
    let _ = emit();
    0
}
