//! The one ABI between watcher's eBPF programs and its user space: event
//! layouts, map keys and values, globals and constants. Nothing else defines
//! them.
#![no_std]

/// Longest path the kernel accepts, NUL included (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Length of a task's `comm`, NUL included (`TASK_COMM_LEN`).
pub const TASK_COMM_LEN: usize = 16;
/// Longest key an LPM trie accepts (`LPM_DATA_SIZE_MAX` in the kernel): a
/// watched directory's path, with its trailing `/`, must fit in it.
pub const WATCH_PREFIX_MAX: usize = 256;
/// How many directories one watcher can watch.
pub const MAX_WATCHES: u32 = 256;
/// Threads that can be inside an open syscall at the same time; the stash
/// is an LRU map, so a thread that never returns cannot exhaust it.
pub const MAX_INFLIGHT: u32 = 16384;
/// Live processes descended from watcher (its actions and their children)
/// whose writes are never events.
pub const MAX_EXCLUDED: u32 = 8192;

/// Open flags (x86-64 and the generic ABI) that the programs test.
pub mod open_flags {
    pub const O_ACCMODE: u64 = 0o3;
    pub const O_WRONLY: u64 = 0o1;
    pub const O_RDWR: u64 = 0o2;
    pub const O_CREAT: u64 = 0o100;
    pub const O_TRUNC: u64 = 0o1000;
    /// An `O_PATH` descriptor cannot be written through, whatever else is set.
    pub const O_PATH: u64 = 0o10000000;

    /// Whether an open with these flags can change the file's contents.
    #[inline(always)]
    pub const fn has_write_intent(flags: u64) -> bool {
        flags & O_PATH == 0
            && (flags & O_ACCMODE == O_WRONLY
                || flags & O_ACCMODE == O_RDWR
                || flags & (O_CREAT | O_TRUNC) != 0)
    }
}

/// Which syscall an event came from.
pub mod syscall {
    pub const OPENAT: u32 = 0;
    pub const OPENAT2: u32 = 1;
    pub const OPEN: u32 = 2;
    pub const CREAT: u32 = 3;
}

/// What happened.
pub mod event_kind {
    /// A successful open with write intent.
    pub const WRITE: u32 = 1;
}

/// What `sys_enter_*` keeps, per thread, for `sys_exit_*`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stash {
    /// User pointer to the pathname.
    pub filename: u64,
    /// Open flags; for `openat2` the user pointer to `struct open_how`
    /// instead, read at exit when the page is sure to be there.
    pub flags_or_how: u64,
    pub dfd: i64,
    pub syscall: u32,
    pub _pad: u32,
}

/// The fixed part of every event in the ring buffer; `path_len` bytes of
/// path (no NUL) follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// `CLOCK_BOOTTIME` in nanoseconds.
    pub time_ns: u64,
    pub kind: u32,
    pub syscall: u32,
    /// Thread group id (what user space calls the pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u64,
    /// The syscall's return value (the new fd for opens).
    pub ret: i64,
    /// Value from the `WATCHES` map of the watch that matched.
    pub watch_id: u32,
    pub path_len: u32,
    pub comm: [u8; TASK_COMM_LEN],
}

pub const EVENT_HEADER_LEN: usize = core::mem::size_of::<EventHeader>();

/// An event as it is assembled in the per-CPU scratch buffer.
#[repr(C)]
pub struct EventBuf {
    pub header: EventHeader,
    pub path: [u8; PATH_MAX],
}

/// Byte offsets of the syscall tracepoints' arguments, read from their
/// `format` files in tracefs at start-up and handed to the programs as the
/// `TP_OFFSETS` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    pub openat_dfd: u32,
    pub openat_filename: u32,
    pub openat_flags: u32,
    pub openat2_dfd: u32,
    pub openat2_filename: u32,
    pub openat2_how: u32,
    pub open_filename: u32,
    pub open_flags: u32,
    pub creat_pathname: u32,
    /// `ret` of every `sys_exit_*` tracepoint watcher uses (user space
    /// checks they agree).
    pub exit_ret: u32,
    /// `child_pid` of `sched/sched_process_fork` (a 4-byte `pid_t`).
    pub fork_child_pid: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `repr(C)` integers and arrays, with explicit padding.
    unsafe impl aya::Pod for super::TracepointOffsets {}
}
