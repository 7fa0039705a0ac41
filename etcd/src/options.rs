//! The client's bounds (timeouts, keepalive, the largest response), each
//! default with its reasoning, so that no call can wait forever and no
//! answer can grow without limit.

use std::time::Duration;

/// How long opening a TCP connection to one member may take before the
/// client tries the next one. A live member on a LAN answers a SYN in well
/// under a millisecond; a dead host never does (no RST), so this bounds what
/// one dead endpoint costs a call.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one call may take in all, failover and retries included. A
/// leader election takes etcd about one election timeout (1 s by default)
/// plus a round trip; 5 s covers an election with room to retry, and stays
/// below etcd's own proposal timeout (5 s + 2 election timeouts), so the
/// client gives up before the server does.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 PING interval on a connection that has a call or a watch open.
/// etcd refuses pings more frequent than `--grpc-keepalive-min-time` (5 s by
/// default) and then closes the connection, so this stays above it.
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a PING may go unanswered before the connection (and every call
/// and watch on it) fails as unavailable: a member whose host died without a
/// TCP reset is noticed within interval + timeout (15 s by default).
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response the client decodes. etcd limits requests
/// (`--max-request-bytes`, 1.5 MiB) but not responses: a range over a large
/// prefix, or a watch catching up (etcd puts up to 1,000 revisions in one
/// watch response), can be much larger. 64 MiB holds 1,000 revisions of
/// 64 KiB each, far above stigmer's deltas; a larger response fails the call
/// (or ends the watch) with [`Error::Grpc`](crate::Error::Grpc), code
/// `OutOfRange`. Raise it for large values, or page ranges with a limit.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Requests a watch stream can have queued towards etcd (its create request,
/// progress requests). A progress request waits for room, bounded by the
/// request timeout.
pub(crate) const WATCH_REQUEST_QUEUE: usize = 4;

/// First pause after every endpoint failed in a way that is safe to retry
/// (refused connection, no leader), doubled on each round up to
/// [`RETRY_BACKOFF_MAX`], until the request timeout. An election ends in
/// about a second; these pauses catch its end without flooding the members.
pub(crate) const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(25);

/// See [`RETRY_BACKOFF_MIN`].
pub(crate) const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(400);

/// How a [`Client`](crate::Client) bounds its calls. `Options::default()`
/// holds the documented defaults; change a field with struct update syntax:
///
/// ```
/// # use std::time::Duration;
/// let options = stigmer_etcd::Options {
///     request_timeout: Duration::from_secs(2),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// [`DEFAULT_REQUEST_TIMEOUT`]. Also bounds opening a watch and sending
    /// a progress request; an open watch has no overall timeout.
    pub request_timeout: Duration,
    /// [`DEFAULT_KEEP_ALIVE_INTERVAL`].
    pub keep_alive_interval: Duration,
    /// [`DEFAULT_KEEP_ALIVE_TIMEOUT`].
    pub keep_alive_timeout: Duration,
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}
