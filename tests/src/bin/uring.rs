//! Test helper: does file operations through io_uring, one per `OP ARG`
//! pair on the command line, each submitted alone and waited for, and
//! prints `ok` or `err ERRNO` for each on its own line (`err 38` for the
//! first when the kernel has no io_uring, `err 1` when it is disabled).
//!
//! Opens (`openat:FLAGS PATH`, `openat2:FLAGS PATH`, and `direct:FLAGS
//! PATH`, an openat into slot 0 of the ring's registered files) make the
//! file they open the current one; FLAGS are letters as for `opener`: w
//! (O_WRONLY), b (O_RDWR), c (O_CREAT), t (O_TRUNC). On the current file:
//! `write DATA`, `writev DATA`, `fallocate LEN`, `ftruncate LEN` and
//! `close -`.
//!
//! By name, relative to the dirfd of `dirfd PATH` (else the cwd):
//! `unlinkat PATH`, `rmdirat PATH`, `mkdirat PATH`, `symlinkat PATH`
//! (pointing to `target`), and the two-name `renameat NEW` and `linkat
//! NEW`, whose old name is the PATH of the `from PATH` before them.
//!
//! `wait -` reads stdin to its end. Paths are raw bytes.

use std::{
    ffi::{CString, OsString},
    io::{self, Read as _, Write as _},
    os::unix::ffi::OsStringExt,
};

use io_uring::{IoUring, opcode, squeue, types};

/// The file the operations on "the current file" work on.
#[derive(Clone, Copy)]
enum Current {
    None,
    Fd(i32),
    /// A slot of the registered files.
    Direct(u32),
}

fn flags(spec: &str) -> libc::c_int {
    spec.chars().fold(libc::O_CLOEXEC, |acc, c| {
        acc | match c {
            'w' => libc::O_WRONLY,
            'b' => libc::O_RDWR,
            'c' => libc::O_CREAT,
            't' => libc::O_TRUNC,
            other => panic!("unknown flag letter {other:?}"),
        }
    })
}

/// Submits `entry` alone and waits for its result: the result, or
/// -errno.
fn run(ring: &mut IoUring, entry: squeue::Entry) -> i32 {
    // SAFETY: the buffers and names `entry` points to outlive its
    // completion, which is waited for here.
    unsafe { ring.submission().push(&entry) }.expect("the queue has room");
    if let Err(e) = ring.submit_and_wait(1) {
        return -e.raw_os_error().unwrap_or(libc::EIO);
    }
    ring.completion()
        .next()
        .expect("one completion after the wait")
        .result()
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    assert!(args.len().is_multiple_of(2), "usage: uring OP ARG...");
    let mut ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => {
            println!("err {}", e.raw_os_error().unwrap_or(0));
            return;
        }
    };
    ring.submitter()
        .register_files_sparse(1)
        .expect("register a table of one file");
    let mut dirfd = libc::AT_FDCWD;
    let mut from = CString::default();
    let mut current = Current::None;
    for pair in args.chunks(2) {
        let op = pair[0].to_str().expect("operation is ASCII");
        let arg = CString::new(pair[1].clone().into_vec()).expect("no NUL in argument");
        let dir = types::Fd(dirfd);
        let path = arg.as_ptr();
        let data = arg.as_bytes();
        let number = || arg.to_str().ok().and_then(|s| s.parse::<u64>().ok());
        let (kind, spec) = op.split_once(':').unwrap_or((op, ""));
        let result = match (kind, current) {
            ("dirfd", _) => {
                // SAFETY: a valid NUL-terminated path.
                let fd = unsafe { libc::open(path, libc::O_RDONLY | libc::O_DIRECTORY) };
                if fd >= 0 {
                    dirfd = fd;
                }
                if fd < 0 { -libc::ENOENT } else { 0 }
            }
            ("from", _) => {
                from = arg.clone();
                0
            }
            ("openat" | "direct", _) => {
                // A direct descriptor has no close-on-exec flag to take.
                let cloexec = if kind == "direct" { libc::O_CLOEXEC } else { 0 };
                let mut entry = opcode::OpenAt::new(dir, path)
                    .flags(flags(spec) & !cloexec)
                    .mode(0o644);
                if kind == "direct" {
                    entry = entry.file_index(Some(
                        types::DestinationSlot::try_from_slot_target(0).unwrap(),
                    ));
                }
                let fd = run(&mut ring, entry.build());
                if fd >= 0 {
                    current = if kind == "direct" {
                        Current::Direct(0)
                    } else {
                        Current::Fd(fd)
                    };
                }
                fd
            }
            ("openat2", _) => {
                let flags = flags(spec);
                // openat2 refuses a mode without O_CREAT.
                let mode = if flags & libc::O_CREAT != 0 { 0o644 } else { 0 };
                let how = types::OpenHow::new().flags(flags as u64).mode(mode);
                let fd = run(&mut ring, opcode::OpenAt2::new(dir, path, &how).build());
                if fd >= 0 {
                    current = Current::Fd(fd);
                }
                fd
            }
            ("write" | "writev" | "fallocate" | "ftruncate" | "close", Current::None) => {
                panic!("{op} before an open")
            }
            ("write", Current::Fd(fd)) => run(
                &mut ring,
                opcode::Write::new(types::Fd(fd), data.as_ptr(), data.len() as u32)
                    .offset(u64::MAX)
                    .build(),
            ),
            ("write", Current::Direct(slot)) => run(
                &mut ring,
                opcode::Write::new(types::Fixed(slot), data.as_ptr(), data.len() as u32)
                    .offset(u64::MAX)
                    .build(),
            ),
            ("writev", Current::Fd(fd)) => {
                let iov = [libc::iovec {
                    iov_base: data.as_ptr().cast_mut().cast(),
                    iov_len: data.len(),
                }];
                run(
                    &mut ring,
                    opcode::Writev::new(types::Fd(fd), iov.as_ptr(), 1)
                        .offset(u64::MAX)
                        .build(),
                )
            }
            ("fallocate", Current::Fd(fd)) => run(
                &mut ring,
                opcode::Fallocate::new(types::Fd(fd), number().expect("LEN")).build(),
            ),
            ("ftruncate", Current::Fd(fd)) => run(
                &mut ring,
                opcode::Ftruncate::new(types::Fd(fd), number().expect("LEN")).build(),
            ),
            ("close", Current::Fd(fd)) => {
                current = Current::None;
                run(&mut ring, opcode::Close::new(types::Fd(fd)).build())
            }
            ("close", Current::Direct(slot)) => {
                current = Current::None;
                run(&mut ring, opcode::Close::new(types::Fixed(slot)).build())
            }
            ("unlinkat", _) => run(&mut ring, opcode::UnlinkAt::new(dir, path).build()),
            ("rmdirat", _) => run(
                &mut ring,
                opcode::UnlinkAt::new(dir, path)
                    .flags(libc::AT_REMOVEDIR)
                    .build(),
            ),
            ("mkdirat", _) => run(
                &mut ring,
                opcode::MkDirAt::new(dir, path).mode(0o755).build(),
            ),
            ("symlinkat", _) => run(
                &mut ring,
                opcode::SymlinkAt::new(dir, c"target".as_ptr(), path).build(),
            ),
            ("renameat", _) => run(
                &mut ring,
                opcode::RenameAt::new(dir, from.as_ptr(), dir, path).build(),
            ),
            ("linkat", _) => run(
                &mut ring,
                opcode::LinkAt::new(dir, from.as_ptr(), dir, path).build(),
            ),
            ("wait", _) => {
                let _ = io::stdout().flush();
                let _ = io::stdin().read_to_end(&mut Vec::new());
                0
            }
            _ => panic!("unknown operation {op:?}"),
        };
        if result < 0 {
            println!("err {}", -result);
        } else {
            println!("ok");
        }
    }
}
