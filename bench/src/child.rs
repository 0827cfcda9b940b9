//! What the benchmark runs in processes of their own (`watcher-bench
//! child ...`, hidden): the syscall loops and the writers. Kernel
//! audit only follows processes started after its rules, and the tools
//! watch other processes, so these are never run inside the benchmark's
//! own process.

use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::PathBuf, time::Instant};

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum Child {
    /// Prints the mean time of one operation, in nanoseconds.
    Ops {
        op: Op,
        iterations: u64,
        /// The file the opens use.
        path: PathBuf,
    },
    /// Creates FILES new files in DIR and writes a byte to each.
    Write { dir: PathBuf, files: u64 },
}

/// The operations whose cost is measured.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// `getppid`: a syscall no tool watches.
    Getppid,
    /// open for writing (O_WRONLY|O_CREAT) and close.
    OpenWrite,
    /// open read-only and close.
    OpenRead,
    /// `write` of one byte to a descriptor opened once.
    Write,
}

pub fn child(what: Child) -> anyhow::Result<()> {
    match what {
        Child::Ops {
            op,
            iterations,
            path,
        } => {
            let path = CString::new(path.as_os_str().as_bytes())?;
            // A tenth as warm-up (caches, the tools' first-seen work).
            ops(op, iterations / 10 + 1, &path)?;
            let start = Instant::now();
            ops(op, iterations, &path)?;
            let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
            println!("{ns:.1}");
            Ok(())
        }
        Child::Write { dir, files } => write(&dir, files),
    }
}

fn ops(op: Op, iterations: u64, path: &CString) -> anyhow::Result<()> {
    let flags = match op {
        Op::Getppid => {
            for _ in 0..iterations {
                // SAFETY: no preconditions.
                std::hint::black_box(unsafe { libc::getppid() });
            }
            return Ok(());
        }
        Op::OpenWrite | Op::Write => libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
        Op::OpenRead => libc::O_RDONLY | libc::O_CLOEXEC,
    };
    let open = || {
        // SAFETY: path is NUL-terminated; the caller closes the descriptor.
        let fd = unsafe { libc::open(path.as_ptr(), flags, 0o644) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("opening {}", path.to_string_lossy()));
        }
        Ok(fd)
    };
    if op == Op::Write {
        let fd = open()?;
        for _ in 0..iterations {
            // SAFETY: one byte from a live buffer to our descriptor.
            if unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) } != 1 {
                bail!("writing: {}", std::io::Error::last_os_error());
            }
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        return Ok(());
    }
    for _ in 0..iterations {
        let fd = open()?;
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Opens `path` for writing, created if need be, with one raw syscall;
/// the descriptor (the caller closes it).
pub fn open_new(path: &std::path::Path) -> anyhow::Result<libc::c_int> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c is NUL-terminated and outlives the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("creating {}", path.display()));
    }
    Ok(fd)
}

fn write(dir: &std::path::Path, files: u64) -> anyhow::Result<()> {
    for i in 0..files {
        let fd = open_new(&dir.join(format!("f{i}")))?;
        // SAFETY: one byte from a live buffer to our descriptor.
        if unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) } != 1 {
            bail!(
                "writing in {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    Ok(())
}
