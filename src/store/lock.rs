//! The database lock: a `flock` on `<db>.lock`, held for the daemon's
//! lifetime, so two daemons never share one database.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An exclusive lock on the database (a `flock` on `<db>.lock`), held for
/// the daemon's lifetime so two daemons never share one database.
pub(crate) struct DbLock {
    _lock: nix::fcntl::Flock<File>,
}

/// Creates the database's directory (mode 0700 when we create it, see
/// `crate::dirs`) and takes
/// the lock. Fails with a clear message when another daemon holds it.
pub(crate) fn lock_database(path: &Path) -> Result<DbLock, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::dirs::create(dir, "database directory")?;
    }
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => format!(
                "database {} is in use by another stigmer daemon (lock {})",
                path.display(),
                lock_path.display()
            ),
            other => format!("cannot lock {}: {other}", lock_path.display()),
        },
    )?;
    Ok(DbLock { _lock: lock })
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}
