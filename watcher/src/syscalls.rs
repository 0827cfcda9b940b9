//! The syscalls watcher traces: what each changes, and where its
//! arguments are in its tracepoint record (read from the `format` files,
//! by field name). The programs get this as the `SPECS` map.

use watcher_common::{
    IO_URING_OPS, NO_ARG, SyscallSpec, TracepointOffsets, event_kind, io_op,
    open_flags::{O_CREAT, O_TRUNC, O_WRONLY},
    role, shape,
};
use watcher_core::syscall::Syscall;

use crate::tracefs::{FormatFile, TracefsError};

/// One traced syscall: its kind, shape and argument fields by role.
struct Traced {
    syscall: Syscall,
    nr: libc::c_long,
    kind: u32,
    shape: u32,
    /// (role, field name in the `format` file).
    args: &'static [(usize, &'static str)],
}

/// `setxattrat` and `removexattrat` (Linux 6.13) are newer than libc's
/// tables; syscalls added since 5.1 have one number on every architecture.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

use role::{DFD, DFD2, FD, FLAGS, NAME, NAME2};
use shape::{ALLOCATE, CLOSE, OPEN, OPEN_HOW, PATH, PATHS, WRITE};

const TRACED: &[Traced] = &[
    t(
        Syscall::named("openat"),
        libc::SYS_openat,
        event_kind::WRITE,
        OPEN,
        &[(DFD, "dfd"), (NAME, "filename"), (FLAGS, "flags")],
    ),
    t(
        Syscall::named("openat2"),
        libc::SYS_openat2,
        event_kind::WRITE,
        OPEN_HOW,
        &[(DFD, "dfd"), (NAME, "filename"), (FLAGS, "how")],
    ),
    t(
        Syscall::named("open"),
        libc::SYS_open,
        event_kind::WRITE,
        OPEN,
        &[(NAME, "filename"), (FLAGS, "flags")],
    ),
    t(
        Syscall::named("creat"),
        libc::SYS_creat,
        event_kind::WRITE,
        OPEN,
        &[(NAME, "pathname")],
    ),
    // No name: the file is the one the new fd is open on.
    t(
        Syscall::named("open_by_handle_at"),
        libc::SYS_open_by_handle_at,
        event_kind::WRITE,
        OPEN,
        &[(FLAGS, "flags")],
    ),
    t(
        Syscall::named("rename"),
        libc::SYS_rename,
        event_kind::RENAME,
        PATHS,
        &[(NAME, "oldname"), (NAME2, "newname")],
    ),
    t(
        Syscall::named("renameat"),
        libc::SYS_renameat,
        event_kind::RENAME,
        PATHS,
        &[
            (DFD, "olddfd"),
            (NAME, "oldname"),
            (DFD2, "newdfd"),
            (NAME2, "newname"),
        ],
    ),
    t(
        Syscall::named("renameat2"),
        libc::SYS_renameat2,
        event_kind::RENAME,
        PATHS,
        &[
            (DFD, "olddfd"),
            (NAME, "oldname"),
            (DFD2, "newdfd"),
            (NAME2, "newname"),
            (FLAGS, "flags"),
        ],
    ),
    t(
        Syscall::named("unlink"),
        libc::SYS_unlink,
        event_kind::DELETE,
        PATH,
        &[(NAME, "pathname")],
    ),
    t(
        Syscall::named("unlinkat"),
        libc::SYS_unlinkat,
        event_kind::DELETE,
        PATH,
        &[(DFD, "dfd"), (NAME, "pathname"), (FLAGS, "flag")],
    ),
    t(
        Syscall::named("rmdir"),
        libc::SYS_rmdir,
        event_kind::DELETE,
        PATH,
        &[(NAME, "pathname")],
    ),
    t(
        Syscall::named("mkdir"),
        libc::SYS_mkdir,
        event_kind::MKDIR,
        PATH,
        &[(NAME, "pathname")],
    ),
    t(
        Syscall::named("mkdirat"),
        libc::SYS_mkdirat,
        event_kind::MKDIR,
        PATH,
        &[(DFD, "dfd"), (NAME, "pathname")],
    ),
    t(
        Syscall::named("link"),
        libc::SYS_link,
        event_kind::LINK,
        PATHS,
        &[(NAME, "oldname"), (NAME2, "newname")],
    ),
    t(
        Syscall::named("linkat"),
        libc::SYS_linkat,
        event_kind::LINK,
        PATHS,
        &[
            (DFD, "olddfd"),
            (NAME, "oldname"),
            (DFD2, "newdfd"),
            (NAME2, "newname"),
            (FLAGS, "flags"),
        ],
    ),
    // A symlink's target is its contents, not a file it changes.
    t(
        Syscall::named("symlink"),
        libc::SYS_symlink,
        event_kind::LINK,
        PATH,
        &[(NAME, "newname")],
    ),
    t(
        Syscall::named("symlinkat"),
        libc::SYS_symlinkat,
        event_kind::LINK,
        PATH,
        &[(DFD, "newdfd"), (NAME, "newname")],
    ),
    t(
        Syscall::named("mknod"),
        libc::SYS_mknod,
        event_kind::CREATE,
        PATH,
        &[(NAME, "filename")],
    ),
    t(
        Syscall::named("mknodat"),
        libc::SYS_mknodat,
        event_kind::CREATE,
        PATH,
        &[(DFD, "dfd"), (NAME, "filename")],
    ),
    t(
        Syscall::named("truncate"),
        libc::SYS_truncate,
        event_kind::TRUNCATE,
        PATH,
        &[(NAME, "path")],
    ),
    t(
        Syscall::named("ftruncate"),
        libc::SYS_ftruncate,
        event_kind::TRUNCATE,
        shape::FD,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("chmod"),
        libc::SYS_chmod,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "filename")],
    ),
    t(
        Syscall::named("fchmod"),
        libc::SYS_fchmod,
        event_kind::ATTRIB,
        shape::FD,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("fchmodat"),
        libc::SYS_fchmodat,
        event_kind::ATTRIB,
        PATH,
        &[(DFD, "dfd"), (NAME, "filename")],
    ),
    t(
        Syscall::named("fchmodat2"),
        libc::SYS_fchmodat2,
        event_kind::ATTRIB,
        PATH,
        &[(DFD, "dfd"), (NAME, "filename"), (FLAGS, "flags")],
    ),
    t(
        Syscall::named("chown"),
        libc::SYS_chown,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "filename")],
    ),
    t(
        Syscall::named("fchown"),
        libc::SYS_fchown,
        event_kind::ATTRIB,
        shape::FD,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("fchownat"),
        libc::SYS_fchownat,
        event_kind::ATTRIB,
        PATH,
        &[(DFD, "dfd"), (NAME, "filename"), (FLAGS, "flag")],
    ),
    t(
        Syscall::named("lchown"),
        libc::SYS_lchown,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "filename")],
    ),
    t(
        Syscall::named("utimensat"),
        libc::SYS_utimensat,
        event_kind::ATTRIB,
        PATH,
        &[(DFD, "dfd"), (NAME, "filename"), (FLAGS, "flags")],
    ),
    t(
        Syscall::named("utime"),
        libc::SYS_utime,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "filename")],
    ),
    t(
        Syscall::named("utimes"),
        libc::SYS_utimes,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "filename")],
    ),
    t(
        Syscall::named("futimesat"),
        libc::SYS_futimesat,
        event_kind::ATTRIB,
        PATH,
        &[(DFD, "dfd"), (NAME, "filename")],
    ),
    t(
        Syscall::named("setxattr"),
        libc::SYS_setxattr,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "pathname")],
    ),
    t(
        Syscall::named("lsetxattr"),
        libc::SYS_lsetxattr,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "pathname")],
    ),
    t(
        Syscall::named("fsetxattr"),
        libc::SYS_fsetxattr,
        event_kind::ATTRIB,
        shape::FD,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("setxattrat"),
        SYS_SETXATTRAT,
        event_kind::ATTRIB,
        PATH,
        &[(DFD, "dfd"), (NAME, "pathname"), (FLAGS, "at_flags")],
    ),
    t(
        Syscall::named("removexattr"),
        libc::SYS_removexattr,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "pathname")],
    ),
    t(
        Syscall::named("lremovexattr"),
        libc::SYS_lremovexattr,
        event_kind::ATTRIB,
        PATH,
        &[(NAME, "pathname")],
    ),
    t(
        Syscall::named("fremovexattr"),
        libc::SYS_fremovexattr,
        event_kind::ATTRIB,
        shape::FD,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("removexattrat"),
        SYS_REMOVEXATTRAT,
        event_kind::ATTRIB,
        PATH,
        &[(DFD, "dfd"), (NAME, "pathname"), (FLAGS, "at_flags")],
    ),
    // Data written through a descriptor, whoever opened it and when.
    t(
        Syscall::named("write"),
        libc::SYS_write,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("pwrite64"),
        libc::SYS_pwrite64,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("writev"),
        libc::SYS_writev,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("pwritev"),
        libc::SYS_pwritev,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("pwritev2"),
        libc::SYS_pwritev2,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("sendfile64"),
        libc::SYS_sendfile,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "out_fd")],
    ),
    t(
        Syscall::named("copy_file_range"),
        libc::SYS_copy_file_range,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "fd_out")],
    ),
    t(
        Syscall::named("splice"),
        libc::SYS_splice,
        event_kind::MODIFY,
        WRITE,
        &[(FD, "fd_out")],
    ),
    t(
        Syscall::named("fallocate"),
        libc::SYS_fallocate,
        event_kind::MODIFY,
        ALLOCATE,
        &[(FD, "fd")],
    ),
    t(
        Syscall::named("close"),
        libc::SYS_close,
        event_kind::CLOSE_WRITE,
        CLOSE,
        &[(FD, "fd")],
    ),
    // Onto a descriptor that is open, they close it first.
    t(
        Syscall::named("dup2"),
        libc::SYS_dup2,
        event_kind::CLOSE_WRITE,
        CLOSE,
        &[(FD, "newfd")],
    ),
    t(
        Syscall::named("dup3"),
        libc::SYS_dup3,
        event_kind::CLOSE_WRITE,
        CLOSE,
        &[(FD, "newfd")],
    ),
];

const fn t(
    syscall: Syscall,
    nr: libc::c_long,
    kind: u32,
    shape: u32,
    args: &'static [(usize, &'static str)],
) -> Traced {
    Traced {
        syscall,
        nr,
        kind,
        shape,
        args,
    }
}

/// The flags `creat(2)` is defined as: an open without a flags argument.
const CREAT_FLAGS: u64 = O_CREAT | O_WRONLY | O_TRUNC;

/// A traced syscall this kernel has, ready for the `SPECS` map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub syscall: Syscall,
    pub nr: u32,
    pub spec: SyscallSpec,
    /// Where its `sys_enter_*` record keeps `__syscall_nr`.
    pub enter_nr_offset: u32,
}

/// The kinds whose events need syscall `kind`'s: an open also makes
/// `create`, `truncate` and the descriptors `close_write` waits for; a
/// rename may move open files into or out of a tree, and a close hands
/// over the writes no `modify` counted yet.
fn select(kind: u32) -> u32 {
    let bit = event_kind::bit;
    match kind {
        event_kind::WRITE => {
            bit(event_kind::WRITE)
                | bit(event_kind::CREATE)
                | bit(event_kind::TRUNCATE)
                | bit(event_kind::CLOSE_WRITE)
        }
        event_kind::RENAME | event_kind::CLOSE_WRITE => bit(kind) | bit(event_kind::MODIFY),
        kind => bit(kind),
    }
}

/// The spec of every traced syscall whose tracepoints this kernel has
/// (`setxattrat` and the like are missing on older ones); the opens and
/// `close` must be there.
pub fn read_specs() -> Result<Vec<Spec>, TracefsError> {
    let mut specs = Vec::new();
    for traced in TRACED {
        let format = match FormatFile::read("syscalls", &format!("sys_enter_{}", traced.syscall)) {
            Ok(format) => format,
            Err(TracefsError::ReadFormat { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && traced.kind != event_kind::WRITE
                    && traced.kind != event_kind::MODIFY
                    && traced.shape != CLOSE =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut args = [NO_ARG; role::COUNT];
        for &(role, field) in traced.args {
            args[role] = format.argument_slot(field)?;
        }
        specs.push(Spec {
            syscall: traced.syscall,
            nr: traced.nr as u32,
            enter_nr_offset: format.offset("__syscall_nr", 4)?,
            spec: SyscallSpec {
                id: traced.syscall.id(),
                kind: traced.kind,
                select: select(traced.kind),
                shape: traced.shape,
                args,
                from_regs: 0,
                _pad: 0,
                flags: if traced.syscall == Syscall::CREAT {
                    CREAT_FLAGS
                } else {
                    0
                },
            },
        });
    }
    Ok(specs)
}

/// Reads the record offsets the programs need, from the `sys_exit_*`
/// tracepoints of every syscall in `specs` (whose `sys_enter_*` ones
/// [`read_specs`] read) and the process tracepoints.
pub fn read_offsets(specs: &[Spec]) -> Result<TracepointOffsets, TracefsError> {
    let mut syscall_nr = None;
    let mut exit_ret = None;
    let agree = |seen: &mut Option<u32>, field, offset| match *seen {
        Some(before) if before != offset => Err(TracefsError::Mismatch {
            field,
            offsets: (before, offset),
        }),
        _ => {
            *seen = Some(offset);
            Ok(())
        }
    };
    for spec in specs {
        agree(&mut syscall_nr, "__syscall_nr", spec.enter_nr_offset)?;
        let exit = FormatFile::read("syscalls", &format!("sys_exit_{}", spec.syscall))?;
        agree(
            &mut syscall_nr,
            "__syscall_nr",
            exit.offset("__syscall_nr", 4)?,
        )?;
        agree(&mut exit_ret, "ret", exit.offset("ret", 8)?)?;
    }
    let exit = FormatFile::read("sched", "sched_process_exit")?;
    let mut offsets = TracepointOffsets {
        syscall_nr: syscall_nr.unwrap_or_default(),
        exit_ret: exit_ret.unwrap_or_default(),
        fork_child_pid: FormatFile::read("sched", "sched_process_fork")?.offset("child_pid", 4)?,
        exit_group_dead: exit.offset("group_dead", 1)?,
        ..TracepointOffsets::default()
    };
    // A kernel without io_uring has no such tracepoints: 0, not attached.
    let io = |name| match FormatFile::read("io_uring", name) {
        Err(TracefsError::ReadFormat { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        read => read.map(Some),
    };
    if let (Some(submit), Some(complete)) = (io("io_uring_submit_req")?, io("io_uring_complete")?) {
        offsets.io_submit_req = submit.offset("req", 8)?;
        offsets.io_submit_opcode = submit.offset("opcode", 1)?;
        offsets.io_submit_flags = submit.offset("flags", 8)?;
        offsets.io_complete_req = complete.offset("req", 8)?;
        offsets.io_complete_res = complete.offset("res", 4)?;
    }
    Ok(offsets)
}

/// The syscall each followed io_uring operation does the work of: its
/// events are that syscall's kinds, its names and fds have the same
/// roles (`IORING_OP_RENAMEAT` takes renameat2's flags).
const IO_URING_AS: [(u8, &str); IO_URING_OPS.len()] = [
    (io_op::WRITEV, "writev"),
    (io_op::WRITE_FIXED, "write"),
    (io_op::FALLOCATE, "fallocate"),
    (io_op::OPENAT, "openat"),
    (io_op::CLOSE, "close"),
    (io_op::WRITE, "write"),
    (io_op::OPENAT2, "openat2"),
    (io_op::RENAMEAT, "renameat2"),
    (io_op::UNLINKAT, "unlinkat"),
    (io_op::MKDIRAT, "mkdirat"),
    (io_op::SYMLINKAT, "symlinkat"),
    (io_op::LINKAT, "linkat"),
    (io_op::FTRUNCATE, "ftruncate"),
    (io_op::WRITEV_FIXED, "writev"),
];

/// The `IO_SPECS` map's entries: each followed io_uring operation's
/// `IORING_OP_*` value and spec (the arguments' places are the io_uring
/// programs' own, from BTF).
pub fn io_uring_specs() -> Vec<(u8, SyscallSpec)> {
    IO_URING_AS
        .iter()
        .filter_map(|&(opcode, name)| {
            let traced = TRACED.iter().find(|t| t.syscall.name() == name)?;
            Some((
                opcode,
                SyscallSpec {
                    id: Syscall::io_uring(opcode)?.id(),
                    kind: traced.kind,
                    select: select(traced.kind),
                    shape: traced.shape,
                    args: [NO_ARG; role::COUNT],
                    from_regs: 0,
                    _pad: 0,
                    flags: 0,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_io_uring_operation_does_a_traced_syscalls_work() {
        let specs = io_uring_specs();
        assert_eq!(specs.len(), IO_URING_OPS.len());
        for (opcode, spec) in specs {
            assert!(u32::from(opcode) < io_op::LIMIT);
            let syscall = Syscall::from_id(spec.id).unwrap();
            assert_eq!(Syscall::io_uring(opcode), Some(syscall));
            assert!(syscall.name().starts_with("io_uring:"), "{syscall}");
        }
    }

    #[test]
    fn every_syscall_is_traced_once_with_a_number_in_range() {
        for traced in TRACED {
            assert!((traced.nr as u32) < watcher_common::MAX_SYSCALL_NR);
        }
        // Every syscall but the pseudo-syscall `exit`, in the order of
        // their ids.
        let traced: Vec<Syscall> = TRACED.iter().map(|t| t.syscall).collect();
        assert_eq!(traced, Syscall::traced().collect::<Vec<_>>());
    }
}
