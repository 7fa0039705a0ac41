//! `--keep-finished DURATION`: deletes the executions that finished longer
//! ago than the retention, so a machine running agents for months does not
//! keep every transcript forever. Off by default (an execution is kept until
//! it is deleted); `stigmer admin prune` does the same once, on demand.
//!
//! A sweep reads the finished executions a page at a time on the read pool
//! and deletes each old one through the writer, like a `delete` request: its
//! streams end with END_REASON_DELETED and a resume learns of the delete.
//! In the cluster mode each delete is proposed to etcd like a client's
//! (`cluster::propose`), never written to the replica directly; every
//! daemon sweeps, and a delete another daemon made first is NOT_FOUND.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use stigmer_proto::agentexecution::ExecutionPhase;
use tokio_util::sync::CancellationToken;

use crate::cluster::propose::propose;
use crate::cluster::Cluster;
use crate::model::finished_at;
use crate::pipeline::Write;
use crate::store::reader::{self, ListQuery};
use crate::store::Reader;
use crate::writer::{Answer, Job, Writer};

/// The terminal phases: what "finished" means.
const FINISHED: [ExecutionPhase; 4] = [
    ExecutionPhase::ExecutionCompleted,
    ExecutionPhase::ExecutionFailed,
    ExecutionPhase::ExecutionCancelled,
    ExecutionPhase::ExecutionTerminated,
];

/// Executions read per page of a sweep: bounds the memory of one read.
const PAGE: usize = 256;
/// Bytes of states read per page (large transcripts make short pages).
const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// How often to sweep for a retention of `keep`: a tenth of it (an
/// execution outlives its retention by at most 10%), at least every hour
/// and at most every second.
fn interval(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Sweeps every [`interval`] until `shutdown`.
pub(crate) async fn run(
    keep: Duration,
    reader: Reader,
    writer: Writer,
    cluster: Option<Arc<Cluster>>,
    shutdown: CancellationToken,
) {
    let every = interval(keep);
    tracing::info!(keep = %humantime::format_duration(keep), every = %humantime::format_duration(every), "deleting executions finished longer ago than --keep-finished");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Waits for the next sweep.
            _ = tokio::time::sleep(every) => {}
        }
        match sweep(keep, &reader, &writer, cluster.as_deref()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "deleted executions past --keep-finished"),
            Err(err) => tracing::warn!(%err, "retention sweep failed; will retry"),
        }
    }
}

/// Deletes the executions that finished before now less `keep`; returns
/// how many deletes were queued.
async fn sweep(
    keep: Duration,
    reader: &Reader,
    writer: &Writer,
    cluster: Option<&Cluster>,
) -> Result<usize, String> {
    let cutoff = SystemTime::now()
        .checked_sub(keep)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut old = Vec::new();
    for phase in FINISHED {
        let mut after: Option<String> = None;
        loop {
            let query = ListQuery {
                phase: Some(phase as i32),
                after_id: after.clone(),
                limit: PAGE,
                max_bytes: PAGE_BYTES,
                ..ListQuery::default()
            };
            // Waits for a read connection and one page.
            let page = reader
                .run(move |c| reader::list(c, &query))
                .await
                .map_err(|e| e.to_string())?;
            for e in &page.entries {
                if finished_at(e).is_some_and(|t| t < cutoff) {
                    if let Some(m) = &e.metadata {
                        old.push(m.id.clone());
                    }
                }
            }
            after = page
                .entries
                .last()
                .and_then(|e| e.metadata.as_ref())
                .map(|m| m.id.clone());
            if !page.more || after.is_none() {
                break;
            }
        }
    }
    let queued = old.len();
    for id in old {
        if let Some(cluster) = cluster {
            // One proposal at a time (bounded by the client's timeouts).
            if let Err(err) = propose(cluster, writer, Write::Delete(id.clone())).await {
                tracing::debug!(%id, %err, "retention delete not applied");
            }
            continue;
        }
        let answer = Answer::Call(Box::new({
            let id = id.clone();
            move |result| {
                // NOT_FOUND: deleted meanwhile by someone else.
                if let Err(err) = result {
                    tracing::debug!(%id, %err, "retention delete not applied");
                }
            }
        }));
        // Waits only while the writer's queue is full.
        writer
            .submit(Job {
                write: Write::Delete(id),
                answer,
            })
            .await;
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(interval(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(
            interval(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(3600)
        );
    }
}
