//! Decoding the events the kernel side sends through the ring buffer.

use std::mem::size_of;

use watcher_common::{EVENT_HEADER_LEN, EventHeader, event_kind, syscall};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("event says its path is {path_len} bytes but carries {carried}")]
    PathLen { path_len: usize, carried: usize },
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
    pub watch_id: u32,
    pub comm: Vec<u8>,
    /// The path as the process passed it.
    pub path: Vec<u8>,
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

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8], clock: &Clock) -> Result<Event, DecodeError> {
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
        path_len,
        comm,
    } = header;
    let rest = &bytes[EVENT_HEADER_LEN..];
    let path = rest
        .get(..path_len as usize)
        .ok_or(DecodeError::PathLen {
            path_len: path_len as usize,
            carried: rest.len(),
        })?
        .to_vec();
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
        watch_id,
        comm: comm[..comm_len].to_vec(),
        path,
    })
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
            watch_id,
            comm: b"test".to_vec(),
            path: path.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use watcher_common::TASK_COMM_LEN;

    use super::*;

    fn record(path: &[u8], path_len: u32, kind: u32, syscall: u32) -> Vec<u8> {
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
            path_len,
            comm,
        };
        // SAFETY: plain data without padding.
        let bytes: [u8; EVENT_HEADER_LEN] = unsafe { std::mem::transmute(header) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(path);
        v
    }

    #[test]
    fn decodes_a_write() {
        let clock = Clock {
            realtime_minus_boottime_ns: 1_000,
        };
        let ev = decode(
            &record(b"/w/a\xff", 5, event_kind::WRITE, syscall::OPENAT2),
            &clock,
        )
        .unwrap();
        assert_eq!(ev.time_ns, 1_005);
        assert_eq!((ev.kind, ev.syscall), (Kind::Write, Syscall::Openat2));
        assert_eq!(
            (ev.pid, ev.tid, ev.uid, ev.gid, ev.ret, ev.watch_id),
            (10, 11, 12, 13, 3, 1)
        );
        assert_eq!(ev.comm, b"touch");
        assert_eq!(ev.path, b"/w/a\xff");
    }

    #[test]
    fn rejects_malformed_records() {
        let clock = Clock::new();
        assert_eq!(decode(&[0; 8], &clock), Err(DecodeError::Short(8)));
        assert_eq!(
            decode(&record(b"/w", 9, event_kind::WRITE, syscall::OPEN), &clock),
            Err(DecodeError::PathLen {
                path_len: 9,
                carried: 2
            })
        );
        assert_eq!(
            decode(&record(b"", 0, 99, syscall::OPEN), &clock),
            Err(DecodeError::Kind(99))
        );
        assert_eq!(
            decode(&record(b"", 0, event_kind::WRITE, 42), &clock),
            Err(DecodeError::Syscall(42))
        );
    }
}
