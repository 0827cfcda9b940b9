//! tracefs: making sure it is mounted, and reading the syscall tracepoints'
//! argument offsets from their `format` files.

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use watcher_common::TracepointOffsets;

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Every tracepoint the programs attach to, as (category, name); each
/// program is named after its tracepoint.
pub const TRACEPOINTS: [(&str, &str); 10] = [
    ("syscalls", "sys_enter_openat"),
    ("syscalls", "sys_exit_openat"),
    ("syscalls", "sys_enter_openat2"),
    ("syscalls", "sys_exit_openat2"),
    ("syscalls", "sys_enter_open"),
    ("syscalls", "sys_exit_open"),
    ("syscalls", "sys_enter_creat"),
    ("syscalls", "sys_exit_creat"),
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exit"),
];

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
    Mount(#[source] io::Error),
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
    #[error("the sys_exit tracepoints disagree on the offset of `ret` ({0} and {1})")]
    ExitRetMismatch(u32, u32),
}

/// Whether tracefs is mounted where aya looks for it.
pub fn is_mounted() -> bool {
    Path::new(TRACEFS).join("events").is_dir()
}

/// Mounts tracefs at [`TRACEFS`] unless it is there already. Returns
/// whether it mounted it.
pub fn ensure_mounted() -> Result<bool, TracefsError> {
    if is_mounted() {
        return Ok(false);
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

/// Reads the argument offsets of every tracepoint in [`TRACEPOINTS`].
pub fn read_offsets() -> Result<TracepointOffsets, TracefsError> {
    let syscall = |name| Format::read("syscalls", name);
    let enter_openat = syscall("sys_enter_openat")?;
    let enter_openat2 = syscall("sys_enter_openat2")?;
    let enter_open = syscall("sys_enter_open")?;
    let enter_creat = syscall("sys_enter_creat")?;
    let mut exit_ret = None;
    for name in [
        "sys_exit_openat",
        "sys_exit_openat2",
        "sys_exit_open",
        "sys_exit_creat",
    ] {
        let ret = syscall(name)?.offset("ret", 8)?;
        match exit_ret {
            Some(seen) if seen != ret => return Err(TracefsError::ExitRetMismatch(seen, ret)),
            _ => exit_ret = Some(ret),
        }
    }
    Ok(TracepointOffsets {
        openat_dfd: enter_openat.offset("dfd", 8)?,
        openat_filename: enter_openat.offset("filename", 8)?,
        openat_flags: enter_openat.offset("flags", 8)?,
        openat2_dfd: enter_openat2.offset("dfd", 8)?,
        openat2_filename: enter_openat2.offset("filename", 8)?,
        openat2_how: enter_openat2.offset("how", 8)?,
        open_filename: enter_open.offset("filename", 8)?,
        open_flags: enter_open.offset("flags", 8)?,
        creat_pathname: enter_creat.offset("pathname", 8)?,
        exit_ret: exit_ret.unwrap_or_default(),
        fork_child_pid: Format::read("sched", "sched_process_fork")?.offset("child_pid", 4)?,
    })
}

/// A parsed tracepoint `format` file.
struct Format {
    path: PathBuf,
    text: String,
}

impl Format {
    fn read(category: &str, name: &str) -> Result<Self, TracefsError> {
        let path = tracepoint_dir(category, name).join("format");
        let text = fs::read_to_string(&path).map_err(|source| TracefsError::ReadFormat {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path, text })
    }

    /// Offset of a field that must be `expected` bytes long (every syscall
    /// argument is stored as 8 bytes on 64-bit kernels).
    fn offset(&self, field: &'static str, expected: u32) -> Result<u32, TracefsError> {
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
