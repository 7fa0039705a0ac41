//! `ApiError`: a gRPC canonical code and a message for a person. Every failure a
//! peer or the disk can cause becomes one of these and is sent back as an
//! `Error` reply; none becomes a panic.

use std::fmt;

pub(crate) use stigmer_proto::daemon::Code;

/// An error answer: a canonical code and a message a person understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of failure (the client maps it to an error class).
    pub(crate) code: Code,
    /// What happened, for a person.
    pub(crate) message: String,
}

macro_rules! constructors {
    ($($name:ident => $code:ident),* $(,)?) => {
        $(
            #[doc = concat!("A `", stringify!($code), "` status.")]
            pub(crate) fn $name(message: impl Into<String>) -> Self {
                Self::new(Code::$code, message)
            }
        )*
    };
}

impl ApiError {
    /// A status with any code.
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    constructors! {
        invalid_argument => InvalidArgument,
        not_found => NotFound,
        already_exists => AlreadyExists,
        resource_exhausted => ResourceExhausted,
        failed_precondition => FailedPrecondition,
        out_of_range => OutOfRange,
        unimplemented => Unimplemented,
        internal => Internal,
        unavailable => Unavailable,
    }

    /// The wire form.
    pub(crate) fn to_proto(&self) -> stigmer_proto::daemon::Error {
        stigmer_proto::daemon::Error {
            code: self.code as i32,
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str_name(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<rusqlite::Error> for ApiError {
    /// A storage failure. Disk full and read-only databases are UNAVAILABLE
    /// (retry once the operator fixes the disk); anything else is INTERNAL.
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Self::unavailable(format!("database disk is full: {err}")),
            Some(ErrorCode::ReadOnly) => Self::unavailable(format!("database is read-only: {err}")),
            Some(ErrorCode::CannotOpen) | Some(ErrorCode::SystemIoFailure) => {
                Self::unavailable(format!("database I/O failed: {err}"))
            }
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                Self::unavailable(format!("database busy: {err}"))
            }
            _ => Self::internal(format!("database error: {err}")),
        }
    }
}

impl From<prost::DecodeError> for ApiError {
    fn from(err: prost::DecodeError) -> Self {
        Self::internal(format!("stored record does not decode: {err}"))
    }
}

/// The most characters of a peer's input an error message quotes. Enough to
/// recognise what was sent; short enough that no answer can outgrow a frame
/// whatever the peer sent (a 4 MiB id is not echoed back in full), and that
/// logs stay readable.
pub(crate) const QUOTE_MAX_CHARS: usize = 64;

/// `s` quoted for an error message (Rust debug syntax), cut to its first
/// [`QUOTE_MAX_CHARS`] characters with its length in bytes when longer.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_bounded() {
        assert_eq!(quote("aex-1"), "\"aex-1\"");
        let long = "é".repeat(1 << 20);
        let quoted = quote(&long);
        assert!(quoted.len() < 200, "{}", quoted.len());
        assert!(quoted.ends_with("... (2097152 bytes)"), "{quoted}");
        assert_eq!(
            quote(&"x".repeat(QUOTE_MAX_CHARS)).len(),
            QUOTE_MAX_CHARS + 2
        );
    }
}
