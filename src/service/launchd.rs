//! launchd socket activation (macOS): `launch_activate_socket(name)` hands
//! over the sockets of the plist's `Sockets` entry. Its errors say whether
//! to fall back to binding ourselves: ENOENT (the name is not in the plist)
//! and ESRCH (we were not started by launchd) mean "not activated"; anything
//! else is a real failure. The mapping is plain code, tested on every OS;
//! only the call itself is macOS-only.

use std::os::unix::net::UnixListener;

/// The `Sockets` key in packaging/launchd/ai.stigmer.daemon.plist.
pub(crate) const SOCKET_NAME: &str = "stigmer";

/// What an error number from `launch_activate_socket` means for us.
// Called only on macOS; the mapping is tested on every OS.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LaunchdError {
    /// Not launchd-managed, or no such socket: bind the path ourselves.
    NotActivated,
    /// A real failure to report.
    Failed(String),
}

/// Maps `launch_activate_socket`'s return code.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn map_error(code: i32) -> LaunchdError {
    match nix::errno::Errno::from_raw(code) {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH => LaunchdError::NotActivated,
        other => LaunchdError::Failed(format!("launch_activate_socket failed: {other}")),
    }
}

/// The activated listener, `Ok(None)` when not launchd-activated.
#[cfg(target_os = "macos")]
pub(crate) fn activate_socket(name: &str) -> Result<Option<UnixListener>, String> {
    use std::ffi::CString;
    use std::os::fd::FromRawFd;
    use std::os::raw::{c_char, c_int, c_void};

    extern "C" {
        fn launch_activate_socket(
            name: *const c_char,
            fds: *mut *mut c_int,
            cnt: *mut usize,
        ) -> c_int;
        fn free(ptr: *mut c_void);
    }
    let cname = CString::new(name).map_err(|_| "socket name has a NUL byte".to_string())?;
    let mut fds: *mut c_int = std::ptr::null_mut();
    let mut count: usize = 0;
    // SAFETY: `cname` is a valid NUL-terminated string; `fds` and `count` are
    // valid out-pointers that launchd fills on success.
    let rc = unsafe { launch_activate_socket(cname.as_ptr(), &mut fds, &mut count) };
    if rc != 0 {
        return match map_error(rc) {
            LaunchdError::NotActivated => Ok(None),
            LaunchdError::Failed(msg) => Err(msg),
        };
    }
    // SAFETY: on success launchd returned `count` fds in a malloc'd array
    // that we now own and must free.
    let list: Vec<c_int> = unsafe { std::slice::from_raw_parts(fds, count).to_vec() };
    // SAFETY: `fds` came from launchd's malloc and is freed exactly once.
    unsafe { free(fds as *mut c_void) };
    let mut listeners = list.into_iter().map(|fd| {
        // SAFETY: launchd handed these fds to this process; we own them now.
        unsafe { UnixListener::from_raw_fd(fd) }
    });
    let listener = listeners
        .next()
        .ok_or_else(|| "launchd passed no socket".to_string())?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("launchd socket: {e}"))?;
    Ok(Some(listener))
}

/// Not on macOS: never launchd-activated.
#[cfg(not(target_os = "macos"))]
pub(crate) fn activate_socket(_name: &str) -> Result<Option<UnixListener>, String> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_mapping() {
        assert_eq!(
            map_error(nix::errno::Errno::ENOENT as i32),
            LaunchdError::NotActivated
        );
        assert_eq!(
            map_error(nix::errno::Errno::ESRCH as i32),
            LaunchdError::NotActivated
        );
        assert!(
            matches!(map_error(nix::errno::Errno::EPERM as i32), LaunchdError::Failed(m) if m.contains("launch_activate_socket"))
        );
        assert!(matches!(activate_socket(SOCKET_NAME), Ok(None)));
    }
}
