//! The directories the daemon binds its socket in and keeps its database in:
//! what it accepts before it creates anything, and how it creates the
//! missing ones.
//!
//! Why: a directory another user controls lets that user replace the socket
//! (and receive every client's data) or the database. So a directory in use
//! must belong to this user or to root, must not be writable by others
//! unless it is sticky (as `/tmp` is: nobody can then replace another
//! user's file), and may be a symbolic link only if this user or root made
//! the link. The user's fallback directory (`/tmp/stigmer-<uid>/`, where a
//! user without `$XDG_RUNTIME_DIR` gets a socket) must be exactly private:
//! a real directory of this user's, mode 0700, as its clients check it.
//! Missing directories are created 0700; the system service's directories
//! (`/run`, `/var/lib/stigmer`) exist before it starts, with the modes
//! docs/OPERATIONS.md gives.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Refuses an existing directory `dir` that another user could change (see
/// the module docs); a missing one is fine (it will be created 0700).
/// `what` names it in the error ("socket directory").
pub(crate) fn check(dir: &Path, what: &str) -> Result<(), String> {
    let refuse = |why: String| format!("refusing the {what} {}: {why}", dir.display());
    if stigmer_client::paths::in_fallback_dir(&dir.join("x")) {
        return match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            _ => stigmer_client::paths::check_private_dir(dir).map_err(refuse),
        };
    }
    let me = nix::unistd::geteuid().as_raw();
    let trusted = |uid: u32| uid == me || uid == 0;
    let link = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot inspect it: {e}"))),
    };
    if link.file_type().is_symlink() && !trusted(link.uid()) {
        return Err(refuse(format!(
            "it is a symbolic link made by uid {}, neither you (uid {me}) nor root",
            link.uid()
        )));
    }
    let meta = std::fs::metadata(dir).map_err(|e| refuse(format!("cannot inspect it: {e}")))?;
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if !trusted(meta.uid()) {
        return Err(refuse(format!(
            "it is owned by uid {}, neither you (uid {me}) nor root",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode();
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(refuse(format!(
            "its mode {:04o} lets other users replace what is in it",
            mode & 0o7777
        )));
    }
    Ok(())
}

/// Creates `dir` and any missing parents with mode 0700 (parents that exist
/// are left as they are), then checks it as [`check`] does.
pub(crate) fn create(dir: &Path, what: &str) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the {what} {}: {e}", dir.display()))?;
    }
    check(dir, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_refused_when_open_to_others() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b");
        assert!(check(&dir, "test directory").is_ok(), "missing is fine");
        create(&dir, "test directory").expect("create");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(tmp.path().join("a"))
                .expect("stat")
                .permissions()
                .mode()
                & 0o777,
            0o700,
            "missing parents are 0700 too"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = check(&dir, "test directory").expect_err("world-writable");
        assert!(err.contains("lets other users"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(check(&dir, "test directory").is_ok(), "sticky, as /tmp");
        let file = tmp.path().join("f");
        std::fs::write(&file, b"").expect("write");
        assert!(check(&file, "test directory").is_err(), "not a directory");
    }
}
