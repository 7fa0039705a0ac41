//! What can go wrong talking to etcd, as the few cases a caller handles
//! differently (retry later, rebuild from a snapshot, split the write), and
//! how a gRPC status from etcd or from the transport becomes one of them.

use std::error::Error as _;

pub use tonic::Code;

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed call or watch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No member could serve the call: none reachable, none with a leader,
    /// or no answer within the request timeout. Transient: retry later.
    ///
    /// For a write (put, delete, txn, compact) this does NOT mean the write
    /// was not applied: the connection may have broken, or the timeout
    /// expired, after etcd received it. A caller that must not apply a change
    /// twice finds out by reading (for example a request id stored with the
    /// change) before it retries.
    #[error("etcd unavailable: {reason}")]
    Unavailable {
        /// What failed, for logs (per endpoint when several were tried).
        reason: String,
    },

    /// The revision asked for (a range at a revision) was compacted: etcd no
    /// longer keeps it. The caller must read at the current revision and
    /// rebuild whatever it derived from the history.
    #[error("etcd: revision {revision} has been compacted (etcd keeps no history below its compaction revision)")]
    Compacted {
        /// The revision the request asked for; 0 when not known.
        revision: i64,
    },

    /// The revision asked for is above etcd's current revision.
    #[error("etcd: revision {revision} is a future revision (above etcd's current revision)")]
    FutureRevision {
        /// The revision the request asked for; 0 when not known.
        revision: i64,
    },

    /// etcd refused the request for its size: over `--max-request-bytes`
    /// (1.5 MiB by default) for the whole request, keys and values included.
    /// Retrying cannot succeed; split the write or refuse it upstream.
    #[error("etcd: request too large (etcd's limit is --max-request-bytes, 1.5 MiB by default): {message}")]
    RequestTooLarge {
        /// etcd's message.
        message: String,
    },

    /// Any other refusal, with etcd's gRPC status code and message (for
    /// example `ResourceExhausted`, "etcdserver: mvcc: database space
    /// exceeded").
    #[error("etcd: {code:?}: {message}")]
    Grpc {
        /// The gRPC status code.
        code: Code,
        /// etcd's (or the transport's) message.
        message: String,
    },

    /// An endpoint given to [`Client::connect`](crate::Client::connect) (or
    /// [`Client::status`](crate::Client::status)) is not a usable URL.
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is refused.
        reason: String,
    },
}

impl Error {
    /// Whether the call may succeed if made again later (the cluster was
    /// unavailable), as opposed to a refusal that will repeat.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// Fills in the revision a [`Compacted`](Error::Compacted) or
    /// [`FutureRevision`](Error::FutureRevision) refers to, which etcd's
    /// message does not carry.
    pub(crate) fn at_revision(self, asked: i64) -> Error {
        match self {
            Error::Compacted { revision: 0 } => Error::Compacted { revision: asked },
            Error::FutureRevision { revision: 0 } => Error::FutureRevision { revision: asked },
            other => other,
        }
    }
}

// etcd's messages for the statuses mapped to their own variant
// (api/v3rpc/rpctypes/error.go in etcd).
const MSG_TOO_LARGE: &str = "etcdserver: request is too large";
const MSG_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const MSG_FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
const MSG_NO_LEADER: &str = "etcdserver: no leader";
const MSG_LEADER_CHANGED: &str = "etcdserver: leader changed";
// Also the prefix of "...: possibly due to previous leader failure" and
// "...: possibly due to connection lost".
const MSG_TIMED_OUT: &str = "etcdserver: request timed out";
// A request over the gRPC server's receive limit (--max-request-bytes plus
// 512 KiB of gRPC overhead) is refused by grpc-go itself, code
// ResourceExhausted, before etcd sees it.
const MSG_GRPC_TOO_LARGE: &str = "grpc: received message larger than max";

/// Whether a failed request may have reached etcd, which decides whether it
/// may be sent again to another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Reads (range, status, member list, opening a watch): sending one
    /// again is harmless, so any unavailability moves on to the next member.
    Read,
    /// Writes (put, delete, txn, compact): sent again only when etcd
    /// certainly did not apply it (the connection was never made, or the
    /// member refused it for want of a leader before handling it).
    Write,
}

/// A failed attempt on one member: the error, and whether the client may
/// try the same request on another member.
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry: bool,
}

/// Classifies a status returned by tonic: from etcd (a `grpc-status`), or
/// made by tonic from a transport error (then it carries a source).
pub(crate) fn classify(status: &tonic::Status, kind: Kind) -> Failure {
    let message = status.message();
    let code = status.code();
    let unavailable = |retry: bool| Failure {
        error: Error::Unavailable {
            reason: describe(status),
        },
        retry,
    };
    if never_sent(status) {
        return unavailable(true);
    }
    if message.starts_with(MSG_TOO_LARGE) || message.starts_with(MSG_GRPC_TOO_LARGE) {
        return Failure {
            error: Error::RequestTooLarge {
                message: message.to_owned(),
            },
            retry: false,
        };
    }
    if message.starts_with(MSG_COMPACTED) {
        return Failure {
            error: Error::Compacted { revision: 0 },
            retry: false,
        };
    }
    if message.starts_with(MSG_FUTURE_REV) {
        return Failure {
            error: Error::FutureRevision { revision: 0 },
            retry: false,
        };
    }
    // Refused by etcd's gRPC interceptor before the request is handled
    // (the client asks for it with the `hasleader` metadata): not applied.
    if message.starts_with(MSG_NO_LEADER) {
        return unavailable(true);
    }
    if message.starts_with(MSG_LEADER_CHANGED) || message.starts_with(MSG_TIMED_OUT) {
        return unavailable(kind == Kind::Read);
    }
    match code {
        Code::Unavailable | Code::DeadlineExceeded => unavailable(kind == Kind::Read),
        // A status tonic made from a local error (a connection reset, a
        // stream broken by the member's death) rather than one etcd sent.
        Code::Unknown | Code::Internal | Code::Cancelled if status.source().is_some() => {
            unavailable(kind == Kind::Read)
        }
        _ => Failure {
            error: Error::Grpc {
                code,
                message: message.to_owned(),
            },
            retry: false,
        },
    }
}

/// True when the request failed while connecting, so it was never sent.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A status's message with its source chain, e.g. "tcp connect error:
/// Connection refused (os error 111)".
fn describe(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = status.source();
    while let Some(err) = source {
        let more = err.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = err.source();
    }
    if text.is_empty() {
        text = format!("{:?}", status.code());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_messages_map_to_their_variants() {
        let s = |code, msg: &str| tonic::Status::new(code, msg);
        let e = |status| classify(&status, Kind::Write).error;
        assert!(matches!(
            e(s(Code::InvalidArgument, MSG_TOO_LARGE)),
            Error::RequestTooLarge { .. }
        ));
        assert!(matches!(
            e(s(
                Code::ResourceExhausted,
                "grpc: received message larger than max (3145738 vs. 2097152)"
            )),
            Error::RequestTooLarge { .. }
        ));
        assert_eq!(
            e(s(Code::OutOfRange, MSG_COMPACTED)).at_revision(7),
            Error::Compacted { revision: 7 }
        );
        assert_eq!(
            e(s(Code::OutOfRange, MSG_FUTURE_REV)).at_revision(9),
            Error::FutureRevision { revision: 9 }
        );
        for msg in [
            MSG_NO_LEADER,
            MSG_LEADER_CHANGED,
            MSG_TIMED_OUT,
            "etcdserver: request timed out, possibly due to previous leader failure",
        ] {
            assert!(e(s(Code::Unavailable, msg)).is_unavailable(), "{msg}");
        }
        assert_eq!(
            e(s(
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            )),
            Error::Grpc {
                code: Code::ResourceExhausted,
                message: "etcdserver: mvcc: database space exceeded".into()
            }
        );
    }

    #[test]
    fn only_writes_that_were_certainly_not_applied_are_retried() {
        let retry = |msg: &str, kind| classify(&tonic::Status::unavailable(msg), kind).retry;
        assert!(retry(MSG_NO_LEADER, Kind::Write));
        assert!(!retry(MSG_TIMED_OUT, Kind::Write));
        assert!(retry(MSG_TIMED_OUT, Kind::Read));
        assert!(!retry("connection reset", Kind::Write));
        assert!(retry("connection reset", Kind::Read));
    }
}
