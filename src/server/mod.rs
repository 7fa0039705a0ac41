//! The server: accepts connections on the Unix socket and runs each one.
//!
//! - [`listener`]: binds the socket path (replacing a stale file only when
//!   nothing answers on it) with owner-only permissions.
//! - [`connection`]: one connection = a reader loop that decodes and
//!   dispatches requests, and a writer task that drains a bounded queue of
//!   outgoing frames to the socket. The reader never waits on the writer.
//!
//! `run` takes the shutdown signal as a token (as mini-redis's
//! `server::run` takes a future), so tests and the daemon drive it alike.

pub mod connection;
pub mod listener;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::store::{Reader, Revisions, Writer};

/// After accept fails (e.g. EMFILE: out of file descriptors), wait this long
/// before trying again: long enough not to spin, short enough that service
/// resumes as soon as descriptors free up (mini-redis backs off to 64 s,
/// which leaves clients hanging far too long).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Per-connection limits (flags in `config::DaemonArgs`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_frame_length: usize,
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    pub connection_queue: usize,
}

/// Counters for `stigmer status`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections open now.
    pub connections_open: AtomicUsize,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused at the limit.
    pub connections_rejected: AtomicU64,
    /// Subscriptions open now.
    pub subscriptions_open: AtomicUsize,
}

/// What every connection shares.
pub struct Shared {
    /// Submits writes to the writer thread.
    pub writer: Writer,
    /// Runs reads on the read pool.
    pub reader: Reader,
    /// Committed revision counters.
    pub revisions: Arc<Revisions>,
    /// Fans committed changes out to subscribers.
    pub broker: Arc<Broker>,
    /// Limits.
    pub limits: Limits,
    /// Cancelled when the daemon begins shutting down.
    pub shutdown: CancellationToken,
    /// Counters.
    pub stats: ServerStats,
}

/// Accepts connections until `shared.shutdown` is cancelled. Connection
/// tasks are spawned on `tracker`, so the caller can wait for them to finish
/// their streams' END events.
pub async fn run(listener: UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let mut next_id: u64 = 1;
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            // Waits for the next client; fails on resource exhaustion (fds).
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _addr)) => {
                let id = next_id;
                next_id += 1;
                shared.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                let open = shared.stats.connections_open.fetch_add(1, Ordering::AcqRel);
                if open >= shared.limits.max_connections {
                    shared.stats.connections_open.fetch_sub(1, Ordering::AcqRel);
                    shared.stats.connections_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        limit = shared.limits.max_connections,
                        "connection refused: too many connections"
                    );
                    tracker.spawn(connection::reject(stream, shared.limits.max_connections));
                    continue;
                }
                tracker.spawn(connection::serve(id, stream, shared.clone()));
            }
            Err(err) => {
                tracing::error!(%err, "accept failed; pausing before the next accept");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}
