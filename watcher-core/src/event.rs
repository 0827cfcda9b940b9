//! Decoding the events the kernel side sends through the ring buffer.

use std::{mem::size_of, os::unix::ffi::OsStrExt, path::Path, sync::Arc};

use watcher_common::{
    EVENT_HEADER_LEN, EventHeader, Process, ProcessImage, Target, WATCH_NONE, event_status,
    proc_status,
};

use crate::{cgroup::Cgroup, kind::Kind, path::normalize, syscall::Syscall};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error(
        "event says its names, paths, executable and command line are {said} bytes but carries {carried}"
    )]
    Len { said: usize, carried: usize },
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown syscall {0}")]
    Syscall(u32),
    #[error("event says it has {0} files")]
    Targets(u32),
}

/// One file of a record: the only one, or the old or the new name of a
/// rename or a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub name: Vec<u8>,
    pub path: Vec<u8>,
    pub truncated: bool,
    /// Prefix mode: as [`Event::relative`].
    pub relative: bool,
    /// As [`Event::through`].
    pub through: bool,
    pub dfd: i32,
    /// Where the file lies below its watch, when the kernel said.
    pub anchor: Option<Anchor>,
    /// The path as the process reached the file, when it is not `path`
    /// (see [`Event::anchor`]).
    pub writer_path: Option<Vec<u8>>,
}

/// Where a file lies below its watch, as the kernel found it: what names
/// it by the watch's path whatever mount, bind mount, namespace or chroot
/// the process reached it through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub watch: u32,
    /// The path below the watch's directory (relative; empty for the
    /// watched directory itself), after the route's path.
    pub below: Vec<u8>,
    /// The name went down into the watch through a mount point that
    /// user space told the kernel of (its `Edge::route`), or 0.
    pub route: u32,
    /// A chrooted process's path, as it sees it from its root.
    pub seen: Option<Vec<u8>>,
}

/// One event, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time_ns: i128,
    pub kind: Kind,
    pub syscall: Syscall,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u64,
    pub ret: i64,
    /// The innermost watch the file lies under; `None` when the kernel
    /// could not decide (the walk ended first), which counts as every
    /// watch.
    pub watch_id: Option<u32>,
    /// The slot of watcher's action that made the change (`serve` with
    /// several jobs: only that action's job ignores it), or `None`.
    pub origin: Option<u32>,
    pub comm: Vec<u8>,
    /// The name as the process passed it (empty for fd operations).
    pub name: Vec<u8>,
    /// The file's absolute path, with symlinks in the directories above it
    /// resolved; only its last components when `truncated`.
    pub path: Vec<u8>,
    pub truncated: bool,
    /// Prefix mode: `name` is relative to `dfd` (or the cwd) of the
    /// process, and user space still has to place it.
    pub relative: bool,
    /// The kernel could not follow the name (`..` after going down): user
    /// space decides its watch from `path`.
    pub lexical: bool,
    /// The name goes down through directories below its watch that the
    /// kernel only knew by name: user space follows its directory in the
    /// filesystem (a symlink there may lead elsewhere) and decides.
    pub through: bool,
    /// The directory fd the name is relative to, or the fd operated on.
    pub dfd: i32,
    /// The descriptor the event is about: an open's new fd, or the fd of a
    /// close or an fd operation.
    pub fd: Option<i64>,
    /// The open created the file.
    pub created: bool,
    /// `modify`: the writes the event stands for (coalesced, see
    /// `--modify-interval`). In a `close_write` record as decoded, before
    /// [`expand`]: the writes no `modify` counted yet.
    pub writes: Option<u32>,
    /// Where the file lies below its watch (see [`Event::anchor`]).
    pub anchor: Option<Anchor>,
    /// The path as the process reached the file, when it differs from
    /// `path`: through a bind mount, a container's volume, another mount
    /// namespace. Set by [`Event::anchor`].
    pub writer_path: Option<Vec<u8>>,
    /// Renames and links: the old name (boxed: most events have none,
    /// and every event is moved a few times).
    pub old: Option<Box<Side>>,
    pub who: Who,
}

impl Event {
    /// Names the file by its watch's path and the path below it when the
    /// process may have reached it another way (its [`Anchor`]: a bind
    /// mount on its way, a container's volume, a chroot's, or a mount
    /// namespace other than watcher's). The path the process used is kept
    /// in `writer_path` when it differs. `root` gives a watch's directory,
    /// `route` the path from a watch down to what a route leads into.
    pub fn anchor<'a, 'r>(
        &mut self,
        root: impl Fn(u32) -> Option<&'a Path>,
        route: impl Fn(u32) -> Option<&'r [u8]>,
    ) {
        let at = |anchor: Option<&Anchor>| {
            let anchor = anchor?;
            let root = root(anchor.watch)?.as_os_str().as_bytes();
            let prefix = if anchor.route == 0 {
                &[][..]
            } else {
                route(anchor.route)?
            };
            let anchored = normalize(&normalize(root, prefix), &anchor.below);
            Some((anchored, anchor.seen.clone()))
        };
        if let Some((anchored, seen)) = at(self.anchor.as_ref()) {
            reanchor(&mut self.path, &mut self.writer_path, anchored, seen);
        }
        if let Some(old) = &mut self.old
            && let Some((anchored, seen)) = at(old.anchor.as_ref())
        {
            reanchor(&mut old.path, &mut old.writer_path, anchored, seen);
        }
    }
}

/// `path` becomes `anchored`, and the writer's path what the process saw
/// (`seen` from its chroot, else the path it was), when they differ.
fn reanchor(
    path: &mut Vec<u8>,
    writer_path: &mut Option<Vec<u8>>,
    anchored: Vec<u8>,
    seen: Option<Vec<u8>>,
) {
    let was = std::mem::replace(path, anchored);
    let seen = seen.unwrap_or(was);
    if seen != *path {
        *writer_path = Some(seen);
    }
}

/// Who made the change, beyond pid, tid, uid, gid and comm: read by the
/// kernel during the syscall. The options are `None` without BTF (the
/// kernel could not read them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Who {
    pub ppid: Option<u32>,
    pub euid: Option<u32>,
    pub egid: Option<u32>,
    /// The audit login uid; also `None` when it is unset.
    pub loginuid: Option<u32>,
    /// The mount namespace's inode number (`/proc/PID/ns/mnt`).
    pub mntns: Option<u32>,
    pub cgroup_id: u64,
    /// The cgroup's path and container, found in user space from
    /// `cgroup_id` (`None` when the cgroup is already gone); shared by the
    /// events of a cgroup.
    pub cgroup: Option<Arc<Cgroup>>,
    /// The executable and command line (`None`: not known); shared by the
    /// events of a process image.
    pub program: Option<Arc<Program>>,
    /// The process image the event came from (with BTF).
    pub image: Option<ProcessImage>,
    /// The record left the executable and command line out: an earlier
    /// one of the same image carried them ([`Images`](crate::images::Images)
    /// puts them back).
    pub image_sent: bool,
}

/// What a process image runs, as the kernel read it at the image's first
/// event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    /// The executable's absolute path (its last components when
    /// `exe_truncated`).
    pub exe: Option<Vec<u8>>,
    pub exe_truncated: bool,
    /// The executable was unlinked (removed, or replaced by a rename over
    /// it): `exe` is where it was. Only with `exe`.
    pub exe_deleted: bool,
    /// The command line's arguments, at most `CMDLINE_MAX` bytes of them.
    pub cmdline: Vec<Vec<u8>>,
    pub cmdline_truncated: bool,
}

/// Converts the kernel's `CLOCK_BOOTTIME` stamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_boottime_ns: i128,
}

impl Clock {
    pub fn read() -> Self {
        Self {
            realtime_minus_boottime_ns: clock_ns(libc::CLOCK_REALTIME)
                - clock_ns(libc::CLOCK_BOOTTIME),
        }
    }

    /// Wall-clock time now, in nanoseconds since the Unix epoch.
    pub fn now(&self) -> i128 {
        clock_ns(libc::CLOCK_BOOTTIME) + self.realtime_minus_boottime_ns
    }

    fn wall(&self, boottime_ns: u64) -> i128 {
        i128::from(boottime_ns) + self.realtime_minus_boottime_ns
    }
}

/// `clock` now, in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer; cannot fail for these clocks.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Decodes one ring-buffer record. `exact`: the kernel matched exactly and
/// sent the paths' components; otherwise the names are the paths.
/// `mntns`: watcher's own mount namespace (a writer in another has its
/// files named by their watch, see [`Event::anchor`]).
pub fn decode(
    bytes: &[u8],
    clock: &Clock,
    exact: bool,
    mntns: Option<u32>,
) -> Result<Event, DecodeError> {
    if bytes.len() < EVENT_HEADER_LEN {
        return Err(DecodeError::Short(bytes.len()));
    }
    const _: () = assert!(size_of::<EventHeader>() == EVENT_HEADER_LEN);
    // SAFETY: length checked above; `EventHeader` is plain data valid for
    // any bit pattern; the read is unaligned-safe.
    let header: EventHeader = unsafe { bytes.as_ptr().cast::<EventHeader>().read_unaligned() };
    let targets = match header.targets_len {
        1 => &header.targets[..1],
        2 => &header.targets[..],
        n => return Err(DecodeError::Targets(n)),
    };
    let mut rest = &bytes[EVENT_HEADER_LEN..];
    let process = header.process;
    let said: usize = targets
        .iter()
        .map(|t| t.name_len as usize + t.path_len as usize + t.extra_len as usize)
        .sum::<usize>()
        + process.exe_len as usize
        + process.cmdline_len as usize;
    if rest.len() < said {
        return Err(DecodeError::Len {
            said,
            carried: rest.len(),
        });
    }
    let mut take = |n: u32| {
        let (head, tail) = rest.split_at(n as usize);
        rest = tail;
        head
    };
    let elsewhere = process.status & proc_status::KNOWN != 0
        && process.mntns != 0
        && Some(process.mntns) != mntns;
    // At most two targets: their names, then their paths, then their
    // extra components.
    let mut parts = |len: fn(&Target) -> u32| -> [&[u8]; 2] {
        std::array::from_fn(|i| targets.get(i).map_or(&[][..], |t| take(len(t))))
    };
    let names = parts(|t| t.name_len);
    let paths = parts(|t| t.path_len);
    let extras = parts(|t| t.extra_len);
    let side_of = |i: usize| {
        let t = &targets[i];
        let side = side(t, names[i], paths[i], exact);
        // Exact paths, walked in the filesystem (not lexically).
        let walked = exact && !side.truncated && t.status & event_status::LEXICAL == 0;
        Side {
            anchor: walked
                .then(|| anchor(t, names[i], paths[i], extras[i], elsewhere))
                .flatten(),
            ..side
        }
    };
    // The new name is the last; a rename or link has the old one before.
    let new = side_of(targets.len() - 1);
    let old = (targets.len() == 2).then(|| Box::new(side_of(0)));
    let exe = take(process.exe_len);
    let cmdline = take(process.cmdline_len);
    let who = who(&process, exe, cmdline);
    let kind = Kind::from_id(header.kind).ok_or(DecodeError::Kind(header.kind))?;
    let syscall = Syscall::from_id(header.syscall).ok_or(DecodeError::Syscall(header.syscall))?;
    let comm_len = header
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(header.comm.len());
    let status = targets.iter().fold(0, |s, t| s | t.status);
    let by_name = targets
        .last()
        .is_some_and(|t| t.status & event_status::BASE != 0);
    let fd = if status & event_status::DIRECT != 0 {
        // io_uring's own table of files: no fd of the process.
        None
    } else if syscall.is_open() {
        Some(header.ret)
    } else if new.name.is_empty() && !by_name {
        Some(i64::from(new.dfd))
    } else {
        None
    };
    Ok(Event {
        time_ns: clock.wall(header.time_ns),
        kind,
        syscall,
        pid: header.pid,
        tid: header.tid,
        uid: header.uid,
        gid: header.gid,
        flags: header.flags,
        ret: header.ret,
        watch_id: (header.watch_id != WATCH_NONE && status & event_status::UNDECIDED == 0)
            .then_some(header.watch_id),
        origin: (header.origin != 0).then_some(header.origin),
        comm: header.comm[..comm_len].to_vec(),
        name: new.name,
        path: new.path,
        truncated: new.truncated,
        relative: new.relative,
        lexical: status & event_status::LEXICAL != 0,
        through: new.through,
        dfd: new.dfd,
        fd,
        created: status & event_status::CREATED != 0,
        writes: matches!(kind, Kind::Modify | Kind::CloseWrite).then_some(header.count),
        anchor: new.anchor,
        writer_path: None,
        old,
        who,
    })
}

fn who(p: &Process, exe: &[u8], cmdline: &[u8]) -> Who {
    let known = |v| (p.status & proc_status::KNOWN != 0).then_some(v);
    let image_sent = p.status & proc_status::IMAGE_SENT != 0;
    Who {
        ppid: known(p.ppid),
        euid: known(p.euid),
        egid: known(p.egid),
        loginuid: known(p.loginuid).filter(|&uid| uid != u32::MAX),
        mntns: known(p.mntns).filter(|&ns| ns != 0),
        cgroup_id: p.cgroup_id,
        cgroup: None,
        // Most records leave it out: given back by `Images`.
        program: (!image_sent).then(|| Arc::new(program(p, exe, cmdline))),
        image: (p.status & proc_status::KNOWN != 0).then_some(p.image),
        image_sent,
    }
}

fn program(p: &Process, exe: &[u8], cmdline: &[u8]) -> Program {
    let exe_truncated = p.status & proc_status::EXE_TRUNCATED != 0;
    Program {
        exe: (!exe.is_empty()).then(|| join_components(exe, exe_truncated)),
        exe_truncated,
        exe_deleted: !exe.is_empty() && p.status & proc_status::EXE_DELETED != 0,
        // No arguments when none were read; the last one's NUL ends it
        // (none when cut).
        cmdline: if cmdline.is_empty() {
            Vec::new()
        } else {
            cmdline
                .strip_suffix(b"\0")
                .unwrap_or(cmdline)
                .split(|&b| b == 0)
                .map(<[u8]>::to_vec)
                .collect()
        },
        cmdline_truncated: p.status & proc_status::CMDLINE_TRUNCATED != 0,
    }
}

/// One target's name and path. A name followed from a directory (`BASE`)
/// is joined to that directory's path after the part the walk took.
fn side(t: &Target, name: &[u8], components: &[u8], exact: bool) -> Side {
    let truncated = t.status & event_status::PATH_TRUNCATED != 0;
    let path = if !exact {
        name.to_vec()
    } else if t.status & event_status::BASE == 0 {
        join_components(components, truncated)
    } else {
        let base = join_components(components, truncated);
        let rest = name.get(t.skip as usize..).unwrap_or_default();
        if truncated {
            // Only the tail of the directory is known: joined as written.
            [base.as_slice(), b"/", rest].concat()
        } else {
            normalize(&base, rest)
        }
    };
    Side {
        name: name.to_vec(),
        path,
        truncated,
        relative: t.status & event_status::RELATIVE != 0,
        through: t.status & event_status::THROUGH != 0,
        dfd: t.dfd,
        anchor: None,
        writer_path: None,
    }
}

/// Where the target lies below its watch, when the process may have
/// reached it another way than the watch's path (a bind mount or route
/// on its way, a chroot, or it is `elsewhere`, in another mount
/// namespace): the part of the name below a watch met on the way down, or
/// the path's components below the watch (and those on to it through the
/// super block, `extra`), with the rest of the name for a name followed
/// from a directory.
fn anchor(
    t: &Target,
    name: &[u8],
    components: &[u8],
    extra: &[u8],
    elsewhere: bool,
) -> Option<Anchor> {
    if t.watch == WATCH_NONE {
        return None;
    }
    let by_name = t.status & event_status::BASE != 0;
    let rest = if by_name {
        name.get(t.skip as usize..).unwrap_or_default()
    } else {
        b""
    };
    // Chrooted: the path below the process's root, as it sees it.
    let seen = (t.rooted != WATCH_NONE
        && (t.rooted as usize) < split_components(components).count())
    .then(|| {
        let mut parts: Vec<&[u8]> = split_components(components)
            .take(t.rooted as usize)
            .collect();
        parts.reverse();
        normalize(&parts.join(&b'/'), rest)
    });
    let down = by_name && t.name_below != WATCH_NONE;
    let route = if down { t.route } else { 0 };
    let bound = t.status & event_status::BOUND != 0 || !extra.is_empty() || seen.is_some();
    if !(bound || route != 0 || elsewhere) {
        // Through the watch's own path: the kernel's path stands.
        return None;
    }
    let below = if down {
        normalize(b"", name.get(t.name_below as usize..)?)
    } else if t.below != WATCH_NONE {
        let mut parts: Vec<&[u8]> = split_components(components)
            .take(t.below as usize)
            .chain(split_components(extra))
            .collect();
        parts.reverse();
        normalize(&parts.join(&b'/'), rest)
    } else {
        return None;
    };
    Some(Anchor {
        watch: t.watch,
        // `normalize` makes it absolute: below the watch it is relative.
        below: below.strip_prefix(b"/").unwrap_or(&below).to_vec(),
        route,
        seen,
    })
}

/// The components of a path as the kernel writes them (file first, each
/// ended by a NUL).
fn split_components(components: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    components
        .strip_suffix(b"\0")
        .unwrap_or(components)
        .split(|&b| b == 0)
        .filter(|_| !components.is_empty())
}

/// The events one record stands for, among the `selected` kinds, with
/// the writes each stands for: an open is a `create` when it created the
/// file, a `truncate` when O_TRUNC emptied an existing one, and a
/// `write`, in that order; a close is a `modify` of the writes no
/// `modify` counted yet (if any), then a `close_write`.
pub fn kinds<'a>(
    ev: &Event,
    selected: &'a [Kind],
) -> impl Iterator<Item = (Kind, Option<u32>)> + use<'a> {
    let writes = ev.writes;
    let candidates = match ev.kind {
        Kind::CloseWrite => {
            let unseen = writes.filter(|&n| n > 0);
            [
                (Kind::Modify, unseen, unseen.is_some()),
                (Kind::CloseWrite, None, true),
                (Kind::CloseWrite, None, false),
            ]
        }
        Kind::Write => {
            let truncated = !ev.created && ev.flags & libc::O_TRUNC as u64 != 0;
            [
                (Kind::Create, writes, ev.created),
                (Kind::Truncate, writes, truncated),
                (Kind::Write, writes, true),
            ]
        }
        kind => [
            (kind, writes, true),
            (kind, writes, false),
            (kind, writes, false),
        ],
    };
    candidates
        .into_iter()
        .filter(|&(kind, _, applies)| applies && selected.contains(&kind))
        .map(|(kind, writes, _)| (kind, writes))
}

/// Appends the events of [`kinds`] to `events`: copies of `ev`, and `ev`
/// itself as the last one (most records are one or two events).
pub fn expand(ev: Event, selected: &[Kind], events: &mut Vec<Event>) {
    let mut wanted = [None; 3];
    for (slot, kind) in wanted.iter_mut().zip(kinds(&ev, selected)) {
        *slot = Some(kind);
    }
    let mut wanted = wanted.into_iter().flatten().peekable();
    while let Some((kind, writes)) = wanted.next() {
        if wanted.peek().is_none() {
            events.push(Event { kind, writes, ..ev });
            return;
        }
        events.push(Event {
            kind,
            writes,
            ..ev.clone()
        });
    }
}

/// The path from the kernel's components (file first, each ended by a
/// NUL): absolute, or only the components there are when `truncated`.
fn join_components(components: &[u8], truncated: bool) -> Vec<u8> {
    let mut path = Vec::with_capacity(components.len() + 1);
    for (i, part) in split_components(components).rev().enumerate() {
        if i > 0 || !truncated {
            path.push(b'/');
        }
        path.extend_from_slice(part);
    }
    if path.is_empty() && !truncated {
        path.push(b'/');
    }
    path
}

#[cfg(test)]
impl Event {
    /// A write event for unit tests.
    pub fn test_write(path: &[u8], watch_id: u32) -> Self {
        Self {
            time_ns: 0,
            kind: Kind::Write,
            syscall: Syscall::OPENAT,
            pid: 1,
            tid: 1,
            uid: 0,
            gid: 0,
            flags: 1,
            ret: 3,
            watch_id: Some(watch_id),
            origin: None,
            comm: b"test".to_vec(),
            name: path.to_vec(),
            path: path.to_vec(),
            truncated: false,
            relative: false,
            lexical: false,
            through: false,
            dfd: libc::AT_FDCWD,
            fd: Some(3),
            created: false,
            writes: None,
            anchor: None,
            writer_path: None,
            old: None,
            who: Who::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use watcher_common::{TASK_COMM_LEN, event_kind};

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        /// Whatever the ring buffer holds, a record is decoded or refused:
        /// well-formed records with any field values, then with bytes
        /// changed, added and cut, and plain noise.
        #[test]
        fn any_record_is_decoded_or_refused(
            kind in 0u32..16,
            syscall in 0u32..64,
            targets in prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..64),
                    prop::collection::vec(any::<u8>(), 0..64),
                    any::<u32>(),
                ),
                0..3,
            ),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
            tail in prop::collection::vec(any::<u8>(), 0..32),
            exact in any::<bool>(),
        ) {
            let clock = Clock::read();
            let targets: Vec<(&[u8], &[u8], u32)> = targets
                .iter()
                .map(|(n, c, s)| (n.as_slice(), c.as_slice(), *s))
                .collect();
            let mut bytes = record(kind, syscall, &targets);
            let _ = decode(&bytes, &clock, exact, None);
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode(&bytes, &clock, exact, None);
            bytes.extend_from_slice(&tail);
            let _ = decode(&bytes, &clock, exact, None);
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = decode(&bytes, &clock, exact, None);
            let _ = decode(&tail, &clock, exact, None);
        }
    }

    /// A record with one target per (name, components, status).
    fn record(kind: u32, syscall: u32, targets: &[(&[u8], &[u8], u32)]) -> Vec<u8> {
        let targets: Vec<_> = targets
            .iter()
            .map(|&(name, components, status)| {
                (
                    target(status, WATCH_NONE, WATCH_NONE),
                    name,
                    components,
                    &b""[..],
                )
            })
            .collect();
        record_of(kind, syscall, &targets)
    }

    /// A target of `status`, its watch and the components below it.
    fn target(status: u32, watch: u32, below: u32) -> Target {
        Target {
            status,
            dfd: -100,
            watch,
            below,
            name_below: WATCH_NONE,
            rooted: WATCH_NONE,
            ..Target::default()
        }
    }

    /// A target as the kernel sends it: the header's part, its name, its
    /// path's components and the extra components.
    type Part<'a> = (Target, &'a [u8], &'a [u8], &'a [u8]);

    /// A record with one target per part; the lengths are set from the
    /// parts.
    fn record_of(kind: u32, syscall: u32, targets: &[Part]) -> Vec<u8> {
        let mut comm = [0u8; TASK_COMM_LEN];
        comm[..5].copy_from_slice(b"touch");
        let mut header = EventHeader {
            time_ns: 5,
            kind,
            syscall,
            pid: 10,
            tid: 11,
            uid: 12,
            gid: 13,
            flags: 0o101,
            ret: 3,
            watch_id: 1,
            targets_len: targets.len() as u32,
            origin: 0,
            count: 0,
            targets: [Target::default(); 2],
            comm,
            process: Process::default(),
        };
        for (t, (target, name, components, extra)) in header.targets.iter_mut().zip(targets) {
            *t = Target {
                name_len: name.len() as u32,
                path_len: components.len() as u32,
                extra_len: extra.len() as u32,
                ..*target
            };
        }
        // SAFETY: plain data without padding.
        let bytes: [u8; EVENT_HEADER_LEN] = unsafe { std::mem::transmute(header) };
        let mut v = bytes.to_vec();
        for (_, name, _, _) in targets {
            v.extend_from_slice(name);
        }
        for (_, _, components, _) in targets {
            v.extend_from_slice(components);
        }
        for (_, _, _, extra) in targets {
            v.extend_from_slice(extra);
        }
        v
    }

    fn write(name: &[u8], components: &[u8], status: u32) -> Vec<u8> {
        record(event_kind::WRITE, 0, &[(name, components, status)])
    }

    #[test]
    fn decodes_a_write() {
        let clock = Clock {
            realtime_minus_boottime_ns: 1_000,
        };
        let bytes = record(event_kind::WRITE, 1, &[(b"../a\xff", b"a\xff\0w\0", 0)]);
        let ev = decode(&bytes, &clock, true, None).unwrap();
        assert_eq!(ev.time_ns, 1_005);
        assert_eq!((ev.kind, ev.syscall), (Kind::Write, Syscall::OPENAT2));
        assert_eq!(
            (ev.pid, ev.tid, ev.uid, ev.gid, ev.ret, ev.watch_id),
            (10, 11, 12, 13, 3, Some(1))
        );
        assert_eq!(ev.comm, b"touch");
        assert_eq!(ev.name, b"../a\xff");
        assert_eq!(ev.path, b"/w/a\xff");
        assert_eq!(ev.fd, Some(3));
        assert!(!ev.truncated && !ev.relative && ev.old.is_none());
        // No command line read: no arguments, not one empty one.
        assert_eq!(ev.who.program.as_deref(), Some(&Program::default()));
    }

    #[test]
    fn path_from_components() {
        let clock = Clock::read();
        let root = decode(&write(b"/", b"", 0), &clock, true, None).unwrap();
        assert_eq!(root.path, b"/");
        let cut = decode(
            &write(b"f", b"f\0d2\0", event_status::PATH_TRUNCATED),
            &clock,
            true,
            None,
        )
        .unwrap();
        assert_eq!(cut.path, b"d2/f");
        assert!(cut.truncated);
        let undecided = event_status::PATH_TRUNCATED | event_status::UNDECIDED;
        let ev = decode(&write(b"f", b"f\0", undecided), &clock, true, None).unwrap();
        assert_eq!(ev.watch_id, None);
        // Prefix mode: the name is the path.
        let ev = decode(&write(b"/w/x", b"", 0), &clock, false, None).unwrap();
        assert_eq!(ev.path, b"/w/x");
        let ev = decode(
            &write(b"x", b"", event_status::RELATIVE),
            &clock,
            false,
            None,
        )
        .unwrap();
        assert!(ev.relative);
    }

    #[test]
    fn names_are_joined_to_their_directory() {
        let clock = Clock::read();
        let base = event_status::BASE;
        // rename("../in/a", "sub/./b") from /w/dir: the kernel walked the
        // `../` (skip 3) and sent /w and /w/dir.
        let mut bytes = record(
            event_kind::RENAME,
            Syscall::RENAMEAT2.id(),
            &[(b"../in/a", b"w\0", base), (b"sub/./b", b"dir\0w\0", base)],
        );
        // Patch the first target's skip.
        let skip_at =
            std::mem::offset_of!(EventHeader, targets) + std::mem::offset_of!(Target, skip);
        bytes[skip_at] = 3;
        let ev = decode(&bytes, &clock, true, None).unwrap();
        assert_eq!(ev.kind, Kind::Rename);
        assert_eq!(ev.syscall, Syscall::RENAMEAT2);
        assert_eq!(ev.path, b"/w/dir/sub/b");
        let old = ev.old.unwrap();
        assert_eq!(old.path, b"/w/in/a");
        assert_eq!(old.name, b"../in/a");
        assert_eq!(ev.fd, None);
    }

    #[test]
    fn a_file_reached_another_way_is_named_by_its_watch() {
        let clock = Clock::read();
        let root = |id| (id == 7).then_some(Path::new("/srv/media"));
        // /mnt/music/a, where /mnt/music is a bind mount of
        // /srv/media/music: one component below the mount root, then
        // `music` on to the watch.
        let bound = target(event_status::BOUND, 7, 1);
        let bytes = record_of(
            event_kind::WRITE,
            0,
            &[(bound, b"/mnt/music/a", b"a\0music\0mnt\0", b"music\0")],
        );
        let mut ev = decode(&bytes, &clock, true, None).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(ev.path, b"/srv/media/music/a");
        assert_eq!(ev.writer_path.as_deref(), Some(&b"/mnt/music/a"[..]));

        // The watch itself bound at /data in a container: its path there.
        let bytes = record_of(
            event_kind::WRITE,
            0,
            &[(
                target(event_status::BOUND, 7, 2),
                b"x",
                b"x\0sub\0data\0",
                b"",
            )],
        );
        let mut ev = decode(&bytes, &clock, true, None).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(ev.path, b"/srv/media/sub/x");
        assert_eq!(ev.writer_path.as_deref(), Some(&b"/data/sub/x"[..]));

        // Reached through the watch's own path: the kernel's path stands
        // (a watch renamed since has its new name there), unless the
        // writer is in another mount namespace.
        let own = target(0, 7, 1);
        let bytes = record_of(
            event_kind::WRITE,
            0,
            &[(own, b"a", b"a\0library\0srv\0", b"")],
        );
        let mut ev = decode(&bytes, &clock, true, None).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(
            (ev.path.as_slice(), &ev.writer_path),
            (&b"/srv/library/a"[..], &None)
        );
        // From mount namespace 4, watcher's being 3.
        let mut bytes = bytes;
        let process = std::mem::offset_of!(EventHeader, process);
        let status = process + std::mem::offset_of!(Process, status);
        let mntns = process + std::mem::offset_of!(Process, mntns);
        bytes[status..status + 4].copy_from_slice(&proc_status::KNOWN.to_ne_bytes());
        bytes[mntns..mntns + 4].copy_from_slice(&4u32.to_ne_bytes());
        let mut ev = decode(&bytes, &clock, true, Some(4)).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(ev.path, b"/srv/library/a");
        let mut ev = decode(&bytes, &clock, true, Some(3)).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(ev.path, b"/srv/media/a");
        assert_eq!(ev.writer_path.as_deref(), Some(&b"/srv/library/a"[..]));

        // Chrooted at /jail, writing its /data/x, a bind mount of the
        // watch: the path it saw.
        let chrooted = Target {
            rooted: 2,
            ..target(event_status::BOUND, 7, 1)
        };
        let bytes = record_of(
            event_kind::WRITE,
            0,
            &[(chrooted, b"/data/x", b"x\0data\0jail\0", b"")],
        );
        let mut ev = decode(&bytes, &clock, true, None).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(ev.path, b"/srv/media/x");
        assert_eq!(ev.writer_path.as_deref(), Some(&b"/data/x"[..]));

        // A name followed from a directory: the directory's part below
        // the watch, then the rest of the name.
        let base = target(event_status::BASE | event_status::BOUND, 7, 1);
        let bytes = record_of(
            event_kind::RENAME,
            Syscall::RENAMEAT2.id(),
            &[(base, b"./x/y", b"sub\0m\0", b"")],
        );
        let mut ev = decode(&bytes, &clock, true, None).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(ev.path, b"/srv/media/sub/x/y");
        assert_eq!(ev.writer_path.as_deref(), Some(&b"/m/sub/x/y"[..]));
        // A watch met on the way down the name.
        let down = Target {
            name_below: 11,
            ..target(event_status::BASE | event_status::BOUND, 7, WATCH_NONE)
        };
        let bytes = record_of(
            event_kind::RENAME,
            Syscall::RENAMEAT2.id(),
            &[(down, b"/srv/media/d/f", b"", b"")],
        );
        let mut ev = decode(&bytes, &clock, true, None).unwrap();
        ev.anchor(root, |_| None);
        assert_eq!(ev.path, b"/srv/media/d/f");
        assert_eq!(ev.writer_path, None);
    }

    #[test]
    fn an_open_stands_for_create_truncate_and_write() {
        let clock = Clock::read();
        let created = decode(
            &write(b"f", b"f\0", event_status::CREATED),
            &clock,
            true,
            None,
        )
        .unwrap();
        let expanded = |ev: &Event, selected: &[Kind]| -> Vec<Kind> {
            let mut events = vec![Event::test_write(b"/before", 1)];
            expand(ev.clone(), selected, &mut events);
            assert_eq!(events.len(), 1 + kinds(ev, selected).count());
            events.iter().skip(1).map(|e| e.kind).collect()
        };
        assert_eq!(expanded(&created, &Kind::ALL), [Kind::Create, Kind::Write]);
        let mut trunc = decode(&write(b"f", b"f\0", 0), &clock, true, None).unwrap();
        trunc.flags = (libc::O_WRONLY | libc::O_TRUNC) as u64;
        assert_eq!(expanded(&trunc, &Kind::ALL), [Kind::Truncate, Kind::Write]);
        assert_eq!(expanded(&trunc, &[Kind::Write]), [Kind::Write]);
        assert_eq!(expanded(&created, &[Kind::Delete]), []);
        // A close: a modify of the writes not counted yet, if any.
        let mut close = created.clone();
        close.kind = Kind::CloseWrite;
        close.writes = Some(3);
        assert_eq!(
            expanded(&close, &Kind::ALL),
            [Kind::Modify, Kind::CloseWrite]
        );
        close.writes = Some(0);
        assert_eq!(expanded(&close, &Kind::ALL), [Kind::CloseWrite]);
        assert_eq!(expanded(&close, &[Kind::Modify]), []);
    }

    #[test]
    fn rejects_malformed_records() {
        let clock = Clock::read();
        assert_eq!(
            decode(&[0; 8], &clock, true, None),
            Err(DecodeError::Short(8))
        );
        let mut short = write(b"/w", b"", 0);
        short.truncate(short.len() - 1);
        assert_eq!(
            decode(&short, &clock, true, None),
            Err(DecodeError::Len {
                said: 2,
                carried: 1
            })
        );
        let kind = record(99, 0, &[(b"", b"", 0)]);
        assert_eq!(
            decode(&kind, &clock, true, None),
            Err(DecodeError::Kind(99))
        );
        let sys = record(event_kind::WRITE, 420, &[(b"", b"", 0)]);
        assert_eq!(
            decode(&sys, &clock, true, None),
            Err(DecodeError::Syscall(420))
        );
        let none = record(event_kind::WRITE, 0, &[]);
        assert_eq!(
            decode(&none, &clock, true, None),
            Err(DecodeError::Targets(0))
        );
    }
}
