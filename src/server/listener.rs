//! Binding the Unix socket, in two steps so that a start-up refused for any
//! reason leaves nothing behind: [`check`] creates nothing (the directory is
//! one this user may trust, no live daemon answers on the path, the path is
//! a socket or free), and [`bind`] runs after every start-up check passed.
//!
//! A socket file left by a daemon that died is replaced, but only after a
//! connection attempt is refused: a live daemon is never clobbered, and a
//! path that is not a socket is never deleted. The socket is created with
//! mode 0600 (umask set around bind), so there is no moment when another
//! user could connect.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::stat::{umask, Mode};

/// A bound listener and the identity of the file it created, so shutdown
/// removes the socket file only if it is still ours. `inode` is None for a
/// socket passed by a service manager, which owns (and keeps) the file.
pub(crate) struct Bound {
    pub(crate) listener: UnixListener,
    inode: Option<u64>,
}

impl Bound {
    /// A listener a service manager passed us.
    pub(crate) fn activated(listener: UnixListener) -> Self {
        Self {
            listener,
            inode: None,
        }
    }

    /// The path the listener is bound to (for a socket a service manager
    /// passed, the one it bound, whatever `--socket` says), if it has one.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        let addr = self.listener.local_addr().ok()?;
        addr.as_pathname().map(Path::to_path_buf)
    }

    /// Removes the socket file if it is the one this process bound.
    pub(crate) fn remove_file(&self, path: &Path) {
        let Some(inode) = self.inode else { return };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.ino() == inode {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A socket path that passed [`check`].
pub(crate) struct Checked {
    path: PathBuf,
    /// A socket file no daemon answers on, to be replaced by [`bind`].
    stale: bool,
}

/// Checks that `path` can be bound, creating and removing nothing: its
/// directory (if it exists) is one this user may trust (`crate::dirs`), and
/// the path is free or a stale socket file.
pub(crate) fn check(path: &Path) -> Result<Checked, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::dirs::check(dir, "socket directory")?;
    }
    let stale = match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "another daemon is already listening on {}",
                    path.display()
                ))
            }
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => true,
            Err(err) if err.kind() == ErrorKind::NotFound => false,
            Err(err) => {
                return Err(format!(
                    "cannot check existing socket {}: {err}",
                    path.display()
                ))
            }
        },
        Err(err) if err.kind() == ErrorKind::NotFound => false,
        Err(err) => return Err(format!("cannot inspect {}: {err}", path.display())),
    };
    Ok(Checked {
        path: path.to_path_buf(),
        stale,
    })
}

/// Binds a checked path, replacing a stale socket file and creating a
/// missing directory (0700). The file is created with mode 0600 and only
/// then given `group` and `mode`, so at no moment is it more open than its
/// final mode.
pub(crate) fn bind(checked: Checked, mode: u32, group: Option<u32>) -> Result<Bound, String> {
    let path = checked.path.as_path();
    if checked.stale {
        tracing::info!(path = %path.display(), "replacing stale socket file");
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::dirs::create(dir, "socket directory")?;
    }
    // Owner read/write only, from the moment the file exists.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make {} non-blocking: {e}", path.display()))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| format!("cannot give {} group {gid}: {e}", path.display()))?;
    }
    if mode != 0o600 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    }
    let inode = std::fs::symlink_metadata(path).map(|m| m.ino()).ok();
    Ok(Bound { listener, inode })
}
