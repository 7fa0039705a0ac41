//! Reads for many-execution streams (`subscribe` by session or for all
//! executions, `cmd::watch`): the initial list at one revision, the states
//! it names, and the history of a selection after a revision.
//!
//! They are separate from [`super::reader`]'s one-execution reads because
//! their cost rules differ: a list is read as ids first (small) and states
//! a page at a time, and a session's history is found through the session's
//! executions (each execution's chain), never by scanning every row since a
//! revision; only "all" reads the history by revision range, since every
//! row matches.

use rusqlite::{params, Connection, OptionalExtension};
use stigmer_proto::agentexecution::AgentExecution;

use super::reader::{self, StateAt};
use crate::protocol::ApiError;

/// Which executions a many-execution stream covers.
#[derive(Clone, Debug)]
pub(crate) enum Scope {
    /// Every execution whose `spec.session_id` is this.
    Session(String),
    /// Every execution.
    All,
}

/// The matching executions at one revision: the ids and revisions of their
/// states then, oldest state first.
pub(crate) struct Listed {
    /// The revision the list was read at (the last committed then).
    pub(crate) revision: u64,
    pub(crate) entries: Vec<(String, u64)>,
}

/// Lists the executions `scope` matches, in one read (call it inside one
/// read transaction, as `Reader::run` does): their ids and revisions only,
/// so the list costs ~50 bytes per execution whatever the states' sizes.
pub(crate) fn list_at(conn: &Connection, scope: &Scope) -> Result<Listed, ApiError> {
    let (revision, _) = super::load_revisions(conn)?;
    let session = match scope {
        Scope::Session(s) => Some(s.as_str()),
        Scope::All => None,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, revision FROM executions WHERE (?1 IS NULL OR session_id = ?1)",
    )?;
    let rows = stmt.query_map(params![session], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    let mut entries = rows.collect::<Result<Vec<_>, _>>()?;
    // In revision order: the stream's events never go back.
    entries.sort_by_key(|(_, rev)| *rev);
    Ok(Listed { revision, entries })
}

/// One listed execution's state: its id, revision and state then.
pub(crate) type ListedState = (String, u64, AgentExecution);

/// The states of listed executions at their listed revisions, stopping once
/// `max_bytes` of state were read (at least one). `None` when one of them
/// can no longer be rebuilt (its history was pruned since the list was
/// read): the caller lists again.
pub(crate) fn states(
    conn: &Connection,
    entries: &[(String, u64)],
    max_bytes: usize,
) -> Result<Option<Vec<ListedState>>, ApiError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for (id, revision) in entries {
        if bytes >= max_bytes {
            break;
        }
        match reader::state_at(conn, id, *revision)? {
            StateAt::State(execution, at) if at == *revision => {
                bytes += prost::Message::encoded_len(&*execution);
                out.push((id.clone(), at, *execution));
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Up to `limit` revisions after `after` of every execution, in order.
pub(crate) fn all_revisions(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<u64>, ApiError> {
    let mut stmt = conn.prepare_cached(
        "SELECT revision FROM history WHERE revision > ?1 ORDER BY revision LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
        r.get::<_, i64>(0).map(|r| r as u64)
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Every revision after `after` of session `session`'s executions, in
/// order: the chains ([`reader::chain`]) of its live executions changed
/// since (`executions_by_session`) and of those deleted since (their
/// tombstones). Work and memory are proportional to the session's
/// executions and their changes since `after`. Call with `after` at or above
/// the compaction floor and [`sessions_since`], in the transaction that read
/// them.
pub(crate) fn session_revisions(
    conn: &Connection,
    session: &str,
    after: u64,
) -> Result<Vec<u64>, ApiError> {
    let mut ids: Vec<String> = Vec::new();
    let mut live =
        conn.prepare_cached("SELECT id FROM executions WHERE session_id = ?1 AND revision > ?2")?;
    for id in live.query_map(params![session, after as i64], |r| r.get(0))? {
        ids.push(id?);
    }
    let mut deleted = conn.prepare_cached(
        "SELECT execution_id FROM tombstones WHERE session_id = ?1 AND revision > ?2",
    )?;
    for id in deleted.query_map(params![session, after as i64], |r| r.get(0))? {
        ids.push(id?);
    }
    let mut revisions = Vec::new();
    for id in ids {
        revisions.extend(reader::chain(conn, &id, after)?);
    }
    revisions.sort_unstable();
    Ok(revisions)
}

/// The revision from which tombstones record their session (schema
/// migration 6): a session stream resumed from below it must resync.
pub(crate) fn sessions_since(conn: &Connection) -> Result<u64, ApiError> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'sessions_since'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0) as u64)
}
