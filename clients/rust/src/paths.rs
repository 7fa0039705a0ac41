//! Where the daemon's socket and database live by default. The daemon and
//! every client resolve paths with these functions, so a client finds the
//! daemon without configuration.
//!
//! A user without `$XDG_RUNTIME_DIR` gets the socket in a private directory,
//! `/tmp/stigmer-<uid>/stigmer.sock`, rather than a file directly in the
//! world-writable `/tmp`, where another user could bind the path first
//! (socket squatting, docs/SECURITY.md). The directory must be a real
//! directory owned by the user with mode 0700 (as tmux checks its own);
//! [`ensure_private_dir`] creates it so for the daemon and
//! [`check_private_dir`] refuses anything else for both sides.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "STIGMER_SOCKET";
/// Environment variable that overrides the database path.
pub const DB_ENV: &str = "STIGMER_DB";
/// The system service's socket.
pub const SYSTEM_SOCKET: &str = "/run/stigmer.sock";
/// The system service's database.
pub const SYSTEM_DB: &str = "/var/lib/stigmer/stigmer.db";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Environment variable naming a uid, besides root and the user's own, that
/// clients accept as the daemon's (see [`crate::Config::expected_uid`]).
pub const EXPECTED_UID_ENV: &str = "STIGMER_EXPECTED_UID";

/// The socket's file name inside the fallback directory.
pub const FALLBACK_SOCKET_NAME: &str = "stigmer.sock";

/// The private fallback directory of the current user:
/// `/tmp/stigmer-<euid>`.
pub fn fallback_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/stigmer-{}", nix::unistd::geteuid()))
}

/// `$STIGMER_SOCKET`, else `/run/stigmer.sock` for root, else
/// `$XDG_RUNTIME_DIR/stigmer.sock`, else (no `XDG_RUNTIME_DIR`, as on a bare
/// SSH session) `/tmp/stigmer-$UID/stigmer.sock` in a private directory.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if is_root() {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("stigmer.sock"),
        None => fallback_dir().join(FALLBACK_SOCKET_NAME),
    }
}

/// True when `socket` lies in the current user's fallback directory, which
/// clients check with [`check_private_dir`] before connecting.
pub fn in_fallback_dir(socket: &Path) -> bool {
    socket.parent() == Some(fallback_dir().as_path())
}

/// Refuses `dir` unless it is a real directory (not a symlink), owned by
/// this process's effective uid, with mode 0700 exactly. The error says
/// what is wrong, for a person.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    // symlink_metadata: a symlink is reported as itself, never followed.
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link; it must be a directory of your own".into());
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    let own = nix::unistd::geteuid().as_raw();
    if meta.uid() != own {
        return Err(format!(
            "it is owned by uid {}, not by you (uid {own}); someone else may have created it to \
             intercept your connections",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o700 {
        return Err(format!(
            "its mode is {mode:04o}, not 0700 (fix it with chmod 700, or remove it)"
        ));
    }
    Ok(())
}

/// Creates `dir` with mode 0700 if it is missing (its parent must exist),
/// then applies [`check_private_dir`]: an existing directory that is not
/// private to this user is refused, never repaired or reused.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may have removed bits, never added any; set the mode
            // exactly anyway so the check below holds.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    check_private_dir(dir).map_err(|why| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing the socket directory {}: {why}", dir.display()),
        )
    })
}

/// `$STIGMER_DB`, else `/var/lib/stigmer/stigmer.db` for root, else
/// `$XDG_STATE_HOME/stigmer/stigmer.db` (`~/.local/state/stigmer/stigmer.db`).
pub fn default_db_path() -> PathBuf {
    if let Some(p) = std::env::var_os(DB_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if is_root() {
        return PathBuf::from(SYSTEM_DB);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("stigmer").join("stigmer.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_is_created_0700_and_others_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("private");
        ensure_private_dir(&dir).expect("created");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Idempotent on a good directory.
        ensure_private_dir(&dir).expect("reused");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = check_private_dir(&dir).expect_err("0755 refused");
        assert!(err.contains("0755"), "{err}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let err = check_private_dir(&link).expect_err("symlink refused");
        assert!(err.contains("symbolic link"), "{err}");
        assert!(ensure_private_dir(&link).is_err());
    }
}
