//! Living under a service manager.
//!
//! - [`activation`]: takes the listening socket from systemd (LISTEN_FDS)
//!   or launchd (`launch_activate_socket`) when the daemon was started on
//!   first connection; otherwise the daemon binds the path itself.
//! - [`notify`]: tells systemd READY / STATUS / STOPPING / WATCHDOG.

pub(crate) mod activation;
pub(crate) mod launchd;
pub(crate) mod notify;
