//! The syscalls events come from, by the id the kernel gives them: the
//! index in [`SYSCALL_NAMES`], the one table of their names, then the
//! io_uring operations of [`IO_URING_OPS`].

use std::fmt;

use watcher_common::{IO_URING_OPS, SYSCALL_NAMES, io_op};

/// A traced syscall (or the pseudo-syscall `exit`, or an io_uring
/// operation), by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Syscall(u32);

impl Syscall {
    pub const OPENAT: Self = Self::named("openat");
    pub const OPENAT2: Self = Self::named("openat2");
    pub const OPEN: Self = Self::named("open");
    pub const CREAT: Self = Self::named("creat");
    pub const OPEN_BY_HANDLE_AT: Self = Self::named("open_by_handle_at");
    pub const RENAMEAT2: Self = Self::named("renameat2");

    /// The syscall called `name`; a name not in [`SYSCALL_NAMES`] does not
    /// compile where this is a constant.
    pub const fn named(name: &str) -> Self {
        let mut id = 0;
        while id < SYSCALL_NAMES.len() {
            if eq(SYSCALL_NAMES[id].as_bytes(), name.as_bytes()) {
                return Self(id as u32);
            }
            id += 1;
        }
        panic!("not in SYSCALL_NAMES")
    }

    /// The syscall of the kernel's id, if there is one.
    pub fn from_id(id: u32) -> Option<Self> {
        ((id as usize) < SYSCALL_NAMES.len() + IO_URING_OPS.len()).then_some(Self(id))
    }

    /// The io_uring operation `IORING_OP_*` `opcode`, if watcher follows
    /// it.
    pub fn io_uring(opcode: u8) -> Option<Self> {
        let index = IO_URING_OPS.iter().position(|&(op, _)| op == opcode)?;
        Some(Self((SYSCALL_NAMES.len() + index) as u32))
    }

    /// Its `IORING_OP_*` value, for an io_uring operation.
    fn io_op(self) -> Option<u8> {
        let index = (self.0 as usize).checked_sub(SYSCALL_NAMES.len())?;
        IO_URING_OPS.get(index).map(|&(op, _)| op)
    }

    /// Every syscall but the pseudo-syscall `exit`: those with tracepoints.
    pub fn traced() -> impl Iterator<Item = Self> {
        (0..SYSCALL_NAMES.len() as u32 - 1).map(Self)
    }

    pub fn id(self) -> u32 {
        self.0
    }

    pub fn name(self) -> &'static str {
        match (self.0 as usize).checked_sub(SYSCALL_NAMES.len()) {
            Some(index) => IO_URING_OPS[index].1,
            None => SYSCALL_NAMES[self.0 as usize],
        }
    }

    /// One of the opens, whose flags are open flags and whose return value
    /// is the new fd.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::OPENAT | Self::OPENAT2 | Self::OPEN | Self::CREAT | Self::OPEN_BY_HANDLE_AT
        ) || matches!(self.io_op(), Some(io_op::OPENAT | io_op::OPENAT2))
    }

    /// The flags argument of the syscall by name, `|`-separated, with unknown
    /// bits in octal (opens) or hex; empty when there are none.
    pub fn flag_names(self, flags: u64) -> String {
        const RENAME: &[(u64, &str)] = &[
            (libc::RENAME_NOREPLACE as u64, "RENAME_NOREPLACE"),
            (libc::RENAME_EXCHANGE as u64, "RENAME_EXCHANGE"),
            (libc::RENAME_WHITEOUT as u64, "RENAME_WHITEOUT"),
        ];
        const AT: &[(u64, &str)] = &[
            (libc::AT_SYMLINK_NOFOLLOW as u64, "AT_SYMLINK_NOFOLLOW"),
            (libc::AT_REMOVEDIR as u64, "AT_REMOVEDIR"),
            (libc::AT_SYMLINK_FOLLOW as u64, "AT_SYMLINK_FOLLOW"),
            (libc::AT_EMPTY_PATH as u64, "AT_EMPTY_PATH"),
        ];
        if self.is_open() {
            return open_flag_names(flags);
        }
        let renames = self == Self::RENAMEAT2 || self.io_op() == Some(io_op::RENAMEAT);
        let named = if renames { RENAME } else { AT };
        let mut names = String::new();
        let mut add = |name: &str| {
            if !names.is_empty() {
                names.push('|');
            }
            names.push_str(name);
        };
        let mut rest = flags;
        for &(bits, name) in named {
            if rest & bits == bits {
                add(name);
                rest &= !bits;
            }
        }
        if rest != 0 {
            add(&format!("{rest:#x}"));
        }
        names
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The kernel's `O_LARGEFILE`, which it adds to the flags of io_uring's
/// opens on 64-bit kernels (libc's is 0 on 64-bit targets, where it is
/// never passed).
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const KERNEL_O_LARGEFILE: i32 = 0o400000;
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
const KERNEL_O_LARGEFILE: i32 = 0o100000;

/// Open flags by name, `|`-separated, with unknown bits in octal.
fn open_flag_names(flags: u64) -> String {
    const NAMED: &[(i32, &str)] = &[
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_NOCTTY, "O_NOCTTY"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_SYNC, "O_SYNC"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (KERNEL_O_LARGEFILE, "O_LARGEFILE"),
        (libc::O_TMPFILE, "O_TMPFILE"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
    ];
    let mut names = String::with_capacity(64);
    names.push_str(match flags & libc::O_ACCMODE as u64 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    let mut rest = flags & !(libc::O_ACCMODE as u64);
    for &(bits, name) in NAMED {
        let bits = bits as u64;
        // Multi-bit flags (O_SYNC, O_TMPFILE) need all their bits.
        if rest & bits == bits && bits != 0 {
            names.push('|');
            names.push_str(name);
            rest &= !bits;
        }
    }
    if rest != 0 {
        names.push_str(&format!("|{rest:#o}"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_operations_have_their_syscalls_flags() {
        let openat = Syscall::io_uring(io_op::OPENAT).unwrap();
        assert_eq!(openat.name(), "io_uring:openat");
        assert_eq!(
            openat.flag_names(0o1 | KERNEL_O_LARGEFILE as u64),
            "O_WRONLY|O_LARGEFILE"
        );
        let rename = Syscall::io_uring(io_op::RENAMEAT).unwrap();
        assert_eq!(rename.flag_names(1), "RENAME_NOREPLACE");
        assert_eq!(Syscall::io_uring(0), None);
        assert!(Syscall::from_id(rename.id()).is_some());
    }

    #[test]
    fn flags_by_name() {
        assert_eq!(
            Syscall::named("openat").flag_names(0o1101),
            "O_WRONLY|O_CREAT|O_TRUNC"
        );
        assert_eq!(
            Syscall::named("open").flag_names((libc::O_RDWR | libc::O_SYNC) as u64),
            "O_RDWR|O_SYNC"
        );
        assert_eq!(
            Syscall::named("creat").flag_names(0o2 | 1 << 40),
            "O_RDWR|0o20000000000000"
        );
        assert_eq!(Syscall::named("renameat2").flag_names(2), "RENAME_EXCHANGE");
        assert_eq!(
            Syscall::named("unlinkat").flag_names(0x200 | 1 << 20),
            "AT_REMOVEDIR|0x100000"
        );
        assert_eq!(Syscall::named("rename").flag_names(0), "");
    }
}
