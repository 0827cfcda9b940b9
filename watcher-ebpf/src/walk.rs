//! The walks that decide whether the files a syscall changed lie under a
//! watched directory, and that write the paths of those that do.
//!
//! A file is found one of two ways. When the syscall has it open (an open's
//! new fd, an fd operation, a close) the walk starts at its dentry. When it
//! only has a name (delete, rename, mkdir, link, chmod by name…), the file
//! may no longer exist (or not yet have existed at entry), and eBPF cannot
//! look names up: the walk starts at the directory the name is relative to
//! (the dirfd, the cwd or the root), after the name's leading `..`, and the
//! rest of the name is followed down through `EDGES`, the directories on
//! the way to each watch. Every step of both is a `bpf_loop` callback, so
//! the verifier checks each once.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::generated::{
    bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user_str,
};
use watcher_common::{
    Edge, EdgeKey, EventBuf, KernelOffsets, MAX_WALK, NAME_MAX, PATH_MAX, WATCH_NONE,
    WATCH_PREFIX_MAX, WatchBits, event_status, match_mode, name_hash_step, open_flags::AT_FDCWD,
};

use crate::{
    account::mark_dirty,
    config::{kernel_offsets, match_mode},
    error::{Error, HelperError},
    maps::{EDGES, WATCH_BITS, WATCH_DEVS, WATCH_INODES, WATCHES, op, scratch},
    read::read_component,
    scratch::{
        END_FAILED, END_FOUND, END_NONE, END_TOP, FOUND, MISS, Op, Outside, PLACE, Scratch,
        TargetState, UNDECIDED,
    },
    vfs::{Cursor, Step, TaskDir, file_of_fd, task_dir, task_mntns},
};

/// Decides about the first `len` targets of the [`Op`]: sets each one's
/// `verdict`, and its `watch` when found.
#[inline(always)]
pub fn decide_targets(len: u32) {
    // SAFETY: `decide_cb` has the signature `bpf_loop` calls, and takes no
    // context, so the null one is never read.
    unsafe { bpf_loop(len, decide_cb as *mut c_void, ptr::null_mut(), 0) };
}

/// Decides about the open `file` alone, with the [`Op`]'s first target as
/// the walk's state: its verdict, and its watch when found. The walk up
/// from the file, as for an opened file in [`decide_targets`].
#[inline(always)]
pub fn decide_file(file: u64) -> Result<(u32, u32), Error> {
    let off = kernel_offsets();
    let op = op().ok_or(Error::NoScratch)?;
    op.len = 1;
    op.current = 0;
    let [target, _] = &mut op.targets;
    target.reset(file, 0, 0);
    target.base = Cursor::of_file(off, file)?;
    start_find(target, off)?;
    watcher_find_watch();
    let [target, _] = &mut op.targets;
    Ok(match end_verdict(target) {
        FOUND => (FOUND, target.watch),
        verdict => (verdict, WATCH_NONE),
    })
}

/// The first walk of the current target, up from its `at` to the first
/// watch (`find_watch_cb`). Verifier workaround: a global function,
/// checked once, where the callback was checked again for each way into
/// the loop (six times in the event program).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn watcher_find_watch() -> i64 {
    // SAFETY: `find_watch_cb` has the signature `bpf_loop` calls, and takes no
    // context, so the null one is never read.
    unsafe { bpf_loop(MAX_WALK, find_watch_cb as *mut c_void, ptr::null_mut(), 0) }
}

/// Steps [`outside`] takes before it leaves the file to the full walk.
const OUTSIDE_STEPS: u32 = 16;

/// Whether the opened `file` surely lies under no watch: the first walk's
/// way up (as [`find_watch_cb`] goes), testing only the watch bits. Most
/// files opened for writing on the machine are decided here, at a few
/// loads per step. `false` ("maybe") at the first bit set, at the root of
/// a bind mount or an overlay's upper layer on a device whose bit is set
/// (where the first walk takes a detour), on a failed read, or past
/// [`OUTSIDE_STEPS`]: the full walk decides those.
#[inline(always)]
pub fn outside(file: u64) -> bool {
    let off = kernel_offsets();
    let Ok(at) = Cursor::of_file(off, file) else {
        return false;
    };
    match at.overlay_upper(off) {
        Ok(None) => {}
        Ok(Some(upper)) if !on_device_bit(&upper) => {}
        _ => return false,
    }
    let Some(s) = scratch() else {
        return false;
    };
    s.outside = Outside { at, top: 0 };
    let mut walk = ptr::from_mut(&mut s.outside);
    // Verifier: a `bpf_loop` callback is checked once, where a plain loop
    // was checked at every step (26,000 more instructions to verify). Its
    // state is in the scratch map, whose contents the verifier does not
    // follow, and the context is the pointer to it: with the state itself
    // on the stack, it checked the callback again for each set of values
    // it could hold there (9,000 instructions in `sys_exit`).
    // SAFETY: `outside_cb` has the signature `bpf_loop` calls, and its
    // context is `walk`, which outlives the loop.
    unsafe {
        bpf_loop(
            OUTSIDE_STEPS,
            outside_cb as *mut c_void,
            ptr::from_mut(&mut walk).cast(),
            0,
        )
    };
    // SAFETY: `walk` points into this CPU's scratch value.
    unsafe { (*walk).top == 1 }
}

/// One step of [`outside`]: stops at a bit set or a detour ("maybe"), or
/// at the root (`top`).
#[inline(never)]
extern "C" fn outside_cb(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: the context is the pointer `outside` handed to `bpf_loop`,
    // to this CPU's scratch value, valid while the program runs.
    let walk = unsafe { &mut **ctx.cast::<*mut Outside>() };
    let off = kernel_offsets();
    let at = &mut walk.at;
    if !on_device_bit(at) {
        // Nothing up to this mount's root can be a watch.
        at.to_mount_root();
    } else {
        let Some(bits) = WATCH_BITS.get(0) else {
            return 1;
        };
        match at.key(off) {
            Ok(key) if !WatchBits::test(&bits.inodes, WatchBits::inode_bit(&key)) => {}
            _ => return 1,
        }
        if at.at_bind_root(off) {
            return 1;
        }
    }
    match at.up(off) {
        Ok(Step::Top) => {
            walk.top = 1;
            1
        }
        Ok(_) => 0,
        Err(_) => 1,
    }
}

/// Where the first walk starts: at the base, or, for a file or directory
/// of an overlay whose upper layer lies on a device that holds a watch,
/// at its upper dentry (where a write through the merged directory
/// lands): the walk goes up that layer first, as it goes up a bind
/// mount's super block (`climb`), and back to the base when no watch is
/// there.
#[inline(always)]
fn start_find(target: &mut TargetState, off: &KernelOffsets) -> Result<(), HelperError> {
    target.at = target.base;
    if let Some(upper) = target.base.overlay_upper(off)? {
        if on_watched_device(&upper) {
            target.overlay = 1;
            target.upper = upper;
            target.detour = target.base;
            target.detouring = 1;
            target.at = upper;
        }
    }
    Ok(())
}

/// What the walk up from the target's base decided, by how it ended: an
/// undecided target is marked so.
#[inline(always)]
fn end_verdict(target: &mut TargetState) -> u32 {
    match target.end {
        END_FOUND => FOUND,
        END_NONE => {
            target.status |= event_status::UNDECIDED;
            UNDECIDED
        }
        _ => MISS,
    }
}

/// Writes the paths of the first `len` targets of the [`Op`] into the
/// event data, after the names (exact mode only: it walks from `base`).
#[inline(always)]
pub fn build_paths(len: u32) {
    if let Some(op) = op() {
        op.task_root = task_dir(kernel_offsets(), TaskDir::Root).unwrap_or_default();
    }
    // SAFETY: `build_cb` and `extra_cb` have the signature `bpf_loop`
    // calls, and take no context, so the null one is never read.
    unsafe {
        bpf_loop(len, build_cb as *mut c_void, ptr::null_mut(), 0);
        bpf_loop(len, extra_cb as *mut c_void, ptr::null_mut(), 0);
    }
}

/// The target `op.current`, the event data and where the target's name
/// starts in it (disjoint borrows of the scratch map).
#[inline(always)]
fn current() -> Option<(&'static mut TargetState, &'static mut EventBuf, usize)> {
    let Scratch { op, event, .. } = scratch()?;
    let start = name_start(op, op.current);
    let target = op.targets.get_mut(op.current as usize)?;
    Some((target, event, start))
}

/// Where target `index`'s name starts in the data: after the first's.
#[inline(always)]
fn name_start(op: &Op, index: u32) -> usize {
    if index == 0 {
        0
    } else {
        op.targets[0].name_len as usize & (PATH_MAX - 1)
    }
}

/// Byte `pos` of the current target's name; `/` past its end.
#[inline(always)]
fn name_byte(target: &TargetState, event: &EventBuf, start: usize, pos: u32) -> u8 {
    if pos >= target.name_len {
        return b'/';
    }
    // Verifier: both parts masked below PATH_MAX, so the index is inside
    // `data` whatever their values.
    let at = (start & (PATH_MAX - 1)) + (pos as usize & (PATH_MAX - 1));
    event.data.get(at).copied().unwrap_or(b'/')
}

#[inline(never)]
extern "C" fn decide_cb(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(op) = op() else {
        return 1;
    };
    op.current = index as u32;
    let verdict = if match_mode() == match_mode::PREFIX {
        decide_by_prefix(index as u32)
    } else {
        decide(index as u32)
    };
    if let Some((target, ..)) = current() {
        target.verdict = verdict.unwrap_or(MISS);
    }
    0
}

/// Reads the current target's name into the data; its length (0 when it
/// has none or it cannot be read). Read at sys_exit: at sys_enter the page
/// may not be faulted in yet.
#[inline(always)]
pub fn read_name(index: u32) -> Result<u32, Error> {
    let s = scratch().ok_or(Error::NoScratch)?;
    let start = name_start(&s.op, index);
    let target =
        s.op.targets
            .get_mut(index as usize)
            .ok_or(Error::NoScratch)?;
    if target.name == 0 {
        return Ok(0);
    }
    // Verifier: the start is below PATH_MAX and PATH_MAX more bytes fit.
    // SAFETY: masked below PATH_MAX, the offset is inside `data` (4 *
    // PATH_MAX + NAME_MAX bytes).
    let dst = unsafe { s.event.data.as_mut_ptr().add(start & (PATH_MAX - 1)) };
    let src = target.name as *const _;
    // SAFETY: the helpers write at most PATH_MAX bytes, which fit in
    // `data` after `dst`, and check the address themselves (a bad one
    // fails the read, it never faults).
    let n = if target.kernel_name == 1 {
        unsafe { bpf_probe_read_kernel_str(dst.cast(), PATH_MAX as u32, src) }
    } else {
        unsafe { bpf_probe_read_user_str(dst.cast(), PATH_MAX as u32, src) }
    };
    let len = if n > 0 { n as u32 - 1 } else { 0 };
    target.name_len = len;
    Ok(len)
}

#[inline(always)]
fn decide(index: u32) -> Result<u32, Error> {
    let off = kernel_offsets();
    let name_len = if op().ok_or(Error::NoScratch)?.name_deferred() {
        0
    } else {
        read_name(index)?
    };
    let (target, event, start) = current().ok_or(Error::NoScratch)?;
    if target.file == 0 && name_len == 0 {
        // AT_EMPTY_PATH (or a null name, utimensat): the file dfd is on.
        target.file = file_of_fd(off, target.dfd)?;
    }
    let by_name = target.file == 0;
    target.base = if !by_name {
        Cursor::of_file(off, target.file)?
    } else if name_byte(target, event, start, 0) == b'/' {
        Cursor::of_task(off, TaskDir::Root)?
    } else if target.dfd == AT_FDCWD {
        Cursor::of_task(off, TaskDir::Cwd)?
    } else {
        Cursor::of_file(off, file_of_fd(off, target.dfd)?)?
    };
    Error::from_code(watcher_decide_from_base(u64::from(name_len))).map(|verdict| verdict as u32)
}

/// The rest of [`decide`], once the current target's `base` is set (the
/// file, or the directory its name is relative to): its verdict, the
/// name `name_len` long. Verifier workaround: a global function, checked
/// once; inlined, it was checked again for each way to the base (a file,
/// the root, the working directory, a directory fd: 3,300 instructions
/// in the event program).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn watcher_decide_from_base(name_len: u64) -> i64 {
    match decide_from_base(name_len as u32) {
        Ok(verdict) => i64::from(verdict),
        Err(e) => e.code(),
    }
}

#[inline(always)]
fn decide_from_base(name_len: u32) -> Result<u32, Error> {
    let off = kernel_offsets();
    let (target, ..) = current().ok_or(Error::NoScratch)?;
    let by_name = target.file == 0;
    if by_name {
        target.status |= event_status::BASE;
        next_component(target);
        // SAFETY: `lead_cb` has the signature `bpf_loop` calls, and takes no
        // context, so the null one is never read.
        unsafe { bpf_loop(name_len + 1, lead_cb as *mut c_void, ptr::null_mut(), 0) };
        let (target, ..) = current().ok_or(Error::NoScratch)?;
        target.at = target.base;
        // SAFETY: `up_cb` has the signature `bpf_loop` calls, and takes no
        // context, so the null one is never read.
        unsafe { bpf_loop(target.ups, up_cb as *mut c_void, ptr::null_mut(), 0) };
        let (target, ..) = current().ok_or(Error::NoScratch)?;
        target.base = target.at;
    }

    let (target, ..) = current().ok_or(Error::NoScratch)?;
    start_find(target, off)?;
    watcher_find_watch();

    if by_name {
        let (target, ..) = current().ok_or(Error::NoScratch)?;
        target.node = target.base.key(off)?;
        target.on_edge = 1;
        next_component(target);
        let rest = name_len.saturating_sub(target.skip);
        // SAFETY: `descend_cb` has the signature `bpf_loop` calls, and takes no
        // context, so the null one is never read.
        unsafe { bpf_loop(rest + 1, descend_cb as *mut c_void, ptr::null_mut(), 0) };
    }

    let (target, ..) = current().ok_or(Error::NoScratch)?;
    if target.status & event_status::LEXICAL != 0 {
        return Ok(PLACE);
    }
    let verdict = end_verdict(target);
    if verdict != FOUND {
        target.status &= !event_status::THROUGH;
    } else if target.status & event_status::THROUGH != 0 {
        return Ok(PLACE);
    } else if target.name_below != WATCH_NONE {
        // Met on the way down: flagged only now that the name is known
        // not to pass where the kernel cannot follow it.
        mark_dirty(target.watch);
    }
    Ok(verdict)
}

/// Resets the component being read.
#[inline(always)]
fn next_component(target: &mut TargetState) {
    target.comp_len = 0;
    target.all_dots = 1;
    target.comp_hash = watcher_common::NAME_HASH_INIT;
}

/// Adds byte `b` to the component being read; `true` at a `/` (or the
/// end of the name), when the component is complete.
#[inline(always)]
fn take_byte(target: &mut TargetState, b: u8) -> bool {
    if b == b'/' {
        return true;
    }
    target.comp_len += 1;
    target.comp_hash = name_hash_step(target.comp_hash, b);
    if b != b'.' {
        target.all_dots = 0;
    }
    false
}

/// The name's leading `/`, `.` and `..` components: counts the `..` into
/// `ups` and the bytes into `skip`, and stops at the first other one.
#[inline(never)]
extern "C" fn lead_cb(pos: u64, _ctx: *mut c_void) -> i64 {
    let Some((target, event, start)) = current() else {
        return 1;
    };
    let b = name_byte(target, event, start, pos as u32);
    if !take_byte(target, b) {
        return 0;
    }
    let dots = if target.all_dots == 1 {
        target.comp_len
    } else {
        0
    };
    match (target.comp_len, dots) {
        (0, _) | (1, 1) => {}
        (2, 2) => target.ups += 1,
        _ => return 1,
    }
    target.skip = (pos as u32 + 1).min(target.name_len);
    next_component(target);
    0
}

/// One leading `..`: up to the parent directory, across a mount root to
/// the directory the mount sits on and then its parent, as the kernel
/// does; at the root it stays.
#[inline(never)]
extern "C" fn up_cb(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((target, ..)) = current() else {
        return 1;
    };
    let off = kernel_offsets();
    match target.at.up(off) {
        Ok(Step::Parent) => 0,
        Ok(Step::Crossed) => match target.at.up(off) {
            Ok(Step::Parent | Step::Crossed) => 0,
            _ => 1,
        },
        _ => 1,
    }
}

/// One step of the first walk, up from `base`: stops at the first watched
/// directory (`END_FOUND`), at the root (`END_TOP`) or on a failed read;
/// when the loop runs out first, `end` stays `END_NONE` and the target is
/// undecided.
#[inline(never)]
extern "C" fn find_watch_cb(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((target, ..)) = current() else {
        return 1;
    };
    let off = kernel_offsets();
    let found = if on_device_bit(&target.at) {
        watch_at(&target.at, off)
    } else {
        // Nothing up to this mount's root can be a watch.
        target.at.to_mount_root();
        Ok(None)
    };
    let step = match found {
        Ok(Some(id)) => {
            target.watch = id;
            target.end = END_FOUND;
            if target.overlay == 1 && target.detouring == 1 {
                // Written through the merged directory.
                target.status |= event_status::BOUND;
            }
            return 1;
        }
        Ok(None) => climb(target, off),
        Err(e) => Err(e),
    };
    match step {
        Ok(Step::Top) => target.end = END_TOP,
        Ok(_) => return 0,
        Err(_) => target.end = END_FAILED,
    }
    1
}

/// One step up in the first walk. At the root of a mount that is not its
/// super block's root (a bind mount of a subdirectory: a container's
/// volume, a chroot's, another namespace's), on a device that holds a
/// watch, the walk first goes on up the super block's own dentries
/// (`detouring`): a watched directory there holds the file whatever mount
/// it was reached through. At the super block's root without one, it goes
/// back to that mount root and crosses to the mount point, as the path
/// does. A watch found on the way leaves `detouring` set and the mount
/// root in `detour`, where the event's path leaves the writer's.
#[inline(always)]
fn climb(target: &mut TargetState, off: &KernelOffsets) -> Result<Step, HelperError> {
    if target.detouring == 1 {
        return match target.at.up_in_sb(off)? {
            Step::Top if target.overlay == 1 => {
                // No watch above the upper dentry: the walk starts over
                // at the base, in the merged directory.
                target.detouring = 0;
                target.overlay = 0;
                target.at = target.detour;
                Ok(Step::Parent)
            }
            Step::Top => {
                target.detouring = 0;
                target.at = target.detour;
                target.at.up(off)
            }
            step => Ok(step),
        };
    }
    if target.at.at_mount_root() && on_watched_device(&target.at) {
        let root = target.at;
        if let Step::Parent = target.at.up_in_sb(off)? {
            target.detour = root;
            target.detouring = 1;
            return Ok(Step::Parent);
        }
    }
    target.at.up(off)
}

/// Whether the mount's device holds a watched directory: if not, no
/// dentry up to the mount's root can be one. Verifier cost: a 0/1 flag
/// kept in the cursor, or this check in the path walk too, made the
/// verifier track many more states (start-up went from 0.10 to 0.19 and
/// 0.15 s), so only the first walk asks, once per step.
#[inline(always)]
fn on_watched_device(at: &Cursor) -> bool {
    // SAFETY: only whether the entry exists is used, not the reference.
    on_device_bit(at) && unsafe { WATCH_DEVS.get(at.dev()) }.is_some()
}

/// Whether the mount's device may hold a watched directory, by its bit
/// alone: a step's own check, which [`watch_at`] makes exact. A device
/// whose bit another one's shares only costs that check at every level.
#[inline(always)]
fn on_device_bit(at: &Cursor) -> bool {
    let bit = WatchBits::dev_bit(*at.dev());
    WATCH_BITS
        .get(0)
        .is_some_and(|bits| WatchBits::test(&bits.devs, bit))
}

/// The watch whose directory `at` is, if any.
#[inline(always)]
fn watch_at(at: &Cursor, off: &KernelOffsets) -> Result<Option<u32>, HelperError> {
    let key = at.key(off)?;
    let bit = WatchBits::inode_bit(&key);
    if !WATCH_BITS
        .get(0)
        .is_some_and(|bits| WatchBits::test(&bits.inodes, bit))
    {
        return Ok(None);
    }
    // SAFETY: the value is copied out at once; an entry user space removes
    // meanwhile stays readable while the program runs (RCU), so the copy is
    // at worst stale.
    Ok(unsafe { WATCH_INODES.get(&key) }.copied())
}

/// One byte of the rest of the name (after `skip`): at each component's
/// end, follows the previous one down through `EDGES`; at the name's end,
/// looks the last one (the file itself) up there too.
#[inline(never)]
extern "C" fn descend_cb(index: u64, _ctx: *mut c_void) -> i64 {
    let Some((target, event, start)) = current() else {
        return 1;
    };
    let pos = target.skip + index as u32;
    if !take_byte(target, name_byte(target, event, start, pos)) {
        return 0;
    }
    let (len, dots) = (target.comp_len, target.all_dots);
    let hash = target.comp_hash;
    next_component(target);
    if len == 2 && dots == 1 {
        if target.pending == 1 {
            // `dir/..`: dir was never gone down into.
            target.pending = 0;
        } else if target.on_edge == 0 && target.off_depth > 0 {
            target.off_depth -= 1;
            target.on_edge = u32::from(target.off_depth == 0);
        } else {
            // Up from a directory only known by its identity: user space
            // decides from the joined path.
            target.status |= event_status::LEXICAL;
            return 1;
        }
    } else if len > 1 || (len == 1 && dots == 0) {
        if target.pending == 1 {
            go_down(target, target.pending_hash, target.pending_end);
        }
        target.pending = 1;
        target.pending_hash = hash;
        target.pending_end = pos;
    }
    if pos >= target.name_len {
        if target.pending == 1 {
            at_last(target, target.pending_hash, target.pending_end);
        }
        return 1;
    }
    0
}

/// Into the directory `hash` names, below the current one (its name ends
/// before byte `pos`).
#[inline(always)]
fn go_down(target: &mut TargetState, hash: u64, pos: u32) {
    if target.on_edge == 0 {
        target.off_depth += 1;
        target.status |= event_status::THROUGH;
        return;
    }
    match edge_from(target, hash) {
        Some(edge) => {
            target.node = edge.child;
            if edge.watch != WATCH_NONE {
                met_watch(target, &edge, pos);
            }
        }
        None => {
            target.on_edge = 0;
            target.off_depth = 1;
            target.status |= event_status::THROUGH;
        }
    }
}

/// The file itself is `hash` in the current directory (its name ends at
/// byte `pos`): when it is a watched directory (removed, renamed, made
/// again), the event is that watch's.
#[inline(always)]
fn at_last(target: &mut TargetState, hash: u64, pos: u32) {
    if target.on_edge == 0 {
        return;
    }
    if let Some(edge) = edge_from(target, hash) {
        if edge.watch != WATCH_NONE {
            met_watch(target, &edge, pos);
        }
    }
}

/// A watch below the base, hence inside any the first walk found, met
/// through `edge`; the part of the name below it starts after byte `pos`.
/// Its flag is raised once the whole name was followed (`decide`).
#[inline(always)]
fn met_watch(target: &mut TargetState, edge: &Edge, pos: u32) {
    target.watch = edge.watch;
    target.route = edge.route;
    target.end = END_FOUND;
    target.name_below = (pos + 1).min(target.name_len);
}

/// The edge from the current directory by the name `hash`, if the current
/// task's mount namespace has it.
#[inline(always)]
fn edge_from(target: &TargetState, hash: u64) -> Option<Edge> {
    let key = EdgeKey {
        parent: target.node,
        hash,
    };
    // SAFETY: the edge is copied out at once; an entry user space removes
    // meanwhile stays readable while the program runs (RCU), so it is at
    // worst stale.
    let edge = *unsafe { EDGES.get(&key) }?;
    // A mount point in one namespace only: read the task's namespace only
    // then (rare), not for every edge.
    if edge.mntns != 0 && task_mntns(kernel_offsets()).ok()? != edge.mntns {
        return None;
    }
    Some(edge)
}

/// Without BTF: an absolute name is matched by prefix; a relative one (or
/// a bare fd) goes to user space, which places it.
#[inline(always)]
fn decide_by_prefix(index: u32) -> Result<u32, Error> {
    let name_len = read_name(index)?;
    let s = scratch().ok_or(Error::NoScratch)?;
    let start = name_start(&s.op, index);
    let target =
        s.op.targets
            .get_mut(index as usize)
            .ok_or(Error::NoScratch)?;
    if name_len == 0 || name_byte(target, &s.event, start, 0) != b'/' {
        target.status |= event_status::RELATIVE;
        return Ok(PLACE);
    }
    // The LPM key is the name's first WATCH_PREFIX_MAX bytes; bytes past
    // `prefix_len` are never compared.
    // SAFETY: masked below PATH_MAX, the offset is inside `data` (4 *
    // PATH_MAX + NAME_MAX bytes).
    let src = unsafe { s.event.data.as_ptr().add(start & (PATH_MAX - 1)) };
    let dst = s.key.data.as_mut_ptr();
    // SAFETY: `dst` is the key's WATCH_PREFIX_MAX bytes, and as many are
    // readable at `src` (PATH_MAX of `data` follow it).
    unsafe { bpf_probe_read_kernel(dst.cast(), WATCH_PREFIX_MAX as u32, src.cast()) };
    s.key.prefix_len = (name_len.min(WATCH_PREFIX_MAX as u32)) * 8;
    let Some(&watch) = WATCHES.get(&s.key) else {
        return Ok(MISS);
    };
    target.watch = watch;
    mark_dirty(watch);
    Ok(FOUND)
}

#[inline(never)]
extern "C" fn build_cb(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(op) = op() else {
        return 1;
    };
    op.current = index as u32;
    let [first, second] = &op.targets;
    let names = (first.name_len as usize & (PATH_MAX - 1))
        + if op.len > 1 {
            second.name_len as usize & (PATH_MAX - 1)
        } else {
            0
        };
    let start = names
        + if index == 0 {
            0
        } else {
            first.path_len as usize & (PATH_MAX - 1)
        };
    let Some((target, ..)) = current() else {
        return 1;
    };
    target.path_start = start as u32;
    target.path_len = 0;
    target.comps = 0;
    target.below = WATCH_NONE;
    target.rooted = WATCH_NONE;
    target.complete = 1;
    target.end = END_NONE;
    target.at = target.base;
    // SAFETY: `build_path_cb` has the signature `bpf_loop` calls, and takes no
    // context, so the null one is never read.
    unsafe { bpf_loop(MAX_WALK, build_path_cb as *mut c_void, ptr::null_mut(), 0) };
    if let Some((target, ..)) = current() {
        if target.end != END_TOP || target.complete == 0 {
            target.status |= event_status::PATH_TRUNCATED;
        }
    }
    0
}

/// One step of the path walk: marks every watch met as dirty (nested
/// watches all changed; not for a target user space places) and writes
/// the path components, file first, each ended by a NUL, into the data
/// after the names.
#[inline(never)]
extern "C" fn build_path_cb(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(Scratch { op, event, .. }) = scratch() else {
        return 1;
    };
    let root = op.task_root;
    let Some(target) = op.targets.get_mut(op.current as usize) else {
        return 1;
    };
    match path_step(target, event, root) {
        Ok(Step::Top) => {
            target.end = END_TOP;
            1
        }
        Ok(_) => 0,
        Err(_) => {
            target.end = END_FAILED;
            1
        }
    }
}

#[inline(always)]
fn path_step(
    target: &mut TargetState,
    event: &mut EventBuf,
    root: (u64, u64),
) -> Result<Step, Error> {
    let off = kernel_offsets();
    let id = watch_at(&target.at, off)?;
    if let Some(id) = id.filter(|_| target.verdict != PLACE) {
        mark_dirty(id);
    }
    // Where the way to the file leaves the watch: at the watch itself, or
    // at the mount root the first walk went on up from.
    let leaves = if target.detouring == 1 {
        target.at.same(&target.detour)
    } else {
        id == Some(target.watch)
    };
    if leaves && target.below == WATCH_NONE {
        target.below = target.comps;
    }
    if target.rooted == WATCH_NONE && target.at.is(root) {
        target.rooted = target.comps;
    }
    let anchored = target.below != WATCH_NONE || target.name_below != WATCH_NONE;
    if anchored && target.at.at_bind_root(off) {
        target.status |= event_status::BOUND;
    }
    let name = target.at.name(off)?;
    let step = target.at.up(off)?;
    if !matches!(step, Step::Parent) {
        return Ok(step);
    }
    if target.path_len >= (PATH_MAX - NAME_MAX) as u32 {
        target.complete = 0;
        return Ok(step);
    }
    // Verifier: masked below 4 * PATH_MAX, so a component written there
    // stays inside `data` (4 * PATH_MAX + NAME_MAX) whatever the values;
    // the checks above keep them right.
    let at = target.path_start as usize + target.path_len as usize;
    match read_component::<_, { 4 * PATH_MAX - 1 }>(&mut event.data, at, name) {
        Some(n) => {
            target.path_len += n;
            target.comps += 1;
        }
        None => target.complete = 0,
    }
    Ok(step)
}

/// After both paths: for a target whose watch the first walk found up the
/// super block from a mount root, writes the components from that root
/// on to the watch, and marks every watch up to the super block's root
/// as dirty (nested watches all changed). When they do not fit or the
/// walk fails, the target says nothing of them (`below` unknown).
#[inline(never)]
extern "C" fn extra_cb(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(op) = op() else {
        return 1;
    };
    op.current = index as u32;
    let [first, second] = &op.targets;
    let mask = |n: u32| n as usize & (PATH_MAX - 1);
    let mut start = mask(first.name_len) + mask(first.path_len);
    if op.len > 1 {
        start += mask(second.name_len) + mask(second.path_len);
    }
    if index == 1 {
        start += mask(first.extra_len);
    }
    let Some((target, ..)) = current() else {
        return 1;
    };
    target.extra_start = start as u32;
    target.extra_len = 0;
    if target.verdict != FOUND || target.detouring == 0 {
        return 0;
    }
    // From the mount root the first walk went up from, or the upper
    // dentry of an overlay's file (its own name first).
    target.at = if target.overlay == 1 {
        target.upper
    } else {
        target.detour
    };
    target.complete = 1;
    target.end = END_NONE;
    // SAFETY: `extra_step_cb` has the signature `bpf_loop` calls, and
    // takes no context, so the null one is never read.
    unsafe { bpf_loop(MAX_WALK, extra_step_cb as *mut c_void, ptr::null_mut(), 0) };
    if let Some((target, ..)) = current() {
        if target.end != END_FOUND || target.complete == 0 {
            target.below = WATCH_NONE;
            target.extra_len = 0;
        }
    }
    0
}

/// One step up the super block from the mount root: the component is
/// written until the watch is met (`END_FOUND`), and the walk goes on to
/// the super block's root for the watches above it.
#[inline(never)]
extern "C" fn extra_step_cb(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((target, event, _)) = current() else {
        return 1;
    };
    let off = kernel_offsets();
    let Ok(id) = watch_at(&target.at, off) else {
        target.complete = 0;
        return 1;
    };
    if let Some(id) = id {
        mark_dirty(id);
        if id == target.watch {
            target.end = END_FOUND;
        }
    }
    if target.end != END_FOUND {
        let at = target.extra_start as usize + target.extra_len as usize;
        let written = match target.at.name(off) {
            // Verifier: `read_component` masks the offset below 4 *
            // PATH_MAX; this check keeps it from wrapping over the names.
            Ok(name) if at < 4 * PATH_MAX - NAME_MAX => {
                read_component::<_, { 4 * PATH_MAX - 1 }>(&mut event.data, at, name)
            }
            _ => None,
        };
        match written {
            Some(n) => target.extra_len += n,
            None => {
                target.complete = 0;
                return 1;
            }
        }
    }
    match target.at.up_in_sb(off) {
        Ok(Step::Parent) => 0,
        Ok(_) => 1,
        Err(_) => {
            // Before the watch was met, nothing is known of the rest.
            target.complete &= u32::from(target.end == END_FOUND);
            1
        }
    }
}
