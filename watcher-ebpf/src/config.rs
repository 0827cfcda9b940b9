//! Read-only globals that user space sets before loading
//! (`EbpfLoader::override_global`). They live in `.rodata`, so the verifier
//! knows their values.

use watcher_common::TracepointOffsets;

/// Tracepoint argument offsets from tracefs `format` files.
#[unsafe(no_mangle)]
static TP_OFFSETS: TracepointOffsets = TracepointOffsets {
    openat_dfd: 0,
    openat_filename: 0,
    openat_flags: 0,
    openat2_dfd: 0,
    openat2_filename: 0,
    openat2_how: 0,
    open_filename: 0,
    open_flags: 0,
    creat_pathname: 0,
    exit_ret: 0,
    fork_child_pid: 0,
};

/// The watcher's own thread group id: its writes, and those of every
/// process it forks, are never events.
#[unsafe(no_mangle)]
static WATCHER_TGID: u32 = 0;

// Volatile reads: without them the compiler would fold the zero
// initialisers above into the code, and the values user space sets at load
// time would never be read.

#[inline(always)]
pub fn tp_offsets() -> TracepointOffsets {
    unsafe { core::ptr::read_volatile(&TP_OFFSETS) }
}

#[inline(always)]
pub fn watcher_tgid() -> u32 {
    unsafe { core::ptr::read_volatile(&WATCHER_TGID) }
}
