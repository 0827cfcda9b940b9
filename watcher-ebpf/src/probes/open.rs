//! `openat`, `openat2`, `open` and `creat`: the enter program stashes the
//! arguments per thread, the exit program takes them back (always deleting
//! the stash) and emits successful opens with write intent under a watch.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use watcher_common::{
    Stash, event_kind,
    open_flags::{O_CREAT, O_TRUNC, O_WRONLY, has_write_intent},
    syscall,
};

use super::process::is_excluded;
use crate::{
    config::tp_offsets,
    emit::{Hit, emit_if_watched},
    maps::STASH,
};

const AT_FDCWD: i64 = -100;
/// What `creat(2)` is defined as.
const CREAT_FLAGS: u64 = O_CREAT | O_WRONLY | O_TRUNC;

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let off = tp_offsets();
    let _ = try_enter(
        syscall::OPENAT,
        dfd_arg(&ctx, off.openat_dfd),
        arg(&ctx, off.openat_filename),
        arg(&ctx, off.openat_flags),
    );
    0
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let off = tp_offsets();
    // The flags are in user memory (`struct open_how`); keep the pointer
    // and read them at exit.
    let _ = try_enter(
        syscall::OPENAT2,
        dfd_arg(&ctx, off.openat2_dfd),
        arg(&ctx, off.openat2_filename),
        arg(&ctx, off.openat2_how),
    );
    0
}

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    let off = tp_offsets();
    let _ = try_enter(
        syscall::OPEN,
        Ok(AT_FDCWD),
        arg(&ctx, off.open_filename),
        arg(&ctx, off.open_flags),
    );
    0
}

#[tracepoint]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    let off = tp_offsets();
    let _ = try_enter(
        syscall::CREAT,
        Ok(AT_FDCWD),
        arg(&ctx, off.creat_pathname),
        Ok(CREAT_FLAGS),
    );
    0
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx, syscall::OPENAT);
    0
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx, syscall::OPENAT2);
    0
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx, syscall::OPEN);
    0
}

#[tracepoint]
pub fn sys_exit_creat(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx, syscall::CREAT);
    0
}

/// A 64-bit tracepoint argument at `offset` (from the `format` file).
#[inline(always)]
fn arg(ctx: &TracePointContext, offset: u32) -> Result<u64, i64> {
    unsafe { ctx.read_at::<u64>(offset as usize) }.map_err(i64::from)
}

/// A directory fd argument: a C `int` in an 8-byte slot, whose upper half
/// depends on how the caller loaded the register, so only the low 32 bits
/// count (AT_FDCWD is -100 either way).
#[inline(always)]
fn dfd_arg(ctx: &TracePointContext, offset: u32) -> Result<i64, i64> {
    arg(ctx, offset).map(|raw| i64::from(raw as u32 as i32))
}

#[inline(always)]
fn try_enter(
    syscall: u32,
    dfd: Result<i64, i64>,
    filename: Result<u64, i64>,
    flags_or_how: Result<u64, i64>,
) -> Result<(), i64> {
    let flags_or_how = flags_or_how?;
    // Drop read-only opens here already, so they cost no map update.
    if syscall != syscall::OPENAT2 && !has_write_intent(flags_or_how) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_excluded((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let stash = Stash {
        filename: filename?,
        flags_or_how,
        dfd: dfd?,
        syscall,
        _pad: 0,
    };
    STASH.insert(&pid_tgid, &stash, 0).map_err(i64::from)
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext, syscall: u32) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let stash = *unsafe { STASH.get(&pid_tgid) }.ok_or(0i64)?;
    let _ = STASH.remove(&pid_tgid);
    // A stash left by another syscall (a thread whose exit was missed while
    // the programs were being attached) is not ours.
    if stash.syscall != syscall {
        return Ok(());
    }
    let ret = arg(ctx, tp_offsets().exit_ret)? as i64;
    if ret < 0 {
        return Ok(());
    }
    let flags = if syscall == syscall::OPENAT2 {
        unsafe { bpf_probe_read_user(stash.flags_or_how as *const u64) }.map_err(i64::from)?
    } else {
        stash.flags_or_how
    };
    if !has_write_intent(flags) {
        return Ok(());
    }
    emit_if_watched(&Hit {
        kind: event_kind::WRITE,
        syscall,
        flags,
        ret,
        dfd: stash.dfd,
        filename: stash.filename as *const u8,
    })
}
