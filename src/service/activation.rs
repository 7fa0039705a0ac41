//! Socket activation.
//!
//! systemd passes listening sockets as fds 3.. with LISTEN_FDS,
//! LISTEN_PID and LISTEN_FDNAMES; they are ours only when LISTEN_PID is our
//! pid (the `sd-notify` crate checks that, sets FD_CLOEXEC and pairs names).
//! Each fd is checked to be a listening Unix stream socket and made
//! non-blocking before tokio takes it: an inherited blocking socket would
//! hang or panic the runtime (tokio#3099, #7172).
//!
//! This runs in the synchronous `main` before the runtime starts, the one
//! moment when removing the LISTEN_* variables (so children do not inherit
//! them) is sound.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

/// The fd name stigmer's socket unit gives its socket (FileDescriptorName=).
pub(crate) const FD_NAME: &str = "stigmer";

/// Where the listening socket came from.
pub enum Activation {
    /// systemd passed it.
    Systemd(UnixListener),
    /// launchd passed it.
    Launchd(UnixListener),
    /// Not socket-activated: bind the path ourselves.
    None,
}

impl Activation {
    /// True when a service manager owns the socket (and restarts us on the
    /// next connection).
    pub(crate) fn is_activated(&self) -> bool {
        !matches!(self, Activation::None)
    }
}

/// Takes the activated listener, if any.
///
/// # Safety
/// Must be called before any other thread exists (it removes environment
/// variables), i.e. in `main` before the tokio runtime is built.
pub(crate) unsafe fn take_listener() -> Result<Activation, String> {
    // SAFETY: the caller guarantees no other thread is running.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
        .map_err(|e| format!("invalid socket activation environment: {e}"))?;
    let fds: Vec<(RawFd, String)> = fds.collect();
    if !fds.is_empty() {
        return pick(fds).map(Activation::Systemd);
    }
    match super::launchd::activate_socket(super::launchd::SOCKET_NAME) {
        Ok(Some(listener)) => Ok(Activation::Launchd(listener)),
        Ok(None) => Ok(Activation::None),
        Err(err) => Err(err),
    }
}

/// Chooses our socket among the passed fds: the one named [`FD_NAME`], else
/// the only one. Every fd passed is taken into ownership (so the others are
/// closed rather than leaked).
fn pick(fds: Vec<(RawFd, String)>) -> Result<UnixListener, String> {
    let count = fds.len();
    let mut chosen = None;
    let mut owned = Vec::new();
    for (fd, name) in fds {
        // SAFETY: systemd passed this fd to this process (LISTEN_PID matched)
        // and nothing else in the process has touched it; we take sole
        // ownership here.
        let owned_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if name == FD_NAME || (count == 1 && chosen.is_none()) {
            chosen = Some((owned_fd, name));
        } else {
            owned.push(owned_fd);
        }
    }
    let (fd, name) = chosen.ok_or_else(|| {
        format!(
            "socket activation passed {count} fds but none named {FD_NAME:?} (FileDescriptorName=)"
        )
    })?;
    check_unix_stream_listener(&fd).map_err(|e| format!("activated fd {name:?}: {e}"))?;
    let listener = UnixListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("activated fd {name:?}: cannot make it non-blocking: {e}"))?;
    Ok(listener)
}

/// Checks that `fd` is a listening `AF_UNIX` `SOCK_STREAM` socket.
pub(crate) fn check_unix_stream_listener(fd: &OwnedFd) -> Result<(), String> {
    let kind = getsockopt(fd, sockopt::SockType).map_err(|e| format!("not a socket ({e})"))?;
    if kind != SockType::Stream {
        return Err(format!("is a {kind:?} socket, not a stream socket"));
    }
    let addr: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(fd))
        .map_err(|e| format!("getsockname: {e}"))?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err(format!(
            "is a {:?} socket, not a Unix socket",
            addr.family()
        ));
    }
    let listening =
        getsockopt(fd, sockopt::AcceptConn).map_err(|e| format!("SO_ACCEPTCONN: {e}"))?;
    if !listening {
        return Err("is not listening (Accept=no sockets only)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_listening_unix_stream_socket_only() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        assert!(check_unix_stream_listener(&OwnedFd::from(listener)).is_ok());
        let datagram = std::os::unix::net::UnixDatagram::bind(dir.path().join("d")).unwrap();
        assert!(check_unix_stream_listener(&OwnedFd::from(datagram)).is_err());
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        assert!(check_unix_stream_listener(&OwnedFd::from(file)).is_err());
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(check_unix_stream_listener(&OwnedFd::from(a)).is_err());
    }
}
