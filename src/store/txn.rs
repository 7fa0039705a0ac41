//! `Txn`: the typed operations a write job performs inside the writer
//! thread's open transaction. Jobs never see SQL; they load, insert, update
//! and delete, and take revisions in commit order.
//!
//! A change is written once, as a `history` row: a whole state (a *base*:
//! creates, and every so often a status change), or the operations of a
//! status change (a *delta*, schema migration 5). `executions` points at an
//! execution's latest row (`revision`) and at the base its latest state is
//! rebuilt from (`base`). Insert, update and delete write the history row and
//! the `executions` row together, so the pointers always have their rows.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};
use stigmer_proto::agentexecution::AgentExecution;

use super::cache::LatestCache;
use crate::model::ChangeKind;
use crate::protocol::ApiError;

/// A write job's view of the open transaction.
pub(crate) struct Txn<'c> {
    conn: &'c Connection,
    /// The next revision to hand out; the writer commits the counter with
    /// the batch, or discards it if the batch rolls back.
    next_revision: u64,
    /// The largest encoded execution that can still be sent in one frame.
    max_execution_bytes: usize,
    /// The compaction floor as of this transaction's start (pruning moves it
    /// only after the jobs ran), see [`Txn::release`].
    compacted: u64,
    /// The latest states the writer wrote; changed here exactly where the
    /// transaction changes them, and cleared by the writer when the
    /// transaction fails.
    cache: &'c mut LatestCache,
}

/// An execution as stored: the decoded message, its revision, and where
/// its chain of deltas stands.
pub(crate) struct Stored {
    pub(crate) execution: AgentExecution,
    pub(crate) revision: u64,
    pub(crate) chain: Chain,
}

/// Where an execution's history chain stands (its `executions` row): the
/// base its latest state is rebuilt from, and what was stored since.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Chain {
    /// The revision of the row holding its last whole state.
    pub(crate) base: u64,
    /// That state's encoded size.
    pub(crate) base_bytes: u64,
    /// Bytes of operations stored after the base.
    pub(crate) delta_bytes: u64,
}

/// How a status change is stored (see [`Txn::update`]).
pub(crate) enum Record<'a> {
    /// The whole new state, encoded (a base), with the change's operations
    /// when it was made by them (for delta streams).
    Base {
        data: &'a [u8],
        ops: Option<&'a [u8]>,
    },
    /// The change's operations only (an encoded `Delta`).
    Delta { ops: &'a [u8] },
}

impl<'c> Txn<'c> {
    pub(crate) fn new(
        conn: &'c Connection,
        next_revision: u64,
        max_execution_bytes: usize,
        compacted: u64,
        cache: &'c mut LatestCache,
    ) -> Self {
        Self {
            conn,
            next_revision,
            max_execution_bytes,
            compacted,
            cache,
        }
    }

    /// Encodes a state once, refusing one too large to be sent back in one
    /// frame (as a reply or an event), so that everything stored can be
    /// streamed. The bytes serve the history row (the latest state) and
    /// the broadcast event alike.
    pub(crate) fn encode(&self, execution: &AgentExecution) -> Result<Bytes, ApiError> {
        // Encoding first costs a wasted encoding only for a refused state.
        let buf = execution.encode_to_vec();
        if buf.len() > self.max_execution_bytes {
            return Err(too_large(buf.len(), self.max_execution_bytes));
        }
        Ok(Bytes::from(buf))
    }

    pub(crate) fn next_revision(&self) -> u64 {
        self.next_revision
    }

    /// Makes `revision` the next one taken: a replica applies changes at
    /// the revisions the log gave them (etcd's, which skip the revisions
    /// of other keys), not at the next free one. Revisions only go up: one
    /// below the next free one is refused (INTERNAL: the log and the
    /// replica disagree).
    pub(crate) fn use_revision(&mut self, revision: u64) -> Result<(), ApiError> {
        if revision < self.next_revision {
            return Err(ApiError::internal(format!(
                "revision {revision} from the log is below the replica's next ({})",
                self.next_revision
            )));
        }
        self.next_revision = revision;
        Ok(())
    }

    /// Takes the next revision. Call it only once the job is sure to write:
    /// a job refused for a logical reason consumes no revision.
    pub(crate) fn allocate_revision(&mut self) -> u64 {
        let rev = self.next_revision;
        self.next_revision += 1;
        rev
    }

    /// The stored execution, if any, for this job to replace. From the
    /// writer's cache when it holds it: moved out, and copied only when
    /// something else still shares it (a subscriber's queued event); the
    /// update puts the new state back, and a job that writes nothing after
    /// all leaves the next load to SQLite. Otherwise the same query as a
    /// read, on the writer's connection, inside its transaction (so it sees
    /// this batch's earlier writes).
    pub(crate) fn load(&mut self, id: &str) -> Result<Option<Stored>, ApiError> {
        if let Some((execution, revision, chain)) = self.cache.take(id) {
            let execution =
                Arc::try_unwrap(execution).unwrap_or_else(|shared| AgentExecution::clone(&shared));
            return Ok(Some(Stored {
                execution,
                revision,
                chain,
            }));
        }
        super::reader::get(self.conn, id)
    }

    /// Puts back a state `load` took that the job did not change after all
    /// (an `append` whose operations were all already applied), so the next
    /// load need not rebuild it.
    pub(crate) fn keep(&mut self, id: &str, stored: Stored) {
        let size = stored.chain.base_bytes + stored.chain.delta_bytes;
        self.cache.put(
            id,
            Arc::new(stored.execution),
            stored.revision,
            stored.chain,
            size as usize,
        );
    }

    /// Refuses a state larger than a frame can carry. `estimate` bounds the
    /// state's size from above (its base and the operations since, for a
    /// delta); only near the limit is the exact size computed.
    pub(crate) fn check_size(
        &self,
        execution: &AgentExecution,
        estimate: usize,
    ) -> Result<(), ApiError> {
        // Below this margin under the limit the estimate decides alone; a
        // stamp can add its two RFC 3339 times and the audit's timestamps.
        const MARGIN: usize = 4096;
        if estimate.saturating_add(MARGIN) <= self.max_execution_bytes {
            return Ok(());
        }
        let size = execution.encoded_len();
        if size > self.max_execution_bytes {
            return Err(too_large(size, self.max_execution_bytes));
        }
        Ok(())
    }

    /// The revision of the last change of `id`: its latest state's, or its
    /// delete's (a tombstone); `None` when it never existed (or its
    /// tombstone was pruned). In the cluster mode this is the `mod_revision`
    /// its key in the log must still have for a change to commit.
    pub(crate) fn head(&self, id: &str) -> Result<Option<u64>, ApiError> {
        let live: Option<i64> = self
            .conn
            .prepare_cached("SELECT revision FROM executions WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let revision = match live {
            Some(revision) => Some(revision),
            None => self
                .conn
                .prepare_cached("SELECT revision FROM tombstones WHERE execution_id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?,
        };
        Ok(revision.map(|r| r as u64))
    }

    /// True when an execution with this id exists.
    pub(crate) fn exists(&self, id: &str) -> Result<bool, ApiError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?;
        Ok(stmt.exists([id])?)
    }

    /// Inserts a new execution: its state, already encoded (by
    /// [`Txn::encode`]), as a history row of kind `Created`, and its
    /// `executions` row (id, session, phase) pointing at that row.
    pub(crate) fn insert(
        &mut self,
        id: &str,
        execution: &Arc<AgentExecution>,
        revision: u64,
        data: &[u8],
    ) -> Result<(), ApiError> {
        insert_whole(
            self.conn,
            Whole {
                id,
                execution,
                revision,
                kind: ChangeKind::Created,
                data,
                log_base: revision,
            },
        )?;
        let chain = Chain {
            base: revision,
            base_bytes: data.len() as u64,
            delta_bytes: 0,
        };
        self.cache
            .put(id, execution.clone(), revision, chain, data.len());
        Ok(())
    }

    /// Records a status change of an execution loaded at `previous` (in
    /// this transaction): the new state `execution`, stored as `record` (a
    /// base or a delta), as a history row of kind `StatusUpdated`, and the
    /// `executions` row moved to it. A new base releases the old chain.
    ///
    /// `phase` is `Some` only when it changed: SQLite rewrites an index only
    /// when one of its columns is assigned, so an update that keeps the phase
    /// (most of them: a runner streaming progress) leaves
    /// `executions_by_phase` alone, and `executions_by_session` is never
    /// touched (a status update cannot change the session).
    ///
    /// Returns false, writing nothing, when no row has this id at `previous`.
    pub(crate) fn update(
        &mut self,
        id: &str,
        execution: &Arc<AgentExecution>,
        phase: Option<i32>,
        previous: (u64, Chain),
        revision: u64,
        record: Record<'_>,
    ) -> Result<bool, ApiError> {
        let (previous, old_chain) = previous;
        let (chain, data, ops) = match record {
            Record::Base { data, ops } => (
                Chain {
                    base: revision,
                    base_bytes: data.len() as u64,
                    delta_bytes: 0,
                },
                Some(data),
                ops,
            ),
            Record::Delta { ops } => (
                Chain {
                    delta_bytes: old_chain.delta_bytes + ops.len() as u64,
                    ..old_chain
                },
                None,
                Some(ops),
            ),
        };
        let changed = match phase {
            Some(phase) => self
                .conn
                .prepare_cached(
                    "UPDATE executions SET phase = ?3, revision = ?4, base = ?5, base_bytes = ?6,
                        delta_bytes = ?7 WHERE id = ?1 AND revision = ?2",
                )?
                .execute(params![
                    id,
                    previous as i64,
                    phase,
                    revision as i64,
                    chain.base as i64,
                    chain.base_bytes as i64,
                    chain.delta_bytes as i64
                ])?,
            None => self
                .conn
                .prepare_cached(
                    "UPDATE executions SET revision = ?3, base = ?4, base_bytes = ?5,
                        delta_bytes = ?6 WHERE id = ?1 AND revision = ?2",
                )?
                .execute(params![
                    id,
                    previous as i64,
                    revision as i64,
                    chain.base as i64,
                    chain.base_bytes as i64,
                    chain.delta_bytes as i64
                ])?,
        };
        if changed != 1 {
            return Ok(false);
        }
        if data.is_some() {
            self.release_chain(previous, old_chain.base)?;
        }
        append_history(
            self.conn,
            revision,
            id,
            ChangeKind::StatusUpdated,
            data,
            ops,
            Some(previous),
        )?;
        let size = chain.base_bytes + chain.delta_bytes;
        self.cache
            .put(id, execution.clone(), revision, chain, size as usize);
        Ok(true)
    }

    /// Records that the cluster's log stored execution `id` whole at
    /// `revision` (`executions.log_base`, schema migration 7): a replica
    /// applying a record that carries a base. A create sets it itself.
    pub(crate) fn set_log_base(&self, id: &str, revision: u64) -> Result<(), ApiError> {
        self.conn
            .prepare_cached("UPDATE executions SET log_base = ?2 WHERE id = ?1")?
            .execute(params![id, revision as i64])?;
        Ok(())
    }

    /// Removes an execution and records its deletion at `revision` (a
    /// history row without state). Returns its session, or `None`, writing
    /// nothing, when no row has this id.
    pub(crate) fn remove(&mut self, id: &str, revision: u64) -> Result<Option<String>, ApiError> {
        let previous: Option<(i64, i64, String)> = self
            .conn
            .prepare_cached(
                "DELETE FROM executions WHERE id = ?1 RETURNING revision, base, session_id",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((previous, base, session)) = previous else {
            return Ok(None);
        };
        self.release_chain(previous as u64, base as u64)?;
        append_history(
            self.conn,
            revision,
            id,
            ChangeKind::Deleted,
            None,
            None,
            Some(previous as u64),
        )?;
        // The head of its history chain from now on (`reader::chain`), and
        // how a resume learns of the delete.
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO tombstones(execution_id, revision, session_id)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, revision as i64, session])?;
        self.cache.remove(id);
        Ok(Some(session))
    }

    /// The chain from `head` back to `base` no longer holds an execution's
    /// latest state (a new base was written, or the execution was deleted).
    /// Above the compaction floor its rows stay for streams that catch up
    /// until pruning reaches them; at or below the floor no stream can read
    /// them (catch-up reads only after a revision at or above the floor) and
    /// pruning, which only looks above the floor, would never see them
    /// again, so they go now. This keeps the rows at or below the floor to
    /// the chains executions are rebuilt from. The walk is bounded by the
    /// chain since its base, which the base rule keeps short in bytes.
    fn release_chain(&self, head: u64, base: u64) -> Result<(), ApiError> {
        if base > self.compacted {
            // The whole chain is above the floor: pruning will see it.
            return Ok(());
        }
        let mut next = Some(head);
        while let Some(revision) = next.filter(|r| *r >= base) {
            next = self.prev_of(revision)?;
            if revision <= self.compacted {
                self.conn
                    .prepare_cached("DELETE FROM history WHERE revision = ?1")?
                    .execute([revision as i64])?;
            }
        }
        Ok(())
    }

    /// The `prev` link of the history row at `revision` (`None` at the
    /// start of a chain, or when the row is gone).
    fn prev_of(&self, revision: u64) -> Result<Option<u64>, ApiError> {
        let prev: Option<Option<i64>> = self
            .conn
            .prepare_cached("SELECT prev FROM history WHERE revision = ?1")?
            .query_row([revision as i64], |r| r.get(0))
            .optional()?;
        Ok(prev.flatten().map(|p| p as u64))
    }
}

/// An execution stored whole as the start of its chain (see
/// [`insert_whole`]).
pub(super) struct Whole<'a> {
    pub(super) id: &'a str,
    pub(super) execution: &'a AgentExecution,
    pub(super) revision: u64,
    /// `Created` for a create; the replica's rebuild installs a state as a
    /// `StatusUpdated` (`store::replica::replace`).
    pub(super) kind: ChangeKind,
    /// `execution`, encoded.
    pub(super) data: &'a [u8],
    /// Where the cluster's log last stored it whole (`executions.log_base`;
    /// a create's own revision).
    pub(super) log_base: u64,
}

/// Writes an execution that has no `executions` row yet, stored whole: its
/// history row (no `prev`, no operations) and its `executions` row (id,
/// session, phase) pointing at that row as its latest change and its base.
/// The one place these rows are inserted: by [`Txn::insert`] (a create) and
/// by the cluster mode's rebuild (`store::replica::replace`).
pub(super) fn insert_whole(conn: &Connection, whole: Whole<'_>) -> Result<(), ApiError> {
    let Whole {
        id,
        execution,
        revision,
        kind,
        data,
        log_base,
    } = whole;
    let session = execution
        .spec
        .as_ref()
        .map(|s| s.session_id.as_str())
        .unwrap_or("");
    let phase = execution.status.as_ref().map(|s| s.phase).unwrap_or(0);
    append_history(conn, revision, id, kind, Some(data), None, None)?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO executions(id, session_id, phase, revision, base, base_bytes, delta_bytes,
                                log_base)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, 0, ?6)",
    )?;
    stmt.execute(params![
        id,
        session,
        phase,
        revision as i64,
        data.len() as i64,
        log_base as i64
    ])?;
    Ok(())
}

/// Records a change in the history: the whole state after it, already
/// encoded (a base; `None` for a delta or a delete), the operations of a
/// change made by them (an encoded `Delta`), and `prev`, the revision of
/// the execution's previous change (the link `reader::chain` follows).
/// This row is what streams catch up from and, with the rows after its
/// base, the execution's latest state.
fn append_history(
    conn: &Connection,
    revision: u64,
    id: &str,
    kind: ChangeKind,
    data: Option<&[u8]>,
    ops: Option<&[u8]>,
    prev: Option<u64>,
) -> Result<(), ApiError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO history(revision, execution_id, kind, data, prev, ops)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    stmt.execute(params![
        revision as i64,
        id,
        kind as i64,
        data,
        prev.map(|p| p as i64),
        ops
    ])?;
    Ok(())
}

/// The refusal of a state over the limit: what fits in a frame, or in the
/// cluster mode what fits in one etcd request (`cluster::MAX_STATE_BYTES`).
fn too_large(size: usize, max: usize) -> ApiError {
    ApiError::resource_exhausted(format!(
        "the execution would be {size} bytes, over the {max} bytes a state may have \
         (what fits in a frame: --max-frame-length less the envelope; with --etcd, at \
         most 640 KiB, for etcd's request limit)"
    ))
}

/// One write transaction, `BEGIN IMMEDIATE ... COMMIT`, rolled back when
/// dropped uncommitted.
///
/// Why not rusqlite's `Transaction`: it runs both statements through
/// `execute_batch`, which parses the SQL text again for every batch (~1% of
/// the writer thread under 32 runners); these are prepared once and cached.
pub(crate) struct Immediate<'c> {
    pub(crate) conn: &'c Connection,
}

impl<'c> Immediate<'c> {
    pub(crate) fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Immediate { conn })
    }

    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        // After a failed statement or COMMIT the transaction may still be
        // open (SQLite rolls back by itself only on some errors).
        if !self.conn.is_autocommit() {
            if let Err(err) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(%err, "rollback failed");
            }
        }
    }
}
