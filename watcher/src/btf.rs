//! The kernel struct member offsets the exact match reads, from the
//! kernel's BTF (`/sys/kernel/btf/vmlinux`). Rust eBPF has no CO-RE, so
//! this is what lets one binary run on any kernel.

use std::{collections::HashMap, ops::Deref};

use btf_rs::{Backend, Btf, Type};
use regex::Regex;
use watcher_common::{IoUringOffsets, KernelOffsets, TracepointOffsets};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// What watching without BTF means, for the warning at start and in
/// `watcher check`.
pub const FALLBACK: &str = "matching by path prefix instead: absolute names as written, relative \
                            ones placed from /proc (missed when the writer exits first), `..` \
                            and symlinks not resolved";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {VMLINUX}: {0}")]
    Read(#[source] btf_rs::Error),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(&'static str),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember {
        strukt: &'static str,
        member: &'static str,
    },
    #[error("kernel BTF: {strukt}.{member} is {found}, watcher expects {expected}")]
    Shape {
        strukt: &'static str,
        member: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("kernel BTF: {0}")]
    Parse(#[source] btf_rs::Error),
}

/// What a member must be for the programs' fixed-size reads.
#[derive(Clone, Copy)]
enum Shape {
    Pointer,
    /// An integer of this many bytes.
    Int(usize),
    Struct(&'static str),
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Self::Pointer => "a pointer",
            Self::Int(4) => "a 4-byte integer",
            Self::Int(8) => "an 8-byte integer",
            Self::Int(_) => "an integer",
            Self::Struct(_) => "a struct",
        }
    }
}

/// Every struct an offset is read from ([`kernel_offsets`],
/// [`io_offsets`]): found in one pass over the kernel's BTF.
const STRUCTS: [&str; 25] = [
    "task_struct",
    "files_struct",
    "fdtable",
    "file",
    "dentry",
    "inode",
    "super_block",
    "vfsmount",
    "mount",
    "fs_struct",
    "path",
    "cred",
    "nsproxy",
    "mnt_namespace",
    "mm_struct",
    "pt_regs",
    "ovl_inode",
    "io_kiocb",
    "io_open",
    "io_rename",
    "io_unlink",
    "io_mkdir",
    "io_link",
    "io_close",
    "filename",
];

/// The kernel's BTF, with the structs of [`STRUCTS`] it defines. A lookup
/// by name is a pass over all of its names (about 1.5 ms here), and the
/// offsets ask for a struct some sixty times: they are found in one pass.
pub struct KernelBtf {
    btf: Btf,
    structs: HashMap<String, Type>,
}

impl Deref for KernelBtf {
    type Target = Btf;

    fn deref(&self) -> &Btf {
        &self.btf
    }
}

impl KernelBtf {
    /// The definition of struct `name` (one of [`STRUCTS`]).
    fn strukt(&self, name: &'static str) -> Result<Type, BtfError> {
        self.structs
            .get(name)
            .cloned()
            .ok_or(BtfError::NoStruct(name))
    }
}

/// The kernel's BTF, opened, and the offsets the exact match reads from
/// it; the BTF is kept for the io_uring offsets ([`io_uring`]), then
/// dropped. It is opened once at start.
pub fn kernel() -> Result<(KernelOffsets, KernelBtf), BtfError> {
    let btf = vmlinux()?;
    Ok((kernel_offsets(&btf)?, btf))
}

/// The kernel's BTF. Mapped, only the types asked for are parsed (a few
/// ms, where parsing all of it takes over 100 ms); kernels that cannot
/// map the file are read whole.
fn vmlinux() -> Result<KernelBtf, BtfError> {
    let btf = Btf::from_file_with_backend(VMLINUX, Backend::Mmap)
        .or_else(|_| Btf::from_file(VMLINUX))
        .map_err(BtfError::Read)?;
    let pattern = Regex::new(&format!("^(?:{})$", STRUCTS.join("|")))
        .expect("the names of STRUCTS are identifiers");
    let mut structs = HashMap::new();
    for id in btf
        .resolve_ids_by_regex(&pattern)
        .map_err(BtfError::Parse)?
    {
        let Ok(ty) = btf.resolve_type_by_id(id) else {
            continue;
        };
        // The definition, not a forward declaration (no members).
        if let Type::Struct(s) = &ty
            && !s.members.is_empty()
            && let Ok(name) = btf.resolve_name(s)
        {
            structs.entry(name).or_insert(ty);
        }
    }
    Ok(KernelBtf { btf, structs })
}

/// Reads every offset the exact match needs.
fn kernel_offsets(btf: &KernelBtf) -> Result<KernelOffsets, BtfError> {
    let m = |strukt, path: &[&'static str], shape| member(btf, strukt, path, shape);
    use Shape::{Int, Pointer};
    Ok(KernelOffsets {
        task_files: m("task_struct", &["files"], Pointer)?,
        files_fdt: m("files_struct", &["fdt"], Pointer)?,
        fdtable_max_fds: m("fdtable", &["max_fds"], Int(4))?,
        fdtable_fd: m("fdtable", &["fd"], Pointer)?,
        file_path_mnt: m("file", &["f_path", "mnt"], Pointer)?,
        file_path_dentry: m("file", &["f_path", "dentry"], Pointer)?,
        dentry_parent: m("dentry", &["d_parent"], Pointer)?,
        dentry_name: m("dentry", &["d_name", "name"], Pointer)?,
        dentry_inode: m("dentry", &["d_inode"], Pointer)?,
        dentry_sb: m("dentry", &["d_sb"], Pointer)?,
        dentry_hash_pprev: m("dentry", &["d_hash", "pprev"], Pointer)?,
        inode_ino: m("inode", &["i_ino"], Int(8))?,
        super_block_dev: m("super_block", &["s_dev"], Int(4))?,
        vfsmount_root: m("vfsmount", &["mnt_root"], Pointer)?,
        mount_mnt: m("mount", &["mnt"], Shape::Struct("vfsmount"))?,
        mount_parent: m("mount", &["mnt_parent"], Pointer)?,
        mount_mountpoint: m("mount", &["mnt_mountpoint"], Pointer)?,
        task_fs: m("task_struct", &["fs"], Pointer)?,
        fs_root: m("fs_struct", &["root"], Shape::Struct("path"))?,
        fs_pwd: m("fs_struct", &["pwd"], Shape::Struct("path"))?,
        path_mnt: m("path", &["mnt"], Pointer)?,
        path_dentry: m("path", &["dentry"], Pointer)?,
        file_mode: m("file", &["f_mode"], Int(4))?,
        task_real_parent: m("task_struct", &["real_parent"], Pointer)?,
        task_tgid: m("task_struct", &["tgid"], Int(4))?,
        task_cred: m("task_struct", &["cred"], Pointer)?,
        cred_euid: m("cred", &["euid", "val"], Int(4))?,
        cred_egid: m("cred", &["egid", "val"], Int(4))?,
        // Only with CONFIG_AUDIT; 0 (never this member's offset) without.
        task_loginuid: match m("task_struct", &["loginuid", "val"], Int(4)) {
            Err(BtfError::NoMember { .. }) => 0,
            r => r?,
        },
        task_nsproxy: m("task_struct", &["nsproxy"], Pointer)?,
        nsproxy_mnt_ns: m("nsproxy", &["mnt_ns"], Pointer)?,
        mnt_namespace_inum: m("mnt_namespace", &["ns", "inum"], Int(4))?,
        task_mm: m("task_struct", &["mm"], Pointer)?,
        mm_arg_start: m("mm_struct", &["arg_start"], Int(8))?,
        mm_arg_end: m("mm_struct", &["arg_end"], Int(8))?,
        mm_exe_file: m("mm_struct", &["exe_file"], Pointer)?,
        task_group_leader: m("task_struct", &["group_leader"], Pointer)?,
        task_start_boottime: m("task_struct", &["start_boottime"], Int(8))?,
        task_self_exec_id: m("task_struct", &["self_exec_id"], Int(8))?,
        // x86-64's; another architecture's names are not there: 0, and
        // every syscall keeps its enter program.
        pt_regs_args: ["di", "si", "dx", "r10", "r8", "r9"]
            .map(|reg| m("pt_regs", &[reg], Int(8)))
            .into_iter()
            .collect::<Result<Vec<u32>, _>>()
            .ok()
            .and_then(|regs| regs.try_into().ok())
            .unwrap_or_default(),
        super_block_magic: m("super_block", &["s_magic"], Int(8))?,
        // Only with overlayfs built in; 0 (never a real distance) without.
        ovl_inode_upper: match (
            m("ovl_inode", &["__upperdentry"], Pointer),
            m("ovl_inode", &["vfs_inode"], Shape::Struct("inode")),
        ) {
            (Ok(upper), Ok(inode)) if upper > inode => upper - inode,
            (Err(BtfError::NoStruct(_)), _) => 0,
            (Err(e), _) | (_, Err(e)) => return Err(e),
            _ => 0,
        },
    })
}

/// The io_uring request's offsets, when io_uring operations can be
/// followed: `None` when the kernel has no io_uring tracepoints (their
/// offsets in `offsets` are 0), an error when it has them but BTF lacks
/// the request's structs.
pub fn io_uring(
    btf: &KernelBtf,
    offsets: &TracepointOffsets,
) -> Result<Option<IoUringOffsets>, BtfError> {
    if offsets.io_submit_req == 0 {
        return Ok(None);
    }
    io_offsets(btf).map(Some)
}

/// Reads the offsets of the io_uring request's members the io_uring
/// programs read.
fn io_offsets(btf: &KernelBtf) -> Result<IoUringOffsets, BtfError> {
    let m = |strukt, path: &[&'static str], shape| member(btf, strukt, path, shape);
    use Shape::{Int, Pointer};
    Ok(IoUringOffsets {
        kiocb_file: m("io_kiocb", &["file"], Pointer)?,
        kiocb_fd: m("io_kiocb", &["cqe", "fd"], Int(4))?,
        open_dfd: m("io_open", &["dfd"], Int(4))?,
        open_file_slot: m("io_open", &["file_slot"], Int(4))?,
        open_filename: m("io_open", &["filename"], Pointer)?,
        open_flags: m("io_open", &["how", "flags"], Int(8))?,
        rename_old_dfd: m("io_rename", &["old_dfd"], Int(4))?,
        rename_new_dfd: m("io_rename", &["new_dfd"], Int(4))?,
        rename_oldpath: m("io_rename", &["oldpath"], Pointer)?,
        rename_newpath: m("io_rename", &["newpath"], Pointer)?,
        rename_flags: m("io_rename", &["flags"], Int(4))?,
        unlink_dfd: m("io_unlink", &["dfd"], Int(4))?,
        unlink_flags: m("io_unlink", &["flags"], Int(4))?,
        unlink_filename: m("io_unlink", &["filename"], Pointer)?,
        mkdir_dfd: m("io_mkdir", &["dfd"], Int(4))?,
        mkdir_filename: m("io_mkdir", &["filename"], Pointer)?,
        link_old_dfd: m("io_link", &["old_dfd"], Int(4))?,
        link_new_dfd: m("io_link", &["new_dfd"], Int(4))?,
        link_oldpath: m("io_link", &["oldpath"], Pointer)?,
        link_newpath: m("io_link", &["newpath"], Pointer)?,
        link_flags: m("io_link", &["flags"], Int(4))?,
        close_fd: m("io_close", &["fd"], Int(4))?,
        close_file_slot: m("io_close", &["file_slot"], Int(4))?,
        filename_name: m("filename", &["name"], Pointer)?,
    })
}

/// The byte offset of `strukt.path[0].path[1]…`, looking through
/// anonymous struct and union members, and checking the last member's
/// shape.
fn member(
    btf: &KernelBtf,
    strukt: &'static str,
    path: &[&'static str],
    shape: Shape,
) -> Result<u32, BtfError> {
    let mut ty = btf.strukt(strukt)?;
    let mut offset = 0;
    for &name in path {
        let (bits, member_ty) = find_member(btf, &ty, name)?.ok_or(BtfError::NoMember {
            strukt,
            member: name,
        })?;
        offset += bits / 8;
        ty = member_ty;
    }
    let member = path.last().copied().unwrap_or_default();
    let found = strip(btf, ty)?;
    let ok = match (shape, &found) {
        (Shape::Pointer, Type::Ptr(_)) => true,
        (Shape::Int(n), Type::Int(i)) => i.size() == n,
        (Shape::Struct(want), Type::Struct(s)) => btf.resolve_name(s).is_ok_and(|n| n == want),
        _ => false,
    };
    if !ok {
        return Err(BtfError::Shape {
            strukt,
            member,
            found: found.name().to_string(),
            expected: shape.describe(),
        });
    }
    Ok(offset)
}

/// Finds member `name` of struct or union `ty`, descending into anonymous
/// members; returns its bit offset and its type.
fn find_member(btf: &Btf, ty: &Type, name: &str) -> Result<Option<(u32, Type)>, BtfError> {
    let members = match strip(btf, ty.clone())? {
        Type::Struct(s) | Type::Union(s) => s.members,
        _ => return Ok(None),
    };
    for m in members {
        let member_ty = btf.resolve_chained_type(&m).map_err(BtfError::Parse)?;
        let member_name = btf.resolve_name(&m).unwrap_or_default();
        if member_name == name {
            return Ok(Some((m.bit_offset(), member_ty)));
        }
        if member_name.is_empty()
            && let Some((bits, found)) = find_member(btf, &member_ty, name)?
        {
            return Ok(Some((m.bit_offset() + bits, found)));
        }
    }
    Ok(None)
}

/// Looks through typedefs and qualifiers.
fn strip(btf: &Btf, mut ty: Type) -> Result<Type, BtfError> {
    // A bounded loop: BTF chains of qualifiers are short, a cycle would be
    // malformed BTF.
    for _ in 0..32 {
        match &ty {
            Type::Typedef(_)
            | Type::Volatile(_)
            | Type::Const(_)
            | Type::Restrict(_)
            | Type::TypeTag(_) => {
                let Some(inner) = ty.as_btf_type() else {
                    return Ok(ty);
                };
                ty = btf.resolve_chained_type(inner).map_err(BtfError::Parse)?;
            }
            _ => return Ok(ty),
        }
    }
    Ok(ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels watcher is tested on have BTF: every offset is found,
    /// including those behind anonymous unions, and they are consistent.
    #[test]
    fn reads_this_kernels_offsets() {
        let (off, _) = kernel().unwrap();
        eprintln!("{off:#?}");
        assert_ne!(off.dentry_parent, off.dentry_inode);
        assert_eq!(off.file_path_dentry, off.file_path_mnt + 8);
        assert!(off.mount_mnt > 0 && off.mount_parent > 0);
    }

    /// Each operation's data lies at the start of the request, after the
    /// file it works on; the names are the first member of `filename`.
    #[test]
    fn reads_this_kernels_io_uring_offsets() {
        let off = io_offsets(&vmlinux().unwrap()).unwrap();
        eprintln!("{off:#?}");
        assert_eq!(off.kiocb_file, 0);
        assert_eq!(off.filename_name, 0);
        assert_eq!((off.open_dfd, off.unlink_dfd, off.mkdir_dfd), (8, 8, 8));
        assert_eq!(off.rename_new_dfd, off.rename_old_dfd + 4);
        assert!(off.kiocb_fd > off.kiocb_file);
    }
}
