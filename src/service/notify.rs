//! sd_notify: READY=1 once the listener and the database are open, STATUS=
//! lines, STOPPING=1 when shutdown starts, WATCHDOG=1 at half of
//! WatchdogSec. A no-op when NOTIFY_SOCKET is unset.
//!
//! Written by hand (a dozen lines) rather than with the `sd-notify` crate:
//! version 0.5 connects NOTIFY_SOCKET as a filesystem path, so it cannot
//! reach an abstract socket (`@...`), which systemd itself uses.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends notifications to the service manager.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    /// NOTIFY_SOCKET, read once at start-up; None when not under systemd.
    socket: Option<String>,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET.
    pub(crate) fn from_env() -> Self {
        Self {
            socket: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// True when a service manager listens.
    pub(crate) fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one datagram of `KEY=value` lines; failures are logged, never
    /// fatal (the service manager may have gone).
    pub(crate) fn send(&self, message: &str) {
        let Some(path) = &self.socket else { return };
        if let Err(err) = send_to(path, message) {
            tracing::debug!(%err, "sd_notify failed");
        }
    }

    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ));
    }

    pub(crate) fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down");
    }

    pub(crate) fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

fn send_to(path: &str, message: &str) -> std::io::Result<()> {
    let addr = match path.strip_prefix('@') {
        Some(name) => abstract_addr(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// The watchdog interval systemd asked for (WATCHDOG_USEC, for our pid).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some(path.to_string_lossy().into_owned()),
        };
        n.ready("up");
        let mut buf = [0u8; 256];
        let len = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(text.starts_with("READY=1\nSTATUS=up"), "{text}");

        #[cfg(target_os = "linux")]
        {
            let name = format!("stigmer-test-{}", std::process::id());
            let addr = abstract_addr(name.as_bytes()).unwrap();
            let receiver = UnixDatagram::bind_addr(&addr).unwrap();
            Notifier {
                socket: Some(format!("@{name}")),
            }
            .stopping();
            let len = receiver.recv(&mut buf).unwrap();
            assert!(std::str::from_utf8(&buf[..len])
                .unwrap()
                .starts_with("STOPPING=1"));
        }
        Notifier::default().ready("nobody listens");
    }
}
