//! Wires the daemon together. (Placeholder until the core lands.)

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::DaemonArgs;

/// Runs the daemon in the foreground until SIGTERM/SIGINT; builds its own
/// tokio runtime. Returns the process exit code.
pub fn run(socket: PathBuf, args: DaemonArgs) -> ExitCode {
    let _ = (socket, args);
    ExitCode::FAILURE
}
