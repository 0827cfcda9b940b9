//! One enter and one exit program for every traced syscall, attached to
//! each `syscalls/sys_{enter,exit}_NAME` tracepoint (so the verifier checks
//! each once). `SPECS`, by syscall number, says what the arguments are:
//! the enter program keeps them per thread, the exit program takes them
//! back (always deleting the stash) and turns successful calls into
//! events. In exact mode only closes and writes, whose entry does more,
//! have an enter program: the others' (`SyscallSpec::from_regs`: opens,
//! syscalls by name or by fd) exit program reads the arguments from the
//! registers the kernel saved at entry, which spares them a map update
//! and a program run, and watcher's stop half of their tracepoints.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use watcher_common::{
    FdKey, NO_ARG, SYSCALL_ARGS_WORD, SYSCALL_RECORD_LEN, Stash, SyscallSpec, TracepointOffsets,
    event_kind, match_mode,
    open_flags::{AT_FDCWD, has_write_intent},
    role, shape, verdict,
};

use super::process::admit;
use crate::{
    config::{event_mask, kernel_offsets, match_mode, tp_offsets},
    error::Error,
    event::hand_over,
    files::{close_is_event, count_rename, count_write, take_pending, track_write_fd, verdict_of},
    maps::{SPECS, STASH, WRITE_FDS, op},
    scratch::Hit,
    vfs::file_of_fd,
    walk::outside,
};

/// The kinds an open's event stands for (user space splits it).
pub const OPEN_KINDS: u32 = event_kind::bit(event_kind::WRITE)
    | event_kind::bit(event_kind::CREATE)
    | event_kind::bit(event_kind::TRUNCATE);

#[tracepoint]
pub fn sys_enter(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    // A helper's failure is worth a debug line (`--bpf-log`); the other
    // errors are "nothing to do" (no stash, no spec...).
    if let Err(Error::Helper(e)) = try_exit(&ctx) {
        debug!(&ctx, target: "bpf", "sys_exit: a helper failed with {}, no event", e);
    }
    0
}

/// The syscall number of a `sys_enter_*` or `sys_exit_*` record.
#[inline(always)]
fn syscall_nr(ctx: &TracePointContext) -> Result<u32, Error> {
    record_field::<i32, { TracepointOffsets::USUAL_SYSCALL_NR as usize }>(
        ctx,
        tp_offsets().syscall_nr,
    )
    .map(|nr| nr as u32)
}

/// The `T` at byte `at` of the tracepoint's record. Verifier workaround:
/// it allows a direct load from the record only at an offset written in
/// the instruction, so where `at` is the offset every kernel watcher knows
/// has there (`USUAL`, a constant) the field is loaded directly; any other
/// layout costs a helper call. `at` is read-only (from the `format`
/// files), so the verifier drops the branch not taken.
#[inline(always)]
fn record_field<T: Copy, const USUAL: usize>(ctx: &TracePointContext, at: u32) -> Result<T, Error> {
    if at as usize == USUAL {
        // SAFETY: the record is at least as long as the fields the
        // `format` files put at `USUAL`, and any bytes are a valid
        // integer (the callers' `T`).
        return Ok(unsafe {
            core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(USUAL).cast())
        });
    }
    // SAFETY: the helper behind `read_at` fails rather than faults on a bad
    // address, and any bytes are a valid integer.
    unsafe { ctx.read_at::<T>(at as usize) }.map_err(Error::helper)
}

#[inline(always)]
fn spec(nr: u32) -> Result<&'static SyscallSpec, Error> {
    SPECS.get(nr).ok_or(Error::NoSpec)
}

#[inline(always)]
fn try_enter(ctx: &TracePointContext) -> Result<(), Error> {
    let nr = syscall_nr(ctx)?;
    let spec = spec(nr)?;
    if spec.select & event_mask() == 0 {
        return Ok(());
    }
    // SAFETY: the helper behind `read_at` fails rather than faults on a bad
    // address, and any bytes are a valid array of integers.
    let record =
        unsafe { ctx.read_at::<[u64; SYSCALL_RECORD_LEN / 8]>(0) }.map_err(Error::helper)?;
    let mut stash = Stash {
        args: args_of(spec, &record),
        file: 0,
        nr,
        origin: 0,
        event: 1,
        _pad: 0,
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    match spec.shape {
        // Read-only opens stop here, so they cost no map update.
        shape::OPEN if !has_write_intent(stash.args[role::FLAGS]) => return Ok(()),
        shape::CLOSE => {
            let key = FdKey {
                tgid,
                fd: stash.args[role::FD] as u32,
            };
            // SAFETY: only whether the entry exists is used, not the reference.
            if unsafe { WRITE_FDS.get(&key) }.is_none() {
                return Ok(());
            }
        }
        shape::WRITE | shape::ALLOCATE => {
            // Without BTF there are no verdicts: user space refuses
            // `modify` then.
            if match_mode() != match_mode::EXACT {
                return Ok(());
            }
            let file = file_of_fd(kernel_offsets(), stash.args[role::FD] as u32 as i64)?;
            // Most writes on the machine stop here, at a lookup.
            if verdict_of(file)? == verdict::MISS {
                return Ok(());
            }
            stash.file = file;
        }
        _ => {}
    }
    let Some((origin, event)) = admit(tgid, spec.kind) else {
        return Ok(());
    };
    (stash.origin, stash.event) = (origin, event);
    if spec.shape == shape::CLOSE {
        return closing(ctx, spec, tgid, stash.args[role::FD] as u32, stash.origin);
    }
    STASH.insert(&pid_tgid, &stash, 0).map_err(Error::helper)
}

/// The syscall's arguments by [`role`], from `record`: the tracepoint's,
/// or one made of the saved registers ([`regs_record`]).
#[inline(always)]
fn args_of(spec: &SyscallSpec, record: &[u64; SYSCALL_RECORD_LEN / 8]) -> [u64; role::COUNT] {
    let mut args = [0; role::COUNT];
    for (role, value) in args.iter_mut().enumerate() {
        let slot = usize::from(spec.args.get(role).copied().unwrap_or(NO_ARG));
        // Verifier: it refuses a stack read at an offset it cannot bound,
        // and the compiler, knowing `slot < 8` from the check, would drop
        // a mask; read back through a volatile load, the masked index
        // keeps its bound.
        let index = slot & (SYSCALL_RECORD_LEN / 8 - 1);
        // SAFETY: a reference to a local is valid and aligned.
        let index = unsafe { core::ptr::read_volatile(&index) };
        let word = if slot < record.len() {
            record.get(index)
        } else {
            None
        };
        *value = match word {
            // A directory fd is a C `int` in an 8-byte slot, whose upper
            // half depends on how the caller loaded the register: only the
            // low 32 bits count (AT_FDCWD is -100 either way).
            Some(&raw) if role == role::DFD || role == role::DFD2 => {
                raw as u32 as i32 as i64 as u64
            }
            Some(&raw) => raw,
            None if role == role::DFD || role == role::DFD2 => AT_FDCWD as u64,
            None if role == role::FLAGS => spec.flags,
            None => 0,
        };
    }
    args
}

/// A `sys_enter_*` record of the current syscall's arguments, made at its
/// exit from the registers the kernel saved at its entry (`pt_regs`),
/// which these syscalls leave as they were: the same values the enter
/// program would have read. Verifier: the task and its registers come
/// from BTF-typed helpers, so the registers are loaded directly, each at
/// an offset known at load time (`KERNEL_OFFSETS` is read-only).
#[inline(always)]
fn regs_record() -> [u64; SYSCALL_RECORD_LEN / 8] {
    let regs = kernel_offsets().pt_regs_args;
    // SAFETY: helpers whose results the verifier types (the current task,
    // its saved registers); the pointer is only read from.
    let at = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    // SAFETY: `at` is the task's `struct pt_regs`, and each offset is one
    // of its 8-byte members (read from BTF); a load the verifier allows.
    let arg =
        |i: usize| unsafe { core::ptr::read_volatile(at.add(regs[i] as usize).cast::<u64>()) };
    let mut record = [0; SYSCALL_RECORD_LEN / 8];
    const A: usize = SYSCALL_ARGS_WORD;
    // One statement per register: each offset a constant to the verifier.
    (
        record[A],
        record[A + 1],
        record[A + 2],
        record[A + 3],
        record[A + 4],
        record[A + 5],
    ) = (arg(0), arg(1), arg(2), arg(3), arg(4), arg(5));
    record
}

/// Descriptor `fd`, written or opened for writing under a watch, is being
/// closed (by `close`, or by a `dup2` onto it): its `close_write`, and the
/// last `modify` of the writes not yet counted, are sent now, as the call
/// enters. At its exit the file may be gone: `close` releases it before
/// it returns, and a file unlinked while open (or made with `O_TMPFILE`)
/// goes with it. A close fails only on a descriptor that is not open, and
/// a `dup2` only on a bad old one, so what is sent here happens.
#[inline(always)]
pub fn closing(
    ctx: &TracePointContext,
    spec: &SyscallSpec,
    tgid: u32,
    fd: u32,
    origin: u32,
) -> Result<(), Error> {
    let _ = WRITE_FDS.remove(&FdKey { tgid, fd });
    let file = file_of_fd(kernel_offsets(), i64::from(fd))?;
    let count = take_pending(file);
    if !close_is_event(count) {
        return Ok(());
    }
    let op = op().ok_or(Error::NoScratch)?;
    op.len = 1;
    op.origin = origin;
    op.targets[0].reset(file, i64::from(fd), 0);
    hand_over(ctx, &Hit::close_write(spec.id, count))
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext) -> Result<(), Error> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let nr = syscall_nr(ctx)?;
    let spec = spec(nr)?;
    // Read once; its failure (only possible through the helper) counts
    // after the stash is taken back, as the stash is always deleted.
    let ret = record_field::<i64, { TracepointOffsets::USUAL_EXIT_RET as usize }>(
        ctx,
        tp_offsets().exit_ret,
    );
    let exact = match_mode() == match_mode::EXACT;
    let stash = if spec.from_regs != 0 {
        // No enter program: what it would have stashed, from the
        // registers, filtered as it would have.
        if spec.select & event_mask() == 0 {
            return Ok(());
        }
        let args = args_of(spec, &regs_record());
        // An open's file, when it lies outside every watch, ends it here,
        // before the process is looked up: most opens for writing on a
        // machine.
        let mut file = 0;
        if spec.shape == shape::OPEN {
            let ret = ret?;
            if !has_write_intent(args[role::FLAGS]) || ret < 0 {
                return Ok(());
            }
            if exact {
                file = file_of_fd(kernel_offsets(), ret)?;
                if outside(file) {
                    return Ok(());
                }
            }
        }
        let (origin, event) = admit((pid_tgid >> 32) as u32, spec.kind).ok_or(Error::NotStashed)?;
        Stash {
            args,
            file,
            nr,
            origin,
            event,
            _pad: 0,
        }
    } else {
        // SAFETY: the value is copied out before the entry is removed; the
        // key is this thread's, which nothing else writes now, and any
        // bytes are a valid `Stash` (integers), should an eviction have
        // reused the entry.
        let stash = *unsafe { STASH.get(&pid_tgid) }.ok_or(Error::NotStashed)?;
        let _ = STASH.remove(&pid_tgid);
        // A stash left by another syscall (a thread whose exit was missed
        // while the programs were being attached) is not ours.
        if stash.nr != nr {
            return Ok(());
        }
        stash
    };
    let ret = ret?;
    if ret < 0 {
        return Ok(());
    }
    if spec.kind == event_kind::RENAME {
        count_rename();
    }
    if stash.event == 0 {
        return Ok(());
    }
    let args = &stash.args;
    let tgid = (pid_tgid >> 32) as u32;
    // The file `fd` leads to; without BTF user space places it.
    let file_of = |fd| {
        if exact {
            file_of_fd(kernel_offsets(), fd)
        } else {
            Ok(0)
        }
    };
    let op = op().ok_or(Error::NoScratch)?;
    op.len = 1;
    op.origin = stash.origin;
    let mut flags = args[role::FLAGS];
    let mut quiet = false;
    let mut opened = false;
    let mut count = 0;
    let [first, second] = &mut op.targets;
    match spec.shape {
        shape::OPEN | shape::OPEN_HOW => {
            if spec.shape == shape::OPEN_HOW {
                // SAFETY: the helper fails rather than faults on a bad user
                // address, and any bytes are a valid integer.
                flags =
                    unsafe { bpf_probe_read_user(flags as *const u64) }.map_err(Error::helper)?;
            }
            if !has_write_intent(flags) {
                return Ok(());
            }
            // Found and not outside at once, or by `openat2`.
            let file = if stash.file != 0 {
                stash.file
            } else {
                let file = file_of(ret)?;
                if exact && outside(file) {
                    return Ok(());
                }
                file
            };
            first.reset(file, args[role::DFD] as i64, args[role::NAME]);
            quiet = event_mask() & OPEN_KINDS == 0;
            opened = true;
        }
        shape::PATH => first.reset(0, args[role::DFD] as i64, args[role::NAME]),
        shape::PATHS => {
            first.reset(0, args[role::DFD] as i64, args[role::NAME]);
            second.reset(0, args[role::DFD2] as i64, args[role::NAME2]);
            op.len = 2;
        }
        shape::FD => {
            let fd = args[role::FD] as u32 as i64;
            first.reset(file_of(fd)?, fd, 0);
        }
        shape::WRITE | shape::ALLOCATE => {
            // A write of nothing changed nothing; `fallocate` returns 0.
            if spec.shape == shape::WRITE && ret == 0 {
                return Ok(());
            }
            let fd = args[role::FD] as u32;
            let written = count_write(stash.file);
            track_write_fd(tgid, i64::from(fd), written.watch);
            if written.due == 0 {
                return Ok(());
            }
            count = written.due;
            first.reset(stash.file, i64::from(fd), 0);
        }
        _ => return Ok(()),
    }
    hand_over(
        ctx,
        &Hit {
            kind: spec.kind,
            syscall: spec.id,
            flags,
            ret,
            quiet,
            opened,
            count,
            submitter: None,
            track: opened && exact,
            io_req: 0,
            exiting: 0,
        },
    )
}
