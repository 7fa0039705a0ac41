//! `Txn`: the typed operations a write job performs inside the writer
//! thread's open transaction. Jobs never see SQL; they load, insert, update,
//! delete and append history, and take revisions in commit order.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};
use stigmer_proto::agentexecution::AgentExecution;

use super::ChangeKind;
use crate::protocol::Status;

/// A write job's view of the open transaction.
pub struct Txn<'c> {
    conn: &'c Connection,
    /// The next revision to hand out; the writer commits the counter with
    /// the batch, or discards it if the batch rolls back.
    next_revision: u64,
    /// The largest encoded execution that can still be sent in one frame.
    max_execution_bytes: usize,
}

/// An execution as stored: the decoded message and its revision.
pub struct Stored {
    pub execution: AgentExecution,
    pub revision: u64,
}

impl<'c> Txn<'c> {
    pub(crate) fn new(
        conn: &'c Connection,
        next_revision: u64,
        max_execution_bytes: usize,
    ) -> Self {
        Self {
            conn,
            next_revision,
            max_execution_bytes,
        }
    }

    /// Refuses a state too large to be sent back in one frame (as a reply or
    /// an event), so that everything stored can be streamed.
    pub fn check_size(&self, execution: &AgentExecution) -> Result<(), Status> {
        self.check_len(execution.encoded_len())
    }

    fn check_len(&self, len: usize) -> Result<(), Status> {
        if len > self.max_execution_bytes {
            return Err(Status::resource_exhausted(format!(
                "the execution would be {len} bytes, over the {} bytes that fit in a frame \
                 (--max-frame-length less the envelope)",
                self.max_execution_bytes
            )));
        }
        Ok(())
    }

    /// Encodes a state once, refusing it as [`Txn::check_size`] does. The
    /// bytes serve the latest-state row, the history row and the broadcast
    /// event alike (each used to encode the same message again: three
    /// length passes and two encodings per update, now one of each).
    pub fn encode(&self, execution: &AgentExecution) -> Result<Bytes, Status> {
        // Encoding first costs a wasted encoding only for a refused state.
        let buf = execution.encode_to_vec();
        self.check_len(buf.len())?;
        Ok(Bytes::from(buf))
    }

    pub(crate) fn next_revision(&self) -> u64 {
        self.next_revision
    }

    /// Takes the next revision. Call it only once the job is sure to write:
    /// a job refused for a logical reason consumes no revision.
    pub fn allocate_revision(&mut self) -> u64 {
        let rev = self.next_revision;
        self.next_revision += 1;
        rev
    }

    /// The stored execution, if any.
    pub fn load(&self, id: &str) -> Result<Option<Stored>, Status> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data, revision FROM executions WHERE id = ?1")?;
        let row: Option<(Vec<u8>, i64)> = stmt
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            None => Ok(None),
            Some((data, revision)) => Ok(Some(Stored {
                execution: AgentExecution::decode(data.as_slice())?,
                revision: revision as u64,
            })),
        }
    }

    /// True when an execution with this id exists.
    pub fn exists(&self, id: &str) -> Result<bool, Status> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?;
        Ok(stmt.exists([id])?)
    }

    /// Inserts or replaces the latest state of an execution.
    pub fn put(&self, id: &str, execution: &AgentExecution, revision: u64) -> Result<(), Status> {
        self.put_encoded(id, execution, revision, &execution.encode_to_vec())
    }

    /// [`Txn::put`] with the state already encoded (by [`Txn::encode`]).
    pub fn put_encoded(
        &self,
        id: &str,
        execution: &AgentExecution,
        revision: u64,
        data: &[u8],
    ) -> Result<(), Status> {
        let session = execution
            .spec
            .as_ref()
            .map(|s| s.session_id.as_str())
            .unwrap_or("");
        let phase = execution.status.as_ref().map(|s| s.phase).unwrap_or(0);
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO executions(id, session_id, phase, revision, data)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET
                session_id = excluded.session_id, phase = excluded.phase,
                revision = excluded.revision, data = excluded.data",
        )?;
        stmt.execute(params![id, session, phase, revision as i64, data])?;
        Ok(())
    }

    /// Replaces the latest state of an execution that exists (a status
    /// update). `phase` is `Some` only when it changed: SQLite rewrites an
    /// index only when one of its columns is assigned, so an update that
    /// keeps the phase (most of them: a runner streaming progress) leaves
    /// `executions_by_phase` alone, and `executions_by_session` is never
    /// touched (a status update cannot change the session). The upsert of
    /// [`Txn::put`] assigned every column and so rewrote both indexes.
    /// Returns false when no row has this id.
    pub fn update_encoded(
        &self,
        id: &str,
        phase: Option<i32>,
        revision: u64,
        data: &[u8],
    ) -> Result<bool, Status> {
        let changed = match phase {
            Some(phase) => self
                .conn
                .prepare_cached(
                    "UPDATE executions SET phase = ?2, revision = ?3, data = ?4 WHERE id = ?1",
                )?
                .execute(params![id, phase, revision as i64, data])?,
            None => self
                .conn
                .prepare_cached("UPDATE executions SET revision = ?2, data = ?3 WHERE id = ?1")?
                .execute(params![id, revision as i64, data])?,
        };
        Ok(changed == 1)
    }

    /// Removes an execution's latest state.
    pub fn remove(&self, id: &str) -> Result<(), Status> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM executions WHERE id = ?1")?;
        stmt.execute([id])?;
        Ok(())
    }

    /// Records a change in the history, for streams that resume.
    pub fn append_history(
        &self,
        revision: u64,
        id: &str,
        kind: ChangeKind,
        execution: Option<&Arc<AgentExecution>>,
    ) -> Result<(), Status> {
        let data = execution.map(|e| e.encode_to_vec());
        self.append_history_encoded(revision, id, kind, data.as_deref())
    }

    /// [`Txn::append_history`] with the state already encoded.
    pub fn append_history_encoded(
        &self,
        revision: u64,
        id: &str,
        kind: ChangeKind,
        data: Option<&[u8]>,
    ) -> Result<(), Status> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO history(revision, execution_id, kind, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        stmt.execute(params![revision as i64, id, kind as i64, data])?;
        Ok(())
    }
}
