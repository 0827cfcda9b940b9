//! Open files and the writes through them. Whether a file lies under a
//! watch is decided at its first write and kept in `FILES` by its
//! `struct file *`, so that every write after it, through whatever
//! descriptor (dup'd, inherited, opened before watcher started), costs a
//! lookup and not a walk; and the `modify` events of a file written often
//! are coalesced there. Descriptors written or opened for writing under a
//! watch are kept in `WRITE_FDS`, for their close.

use aya_ebpf::helpers::bpf_ktime_get_boot_ns;
use watcher_common::{FdKey, FileState, UNDECIDED_SLOT, WATCH_NONE, event_kind, verdict};

use crate::{
    account::mark_dirty,
    config::{event_mask, generation, kernel_offsets, modify_interval_ns},
    error::Error,
    maps::{FILES, RENAMES, WRITE_FDS, WRITERS},
    read::read,
    walk::decide_file,
};

/// Whether writes to the open `file` are events (a [`verdict`] value):
/// kept from its first write while nothing could have moved it (the
/// generation), else decided now and kept.
#[inline(always)]
pub fn verdict_of(file: u64) -> Result<u32, Error> {
    let dentry: u64 = read(file, kernel_offsets().file_path_dentry)?;
    let generation = generation();
    // SAFETY: the fields are copied out at once; an entry another CPU
    // changes meanwhile is at worst stale, and decided again below.
    if let Some(state) = unsafe { FILES.get(&file) } {
        if state.dentry == dentry && state.generation == generation {
            return Ok(state.verdict);
        }
    }
    let (verdict, watch) = decide_file(file)?;
    match FILES.get_ptr_mut(&file) {
        // Decided again (a rename, new watches): its coalescing goes on.
        // SAFETY: a pointer to a map value, valid and aligned while the
        // program runs; plain integers, whatever another CPU writes.
        Some(state) if unsafe { (*state).dentry } == dentry => unsafe {
            (*state).generation = generation;
            (*state).verdict = verdict;
            (*state).watch = watch;
        },
        _ => {
            let state = FileState {
                dentry,
                generation,
                last_ns: 0,
                pending: 0,
                verdict,
                watch,
                _pad: 0,
            };
            // Not kept (`FILES` full, or of one entry when no write may
            // be selected: an io_uring ftruncate's verdict is taken here
            // too): decided again next time, and a write whose entry is
            // missing is sent (`count_write`).
            let _ = FILES.insert(&file, &state, 0);
        }
    }
    Ok(verdict)
}

/// What [`count_write`] made of a write.
pub struct Written {
    /// The writes a `modify` event sent now stands for; 0 when none is
    /// due.
    pub due: u32,
    /// The file's watch, [`WATCH_NONE`] when undecided or forgotten.
    pub watch: u32,
}

/// A write to `file` (under a watch, as [`verdict_of`] said at its
/// entry) succeeded. An event is due when none was sent for the file
/// within the interval; else the write is counted for the next one and
/// the watch's flag raised.
#[inline(always)]
pub fn count_write(file: u64) -> Written {
    let Some(state) = FILES.get_ptr_mut(&file) else {
        // Forgotten since its entry (the LRU was full): sent, not lost.
        return Written {
            due: 1,
            watch: WATCH_NONE,
        };
    };
    // SAFETY: a pointer to a map value, valid and aligned while the
    // program runs. Plain integers: two CPUs writing one file at the same
    // instant may each send an event where one was due, or count one
    // write where there were two (the BPF target has no atomic add in
    // Rust); the events themselves are never lost.
    let state = unsafe { &mut *state };
    let watch = if state.verdict == verdict::FOUND {
        state.watch
    } else {
        WATCH_NONE
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if state.last_ns != 0 && now.wrapping_sub(state.last_ns) < modify_interval_ns() {
        state.pending += 1;
        mark_dirty(if watch == WATCH_NONE {
            UNDECIDED_SLOT
        } else {
            watch
        });
        return Written { due: 0, watch };
    }
    state.last_ns = now;
    let pending = state.pending;
    state.pending = 0;
    Written {
        due: pending + 1,
        watch,
    }
}

/// The writes to `file` that no `modify` event counted, handed over at a
/// close of it; the file is forgotten (a write through another
/// descriptor still open on it decides it again).
#[inline(always)]
pub fn take_pending(file: u64) -> u32 {
    // SAFETY: the value is copied out at once, and any bytes are a valid
    // integer.
    let pending = unsafe { FILES.get(&file) }.map_or(0, |s| s.pending);
    let _ = FILES.remove(&file);
    pending
}

/// Remembers descriptor `fd` of process `tgid`, written or opened for
/// writing under `watch`: its close is a `close_write`, and hands over
/// the writes not yet counted.
#[inline(always)]
pub fn track_write_fd(tgid: u32, fd: i64, watch: u32) {
    let key = FdKey {
        tgid,
        fd: fd as u32,
    };
    // SAFETY: only whether the entry exists is used, not the reference.
    if unsafe { WRITE_FDS.get(&key) }.is_some() {
        return;
    }
    let _ = WRITE_FDS.insert(&key, &watch, 0);
    let _ = WRITERS.insert(&tgid, &1, 0);
}

/// An open's event was decided (`watch`, `None` when it was no event):
/// the new descriptor `fd` is remembered for its `close_write` when that
/// kind is selected.
#[inline(always)]
pub fn track_opened(tgid: u32, fd: i64, watch: Option<u32>) {
    if let Some(watch) = watch
        && event_mask() & event_kind::bit(event_kind::CLOSE_WRITE) != 0
    {
        track_write_fd(tgid, fd, watch);
    }
}

/// A rename succeeded: every verdict in `FILES` reached before it is
/// decided again.
#[inline(always)]
pub fn count_rename() {
    if let Some(renames) = RENAMES.get_ptr_mut(0) {
        // SAFETY: a pointer to the map's one value, valid and aligned
        // while the program runs. Not atomic (the BPF target has no atomic
        // add in Rust): two renames at the same instant may raise it once,
        // which still changes it, so every verdict before both is decided
        // again.
        unsafe { *renames = (*renames).wrapping_add(1) };
    }
}

/// Whether the close of a descriptor written or opened for writing under
/// a watch, with `pending` writes of its file not yet counted, is an
/// event: a `close_write`, or the last `modify` of those writes.
#[inline(always)]
pub fn close_is_event(pending: u32) -> bool {
    let mask = event_mask();
    mask & event_kind::bit(event_kind::CLOSE_WRITE) != 0
        || (pending > 0 && mask & event_kind::bit(event_kind::MODIFY) != 0)
}
