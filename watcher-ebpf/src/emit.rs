//! Turning a successful syscall into an event: decide whether the opened
//! file lies under a watched directory, and send hits to user space with
//! the name the process passed and the file's path.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
    bpf_probe_read_user_str_bytes,
    generated::{bpf_loop, bpf_probe_read_kernel_str},
};
use watcher_common::{
    EVENT_HEADER_LEN, EventBuf, MAX_WALK, NAME_MAX, PATH_MAX, TASK_COMM_LEN, UNDECIDED_SLOT,
    WATCH_NONE, WATCH_PREFIX_MAX, event_status, match_mode,
};

use crate::{
    config::{kernel_offsets, match_mode},
    maps::{DIRTY, EVENTS, LOST, SCRATCH, Scratch, WATCHES},
    resolve::{Cursor, Step, file_of_fd},
};

/// A successful syscall that may be an event.
pub struct Hit {
    pub kind: u32,
    pub syscall: u32,
    pub flags: u64,
    /// The syscall's return value: the new fd for opens.
    pub ret: i64,
    pub dfd: i64,
    /// User pointer to the pathname as the process passed it.
    pub filename: *const u8,
}

/// Sends `hit` to user space when the file lies under a watched directory,
/// or when that cannot be decided.
#[inline(always)]
pub fn emit_if_watched(hit: &Hit) -> Result<(), i64> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: per-CPU map value, and syscall tracepoint programs run with
    // preemption disabled and do not nest, so nobody else uses it now.
    let scratch = unsafe { &mut *scratch };
    if match_mode() == match_mode::PREFIX {
        return emit_by_prefix(scratch, hit);
    }

    let off = kernel_offsets();
    let file = file_of_fd(&off, hit.ret)?;
    let mut walk = Walk {
        at: Cursor::of_file(&off, file)?,
        watch: WATCH_NONE,
        end: END_NONE,
        name_len: 0,
        len: 0,
        complete: 1,
    };
    let start = walk.at;

    // The walks run under bpf_loop: the verifier checks each callback once,
    // where a plain loop would have it check every iteration of both walks
    // (over its million-instruction limit at this bound).
    unsafe { bpf_loop(MAX_WALK, find_watch as *mut c_void, walk_ctx(&mut walk), 0) };
    let undecided = match walk.end {
        END_FOUND => false,
        // The walk reached the root without a watch, or failed.
        END_TOP | END_FAILED => return Ok(()),
        _ => true,
    };

    walk.at = start;
    walk.end = END_NONE;
    walk.name_len = read_name(scratch, hit) as u64;
    unsafe { bpf_loop(MAX_WALK, build_path as *mut c_void, walk_ctx(&mut walk), 0) };
    let mut status = 0;
    if walk.end != END_TOP || walk.complete == 0 {
        status |= event_status::PATH_TRUNCATED;
    }
    if undecided {
        status |= event_status::UNDECIDED;
        mark_dirty(UNDECIDED_SLOT);
    }
    // Re-read from the scratch buffer: `build_path` wrote the path there.
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    let scratch = unsafe { &mut *scratch };
    // Verifier: lengths read back from the loop's context are unknown to
    // it; masked, they bound the size sent. Both are below PATH_MAX.
    send(
        scratch,
        hit,
        if undecided { WATCH_NONE } else { walk.watch },
        status,
        walk.name_len as usize & (PATH_MAX - 1),
        walk.len as usize & (PATH_MAX - 1),
    )
}

/// How a walk ended ([`Walk::end`]).
const END_NONE: u32 = 0;
const END_FOUND: u32 = 1;
const END_TOP: u32 = 2;
const END_FAILED: u32 = 3;

/// The state of a walk up from the opened file, shared with the
/// `bpf_loop` callbacks (it lives on the caller's stack).
#[repr(C)]
struct Walk {
    at: Cursor,
    /// The innermost watch met.
    watch: u32,
    end: u32,
    /// Length of the name before the path in the scratch buffer.
    name_len: u64,
    /// Bytes of path components written so far.
    len: u64,
    /// 0 once a component could not be written.
    complete: u32,
}

fn walk_ctx(walk: &mut Walk) -> *mut c_void {
    ptr::from_mut(walk).cast()
}

/// One step of the first walk: stops at the first watched directory
/// (`END_FOUND`), at the root (`END_TOP`) or on a failed read; when the
/// loop runs out first, `end` stays `END_NONE` and the file is undecided.
#[inline(never)]
extern "C" fn find_watch(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `Walk` given to it.
    let walk = unsafe { &mut *ctx.cast::<Walk>() };
    let off = kernel_offsets();
    let found = if walk.at.on_watched_device() {
        walk.at.watch(&off)
    } else {
        // Nothing up to this mount's root can be a watch.
        walk.at.to_mount_root();
        Ok(None)
    };
    let step = match found {
        Ok(Some(id)) => {
            walk.watch = id;
            walk.end = END_FOUND;
            return 1;
        }
        Ok(None) => walk.at.up(&off),
        Err(e) => Err(e),
    };
    match step {
        Ok(Step::Top) => walk.end = END_TOP,
        Ok(_) => return 0,
        Err(_) => walk.end = END_FAILED,
    }
    1
}

/// One step of the second walk: marks every watch met as dirty (nested
/// watches all changed) and writes the path components, file first, each
/// ended by a NUL, into the scratch buffer after the name.
#[inline(never)]
extern "C" fn build_path(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `Walk` given to it.
    let walk = unsafe { &mut *ctx.cast::<Walk>() };
    match path_step(walk) {
        Ok(Step::Top) => {
            walk.end = END_TOP;
            1
        }
        Ok(_) => 0,
        Err(_) => {
            walk.end = END_FAILED;
            1
        }
    }
}

#[inline(always)]
fn path_step(walk: &mut Walk) -> Result<Step, i64> {
    let off = kernel_offsets();
    if let Some(id) = walk.at.watch(&off)? {
        mark_dirty(id);
    }
    let name = walk.at.name(&off)?;
    let step = walk.at.up(&off)?;
    if !matches!(step, Step::Parent) {
        return Ok(step);
    }
    if walk.len >= (PATH_MAX - NAME_MAX) as u64 {
        walk.complete = 0;
        return Ok(step);
    }
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: as in `emit_if_watched`.
    let data = unsafe { &mut (*scratch).event.data };
    // Verifier: both offsets masked below PATH_MAX, so the write stays
    // inside `data` (2 * PATH_MAX + NAME_MAX) whatever the values; the
    // check above keeps them right.
    let at = (walk.name_len as usize & (PATH_MAX - 1)) + (walk.len as usize & (PATH_MAX - 1));
    let dst = unsafe { data.as_mut_ptr().add(at) };
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), NAME_MAX as u32, name as *const _) };
    if n > 0 {
        walk.len += n as u64;
    } else {
        walk.complete = 0;
    }
    Ok(step)
}

/// Reads the name the process passed (at sys_exit: at sys_enter the page
/// may not be faulted in yet) into the start of the data; its length, 0 if
/// it cannot be read.
#[inline(always)]
fn read_name(scratch: &mut Scratch, hit: &Hit) -> usize {
    let Some(buf) = scratch.event.data.get_mut(..PATH_MAX) else {
        return 0;
    };
    unsafe { bpf_probe_read_user_str_bytes(hit.filename, buf) }.map_or(0, |name| name.len())
}

/// Without BTF: an absolute name is matched by prefix; a relative one goes
/// to user space, which places it.
#[inline(always)]
fn emit_by_prefix(scratch: &mut Scratch, hit: &Hit) -> Result<(), i64> {
    let len = read_name(scratch, hit);
    if scratch.event.data.first().copied() != Some(b'/') {
        return send(scratch, hit, WATCH_NONE, event_status::RELATIVE, len, 0);
    }
    // The LPM key is the first WATCH_PREFIX_MAX bytes of the name; bytes
    // past `prefix_len` are never compared.
    let head = scratch
        .event
        .data
        .first_chunk::<WATCH_PREFIX_MAX>()
        .ok_or(0i64)?;
    scratch.key.data = *head;
    scratch.key.prefix_len = (len.min(WATCH_PREFIX_MAX) * 8) as u32;
    let watch_id = *WATCHES.get(&scratch.key).ok_or(0i64)?;
    mark_dirty(watch_id);
    send(scratch, hit, watch_id, 0, len, 0)
}

#[inline(always)]
fn send(
    scratch: &mut Scratch,
    hit: &Hit,
    watch_id: u32,
    status: u32,
    name_len: usize,
    path_len: usize,
) -> Result<(), i64> {
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
    header.status = status;
    header.dfd = hit.dfd as i32;
    header.name_len = name_len as u32;
    header.path_len = path_len as u32;
    header.comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);

    // SAFETY: `EventBuf` is `repr(C)` plain data.
    let bytes: &[u8; size_of::<EventBuf>()] =
        unsafe { &*ptr::from_ref(&scratch.event).cast::<[u8; size_of::<EventBuf>()]>() };
    // `.get()` both avoids a panic path and shows the verifier that the
    // variable size stays within the map value.
    let out = bytes
        .get(..EVENT_HEADER_LEN + name_len + path_len)
        .ok_or(0i64)?;
    if EVENTS.output::<[u8]>(out, 0).is_err() {
        count_lost(if watch_id == WATCH_NONE {
            UNDECIDED_SLOT
        } else {
            watch_id
        });
    }
    Ok(())
}

#[inline(always)]
fn mark_dirty(slot: u32) {
    if let Some(dirty) = DIRTY.get_ptr_mut(slot) {
        // Only ever set to 1 here and to 0 by user space, so concurrent
        // writers need no atomics.
        unsafe { *dirty = 1 };
    }
}

#[inline(always)]
fn count_lost(slot: u32) {
    if let Some(slot) = LOST.get_ptr_mut(slot) {
        // A plain increment is enough: the slot belongs to this CPU and
        // syscall tracepoint programs neither nest nor get preempted (and
        // the BPF target has no atomic read-modify-write in Rust's core).
        unsafe { *slot += 1 };
    }
}
