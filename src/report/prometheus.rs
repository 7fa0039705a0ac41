//! The Prometheus text exposition of every counter (`stigmer status
//! --prometheus`, and the `--metrics-listen` endpoint). Names follow
//! Prometheus conventions: a `stigmer_` prefix, `_total` counters,
//! `_seconds` units.

use std::sync::atomic::Ordering::Relaxed;

use super::Sources;
use crate::metrics::{Exposition, Kind};

/// The Prometheus text exposition (format 0.0.4). Names follow Prometheus
/// conventions: a `stigmer_` prefix, `_total` counters, `_seconds` units.
pub(crate) fn render(sources: &Sources) -> String {
    let stats = &sources.connections;
    let streams = &sources.streams;
    let writer = &sources.writer;
    let mut e = Exposition::default();
    e.gauge(
        "stigmer_uptime_seconds",
        "Seconds since the daemon started.",
        sources.started.elapsed().as_secs_f64(),
    )
    .gauge(
        "stigmer_revision",
        "The last committed revision.",
        sources.revisions.last() as f64,
    )
    .gauge(
        "stigmer_replica_lag_revisions",
        "The cluster mode: etcd revisions this daemon's replica has yet to apply (0 without --etcd).",
        sources
            .cluster
            .as_ref()
            .map_or(0, |c| c.heard().saturating_sub(c.applied())) as f64,
    )
    .gauge(
        "stigmer_etcd_compacted_revision",
        "The cluster mode: the revision this daemon last compacted etcd to, or found it compacted to (0 without --etcd).",
        sources.cluster.as_ref().map_or(0, |c| c.compacted()) as f64,
    )
    .counter(
        "stigmer_replica_rebuilds_total",
        "The cluster mode: times this daemon's replica was rebuilt because etcd compacted past it.",
        sources.cluster.as_ref().map_or(0, |c| c.rebuilds()) as f64,
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
        "Streams open now: one-execution subscriptions and many-execution watches.",
        streams.subscriptions_open.load(Relaxed) as f64,
    )
    .labelled(
        Kind::Gauge,
        "stigmer_watches",
        "Many-execution streams open now, by scope (one session, or every execution).",
        "scope",
        &watch_scopes(&sources.broker),
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
        &super::rejected(stats),
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
        sources.read_poll.hits.load(Relaxed),
    )
    .counter(
        "stigmer_reader_poll_seconds_total",
        "CPU time connection workers spent polling for a lone peer's next request.",
        sources.read_poll.nanos.load(Relaxed) as f64 / 1e9,
    )
    .histogram(
        "stigmer_broadcast_latency_seconds",
        "Time from publication after COMMIT to the event handed to subscribers' connections (once per change for direct deliveries, per queued delivery).",
        &sources.broker.stats.broadcast_latency,
    )
    .counter(
        "stigmer_deliveries_total",
        "Changes queued to subscribers.",
        sources.broker.stats.delivered.load(Relaxed),
    )
    .counter(
        "stigmer_deliveries_direct_total",
        "Of those, written straight to a caught-up stream's connection by the publisher.",
        sources.broker.stats.direct.load(Relaxed),
    )
    .counter(
        "stigmer_subscriber_overflows_total",
        "Subscriber queues that overflowed and caught up from history (nothing lost).",
        sources.broker.stats.overflows.load(Relaxed),
    )
    .counter(
        "stigmer_resyncs_total",
        "RESYNC events sent because the history no longer reached back.",
        streams.resyncs.load(Relaxed),
    )
    .counter(
        "stigmer_slow_consumer_disconnects_total",
        "Connections closed because their peer stopped reading.",
        stats.slow_consumer_disconnects.load(Relaxed),
    );
    e.finish()
}

/// Open watches by scope, for `stigmer_watches`.
fn watch_scopes(broker: &crate::broker::Broker) -> [(&'static str, u64); 2] {
    let (session, all) = broker.watch_totals();
    [("session", session as u64), ("all", all as u64)]
}
