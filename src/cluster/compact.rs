//! The compactor: keeps etcd's history (its raft log's keyspace, bounded by
//! its 2 GiB default quota) to what the deployment still needs. Every
//! `--etcd-compaction-interval` it compacts etcd up to the lower of
//!
//! - `--history-retention` revisions below this replica's applied
//!   revision (what a daemon that was away may still replay rather than
//!   rebuild), and
//! - the oldest record stored whole that an execution's latest state is
//!   rebuilt from (`store::replica::compaction_bound`): compaction keeps
//!   each key's latest version, not the chain behind it.
//!
//! Every daemon runs one; no election is needed. A target computed from a
//! replica that lags is only lower (bases move forward, executions created
//! since are above it), so any daemon's target is safe for every replica,
//! and compacting to a revision etcd already passed is refused harmlessly
//! (`Error::Compacted`). A daemon whose replica is behind the compaction
//! rebuilds it (`rebuild.rs`), and its streams resync explicitly.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::store::replica;
use crate::store::Reader;

/// Runs until `shutdown`, compacting every `every` (never when zero).
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    reader: Reader,
    retention: u64,
    every: Duration,
    shutdown: CancellationToken,
) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // One scan of the executions, on a read thread.
        let bound = match reader.run(replica::compaction_bound).await {
            Ok(bound) => bound,
            Err(err) => {
                tracing::warn!(%err, "cannot read how far etcd may be compacted");
                continue;
            }
        };
        let target = target(cluster.applied(), retention, bound);
        if target <= cluster.compacted() {
            continue;
        }
        // Bounded by the client's request timeout.
        match cluster.client.compact(target as i64, false).await {
            Ok(_) => {
                tracing::info!(revision = target, "compacted etcd");
                cluster.note_compacted(target);
            }
            // Another daemon compacted this far or further.
            Err(stigmer_etcd::Error::Compacted { .. }) => cluster.note_compacted(target),
            Err(err) => tracing::warn!(%err, revision = target, "cannot compact etcd"),
        }
    }
}

/// The revision to compact to: `retention` below `applied`, but not past
/// `bound` (the oldest whole state still needed), 0 for none yet.
fn target(applied: u64, retention: u64, bound: Option<u64>) -> u64 {
    let kept = applied.saturating_sub(retention);
    bound.map_or(kept, |bound| kept.min(bound))
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn the_target_keeps_the_retention_and_every_needed_base() {
        assert_eq!(target(50, 100, None), 0);
        assert_eq!(target(1_000, 100, None), 900);
        assert_eq!(target(1_000, 100, Some(950)), 900);
        assert_eq!(target(1_000, 100, Some(420)), 420);
    }
}
