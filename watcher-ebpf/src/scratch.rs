//! The per-CPU scratch state: the event being assembled (far larger than
//! the 512-byte BPF stack) and the state of the walks, which the
//! `bpf_loop` callbacks share through it (a callback gets no more than a
//! context pointer, and the stack is too small for it anyway). Types only:
//! the map is `maps::SCRATCH`.

use aya_ebpf::maps::lpm_trie::Key;
use watcher_common::{
    CMDLINE_MAX, EXE_BUF_LEN, EventBuf, InodeKey, SYSCALL_EXIT, TASK_COMM_LEN, WATCH_NONE,
    WATCH_PREFIX_MAX, event_kind,
};

use crate::vfs::Cursor;

/// Per-CPU scratch space: an event is far larger than the 512-byte BPF
/// stack. Its size must stay under 32 KiB, the kernel's limit for a
/// per-CPU value.
#[repr(C)]
pub struct Scratch {
    pub key: Key<[u8; WATCH_PREFIX_MAX]>,
    pub event: EventBuf,
    /// The syscall being turned into an event, shared with the `bpf_loop`
    /// callbacks (the BPF stack is too small for it).
    pub op: Op,
    /// The process's executable and command line, sent after the event's
    /// data.
    pub exe: [u8; EXE_BUF_LEN],
    pub cmdline: [u8; CMDLINE_MAX],
    pub exe_walk: ExeWalk,
    /// The walk of `walk::outside`.
    pub outside: Outside,
}

/// The state of `walk::outside`'s walk.
#[repr(C)]
pub struct Outside {
    pub at: Cursor,
    /// 1 once the root was reached without a bit set on the way.
    pub top: u32,
}

/// How a walk ended.
pub const END_NONE: u32 = 0;
pub const END_FOUND: u32 = 1;
pub const END_TOP: u32 = 2;
pub const END_FAILED: u32 = 3;

/// What was decided about a target: those of an open file
/// (`watcher_common::verdict`), and one more.
pub use watcher_common::verdict::{FOUND, MISS, UNDECIDED};
/// User space decides (prefix mode, or `..` the kernel cannot follow).
pub const PLACE: u32 = 3;

/// One file a syscall changed, and the state of the walks about it.
#[repr(C)]
pub struct TargetState {
    /// `struct file *` when the syscall has the file open, else 0.
    pub file: u64,
    /// The directory fd the name is relative to, or the fd operated on.
    pub dfd: i64,
    /// Address of the name (in the process's memory, or the kernel's:
    /// `kernel_name`), or 0.
    pub name: u64,
    /// Where the path walk starts: the file, or the directory the rest of
    /// the name is relative to.
    pub base: Cursor,
    pub at: Cursor,
    /// The innermost watch met, or `WATCH_NONE`.
    pub watch: u32,
    pub end: u32,
    pub verdict: u32,
    pub status: u32,
    pub name_len: u32,
    pub skip: u32,
    pub ups: u32,
    /// Following the name down: the directory reached while it is on the
    /// way to a watch (`on_edge`), and how far below it the name went
    /// once it left that way.
    pub node: InodeKey,
    pub on_edge: u32,
    pub off_depth: u32,
    /// A component read but not yet followed: the last one is the file
    /// itself, not a directory to go down into.
    pub pending: u32,
    pub pending_hash: u64,
    /// Where that component's name ends in the name.
    pub pending_end: u32,
    pub comp_hash: u64,
    pub comp_len: u32,
    pub all_dots: u32,
    pub path_start: u32,
    pub path_len: u32,
    pub complete: u32,
    /// 1 while the first walk goes up the super block's dentries from a
    /// mount root (`detour`), and after it when it found the watch there.
    pub detouring: u32,
    pub detour: Cursor,
    /// Components the path walk has written, and how many of them lie
    /// below the watch (`Target::below`).
    pub comps: u32,
    pub below: u32,
    /// The components from `detour` on to the watch, after the paths.
    pub extra_start: u32,
    pub extra_len: u32,
    /// `Target::name_below` and `Target::route`.
    pub name_below: u32,
    pub route: u32,
    /// `Target::rooted`.
    pub rooted: u32,
    /// 1 when the first walk went up an overlay's upper layer from
    /// `upper` (the base's upper dentry), and `detour` is the base: the
    /// event's path leaves the writer's at the file itself.
    pub overlay: u32,
    pub upper: Cursor,
    /// 1 when `name` is in kernel memory (an io_uring request's name,
    /// copied at submission), else 0: in the process's memory.
    pub kernel_name: u32,
}

impl TargetState {
    /// Starts over for a new syscall, field by field (a whole new value
    /// would be built on the small BPF stack first). The fields not set
    /// here are set before they are read.
    #[inline(always)]
    pub fn reset(&mut self, file: u64, dfd: i64, name: u64) {
        self.file = file;
        self.dfd = dfd;
        self.name = name;
        self.kernel_name = 0;
        self.watch = WATCH_NONE;
        self.end = END_NONE;
        self.verdict = MISS;
        self.status = 0;
        self.name_len = 0;
        self.path_len = 0;
        self.skip = 0;
        self.ups = 0;
        self.pending = 0;
        self.off_depth = 0;
        self.on_edge = 0;
        self.detouring = 0;
        self.overlay = 0;
        self.name_below = WATCH_NONE;
        self.route = 0;
        self.below = WATCH_NONE;
        self.extra_len = 0;
    }
}

/// The syscall being turned into an event (in the per-CPU scratch map).
#[repr(C)]
pub struct Op {
    pub targets: [TargetState; 2],
    pub len: u32,
    /// The action slot of the process (`Stash::origin`), or 0.
    pub origin: u32,
    /// The target the walk callbacks work on.
    pub current: u32,
    /// The process's root directory (dentry and mount), where the path
    /// walks count `Target::rooted`: read once per event, in `build_paths`.
    pub task_root: (u64, u64),
    /// What the event is, for `event::emit`.
    pub hit: Hit,
    /// 1 when the record carries the process's executable and command
    /// line (`who::fill`).
    pub carries_image: u32,
}

impl Op {
    /// An opened file's walk starts at the file, not at its name: then the
    /// name is read in `emit`, for hits only (most opens are of no watch).
    #[inline(always)]
    pub fn name_deferred(&self) -> bool {
        self.len == 1 && self.targets[0].file != 0
    }
}

/// What `event::emit` needs besides the targets in [`Op`].
#[derive(Clone, Copy)]
pub struct Hit {
    pub kind: u32,
    pub syscall: u32,
    pub flags: u64,
    /// The syscall's return value: the new fd for opens.
    pub ret: i64,
    /// Decide only, send nothing (an open tracked for `close_write` whose
    /// own kinds are not selected).
    pub quiet: bool,
    /// The syscall opened the first target's file: a hit is marked
    /// `CREATED` when the open created it.
    pub opened: bool,
    /// [`EventHeader::count`](watcher_common::EventHeader::count).
    pub count: u32,
    /// The thread that submitted an io_uring request and its name, when
    /// the completion runs on another thread of the process.
    pub submitter: Option<(u32, [u8; TASK_COMM_LEN])>,
    /// Once decided, the new descriptor (`ret`) of an open is remembered
    /// for its `close_write` (`files::track_opened`).
    pub track: bool,
    /// The io_uring request whose `IO_REQS` entry holds the names the
    /// event reads: removed once it is sent. 0 for syscalls.
    pub io_req: u64,
    /// Not one event but the `close_write`s of the exiting process's
    /// descriptors below this number (`sched_process_exit`); 0 otherwise.
    pub exiting: u32,
}

impl Hit {
    /// The `close_write` of a descriptor closed by syscall `syscall`
    /// (`close`, `dup2`, `dup3`, or the process's exit), with the `count`
    /// writes through it no `modify` counted yet.
    #[inline(always)]
    pub fn close_write(syscall: u32, count: u32) -> Self {
        Self {
            kind: event_kind::CLOSE_WRITE,
            syscall,
            flags: 0,
            ret: 0,
            quiet: false,
            opened: false,
            count,
            submitter: None,
            track: false,
            io_req: 0,
            exiting: 0,
        }
    }

    /// The `close_write`s of the exiting process's descriptors below
    /// `fds`.
    #[inline(always)]
    pub fn exiting(fds: u32) -> Self {
        Self {
            exiting: fds,
            ..Self::close_write(SYSCALL_EXIT, 0)
        }
    }
}

/// The walk from the executable up to the root, in the per-CPU scratch
/// map (shared with the `bpf_loop` callback).
#[repr(C)]
pub struct ExeWalk {
    pub at: Cursor,
    pub len: u32,
    pub complete: u32,
    pub top: u32,
}
