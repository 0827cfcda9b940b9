//! Test helper: opens PATH for writing at its end (creating it; not
//! O_APPEND, which splice and copy_file_range refuse; `--tmpfile DIR`
//! instead opens an unnamed O_TMPFILE file in DIR), prints `open`,
//! waits for a line on stdin (so that a test can start watcher after the
//! open), then writes to that descriptor as the operations after PATH
//! say, and prints `done`. Each operation writes one byte per call:
//!
//! `write N`, `pwrite64 N`, `writev N`, `pwritev N`, `pwritev2 N`,
//! `sendfile N` (from a file of its own), `copy_file_range N`, `splice N`
//! (from a pipe), `fallocate N` (one more byte each), `fork N` (a child
//! writes N times through the inherited descriptor and exits without
//! closing it), `dup` (later writes go through a duplicate of the
//! descriptor), `close`, `keep` (exit without closing), `unlink` (removes
//! PATH, the descriptor still open), and `pause` (prints `paused` and
//! waits for a line on stdin).

use std::{
    ffi::{CString, OsString},
    io::{self, BufRead as _, Write as _},
    os::unix::ffi::OsStringExt,
};

/// Fails the helper with the OS error of a call that returned `ret`.
fn check(what: &str, ret: libc::c_long) {
    if ret < 0 {
        eprintln!("writer: {what}: {}", io::Error::last_os_error());
        std::process::exit(1);
    }
}

/// One byte through `fd` with the syscall `how`; `source` is a file of at
/// least a byte, `pipe` a pipe, for the calls that copy.
fn write_once(how: &str, fd: libc::c_int, source: libc::c_int, pipe: [libc::c_int; 2]) {
    let byte = b"x";
    let iov = libc::iovec {
        iov_base: byte.as_ptr().cast_mut().cast(),
        iov_len: 1,
    };
    // SAFETY: plain syscalls on this process's descriptors, with valid
    // buffers of the lengths given.
    let ret = unsafe {
        match how {
            "write" => libc::write(fd, byte.as_ptr().cast(), 1) as libc::c_long,
            "pwrite64" => {
                let end = libc::lseek(fd, 0, libc::SEEK_END);
                libc::pwrite(fd, byte.as_ptr().cast(), 1, end) as libc::c_long
            }
            "writev" => libc::writev(fd, &iov, 1) as libc::c_long,
            "pwritev" => {
                let end = libc::lseek(fd, 0, libc::SEEK_END);
                libc::pwritev(fd, &iov, 1, end) as libc::c_long
            }
            "pwritev2" => libc::pwritev2(fd, &iov, 1, -1, 0) as libc::c_long,
            "sendfile" => {
                let mut offset: libc::off_t = 0;
                libc::sendfile(fd, source, &mut offset, 1) as libc::c_long
            }
            "copy_file_range" => {
                let mut offset: libc::loff_t = 0;
                libc::syscall(
                    libc::SYS_copy_file_range,
                    source,
                    &mut offset,
                    fd,
                    std::ptr::null_mut::<libc::loff_t>(),
                    1usize,
                    0u32,
                )
            }
            "splice" => {
                if libc::write(pipe[1], byte.as_ptr().cast(), 1) != 1 {
                    -1
                } else {
                    libc::splice(
                        pipe[0],
                        std::ptr::null_mut(),
                        fd,
                        std::ptr::null_mut(),
                        1,
                        0,
                    ) as libc::c_long
                }
            }
            "fallocate" => {
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstat(fd, &mut st);
                libc::fallocate(fd, 0, st.st_size, 1).into()
            }
            other => panic!("unknown operation {other:?}"),
        }
    };
    check(how, ret);
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let tmpfile = args.first().is_some_and(|a| a == "--tmpfile");
    let args = if tmpfile { &args[1..] } else { &args[..] };
    let (path, ops) = args
        .split_first()
        .expect("usage: writer [--tmpfile] PATH OPERATION...");
    let path = CString::new(path.clone().into_vec()).expect("no NUL in path");
    let flags = if tmpfile {
        libc::O_WRONLY | libc::O_TMPFILE
    } else {
        libc::O_WRONLY | libc::O_CREAT
    };
    // SAFETY: a valid NUL-terminated path.
    let mut fd = unsafe { libc::open(path.as_ptr(), flags, 0o644) };
    check("open", fd.into());
    // SAFETY: the descriptor just opened.
    check("seek", unsafe { libc::lseek(fd, 0, libc::SEEK_END) });
    // A byte to copy from, for sendfile and copy_file_range: the helper
    // itself.
    // SAFETY: a valid NUL-terminated path.
    let source = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY) };
    check("open source", source.into());
    let mut pipe = [0; 2];
    // SAFETY: room for the two descriptors.
    check("pipe", unsafe { libc::pipe(pipe.as_mut_ptr()) }.into());
    println!("open");
    let _ = io::stdout().flush();
    let _ = io::stdin().lock().read_line(&mut String::new());
    let mut ops = ops.iter().map(|op| op.to_str().expect("ASCII operation"));
    while let Some(op) = ops.next() {
        let mut count = || -> u32 {
            ops.next()
                .and_then(|n| n.parse().ok())
                .expect("a count after the operation")
        };
        match op {
            "dup" => {
                // SAFETY: a descriptor of this process.
                fd = unsafe { libc::dup(fd) };
                check("dup", fd.into());
            }
            // SAFETY: a descriptor of this process, not used after.
            "close" => check("close", unsafe { libc::close(fd) }.into()),
            "keep" => {}
            // SAFETY: a valid NUL-terminated path.
            "unlink" => check("unlink", unsafe { libc::unlink(path.as_ptr()) }.into()),
            "pause" => {
                println!("paused");
                let _ = io::stdout().flush();
                let _ = io::stdin().lock().read_line(&mut String::new());
            }
            "fork" => {
                let n = count();
                // SAFETY: the child only makes syscalls and exits.
                let child = unsafe { libc::fork() };
                check("fork", child.into());
                if child == 0 {
                    for _ in 0..n {
                        write_once("write", fd, source, pipe);
                    }
                    // SAFETY: exits the child at once, its descriptors
                    // still open (the kernel closes them).
                    unsafe { libc::_exit(0) };
                }
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
            how => {
                for _ in 0..count() {
                    write_once(how, fd, source, pipe);
                }
            }
        }
    }
    println!("done");
}
