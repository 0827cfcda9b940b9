//! Every map the programs share, and the accessors of the scratch map.
//! Names are the ABI with user space.

// BPF_F_NO_PREALLOC: entries are allocated when user space adds them, so
// the watch and edge maps cost what is watched, not their limits. Only
// user space updates them; the programs only look them up.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use watcher_common::{
    Edge, EdgeKey, FdKey, FileState, InodeKey, IoStash, MAX_EDGES, MAX_EXCLUDED, MAX_FILES,
    MAX_FILTER_KEYS, MAX_IMAGES, MAX_INFLIGHT, MAX_IO_INFLIGHT, MAX_SYSCALL_NR, MAX_WATCHES,
    MAX_WRITE_FDS, ProcessImage, SLOTS, Settings, Stash, SyscallSpec, TASK_COMM_LEN,
    WATCH_PREFIX_MAX, WatchBits, io_op,
};

use crate::scratch::{Op, Scratch};

/// Events for user space. User space sets the size at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Watched directories by identity (device and inode), value the watch id:
/// the exact match looks up every ancestor of an opened file. Nothing is
/// kept per directory below a watch.
#[map]
pub static WATCH_INODES: HashMap<InodeKey, u32> =
    HashMap::with_max_entries(MAX_WATCHES, BPF_F_NO_PREALLOC);

/// Devices (`s_dev`) that hold a watched directory (the value is unused).
/// The walk skips from a file straight to the root of its mount when the
/// mount's device holds none: no ancestor there can be a watch.
#[map]
pub static WATCH_DEVS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_WATCHES, BPF_F_NO_PREALLOC);

/// The bits of the watched directories and their devices
/// ([`WatchBits`]): one entry, written whole by user space after the two
/// maps above.
#[map]
pub static WATCH_BITS: Array<WatchBits> = Array::with_max_entries(1, 0);

/// Directories on the way from the root to each watch, by their parent
/// and name: how a name that no longer exists (or not yet) is followed
/// down from the directory it is relative to without a lookup.
#[map]
pub static EDGES: HashMap<EdgeKey, Edge> = HashMap::with_max_entries(MAX_EDGES, BPF_F_NO_PREALLOC);

/// What each traced syscall's arguments mean, by syscall number; filled
/// by user space from the tracepoints' `format` files.
#[map]
pub static SPECS: Array<SyscallSpec> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// The spec of the syscall each io_uring operation stands for, by
/// `IORING_OP_*` value (`select` 0 for those not followed); filled by
/// user space.
#[map]
pub static IO_SPECS: Array<SyscallSpec> = Array::with_max_entries(io_op::LIMIT, 0);

/// io_uring requests that may be events, from their submission to their
/// completion, by the request's address. Allocated as used: few requests
/// are events, and each entry holds two names. A request the completion
/// program never saw (attached after it was submitted) leaves its entry
/// until the address is reused by the next request, which replaces it.
#[map]
pub static IO_REQS: HashMap<u64, IoStash> =
    HashMap::with_max_entries(MAX_IO_INFLIGHT, BPF_F_NO_PREALLOC);

/// Where the submission program assembles an [`IoStash`] (too large for
/// the stack, and for room in [`Scratch`]): one value per CPU.
#[map]
pub static IO_SCRATCH: PerCpuArray<IoStash> = PerCpuArray::with_max_entries(1, 0);

/// The settings a reload may change: one value.
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Descriptors opened for writing under a watch, for `close_write`; the
/// value is the watch.
#[map]
pub static WRITE_FDS: LruHashMap<FdKey, u32> = LruHashMap::with_max_entries(MAX_WRITE_FDS, 0);

/// Processes that opened a descriptor in `WRITE_FDS` (the value is
/// unused): only their exit looks for descriptors still open.
#[map]
pub static WRITERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(MAX_WRITE_FDS, 0);

/// Open files written since start, by `struct file *`: whether they lie
/// under a watch, decided at the first write (not at every one), and the
/// coalescing of their `modify` events.
#[map]
pub static FILES: LruHashMap<u64, FileState> = LruHashMap::with_max_entries(MAX_FILES, 0);

/// When user space will look at the ring buffer again (one value,
/// boot-clock ns; 0: not unless woken), which it writes through a mapping
/// of its own: see [`WAKEUP_MARGIN_NS`](watcher_common::WAKEUP_MARGIN_NS).
#[map]
pub static READER: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Successful renames seen (one value): a rename may move a file, or a
/// directory above open files, into or out of a tree, so every verdict in
/// `FILES` reached before one is decided again.
#[map]
pub static RENAMES: Array<u64> = Array::with_max_entries(1, 0);

/// Watched directories for the prefix match (no BTF): key is the
/// directory's absolute path with a trailing `/`, value its watch id. A
/// longest-prefix lookup of an opened path finds the innermost watch, and
/// the trailing `/` keeps `/x/media2` from matching `/x/media`.
#[map]
pub static WATCHES: LpmTrie<[u8; WATCH_PREFIX_MAX], u32> =
    LpmTrie::with_max_entries(MAX_WATCHES, 0);

/// One flag per watch id, set on every hit before the event is sent, and
/// read and cleared by user space: a change is noticed even when its event
/// was lost. Then the slots for undecided events and for any change.
#[map]
pub static DIRTY: Array<u32> = Array::with_max_entries(SLOTS, 0);

/// The process images whose executable and command line were sent, by
/// pid ([`ProcessImage`]): later events of the same image leave them out.
#[map]
pub static IMAGES: LruHashMap<u32, ProcessImage> = LruHashMap::with_max_entries(MAX_IMAGES, 0);

/// Per-thread arguments from `sys_enter` until `sys_exit`.
#[map]
pub static STASH: LruHashMap<u64, Stash> = LruHashMap::with_max_entries(MAX_INFLIGHT, 0);

/// Every process watcher forks (its actions) and their descendants, with
/// the slot of the action they belong to: added at fork time by
/// `probes/process.rs` and removed when they exit. Their changes are left
/// out, or tagged with the slot (`Settings::tag_actions`). LRU, so that
/// it stays bounded whatever happens.
#[map]
pub static EXCLUDED: LruHashMap<u32, u32> = LruHashMap::with_max_entries(MAX_EXCLUDED, 0);

/// The slot of the action watcher forks next, set by user space before it
/// forks: what its process is entered in `EXCLUDED` with.
#[map]
pub static ACTION_SLOT: Array<u32> = Array::with_max_entries(1, 0);

/// Process filters, when `Settings::filters` turns them on: thread
/// group ids (`--pid`), uids (`--uid`) and comms (`--comm` and
/// `--exclude-comm`, the value says which). Checked when a syscall enters,
/// so a process filtered out costs no more than an unrelated syscall.
/// Only user space writes them: allocated as filled.
#[map]
pub static FILTER_PIDS: HashMap<u32, u8> =
    HashMap::with_max_entries(MAX_FILTER_KEYS, BPF_F_NO_PREALLOC);
#[map]
pub static FILTER_UIDS: HashMap<u32, u8> =
    HashMap::with_max_entries(MAX_FILTER_KEYS, BPF_F_NO_PREALLOC);
#[map]
pub static FILTER_COMMS: HashMap<[u8; TASK_COMM_LEN], u8> =
    HashMap::with_max_entries(MAX_FILTER_KEYS, BPF_F_NO_PREALLOC);

/// Events that did not fit in the ring buffer, per CPU and per watch id;
/// then the slots for undecided events and for every loss.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(SLOTS, 0);

/// The event program (`probes::emit`), in its one slot: the others hand
/// their events over to it by a tail call, so the verifier checks the
/// event path once, in that program, rather than once in each of them
/// (most of watcher's start-up). User space fills it before attaching.
#[map]
pub static EMIT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Each CPU's [`Scratch`]: one value.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's [`Scratch`].
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: a pointer to this CPU's map value, valid and aligned while
    // the program runs; tracepoint programs run with preemption disabled
    // and do not nest, so no other reference to it is in use now.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// The scratch [`Op`], to fill with the syscall's targets before `emit`.
#[inline(always)]
pub fn op() -> Option<&'static mut Op> {
    scratch().map(|s| &mut s.op)
}
