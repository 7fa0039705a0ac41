//! The reads: `get`, `list`, a state at a revision and the history after
//! one, each a function of a read-only connection. They never touch the
//! writer's connection: WAL lets them run beside the writer and see the last
//! committed state. Async code runs them through the read pool
//! ([`super::read_pool::Reader`]), in one snapshot each ([`snapshot`]).

use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};
use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::{Delta, Op};
use stigmer_proto::delta::{replay, ReplayError};

use super::txn::Chain;
pub(crate) use super::txn::Stored;
use crate::model::ChangeKind;
use crate::protocol::ApiError;

/// One row of history.
#[derive(Debug)]
pub(crate) struct HistoryRow {
    pub(crate) revision: u64,
    /// The execution it changed.
    pub(crate) execution_id: String,
    pub(crate) kind: ChangeKind,
    /// The whole execution after the change, when the row holds it (a base);
    /// `None` for a delta or a delete.
    pub(crate) execution: Option<AgentExecution>,
    /// The change's operations, when it was made by them.
    pub(crate) ops: Option<Vec<Op>>,
    /// The execution's previous change.
    pub(crate) prev: Option<u64>,
}

/// Filters and position of a `list`.
#[derive(Debug, Clone)]
pub(crate) struct ListQuery {
    pub(crate) phase: Option<i32>,
    pub(crate) session_id: Option<String>,
    /// Only ids greater than this (keyset pagination).
    pub(crate) after_id: Option<String>,
    /// Rows to return at most.
    pub(crate) limit: usize,
    /// Stop before the encoded states returned pass this many bytes (the
    /// first is always returned): a page must fit in one reply frame, and
    /// its memory is bounded whatever the states' sizes.
    pub(crate) max_bytes: usize,
}

/// The latest state of one execution: its base (the history row
/// `executions.base` points at) with the operations of the rows after it on
/// its chain applied.
pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<Stored>, ApiError> {
    // LEFT JOIN: a missing history row is a corrupt database (INTERNAL), not
    // an execution that does not exist.
    let mut stmt = conn.prepare_cached(
        "SELECT e.revision, e.base, e.base_bytes, e.delta_bytes, h.data FROM executions e
         LEFT JOIN history h ON h.revision = e.base
         WHERE e.id = ?1",
    )?;
    type Row = (i64, i64, i64, i64, Option<Vec<u8>>);
    let row: Option<Row> = stmt
        .query_row([id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    row.map(|(revision, base, base_bytes, delta_bytes, data)| {
        Ok(Stored {
            execution: latest(conn, id, revision as u64, base as u64, data)?,
            revision: revision as u64,
            chain: Chain {
                base: base as u64,
                base_bytes: base_bytes as u64,
                delta_bytes: delta_bytes as u64,
            },
        })
    })
    .transpose()
}

/// An execution's state at `head`, from its base at `base` (whose stored
/// state is `data`) and the operations of the rows between.
fn latest(
    conn: &Connection,
    id: &str,
    head: u64,
    base: u64,
    data: Option<Vec<u8>>,
) -> Result<AgentExecution, ApiError> {
    let data = data.ok_or_else(|| {
        ApiError::internal(format!(
            "execution {id}: the history row {base} holding its base state is missing"
        ))
    })?;
    let deltas = if head != base {
        deltas_since(conn, id, base, head)?.ok_or_else(|| {
            ApiError::internal(format!(
                "execution {id}: a history row between its base {base} and {head} is missing"
            ))
        })?
    } else {
        Vec::new()
    };
    // They applied when they were committed, so a refusal now is a corrupt
    // database.
    replay(data.as_slice(), deltas.iter().map(Vec::as_slice)).map_err(|e| match e {
        ReplayError::Base(e) | ReplayError::Delta(e) => ApiError::from(e),
        ReplayError::Apply(e) => ApiError::internal(format!(
            "execution {id}: stored operations do not apply: {e}"
        )),
    })
}

/// The operations of the chain's rows after `base` up to `head`, oldest
/// first; `None` when a row of it is missing (pruned).
fn deltas_since(
    conn: &Connection,
    id: &str,
    base: u64,
    head: u64,
) -> Result<Option<Vec<Vec<u8>>>, ApiError> {
    let mut link = conn.prepare_cached("SELECT prev, ops FROM history WHERE revision = ?1")?;
    let mut out = Vec::new();
    let mut next = Some(head);
    while let Some(revision) = next.filter(|r| *r > base) {
        let row: Option<(Option<i64>, Option<Vec<u8>>)> = link
            .query_row([revision as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((prev, ops)) = row else {
            return Ok(None);
        };
        out.push(ops.ok_or_else(|| {
            ApiError::internal(format!(
                "execution {id}: history row {revision} after its base holds no operations"
            ))
        })?);
        next = prev.map(|p| p as u64);
    }
    out.reverse();
    Ok(Some(out))
}

/// Runs `f` in a read transaction (one consistent snapshot of the
/// database), unless `conn` is already in one.
pub(super) fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    if !conn.is_autocommit() {
        return f(conn);
    }
    let tx = conn.unchecked_transaction()?;
    let result = f(&tx);
    // A read transaction: ending it without a commit releases the snapshot.
    drop(tx);
    result
}

/// What [`state_at`] found.
#[derive(Debug)]
pub(crate) enum StateAt {
    /// The state after the execution's last change at or before the
    /// revision asked for, and that change's revision.
    State(Box<AgentExecution>, u64),
    /// The execution had no change by then (it was created later), or had
    /// been deleted by then: there is no state to rebuild.
    None,
    /// A row on the way was pruned: the state cannot be rebuilt.
    Pruned,
}

/// Execution `id`'s state as of its last change at or before `at`: the
/// nearest base at or before that change, with the operations up to it.
pub(crate) fn state_at(conn: &Connection, id: &str, at: u64) -> Result<StateAt, ApiError> {
    let head = head(conn, id)?;
    let mut row =
        conn.prepare_cached("SELECT prev, kind, data FROM history WHERE revision = ?1")?;
    // Back to the last change at or before `at`, then on to its base.
    let mut next = head;
    let mut target = None;
    while let Some(revision) = next {
        type Row = (Option<i64>, i64, Option<Vec<u8>>);
        let found: Option<Row> = row
            .query_row([revision as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((prev, kind, data)) = found else {
            return Ok(StateAt::Pruned);
        };
        if revision <= at {
            if target.is_none() && ChangeKind::from_i64(kind)? == ChangeKind::Deleted {
                return Ok(StateAt::None);
            }
            let target = *target.get_or_insert(revision);
            if let Some(data) = data {
                let state = latest(conn, id, target, revision, Some(data))?;
                return Ok(StateAt::State(Box::new(state), target));
            }
        }
        next = prev.map(|p| p as u64);
    }
    Ok(if target.is_some() {
        StateAt::Pruned
    } else {
        StateAt::None
    })
}

/// Executions matching `q`, ordered by id.
impl Default for ListQuery {
    /// No filter, no page bound but [`ListQuery::limit`]'s 0.
    fn default() -> Self {
        ListQuery {
            phase: None,
            session_id: None,
            after_id: None,
            limit: 0,
            max_bytes: usize::MAX,
        }
    }
}

/// One page of `list`: the entries, and whether more match after them.
pub(crate) struct ListPage {
    pub(crate) entries: Vec<AgentExecution>,
    pub(crate) more: bool,
}

pub(crate) fn list(conn: &Connection, q: &ListQuery) -> Result<ListPage, ApiError> {
    // LEFT JOIN also keeps `executions` the outer loop (SQLite does not
    // reorder it), so the filters and the order use its indexes and each
    // state is one rowid lookup in `history`.
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.revision, e.base, e.delta_bytes, h.data FROM executions e
         LEFT JOIN history h ON h.revision = e.base
         WHERE (?1 IS NULL OR e.phase = ?1)
           AND (?2 IS NULL OR e.session_id = ?2)
           AND (?3 IS NULL OR e.id > ?3)
         ORDER BY e.id LIMIT ?4",
    )?;
    // One row more than the page tells whether a next page exists.
    let rows = stmt.query_map(
        params![q.phase, q.session_id, q.after_id, q.limit as i64 + 1],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
            ))
        },
    )?;
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        let (id, revision, base, delta_bytes, data) = row?;
        // Each entry costs its state (at most its base and the operations
        // since) and a few bytes of field header.
        let size = data.as_ref().map_or(0, Vec::len) + delta_bytes as usize + 8;
        if entries.len() == q.limit || (!entries.is_empty() && bytes + size > q.max_bytes) {
            return Ok(ListPage {
                entries,
                more: true,
            });
        }
        bytes += size;
        entries.push(latest(conn, &id, revision as u64, base as u64, data)?);
    }
    Ok(ListPage {
        entries,
        more: false,
    })
}

/// History rows of one execution after `after` (exclusive), in revision
/// order. Callers read only after a revision at or above the compaction
/// floor: below it the history keeps only the rows holding latest states
/// (see `Txn`), which are not a complete record. Returns at most `limit`
/// rows, and no more once `max_bytes` of state have been read (but always
/// at least one row). The streams read [`chain`] once and then [`rows`]
/// page by page; this one-page form is for tests.
#[cfg(test)]
pub(crate) fn history(
    conn: &Connection,
    id: &str,
    after: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<HistoryRow>, ApiError> {
    let chain = chain(conn, id, after)?;
    let page = &chain[..chain.len().min(limit)];
    rows(conn, page, max_bytes)
}

/// The revisions of execution `id`'s changes after `after`, oldest first.
///
/// There is no per-execution index on `history` (it cost a dirty page per
/// execution per commit; schema migration 3): each row links to the
/// execution's previous change, so this walks back from the latest change
/// (`executions.revision`, or the tombstone of a deleted execution), one
/// primary-key lookup per change, until it reaches `after`. Call it with
/// `after` at or above the compaction floor, in the transaction that read
/// the floor: every row above the floor exists, so a missing link is a
/// corrupt database, reported, never a silent gap.
pub(crate) fn chain(conn: &Connection, id: &str, after: u64) -> Result<Vec<u64>, ApiError> {
    let head = head(conn, id)?;
    let mut link = conn.prepare_cached("SELECT prev FROM history WHERE revision = ?1")?;
    let mut out = Vec::new();
    let mut next = head;
    while let Some(revision) = next.filter(|r| *r > after) {
        out.push(revision);
        let prev: Option<Option<i64>> =
            link.query_row([revision as i64], |r| r.get(0)).optional()?;
        next = match prev {
            Some(prev) => prev.map(|p| p as u64),
            None => {
                return Err(ApiError::internal(format!(
                    "history row {revision} of execution {id} is missing"
                )))
            }
        };
    }
    out.reverse();
    Ok(out)
}

/// The history rows at `revisions` (from [`chain`]), in that order, up to
/// `max_bytes` of state (at least one row). Stops early at a row pruned
/// since the chain was read (at or below the compaction floor): the caller
/// reads the floor again and resyncs.
pub(crate) fn rows(
    conn: &Connection,
    revisions: &[u64],
    max_bytes: usize,
) -> Result<Vec<HistoryRow>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, data, ops, prev, execution_id FROM history WHERE revision = ?1",
    )?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for &revision in revisions {
        if bytes >= max_bytes {
            break;
        }
        type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, String);
        let row: Option<Row> = stmt
            .query_row([revision as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((kind, data, ops, prev, execution_id)) = row else {
            // Read after the row: the floor only rises, so a prune that
            // removed the row shows here (in or out of a transaction).
            let compacted = compacted_revision(conn)?;
            if revision <= compacted {
                break;
            }
            return Err(ApiError::internal(format!(
                "history row {revision} is missing above the compaction floor {compacted}"
            )));
        };
        bytes += data.as_ref().map_or(0, Vec::len) + ops.as_ref().map_or(0, Vec::len);
        let execution = data
            .map(|d| AgentExecution::decode(d.as_slice()))
            .transpose()?;
        let ops = ops
            .map(|o| Delta::decode(o.as_slice()).map(|d| d.ops))
            .transpose()?;
        out.push(HistoryRow {
            revision,
            execution_id,
            kind: ChangeKind::from_i64(kind)?,
            execution,
            ops,
            prev: prev.map(|p| p as u64),
        });
    }
    Ok(out)
}

/// The head of execution `id`'s chain: its latest change
/// (`executions.revision`), or its delete while the tombstone is kept.
fn head(conn: &Connection, id: &str) -> Result<Option<u64>, ApiError> {
    let head: Option<i64> = conn
        .prepare_cached("SELECT revision FROM executions WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match head {
        Some(head) => Ok(Some(head as u64)),
        None => deleted_revision(conn, id),
    }
}

/// The revision at which execution `id` was deleted, while its tombstone
/// is kept (None: not deleted, or its delete was pruned).
pub(crate) fn deleted_revision(conn: &Connection, id: &str) -> Result<Option<u64>, ApiError> {
    let revision: Option<i64> = conn
        .prepare_cached("SELECT revision FROM tombstones WHERE execution_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(revision.map(|r| r as u64))
}

/// The compaction floor as committed (history at or below it may be gone).
pub(crate) fn compacted_revision(conn: &Connection) -> Result<u64, ApiError> {
    let v: i64 = conn.query_row(
        "SELECT value FROM meta WHERE key = 'compacted_revision'",
        [],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}
