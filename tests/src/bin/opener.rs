//! Test helper: makes raw open-family syscalls, one per `SYSCALL:FLAGS PATH`
//! pair on the command line, in this one process, and prints `ok` or
//! `err ERRNO` for each on its own line.
//!
//! SYSCALL is openat, openat2, open, creat or handle (open_by_handle_at of
//! the handle name_to_handle_at gives for PATH, then a byte written to
//! it); FLAGS are letters: r (O_RDONLY),
//! w (O_WRONLY), b (O_RDWR), c (O_CREAT), t (O_TRUNC), x (O_EXCL), and k:
//! keep the descriptor open until the process exits. creat takes no flags.
//! Paths are raw bytes, so hostile names pass unchanged.
//!
//! Two more operations set where relative paths start: `chdir PATH`, and
//! `dirfd PATH`, which opens PATH as a directory (read-only) for the
//! `*at` calls after it to use instead of AT_FDCWD.
//!
//! The other `*at` calls, each relative to that dirfd: `unlinkat PATH`,
//! `rmdirat PATH` (unlinkat with AT_REMOVEDIR), `mkdirat PATH`,
//! `mknodat PATH` (a FIFO), `symlinkat PATH` (pointing to `target`),
//! `fchmodat PATH` (mode 0600), `utimensat PATH` and `futimesat PATH`
//! (now), and the two-name
//! `renameat NEW`, `exchange NEW` (renameat2 with RENAME_EXCHANGE) and
//! `linkat NEW`, whose old name is the PATH of the `from PATH` before
//! them.
//!
//! `utime PATH` and `utimes PATH` set its times to now.
//!
//! As a container runtime sets a process up: `unshare -` moves it into a
//! new mount namespace (whose mounts are private), `bind PATH` bind-mounts
//! the PATH of the `from PATH` before it on PATH, and `chroot PATH` makes
//! PATH its root (and cwd).
//!
//! Two more take a PATH they ignore (write `-`): `uring`, which sets up an
//! io_uring instance and keeps it until the process exits, and `wait`,
//! which reads stdin to its end.

use std::{
    ffi::{CString, OsString},
    io,
    os::unix::ffi::OsStringExt,
};

/// `struct file_handle` with room for the largest handle (MAX_HANDLE_SZ).
#[repr(C)]
struct FileHandle {
    bytes: u32,
    kind: i32,
    handle: [u8; 128],
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn flags(spec: &str) -> libc::c_int {
    spec.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => libc::O_RDONLY,
            'w' => libc::O_WRONLY,
            'b' => libc::O_RDWR,
            'c' => libc::O_CREAT,
            't' => libc::O_TRUNC,
            'x' => libc::O_EXCL,
            'k' => 0,
            other => panic!("unknown flag letter {other:?}"),
        }
    })
}

fn open(op: &str, path: &CString, dirfd: libc::c_int) -> libc::c_long {
    let (syscall, spec) = op.split_once(':').unwrap_or((op, ""));
    let f = flags(spec);
    let mode: libc::c_long = 0o644;
    // SAFETY: plain syscalls with a valid NUL-terminated path.
    unsafe {
        match syscall {
            "openat" => libc::syscall(libc::SYS_openat, dirfd, path.as_ptr(), f, mode),
            "open" => libc::syscall(libc::SYS_open, path.as_ptr(), f, mode),
            "creat" => libc::syscall(libc::SYS_creat, path.as_ptr(), mode),
            "openat2" => {
                let how = OpenHow {
                    flags: f as u64,
                    mode: if f & libc::O_CREAT != 0 { 0o644 } else { 0 },
                    resolve: 0,
                };
                libc::syscall(
                    libc::SYS_openat2,
                    dirfd,
                    path.as_ptr(),
                    &how,
                    size_of::<OpenHow>(),
                )
            }
            "handle" => {
                let mut handle = FileHandle {
                    bytes: 128,
                    kind: 0,
                    handle: [0; 128],
                };
                let mut mount_id = 0;
                if libc::syscall(
                    libc::SYS_name_to_handle_at,
                    dirfd,
                    path.as_ptr(),
                    &mut handle,
                    &mut mount_id,
                    0,
                ) < 0
                {
                    return -1;
                }
                // Any descriptor on the file's filesystem will do (not O_PATH).
                let mount_fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                let fd = libc::syscall(libc::SYS_open_by_handle_at, mount_fd, &mut handle, f);
                libc::close(mount_fd);
                if fd >= 0 && libc::write(fd as libc::c_int, c"x".as_ptr().cast(), 1) < 0 {
                    return -1;
                }
                fd
            }
            other => panic!("unknown syscall {other:?}"),
        }
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Descriptors up to the hard limit, for the `k` opens that keep many.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out pointer, then the same struct back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    assert!(
        args.len().is_multiple_of(2),
        "usage: opener SYSCALL:FLAGS PATH..."
    );
    let mut dirfd = libc::AT_FDCWD;
    let mut from = CString::default();
    for pair in args.chunks(2) {
        let op = pair[0].to_str().expect("operation is ASCII");
        let path = CString::new(pair[1].clone().into_vec()).expect("no NUL in path");
        // SAFETY: plain syscalls with a valid NUL-terminated path; the fds
        // are this process's own.
        let result = unsafe {
            match op {
                "chdir" => libc::chdir(path.as_ptr()).into(),
                "dirfd" => {
                    let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                    if fd >= 0 {
                        dirfd = fd;
                    }
                    fd.into()
                }
                "from" => {
                    from = path.clone();
                    0
                }
                "unlinkat" => libc::unlinkat(dirfd, path.as_ptr(), 0).into(),
                "rmdirat" => libc::unlinkat(dirfd, path.as_ptr(), libc::AT_REMOVEDIR).into(),
                "mkdirat" => libc::mkdirat(dirfd, path.as_ptr(), 0o755).into(),
                "mknodat" => libc::mknodat(dirfd, path.as_ptr(), libc::S_IFIFO | 0o644, 0).into(),
                "symlinkat" => libc::symlinkat(c"target".as_ptr(), dirfd, path.as_ptr()).into(),
                "fchmodat" => libc::fchmodat(dirfd, path.as_ptr(), 0o600, 0).into(),
                "utimensat" => libc::utimensat(dirfd, path.as_ptr(), std::ptr::null(), 0).into(),
                "futimesat" => libc::syscall(
                    libc::SYS_futimesat,
                    dirfd,
                    path.as_ptr(),
                    std::ptr::null::<libc::timeval>(),
                ),
                "utime" => libc::syscall(
                    libc::SYS_utime,
                    path.as_ptr(),
                    std::ptr::null::<libc::utimbuf>(),
                ),
                "utimes" => libc::syscall(
                    libc::SYS_utimes,
                    path.as_ptr(),
                    std::ptr::null::<libc::timeval>(),
                ),
                "renameat" => libc::renameat(dirfd, from.as_ptr(), dirfd, path.as_ptr()).into(),
                "exchange" => libc::syscall(
                    libc::SYS_renameat2,
                    dirfd,
                    from.as_ptr(),
                    dirfd,
                    path.as_ptr(),
                    libc::RENAME_EXCHANGE,
                ),
                "linkat" => libc::linkat(dirfd, from.as_ptr(), dirfd, path.as_ptr(), 0).into(),
                "unshare" => {
                    if libc::unshare(libc::CLONE_NEWNS) < 0 {
                        -1
                    } else {
                        let flags = libc::MS_REC | libc::MS_PRIVATE;
                        let none = std::ptr::null();
                        libc::mount(none, c"/".as_ptr(), none, flags, none.cast()).into()
                    }
                }
                "bind" => {
                    let none = std::ptr::null();
                    let flags = libc::MS_BIND;
                    libc::mount(from.as_ptr(), path.as_ptr(), none, flags, none.cast()).into()
                }
                "chroot" => {
                    if libc::chroot(path.as_ptr()) < 0 {
                        -1
                    } else {
                        libc::chdir(c"/".as_ptr()).into()
                    }
                }
                "uring" => {
                    // struct io_uring_params: 120 bytes, zeroed for the defaults.
                    let mut params = [0u8; 120];
                    libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr())
                }
                "wait" => {
                    use std::io::{Read as _, Write as _};
                    let _ = io::stdout().flush();
                    let _ = io::stdin().read_to_end(&mut Vec::new());
                    0
                }
                _ => {
                    let fd = open(op, &path, dirfd);
                    let keep = op.split_once(':').is_some_and(|(_, f)| f.contains('k'));
                    if fd >= 0 && !keep {
                        libc::close(fd as libc::c_int);
                    }
                    fd
                }
            }
        };
        if result < 0 {
            println!(
                "err {}",
                io::Error::last_os_error().raw_os_error().unwrap_or(0)
            );
        } else {
            println!("ok");
        }
    }
}
