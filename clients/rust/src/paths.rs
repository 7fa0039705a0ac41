//! Where the daemon's socket and database live by default. The daemon and
//! every client resolve paths with these functions, so a client finds the
//! daemon without configuration.

use std::path::PathBuf;

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

/// `$STIGMER_SOCKET`, else `/run/stigmer.sock` for root, else
/// `$XDG_RUNTIME_DIR/stigmer.sock` (falling back to `/tmp/stigmer-$UID.sock`
/// when `XDG_RUNTIME_DIR` is unset, as on a bare SSH session).
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if is_root() {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("stigmer.sock"),
        None => PathBuf::from(format!("/tmp/stigmer-{}.sock", nix::unistd::geteuid())),
    }
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
