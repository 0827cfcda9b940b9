//! Whether a process still has a file open for writing, as /proc shows
//! it: what holds a batch of `run` until its files are finished.

use std::{
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
};

/// A descriptor a process opened for writing (or wrote through) under a
/// watch, and the path of its file then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    pub pid: u32,
    pub fd: u32,
    pub path: Vec<u8>,
}

impl Writer {
    /// Whether process `pid` still has the file at `path` open for
    /// writing: through descriptor `fd`, or another it made from it
    /// (`dup2` onto stdout, as a shell's `> FILE` does). False once they
    /// are closed or the process has exited, and when `path` no longer
    /// names that file (renamed or removed meanwhile: it is no longer in
    /// the tree by that name).
    pub fn still_open(&self) -> bool {
        let Ok(named) = fs::metadata(Path::new(std::ffi::OsStr::from_bytes(&self.path))) else {
            return false;
        };
        let file = (named.dev(), named.ino());
        let fds = format!("/proc/{}/fd", self.pid);
        let writes = |fd: &str| {
            fs::metadata(format!("{fds}/{fd}")).is_ok_and(|m| (m.dev(), m.ino()) == file)
                && fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", self.pid))
                    .ok()
                    .and_then(|info| access_mode(&info))
                    .is_some_and(|mode| mode != libc::O_RDONLY as u32)
        };
        if writes(&self.fd.to_string()) {
            return true;
        }
        fs::read_dir(&fds).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_str().is_some_and(writes))
        })
    }
}

/// The access mode (`O_RDONLY`, `O_WRONLY`, `O_RDWR`) of a descriptor,
/// from its `/proc/PID/fdinfo/FD` (`flags:` in octal).
fn access_mode(fdinfo: &str) -> Option<u32> {
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))?
        .trim();
    u32::from_str_radix(flags, 8)
        .ok()
        .map(|f| f & libc::O_ACCMODE as u32)
}

#[cfg(test)]
mod tests {
    use std::{fs::OpenOptions, os::fd::AsRawFd as _};

    use super::*;

    #[test]
    fn open_for_writing_until_closed_and_only_on_the_named_file() {
        let dir = std::env::temp_dir().join(format!("watcher-writers-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (path, other) = (dir.join("a"), dir.join("b"));
        fs::write(&other, b"b").unwrap();
        let writer = |file: &fs::File, path: &Path| Writer {
            pid: std::process::id(),
            fd: file.as_raw_fd() as u32,
            path: path.as_os_str().as_bytes().to_vec(),
        };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let read = fs::File::open(&other).unwrap();
        let open = writer(&written, &path).still_open();
        let elsewhere = writer(&written, &other).still_open();
        let read_only = writer(&read, &other).still_open();
        let fd = written.as_raw_fd() as u32;
        let by_number = || Writer {
            pid: std::process::id(),
            fd,
            path: path.as_os_str().as_bytes().to_vec(),
        };
        // A copy of the descriptor holds the file once the original is
        // closed, as a shell's `> FILE` leaves it.
        let copy = written.try_clone().unwrap();
        drop(written);
        let through_copy = by_number().still_open();
        drop(copy);
        let closed = by_number().still_open();
        fs::remove_dir_all(&dir).unwrap();
        assert!(open);
        assert!(!elsewhere, "another file by that name");
        assert!(!read_only);
        assert!(through_copy);
        assert!(!closed);
        assert_eq!(access_mode("pos:\t0\nflags:\t02100001\n"), Some(1));
    }
}
