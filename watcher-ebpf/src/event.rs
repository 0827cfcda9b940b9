//! Turning a successful syscall into an event: decide whether the files it
//! changed lie under a watched directory (`walk`), and send hits to user
//! space as one ring-buffer record with the names the process passed, the
//! files' paths and who made the change (`who`).

use core::{ffi::c_void, mem::MaybeUninit, ptr};

use aya_ebpf::{
    bindings::{BPF_RB_NO_WAKEUP, bpf_dynptr},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        generated::{
            self, bpf_dynptr_write, bpf_ringbuf_discard_dynptr, bpf_ringbuf_reserve_dynptr,
            bpf_ringbuf_submit_dynptr,
        },
    },
    programs::TracePointContext,
};
use watcher_common::{
    CMDLINE_MAX, EVENT_DATA_LEN, EVENT_HEADER_LEN, PATH_MAX, TASK_COMM_LEN, Target, UNDECIDED_SLOT,
    WAKEUP_MARGIN_NS, WATCH_NONE, event_status, match_mode, open_flags::FMODE_CREATED,
};

use crate::{
    account::{count_lost, mark_dirty},
    config::{kernel_offsets, match_mode},
    error::Error,
    maps::{EMIT, EVENTS, READER, op, scratch},
    scratch::{FOUND, Hit, MISS, TargetState, UNDECIDED},
    vfs::file_mode,
    walk::{build_paths, decide_targets, read_name},
    who,
};

/// Hands the event described by the scratch [`Op`]'s targets and `hit`
/// over to the event program (`probes::emit`) by a tail call, which does
/// not come back: the caller's work must be done before. It comes back
/// only when the call failed, which it cannot once user space filled
/// `EMIT` (before attaching anything): the event is then counted lost.
#[inline(always)]
pub fn hand_over(ctx: &TracePointContext, hit: &Hit) -> Result<(), Error> {
    op().ok_or(Error::NoScratch)?.hit = *hit;
    // SAFETY: `ctx` is the running program's, and the slot holds a
    // tracepoint program, which reads its context the same way.
    unsafe { EMIT.tail_call(ctx, 0) };
    count_lost(UNDECIDED_SLOT);
    Err(Error::NoEmitProgram)
}

/// Decides about every target of the scratch [`Op`] and sends the event
/// its `hit` describes when one lies under a watch (or may). Returns the
/// event's watch (`WATCH_NONE` when undecided), or `None` when it was no
/// event.
#[inline(always)]
pub fn emit() -> Result<Option<u32>, Error> {
    Ok(match Error::from_code(watcher_emit())? {
        NO_EVENT => None,
        watch => Some(watch as u32),
    })
}

/// What [`watcher_emit`] returns when there is no event.
const NO_EVENT: i64 = -1;

/// [`emit`]'s work, on the [`Hit`] in the scratch map: the event's watch,
/// or [`NO_EVENT`]. Verifier workaround: a global function (no arguments,
/// an integer returned) is checked once, on its own, where inlined it was
/// checked again for every way into it: the event program calls it for
/// one event, and for each descriptor of an exiting process.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn watcher_emit() -> i64 {
    let Some(op) = op() else {
        return Error::NoScratch.code();
    };
    let hit = op.hit;
    match emit_hit(&hit) {
        Ok(None) => NO_EVENT,
        Ok(Some(watch)) => i64::from(watch),
        Err(e) => e.code(),
    }
}

#[inline(always)]
fn emit_hit(hit: &Hit) -> Result<Option<u32>, Error> {
    let len = op().ok_or(Error::NoScratch)?.len;
    decide_targets(len);
    let op = op().ok_or(Error::NoScratch)?;
    let [first, second] = &op.targets;
    let second_verdict = if op.len > 1 { second.verdict } else { MISS };
    if first.verdict == MISS && second_verdict == MISS {
        return Ok(None);
    }
    // The new name's watch, for a rename or link into or within a tree.
    let watch = if second_verdict == FOUND {
        second.watch
    } else if first.verdict == FOUND {
        first.watch
    } else {
        WATCH_NONE
    };
    if hit.quiet {
        return Ok(Some(watch));
    }
    if op.name_deferred() {
        read_name(0)?;
    }
    if first.verdict == UNDECIDED || second_verdict == UNDECIDED {
        mark_dirty(UNDECIDED_SLOT);
    }
    // Read for hits only, not for every open on the machine.
    let opened = if hit.opened { first.file } else { 0 };
    if opened != 0 && file_mode(kernel_offsets(), opened)? & FMODE_CREATED != 0 {
        op.targets[0].status |= event_status::CREATED;
    }
    if match_mode() == match_mode::EXACT {
        build_paths(len);
    }
    Error::from_code(watcher_send(u64::from(watch)))?;
    Ok(Some(watch))
}

/// [`send`], on the [`Hit`] in the scratch map, for `watch`: 0 once
/// sent. Verifier workaround: a global function, checked once; inlined,
/// it was checked again for each way the decision reaches it (one target
/// or two, a name read late or not, a created file or not): 21,000
/// instructions verified in the event program became 15,400.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn watcher_send(watch: u64) -> i64 {
    let Some(op) = op() else {
        return Error::NoScratch.code();
    };
    let hit = op.hit;
    match send(&hit, watch as u32) {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

#[inline(always)]
fn send(hit: &Hit, watch_id: u32) -> Result<(), Error> {
    // Before the header is filled: it resets the process part. Verifier
    // workaround: the answer goes through the scratch map, read back once
    // the record is sent; kept in a register, each answer (and a failed
    // fill) had the rest checked again.
    let carries_image = u32::from(who::fill().unwrap_or(false));
    let s = scratch().ok_or(Error::NoScratch)?;
    s.op.carries_image = carries_image;
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let header = &mut s.event.header;
    // SAFETY: a helper without arguments.
    header.time_ns = unsafe { bpf_ktime_get_boot_ns() };
    header.kind = hit.kind;
    header.syscall = hit.syscall;
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = hit.submitter.map_or(pid_tgid as u32, |(tid, _)| tid);
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    header.flags = hit.flags;
    header.ret = hit.ret;
    header.watch_id = watch_id;
    header.targets_len = s.op.len;
    header.origin = s.op.origin;
    header.count = hit.count;
    match hit.submitter {
        Some((_, comm)) => header.comm = comm,
        // Verifier workaround: written in place (the helper zeroes it when
        // it fails); through a copy on the stack, the rest was checked
        // once with that stack written and once without.
        // SAFETY: the helper writes at most TASK_COMM_LEN bytes, the
        // size of `comm`.
        None => unsafe {
            generated::bpf_get_current_comm(header.comm.as_mut_ptr().cast(), TASK_COMM_LEN as u32);
        },
    }
    let [first, second] = &s.op.targets;
    header.targets = [
        target_header(first),
        if s.op.len > 1 {
            target_header(second)
        } else {
            Target::default()
        },
    ];
    // Verifier: each length masked below PATH_MAX (the kernel keeps them
    // below), so every part below is within its buffer: the header's size,
    // the names, paths and extra components, capped at `data`'s size
    // (the walks write no further), one under PATH_MAX in `exe` (PATH_MAX
    // + NAME_MAX) and at most CMDLINE_MAX in `cmdline` (CMDLINE_MAX).
    let data_len = header
        .targets
        .iter()
        .map(|t| {
            (t.name_len as usize & (PATH_MAX - 1))
                + (t.path_len as usize & (PATH_MAX - 1))
                + (t.extra_len as usize & (PATH_MAX - 1))
        })
        .sum::<usize>()
        .min(EVENT_DATA_LEN);
    let exe_len = header.process.exe_len as usize & (PATH_MAX - 1);
    let cmdline_len = (header.process.cmdline_len as usize).min(CMDLINE_MAX);
    let parts = [
        (ptr::from_ref(header).cast(), EVENT_HEADER_LEN),
        (s.event.data.as_ptr(), data_len),
        (s.exe.as_ptr(), exe_len),
        (s.cmdline.as_ptr(), cmdline_len),
    ];
    // SAFETY: each part is readable for its length, as said above.
    match unsafe { output(parts) } {
        // Only a record sent can stand for the image's later events.
        Ok(()) => {
            // SAFETY: a field of this CPU's scratch value, valid and
            // aligned; volatile, so that it is read back from the map.
            if unsafe { ptr::read_volatile(&s.op.carries_image) } != 0 {
                who::image_sent(&header.process.image);
            }
        }
        Err(_) => count_lost(if watch_id == WATCH_NONE {
            UNDECIDED_SLOT
        } else {
            watch_id
        }),
    }
    Ok(())
}

/// The flags of a record about to be submitted, already reserved: none
/// while user space will look at the ring buffer again more than
/// [`WAKEUP_MARGIN_NS`] from now (see there), else the ring buffer's usual
/// wakeup.
#[inline(always)]
fn wakeup() -> u64 {
    // SAFETY: no arguments, no preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: a pointer to the map's one value, valid and aligned while the
    // program runs; an aligned 8-byte load is never torn by user space's
    // store; volatile, so that it is read now.
    let due = READER
        .get_ptr(0)
        .map_or(0, |due| unsafe { ptr::read_volatile(due) });
    if now.saturating_add(WAKEUP_MARGIN_NS) < due {
        u64::from(BPF_RB_NO_WAKEUP)
    } else {
        0
    }
}

/// Sends `parts` as one ring-buffer record, with a wakeup or none (see
/// [`wakeup`]). The record is reserved at its
/// exact size through a dynptr (a plain reservation needs a size the
/// verifier knows, and the parts live in different buffers), then written
/// part by part; it is submitted, or discarded when the reservation failed
/// (the verifier requires either).
///
/// # Safety
///
/// Each part must be readable for its length.
#[inline(always)]
unsafe fn output(parts: [(*const u8, usize); 4]) -> Result<(), Error> {
    let total: usize = parts.iter().map(|&(_, len)| len).sum();
    let mut record = MaybeUninit::<bpf_dynptr>::uninit();
    let ring = ptr::from_ref(&EVENTS).cast_mut().cast::<c_void>();
    // SAFETY: `ring` is the ring-buffer map (the loader relocates its
    // address), and `record` is room for the dynptr the helper sets up.
    let reserved =
        unsafe { bpf_ringbuf_reserve_dynptr(ring, total as u32, 0, record.as_mut_ptr()) };
    if reserved != 0 {
        // SAFETY: the helper set `record` up even though it failed (to a
        // null dynptr), and it is released once, here.
        unsafe { bpf_ringbuf_discard_dynptr(record.as_mut_ptr(), 0) };
        return Err(Error::Helper(reserved));
    }
    // One call per part, so that each pointer keeps its type for the
    // verifier (one loaded from an array at a variable index would not).
    let [a, b, c, d] = parts;
    let write = |at: usize, (part, len): (*const u8, usize)| {
        // SAFETY: `record` was set up by the reservation, `part` is
        // readable for `len` bytes (the caller's promise), and the helper
        // fails rather than write past the record's end.
        unsafe {
            bpf_dynptr_write(
                record.as_ptr(),
                at as u32,
                part.cast_mut().cast(),
                len as u32,
                0,
            )
        };
        at + len
    };
    let at = write(0, a);
    let at = write(at, b);
    let at = write(at, c);
    write(at, d);
    let flags = wakeup();
    // SAFETY: `record` was reserved above and is released once, here.
    unsafe { bpf_ringbuf_submit_dynptr(record.as_mut_ptr(), flags) };
    Ok(())
}

#[inline(always)]
fn target_header(t: &TargetState) -> Target {
    Target {
        status: t.status,
        dfd: t.dfd as i32,
        name_len: t.name_len,
        path_len: t.path_len,
        skip: t.skip,
        watch: t.watch,
        below: t.below,
        extra_len: t.extra_len,
        name_below: t.name_below,
        route: t.route,
        rooted: t.rooted,
        _pad: 0,
    }
}
