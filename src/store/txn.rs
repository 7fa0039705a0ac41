//! `Txn`: the typed operations a write job performs inside the writer
//! thread's open transaction. Jobs never see SQL; they load, insert, update
//! and delete, and take revisions in commit order.
//!
//! Each state is written once: as a `history` row, which `executions.revision`
//! points at while it is the execution's latest state (see `schema`,
//! migration 2). Insert, update and delete write the history row and the
//! `executions` row together, so the pointer always has its row.

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

/// An execution as stored: the decoded message and its revision.
pub(crate) struct Stored {
    pub(crate) execution: AgentExecution,
    pub(crate) revision: u64,
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
            return Err(ApiError::resource_exhausted(format!(
                "the execution would be {} bytes, over the {} bytes that fit in a frame \
                 (--max-frame-length less the envelope)",
                buf.len(),
                self.max_execution_bytes
            )));
        }
        Ok(Bytes::from(buf))
    }

    pub(crate) fn next_revision(&self) -> u64 {
        self.next_revision
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
        if let Some((execution, revision)) = self.cache.take(id) {
            let execution =
                Arc::try_unwrap(execution).unwrap_or_else(|shared| AgentExecution::clone(&shared));
            return Ok(Some(Stored {
                execution,
                revision,
            }));
        }
        super::reader::get(self.conn, id)
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
        let session = execution
            .spec
            .as_ref()
            .map(|s| s.session_id.as_str())
            .unwrap_or("");
        let phase = execution.status.as_ref().map(|s| s.phase).unwrap_or(0);
        self.append_history(revision, id, ChangeKind::Created, Some(data), None)?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO executions(id, session_id, phase, revision) VALUES (?1, ?2, ?3, ?4)",
        )?;
        stmt.execute(params![id, session, phase, revision as i64])?;
        self.cache.put(id, execution.clone(), revision, data.len());
        Ok(())
    }

    /// Records a status update of an execution whose latest state is at
    /// `previous` (as loaded in this transaction): the new state `execution`,
    /// already encoded as `data`, as a history row of kind `StatusUpdated`,
    /// and the `executions` row moved to it.
    ///
    /// `phase` is `Some` only when it changed: SQLite rewrites an index only
    /// when one of its columns is assigned, so an update that keeps the phase
    /// (most of them: a runner streaming progress) leaves
    /// `executions_by_phase` alone, and `executions_by_session` is never
    /// touched (a status update cannot change the session).
    ///
    /// Returns false, writing nothing, when no row has this id at `previous`.
    pub(crate) fn update_encoded(
        &mut self,
        id: &str,
        execution: &Arc<AgentExecution>,
        phase: Option<i32>,
        previous: u64,
        revision: u64,
        data: &[u8],
    ) -> Result<bool, ApiError> {
        let changed = match phase {
            Some(phase) => self
                .conn
                .prepare_cached(
                    "UPDATE executions SET phase = ?3, revision = ?4 WHERE id = ?1 AND revision = ?2",
                )?
                .execute(params![id, previous as i64, phase, revision as i64])?,
            None => self
                .conn
                .prepare_cached(
                    "UPDATE executions SET revision = ?3 WHERE id = ?1 AND revision = ?2",
                )?
                .execute(params![id, previous as i64, revision as i64])?,
        };
        if changed != 1 {
            return Ok(false);
        }
        self.release(previous)?;
        self.append_history(
            revision,
            id,
            ChangeKind::StatusUpdated,
            Some(data),
            Some(previous),
        )?;
        self.cache.put(id, execution.clone(), revision, data.len());
        Ok(true)
    }

    /// Removes an execution and records its deletion at `revision` (a
    /// history row without state). Returns false, writing nothing, when no
    /// row has this id.
    pub(crate) fn remove(&mut self, id: &str, revision: u64) -> Result<bool, ApiError> {
        let previous: Option<i64> = self
            .conn
            .prepare_cached("DELETE FROM executions WHERE id = ?1 RETURNING revision")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let Some(previous) = previous else {
            return Ok(false);
        };
        self.release(previous as u64)?;
        self.append_history(
            revision,
            id,
            ChangeKind::Deleted,
            None,
            Some(previous as u64),
        )?;
        // The head of its history chain from now on (`reader::chain`), and
        // how a resume learns of the delete.
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO tombstones(execution_id, revision) VALUES (?1, ?2)",
            )?
            .execute(params![id, revision as i64])?;
        self.cache.remove(id);
        Ok(true)
    }

    /// The history row at `previous` no longer holds an execution's latest
    /// state. Above the compaction floor it stays for streams that catch up
    /// until pruning reaches it; at or below the floor no stream can read it
    /// (catch-up reads only after a revision at or above the floor) and
    /// pruning, which only looks above the floor, would never see it again,
    /// so it goes now. This keeps the rows at or below the floor to those
    /// some execution points at: at most one per execution.
    fn release(&self, previous: u64) -> Result<(), ApiError> {
        if previous <= self.compacted {
            self.conn
                .prepare_cached("DELETE FROM history WHERE revision = ?1")?
                .execute([previous as i64])?;
        }
        Ok(())
    }

    /// Records a change in the history: the state after it, already encoded
    /// (`None` for a delete), and `prev`, the revision of the execution's
    /// previous change (the link `reader::chain` follows). This row is both
    /// what streams catch up from and, while `executions` points at it, the
    /// execution's latest state.
    fn append_history(
        &self,
        revision: u64,
        id: &str,
        kind: ChangeKind,
        data: Option<&[u8]>,
        prev: Option<u64>,
    ) -> Result<(), ApiError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO history(revision, execution_id, kind, data, prev)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        stmt.execute(params![
            revision as i64,
            id,
            kind as i64,
            data,
            prev.map(|p| p as i64)
        ])?;
        Ok(())
    }
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
