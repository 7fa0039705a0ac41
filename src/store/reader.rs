//! Read connections. Reads never touch the writer's connection: WAL lets them
//! run beside the writer and see the last committed state. They run on
//! tokio's blocking pool (`spawn_blocking`), each on a pooled read-only
//! connection, so a slow query never stalls an async worker.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use prost::Message;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use stigmer_proto::agentexecution::AgentExecution;

pub(crate) use super::txn::Stored;
use crate::model::ChangeKind;
use crate::protocol::ApiError;

/// Read connections kept open between reads. More reads than this at once
/// open extra connections that are closed afterwards; 4 covers the two cores
/// of a typical host twice over.
const POOLED_CONNECTIONS: usize = 4;

/// A pool of read-only connections.
#[derive(Clone)]
pub(crate) struct Reader {
    inner: Arc<ReaderInner>,
}

struct ReaderInner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// One row of history.
#[derive(Debug)]
pub(crate) struct HistoryRow {
    pub(crate) revision: u64,
    pub(crate) kind: ChangeKind,
    /// The execution after the change; `None` for a delete.
    pub(crate) execution: Option<AgentExecution>,
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

impl Reader {
    /// A pool for the database at `path` (which must already exist).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            inner: Arc::new(ReaderInner {
                path,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let inner = self.inner.clone();
        // Waits for a blocking-pool thread and the query; fails only if the
        // closure panicked (a bug), which becomes INTERNAL, not a crash.
        tokio::task::spawn_blocking(move || inner.with_connection(f))
            .await
            .map_err(|e| ApiError::internal(format!("read task failed: {e}")))?
    }
}

impl ReaderInner {
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let pooled = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let conn = match pooled {
            Some(conn) => conn,
            None => open_read(&self.path)?,
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < POOLED_CONNECTIONS {
                idle.push(conn);
            }
        }
        result
    }
}

fn open_read(path: &std::path::Path) -> Result<Connection, ApiError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A reader may meet the writer mid-checkpoint; wait briefly, not fail.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The latest state of one execution: its `executions` row and the history
/// row it points at (the state is stored only there).
pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<Stored>, ApiError> {
    // LEFT JOIN: a missing history row is a corrupt database (INTERNAL), not
    // an execution that does not exist.
    let mut stmt = conn.prepare_cached(
        "SELECT e.revision, h.data FROM executions e
         LEFT JOIN history h ON h.revision = e.revision
         WHERE e.id = ?1",
    )?;
    let row: Option<(i64, Option<Vec<u8>>)> = stmt
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(rev, data)| {
        Ok(Stored {
            execution: decode_latest(id, rev, data)?,
            revision: rev as u64,
        })
    })
    .transpose()
}

/// Decodes the state an `executions` row points at; its absence (no history
/// row, or one without state) means the database was damaged.
fn decode_latest(
    id: &str,
    revision: i64,
    data: Option<Vec<u8>>,
) -> Result<AgentExecution, ApiError> {
    let data = data.ok_or_else(|| {
        ApiError::internal(format!(
            "execution {id}: the history row {revision} holding its state is missing"
        ))
    })?;
    Ok(AgentExecution::decode(data.as_slice())?)
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
        "SELECT e.id, e.revision, h.data FROM executions e
         LEFT JOIN history h ON h.revision = e.revision
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
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        },
    )?;
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        let (id, revision, data) = row?;
        // Each entry costs its state and a few bytes of field header.
        let size = data.as_ref().map_or(0, Vec::len) + 8;
        if entries.len() == q.limit || (!entries.is_empty() && bytes + size > q.max_bytes) {
            return Ok(ListPage {
                entries,
                more: true,
            });
        }
        bytes += size;
        entries.push(decode_latest(&id, revision, data)?);
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
    let head: Option<i64> = conn
        .prepare_cached("SELECT revision FROM executions WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let head = match head {
        Some(head) => Some(head as u64),
        None => deleted_revision(conn, id)?,
    };
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
    let mut stmt = conn.prepare_cached("SELECT kind, data FROM history WHERE revision = ?1")?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for &revision in revisions {
        if bytes >= max_bytes {
            break;
        }
        let row: Option<(i64, Option<Vec<u8>>)> = stmt
            .query_row([revision as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((kind, data)) = row else {
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
        bytes += data.as_ref().map(Vec::len).unwrap_or(0);
        let execution = data
            .map(|d| AgentExecution::decode(d.as_slice()))
            .transpose()?;
        out.push(HistoryRow {
            revision,
            kind: ChangeKind::from_i64(kind)?,
            execution,
        });
    }
    Ok(out)
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
