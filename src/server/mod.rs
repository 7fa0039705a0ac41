//! The server: accepts connections on the Unix socket and runs each one.
//!
//! - [`listener`]: binds the socket path (replacing a stale file only when
//!   nothing answers on it) with owner-only permissions.
//! - `admission`: who may stay connected: the access policy on the peer's
//!   credentials ([`peer`]) and the per-uid limit, and the counts every
//!   connection is in until it closes.
//! - [`connection`]: one connection = a reader loop that decodes and
//!   dispatches requests (`crate::cmd`), and an outbox of outgoing frames
//!   (`crate::wire`). The reader never waits on the writer.
//! - [`shards`]: the connection workers, each a single-worker runtime with
//!   its own I/O driver; connections are spread over them by accept order.
//!
//! `run` takes the shutdown signal as a token (as mini-redis's
//! `server::run` takes a future), so tests and the daemon drive it alike.

mod admission;
pub(crate) mod connection;
pub(crate) mod listener;
pub(crate) mod peer;
pub(crate) mod shards;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::Context;
use crate::metrics::ConnectionStats;
use crate::poll::ReadPoll;

/// After accept fails (e.g. EMFILE: out of file descriptors), wait this long
/// before trying again: long enough not to spin, short enough that service
/// resumes as soon as descriptors free up (mini-redis backs off to 64 s,
/// which leaves clients hanging far too long).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Per-connection limits (flags in `config::DaemonArgs`).
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) max_frame_length: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_uid: usize,
    pub(crate) connection_queue: usize,
    /// None: never disconnect a slow consumer.
    pub(crate) slow_consumer_timeout: Option<Duration>,
}

/// What every connection of the server shares.
pub(crate) struct Shared {
    /// What commands act on (`cmd::Context`).
    pub(crate) context: Arc<Context>,
    /// Per-connection limits.
    pub(crate) limits: Limits,
    /// Who may connect.
    pub(crate) policy: peer::AccessPolicy,
    /// Connection counters.
    pub(crate) stats: Arc<ConnectionStats>,
    /// The connection shards (see [`shards`]), by shard number; the first
    /// is the runtime the daemon started in. Never empty.
    pub(crate) shards: Vec<tokio::runtime::Handle>,
    /// Cancelled when the daemon begins shutting down.
    pub(crate) shutdown: CancellationToken,
    /// The workers' poll for a lone peer's next request (`--reader-poll-us`).
    pub(crate) read_poll: Arc<ReadPoll>,
}

/// Accepts connections until `shared.shutdown` is cancelled. Connection
/// tasks are spawned on `tracker`, so the caller can wait for them to finish
/// their streams' END events.
pub(crate) async fn run(listener: UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let mut next_id: u64 = 1;
    for (shard, handle) in shared.shards.iter().enumerate() {
        let poll = shared.read_poll.clone().run(shard, shared.shutdown.clone());
        tracker.spawn_on(poll, handle);
    }
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
                shared
                    .stats
                    .connections_total
                    .fetch_add(1, Ordering::Relaxed);
                let open = shared.stats.connections_open.fetch_add(1, Ordering::AcqRel);
                if open >= shared.limits.max_connections {
                    shared.stats.connections_open.fetch_sub(1, Ordering::AcqRel);
                    shared
                        .stats
                        .rejected_max_connections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        limit = shared.limits.max_connections,
                        "connection refused: too many connections"
                    );
                    let err = crate::protocol::ApiError::resource_exhausted(format!(
                        "too many connections (limit {}); try again later",
                        shared.limits.max_connections
                    ));
                    tracker.spawn(admission::reject(stream, err));
                    continue;
                }
                spawn_connection(&tracker, &shared, id, stream);
            }
            Err(err) => {
                tracing::error!(%err, "accept failed; pausing before the next accept");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Runs connection `id` on its shard (see [`shards`]). The socket moves
/// from this runtime's I/O driver to the shard's, where the connection
/// registers it again.
fn spawn_connection(tracker: &TaskTracker, shared: &Arc<Shared>, id: u64, stream: UnixStream) {
    let shard = shards::shard_of(id, shared.shards.len());
    if shard == 0 {
        // The first shard is this runtime: nothing to move.
        tracker.spawn(connection::serve(id, shard, stream, shared.clone()));
        return;
    }
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!(id, %err, "cannot hand the connection to its shard; closing");
            admission::closed_before_serving(shared.clone());
            return;
        }
    };
    let handle = &shared.shards[shard];
    tracker.spawn_on(
        connection::serve_moved(id, shard, stream, shared.clone()),
        handle,
    );
}
