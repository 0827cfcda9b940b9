//! The watched directories: checking what the user named and turning each
//! into the kernel-side keys (its identity, and its path for the prefix
//! match).

use std::{
    collections::{HashMap, HashSet},
    ffi::{CString, OsStr},
    fs, io,
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use watcher_common::{
    Edge, EdgeKey, InodeKey, MAX_WATCHES, WATCH_NONE, WATCH_PREFIX_MAX, name_hash,
};

use crate::{escape, mountinfo, path::normalize};

/// One watched directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Its id in the kernel's `WATCHES` map and in events.
    pub id: u32,
    /// Absolute, with symlinks resolved, as it was at start.
    pub root: PathBuf,
    /// The directory's identity as the kernel sees it.
    pub key: InodeKey,
    /// The absolute paths the user named it by (symlinks kept): names
    /// through them are followed down to it too.
    pub named: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{}: no such directory", escape::path(.0))]
    Missing(PathBuf),
    #[error("{}: not a directory", escape::path(.0))]
    NotDirectory(PathBuf),
    #[error("{}: {source}", escape::path(path))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: path is {len} bytes long, watcher can watch paths of at most {max} bytes", escape::path(path), max = WATCH_PREFIX_MAX - 1)]
    TooLong { path: PathBuf, len: usize },
    #[error(
        "{0} directories given, watcher can watch at most {MAX_WATCHES}; watch the directories \
         they have in common instead (each is watched with everything below it), and keep \
         what you want with --include"
    )]
    TooMany(usize),
}

/// The directories the user named, resolved: the watches, and for each
/// directory (in the order given) how it looked, or why it is not watched.
#[derive(Debug)]
pub struct Resolved {
    pub watches: Vec<Watch>,
    pub dirs: Vec<(PathBuf, Result<Stamp, WatchError>)>,
}

impl Resolved {
    /// Refuses the lot for the first directory that did not resolve,
    /// unless `excused` lets it be missing.
    pub fn refuse_missing(mut self, excused: impl Fn(&Path) -> bool) -> Result<Self, WatchError> {
        let refused = self
            .dirs
            .iter()
            .position(|(dir, now)| now.is_err() && !excused(dir));
        if let Some(Err(e)) = refused.map(|i| self.dirs.swap_remove(i).1) {
            return Err(e);
        }
        Ok(self)
    }
}

/// Checks the directories the user named and gives each a watch id.
/// Naming the same directory twice (by any spelling, or through a bind
/// mount) watches it once. `by_prefix`: the prefix match will be used,
/// which limits the length of a path. A directory among `previous` (a
/// reload, or one that was replaced) keeps its id; a new one takes an id
/// no previous watch had, so that events still in flight are not taken
/// for it, while there are. A directory that does not resolve is left out
/// with its reason.
pub fn resolve(
    dirs: &[PathBuf],
    by_prefix: bool,
    previous: &[Watch],
) -> Result<Resolved, WatchError> {
    if dirs.len() > MAX_WATCHES as usize {
        return Err(WatchError::TooMany(dirs.len()));
    }
    let mountinfo = read_mountinfo()?;
    let mut watches: Vec<Watch> = Vec::with_capacity(dirs.len());
    let mut looks = Vec::with_capacity(dirs.len());
    // Sets, not scans of the lists: thousands of directories may be named.
    let mut taken: HashSet<u32> = HashSet::with_capacity(dirs.len());
    let before: HashSet<u32> = previous.iter().map(|w| w.id).collect();
    let kept: HashMap<InodeKey, u32> = previous.iter().map(|w| (w.key, w.id)).collect();
    let mut by_key: HashMap<InodeKey, usize> = HashMap::with_capacity(dirs.len());
    // Ids below it are taken or were used before: where a fresh id is
    // looked for first (a directory kept from before keeps its id).
    let mut fresh = 0;
    for dir in dirs {
        let look = match resolve_one(dir, by_prefix, &mountinfo) {
            Ok(look) => look,
            Err(e) => {
                looks.push((dir.clone(), Err(e)));
                continue;
            }
        };
        let Look {
            root,
            key,
            named,
            stamp,
        } = look;
        looks.push((dir.clone(), Ok(stamp)));
        if let Some(&at) = by_key.get(&key) {
            watches[at].named.push(named);
            continue;
        }
        let id = match kept.get(&key).filter(|id| !taken.contains(id)) {
            Some(&id) => id,
            None => {
                let id = (fresh..MAX_WATCHES)
                    .find(|id| !taken.contains(id) && !before.contains(id))
                    .or_else(|| (0..MAX_WATCHES).find(|id| !taken.contains(id)))
                    .ok_or(WatchError::TooMany(dirs.len()))?;
                fresh = id + 1;
                id
            }
        };
        taken.insert(id);
        by_key.insert(key, watches.len());
        watches.push(Watch {
            id,
            root,
            key,
            named: vec![named],
        });
    }
    Ok(Resolved {
        watches,
        dirs: looks,
    })
}

/// One directory, resolved.
struct Look {
    root: PathBuf,
    key: InodeKey,
    named: PathBuf,
    stamp: Stamp,
}

fn resolve_one(dir: &Path, by_prefix: bool, mountinfo: &str) -> Result<Look, WatchError> {
    let root = fs::canonicalize(dir).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => WatchError::Missing(dir.to_owned()),
        io::ErrorKind::NotADirectory => WatchError::NotDirectory(dir.to_owned()),
        _ => WatchError::Io {
            path: dir.to_owned(),
            source,
        },
    })?;
    let io = |source| WatchError::Io {
        path: dir.to_owned(),
        source,
    };
    let meta = fs::metadata(&root).map_err(io)?;
    if !meta.is_dir() {
        return Err(WatchError::NotDirectory(dir.to_owned()));
    }
    let len = prefix(&root).len();
    if by_prefix && len > WATCH_PREFIX_MAX {
        return Err(WatchError::TooLong { path: root, len });
    }
    let stamp = Stamp::of(&root).map_err(io)?;
    let key = stamp.key(mountinfo).map_err(io)?;
    let named = absolute(dir).map_err(io)?;
    Ok(Look {
        root,
        key,
        named,
        stamp,
    })
}

/// The watch `dir` resolved to.
pub fn find<'a>(watches: &'a [Watch], dir: &Path) -> Option<&'a Watch> {
    let named = absolute(dir).ok()?;
    watches.iter().find(|w| w.named.contains(&named))
}

/// `dir` made absolute from the cwd, `.` and `..` taken as written.
fn absolute(dir: &Path) -> io::Result<PathBuf> {
    let base = if dir.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir()?
    };
    let joined = normalize(base.as_os_str().as_bytes(), dir.as_os_str().as_bytes());
    Ok(PathBuf::from(OsStr::from_bytes(&joined)))
}

/// The `EDGES` map: for every watch, each directory on the way down to it
/// from the root (by its canonical path and by every path it was named
/// by), keyed by its parent and name. The kernel follows names of files
/// that no longer (or do not yet) exist down through it. A directory that
/// cannot be looked at ends that way down.
pub fn edges(watches: &[Watch]) -> Result<Vec<(EdgeKey, Edge)>, WatchError> {
    let mountinfo = read_mountinfo()?;
    let root = identity(Path::new("/"), &mountinfo).map_err(|source| WatchError::Io {
        path: "/".into(),
        source,
    })?;
    let mut map: HashMap<EdgeKey, Edge> = HashMap::new();
    for watch in watches {
        for path in std::iter::once(&watch.root).chain(&watch.named) {
            let mut parent = root;
            let mut at = PathBuf::from("/");
            let components: Vec<&[u8]> = path
                .as_os_str()
                .as_bytes()
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty())
                .collect();
            for (i, component) in components.iter().enumerate() {
                at.push(OsStr::from_bytes(component));
                let Ok(child) = identity(&at, &mountinfo) else {
                    break;
                };
                let is_watch = i + 1 == components.len() && child == watch.key;
                let key = EdgeKey {
                    parent,
                    hash: name_hash(component),
                };
                let edge = map.entry(key).or_insert(Edge {
                    child,
                    watch: WATCH_NONE,
                    route: 0,
                    mntns: 0,
                    _pad: 0,
                });
                if is_watch {
                    edge.watch = watch.id;
                }
                parent = child;
            }
        }
    }
    Ok(map.into_iter().collect())
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The mount table [`identity`] looks devices up in, read once for all
/// the paths it is asked about.
fn read_mountinfo() -> Result<String, WatchError> {
    fs::read_to_string(MOUNTINFO).map_err(|source| WatchError::Io {
        path: MOUNTINFO.into(),
        source,
    })
}

/// The identity the kernel side compares: `s_dev` of the super block and
/// the inode number.
fn identity(path: &Path, mountinfo: &str) -> io::Result<InodeKey> {
    Stamp::of(path)?.key(mountinfo)
}

/// What a path leads to, as `statx` tells without the mount table: its
/// mount, device and inode. A directory whose stamp changed may be
/// another one (replaced, moved away, a filesystem mounted or unmounted
/// on the way), so it is resolved again; an unchanged one is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    mount: u64,
    dev: (u32, u32),
    ino: u64,
}

impl Stamp {
    /// `path`'s stamp, following symlinks.
    pub fn of(path: &Path) -> io::Result<Self> {
        let c_path = c_path(path)?;
        // SAFETY: all-zero is a valid statx buffer.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: valid path and out pointer.
        let rc = unsafe {
            libc::statx(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                libc::AT_STATX_SYNC_AS_STAT,
                libc::STATX_INO | libc::STATX_MNT_ID,
                &mut stx,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if stx.stx_mask & libc::STATX_MNT_ID == 0 {
            return Err(io::Error::other("the kernel did not report its mount id"));
        }
        Ok(Self {
            mount: stx.stx_mnt_id,
            dev: (stx.stx_dev_major, stx.stx_dev_minor),
            ino: stx.stx_ino,
        })
    }

    /// The identity with the device statx reports, which is `s_dev` but on
    /// btrfs subvolumes: for a mount [`Stamp::key`] cannot find.
    pub fn statx_key(self) -> InodeKey {
        InodeKey {
            dev: self.dev.0 << 20 | self.dev.1,
            _pad: 0,
            ino: self.ino,
        }
    }

    /// The id of the mount it is on.
    pub fn mount(self) -> u64 {
        self.mount
    }

    /// The identity: `stat`'s device is not always `s_dev` (btrfs
    /// subvolumes report their own), so the device comes from the
    /// mount's line in /proc/self/mountinfo, which shows `s_dev`.
    pub fn key(self, mountinfo: &str) -> io::Result<InodeKey> {
        let (major, minor) = mount_device(mountinfo, self.mount).ok_or_else(|| {
            io::Error::other(format!("mount {} not in the mount table", self.mount))
        })?;
        Ok(InodeKey {
            // The kernel's internal dev_t: 12 bits of major, 20 of minor.
            dev: major << 20 | minor,
            _pad: 0,
            ino: self.ino,
        })
    }
}

/// A file handle of a watched directory: tells later whether it still
/// exists wherever it was moved, without holding it open (which would keep
/// its filesystem from being unmounted).
#[derive(Clone, Debug)]
pub struct Handle {
    mount: u64,
    fh: FileHandle,
}

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct FileHandle {
    bytes: u32,
    kind: i32,
    data: [u8; libc::MAX_HANDLE_SZ as usize],
}

impl Handle {
    pub fn of(path: &Path) -> io::Result<Self> {
        let c_path = c_path(path)?;
        let mut fh = FileHandle {
            bytes: libc::MAX_HANDLE_SZ as u32,
            kind: 0,
            data: [0; libc::MAX_HANDLE_SZ as usize],
        };
        let mut mount = 0;
        // SAFETY: a valid path, a handle buffer as large as it says, and an
        // out pointer.
        let rc = unsafe {
            libc::name_to_handle_at(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                (&raw mut fh).cast(),
                &mut mount,
                0,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // The same mount id as statx's and /proc/self/mountinfo's.
        Ok(Self {
            mount: mount as u64,
            fh,
        })
    }

    /// Whether the directory still exists (it was renamed, perhaps out of
    /// `near`), on the mount `near` is on: a rename stays on its
    /// filesystem. Not when that mount is gone, or `near` is elsewhere.
    pub fn alive(&self, near: &Path) -> bool {
        if Stamp::of(near).map(|s| s.mount).ok() != Some(self.mount) {
            return false;
        }
        let Ok(dir) = fs::File::open(near) else {
            return false;
        };
        let mut fh = self.fh;
        // SAFETY: an open directory on the handle's mount and a handle
        // name_to_handle_at wrote.
        let fd =
            unsafe { libc::open_by_handle_at(dir.as_raw_fd(), (&raw mut fh).cast(), libc::O_PATH) };
        if fd < 0 {
            return false;
        }
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd) };
        true
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// `major:minor` (third field) of mount `id` (first field) in a
/// mountinfo table.
fn mount_device(mountinfo: &str, id: u64) -> Option<(u32, u32)> {
    mountinfo::parse(mountinfo)
        .find(|m| m.id == id)
        .map(|m| m.dev)
}

/// The bytes a path must start with to lie under `root`: the root and a
/// trailing `/`, so that `/x/media2` never matches `/x/media`.
fn prefix(root: &Path) -> Vec<u8> {
    let mut bytes = root.as_os_str().as_bytes().to_vec();
    if bytes.last() != Some(&b'/') {
        bytes.push(b'/');
    }
    bytes
}

impl Watch {
    /// Whether the absolute `path` lies below this watch's root, as the
    /// prefix match decides it.
    pub fn holds(&self, path: &[u8]) -> bool {
        path.starts_with(&prefix(&self.root))
    }

    /// The LPM-trie key: the prefix length in bits and the prefix bytes.
    pub fn lpm_key(&self) -> (u32, [u8; WATCH_PREFIX_MAX]) {
        let prefix = prefix(&self.root);
        let mut data = [0; WATCH_PREFIX_MAX];
        data[..prefix.len()].copy_from_slice(&prefix);
        ((prefix.len() * 8) as u32, data)
    }
}

/// A directory the user named that is not what it was.
#[derive(Debug)]
pub enum Moved {
    /// No longer a directory (deleted, its filesystem unmounted, or moved
    /// where it cannot be found again): not watched until it is back. A
    /// directory renamed on its filesystem stays watched where it is, until
    /// another takes its path.
    Gone {
        dir: PathBuf,
        /// What it resolved to while it was watched.
        root: PathBuf,
        why: String,
    },
    /// A directory again, or another one than before (deleted and
    /// created anew, or a filesystem mounted or unmounted on the way):
    /// watched from now on.
    Back {
        dir: PathBuf,
        root: PathBuf,
        id: u32,
        /// It was watched until now, as another directory.
        replaced: bool,
    },
}

impl Moved {
    /// One line for the log and the text output.
    pub fn message(&self) -> String {
        match self {
            Self::Gone { why, .. } => format!("{why}: not watched until it is back"),
            Self::Back {
                dir,
                root,
                replaced,
                ..
            } => format!(
                "{}: {}; watched again, now the directory {}; changes made in it before now \
                 were not seen",
                escape::path(dir),
                if *replaced {
                    "another directory now"
                } else {
                    "back"
                },
                escape::path(root)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(root: &str) -> Watch {
        Watch {
            id: 0,
            root: root.into(),
            key: InodeKey::default(),
            named: vec![root.into()],
        }
    }

    #[test]
    fn key_has_trailing_slash_once() {
        let (bits, data) = watch("/x/media").lpm_key();
        assert_eq!(bits, 9 * 8);
        assert_eq!(&data[..9], b"/x/media/");
        assert_eq!(watch("/").lpm_key().0, 8);
    }

    #[test]
    fn holds_needs_a_whole_component() {
        assert!(watch("/srv/media").holds(b"/srv/media/x"));
        assert!(!watch("/srv/media").holds(b"/srv/media2/x"));
        assert!(!watch("/srv/media").holds(b"/srv/media"));
        assert!(watch("/").holds(b"/x"));
    }

    #[test]
    fn mount_device_reads_the_mounts_line() {
        let table = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                     29 1 259:3 / / rw,relatime - btrfs /dev/nvme0n1p3 rw\n";
        assert_eq!(mount_device(table, 29), Some((259, 3)));
        assert_eq!(mount_device(table, 22), Some((0, 21)));
        assert_eq!(mount_device(table, 2), None);
    }

    #[test]
    fn identity_is_the_mounts_device_and_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir();
        let key = identity(&dir, &read_mountinfo().unwrap()).unwrap();
        let meta = fs::metadata(&dir).unwrap();
        assert_eq!(key.ino, meta.ino());
        // Outside btrfs, stat's device is the super block's.
        let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
        assert_eq!(key.dev, major << 20 | minor);
    }

    #[test]
    fn missing_and_non_directories_are_refused() {
        let dir = std::env::temp_dir().join(format!("watcher-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        fs::write(&file, b"").unwrap();
        let refused = |dir: PathBuf| {
            let resolved = resolve(std::slice::from_ref(&dir), false, &[]).unwrap();
            assert!(resolved.watches.is_empty());
            assert!(resolved.refuse_missing(|named| named == dir).is_ok());
            resolve(&[dir], false, &[])
                .unwrap()
                .refuse_missing(|_| false)
        };
        assert!(matches!(
            refused(dir.join("nope")),
            Err(WatchError::Missing(_))
        ));
        assert!(matches!(
            refused(file.clone()),
            Err(WatchError::NotDirectory(_))
        ));
        assert!(matches!(
            refused(file.join("x")),
            Err(WatchError::NotDirectory(_))
        ));
        let same = resolve(
            &[
                dir.clone(),
                dir.join("."),
                dir.join("../").join(dir.file_name().unwrap()),
            ],
            false,
            &[],
        )
        .unwrap();
        assert_eq!(same.watches.len(), 1);
        assert!(same.dirs.iter().all(|(_, stamp)| stamp.is_ok()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kept_directory_keeps_its_id_and_a_new_one_takes_none_used_before() {
        let base = std::env::temp_dir().join(format!("watcher-unit-ids-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let first = resolve(std::slice::from_ref(&a), false, &[])
            .unwrap()
            .watches;
        // `a` was watched as id 3, and some directory gone since as id 0.
        let previous = [
            Watch {
                id: 3,
                ..first[0].clone()
            },
            Watch {
                id: 0,
                key: InodeKey::default(),
                ..first[0].clone()
            },
        ];
        let now = resolve(&[b.clone(), a.clone()], false, &previous)
            .unwrap()
            .watches;
        let id_of = |dir: &Path| find(&now, dir).unwrap().id;
        assert_eq!(id_of(&a), 3);
        assert_eq!(id_of(&b), 1);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn too_long_roots_are_refused_by_prefix_only() {
        let base = std::env::temp_dir().join(format!("watcher-unit-long-{}", std::process::id()));
        let deep = base
            .join("a".repeat(100))
            .join("b".repeat(100))
            .join("c".repeat(100));
        fs::create_dir_all(&deep).unwrap();
        let result = resolve(std::slice::from_ref(&deep), true, &[])
            .unwrap()
            .refuse_missing(|_| false);
        let exact = resolve(&[deep], false, &[]).unwrap();
        fs::remove_dir_all(&base).unwrap();
        assert_eq!(exact.watches.len(), 1);
        assert!(
            matches!(result, Err(WatchError::TooLong { .. })),
            "{result:?}"
        );
    }
}
