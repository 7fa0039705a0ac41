//! The counters the server and the streams keep, for `stigmer status` and
//! the metrics. They live here, below both the server (which counts
//! connections) and the commands (whose streams count subscriptions), so
//! the status report reads them without importing either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The server's connection counters, for `stigmer status`, the metrics
/// and `--idle-exit`.
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    /// Connections open now.
    pub(crate) connections_open: AtomicUsize,
    /// Connections being served now, per connection shard (index = shard
    /// number, see `server::shards`): how evenly accept order spread them.
    pub(crate) shard_connections: Box<[AtomicUsize]>,
    /// Connections accepted since start.
    pub(crate) connections_total: AtomicU64,
    /// Connections refused at `--max-connections`.
    pub(crate) rejected_max_connections: AtomicU64,
    /// Connections refused at `--max-connections-per-uid`.
    pub(crate) rejected_per_uid: AtomicU64,
    /// Connections refused by the access policy.
    pub(crate) rejected_permission: AtomicU64,
    /// Connections closed because their peer stopped reading.
    pub(crate) slow_consumer_disconnects: AtomicU64,
    /// Connections open now, per uid (for `--max-connections-per-uid`).
    pub(crate) per_uid: Mutex<HashMap<u32, usize>>,
    /// When the last connection closed, or start-up (for `--idle-exit`).
    pub(crate) idle_since: Mutex<Option<Instant>>,
}

impl ConnectionStats {
    /// Counters for a daemon with `shards` connection shards.
    pub(crate) fn with_shards(shards: usize) -> Self {
        ConnectionStats {
            shard_connections: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            ..ConnectionStats::default()
        }
    }

    /// Counts a connection of `uid` in, unless that uid is at `limit`.
    pub(crate) fn enter_uid(&self, uid: u32, limit: usize) -> bool {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_uid.entry(uid).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts a connection of `uid` out.
    pub(crate) fn leave_uid(&self, uid: u32) {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_uid.get_mut(&uid) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_uid.remove(&uid);
            }
        }
    }

    /// Seconds since the daemon last had no connection, if it has none now.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
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

/// The streams' counters.
#[derive(Debug, Default)]
pub(crate) struct StreamStats {
    /// Subscriptions open now.
    pub(crate) subscriptions_open: AtomicUsize,
    /// RESYNC events sent (history no longer reached back).
    pub(crate) resyncs: AtomicU64,
}
