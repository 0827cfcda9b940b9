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
/// `watch_id` of an event whose watch the kernel could not decide (see
/// [`event_status::UNDECIDED`]).
pub const WATCH_NONE: u32 = u32::MAX;
/// Index in the `DIRTY` and `LOST` arrays for undecided events (see
/// [`event_status::UNDECIDED`]): user space counts them for every watch.
pub const UNDECIDED_SLOT: u32 = MAX_WATCHES;
/// Longest file name, NUL included (`NAME_MAX` + 1).
pub const NAME_MAX: usize = 256;
/// Most steps (parent dentries and mount crossings) the kernel walks from
/// an opened file towards the root to decide whether it lies under a
/// watch, and again to build its path. A file deeper than that is sent
/// marked undecided, never silently dropped.
pub const MAX_WALK: u32 = 1024;
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

/// How the kernel side decides whether a file lies under a watch; the
/// `MATCH_MODE` global.
pub mod match_mode {
    /// Walk the opened file's dentries and mounts up to the root and look
    /// each ancestor up in `WATCH_INODES` (needs [`KernelOffsets`] from
    /// BTF).
    ///
    /// [`KernelOffsets`]: super::KernelOffsets
    pub const EXACT: u32 = 0;
    /// Without BTF: match absolute names by prefix in `WATCHES`, and send
    /// relative ones to user space, which places them from the process's
    /// cwd or dirfd.
    pub const PREFIX: u32 = 1;
}

/// Bits of [`EventHeader::status`].
pub mod event_status {
    /// The path lacks its leading components: the walk or the buffer ended
    /// before the root.
    pub const PATH_TRUNCATED: u32 = 1;
    /// The walk ended before the root without meeting a watched directory:
    /// the file may lie under one. Sent so that nothing is missed, with
    /// `watch_id` [`WATCH_NONE`](super::WATCH_NONE).
    pub const UNDECIDED: u32 = 2;
    /// Prefix mode: the name is relative (to `dfd` or the cwd); user space
    /// places it.
    pub const RELATIVE: u32 = 4;
}

/// Key of `WATCH_INODES`: a watched directory's identity as the kernel
/// sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeKey {
    /// `super_block.s_dev`, in the kernel's encoding (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
    /// `inode.i_ino`.
    pub ino: u64,
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

/// The fixed part of every event in the ring buffer. `name_len` bytes of
/// the name as the process passed it follow, then `path_len` bytes of the
/// opened file's path: its components from the file up, each ended by a NUL
/// (exact mode; empty in prefix mode, where the name is the path).
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
    /// The innermost watch the file lies under, or [`WATCH_NONE`].
    pub watch_id: u32,
    /// [`event_status`] bits.
    pub status: u32,
    /// The directory fd argument (`AT_FDCWD` when there is none).
    pub dfd: i32,
    pub name_len: u32,
    pub path_len: u32,
    pub _pad: u32,
    pub comm: [u8; TASK_COMM_LEN],
}

pub const EVENT_HEADER_LEN: usize = core::mem::size_of::<EventHeader>();

/// Room after the header: the name (less than `PATH_MAX`), then path
/// components, each written less than `PATH_MAX` bytes in and at most
/// `NAME_MAX` long. Sized so that offsets masked with `PATH_MAX - 1` are
/// in bounds whatever their values, which the verifier can check.
pub const EVENT_DATA_LEN: usize = 2 * PATH_MAX + NAME_MAX;

/// An event as it is assembled in the per-CPU scratch buffer.
#[repr(C)]
pub struct EventBuf {
    pub header: EventHeader,
    pub data: [u8; EVENT_DATA_LEN],
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

/// Byte offsets of the kernel struct members the exact match reads, from
/// the kernel's BTF at start-up (Rust eBPF has no CO-RE), handed to the
/// programs as the `KERNEL_OFFSETS` global. Names are `struct_member`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    /// `file.f_path.mnt`.
    pub file_path_mnt: u32,
    /// `file.f_path.dentry`.
    pub file_path_dentry: u32,
    pub dentry_parent: u32,
    /// `dentry.d_name.name`.
    pub dentry_name: u32,
    pub dentry_inode: u32,
    pub dentry_sb: u32,
    pub inode_ino: u32,
    pub super_block_dev: u32,
    pub vfsmount_root: u32,
    /// Where `struct vfsmount` sits inside `struct mount`.
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `repr(C)` integers and arrays, with explicit padding.
    unsafe impl aya::Pod for super::TracepointOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InodeKey {}
}
