//! The client's error type. The daemon's answers carry gRPC canonical codes
//! (docs/PROTOCOL.md, "Errors"); callers branch on them (`err.code()`), so
//! they are kept typed rather than folded into strings.

use std::time::Duration;

use crate::proto::daemon::Code;

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon answered with an error: a request error on this call, or a
    /// connection error (`Response.id == 0`) that closed the connection while
    /// the call was waiting. Displays as `NOT_FOUND: execution aex-… not found`.
    #[error("{}: {message}", code.as_str_name())]
    Status {
        /// The protocol's code (gRPC canonical numbers); a code this client
        /// does not know is reported as [`Code::Unknown`].
        code: Code,
        /// The daemon's message, meant for a person.
        message: String,
    },
    /// The socket could not be opened, read or written.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something this client cannot make sense of (a frame
    /// that does not decode, a reply of the wrong kind, ...). Points at a bug
    /// on one side or the other.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A request encoded to more bytes than the frame limit; it was not sent
    /// (the daemon would close the connection on it).
    #[error("request of {len} bytes exceeds the frame limit of {max} bytes; not sent")]
    FrameTooLarge {
        /// The encoded body's length.
        len: usize,
        /// The limit in force ([`crate::Config::max_frame_length`]).
        max: usize,
    },
    /// The connection closed before the reply arrived. The request may or
    /// may not have been applied.
    #[error("connection to the daemon closed")]
    Closed,
    /// The process listening on the socket is not one this client trusts:
    /// its uid (read from the connected socket's peer credentials) is
    /// neither root, nor this process's effective uid, nor
    /// [`crate::Config::expected_uid`]. Nothing was sent to it. Someone else
    /// may be squatting on the socket path (docs/SECURITY.md).
    #[error(
        "refusing the daemon at {path}: it runs as uid {found}, which is neither root nor you (uid {own}); \
         nothing was sent. If you trust uid {found}, pass --expected-uid {found} or set STIGMER_EXPECTED_UID={found}"
    )]
    UntrustedDaemon {
        /// The socket connected to.
        path: String,
        /// The uid of the process that listens on it.
        found: u32,
        /// This process's effective uid.
        own: u32,
    },
    /// The socket's directory is not private to this user (the fallback
    /// `/tmp/stigmer-<uid>/` must be a real directory owned by the user
    /// with mode 0700); the client does not connect through it.
    #[error("refusing the socket directory {path}: {why}")]
    UnsafeDirectory {
        /// The directory.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A subscription could not reconnect within
    /// [`crate::Reconnect::give_up_after`].
    #[error("gave up reconnecting after {elapsed:?}: {last}")]
    GaveUp {
        /// How long the stream had been disconnected.
        elapsed: Duration,
        /// The last reconnection error.
        last: Box<Error>,
    },
}

impl Error {
    /// The protocol code when the daemon answered with an error (for
    /// [`Error::GaveUp`], the code of the last attempt's error, if any).
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            Error::GaveUp { last, .. } => last.code(),
            _ => None,
        }
    }

    /// True when this is a daemon error with code `code`.
    pub fn is(&self, code: Code) -> bool {
        self.code() == Some(code)
    }

    /// Builds [`Error::Status`] from the wire's `Error` message.
    pub(crate) fn from_wire(err: crate::proto::daemon::Error) -> Self {
        Error::Status {
            code: Code::try_from(err.code).unwrap_or(Code::Unknown),
            message: err.message,
        }
    }

    /// True when waiting and trying again may succeed: the connection broke,
    /// or the daemon is shutting down or cannot write right now.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Error::Io(_) | Error::Closed => true,
            Error::Status { code, .. } => *code == Code::Unavailable,
            _ => false,
        }
    }

    /// A copy for fanning one connection failure out to every waiting call
    /// (`std::io::Error` is not `Clone`, so it is rebuilt from its kind and
    /// text).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Status { code, message } => Error::Status {
                code: *code,
                message: message.clone(),
            },
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::FrameTooLarge { len, max } => Error::FrameTooLarge {
                len: *len,
                max: *max,
            },
            Error::Closed => Error::Closed,
            Error::UntrustedDaemon { path, found, own } => Error::UntrustedDaemon {
                path: path.clone(),
                found: *found,
                own: *own,
            },
            Error::UnsafeDirectory { path, why } => Error::UnsafeDirectory {
                path: path.clone(),
                why: why.clone(),
            },
            Error::GaveUp { elapsed, last } => Error::GaveUp {
                elapsed: *elapsed,
                last: Box::new(last.duplicate()),
            },
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_displays_code_name_and_message() {
        let e = Error::from_wire(crate::proto::daemon::Error {
            code: Code::NotFound as i32,
            message: "execution aex-1 not found".into(),
        });
        assert_eq!(e.to_string(), "NOT_FOUND: execution aex-1 not found");
        assert!(e.is(Code::NotFound));
    }

    #[test]
    fn unknown_code_is_unknown() {
        let e = Error::from_wire(crate::proto::daemon::Error {
            code: 999,
            message: String::new(),
        });
        assert_eq!(e.code(), Some(Code::Unknown));
    }
}
