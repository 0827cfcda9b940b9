//! Read-only globals that user space sets before loading
//! (`EbpfLoader::override_global`): they live in `.rodata`, so the verifier
//! knows their values. What a reload changes is in the `SETTINGS` map.

use watcher_common::{IoUringOffsets, KernelOffsets, TracepointOffsets, match_mode};

use crate::maps::{RENAMES, SETTINGS};

/// Tracepoint argument offsets from tracefs `format` files.
// SAFETY: no other symbol of the program has this name, and user space
// sets the value by it (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static TP_OFFSETS: TracepointOffsets = TracepointOffsets {
    syscall_nr: 0,
    exit_ret: 0,
    fork_child_pid: 0,
    exit_group_dead: 0,
    io_submit_req: 0,
    io_submit_opcode: 0,
    io_submit_flags: 0,
    io_complete_req: 0,
    io_complete_res: 0,
};

/// Kernel struct member offsets from BTF (exact mode only).
// SAFETY: no other symbol of the program has this name, and user space
// sets the value by it (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_path_mnt: 0,
    file_path_dentry: 0,
    dentry_parent: 0,
    dentry_name: 0,
    dentry_inode: 0,
    dentry_sb: 0,
    dentry_hash_pprev: 0,
    inode_ino: 0,
    super_block_dev: 0,
    vfsmount_root: 0,
    mount_mnt: 0,
    mount_parent: 0,
    mount_mountpoint: 0,
    task_fs: 0,
    fs_root: 0,
    fs_pwd: 0,
    path_mnt: 0,
    path_dentry: 0,
    file_mode: 0,
    task_real_parent: 0,
    task_tgid: 0,
    task_cred: 0,
    cred_euid: 0,
    cred_egid: 0,
    task_loginuid: 0,
    task_nsproxy: 0,
    nsproxy_mnt_ns: 0,
    mnt_namespace_inum: 0,
    task_mm: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_exe_file: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    task_self_exec_id: 0,
    pt_regs_args: [0; 6],
    super_block_magic: 0,
    ovl_inode_upper: 0,
};

/// io_uring request member offsets from BTF (exact mode, when the kernel
/// has io_uring).
// SAFETY: no other symbol of the program has this name, and user space
// sets the value by it (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static IO_OFFSETS: IoUringOffsets = IoUringOffsets {
    kiocb_file: 0,
    kiocb_fd: 0,
    open_dfd: 0,
    open_file_slot: 0,
    open_filename: 0,
    open_flags: 0,
    rename_old_dfd: 0,
    rename_new_dfd: 0,
    rename_oldpath: 0,
    rename_newpath: 0,
    rename_flags: 0,
    unlink_dfd: 0,
    unlink_flags: 0,
    unlink_filename: 0,
    mkdir_dfd: 0,
    mkdir_filename: 0,
    link_old_dfd: 0,
    link_new_dfd: 0,
    link_oldpath: 0,
    link_newpath: 0,
    link_flags: 0,
    close_fd: 0,
    close_file_slot: 0,
    filename_name: 0,
};

/// A [`match_mode`] value.
// SAFETY: no other symbol of the program has this name, and user space
// sets the value by it (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static MATCH_MODE: u32 = match_mode::EXACT;

/// The watcher's own thread group id: its writes, and those of every
/// process it forks, are never events.
// SAFETY: no other symbol of the program has this name, and user space
// sets the value by it (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static WATCHER_TGID: u32 = 0;

// Volatile reads, or references the compiler cannot see through: without
// them it would fold the initialisers above into the code, and the values
// user space sets at load time would never be read.

/// `value`, through a pointer the compiler knows nothing of, so that the
/// members are read from the global where they are used.
#[inline(always)]
fn laundered<T>(value: &'static T) -> &'static T {
    let mut ptr: *const T = value;
    // SAFETY: an empty instruction that only claims to change the pointer,
    // which stays the one to `value`.
    unsafe { core::arch::asm!("/* {0} */", inout(reg) ptr, options(pure, nomem, nostack)) };
    // SAFETY: `ptr` is still `value`, valid for 'static.
    unsafe { &*ptr }
}

#[inline(always)]
pub fn tp_offsets() -> &'static TracepointOffsets {
    laundered(&TP_OFFSETS)
}

/// The offsets, each member read where it is used (copying the whole
/// struct, as a volatile read of it did, cost every call a few dozen loads
/// and stores, and `sys_exit` a tenth of its time). So are the others.
#[inline(always)]
pub fn kernel_offsets() -> &'static KernelOffsets {
    laundered(&KERNEL_OFFSETS)
}

#[inline(always)]
pub fn io_offsets() -> &'static IoUringOffsets {
    laundered(&IO_OFFSETS)
}

#[inline(always)]
pub fn match_mode() -> u32 {
    // SAFETY: a reference to a static is valid and aligned, and nothing
    // writes the static once the program is loaded.
    unsafe { core::ptr::read_volatile(&MATCH_MODE) }
}

/// The selected kinds, as `event_kind::bit`s: in the `SETTINGS` map, not
/// a global, because a reload changes them.
#[inline(always)]
pub fn event_mask() -> u32 {
    SETTINGS.get(0).map_or(0, |s| s.event_mask)
}

#[inline(always)]
pub fn watcher_tgid() -> u32 {
    // SAFETY: a reference to a static is valid and aligned, and nothing
    // writes the static once the program is loaded.
    unsafe { core::ptr::read_volatile(&WATCHER_TGID) }
}

/// Whether the syscalls of watcher's actions are traced and tagged
/// (`Settings::tag_actions`), rather than left out.
#[inline(always)]
pub fn tag_actions() -> bool {
    SETTINGS.get(0).is_some_and(|s| s.tag_actions != 0)
}

/// The process filters that are on (`SETTINGS`, as the kinds).
#[inline(always)]
pub fn filters() -> u32 {
    SETTINGS.get(0).map_or(0, |s| s.filters)
}

/// What a verdict in `FILES` is valid for: the watches user space last
/// set and the renames since (both only grow).
#[inline(always)]
pub fn generation() -> u64 {
    let watches = SETTINGS.get(0).map_or(0, |s| s.generation);
    u64::from(watches) + RENAMES.get(0).copied().unwrap_or(0)
}

/// The shortest time between two `modify` events of one open file.
#[inline(always)]
pub fn modify_interval_ns() -> u64 {
    SETTINGS.get(0).map_or(0, |s| s.modify_interval_ns)
}
