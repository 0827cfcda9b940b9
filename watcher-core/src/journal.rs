//! Entries for the systemd journal through its native protocol: one
//! datagram per entry to journald's socket, each field `KEY=value\n`, or
//! `KEY\n`, a little-endian 64-bit length and the raw bytes when the value
//! holds a newline (so any bytes go through unchanged).

use std::{io, os::unix::net::UnixDatagram};

pub const SOCKET: &str = "/run/systemd/journal/socket";

/// Send buffer asked for: an entry is one datagram, and a large one must
/// not fail for want of room (journald's own clients ask for 8 MiB).
const SEND_BUFFER: libc::c_int = 8 << 20;

pub struct Journal {
    socket: UnixDatagram,
}

impl Journal {
    pub fn connect() -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(SOCKET)?;
        let size = SEND_BUFFER;
        // SAFETY: valid fd, option and value pointer; failure is harmless
        // (the default buffer takes any entry watcher makes).
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(Self { socket })
    }

    /// Sends one entry. Keys must be journal field names (`A-Z`, `0-9`,
    /// `_`, not starting with `_`).
    pub fn send(&mut self, fields: &[(String, Vec<u8>)]) -> io::Result<()> {
        self.socket.send(&encode(fields)).map(drop)
    }
}

fn encode(fields: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        if value.contains(&b'\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn values_with_newlines_are_sized() {
        let entry = encode(&[
            ("MESSAGE".into(), b"write /a".to_vec()),
            ("WATCHER_PATH".into(), b"/a\nb".to_vec()),
        ]);
        let mut want = b"MESSAGE=write /a\nWATCHER_PATH\n".to_vec();
        want.extend_from_slice(&4u64.to_le_bytes());
        want.extend_from_slice(b"/a\nb\n");
        assert_eq!(entry, want);
    }
}
