//! systemd's readiness protocol (`Type=notify`): datagrams to the socket
//! named by `NOTIFY_SOCKET`, when it is set.

use std::os::{
    linux::net::SocketAddrExt as _,
    unix::net::{SocketAddr, UnixDatagram},
};

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to systemd. Without
/// `NOTIFY_SOCKET` (not a notify service) it does nothing; a failure is
/// logged and otherwise ignored, as the service goes on without it.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    // `@name` is a socket in the abstract namespace.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd ({}): {e}", path.to_string_lossy());
    }
}

/// Tells systemd a reload began; `READY=1` says it ended.
pub fn reloading() {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}
