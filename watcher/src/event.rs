//! Decoding the events the kernel side sends through the ring buffer.

use std::mem::size_of;

use watcher_common::{
    EVENT_HEADER_LEN, EventHeader, WATCH_NONE, event_kind, event_status, syscall,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("event says its name and path are {said} bytes but carries {carried}")]
    Len { said: usize, carried: usize },
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown syscall {0}")]
    Syscall(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Write,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Openat,
    Openat2,
    Open,
    Creat,
}

impl Syscall {
    pub fn name(self) -> &'static str {
        match self {
            Self::Openat => "openat",
            Self::Openat2 => "openat2",
            Self::Open => "open",
            Self::Creat => "creat",
        }
    }
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
    pub comm: Vec<u8>,
    /// The name as the process passed it.
    pub name: Vec<u8>,
    /// The file's canonical absolute path; only its last components when
    /// `truncated`.
    pub path: Vec<u8>,
    pub truncated: bool,
    /// Prefix mode: `name` is relative to `dfd` (or the cwd) of the
    /// process, and user space still has to place it.
    pub relative: bool,
    pub dfd: i32,
}

/// Converts the kernel's `CLOCK_BOOTTIME` stamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_boottime_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let now = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid clock id and out pointer; cannot fail for these clocks.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        let boot = now(libc::CLOCK_BOOTTIME);
        let real = now(libc::CLOCK_REALTIME);
        Self {
            realtime_minus_boottime_ns: real - boot,
        }
    }

    fn wall(&self, boottime_ns: u64) -> i128 {
        i128::from(boottime_ns) + self.realtime_minus_boottime_ns
    }
}

/// Decodes one ring-buffer record. `exact`: the kernel matched exactly and
/// sent the path's components; otherwise the name is the path.
pub fn decode(bytes: &[u8], clock: &Clock, exact: bool) -> Result<Event, DecodeError> {
    if bytes.len() < EVENT_HEADER_LEN {
        return Err(DecodeError::Short(bytes.len()));
    }
    const _: () = assert!(size_of::<EventHeader>() == EVENT_HEADER_LEN);
    // SAFETY: length checked above; `EventHeader` is plain data valid for
    // any bit pattern; the read is unaligned-safe.
    let header: EventHeader = unsafe { bytes.as_ptr().cast::<EventHeader>().read_unaligned() };
    let EventHeader {
        time_ns,
        kind,
        syscall,
        pid,
        tid,
        uid,
        gid,
        flags,
        ret,
        watch_id,
        status,
        dfd,
        name_len,
        path_len,
        _pad,
        comm,
    } = header;
    let rest = &bytes[EVENT_HEADER_LEN..];
    let said = name_len as usize + path_len as usize;
    if rest.len() < said {
        return Err(DecodeError::Len {
            said,
            carried: rest.len(),
        });
    }
    let (name, components) = rest[..said].split_at(name_len as usize);
    let truncated = status & event_status::PATH_TRUNCATED != 0;
    let path = if exact {
        join_components(components, truncated)
    } else {
        name.to_vec()
    };
    let kind = match kind {
        event_kind::WRITE => Kind::Write,
        other => return Err(DecodeError::Kind(other)),
    };
    let syscall = match syscall {
        syscall::OPENAT => Syscall::Openat,
        syscall::OPENAT2 => Syscall::Openat2,
        syscall::OPEN => Syscall::Open,
        syscall::CREAT => Syscall::Creat,
        other => return Err(DecodeError::Syscall(other)),
    };
    let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    Ok(Event {
        time_ns: clock.wall(time_ns),
        kind,
        syscall,
        pid,
        tid,
        uid,
        gid,
        flags,
        ret,
        watch_id: (watch_id != WATCH_NONE && status & event_status::UNDECIDED == 0)
            .then_some(watch_id),
        comm: comm[..comm_len].to_vec(),
        name: name.to_vec(),
        path,
        truncated,
        relative: status & event_status::RELATIVE != 0,
        dfd,
    })
}

/// The path from the kernel's components (file first, each ended by a
/// NUL): absolute, or only the components there are when `truncated`.
fn join_components(components: &[u8], truncated: bool) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = components.split(|&b| b == 0).collect();
    // The last component's NUL leaves an empty piece at the end.
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts.reverse();
    let joined = parts.join(&b'/');
    if truncated {
        joined
    } else {
        [b"/".as_slice(), &joined].concat()
    }
}

#[cfg(test)]
impl Event {
    /// A write event for unit tests.
    pub fn test_write(path: &[u8], watch_id: u32) -> Self {
        Self {
            time_ns: 0,
            kind: Kind::Write,
            syscall: Syscall::Openat,
            pid: 1,
            tid: 1,
            uid: 0,
            gid: 0,
            flags: 1,
            ret: 3,
            watch_id: Some(watch_id),
            comm: b"test".to_vec(),
            name: path.to_vec(),
            path: path.to_vec(),
            truncated: false,
            relative: false,
            dfd: libc::AT_FDCWD,
        }
    }
}

#[cfg(test)]
mod tests {
    use watcher_common::TASK_COMM_LEN;

    use super::*;

    fn record(
        name: &[u8],
        components: &[u8],
        said: (u32, u32),
        status: u32,
        kind: u32,
        syscall: u32,
    ) -> Vec<u8> {
        let mut comm = [0u8; TASK_COMM_LEN];
        comm[..5].copy_from_slice(b"touch");
        let header = EventHeader {
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
            status,
            dfd: -100,
            name_len: said.0,
            path_len: said.1,
            _pad: 0,
            comm,
        };
        // SAFETY: plain data without padding.
        let bytes: [u8; EVENT_HEADER_LEN] = unsafe { std::mem::transmute(header) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(name);
        v.extend_from_slice(components);
        v
    }

    fn write(name: &[u8], components: &[u8], status: u32) -> Vec<u8> {
        let said = (name.len() as u32, components.len() as u32);
        record(
            name,
            components,
            said,
            status,
            event_kind::WRITE,
            syscall::OPENAT,
        )
    }

    #[test]
    fn decodes_a_write() {
        let clock = Clock {
            realtime_minus_boottime_ns: 1_000,
        };
        let bytes = record(
            b"../a\xff",
            b"a\xff\0w\0",
            (5, 5),
            0,
            event_kind::WRITE,
            syscall::OPENAT2,
        );
        let ev = decode(&bytes, &clock, true).unwrap();
        assert_eq!(ev.time_ns, 1_005);
        assert_eq!((ev.kind, ev.syscall), (Kind::Write, Syscall::Openat2));
        assert_eq!(
            (ev.pid, ev.tid, ev.uid, ev.gid, ev.ret, ev.watch_id),
            (10, 11, 12, 13, 3, Some(1))
        );
        assert_eq!(ev.comm, b"touch");
        assert_eq!(ev.name, b"../a\xff");
        assert_eq!(ev.path, b"/w/a\xff");
        assert!(!ev.truncated && !ev.relative);
    }

    #[test]
    fn path_from_components() {
        let clock = Clock::new();
        let root = decode(&write(b"/", b"", 0), &clock, true).unwrap();
        assert_eq!(root.path, b"/");
        let cut = decode(
            &write(b"f", b"f\0d2\0", event_status::PATH_TRUNCATED),
            &clock,
            true,
        )
        .unwrap();
        assert_eq!(cut.path, b"d2/f");
        assert!(cut.truncated);
        let undecided = event_status::PATH_TRUNCATED | event_status::UNDECIDED;
        let ev = decode(&write(b"f", b"f\0", undecided), &clock, true).unwrap();
        assert_eq!(ev.watch_id, None);
        // Prefix mode: the name is the path.
        let ev = decode(&write(b"/w/x", b"", 0), &clock, false).unwrap();
        assert_eq!(ev.path, b"/w/x");
        let ev = decode(&write(b"x", b"", event_status::RELATIVE), &clock, false).unwrap();
        assert!(ev.relative);
    }

    #[test]
    fn rejects_malformed_records() {
        let clock = Clock::new();
        assert_eq!(decode(&[0; 8], &clock, true), Err(DecodeError::Short(8)));
        let short = record(b"/w", b"", (2, 7), 0, event_kind::WRITE, syscall::OPEN);
        assert_eq!(
            decode(&short, &clock, true),
            Err(DecodeError::Len {
                said: 9,
                carried: 2
            })
        );
        let kind = record(b"", b"", (0, 0), 0, 99, syscall::OPEN);
        assert_eq!(decode(&kind, &clock, true), Err(DecodeError::Kind(99)));
        let sys = record(b"", b"", (0, 0), 0, event_kind::WRITE, 42);
        assert_eq!(decode(&sys, &clock, true), Err(DecodeError::Syscall(42)));
    }
}
