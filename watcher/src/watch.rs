//! The watched directories: checking what the user named and turning each
//! into the kernel-side key.

use std::{
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use watcher_common::{MAX_WATCHES, WATCH_PREFIX_MAX};

use crate::escape::escape;

/// One watched directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Its id in the kernel's `WATCHES` map and in events.
    pub id: u32,
    /// Absolute, with symlinks resolved.
    pub root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{}: no such directory", show(.0))]
    Missing(PathBuf),
    #[error("{}: not a directory", show(.0))]
    NotDirectory(PathBuf),
    #[error("{}: {source}", show(path))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: path is {len} bytes long, watcher can watch paths of at most {max} bytes", show(path), max = WATCH_PREFIX_MAX - 1)]
    TooLong { path: PathBuf, len: usize },
    #[error("{0} directories given, watcher can watch at most {MAX_WATCHES}")]
    TooMany(usize),
}

fn show(path: &Path) -> String {
    escape(path.as_os_str().as_bytes())
}

/// Checks the directories the user named and gives each a watch id.
/// Naming the same directory twice (by any spelling) watches it once.
pub fn resolve(dirs: &[PathBuf]) -> Result<Vec<Watch>, WatchError> {
    if dirs.len() > MAX_WATCHES as usize {
        return Err(WatchError::TooMany(dirs.len()));
    }
    let mut watches: Vec<Watch> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let root = fs::canonicalize(dir).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => WatchError::Missing(dir.clone()),
            io::ErrorKind::NotADirectory => WatchError::NotDirectory(dir.clone()),
            _ => WatchError::Io {
                path: dir.clone(),
                source,
            },
        })?;
        let meta = fs::metadata(&root).map_err(|source| WatchError::Io {
            path: dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(WatchError::NotDirectory(dir.clone()));
        }
        let len = prefix(&root).len();
        if len > WATCH_PREFIX_MAX {
            return Err(WatchError::TooLong { path: root, len });
        }
        if !watches.iter().any(|w| w.root == root) {
            let id = watches.len() as u32;
            watches.push(Watch { id, root });
        }
    }
    Ok(watches)
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
    /// The LPM-trie key: the prefix length in bits and the prefix bytes.
    pub fn lpm_key(&self) -> (u32, [u8; WATCH_PREFIX_MAX]) {
        let prefix = prefix(&self.root);
        let mut data = [0; WATCH_PREFIX_MAX];
        data[..prefix.len()].copy_from_slice(&prefix);
        ((prefix.len() * 8) as u32, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_has_trailing_slash_once() {
        let w = Watch {
            id: 0,
            root: "/x/media".into(),
        };
        let (bits, data) = w.lpm_key();
        assert_eq!(bits, 9 * 8);
        assert_eq!(&data[..9], b"/x/media/");
        let root = Watch {
            id: 0,
            root: "/".into(),
        };
        assert_eq!(root.lpm_key().0, 8);
    }

    #[test]
    fn missing_and_non_directories_are_refused() {
        let dir = std::env::temp_dir().join(format!("watcher-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            resolve(&[dir.join("nope")]),
            Err(WatchError::Missing(_))
        ));
        assert!(matches!(
            resolve(std::slice::from_ref(&file)),
            Err(WatchError::NotDirectory(_))
        ));
        assert!(matches!(
            resolve(&[file.join("x")]),
            Err(WatchError::NotDirectory(_))
        ));
        let same = resolve(&[
            dir.clone(),
            dir.join("."),
            dir.join("../").join(dir.file_name().unwrap()),
        ])
        .unwrap();
        assert_eq!(same.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn too_long_roots_are_refused() {
        let base = std::env::temp_dir().join(format!("watcher-unit-long-{}", std::process::id()));
        let deep = base
            .join("a".repeat(100))
            .join("b".repeat(100))
            .join("c".repeat(100));
        fs::create_dir_all(&deep).unwrap();
        let result = resolve(&[deep]);
        fs::remove_dir_all(&base).unwrap();
        assert!(
            matches!(result, Err(WatchError::TooLong { .. })),
            "{result:?}"
        );
    }
}
