//! Who made a change: the process's parent, credentials, namespaces,
//! executable and command line, read from its `task_struct` during the
//! syscall, so that a process that exits right after is still named.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_probe_read_user_buf,
    generated::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_loop},
};
use watcher_common::{
    CMDLINE_MAX, KernelOffsets, NAME_MAX, PATH_MAX, Process, ProcessImage, match_mode, proc_status,
};

use crate::{
    config::{kernel_offsets, match_mode},
    error::Error,
    maps::{IMAGES, scratch},
    read::{read, read_component},
    vfs::{Cursor, Step, task_mntns},
};

/// Fills the scratch event's [`Process`], and its executable and command
/// line unless an earlier event of the same process image carried them
/// (`IMAGES`). Returns whether this event carries them: the caller then
/// records its image in `IMAGES` once the event is sent. Verifier: a bool,
/// not an `Option` of the image, whose payload the compiler would read
/// uninitialised when it is `None`.
#[inline(always)]
pub fn fill() -> Result<bool, Error> {
    let s = scratch().ok_or(Error::NoScratch)?;
    let p = &mut s.event.header.process;
    *p = Process {
        // SAFETY: a helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        loginuid: u32::MAX,
        ..Process::default()
    };
    if match_mode() != match_mode::EXACT {
        return Ok(false);
    }
    let off = kernel_offsets();
    // SAFETY: a helper without arguments; the task is only a number
    // handed to `read`.
    let task = unsafe { bpf_get_current_task() };
    let parent: u64 = read(task, off.task_real_parent)?;
    p.ppid = read(parent, off.task_tgid)?;
    let cred: u64 = read(task, off.task_cred)?;
    p.euid = read(cred, off.cred_euid)?;
    p.egid = read(cred, off.cred_egid)?;
    if off.task_loginuid != 0 {
        p.loginuid = read(task, off.task_loginuid)?;
    }
    p.mntns = task_mntns(off)?;
    p.status = proc_status::KNOWN;
    let leader: u64 = read(task, off.task_group_leader)?;
    let image = ProcessImage {
        start_boottime: read(leader, off.task_start_boottime)?,
        exec_id: read(leader, off.task_self_exec_id)?,
    };
    p.image = image;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is copied out at once; any bytes are a valid
    // image (integers), and one replaced meanwhile is at worst another
    // image of this pid, which then does not match.
    if unsafe { IMAGES.get(&tgid) }.copied() == Some(image) {
        p.status |= proc_status::IMAGE_SENT;
        return Ok(false);
    }
    let mm: u64 = read(task, off.task_mm)?;
    // Kernel threads, and a process past exit_mm(), have none.
    if mm != 0 {
        command_line(off, mm)?;
        executable(off, mm)?;
    }
    Ok(true)
}

/// Records that the executable and command line of the current process's
/// `image` were sent.
#[inline(always)]
pub fn image_sent(image: &ProcessImage) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // A failed insert only means the next event carries them again.
    let _ = IMAGES.insert(&tgid, image, 0);
}

/// The arguments, each ended by a NUL, from the process's own memory.
#[inline(always)]
fn command_line(off: &KernelOffsets, mm: u64) -> Result<(), Error> {
    let s = scratch().ok_or(Error::NoScratch)?;
    let start: u64 = read(mm, off.mm_arg_start)?;
    let end: u64 = read(mm, off.mm_arg_end)?;
    let mut len = end.saturating_sub(start) as usize;
    if len > CMDLINE_MAX {
        len = CMDLINE_MAX;
        s.event.header.process.status |= proc_status::CMDLINE_TRUNCATED;
    }
    // `.get_mut()` shows the verifier the length is within the buffer.
    if let Some(dst) = s.cmdline.get_mut(..len)
        // SAFETY: the helper writes `dst`, a slice, and checks the user
        // address itself (a bad one fails the read, it never faults).
        && unsafe { bpf_probe_read_user_buf(start as *const u8, dst) }.is_ok()
    {
        s.event.header.process.cmdline_len = len as u32;
    }
    Ok(())
}

/// The executable's path, as components from the file up (as events'
/// paths), walked as the changed files are.
#[inline(always)]
fn executable(off: &KernelOffsets, mm: u64) -> Result<(), Error> {
    let s = scratch().ok_or(Error::NoScratch)?;
    let file: u64 = read(mm, off.mm_exe_file)?;
    if file == 0 {
        return Ok(());
    }
    s.exe_walk.at = Cursor::of_file(off, file)?;
    if exe_deleted(off, s.exe_walk.at.dentry())? {
        s.event.header.process.status |= proc_status::EXE_DELETED;
    }
    s.exe_walk.len = 0;
    s.exe_walk.complete = 1;
    s.exe_walk.top = 0;
    // SAFETY: `exe_cb` has the signature `bpf_loop` calls, and takes no
    // context, so the null one is never read.
    unsafe {
        bpf_loop(
            watcher_common::MAX_WALK,
            exe_cb as *mut c_void,
            ptr::null_mut(),
            0,
        )
    };
    let s = scratch().ok_or(Error::NoScratch)?;
    let p = &mut s.event.header.process;
    p.exe_len = s.exe_walk.len;
    if s.exe_walk.top == 0 || s.exe_walk.complete == 0 {
        p.status |= proc_status::EXE_TRUNCATED;
    }
    Ok(())
}

/// Whether the executable's dentry is unlinked, as the kernel's
/// `d_unlinked()` decides: unhashed (`d_hash.pprev` NULL) and not a root
/// (a root is never hashed; its `d_parent` is itself). That is what makes
/// `/proc/PID/exe` and audit's paths end in ` (deleted)`, and what says the
/// path the event shows no longer leads to this file: the binary was
/// removed, or replaced by a rename over it. `inode.i_nlink == 0` was the
/// other choice; it says whether the file is gone everywhere, so it would
/// miss a binary removed from the path shown but still linked under another
/// name, where that path is just as stale.
///
/// The addresses are numbers handed to `bpf_probe_read_kernel`, not
/// pointers the program dereferences: the verifier has no bound to check,
/// and a wrong one fails the read.
#[inline(always)]
fn exe_deleted(off: &KernelOffsets, dentry: u64) -> Result<bool, Error> {
    let pprev: u64 = read(dentry, off.dentry_hash_pprev)?;
    if pprev != 0 {
        return Ok(false);
    }
    let parent: u64 = read(dentry, off.dentry_parent)?;
    Ok(parent != dentry)
}

#[inline(never)]
extern "C" fn exe_cb(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else {
        return 1;
    };
    let off = kernel_offsets();
    let w = &mut s.exe_walk;
    let Ok(name) = w.at.name(off) else {
        return 1;
    };
    match w.at.up(off) {
        Ok(Step::Parent) => {}
        Ok(Step::Crossed) => return 0,
        Ok(Step::Top) => {
            w.top = 1;
            return 1;
        }
        Err(_) => return 1,
    }
    if w.len >= (PATH_MAX - NAME_MAX) as u32 {
        w.complete = 0;
        return 1;
    }
    // Verifier: masked below PATH_MAX, so a component (at most NAME_MAX)
    // written there stays inside the EXE_BUF_LEN buffer.
    match read_component::<_, { PATH_MAX - 1 }>(&mut s.exe, w.len as usize, name) {
        Some(n) => w.len += n,
        None => w.complete = 0,
    }
    0
}
