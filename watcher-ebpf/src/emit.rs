//! Turning a successful syscall into an event: read the path the process
//! passed, match it against the watched directories, and send hits to user
//! space.

use core::ptr;

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
    bpf_probe_read_user_str_bytes,
};
use watcher_common::{EVENT_HEADER_LEN, EventBuf, TASK_COMM_LEN, WATCH_PREFIX_MAX};

use crate::maps::{DIRTY, EVENTS, LOST, SCRATCH, WATCHES};

/// A successful syscall that may be an event.
pub struct Hit {
    pub kind: u32,
    pub syscall: u32,
    pub flags: u64,
    pub ret: i64,
    /// User pointer to the pathname as the process passed it.
    pub filename: *const u8,
}

/// Sends `hit` to user space when its path lies under a watched directory.
#[inline(always)]
pub fn emit_if_watched(hit: &Hit) -> Result<(), i64> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: per-CPU map value, and syscall tracepoint programs run with
    // preemption disabled and do not nest, so nobody else uses it now.
    let scratch = unsafe { &mut *scratch };

    // Read at sys_exit: at sys_enter the page may not be faulted in yet.
    let len = unsafe { bpf_probe_read_user_str_bytes(hit.filename, &mut scratch.event.path) }
        .map_err(i64::from)?
        .len();

    // The LPM key is the first WATCH_PREFIX_MAX bytes of the path; bytes
    // past `prefix_len` are never compared.
    let head = scratch
        .event
        .path
        .first_chunk::<WATCH_PREFIX_MAX>()
        .ok_or(0i64)?;
    scratch.key.data = *head;
    scratch.key.prefix_len = (len.min(WATCH_PREFIX_MAX) * 8) as u32;
    let watch_id = *WATCHES.get(&scratch.key).ok_or(0i64)?;
    if let Some(dirty) = DIRTY.get_ptr_mut(watch_id) {
        // Only ever set to 1 here and to 0 by user space, so concurrent
        // writers need no atomics.
        unsafe { *dirty = 1 };
    }

    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let header = &mut scratch.event.header;
    header.time_ns = unsafe { bpf_ktime_get_boot_ns() };
    header.kind = hit.kind;
    header.syscall = hit.syscall;
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    header.flags = hit.flags;
    header.ret = hit.ret;
    header.watch_id = watch_id;
    header.path_len = len as u32;
    header.comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);

    // SAFETY: `EventBuf` is `repr(C)` plain data.
    let bytes: &[u8; size_of::<EventBuf>()] =
        unsafe { &*ptr::from_ref(&scratch.event).cast::<[u8; size_of::<EventBuf>()]>() };
    // `.get()` both avoids a panic path and shows the verifier that the
    // variable size stays within the map value.
    let out = bytes.get(..EVENT_HEADER_LEN + len).ok_or(0i64)?;
    if EVENTS.output::<[u8]>(out, 0).is_err() {
        count_lost(watch_id);
    }
    Ok(())
}

#[inline(always)]
fn count_lost(watch_id: u32) {
    if let Some(slot) = LOST.get_ptr_mut(watch_id) {
        // A plain increment is enough: the slot belongs to this CPU and
        // syscall tracepoint programs neither nest nor get preempted (and
        // the BPF target has no atomic read-modify-write in Rust's core).
        unsafe { *slot += 1 };
    }
}
