//! Exit statuses and error reporting for every client command. Scripts
//! branch on the status (like systemctl's and curl's), so each kind of
//! failure has its own number, documented here, in `stigmer --help` and in
//! docs/OPERATIONS.md; the message goes to stderr as `error: ...`, with a
//! hint when the fix is known (no daemon running, an untrusted daemon).

use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::ExitCode;

use stigmer_client::Code;

/// Success (for `wait`: the condition holds; for `subscribe`: completed).
pub(super) const OK: u8 = 0;
/// Any failure not listed below (an internal error, a protocol error, an
/// unreadable input file, ...).
pub(super) const ERROR: u8 = 1;
/// A usage error: bad flags or values (clap's status), or a request the
/// daemon refused as malformed (INVALID_ARGUMENT, OUT_OF_RANGE).
pub(super) const USAGE: u8 = 2;
/// `subscribe`/`wait`: the execution failed.
pub(super) const FAILED: u8 = 3;
/// `subscribe`/`wait`: the execution was cancelled or terminated.
pub(super) const CANCELLED: u8 = 4;
/// The daemon is unreachable: no socket, nothing listening, the connection
/// lost, or the daemon UNAVAILABLE (shutting down, cannot write).
pub(super) const UNREACHABLE: u8 = 5;
/// NOT_FOUND: no such execution.
pub(super) const NOT_FOUND: u8 = 6;
/// Refused by a precondition: FAILED_PRECONDITION (the execution's phase is
/// final), ALREADY_EXISTS, or ABORTED (`append` at a stale offset or
/// revision); `wait`: the execution ended in a phase that can no longer
/// meet the condition.
pub(super) const PRECONDITION: u8 = 7;
/// Permission denied: the daemon refused this uid (PERMISSION_DENIED), or
/// the socket's mode does not let this user connect.
pub(super) const PERMISSION: u8 = 8;
/// The CLI refused the daemon: it runs as a uid that is neither root, nor
/// yours, nor --expected-uid, or the socket's directory is not private.
pub(super) const UNTRUSTED: u8 = 9;
/// A limit was reached (RESOURCE_EXHAUSTED, or a request over the frame
/// limit, not sent).
pub(super) const LIMIT: u8 = 10;
/// `wait --timeout` expired before the condition held.
pub(super) const TIMEOUT: u8 = 11;
/// `subscribe`/`wait`/`executions watch` gave up reconnecting after
/// --reconnect-timeout.
pub(super) const GAVE_UP: u8 = 12;

/// The table printed at the end of `stigmer --help`.
pub(super) const EXIT_STATUS_HELP: &str = "\
Exit status:
   0  success (subscribe: the execution completed; wait: the condition holds)
   1  any other error
   2  usage error, or a request the daemon refused as malformed
   3  subscribe/wait: the execution failed
   4  subscribe/wait: the execution was cancelled or terminated
   5  the daemon is unreachable (not running, connection lost, unavailable)
   6  not found
   7  refused by a precondition (the execution's phase is final; already exists)
   8  permission denied
   9  the daemon is not trusted (foreign uid, or an unsafe socket directory)
  10  a limit was reached
  11  wait: timed out
  12  subscribe/wait/executions watch: gave up reconnecting";

/// Everything a client command can fail with; printed as `error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No connection could be made to the socket (or it was refused).
    #[error("{}", connect_text(path, source))]
    Connect {
        /// The socket tried.
        path: PathBuf,
        /// Why it failed.
        source: stigmer_client::Error,
    },
    /// The daemon refused the request, or the connection failed.
    #[error(transparent)]
    Client(#[from] stigmer_client::Error),
    /// Writing the output failed (a closed pipe is not reported).
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// An execution could not be rendered as JSON.
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A bad value the CLI itself noticed (status 2).
    #[error("{0}")]
    Usage(String),
    /// A failure with its own exit status, already worded for a person.
    #[error("{message}")]
    Coded {
        /// The exit status.
        code: u8,
        /// What happened.
        message: String,
    },
    /// Anything else, already worded for a person (status 1).
    #[error("{0}")]
    Other(String),
}

/// `Connect`'s message: the client's own refusals already name the socket.
fn connect_text(path: &std::path::Path, source: &stigmer_client::Error) -> String {
    match source {
        stigmer_client::Error::UntrustedDaemon { .. }
        | stigmer_client::Error::UnsafeDirectory { .. } => source.to_string(),
        _ => format!(
            "cannot connect to the daemon at {}: {source}",
            path.display()
        ),
    }
}

impl CliError {
    /// The exit status for this error (see the table above).
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Connect { source, .. } | CliError::Client(source) => client_status(source),
            CliError::Usage(_) => USAGE,
            CliError::Coded { code, .. } => *code,
            CliError::Io(_) | CliError::Json(_) | CliError::Other(_) => ERROR,
        }
    }

    /// A line on how to fix it, when known.
    fn hint(&self) -> Option<String> {
        let source = match self {
            CliError::Connect { source, .. } | CliError::Client(source) => source,
            _ => return None,
        };
        match source {
            stigmer_client::Error::Io(e)
                if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
                    && matches!(self, CliError::Connect { .. }) =>
            {
                Some(
                    "no daemon is listening there. Start one with `stigmer daemon` (it stays in \
                     the foreground), or let systemd start it on demand: \
                     `systemctl --user enable --now stigmer.socket` (as root: \
                     `systemctl enable --now stigmer.socket`); see docs/OPERATIONS.md"
                        .into(),
                )
            }
            stigmer_client::Error::GaveUp { .. } => Some(
                "the daemon did not come back in time: start it (`stigmer daemon`, or \
                 `systemctl --user start stigmer.socket`), then subscribe (or watch) again \
                 with --from-revision set to the last revision printed, or allow longer \
                 with --reconnect-timeout"
                    .into(),
            ),
            stigmer_client::Error::Io(e) if e.kind() == ErrorKind::PermissionDenied => Some(
                "the socket's mode or group does not let you connect; ask for the daemon's \
                 group (--allow-group) or use your own daemon (--socket)"
                    .into(),
            ),
            _ => None,
        }
    }

    /// True for a write to a closed pipe (`stigmer ... | head`): not an
    /// error worth reporting, as git and ripgrep treat it.
    fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io(e) if e.kind() == ErrorKind::BrokenPipe)
    }
}

/// The exit status for a client library error.
pub(super) fn client_status(e: &stigmer_client::Error) -> u8 {
    use stigmer_client::Error as E;
    match e {
        E::Status { code, .. } => match code {
            Code::InvalidArgument | Code::OutOfRange => USAGE,
            Code::NotFound => NOT_FOUND,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => PRECONDITION,
            Code::PermissionDenied => PERMISSION,
            Code::ResourceExhausted => LIMIT,
            Code::Unavailable => UNREACHABLE,
            _ => ERROR,
        },
        E::Io(io) => match io.kind() {
            ErrorKind::PermissionDenied => PERMISSION,
            _ => UNREACHABLE,
        },
        E::Closed => UNREACHABLE,
        E::UntrustedDaemon { .. } | E::UnsafeDirectory { .. } => UNTRUSTED,
        E::FrameTooLarge { .. } => LIMIT,
        E::GaveUp { .. } => GAVE_UP,
        E::Protocol(_) => ERROR,
    }
}

/// Prints an error (and its hint) and turns the outcome into the exit
/// status; a closed output pipe exits quietly with success.
pub(super) fn report(result: Result<ExitCode, CliError>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_status())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_codes_map_to_their_statuses() {
        let status = |code| {
            client_status(&stigmer_client::Error::Status {
                code,
                message: String::new(),
            })
        };
        assert_eq!(status(Code::NotFound), NOT_FOUND);
        assert_eq!(status(Code::FailedPrecondition), PRECONDITION);
        assert_eq!(status(Code::InvalidArgument), USAGE);
        assert_eq!(status(Code::PermissionDenied), PERMISSION);
        assert_eq!(status(Code::Internal), ERROR);
        // Every status is distinct.
        let all = [
            OK,
            ERROR,
            USAGE,
            FAILED,
            CANCELLED,
            UNREACHABLE,
            NOT_FOUND,
            PRECONDITION,
            PERMISSION,
            UNTRUSTED,
            LIMIT,
            TIMEOUT,
            GAVE_UP,
        ];
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }
}
