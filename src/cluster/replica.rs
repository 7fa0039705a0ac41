//! The replica: one prefix watch on the executions' keys, from the last
//! revision applied, whose every change goes to the writer thread as a
//! [`Write::Replicate`] at etcd's revision (in watch order, which is
//! revision order), and is committed, broadcast and marked applied there.
//! Never one watch per subscriber: streams are served from the replica.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use stigmer_etcd::{Event, EventKind, WatchEvent, WatchOptions};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::pipeline::replicate::Record;
use crate::pipeline::{Replicated, Write};
use crate::store::Reader;
use crate::writer::{Answer, Job, Writer};

/// How often the replica asks etcd for a progress notification, which
/// tells it etcd's newest revision (the lag in `status`) while nothing
/// changes: one small message per daemon per interval.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Waits between attempts to (re)open the watch while etcd is away.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs until `shutdown`: watches, applies, and watches again from the
/// last applied revision whenever the watch breaks; rebuilds the replica
/// when etcd compacted past it.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    writer: Writer,
    reader: Reader,
    shutdown: CancellationToken,
) {
    let mut retry = RETRY_MIN;
    let mut compacted = false;
    loop {
        // Everything up to `applied` is committed here; the watch resumes
        // after it. Jobs submitted but not yet committed would be sent
        // again, and refused as below the replica's revision: wait for them.
        let submitted = cluster.submitted();
        if submitted > cluster.applied() && !cluster.wait_applied(submitted).await {
            tracing::warn!(
                submitted,
                applied = cluster.applied(),
                "the replica is behind its own jobs"
            );
        }
        if std::mem::take(&mut compacted) && rebuild(&cluster, &writer, &reader, &shutdown).await {
            return;
        }
        let start = cluster.applied() + 1;
        // Fragmented: catching up, etcd puts up to 1,000 revisions in one
        // response, which records of large states would take past the
        // client's response limit at every attempt.
        let options = WatchOptions::prefix(cluster.executions_prefix())
            .start_revision(start as i64)
            .progress_notify(true)
            .fragment(true);
        // Opening is bounded by the client's request timeout.
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            opened = cluster.client.watch(options) => opened,
        };
        let mut watch = match opened {
            Ok(watch) => watch,
            Err(err) => {
                tracing::warn!(%err, start, "cannot watch etcd; retrying");
                if sleep_or_stop(&shutdown, &mut retry).await {
                    return;
                }
                continue;
            }
        };
        retry = RETRY_MIN;
        let mut ask = tokio::time::interval(PROGRESS_EVERY);
        loop {
            // Waits for etcd's next changes (or the time to ask how far
            // etcd is); a broken stream ends this watch (the outer loop
            // resumes after the last applied).
            let item = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ask.tick() => {
                    // Answered by a progress notification (bounded: a failed
                    // ask is only logged, the stream tells of a broken watch).
                    if let Err(err) = watch.request_progress().await {
                        tracing::debug!(%err, "cannot ask etcd for progress");
                    }
                    continue;
                }
                item = watch.next() => item,
            };
            match item {
                Some(Ok(WatchEvent::Events { revision, events })) => {
                    cluster.hear(revision as u64);
                    for event in events {
                        apply(&cluster, &writer, event).await;
                    }
                }
                Some(Ok(WatchEvent::Progress { revision })) => cluster.hear(revision as u64),
                Some(Ok(WatchEvent::Compacted { compact_revision })) => {
                    tracing::warn!(
                        compact_revision,
                        start,
                        "etcd compacted past this replica; rebuilding it"
                    );
                    compacted = true;
                    retry = RETRY_MIN;
                    break;
                }
                Some(Ok(WatchEvent::Canceled { reason })) => {
                    tracing::warn!(%reason, "etcd cancelled the watch; watching again");
                    break;
                }
                Some(Err(err)) => {
                    tracing::warn!(%err, "the etcd watch broke; watching again");
                    break;
                }
                None => break,
            }
        }
        if !compacted && sleep_or_stop(&shutdown, &mut retry).await {
            return;
        }
    }
}

/// Rebuilds the replica (see `rebuild.rs`), trying again while etcd or the
/// writer fails; true when the daemon is stopping instead.
async fn rebuild(
    cluster: &Arc<Cluster>,
    writer: &Writer,
    reader: &Reader,
    shutdown: &CancellationToken,
) -> bool {
    let mut retry = RETRY_MIN;
    loop {
        // Reads etcd (bounded per request) and waits for the writer.
        let rebuilt = tokio::select! {
            _ = shutdown.cancelled() => return true,
            rebuilt = super::rebuild::rebuild(cluster, writer, reader) => rebuilt,
        };
        match rebuilt {
            Ok(rebuilt) => {
                cluster.mark_submitted(rebuilt.revision);
                cluster.mark_applied(rebuilt.revision);
                cluster
                    .rebuilds
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    revision = rebuilt.revision,
                    kept = rebuilt.kept,
                    installed = rebuilt.installed,
                    lost = rebuilt.lost,
                    "rebuilt the replica from etcd; open streams resync"
                );
                return false;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot rebuild the replica; retrying");
                if sleep_or_stop(shutdown, &mut retry).await {
                    return true;
                }
            }
        }
    }
}

/// Sleeps `retry` (doubling it up to [`RETRY_MAX`]); true when the daemon
/// is stopping instead.
async fn sleep_or_stop(shutdown: &CancellationToken, retry: &mut Duration) -> bool {
    let wait = *retry;
    *retry = (*retry * 2).min(RETRY_MAX);
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

/// Queues one change for the writer thread, which marks it applied once
/// committed and broadcast.
async fn apply(cluster: &Arc<Cluster>, writer: &Writer, event: Event) {
    let revision = event.kv.mod_revision as u64;
    if event.kind != EventKind::Put {
        // The daemons never delete keys (a delete is a tombstone record).
        tracing::warn!(
            revision,
            "a key under the prefix was deleted by someone else; ignored"
        );
        return;
    }
    let Some(id) = cluster.id_of(event.kv.key.as_ref()) else {
        return;
    };
    let record = match Record::decode(event.kv.value.as_ref()) {
        Ok(record) => record,
        Err(err) => {
            tracing::error!(revision, id, %err, "a value under the prefix is not a change record");
            return;
        }
    };
    let job = Job {
        write: Write::Replicate(Box::new(Replicated {
            revision,
            execution_id: id.to_owned(),
            record,
        })),
        answer: {
            let cluster = cluster.clone();
            Answer::Call(Box::new(move |result| match result {
                Ok(_) => cluster.mark_applied(revision),
                Err(err) => {
                    tracing::error!(revision, %err, "the replica cannot apply etcd's change")
                }
            }))
        },
    };
    cluster.mark_submitted(revision);
    // Waits only while the writer's queue is full.
    writer.submit(job).await;
}
