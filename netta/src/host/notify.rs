//! The systemd notification protocol (sd_notify(3)): `READY=1` once the agent
//! is attached and seeded, `WATCHDOG=1` while it lives, `STOPPING=1` on the way
//! out. Without `$NOTIFY_SOCKET` every call is a no-op.
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where systemd listens for notifications.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The watchdog period systemd asks for (µs), and the process it asks.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Sends `state` to `$NOTIFY_SOCKET`; false when there is none or it failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET) else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: the name after the '@'.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = &sent {
        log::debug!("sd_notify {state:?}: {e}");
    }
    sent.is_ok()
}

/// How often to send `WATCHDOG=1` (half of `$WATCHDOG_USEC`), when systemd
/// asked for it (and `$WATCHDOG_PID`, if set, is this process).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var(WATCHDOG_PID) {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var(WATCHDOG_USEC).ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        // SAFETY: tests in this module are the only users of these variables.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(notify("READY=1"));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!notify("READY=1"), "no socket, no-op");
    }
}
