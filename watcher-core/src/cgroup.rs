//! Cgroup paths and container ids for the cgroup ids the kernel reports.
//! A cgroup v2 id is the inode number of the cgroup's directory in
//! cgroupfs, so the path is found by walking the hierarchy (again only
//! when an id is not known yet).

use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use foldhash::fast::RandomState;

use crate::mountinfo;

/// Deepest directory the walk descends to (systemd and Kubernetes
/// hierarchies are a handful of levels deep).
const MAX_DEPTH: usize = 32;

/// A cgroup as events name it.
#[derive(Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// The path below the hierarchy's root (`/` for the root itself).
    pub path: Vec<u8>,
    /// The container id the path names.
    pub container: Option<String>,
}

pub struct Cgroups {
    /// Where the cgroup v2 hierarchy is mounted, if it is.
    root: Option<PathBuf>,
    known: HashMap<u64, Arc<Cgroup>, RandomState>,
    /// Ids a walk did not find: not looked for again.
    missing: HashSet<u64>,
}

impl Cgroups {
    pub fn read() -> Self {
        Self {
            root: fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|info| cgroup2_root(&info)),
            known: HashMap::default(),
            missing: HashSet::new(),
        }
    }

    /// Cgroup `id`, or `None` when it is gone or there is no cgroup v2.
    pub fn get(&mut self, id: u64) -> Option<Arc<Cgroup>> {
        if !self.known.contains_key(&id) && !self.missing.contains(&id) {
            if let Some(root) = &self.root {
                self.known.clear();
                walk(root, b"", 0, &mut self.known);
            }
            if !self.known.contains_key(&id) {
                self.missing.insert(id);
            }
        }
        self.known.get(&id).cloned()
    }
}

fn walk(dir: &Path, rel: &[u8], depth: usize, known: &mut HashMap<u64, Arc<Cgroup>, RandomState>) {
    let Ok(meta) = fs::metadata(dir) else {
        return;
    };
    let path = if rel.is_empty() {
        b"/".to_vec()
    } else {
        rel.to_vec()
    };
    let container = container_id(&path);
    known.insert(meta.ino(), Arc::new(Cgroup { path, container }));
    if depth >= MAX_DEPTH {
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let rel = [rel, b"/", entry.file_name().as_bytes()].concat();
            walk(&entry.path(), &rel, depth + 1, known);
        }
    }
}

/// The mount point of the cgroup2 file system, from mountinfo.
fn cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo::parse(mountinfo)
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.point)
}

/// The container id a cgroup path names, innermost first: a 64-digit hex
/// component, bare (cgroupfs driver: `/docker/ID`, `/kubepods/…/ID`) or as
/// systemd names scopes (`docker-ID.scope`, `libpod-ID.scope`,
/// `cri-containerd-ID.scope`, `crio-ID.scope`).
fn container_id(path: &[u8]) -> Option<String> {
    const PREFIXES: [&[u8]; 5] = [b"docker-", b"libpod-", b"cri-containerd-", b"crio-", b""];
    path.rsplit(|&b| b == b'/').find_map(|component| {
        let component = component.strip_suffix(b".scope").unwrap_or(component);
        PREFIXES.iter().find_map(|prefix| {
            let id = component.strip_prefix(*prefix)?;
            (id.len() == 64 && id.iter().all(u8::is_ascii_hexdigit))
                .then(|| String::from_utf8_lossy(id).into_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_container_ids() {
        let id = "0123456789abcdef".repeat(4);
        for path in [
            format!("/system.slice/docker-{id}.scope"),
            format!("/docker/{id}"),
            format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope/container"),
            format!("/kubepods/besteffort/pod1234/{id}"),
        ] {
            assert_eq!(container_id(path.as_bytes()), Some(id.clone()), "{path}");
        }
        assert_eq!(container_id(b"/system.slice/ssh.service"), None);
        assert_eq!(container_id(b"/user.slice/docker-abc.scope"), None);
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let info = "30 23 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    35 23 0:31 / /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_root(info),
            Some(PathBuf::from("/sys/fs/cgroup/uni fied"))
        );
        assert_eq!(cgroup2_root("1 0 0:1 / / rw - ext4 /dev/sda rw\n"), None);
    }

    #[test]
    fn knows_this_process_cgroup() {
        let mut cgroups = Cgroups::read();
        if cgroups.root.is_none() {
            return;
        }
        // The root cgroup's directory is inode 1 of cgroupfs.
        let root = cgroups.get(1).unwrap();
        assert_eq!(
            (root.path.as_slice(), &root.container),
            (b"/".as_slice(), &None)
        );
        assert_eq!(cgroups.get(u64::MAX), None);
    }
}
