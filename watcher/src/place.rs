//! The prefix match's user-space half (no BTF): the kernel sends every
//! write-open by a relative name, and this places it from the process's
//! cwd or directory fd, read from /proc, then matches it by prefix. A
//! process that is gone by then cannot be placed.

use std::{fs, os::unix::ffi::OsStrExt, path::PathBuf};

use crate::{event::Event, watch::Watch};

/// Fills in `ev.path` and `ev.watch_id` for a relative name; `false` when
/// it lies under no watch or cannot be placed.
pub fn place(ev: &mut Event, watches: &[Watch]) -> bool {
    let base = if ev.dfd == libc::AT_FDCWD {
        PathBuf::from(format!("/proc/{}/task/{}/cwd", ev.pid, ev.tid))
    } else {
        PathBuf::from(format!("/proc/{}/fd/{}", ev.pid, ev.dfd))
    };
    let Ok(base) = fs::read_link(base) else {
        return false;
    };
    let path = normalize(base.as_os_str().as_bytes(), &ev.name);
    let Some(watch) = watches
        .iter()
        .filter(|w| w.holds(&path))
        .max_by_key(|w| w.root.as_os_str().len())
    else {
        return false;
    };
    ev.path = path;
    ev.watch_id = Some(watch.id);
    ev.relative = false;
    true
}

/// `name` joined to the absolute `base`, with `.` and `..` resolved as
/// written (symlinks are not followed: that is what the prefix match
/// cannot do).
fn normalize(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in base.split(|&b| b == b'/').chain(name.split(|&b| b == b'/')) {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut path = Vec::new();
    for part in parts {
        path.push(b'/');
        path.extend_from_slice(part);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_written() {
        assert_eq!(normalize(b"/srv/media", b"a/./b"), b"/srv/media/a/b");
        assert_eq!(normalize(b"/srv/media", b"../media2/x"), b"/srv/media2/x");
        assert_eq!(normalize(b"/", b"../../x"), b"/x");
        assert_eq!(normalize(b"/a", b".."), b"/");
    }
}
