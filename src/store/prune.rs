//! Pruning: keeps the history to the last `--history-retention` revisions,
//! in bounded slices, inside the writer's batch transaction.

use rusqlite::Connection;

use crate::protocol::ApiError;

/// The most revisions one transaction prunes. The batch that prunes waits
/// for the DELETE: a slice of 1/16 of the window, the rule before, took
/// 15.7-19.9 ms at the default retention (6,250 revisions, 1 KiB states,
/// timed in `benches/store_floor.rs`) and would take seconds at a
/// retention of millions; 2048 revisions take 3.1-4.0 ms, and cost less
/// per row (1.7 against 2.8 µs).
pub const PRUNE_MAX_REVISIONS: u64 = 2048;

/// Deletes history older than the retention window, in slices of 1/16 of the
/// window but never more than [`PRUNE_MAX_REVISIONS`], so that pruning costs
/// one bounded DELETE every so many commits rather than one row per commit,
/// and no commit waits long for it. When the history is further behind
/// (a lowered `--history-retention`), each commit prunes one more slice
/// until it has caught up. Returns the new compaction floor.
///
/// The rows an execution's latest state is rebuilt from (its base,
/// `executions.base`, and every row after it) are kept: they are that
/// execution's only copy of its state. The check is a lookup by
/// `executions`' primary key (the row's `execution_id`); an index on
/// `executions.base` would be rewritten by every new base. Only the slice
/// above the old floor is scanned: a row kept below the floor is deleted by
/// the write that stops needing it (a new base or a delete,
/// `Txn::release_chain`), so the rows below the floor are exactly the kept
/// ones.
pub(crate) fn prune(
    tx: &Connection,
    last: u64,
    compacted: u64,
    retention: u64,
) -> Result<u64, ApiError> {
    let Some(floor) = prune_floor(last, compacted, retention) else {
        return Ok(compacted);
    };
    tx.prepare_cached(
        "DELETE FROM history WHERE revision > ?1 AND revision <= ?2
           AND NOT EXISTS (SELECT 1 FROM executions e
                           WHERE e.id = history.execution_id AND history.revision >= e.base)",
    )?
    .execute([compacted as i64, floor as i64])?;
    // Deletes older than the window go with their history.
    tx.prepare_cached("DELETE FROM tombstones WHERE revision <= ?1")?
        .execute([floor as i64])?;
    tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'compacted_revision'")?
        .execute([floor as i64])?;
    Ok(floor)
}

/// The pruning rule alone ([`prune`]): with revisions up to `last`
/// committed and history pruned up to `compacted`, the new floor to prune
/// up to now, or `None` while the history is within a slice of
/// `retention`. Public so that the benchmarks' SQLite floors prune by the
/// very same rule.
pub fn prune_floor(last: u64, compacted: u64, retention: u64) -> Option<u64> {
    let retention = retention.max(1);
    let slice = (retention / 16).clamp(1, PRUNE_MAX_REVISIONS);
    if last.saturating_sub(compacted) < retention + slice {
        return None;
    }
    Some((last - retention).min(compacted + PRUNE_MAX_REVISIONS))
}
