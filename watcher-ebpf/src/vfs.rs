//! Files, dentries and mounts of the current task, reached through the
//! struct member offsets user space read from BTF (`KERNEL_OFFSETS`): from
//! a file descriptor to its `struct file`, and from a file (or the task's
//! root or working directory) up through parent dentries and across mount
//! points to the root. Every read goes through `bpf_probe_read_kernel`, so
//! a wrong pointer fails the read instead of faulting.

use aya_ebpf::helpers::generated::bpf_get_current_task;
use watcher_common::{InodeKey, KernelOffsets, OVERLAYFS_SUPER_MAGIC};

use crate::{
    error::{Error, HelperError},
    read::read,
};

/// The current task's descriptor table.
#[inline(always)]
fn fd_table(off: &KernelOffsets) -> Result<u64, HelperError> {
    // SAFETY: a helper without arguments; the task is only a number
    // handed to `read`.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, off.task_files)?;
    read(files, off.files_fdt)
}

/// The current task's mount namespace (its inode number); 0 for a task
/// past `exit_task_namespaces()`, which has none.
#[inline(always)]
pub fn task_mntns(off: &KernelOffsets) -> Result<u32, HelperError> {
    // SAFETY: a helper without arguments; the task is only a number
    // handed to `read`.
    let task = unsafe { bpf_get_current_task() };
    let nsproxy: u64 = read(task, off.task_nsproxy)?;
    if nsproxy == 0 {
        return Ok(0);
    }
    let mnt_ns: u64 = read(nsproxy, off.nsproxy_mnt_ns)?;
    read(mnt_ns, off.mnt_namespace_inum)
}

/// How many descriptors the current task's table has room for.
#[inline(always)]
pub fn fd_table_size(off: &KernelOffsets) -> Result<u32, HelperError> {
    read(fd_table(off)?, off.fdtable_max_fds)
}

/// The `struct file` behind `fd` in the current task's descriptor table.
#[inline(always)]
pub fn file_of_fd(off: &KernelOffsets, fd: i64) -> Result<u64, Error> {
    let fdt = fd_table(off)?;
    let max_fds: u32 = read(fdt, off.fdtable_max_fds)?;
    if fd < 0 || fd >= i64::from(max_fds) {
        return Err(Error::BadFd);
    }
    let fds: u64 = read(fdt, off.fdtable_fd)?;
    Ok(read(fds + fd as u64 * 8, 0)?)
}

/// The `file.f_mode` bits.
#[inline(always)]
pub fn file_mode(off: &KernelOffsets, file: u64) -> Result<u32, HelperError> {
    read(file, off.file_mode)
}

/// Where names of the current task start from: its root directory (for
/// absolute names) or its working directory.
pub enum TaskDir {
    Root,
    Cwd,
}

/// A position in the walk: a dentry and the mount it is seen through.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Cursor {
    dentry: u64,
    /// `struct mount *`.
    mount: u64,
    /// The mount's root dentry: reaching it means crossing to the mount
    /// point.
    root: u64,
    /// `s_dev` of the mount's super block.
    dev: u32,
}

/// The dentry and `struct mount *` of the current task's root or working
/// directory.
#[inline(always)]
pub fn task_dir(off: &KernelOffsets, which: TaskDir) -> Result<(u64, u64), HelperError> {
    // SAFETY: a helper without arguments; the task is only a number
    // handed to `read`.
    let task = unsafe { bpf_get_current_task() };
    let fs: u64 = read(task, off.task_fs)?;
    let path = fs
        + u64::from(match which {
            TaskDir::Root => off.fs_root,
            TaskDir::Cwd => off.fs_pwd,
        });
    let vfsmount: u64 = read(path, off.path_mnt)?;
    let dentry: u64 = read(path, off.path_dentry)?;
    Ok((dentry, vfsmount - u64::from(off.mount_mnt)))
}

/// What [`Cursor::up`] did.
pub enum Step {
    /// Moved to the parent dentry: the dentry left is a path component.
    Parent,
    /// Moved from a mount's root to its mount point in the parent mount.
    Crossed,
    /// Already at the root of the mount tree.
    Top,
}

impl Cursor {
    /// At the opened file.
    #[inline(always)]
    pub fn of_file(off: &KernelOffsets, file: u64) -> Result<Self, HelperError> {
        let vfsmount: u64 = read(file, off.file_path_mnt)?;
        let dentry: u64 = read(file, off.file_path_dentry)?;
        Self::at(off, dentry, vfsmount - u64::from(off.mount_mnt))
    }

    /// The dentry it is at (read once, so that callers need not read it
    /// again).
    #[inline(always)]
    pub fn dentry(&self) -> u64 {
        self.dentry
    }

    /// At the current task's root or working directory.
    #[inline(always)]
    pub fn of_task(off: &KernelOffsets, which: TaskDir) -> Result<Self, HelperError> {
        let (dentry, mount) = task_dir(off, which)?;
        Self::at(off, dentry, mount)
    }

    /// Whether it is at `dir`'s dentry and mount (from [`task_dir`]).
    #[inline(always)]
    pub fn is(&self, dir: (u64, u64)) -> bool {
        (self.dentry, self.mount) == dir
    }

    #[inline(always)]
    fn at(off: &KernelOffsets, dentry: u64, mount: u64) -> Result<Self, HelperError> {
        let root: u64 = read(mount, off.mount_mnt + off.vfsmount_root)?;
        let sb: u64 = read(dentry, off.dentry_sb)?;
        let dev: u32 = read(sb, off.super_block_dev)?;
        Ok(Self {
            dentry,
            mount,
            root,
            dev,
        })
    }

    /// The dentry of the upper layer's file or directory behind an
    /// overlayfs dentry (where a write through the merged directory
    /// lands), as a cursor that goes up that layer's super block only;
    /// `None` when it is not on an overlay, or has no upper one (a lower
    /// file never written).
    #[inline(always)]
    pub fn overlay_upper(&self, off: &KernelOffsets) -> Result<Option<Self>, HelperError> {
        // Overlays have anonymous devices (major 0): files on disks stop
        // here, without a read.
        if self.dev >> 20 != 0 || off.ovl_inode_upper == 0 {
            return Ok(None);
        }
        let sb: u64 = read(self.dentry, off.dentry_sb)?;
        let magic: u64 = read(sb, off.super_block_magic)?;
        if magic != OVERLAYFS_SUPER_MAGIC {
            return Ok(None);
        }
        let inode: u64 = read(self.dentry, off.dentry_inode)?;
        let upper: u64 = read(inode, off.ovl_inode_upper)?;
        if upper == 0 {
            return Ok(None);
        }
        let sb: u64 = read(upper, off.dentry_sb)?;
        Ok(Some(Self {
            dentry: upper,
            mount: 0,
            root: 0,
            dev: read(sb, off.super_block_dev)?,
        }))
    }

    /// `s_dev` of the mount's super block, by reference: a map lookup by
    /// it then takes its key from the cursor itself, not from a copy on
    /// the stack.
    #[inline(always)]
    pub fn dev(&self) -> &u32 {
        &self.dev
    }

    /// This dentry's identity, as `WATCH_INODES` and `EDGES` know it.
    #[inline(always)]
    pub fn key(&self, off: &KernelOffsets) -> Result<InodeKey, HelperError> {
        let inode: u64 = read(self.dentry, off.dentry_inode)?;
        Ok(InodeKey {
            dev: self.dev,
            _pad: 0,
            ino: read(inode, off.inode_ino)?,
        })
    }

    /// The kernel pointer to this dentry's name (NUL-terminated).
    #[inline(always)]
    pub fn name(&self, off: &KernelOffsets) -> Result<u64, HelperError> {
        read(self.dentry, off.dentry_name)
    }

    /// Jumps to the mount's root, from where [`Cursor::up`] crosses to the
    /// mount point.
    #[inline(always)]
    pub fn to_mount_root(&mut self) {
        self.dentry = self.root;
    }

    /// Whether it is at the root of the mount it is seen through.
    #[inline(always)]
    pub fn at_mount_root(&self) -> bool {
        self.dentry == self.root
    }

    /// Whether it is at the root of a bind mount: a mount of a directory
    /// that is not its super block's root (false when that cannot be read).
    #[inline(always)]
    pub fn at_bind_root(&self, off: &KernelOffsets) -> bool {
        self.dentry == self.root
            && read::<u64>(self.dentry, off.dentry_parent).is_ok_and(|parent| parent != self.dentry)
    }

    /// Whether both are at the same dentry seen through the same mount.
    #[inline(always)]
    pub fn same(&self, other: &Cursor) -> bool {
        self.dentry == other.dentry && self.mount == other.mount
    }

    /// Up to the parent dentry, or across a mount root to the mount point
    /// (the path as the process sees it).
    #[inline(always)]
    pub fn up(&mut self, off: &KernelOffsets) -> Result<Step, HelperError> {
        if self.dentry == self.root {
            return self.cross(off);
        }
        self.up_in_sb(off)
    }

    /// Up to the parent dentry in the super block's own tree, past a mount
    /// root (a bind mount of a subdirectory): where the dentry really lies,
    /// whatever mount it was reached through. `Top` at the super block's
    /// root.
    #[inline(always)]
    pub fn up_in_sb(&mut self, off: &KernelOffsets) -> Result<Step, HelperError> {
        let parent: u64 = read(self.dentry, off.dentry_parent)?;
        if parent == self.dentry {
            return Ok(Step::Top);
        }
        self.dentry = parent;
        Ok(Step::Parent)
    }

    /// From the mount's root to the mount point in the parent mount.
    #[inline(always)]
    fn cross(&mut self, off: &KernelOffsets) -> Result<Step, HelperError> {
        let parent: u64 = read(self.mount, off.mount_parent)?;
        if parent == self.mount {
            return Ok(Step::Top);
        }
        let mountpoint: u64 = read(self.mount, off.mount_mountpoint)?;
        *self = Self::at(off, mountpoint, parent)?;
        Ok(Step::Crossed)
    }
}
