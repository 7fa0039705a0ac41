//! `status`: the daemon's identity, load and counters (`stigmer status`),
//! and the same counters as a Prometheus text exposition (`stigmer status
//! --prometheus` and the optional `--metrics-listen` HTTP endpoint).

use std::sync::atomic::Ordering::Relaxed;

use stigmer_proto::daemon::{response, DaemonStatus};
use stigmer_proto::frame::PROTOCOL_VERSION;
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics::{Exposition, Kind};
use crate::server::connection::Conn;
use crate::server::Shared;

/// Answers at once from the reader loop (everything read is in memory).
pub fn apply(conn: &Conn, permit: OwnedSemaphorePermit, id: u64, prometheus: bool) {
    let status = snapshot(&conn.shared, prometheus);
    conn.reply_result(permit, id, Ok(response::Result::Status(status)));
}

/// The current status.
pub fn snapshot(shared: &Shared, with_prometheus: bool) -> DaemonStatus {
    let stats = &shared.stats;
    let writer = &shared.writer_stats;
    DaemonStatus {
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: PROTOCOL_VERSION,
        uptime_seconds: shared.started.elapsed().as_secs_f64(),
        socket: shared.socket.display().to_string(),
        database: shared.database.display().to_string(),
        durability: shared.durability.to_string(),
        revision: shared.revisions.last(),
        connections: stats.connections_open.load(Relaxed) as u64,
        subscriptions: stats.subscriptions_open.load(Relaxed) as u64,
        subscriptions_by_execution: shared
            .broker
            .topics()
            .into_iter()
            .map(|(id, n)| (id, n as u64))
            .collect(),
        committed_changes: writer.changes.load(Relaxed),
        commit_batches: writer.batches.load(Relaxed),
        commit_latency_p50_us: writer.commit_latency.quantile_us(0.5),
        commit_latency_p99_us: writer.commit_latency.quantile_us(0.99),
        broadcast_latency_p50_us: shared.broker.stats.broadcast_latency.quantile_us(0.5),
        broadcast_latency_p99_us: shared.broker.stats.broadcast_latency.quantile_us(0.99),
        resyncs: stats.resyncs.load(Relaxed),
        subscriber_overflows: shared.broker.stats.overflows.load(Relaxed),
        slow_consumer_disconnects: stats.slow_consumer_disconnects.load(Relaxed),
        rejected_connections: rejected(shared)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        refused_writes: writer.refused.load(Relaxed),
        prometheus: if with_prometheus {
            prometheus(shared)
        } else {
            String::new()
        },
    }
}

fn rejected(shared: &Shared) -> [(&'static str, u64); 3] {
    let stats = &shared.stats;
    [
        (
            "max_connections",
            stats.rejected_max_connections.load(Relaxed),
        ),
        ("per_uid", stats.rejected_per_uid.load(Relaxed)),
        ("permission", stats.rejected_permission.load(Relaxed)),
    ]
}

/// The Prometheus text exposition (format 0.0.4). Names follow Prometheus
/// conventions: a `stigmer_` prefix, `_total` counters, `_seconds` units.
pub fn prometheus(shared: &Shared) -> String {
    let stats = &shared.stats;
    let writer = &shared.writer_stats;
    let mut e = Exposition::default();
    e.gauge(
        "stigmer_uptime_seconds",
        "Seconds since the daemon started.",
        shared.started.elapsed().as_secs_f64(),
    )
    .gauge(
        "stigmer_revision",
        "The last committed revision.",
        shared.revisions.last() as f64,
    )
    .gauge(
        "stigmer_connections",
        "Connections open now.",
        stats.connections_open.load(Relaxed) as f64,
    )
    .labelled(
        Kind::Gauge,
        "stigmer_shard_connections",
        "Connections being served now, per connection shard (--worker-threads).",
        "shard",
        &stats
            .shard_connections
            .iter()
            .enumerate()
            .map(|(shard, count)| (shard, count.load(Relaxed) as u64))
            .collect::<Vec<_>>(),
    )
    .gauge(
        "stigmer_subscribers",
        "Subscriptions open now.",
        stats.subscriptions_open.load(Relaxed) as f64,
    )
    .counter(
        "stigmer_connections_accepted_total",
        "Connections accepted since start.",
        stats.connections_total.load(Relaxed),
    )
    .labelled(
        Kind::Counter,
        "stigmer_connections_rejected_total",
        "Connections refused, by reason.",
        "reason",
        &rejected(shared),
    )
    .counter(
        "stigmer_changes_committed_total",
        "Creates, status updates and deletes committed.",
        writer.changes.load(Relaxed),
    )
    .counter(
        "stigmer_commits_total",
        "Transactions committed (each holds a batch of changes).",
        writer.batches.load(Relaxed),
    )
    .counter(
        "stigmer_writes_refused_total",
        "Writes refused (validation, terminal phase, storage failure).",
        writer.refused.load(Relaxed),
    )
    .histogram(
        "stigmer_commit_latency_seconds",
        "Time to run and commit one transaction.",
        &writer.commit_latency,
    )
    .counter(
        "stigmer_writer_poll_hits_total",
        "Updates the writer thread found while polling its queue (no wake-up).",
        writer.poll_hits.load(Relaxed),
    )
    .counter(
        "stigmer_writer_poll_seconds_total",
        "CPU time the writer thread spent polling its queue before sleeping.",
        writer.poll_nanos.load(Relaxed) as f64 / 1e9,
    )
    .counter(
        "stigmer_reader_poll_hits_total",
        "Requests a connection worker read while polling for a lone peer's next request (no wake-up).",
        shared.read_poll.hits.load(Relaxed),
    )
    .counter(
        "stigmer_reader_poll_seconds_total",
        "CPU time connection workers spent polling for a lone peer's next request.",
        shared.read_poll.nanos.load(Relaxed) as f64 / 1e9,
    )
    .histogram(
        "stigmer_broadcast_latency_seconds",
        "Time from publication after COMMIT to the event handed to subscribers' connections (once per change for direct deliveries, per queued delivery).",
        &shared.broker.stats.broadcast_latency,
    )
    .counter(
        "stigmer_deliveries_total",
        "Changes queued to subscribers.",
        shared.broker.stats.delivered.load(Relaxed),
    )
    .counter(
        "stigmer_deliveries_direct_total",
        "Of those, written straight to a caught-up stream's connection by the publisher.",
        shared.broker.stats.direct.load(Relaxed),
    )
    .counter(
        "stigmer_subscriber_overflows_total",
        "Subscriber queues that overflowed and caught up from history (nothing lost).",
        shared.broker.stats.overflows.load(Relaxed),
    )
    .counter(
        "stigmer_resyncs_total",
        "RESYNC events sent because the history no longer reached back.",
        stats.resyncs.load(Relaxed),
    )
    .counter(
        "stigmer_slow_consumer_disconnects_total",
        "Connections closed because their peer stopped reading.",
        stats.slow_consumer_disconnects.load(Relaxed),
    );
    e.finish()
}
