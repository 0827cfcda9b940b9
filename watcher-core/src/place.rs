//! Events the kernel leaves to user space. In prefix mode (no BTF) it
//! sends every change by a relative name (or a bare fd): this places it
//! from the process's cwd or directory fd, read from /proc (a process that
//! is gone by then cannot be placed). In exact mode it sends names it
//! cannot follow (`..` after going down) with their directory's path: this
//! decides from the joined path. Either way the match is by prefix. Names
//! that go down through directories below a watch the kernel only knew by
//! name are followed here in the filesystem.

use std::{ffi::OsStr, fs, os::unix::ffi::OsStrExt, path::PathBuf};

use crate::{event::Event, path::normalize, watch::Watch};

/// Places `ev`'s relative names and decides its watch when the kernel did
/// not; `false` when it lies under no watch or cannot be placed.
pub fn place(ev: &mut Event, watches: &[Watch]) -> bool {
    if ev.relative {
        // An open without a name (open_by_handle_at): the file is the one
        // the new fd is open on.
        let dfd = match ev.fd {
            Some(fd) if ev.name.is_empty() && ev.syscall.is_open() => fd as i32,
            _ => ev.dfd,
        };
        match from_proc(ev.pid, ev.tid, dfd, &ev.name) {
            Some(path) => ev.path = path,
            None => return false,
        }
        ev.relative = false;
    }
    if let Some(old) = ev.old.as_mut().filter(|old| old.relative) {
        match from_proc(ev.pid, ev.tid, old.dfd, &old.name) {
            Some(path) => old.path = path,
            None => return false,
        }
        old.relative = false;
    }
    decide(ev, watches)
}

/// Follows the directory of each name the kernel could not follow down
/// (`through`) in the filesystem as it is when the event is read, from
/// watcher's root: a symlink on its way leads where it leads. The path is
/// then the directory's real one (the name as written goes to
/// `writer_path`), or stays as it was when the directory is gone (a tree
/// removed meanwhile; a path cut short is left as it is). Decides the
/// watch when the kernel did not; `false` when no side lies under a watch.
pub fn follow(ev: &mut Event, watches: &[Watch]) -> bool {
    if ev.through && !ev.truncated {
        resolve(&mut ev.path, &mut ev.writer_path);
    }
    if let Some(old) = ev.old.as_mut().filter(|old| old.through && !old.truncated) {
        resolve(&mut old.path, &mut old.writer_path);
    }
    decide(ev, watches)
}

/// The watch of an event the kernel left undecided: the innermost that
/// holds its path, or else its old path; `false` when there is none.
fn decide(ev: &mut Event, watches: &[Watch]) -> bool {
    if ev.watch_id.is_none() {
        let innermost = |path: &[u8]| {
            watches
                .iter()
                .filter(|w| w.holds(path))
                .max_by_key(|w| w.root.as_os_str().len())
                .map(|w| w.id)
        };
        ev.watch_id =
            innermost(&ev.path).or_else(|| ev.old.as_ref().and_then(|o| innermost(&o.path)));
        if ev.watch_id.is_none() {
            return false;
        }
    }
    true
}

/// `path` with its directory's symlinks resolved, as written kept in
/// `writer_path` (unless that already holds the writer's own view).
fn resolve(path: &mut Vec<u8>, writer_path: &mut Option<Vec<u8>>) {
    let Some(cut) = path.iter().rposition(|&b| b == b'/') else {
        return;
    };
    let dir = if cut == 0 { &b"/"[..] } else { &path[..cut] };
    let Ok(real) = fs::canonicalize(OsStr::from_bytes(dir)) else {
        return;
    };
    let resolved = normalize(real.as_os_str().as_bytes(), &path[cut + 1..]);
    if resolved != *path {
        let written = std::mem::replace(path, resolved);
        writer_path.get_or_insert(written);
    }
}

/// A name relative to the cwd of thread `tid` (`dfd` AT_FDCWD) or to the
/// directory `dfd` of process `pid` (or, with an empty name, the file
/// `dfd` is open on).
fn from_proc(pid: u32, tid: u32, dfd: i32, name: &[u8]) -> Option<Vec<u8>> {
    let base = if dfd == libc::AT_FDCWD {
        PathBuf::from(format!("/proc/{pid}/task/{tid}/cwd"))
    } else {
        PathBuf::from(format!("/proc/{pid}/fd/{dfd}"))
    };
    let base = fs::read_link(base).ok()?;
    Some(normalize(base.as_os_str().as_bytes(), name))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;
    use crate::syscall::Syscall;

    #[test]
    fn a_nameless_open_is_placed_at_the_file_its_new_fd_is_open_on() {
        let dir = std::env::temp_dir().join(format!("watcher-place-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h");
        let file = fs::File::create(&path).unwrap();
        let pid = std::process::id();
        let mut ev = Event {
            syscall: Syscall::OPEN_BY_HANDLE_AT,
            pid,
            tid: pid,
            name: Vec::new(),
            path: Vec::new(),
            relative: true,
            watch_id: None,
            fd: Some(i64::from(file.as_raw_fd())),
            ..Event::test_write(b"", 0)
        };
        let watch = Watch {
            id: 7,
            root: dir.clone(),
            key: Default::default(),
            named: vec![dir.clone()],
        };
        let placed = place(&mut ev, &[watch]);
        fs::remove_dir_all(&dir).unwrap();
        assert!(placed);
        assert_eq!(ev.path, path.as_os_str().as_bytes());
        assert_eq!(ev.watch_id, Some(7));
    }

    #[test]
    fn names_through_directories_below_a_watch_are_followed_where_they_lead() {
        let tmp = std::env::temp_dir().join(format!("watcher-follow-{}", std::process::id()));
        let (media, other) = (tmp.join("media"), tmp.join("other"));
        fs::create_dir_all(media.join("album")).unwrap();
        fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(&other, media.join("out")).unwrap();
        std::os::unix::fs::symlink(media.join("album"), media.join("in")).unwrap();
        let watch = Watch {
            id: 3,
            root: media.clone(),
            key: Default::default(),
            named: vec![media.clone()],
        };
        let b = |p: &std::path::Path| p.as_os_str().as_bytes().to_vec();
        let through = |path: &[u8]| Event {
            through: true,
            watch_id: None,
            ..Event::test_write(path, 0)
        };
        let follows = |path: &[u8]| {
            let mut ev = through(path);
            follow(&mut ev, std::slice::from_ref(&watch)).then_some((ev.path, ev.writer_path))
        };
        let out = follows(&b(&media.join("out/f")));
        let within = follows(&b(&media.join("in/f")));
        let gone = follows(&b(&media.join("gone/x/f")));
        let mut cut = Event {
            truncated: true,
            ..through(b"in/f")
        };
        let cut_kept = follow(&mut cut, std::slice::from_ref(&watch));
        fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(out, None);
        assert_eq!(
            within,
            Some((b(&media.join("album/f")), Some(b(&media.join("in/f")))))
        );
        assert_eq!(gone, Some((b(&media.join("gone/x/f")), None)));
        // A path cut short is not followed from watcher's cwd.
        assert!(!cut_kept);
        assert_eq!(cut.path, b"in/f");
    }
}
