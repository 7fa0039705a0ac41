//! The daemon's report on itself: identity, load and counters, gathered
//! from the parts that count them, for the `status` command, systemd's
//! STATUS= line and the Prometheus exposition.
//!
//! - [`Sources`]: handles on every counter, built once at start-up.
//! - [`daemon_status`]: the `status` reply.
//! - [`prometheus`]: the text exposition.
//! - [`http`]: the optional loopback `/metrics` endpoint.

pub(crate) mod http;
pub(crate) mod prometheus;

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use stigmer_proto::daemon::DaemonStatus;
use stigmer_proto::frame::PROTOCOL_VERSION;

use crate::broker::Broker;
use crate::metrics::{ConnectionStats, StreamStats};
use crate::model::Revisions;
use crate::poll::ReadPoll;
use crate::writer::WriterStats;

/// Where the report's figures come from.
pub(crate) struct Sources {
    /// When the daemon started.
    pub(crate) started: Instant,
    /// The socket it serves and the database it stores in.
    pub(crate) socket: PathBuf,
    pub(crate) database: PathBuf,
    /// `normal` or `full`.
    pub(crate) durability: &'static str,
    pub(crate) revisions: Arc<Revisions>,
    pub(crate) writer: Arc<WriterStats>,
    pub(crate) broker: Arc<Broker>,
    pub(crate) connections: Arc<ConnectionStats>,
    pub(crate) streams: Arc<StreamStats>,
    pub(crate) read_poll: Arc<ReadPoll>,
    /// The cluster mode's log, when `--etcd` is given.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The `status` reply, with the Prometheus exposition when asked.
pub(crate) fn daemon_status(sources: &Sources, with_prometheus: bool) -> DaemonStatus {
    let stats = &sources.connections;
    let writer = &sources.writer;
    let broker = &sources.broker;
    // The map and its total from one read, so that they agree.
    let watches_by_session = broker.watches_by_session();
    let (_, all_watches) = broker.watch_totals();
    DaemonStatus {
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: PROTOCOL_VERSION,
        uptime_seconds: sources.started.elapsed().as_secs_f64(),
        socket: sources.socket.display().to_string(),
        database: sources.database.display().to_string(),
        durability: sources.durability.to_string(),
        revision: sources.revisions.last(),
        connections: stats.connections_open.load(Relaxed) as u64,
        subscriptions: sources.streams.subscriptions_open.load(Relaxed) as u64,
        subscriptions_by_execution: broker
            .topics()
            .into_iter()
            .map(|(id, n)| (id, n as u64))
            .collect(),
        committed_changes: writer.changes.load(Relaxed),
        commit_batches: writer.batches.load(Relaxed),
        commit_latency_p50_us: writer.commit_latency.quantile_us(0.5),
        commit_latency_p99_us: writer.commit_latency.quantile_us(0.99),
        broadcast_latency_p50_us: broker.stats.broadcast_latency.quantile_us(0.5),
        broadcast_latency_p99_us: broker.stats.broadcast_latency.quantile_us(0.99),
        resyncs: sources.streams.resyncs.load(Relaxed),
        subscriber_overflows: broker.stats.overflows.load(Relaxed),
        slow_consumer_disconnects: stats.slow_consumer_disconnects.load(Relaxed),
        rejected_connections: rejected(stats)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        refused_writes: writer.refused.load(Relaxed),
        session_watches: watches_by_session.iter().map(|(_, n)| *n as u64).sum(),
        all_watches: all_watches as u64,
        watches_by_session: watches_by_session
            .into_iter()
            .map(|(id, n)| (id, n as u64))
            .collect(),
        backend: if sources.cluster.is_some() {
            "etcd"
        } else {
            "sqlite"
        }
        .to_string(),
        replica_applied_revision: sources.cluster.as_ref().map_or(0, |c| c.applied()),
        etcd_revision: sources.cluster.as_ref().map_or(0, |c| c.heard()),
        prometheus: if with_prometheus {
            prometheus::render(sources)
        } else {
            String::new()
        },
    }
}

/// The STATUS= line systemd shows: load and the last revision.
pub(crate) fn status_line(sources: &Sources) -> String {
    format!(
        "serving {} connections, {} subscriptions; revision {}",
        sources.connections.connections_open.load(Relaxed),
        sources.streams.subscriptions_open.load(Relaxed),
        sources.revisions.last()
    )
}

/// Connections refused, by reason.
fn rejected(stats: &ConnectionStats) -> [(&'static str, u64); 3] {
    [
        (
            "max_connections",
            stats.rejected_max_connections.load(Relaxed),
        ),
        ("per_uid", stats.rejected_per_uid.load(Relaxed)),
        ("permission", stats.rejected_permission.load(Relaxed)),
    ]
}
