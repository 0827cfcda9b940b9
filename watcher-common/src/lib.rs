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
/// How many directories one watcher can watch. The maps keyed by watch are
/// not preallocated, or sized by it at a few bytes a slot, so a high limit
/// costs nothing until it is used.
pub const MAX_WATCHES: u32 = 4096;
/// `watch_id` of an event whose watch the kernel could not decide (see
/// [`event_status::UNDECIDED`]).
pub const WATCH_NONE: u32 = u32::MAX;
/// Index in the `DIRTY` and `LOST` arrays for undecided events (see
/// [`event_status::UNDECIDED`]): user space counts them for every watch.
pub const UNDECIDED_SLOT: u32 = MAX_WATCHES;
/// Index in the `DIRTY` array raised with any other slot, and in the
/// `LOST` array counting every loss: user space reads the one slot, and the
/// thousands of others only when it moved.
pub const SUMMARY_SLOT: u32 = MAX_WATCHES + 1;
/// Entries of the `DIRTY` and `LOST` arrays: the watches, then
/// [`UNDECIDED_SLOT`] and [`SUMMARY_SLOT`].
pub const SLOTS: u32 = MAX_WATCHES + 2;
/// Longest file name, NUL included (`NAME_MAX` + 1).
pub const NAME_MAX: usize = 256;
/// Most steps (parent dentries and mount crossings) the kernel walks from
/// an opened file towards the root to decide whether it lies under a
/// watch, and again to build its path. A file deeper than that is sent
/// marked undecided, never silently dropped.
pub const MAX_WALK: u32 = 1024;
/// Threads that can be inside a traced syscall at the same time; the stash
/// is an LRU map, so a thread that never returns cannot exhaust it.
pub const MAX_INFLIGHT: u32 = 16384;

/// Most io_uring requests in flight that may be events (`IO_REQS`): each
/// holds its names until it completes.
pub const MAX_IO_INFLIGHT: u32 = 4096;
/// Live processes descended from watcher (its actions and their children)
/// whose writes are never events.
pub const MAX_EXCLUDED: u32 = 8192;

/// Most keys of each process filter map (`--pid`, `--uid`, `--comm`,
/// `--exclude-comm`).
pub const MAX_FILTER_KEYS: u32 = 1024;

/// What user space may change while the programs run (a reload): the
/// single value of the `SETTINGS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The selected kinds, as `event_kind::bit`s.
    pub event_mask: u32,
    /// The process filters that are on, as [`filter`] bits.
    pub filters: u32,
    /// 0: the syscalls of watcher's actions (the processes in `EXCLUDED`)
    /// are left out when they enter, as every job ignores them. 1: they
    /// are traced, and their events carry the action's slot in
    /// [`EventHeader::origin`]: with several jobs, one job's action may
    /// change another job's tree, and only its own job ignores that. Their
    /// events never raise a `DIRTY` flag (the job whose action it is may
    /// rely on the flags).
    pub tag_actions: u32,
    /// Raised by user space each time the watches change: with the
    /// kernel's count of renames (`RENAMES`), what every verdict in
    /// `FILES` was reached at. Both only grow, so their sum changes
    /// whenever either does, and a verdict reached before is decided
    /// again.
    pub generation: u32,
    /// At most one `modify` event per open file per this many
    /// nanoseconds; the writes in between are counted in the next one
    /// (or in the file's `close_write` record).
    pub modify_interval_ns: u64,
}

/// Bits of [`Settings::filters`]: which process filters are on. A syscall
/// is traced only when its process passes every one that is.
pub mod filter {
    /// Its thread group id is in `FILTER_PIDS`.
    pub const PID: u32 = 1;
    /// Its uid is in `FILTER_UIDS`.
    pub const UID: u32 = 2;
    /// Its comm is in `FILTER_COMMS` with [`COMM_INCLUDE`].
    pub const COMM: u32 = 4;
    /// Its comm is not in `FILTER_COMMS` with [`COMM_EXCLUDE`].
    pub const EXCLUDE_COMM: u32 = 8;

    /// Values of `FILTER_COMMS`.
    pub const COMM_INCLUDE: u8 = 1;
    pub const COMM_EXCLUDE: u8 = 2;
}

/// Open flags (x86-64 and the generic ABI) that the programs test.
pub mod open_flags {
    pub const O_ACCMODE: u64 = 0o3;
    pub const O_WRONLY: u64 = 0o1;
    pub const O_RDWR: u64 = 0o2;
    pub const O_CREAT: u64 = 0o100;
    pub const O_TRUNC: u64 = 0o1000;
    /// An `O_PATH` descriptor cannot be written through, whatever else is set.
    pub const O_PATH: u64 = 0o10000000;

    /// `file.f_mode` bit of a file the open created (`include/linux/fs.h`;
    /// a `#define`, so not in BTF; the same bit since Linux 4.19).
    pub const FMODE_CREATED: u32 = 1 << 20;
    /// `AT_FDCWD`: a name relative to the cwd.
    pub const AT_FDCWD: i64 = -100;

    /// Whether an open with these flags can change the file's contents.
    #[inline(always)]
    pub const fn has_write_intent(flags: u64) -> bool {
        flags & O_PATH == 0
            && (flags & O_ACCMODE == O_WRONLY
                || flags & O_ACCMODE == O_RDWR
                || flags & (O_CREAT | O_TRUNC) != 0)
    }
}

/// Every syscall watcher traces, by the id events carry: the index in
/// [`SYSCALL_NAMES`]. User space attaches the one enter and the one exit
/// program to each `syscalls/sys_{enter,exit}_NAME` tracepoint and tells
/// the programs, through `SPECS`, what each syscall's arguments mean.
pub const SYSCALL_NAMES: [&str; 54] = [
    "openat",
    "openat2",
    "open",
    "creat",
    "open_by_handle_at",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "mkdir",
    "mkdirat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "mknod",
    "mknodat",
    "truncate",
    "ftruncate",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "fchownat",
    "lchown",
    "utimensat",
    "utime",
    "utimes",
    "futimesat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "setxattrat",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "removexattrat",
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "sendfile64",
    "copy_file_range",
    "splice",
    "fallocate",
    "close",
    "dup2",
    "dup3",
    "exit",
];

/// The pseudo-syscall of `close_write` events for descriptors a process
/// still held when it exited.
pub const SYSCALL_EXIT: u32 = SYSCALL_NAMES.len() as u32 - 1;

/// The io_uring operations watcher follows (`IORING_OP_*` of the kernel's
/// UAPI, which never renumbers them), with the name their events carry
/// as their syscall. Their ids follow [`SYSCALL_NAMES`]': the id of the
/// one at index `i` is `SYSCALL_NAMES.len() + i`.
pub const IO_URING_OPS: [(u8, &str); 14] = [
    (io_op::WRITEV, "io_uring:writev"),
    (io_op::WRITE_FIXED, "io_uring:write_fixed"),
    (io_op::FALLOCATE, "io_uring:fallocate"),
    (io_op::OPENAT, "io_uring:openat"),
    (io_op::CLOSE, "io_uring:close"),
    (io_op::WRITE, "io_uring:write"),
    (io_op::OPENAT2, "io_uring:openat2"),
    (io_op::RENAMEAT, "io_uring:renameat"),
    (io_op::UNLINKAT, "io_uring:unlinkat"),
    (io_op::MKDIRAT, "io_uring:mkdirat"),
    (io_op::SYMLINKAT, "io_uring:symlinkat"),
    (io_op::LINKAT, "io_uring:linkat"),
    (io_op::FTRUNCATE, "io_uring:ftruncate"),
    (io_op::WRITEV_FIXED, "io_uring:writev_fixed"),
];

/// `IORING_OP_*` values (`include/uapi/linux/io_uring.h`).
pub mod io_op {
    pub const WRITEV: u8 = 2;
    pub const WRITE_FIXED: u8 = 5;
    pub const FALLOCATE: u8 = 17;
    pub const OPENAT: u8 = 18;
    pub const CLOSE: u8 = 19;
    pub const WRITE: u8 = 23;
    pub const OPENAT2: u8 = 28;
    pub const RENAMEAT: u8 = 35;
    pub const UNLINKAT: u8 = 36;
    pub const MKDIRAT: u8 = 37;
    pub const SYMLINKAT: u8 = 38;
    pub const LINKAT: u8 = 39;
    pub const FTRUNCATE: u8 = 55;
    pub const WRITEV_FIXED: u8 = 61;
    /// Above every operation: the size of the `IO_SPECS` map.
    pub const LIMIT: u32 = 64;
    /// `REQ_F_FIXED_FILE` of `io_kiocb.flags` (the `IOSQE_FIXED_FILE` bit
    /// of the submission): the fd is an index in the registered files.
    pub const FIXED_FILE: u64 = 1;
}

/// Highest syscall number + 1 that `SPECS` covers.
pub const MAX_SYSCALL_NR: u32 = 1024;

/// How the exit program finds the files a syscall changed.
pub mod shape {
    /// An open: the file is the returned fd; `FLAGS` holds the open flags.
    pub const OPEN: u32 = 0;
    /// `openat2`: as [`OPEN`], but `FLAGS` points to `struct open_how`,
    /// whose first member is the flags.
    pub const OPEN_HOW: u32 = 1;
    /// One name, relative to `DFD` (or the cwd); an empty or null name
    /// means the file `DFD` is open on (`AT_EMPTY_PATH`).
    pub const PATH: u32 = 2;
    /// Two names, `NAME` relative to `DFD` and `NAME2` relative to `DFD2`:
    /// the old and the new.
    pub const PATHS: u32 = 3;
    /// The file `FD` is open on.
    pub const FD: u32 = 4;
    /// `close(FD)`, or a `dup2` onto `FD`, which closes it: a
    /// `close_write` when the fd was written or opened for writing under
    /// a watch.
    pub const CLOSE: u32 = 5;
    /// Data written to the file `FD` is open on: a `modify` when the call
    /// returns more than 0 (the bytes written).
    pub const WRITE: u32 = 6;
    /// As [`WRITE`], for a call that returns 0 on success (`fallocate`).
    pub const ALLOCATE: u32 = 7;
}

/// Indexes of [`SyscallSpec::args`]: what each argument is for.
pub mod role {
    pub const DFD: usize = 0;
    pub const NAME: usize = 1;
    pub const DFD2: usize = 2;
    pub const NAME2: usize = 3;
    pub const FLAGS: usize = 4;
    pub const FD: usize = 5;
    pub const COUNT: usize = 6;
}

/// The word of a `sys_enter_*` record that holds the first argument
/// (after the common fields and `__syscall_nr`).
pub const SYSCALL_ARGS_WORD: usize = 2;

/// [`SyscallSpec::args`] entry of a role the syscall does not have.
pub const NO_ARG: u8 = u8::MAX;

/// What a syscall's tracepoint record holds and what it changes, by its
/// number (the `SPECS` array). User space reads the argument positions
/// from the tracepoints' `format` files.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallSpec {
    /// Index in [`SYSCALL_NAMES`].
    pub id: u32,
    /// The [`event_kind`] of its events.
    pub kind: u32,
    /// Bits ([`event_kind::bit`]) of the kinds that need it traced;
    /// nothing is done for it unless one of them is selected.
    pub select: u32,
    /// A [`shape`] value.
    pub shape: u32,
    /// For each [`role`], the 8-byte word of the tracepoint record that
    /// holds it, or [`NO_ARG`].
    pub args: [u8; role::COUNT],
    /// 1: no enter program is attached for it; the exit program reads the
    /// arguments from the task's saved registers (`pt_regs`, unchanged
    /// from entry to exit for these syscalls), in record words from
    /// [`SYSCALL_ARGS_WORD`] on. In exact mode, every syscall whose
    /// arguments the exit needs and the entry only kept (opens, the
    /// commonest traced syscalls on a machine, and those by name or by
    /// fd); not closes and writes, whose entry does more.
    pub from_regs: u8,
    pub _pad: u8,
    /// The flags of a syscall without a flags argument (`creat`).
    pub flags: u64,
}

/// What happened. The `--events` names are in user space.
pub mod event_kind {
    /// An open with write intent (user space also derives `create` and
    /// `truncate` from it).
    pub const WRITE: u32 = 0;
    pub const CREATE: u32 = 1;
    pub const DELETE: u32 = 2;
    pub const RENAME: u32 = 3;
    pub const MKDIR: u32 = 4;
    /// A hard link or a symlink.
    pub const LINK: u32 = 5;
    pub const TRUNCATE: u32 = 6;
    /// Mode, owner, times or extended attributes.
    pub const ATTRIB: u32 = 7;
    /// The close of a descriptor opened for writing under a watch. Its
    /// [`EventHeader::count`] is the writes to the file that no `MODIFY`
    /// event has counted yet: user space makes a `modify` of them.
    pub const CLOSE_WRITE: u32 = 8;
    /// Data written to a file under a watch, through any descriptor.
    pub const MODIFY: u32 = 9;
    pub const COUNT: u32 = 10;

    /// The kind's bit in `EVENT_MASK` and `SyscallSpec::select`.
    #[inline(always)]
    pub const fn bit(kind: u32) -> u32 {
        1 << kind
    }
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

/// Bits of [`Target::status`].
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
    /// The path is the directory the name is relative to (after the
    /// name's first `skip` bytes, leading `..` that the walk already
    /// took): the file's path is the rest of the name joined to it.
    pub const BASE: u32 = 8;
    /// The name goes back up (`..`) after going down, where the kernel
    /// cannot follow it: user space decides from the joined path.
    pub const LEXICAL: u32 = 16;
    /// The open created the file (`FMODE_CREATED`).
    pub const CREATED: u32 = 32;
    /// The path crosses a bind mount (a mount of a directory that is not
    /// its file system's root) at or above the watch, or the watch is an
    /// overlay's upper directory written through the merged one: the
    /// process reached the file by another path than the watch's own.
    pub const BOUND: u32 = 64;
    /// An io_uring operation on a direct descriptor (a slot of the ring's
    /// registered files, which an open may fill), not a descriptor of the
    /// process: the event has no fd.
    pub const DIRECT: u32 = 128;
    /// A name followed from a directory goes down through directories
    /// below the watch that the kernel only knows by name (any of them may
    /// be a symlink leading elsewhere): user space follows the name's
    /// directory in the filesystem and decides.
    pub const THROUGH: u32 = 256;
}

/// Key of `WATCH_INODES`: a watched directory's identity as the kernel
/// sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    /// `super_block.s_dev`, in the kernel's encoding (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
    /// `inode.i_ino`.
    pub ino: u64,
}

/// Value of `WATCH_BITS`: a bit per watched directory, and per device that
/// holds one, at a hash of its identity. The walk up from a file looks an
/// ancestor up in `WATCH_INODES` (and its device in `WATCH_DEVS`) only when
/// its bit is set: most ancestors of most files are no watch, and testing
/// a bit costs a load where a hash lookup costs a hash and a bucket walk.
/// A bit shared with a watch (another hash's, or one gone) only costs the
/// lookup.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WatchBits {
    pub devs: [u64; WATCH_BITS_DEV_WORDS],
    pub inodes: [u64; WATCH_BITS_INODE_WORDS],
}

/// 1,024 bits for devices.
pub const WATCH_BITS_DEV_WORDS: usize = 16;
/// 65,536 bits for directories: with [`MAX_WATCHES`] watches, one
/// unrelated directory in sixteen still takes the lookup.
pub const WATCH_BITS_INODE_WORDS: usize = 1024;

impl WatchBits {
    pub const EMPTY: Self = Self {
        devs: [0; WATCH_BITS_DEV_WORDS],
        inodes: [0; WATCH_BITS_INODE_WORDS],
    };

    /// The bit of directory `key`, below `64 * WATCH_BITS_INODE_WORDS`.
    #[inline(always)]
    pub const fn inode_bit(key: &InodeKey) -> u32 {
        (mix(key.ino ^ ((key.dev as u64) << 40)) >> (64 - 16)) as u32
    }

    /// The bit of device `dev`, below `64 * WATCH_BITS_DEV_WORDS`.
    #[inline(always)]
    pub const fn dev_bit(dev: u32) -> u32 {
        (mix(dev as u64) >> (64 - 10)) as u32
    }

    /// Whether `bit` is set in `words` (false past their end).
    #[inline(always)]
    pub fn test(words: &[u64], bit: u32) -> bool {
        words
            .get((bit >> 6) as usize)
            .is_some_and(|word| (word >> (bit & 63)) & 1 != 0)
    }

    /// Sets `bit` in `words` (nothing past their end).
    pub fn set(words: &mut [u64], bit: u32) {
        if let Some(word) = words.get_mut((bit >> 6) as usize) {
            *word |= 1 << (bit & 63);
        }
    }
}

/// Fibonacci hashing: the top bits of the product are well mixed.
#[inline(always)]
const fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Key of `EDGES`: a directory on the way from the root to a watched
/// directory, and the name of its entry that leads on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EdgeKey {
    pub parent: InodeKey,
    /// [`name_hash`] of the entry's name.
    pub hash: u64,
}

/// Value of `EDGES`: the directory the entry names.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub child: InodeKey,
    /// The watch `child` is, or lies under (`route`), or [`WATCH_NONE`].
    pub watch: u32,
    /// When `child` is the root of a mount of a directory below `watch`
    /// (a bind mount of a subdirectory): which of the paths user space
    /// keeps leads from the watch down to it, from 1; 0 otherwise.
    pub route: u32,
    /// The mount namespace (inode number) the entry leads to `child` in,
    /// when it is a mount point there and perhaps not elsewhere; 0 in
    /// every namespace.
    pub mntns: u32,
    pub _pad: u32,
}

/// Most entries of `EDGES`: every watch's path, as given and canonical
/// (not preallocated: only those in use take memory; 8 a watch at
/// [`MAX_WATCHES`]).
pub const MAX_EDGES: u32 = 32768;

/// FNV-1a, the hash of `EDGES` names; the kernel hashes byte by byte with
/// [`name_hash_step`].
pub const NAME_HASH_INIT: u64 = 0xcbf2_9ce4_8422_2325;

#[inline(always)]
pub const fn name_hash_step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
}

pub const fn name_hash(name: &[u8]) -> u64 {
    let mut hash = NAME_HASH_INIT;
    let mut i = 0;
    while i < name.len() {
        hash = name_hash_step(hash, name[i]);
        i += 1;
    }
    hash
}

/// Key of `WRITE_FDS`: a descriptor opened for writing under a watch.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdKey {
    pub tgid: u32,
    pub fd: u32,
}

/// Descriptors open for writing under a watch, for `close_write`, and
/// processes holding them; LRU maps, so the oldest are forgotten rather
/// than new ones refused.
pub const MAX_WRITE_FDS: u32 = 16384;

/// Open files whose writes are `modify` events, by `struct file *`.
/// LRU: a file evicted is decided again at its next write.
pub const MAX_FILES: u32 = 32768;

/// Value of `FILES`: what was decided about an open file at its first
/// write, and the coalescing of its `modify` events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileState {
    /// The file's dentry when it was decided: a `struct file` freed and
    /// reused for another file is not taken for the old one.
    pub dentry: u64,
    /// [`Settings::generation`] + renames when it was decided.
    pub generation: u64,
    /// When the last `modify` event of the file was sent
    /// (`CLOCK_BOOTTIME`), 0 before the first.
    pub last_ns: u64,
    /// Writes since then that no event counted.
    pub pending: u32,
    /// Whether it lies under a watch: [`verdict`] values.
    pub verdict: u32,
    /// The innermost watch, or [`WATCH_NONE`].
    pub watch: u32,
    pub _pad: u32,
}

/// What is known about a file: [`FileState::verdict`].
pub mod verdict {
    pub const MISS: u32 = 0;
    pub const FOUND: u32 = 1;
    /// The walk ran out before the root: may lie under a watch, so its
    /// writes are sent, undecided.
    pub const UNDECIDED: u32 = 2;
}

/// What `sys_enter` keeps, per thread, for `sys_exit`: the arguments by
/// [`role`], read from the record with the syscall's [`SyscallSpec`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stash {
    pub args: [u64; role::COUNT],
    /// Writes: the `struct file` the fd was open on, taken at entry. Opens
    /// read from the registers: the opened file, found not outside every
    /// watch (0 when not looked at).
    pub file: u64,
    /// The syscall number.
    pub nr: u32,
    /// The action slot of the process (see [`Settings::tag_actions`]), or 0.
    pub origin: u32,
    /// 1 when the call may be an event; 0 when only what it does to
    /// watcher's state counts (a rename by a process the filters leave
    /// out still moves files).
    pub event: u32,
    pub _pad: u32,
}

/// One of the (at most two) files an event is about: how its name and
/// path were found and how long they are in the event's data.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Target {
    /// [`event_status`] bits.
    pub status: u32,
    /// The directory fd the name is relative to (`AT_FDCWD` for the cwd),
    /// or the fd of an fd operation.
    pub dfd: i32,
    pub name_len: u32,
    pub path_len: u32,
    /// With [`event_status::BASE`]: bytes of the name already taken by the
    /// walk (leading `..`, `.` and `/`).
    pub skip: u32,
    /// The innermost watch this file lies under, or [`WATCH_NONE`].
    pub watch: u32,
    /// How many of the path's components (from the file up) lie below
    /// `watch` on the way the process reached the file; [`WATCH_NONE`]
    /// when the watch is not on that way. With `extra_len`, they lie below
    /// the mount root where the super block's own dentries lead on to the
    /// watch (a bind mount of a subdirectory).
    pub below: u32,
    /// Bytes of components after the paths: from that mount root up to
    /// the watch, in the super block (file side first, each ended by a
    /// NUL, as the path). 0 when the watch is on the process's way.
    pub extra_len: u32,
    /// With [`event_status::BASE`]: where the part of the name below a
    /// watch met on the way down begins; [`WATCH_NONE`] when none was.
    pub name_below: u32,
    /// The [`Edge::route`] by which the name went down into that watch.
    pub route: u32,
    /// How many of the path's components lie below the process's root
    /// directory, when the path passed it before the root of the mount
    /// tree (a chroot); [`WATCH_NONE`] when it did not.
    pub rooted: u32,
    pub _pad: u32,
}

/// The fixed part of every event. The data that follows holds the names
/// as the process passed them, then the paths, each path as components
/// from the file up, each ended by a NUL (empty in prefix mode, where the
/// name is the path), then the components that lead on to each watch
/// through the super block ([`Target::extra_len`]), then the process's
/// executable (components, as the paths) and command line (arguments each
/// ended by a NUL): `name[0] name[1] path[0] path[1] extra[0] extra[1] exe
/// cmdline`, lengths in `targets` and [`Process`]. Renames and links have two targets (old, new), everything
/// else one.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// `CLOCK_BOOTTIME` in nanoseconds.
    pub time_ns: u64,
    /// An [`event_kind`].
    pub kind: u32,
    /// Index in [`SYSCALL_NAMES`].
    pub syscall: u32,
    /// Thread group id (what user space calls the pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The syscall's flags argument (open, rename, link, unlink flags).
    pub flags: u64,
    /// The syscall's return value (the new fd for opens).
    pub ret: i64,
    /// The innermost watch the event lies under, or [`WATCH_NONE`].
    pub watch_id: u32,
    /// How many of `targets` are used (1 or 2).
    pub targets_len: u32,
    /// The slot of the action that made the change (see
    /// [`Settings::tag_actions`]), or 0 for any other process.
    pub origin: u32,
    /// `MODIFY`: the writes the event stands for (this one and those
    /// coalesced before it). `CLOSE_WRITE`: the file's writes that no
    /// `MODIFY` event counted. 0 otherwise.
    pub count: u32,
    pub targets: [Target; 2],
    pub comm: [u8; TASK_COMM_LEN],
    pub process: Process,
}

/// Who made the change, as the kernel saw it during the syscall (reading
/// `/proc` later misses processes that have already exited). Without BTF
/// only `cgroup_id` is filled ([`proc_status::KNOWN`] unset).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Process {
    /// [`proc_status`] bits.
    pub status: u32,
    /// The parent's thread group id (`real_parent`).
    pub ppid: u32,
    pub euid: u32,
    pub egid: u32,
    /// The login uid (`auid` in the audit subsystem), `u32::MAX` when
    /// unset or when the kernel has no audit support.
    pub loginuid: u32,
    /// Inode number of the mount namespace (as in `/proc/PID/ns/mnt`).
    pub mntns: u32,
    /// The cgroup v2 id (the inode number of its cgroupfs directory).
    pub cgroup_id: u64,
    pub exe_len: u32,
    pub cmdline_len: u32,
    /// Which process image this is, with the pid: see [`ProcessImage`].
    pub image: ProcessImage,
}

/// A process image: what a pid runs from one `execve` to the next. The
/// executable and command line of an image are sent with its first event
/// only; later events carry [`proc_status::IMAGE_SENT`] and user space
/// takes them from that first one. With the pid, it names one image for
/// good: pids are reused, but not with the same start time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProcessImage {
    /// The thread group leader's `start_boottime` (ns since boot, what
    /// `/proc/PID/stat` shows in clock ticks as `starttime`).
    pub start_boottime: u64,
    /// The leader's `self_exec_id`: how many times the process has exec'd.
    pub exec_id: u64,
}

/// Most process images whose executable and command line the programs
/// remember having sent (`IMAGES`, least recently used forgotten).
pub const MAX_IMAGES: u32 = 8192;
/// User space keeps in `READER` the boot-clock time (ns) by which it will
/// look at the ring buffer again, woken or not (0: it will not, it waits
/// for a wakeup): [`RECHECK_NS`] after a look that read records or found
/// one not submitted yet. A record submitted while that time is more than
/// `WAKEUP_MARGIN_NS` away goes without a wakeup (each costs the writing
/// CPU an interrupt, in a VM a trap to the host, which in a burst cost a
/// writer more than its event); any other gets the ring buffer's usual
/// one, sent when the reader has read everything before it: what wakes a
/// reader that waits, also when it waits behind a record another CPU has
/// not submitted yet. The margin covers the time from the decision, with
/// the record reserved, to the reader seeing the reservation.
pub const WAKEUP_MARGIN_NS: u64 = 50_000;
/// How soon the reader looks at the ring buffer again after it read
/// records, or found one it could not read yet (another CPU has not
/// submitted it, and records after it wait for it).
pub const RECHECK_NS: u64 = 500_000;

/// Bits of [`Process::status`].
pub mod proc_status {
    /// The fields read through kernel structures are filled.
    pub const KNOWN: u32 = 1;
    /// The executable's path lacks its leading components.
    pub const EXE_TRUNCATED: u32 = 2;
    /// The command line was longer than [`CMDLINE_MAX`](super::CMDLINE_MAX).
    pub const CMDLINE_TRUNCATED: u32 = 4;
    /// The executable's dentry was unlinked (what the kernel's
    /// `d_unlinked()` tests, and `/proc/PID/exe` and audit mark with
    /// ` (deleted)`): the executable's path no longer leads to it.
    pub const EXE_DELETED: u32 = 8;
    /// The executable and command line are left out (`exe_len` and
    /// `cmdline_len` are 0): an earlier event of this process image
    /// ([`Process::image`]) carried them.
    pub const IMAGE_SENT: u32 = 16;
}

/// Most bytes of a command line an event carries.
pub const CMDLINE_MAX: usize = 1024;

/// Room for the executable's path, written one component (at most
/// `NAME_MAX`) at a time while less than `PATH_MAX` is used.
pub const EXE_BUF_LEN: usize = PATH_MAX + NAME_MAX;

pub const EVENT_HEADER_LEN: usize = core::mem::size_of::<EventHeader>();

/// Room after the header: two names (each less than `PATH_MAX`), then two
/// paths, each written less than `PATH_MAX` bytes after its start and one
/// component (at most `NAME_MAX`) at a time, then the components on to
/// the watches in what room is left (a path that does not fit there is
/// not sent, see [`Target::extra_len`]). Sized so that offsets masked
/// with `4 * PATH_MAX - 1` plus a component are in bounds whatever their
/// values, which the verifier can check.
pub const EVENT_DATA_LEN: usize = 4 * PATH_MAX + NAME_MAX;

/// An event as it is assembled in the per-CPU scratch buffer.
#[repr(C)]
pub struct EventBuf {
    pub header: EventHeader,
    pub data: [u8; EVENT_DATA_LEN],
}

/// Byte offsets in tracepoint records, read from their `format` files in
/// tracefs at start-up and handed to the programs as the `TP_OFFSETS`
/// global (each syscall's arguments are in `SPECS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// `__syscall_nr` of every `sys_enter_*` and `sys_exit_*` tracepoint.
    pub syscall_nr: u32,
    /// `ret` of every `sys_exit_*` tracepoint.
    pub exit_ret: u32,
    /// `child_pid` of `sched/sched_process_fork` (a 4-byte `pid_t`).
    pub fork_child_pid: u32,
    /// `group_dead` of `sched/sched_process_exit` (a 1-byte `bool`).
    pub exit_group_dead: u32,
    /// `req`, `opcode` and `flags` of `io_uring/io_uring_submit_req`, and
    /// `req` and `res` of `io_uring/io_uring_complete` (0 without them:
    /// their programs are not attached then).
    pub io_submit_req: u32,
    pub io_submit_opcode: u32,
    pub io_submit_flags: u32,
    pub io_complete_req: u32,
    pub io_complete_res: u32,
}

impl TracepointOffsets {
    /// Where every `sys_enter_*`/`sys_exit_*` record has `__syscall_nr`
    /// on the kernels watcher knows (after the 8 bytes of common fields):
    /// the programs load it directly when `syscall_nr` is this.
    pub const USUAL_SYSCALL_NR: u32 = 8;
    /// Where every `sys_exit_*` record has `ret`, likewise.
    pub const USUAL_EXIT_RET: u32 = 16;
}

/// What the io_uring submission program keeps of a request it may make an
/// event of, by the request's address (`struct io_kiocb *`), for the
/// completion program: the request's names are the kernel's copies,
/// freed before the completion, so they are copied here.
#[repr(C)]
pub struct IoStash {
    /// Writes, truncates and allocations: the file, when the submission
    /// named it by a descriptor of the process (a registered file is
    /// read from the request at completion).
    pub file: u64,
    pub flags: u64,
    /// The directory fds of the names (`AT_FDCWD` for the cwd), or the
    /// fd of an fd operation.
    pub dfd: i32,
    pub dfd2: i32,
    /// The `IORING_OP_*` value.
    pub opcode: u32,
    /// As [`Stash::origin`] and [`Stash::event`].
    pub origin: u32,
    pub event: u32,
    /// [`event_status::DIRECT`] for an open into a direct descriptor, or
    /// 0.
    pub status: u32,
    /// The submitting thread and its name: the completion may run on one
    /// of the ring's worker threads.
    pub tid: u32,
    pub _pad: u32,
    pub comm: [u8; TASK_COMM_LEN],
    /// The names, NUL-terminated: the old and the new for a rename or
    /// link, else the first only.
    pub names: [[u8; PATH_MAX]; 2],
}

/// Byte offsets of the io_uring request's members the io_uring programs
/// read, from BTF (as [`KernelOffsets`]; all 0 when the kernel lacks
/// them: the programs are not attached then). Each operation's own data
/// (`struct io_open` and the like) lies at the start of `io_kiocb`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoUringOffsets {
    /// `io_kiocb.file`: the file the request works on, once issued.
    pub kiocb_file: u32,
    /// `io_kiocb.cqe.fd`: the submission's fd, until completion.
    pub kiocb_fd: u32,
    pub open_dfd: u32,
    pub open_file_slot: u32,
    pub open_filename: u32,
    /// `io_open.how.flags`.
    pub open_flags: u32,
    pub rename_old_dfd: u32,
    pub rename_new_dfd: u32,
    pub rename_oldpath: u32,
    pub rename_newpath: u32,
    pub rename_flags: u32,
    pub unlink_dfd: u32,
    pub unlink_flags: u32,
    pub unlink_filename: u32,
    pub mkdir_dfd: u32,
    pub mkdir_filename: u32,
    /// `struct io_link`, of linkat and symlinkat (whose old path is the
    /// link's contents).
    pub link_old_dfd: u32,
    pub link_new_dfd: u32,
    pub link_oldpath: u32,
    pub link_newpath: u32,
    pub link_flags: u32,
    pub close_fd: u32,
    pub close_file_slot: u32,
    /// `filename.name`: the kernel's copy of a name.
    pub filename_name: u32,
}

/// Bytes of a syscall tracepoint record the enter program copies: the
/// common fields, the syscall number and six 8-byte arguments.
pub const SYSCALL_RECORD_LEN: usize = 64;

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
    /// `dentry.d_hash.pprev`: NULL when the dentry is unhashed.
    pub dentry_hash_pprev: u32,
    pub inode_ino: u32,
    pub super_block_dev: u32,
    pub vfsmount_root: u32,
    /// Where `struct vfsmount` sits inside `struct mount`.
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub task_fs: u32,
    /// `fs_struct.root` (a `struct path`).
    pub fs_root: u32,
    /// `fs_struct.pwd` (a `struct path`).
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub file_mode: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    /// `task_struct.cred` (the effective credentials).
    pub task_cred: u32,
    /// `cred.euid.val`.
    pub cred_euid: u32,
    /// `cred.egid.val`.
    pub cred_egid: u32,
    /// `task_struct.loginuid.val`; 0 when the kernel has no audit support.
    pub task_loginuid: u32,
    pub task_nsproxy: u32,
    pub nsproxy_mnt_ns: u32,
    /// `mnt_namespace.ns.inum`.
    pub mnt_namespace_inum: u32,
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_self_exec_id: u32,
    /// `pt_regs`' members that hold a syscall's six arguments, in order
    /// (x86-64: di, si, dx, r10, r8, r9); all 0 when not known, and then
    /// no syscall is read [`from_regs`](SyscallSpec::from_regs).
    pub pt_regs_args: [u32; 6],
    /// `super_block.s_magic`.
    pub super_block_magic: u32,
    /// Where `ovl_inode.__upperdentry` lies after `ovl_inode.vfs_inode`
    /// (the `struct inode` a dentry of an overlay points to); 0 when the
    /// kernel has no overlayfs.
    pub ovl_inode_upper: u32,
}

/// `s_magic` of an overlayfs super block (`OVERLAYFS_SUPER_MAGIC`).
pub const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// Loads of kernel memory through `bpf_rdonly_cast(addr, 0)`: the kfunc
/// turns a number into a read-only pointer the verifier lets a program
/// load through directly (a fault-safe load, which the JIT makes a fault
/// return 0), where `bpf_probe_read_kernel` costs a helper call per read.
/// The loader the programs are built for (aya 0.14) cannot resolve kfuncs,
/// so the programs carry each call as this raw instruction and user space
/// writes the kernel's BTF id of `bpf_rdonly_cast` into it before loading,
/// or, when the kernel cannot take it, replaces it with [`kfunc::NOOP`]
/// and clears `FAST_READS` so that the programs read through the helper.
pub mod kfunc {
    /// `call` (BPF_JMP | BPF_CALL) with `src_reg` = BPF_PSEUDO_KFUNC_CALL
    /// (2) and [`PLACEHOLDER`] as the BTF id, as one little-endian `u64`.
    pub const CALL_INSN: u64 = 0x85 | (0x20 << 8) | ((PLACEHOLDER as u64) << 32);
    /// The BTF id in [`CALL_INSN`] until user space writes the kernel's.
    pub const PLACEHOLDER: u32 = 0x7761_7463;
    /// `r0 = 0`: what replaces [`CALL_INSN`] when `FAST_READS` is off (the
    /// verifier never reaches it then, but looks every kfunc call up).
    pub const NOOP: u64 = 0xb7;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `repr(C)` integers and arrays, with explicit padding.
    unsafe impl aya::Pod for super::TracepointOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IoUringOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InodeKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WatchBits {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcessImage {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EdgeKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Edge {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SyscallSpec {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Settings {}
}

/// The names user space finds the programs' maps and globals by: each is
/// the name of the `static` that declares it in watcher-ebpf.
pub mod names {
    pub const ACTION_SLOT: &str = "ACTION_SLOT";
    pub const DIRTY: &str = "DIRTY";
    pub const EDGES: &str = "EDGES";
    pub const EMIT: &str = "EMIT";
    pub const EVENTS: &str = "EVENTS";
    pub const FAST_READS: &str = "FAST_READS";
    pub const FILES: &str = "FILES";
    pub const FILTER_COMMS: &str = "FILTER_COMMS";
    pub const FILTER_PIDS: &str = "FILTER_PIDS";
    pub const FILTER_UIDS: &str = "FILTER_UIDS";
    pub const IMAGES: &str = "IMAGES";
    pub const IO_OFFSETS: &str = "IO_OFFSETS";
    pub const IO_REQS: &str = "IO_REQS";
    pub const IO_SPECS: &str = "IO_SPECS";
    pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";
    pub const LOST: &str = "LOST";
    pub const MATCH_MODE: &str = "MATCH_MODE";
    pub const READER: &str = "READER";
    pub const RENAMES: &str = "RENAMES";
    pub const SETTINGS: &str = "SETTINGS";
    pub const SPECS: &str = "SPECS";
    pub const STASH: &str = "STASH";
    pub const TP_OFFSETS: &str = "TP_OFFSETS";
    pub const WATCHER_TGID: &str = "WATCHER_TGID";
    pub const WATCHES: &str = "WATCHES";
    pub const WATCH_BITS: &str = "WATCH_BITS";
    pub const WATCH_DEVS: &str = "WATCH_DEVS";
    pub const WATCH_INODES: &str = "WATCH_INODES";
    pub const WRITERS: &str = "WRITERS";
    pub const WRITE_FDS: &str = "WRITE_FDS";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every watch's bits are set, the bits stay inside the words, and an
    /// unrelated directory rarely takes the lookup.
    #[test]
    fn watch_bits_hold_every_watch_and_few_others() {
        let mut bits = WatchBits::EMPTY;
        let watches = || {
            (0..100u64).map(|i| InodeKey {
                dev: 0x0080_0001 + (i % 3) as u32,
                _pad: 0,
                ino: 1_000 + i * 7_919,
            })
        };
        for key in watches() {
            WatchBits::set(&mut bits.inodes, WatchBits::inode_bit(&key));
            WatchBits::set(&mut bits.devs, WatchBits::dev_bit(key.dev));
        }
        for key in watches() {
            assert!(WatchBits::test(&bits.inodes, WatchBits::inode_bit(&key)));
            assert!(WatchBits::test(&bits.devs, WatchBits::dev_bit(key.dev)));
        }
        let others = (0..100_000u64)
            .map(|ino| InodeKey {
                dev: 0x0080_0001,
                _pad: 0,
                ino: 5_000_000 + ino,
            })
            .filter(|key| WatchBits::test(&bits.inodes, WatchBits::inode_bit(key)))
            .count();
        // 100 bits of 65,536 set: about 150 in 100,000.
        assert!(others < 600, "{others}");
        assert!(
            (0..u32::MAX / 7)
                .step_by(9_973)
                .all(|dev| { (WatchBits::dev_bit(dev) as usize) < 64 * WATCH_BITS_DEV_WORDS })
        );
    }
}
