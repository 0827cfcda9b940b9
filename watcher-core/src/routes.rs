//! The other ways into the watched trees by name: every mount, in any
//! mount namespace, of a watched directory, of a directory inside one, or
//! of a directory above one (bind mounts, a container's volumes, what a
//! chroot sees). The kernel follows a name down from the directory it
//! starts at through `EDGES` (it cannot look names up), so for names
//! through such a mount it needs the way from that namespace's root to the
//! mount point, each directory by its identity, and at the mount point the
//! directory mounted there. A file opened through one needs none of this:
//! the kernel finds its watch up the file system's own tree. An overlay's
//! merged directory is a way into its upper directory's tree too.

use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use watcher_common::{Edge, EdgeKey, InodeKey, WATCH_NONE, name_hash};

use crate::{
    mountinfo::{self, Mount},
    watch::{Stamp, Watch},
};

/// The ways in, kept from one look at the namespaces to the next.
#[derive(Debug, Default)]
pub struct Routes {
    /// Each view's mount table as last read, and the edges from it.
    namespaces: HashMap<View, (String, Vec<(EdgeKey, Edge)>)>,
    /// What the watches were then: a namespace is looked at again when
    /// they change, not only when its mounts do.
    watches: Vec<(u32, InodeKey, PathBuf)>,
    /// The paths from a watch down to the directory a mount shows, by
    /// [`Edge::route`] - 1 (the empty path when it shows the watch itself).
    /// Only added to, so that events in flight keep their meaning.
    prefixes: Vec<Vec<u8>>,
}

/// A watched directory as its file system knows it.
struct InFs<'a> {
    watch: &'a Watch,
    dev: (u32, u32),
    /// Its path from the file system's root.
    path: PathBuf,
}

impl Routes {
    /// Looks at every mount namespace's mounts again (one process of each,
    /// through /proc): whether the edges changed. A namespace whose table
    /// cannot be read (its processes are gone) has none.
    pub fn update(&mut self, watches: &[Watch]) -> bool {
        let fingerprint: Vec<_> = watches
            .iter()
            .map(|w| (w.id, w.key, w.root.clone()))
            .collect();
        let again = fingerprint != self.watches;
        self.watches = fingerprint;
        let own = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let in_fs = in_file_systems(watches, &own);
        let own = view_of("self");
        let mut changed = false;
        let mut seen = HashSet::new();
        for (view, pid) in views() {
            let Ok(table) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
                continue;
            };
            seen.insert(view);
            if !again && self.namespaces.get(&view).is_some_and(|(t, _)| *t == table) {
                continue;
            }
            let edges = self.edges_in(view.ns, pid, &table, &in_fs, own == Some(view));
            let before = self.namespaces.insert(view, (table, edges.clone()));
            changed |= before.map_or(!edges.is_empty(), |(_, e)| e != edges);
        }
        let gone = self
            .namespaces
            .iter()
            .any(|(ns, (_, edges))| !seen.contains(ns) && !edges.is_empty());
        self.namespaces.retain(|ns, _| seen.contains(ns));
        changed || gone
    }

    /// The edges of every namespace. An entry that leads to the same
    /// directory in several namespaces leads there in every namespace; one
    /// that leads to different directories keeps the first (the names
    /// through the others' mount are not followed: see the README).
    pub fn edges(&self) -> Vec<(EdgeKey, Edge)> {
        let mut merged: HashMap<EdgeKey, Edge> = HashMap::new();
        let mut namespaces: Vec<_> = self.namespaces.iter().collect();
        namespaces.sort_by_key(|(view, _)| **view);
        for (_, (_, edges)) in namespaces {
            for (key, edge) in edges {
                let kept = merged.entry(*key).or_insert(*edge);
                let untagged = |e: &Edge| Edge { mntns: 0, ..*e };
                if kept.mntns != edge.mntns && untagged(kept) == untagged(edge) {
                    kept.mntns = 0;
                }
            }
        }
        merged.into_iter().collect()
    }

    /// How many mount points lead into a watched tree other than by its
    /// own path, and in how many namespaces.
    pub fn ways(&self) -> (usize, usize) {
        let ways = |edges: &Vec<(EdgeKey, Edge)>| {
            edges.iter().filter(|(_, e)| e.watch != WATCH_NONE).count()
        };
        let mut namespaces = HashSet::new();
        let mut total = 0;
        for (view, (_, edges)) in &self.namespaces {
            let n = ways(edges);
            total += n;
            if n > 0 {
                namespaces.insert(view.ns);
            }
        }
        (total, namespaces.len())
    }

    /// Forgets what the namespaces were: the next [`Routes::update`] says
    /// they changed.
    pub fn forget(&mut self) {
        self.namespaces.clear();
    }

    /// The path from the watch down to the directory [`Edge::route`]
    /// `route` leads into.
    pub fn prefix(&self, route: u32) -> Option<&[u8]> {
        self.prefixes
            .get(route.checked_sub(1)? as usize)
            .map(Vec::as_slice)
    }

    /// The edges for the mounts of namespace `ns` (`table`, read through
    /// process `pid`) that lead into a watched tree.
    fn edges_in(
        &mut self,
        ns: u32,
        pid: u32,
        table: &str,
        watches: &[InFs],
        own: bool,
    ) -> Vec<(EdgeKey, Edge)> {
        let mut edges = Vec::new();
        for mount in mountinfo::parse(table) {
            // The innermost watch whose tree holds the mount's directory,
            // and each watch the mount shows.
            let mut holder: Option<(&InFs, PathBuf)> = None;
            for w in watches.iter().filter(|w| w.dev == mount.dev) {
                if let Ok(rest) = w.path.strip_prefix(&mount.root) {
                    let point = mount.point.join(rest);
                    if !(own && point == w.watch.root) {
                        let way = Way {
                            point,
                            watch: w.watch.id,
                            prefix: Vec::new(),
                            shows: Some(w.watch.key),
                        };
                        self.follow(&way, ns, pid, table, &mut edges);
                    }
                } else if let Ok(rest) = mount.root.strip_prefix(&w.path)
                    && holder
                        .as_ref()
                        .is_none_or(|(h, _)| w.path.starts_with(&h.path))
                {
                    holder = Some((w, rest.to_owned()));
                }
            }
            if let Some((w, rest)) = holder {
                let way = Way {
                    point: mount.point.clone(),
                    watch: w.watch.id,
                    prefix: rest.as_os_str().as_bytes().to_vec(),
                    shows: None,
                };
                self.follow(&way, ns, pid, table, &mut edges);
            }
            for way in through_overlay(&mount, watches) {
                self.follow(&way, ns, pid, table, &mut edges);
            }
        }
        edges
    }

    /// The edges from the namespace's root down to `way.point`, the last
    /// into the watch. None when a directory on the way cannot be looked
    /// at, or the mount point does not show what the table says (another
    /// mount covers it).
    fn follow(
        &mut self,
        way: &Way,
        ns: u32,
        pid: u32,
        table: &str,
        out: &mut Vec<(EdgeKey, Edge)>,
    ) {
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let Ok((mut parent, mut parent_mount)) = identity(&root, table) else {
            return;
        };
        let components: Vec<&[u8]> = way
            .point
            .as_os_str()
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let mut at = root;
        let mut found = Vec::with_capacity(components.len());
        for (i, component) in components.iter().enumerate() {
            at.push(std::ffi::OsStr::from_bytes(component));
            let Ok((child, mount)) = identity(&at, table) else {
                return;
            };
            let last = i + 1 == components.len();
            if last && way.shows.is_some_and(|key| key != child) {
                return;
            }
            let route = if last { self.route(&way.prefix) } else { 0 };
            found.push((
                EdgeKey {
                    parent,
                    hash: name_hash(component),
                },
                Edge {
                    child,
                    watch: if last { way.watch } else { WATCH_NONE },
                    route,
                    // A mount point here may be a plain directory in
                    // another namespace.
                    mntns: if mount == parent_mount { 0 } else { ns },
                    _pad: 0,
                },
            ));
            (parent, parent_mount) = (child, mount);
        }
        out.extend(found);
    }

    /// The route of `prefix`, added when new.
    fn route(&mut self, prefix: &[u8]) -> u32 {
        let at = match self.prefixes.iter().position(|p| p == prefix) {
            Some(at) => at,
            None => {
                self.prefixes.push(prefix.to_vec());
                self.prefixes.len() - 1
            }
        };
        at as u32 + 1
    }
}

/// A mount point that leads into a watched tree.
struct Way {
    /// Where, in the namespace.
    point: PathBuf,
    watch: u32,
    /// The path from the watch down to the directory mounted there.
    prefix: Vec<u8>,
    /// The watched directory it shows, when it shows one (a mount of the
    /// watch or of a directory above it), checked at the mount point.
    shows: Option<InodeKey>,
}

/// The ways into the watched trees through an overlay's merged directory
/// (a mount of it): where the upper directory lies in a tree, the mount
/// point leads into it; where it holds watched directories, the same
/// paths below the mount point lead to them. Found by path: the upper
/// directory as the overlay's mounter named it, followed from watcher's
/// root. The merged directories are the overlay's own, so the mount point
/// cannot be checked to show the watch.
fn through_overlay(mount: &Mount, watches: &[InFs]) -> Vec<Way> {
    let Some(upper) = mount.upper.as_ref().and_then(|u| fs::canonicalize(u).ok()) else {
        return Vec::new();
    };
    // A bind mount of a directory of the overlay shows that one.
    let shown = upper.join(mount.root.strip_prefix("/").unwrap_or(&mount.root));
    let mut ways = Vec::new();
    let mut holder: Option<(&Watch, PathBuf)> = None;
    for w in watches.iter().map(|w| w.watch) {
        if let Ok(rest) = shown.strip_prefix(&w.root) {
            if holder
                .as_ref()
                .is_none_or(|(h, _)| w.root.starts_with(&h.root))
            {
                holder = Some((w, rest.to_owned()));
            }
        } else if let Ok(rest) = w.root.strip_prefix(&shown) {
            ways.push(Way {
                point: mount.point.join(rest),
                watch: w.id,
                prefix: Vec::new(),
                shows: None,
            });
        }
    }
    ways.extend(holder.map(|(w, rest)| Way {
        point: mount.point.clone(),
        watch: w.id,
        prefix: rest.as_os_str().as_bytes().to_vec(),
        shows: None,
    }));
    ways
}

/// Each watch's device and path in its file system, from watcher's own
/// mount table: the mount its directory is on, and the path below it.
fn in_file_systems<'a>(watches: &'a [Watch], own: &str) -> Vec<InFs<'a>> {
    let mounts: Vec<Mount> = mountinfo::parse(own).collect();
    watches
        .iter()
        .filter_map(|watch| {
            let mount = mounts
                .iter()
                .filter(|m| watch.root.starts_with(&m.point))
                .max_by_key(|m| m.point.as_os_str().len())?;
            let rest = watch.root.strip_prefix(&mount.point).ok()?;
            Some(InFs {
                watch,
                dev: mount.dev,
                path: mount.root.join(rest),
            })
        })
        .collect()
}

/// `path`'s identity, with the mount it is on; the device is looked up
/// in `table`, the mount table of the namespace it is seen from (a
/// chroot's lacks the mounts above its root: then statx's device).
fn identity(path: &Path, table: &str) -> std::io::Result<(InodeKey, u64)> {
    let stamp = Stamp::of(path)?;
    let key = stamp.key(table).unwrap_or_else(|_| stamp.statx_key());
    Ok((key, stamp.mount()))
}

/// What the processes of a mount namespace with one root directory see:
/// the namespace's mounts, as far as they lie below that root (a chroot
/// sees less, from elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct View {
    ns: u32,
    /// The root directory's device and inode, as statx gives them.
    root: (u64, u64),
}

/// One process of each view: (view, pid), watcher's own first.
fn views() -> Vec<(View, u32)> {
    let mut found: HashMap<View, u32> = HashMap::new();
    let own = std::process::id();
    if let Some(view) = view_of(&own.to_string()) {
        found.insert(view, own);
    }
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(view) = view_of(&pid.to_string()) {
            found.entry(view).or_insert(pid);
        }
    }
    found.into_iter().collect()
}

/// The view of /proc entry `pid` (`self` or a number).
fn view_of(pid: &str) -> Option<View> {
    let dir = Path::new("/proc").join(pid);
    let link = fs::read_link(dir.join("ns/mnt")).ok()?;
    let link = link.to_str()?;
    let ns = link
        .strip_prefix("mnt:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let root = fs::metadata(dir.join("root")).ok()?;
    Some(View {
        ns,
        root: (root.dev(), root.ino()),
    })
}
