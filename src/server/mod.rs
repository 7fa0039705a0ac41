//! The server: accepts connections on the Unix socket and runs each one.
//!
//! - [`listener`]: binds the socket path (replacing a stale file only when
//!   nothing answers on it) with owner-only permissions.
//! - [`connection`]: one connection = a reader loop that decodes and
//!   dispatches requests, and an [`outbox`] of outgoing frames. The reader
//!   never waits on the writer.
//! - [`socket`]: a connection's read half (registered for reading only)
//!   and write half (plain non-blocking writes from any thread).
//! - [`outbox`]: a bounded, ordered frame queue any thread appends to; a
//!   frame with nothing queued ahead is written on the appending thread (no
//!   task wake-up), the rest by a flusher task when the peer reads slowly.
//! - [`read_poll`]: keeps a worker awake while a lone peer sends requests
//!   close together, so the next one is read without a wake-up.
//! - [`shards`]: the connection workers, each a single-worker runtime with
//!   its own I/O driver; connections are spread over them by accept order.
//!
//! `run` takes the shutdown signal as a token (as mini-redis's
//! `server::run` takes a future), so tests and the daemon drive it alike.

pub mod connection;
pub mod listener;
pub mod metrics_http;
pub mod outbox;
pub mod peer;
pub mod read_poll;
pub mod shards;
pub mod socket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
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
    pub max_connections_per_uid: usize,
    pub max_subscriptions_per_connection: usize,
    pub connection_queue: usize,
    /// None: never disconnect a slow consumer.
    pub slow_consumer_timeout: Option<Duration>,
}

/// Counters for `stigmer status`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections open now.
    pub connections_open: AtomicUsize,
    /// Connections being served now, per connection shard (index = shard
    /// number, see [`shards`]): how evenly accept order spread them.
    pub shard_connections: Box<[AtomicUsize]>,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused at `--max-connections`.
    pub rejected_max_connections: AtomicU64,
    /// Connections refused at `--max-connections-per-uid`.
    pub rejected_per_uid: AtomicU64,
    /// Connections refused by the access policy.
    pub rejected_permission: AtomicU64,
    /// Connections closed because their peer stopped reading.
    pub slow_consumer_disconnects: AtomicU64,
    /// Subscriptions open now.
    pub subscriptions_open: AtomicUsize,
    /// RESYNC events sent (history no longer reached back).
    pub resyncs: AtomicU64,
    /// Connections open now, per uid (for `--max-connections-per-uid`).
    pub per_uid: Mutex<HashMap<u32, usize>>,
    /// When the last connection closed, or start-up (for `--idle-exit`).
    pub idle_since: Mutex<Option<Instant>>,
}

impl ServerStats {
    /// Counters for a daemon with `shards` connection shards.
    pub fn with_shards(shards: usize) -> Self {
        ServerStats {
            shard_connections: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            ..ServerStats::default()
        }
    }

    /// Counts a connection of `uid` in, unless that uid is at `limit`.
    pub fn enter_uid(&self, uid: u32, limit: usize) -> bool {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_uid.entry(uid).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts a connection of `uid` out.
    pub fn leave_uid(&self, uid: u32) {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_uid.get_mut(&uid) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_uid.remove(&uid);
            }
        }
    }

    /// Seconds since the daemon last had no connection, if it has none now.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.connections_open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        since.map(|t| t.elapsed())
    }

    pub(crate) fn mark_idle_now(&self) {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }
}

/// What every connection shares.
pub struct Shared {
    /// Submits writes to the writer thread.
    pub writer: Writer,
    /// Runs reads on the read pool.
    pub reader: Reader,
    /// Committed revision counters.
    pub revisions: Arc<Revisions>,
    /// The writer's counters and commit latency.
    pub writer_stats: Arc<crate::store::WriterStats>,
    /// Fans committed changes out to subscribers.
    pub broker: Arc<Broker>,
    /// Limits.
    pub limits: Limits,
    /// Who may connect.
    pub policy: peer::AccessPolicy,
    /// When the daemon started (for `status`).
    pub started: Instant,
    /// Where it listens and stores (for `status`).
    pub socket: std::path::PathBuf,
    pub database: std::path::PathBuf,
    /// `normal` or `full`.
    pub durability: &'static str,
    /// The connection shards (see [`shards`]), by shard number; the first
    /// is the runtime the daemon started in. Never empty.
    pub shards: Vec<tokio::runtime::Handle>,
    /// Cancelled when the daemon begins shutting down.
    pub shutdown: CancellationToken,
    /// Counters.
    pub stats: ServerStats,
    /// The workers' poll for a lone peer's next request (`--reader-poll-us`).
    pub read_poll: Arc<read_poll::ReadPoll>,
}

/// Accepts connections until `shared.shutdown` is cancelled. Connection
/// tasks are spawned on `tracker`, so the caller can wait for them to finish
/// their streams' END events.
pub async fn run(listener: UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
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
                    let status = crate::protocol::Status::resource_exhausted(format!(
                        "too many connections (limit {}); try again later",
                        shared.limits.max_connections
                    ));
                    tracker.spawn(connection::reject(stream, status));
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
            connection::closed_before_serving(shared.clone());
            return;
        }
    };
    let handle = &shared.shards[shard];
    tracker.spawn_on(
        connection::serve_moved(id, shard, stream, shared.clone()),
        handle,
    );
}
