//! `Txn`: the typed operations a write job performs inside the writer
//! thread's open transaction. Jobs never see SQL; they load, insert, update,
//! delete and append history, and take revisions in commit order.

use bytes::Bytes;
use prost::Message;
use rusqlite::{params, Connection};
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

    /// Encodes a state once, refusing one too large to be sent back in one
    /// frame (as a reply or an event), so that everything stored can be
    /// streamed. The bytes serve the latest-state row, the history row and
    /// the broadcast event alike.
    pub fn encode(&self, execution: &AgentExecution) -> Result<Bytes, Status> {
        // Encoding first costs a wasted encoding only for a refused state.
        let buf = execution.encode_to_vec();
        if buf.len() > self.max_execution_bytes {
            return Err(Status::resource_exhausted(format!(
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
    pub fn allocate_revision(&mut self) -> u64 {
        let rev = self.next_revision;
        self.next_revision += 1;
        rev
    }

    /// The stored execution, if any (the same query as a read, on the
    /// writer's connection, inside its transaction).
    pub fn load(&self, id: &str) -> Result<Option<Stored>, Status> {
        super::reader::get(self.conn, id)
    }

    /// True when an execution with this id exists.
    pub fn exists(&self, id: &str) -> Result<bool, Status> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?;
        Ok(stmt.exists([id])?)
    }

    /// Inserts the latest state of a new execution, already encoded (by
    /// [`Txn::encode`]).
    pub fn insert(
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
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        stmt.execute(params![id, session, phase, revision as i64, data])?;
        Ok(())
    }

    /// Replaces the latest state of an execution that exists (a status
    /// update). `phase` is `Some` only when it changed: SQLite rewrites an
    /// index only when one of its columns is assigned, so an update that
    /// keeps the phase (most of them: a runner streaming progress) leaves
    /// `executions_by_phase` alone, and `executions_by_session` is never
    /// touched (a status update cannot change the session). Assigning every
    /// column would rewrite both indexes on every update.
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

    /// Records a change in the history, for streams that resume: the state
    /// after it, already encoded (`None` for a delete).
    pub fn append_history(
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
