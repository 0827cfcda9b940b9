//! tracefs: making sure it is mounted, and reading where tracepoint
//! records keep what the programs read, from their `format` files.

use std::{
    ffi::CString,
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use watcher_common::SYSCALL_RECORD_LEN;

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// The process tracepoints, as (category, name); their programs are named
/// after them.
pub const PROCESS_TRACEPOINTS: [(&str, &str); 2] = [
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exit"),
];

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
    Mount(#[source] io::Error),
    #[error("tracefs is mounted at {TRACEFS} but cannot be read: {0}")]
    Unreadable(String),
    #[error("cannot read tracepoint format {}: {source}", path.display())]
    ReadFormat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tracepoint format {} has no field `{field}`", path.display())]
    MissingField { path: PathBuf, field: &'static str },
    #[error("tracepoint format {}: field `{field}` is {size} bytes, expected {expected}", path.display())]
    FieldSize {
        path: PathBuf,
        field: &'static str,
        size: u32,
        expected: u32,
    },
    #[error("the syscall tracepoints disagree on the offset of `{field}` ({0} and {1})", .offsets.0, .offsets.1)]
    Mismatch {
        field: &'static str,
        offsets: (u32, u32),
    },
    #[error("tracepoint format {}: field `{field}` is not an 8-byte argument in the first {SYSCALL_RECORD_LEN} bytes (offset {offset})", path.display())]
    Argument {
        path: PathBuf,
        field: &'static str,
        offset: u32,
    },
}

/// Whether tracefs is mounted where aya looks for it, and readable.
pub fn is_mounted() -> bool {
    Path::new(TRACEFS).join("events").is_dir()
}

/// Whether this process finds tracefs where aya looks for it.
pub enum State {
    /// Mounted and readable.
    Readable,
    /// Mounted (the mount table says so), but this process is not root and
    /// cannot read it: why, as words for a message.
    Unreadable(String),
    NotMounted,
}

/// Whether tracefs is there for this process. Its directory is root's only
/// (mode 0700): to anyone else it looks empty whether it is mounted or
/// not, so for them the mount table decides. For root, unreadable is not
/// mounted (a tracefs hidden under a later mount is listed too), as it
/// has always been for [`ensure_mounted`].
pub fn state() -> State {
    if is_mounted() {
        return State::Readable;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return State::NotMounted;
    }
    let listed = fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines().any(|l| {
            // `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS... - FSTYPE ...`
            l.split_once(" - ").is_some_and(|(mount, fs)| {
                mount.split(' ').nth(4) == Some(TRACEFS) && fs.starts_with("tracefs ")
            })
        })
    });
    if !listed {
        return State::NotMounted;
    }
    let mode = fs::metadata(TRACEFS)
        .map(|m| format!(" (its mode is {:04o})", m.permissions().mode() & 0o7777))
        .unwrap_or_default();
    State::Unreadable(format!("not root{mode}"))
}

/// Mounts tracefs at [`TRACEFS`] unless it is there already. Returns
/// whether it mounted it.
pub fn ensure_mounted() -> Result<bool, TracefsError> {
    match state() {
        State::Readable => return Ok(false),
        State::Unreadable(why) => return Err(TracefsError::Unreadable(why)),
        State::NotMounted => {}
    }
    let c = |s: &str| CString::new(s).expect("no NUL in constant");
    let (source, target, fstype) = (c("tracefs"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Mount(io::Error::last_os_error()));
    }
    Ok(true)
}

/// Where a tracepoint's files are.
pub fn tracepoint_dir(category: &str, name: &str) -> PathBuf {
    Path::new(TRACEFS).join("events").join(category).join(name)
}

/// A parsed tracepoint `format` file.
pub struct FormatFile {
    path: PathBuf,
    text: String,
}

impl FormatFile {
    pub fn read(category: &str, name: &str) -> Result<Self, TracefsError> {
        let path = tracepoint_dir(category, name).join("format");
        let text = fs::read_to_string(&path).map_err(|source| TracefsError::ReadFormat {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path, text })
    }

    /// Offset of a field that must be `expected` bytes long (every syscall
    /// argument is stored as 8 bytes on 64-bit kernels).
    pub fn offset(&self, field: &'static str, expected: u32) -> Result<u32, TracefsError> {
        let (offset, size) =
            find_field(&self.text, field).ok_or_else(|| TracefsError::MissingField {
                path: self.path.clone(),
                field,
            })?;
        if size != expected {
            return Err(TracefsError::FieldSize {
                path: self.path.clone(),
                field,
                size,
                expected,
            });
        }
        Ok(offset)
    }
}

impl FormatFile {
    /// Which 8-byte word of the record holds syscall argument `field`
    /// (what the enter program indexes its copy of the record with).
    pub fn argument_slot(&self, field: &'static str) -> Result<u8, TracefsError> {
        let offset = self.offset(field, 8)?;
        if offset % 8 != 0 || offset as usize + 8 > SYSCALL_RECORD_LEN {
            return Err(TracefsError::Argument {
                path: self.path.clone(),
                field,
                offset,
            });
        }
        Ok((offset / 8) as u8)
    }
}

/// Finds `field` in a format file's text and returns its offset and size.
/// Lines look like `\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;`.
fn find_field(text: &str, field: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in line.split(';') {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d);
            } else if let Some(o) = part.strip_prefix("offset:") {
                offset = o.parse().ok();
            } else if let Some(s) = part.strip_prefix("size:") {
                size = s.parse().ok();
            }
        }
        let name = decl?
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()?
            .split('[')
            .next()?;
        (name == field).then_some((offset?, size?))
    })
}

#[cfg(test)]
mod tests {
    use super::find_field;

    const OPENAT: &str = "name: sys_enter_openat
ID: 713
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: \"dfd: 0x%08lx, filename: 0x%08lx\", ((unsigned long)(REC->dfd))
";

    #[test]
    fn finds_fields_by_their_last_word() {
        assert_eq!(find_field(OPENAT, "dfd"), Some((16, 8)));
        assert_eq!(find_field(OPENAT, "filename"), Some((24, 8)));
        assert_eq!(find_field(OPENAT, "flags"), Some((32, 8)));
        assert_eq!(find_field(OPENAT, "__syscall_nr"), Some((8, 4)));
    }

    #[test]
    fn does_not_match_part_of_a_name_or_the_print_format() {
        assert_eq!(find_field(OPENAT, "name"), None);
        assert_eq!(find_field(OPENAT, "file"), None);
        assert_eq!(find_field(OPENAT, "REC->dfd"), None);
    }

    #[test]
    fn handles_pointer_without_space_and_arrays() {
        let text = "\tfield:struct open_how *how;\toffset:32;\tsize:8;\tsigned:0;\n\
                    \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;";
        assert_eq!(find_field(text, "how"), Some((32, 8)));
        assert_eq!(find_field(text, "comm"), Some((8, 16)));
    }
}
