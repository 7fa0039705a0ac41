//! Replicate: applies a change decided elsewhere (by this or another
//! daemon, through the shared log of the cluster mode, issue 20 and
//! docs/design/cluster.md) to this daemon's store, at the revision the log
//! gave it, and broadcasts it like any other change.
//!
//! | step        | runs on                               | does |
//! |-------------|---------------------------------------|------|
//! | `decode`    | the replica task                      | the log's value into a [`Record`] |
//! | `load`      | the writer thread, in the transaction | a status change or delete: the execution must be at `prev` (else INTERNAL: the replica and the log disagree, and it must be rebuilt) |
//! | `apply`     | the writer thread                     | a create: its whole state; a status change: its operations on the loaded state |
//! | `persist`   | the writer thread                     | the given revision; then the same persist step as the local pipelines (`create`, `ops`, `delete`) |
//! | `broadcast` | the writer thread, after COMMIT       | [`super::broadcast`] |
//!
//! A [`Record`] is made from a change committed locally ([`record_of`]):
//! what every daemon needs to reach the same state, and no more. How each
//! replica stores it (a delta or a base) is its own affair: its chain
//! decides, as for a local write.

use prost::Message;
use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::Delta as StoredDelta;
use stigmer_proto::delta;

use super::{create, delete, ops};
use crate::model::{Change, ChangeKind};
use crate::protocol::ApiError;
use crate::store::Txn;

/// What kind of change a [`Record`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum RecordKind {
    Unspecified = 0,
    Created = 1,
    StatusUpdated = 2,
    Deleted = 3,
}

/// One change as the log stores it (declared here with prost's derive: an
/// internal format of the daemons, not part of the client protocol).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Record {
    #[prost(enumeration = "RecordKind", tag = "1")]
    pub(crate) kind: i32,
    /// The whole encoded `AgentExecution`: always for a create; for a
    /// status change when the proposing daemon stored a base, so that a
    /// replica rebuilt from a compacted log finds whole states.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub(crate) base: Option<bytes::Bytes>,
    /// A status change's operations (an encoded `Delta`, the stamp last).
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub(crate) ops: Option<bytes::Bytes>,
    /// The execution's revision before this change (0 for a create).
    #[prost(uint64, tag = "4")]
    pub(crate) prev: u64,
    /// Chosen by the proposing daemon for the client's request, so that a
    /// retried proposal whose reply was lost finds its own commit.
    #[prost(bytes = "bytes", tag = "5")]
    pub(crate) request_id: bytes::Bytes,
}

/// The record of `change`, committed at `prev` (the execution's revision
/// before it; a delete's own `prev` is not in its change). Call it right
/// after the change was persisted, before it is broadcast: whether a
/// status change was stored whole is read from its state's encoding, which
/// only the writer has made by then.
pub(crate) fn record_of(change: &Change, prev: u64, request_id: bytes::Bytes) -> Record {
    let (kind, base, ops) = match change.kind {
        ChangeKind::Created => (
            RecordKind::Created,
            change.state.as_ref().map(|s| s.encoded().clone()),
            None,
        ),
        ChangeKind::StatusUpdated => (
            RecordKind::StatusUpdated,
            change
                .state
                .as_ref()
                .and_then(|s| s.encoded_if_made().cloned()),
            change.delta.as_ref().map(|d| {
                bytes::Bytes::from(
                    StoredDelta {
                        ops: d.ops.clone(),
                    }
                    .encode_to_vec(),
                )
            }),
        ),
        ChangeKind::Deleted => (RecordKind::Deleted, None, None),
    };
    Record {
        kind: kind as i32,
        base,
        ops,
        prev,
        request_id,
    }
}

/// Steps load, apply and persist of `record` for execution `id`, at
/// `revision`, on the writer thread inside its transaction.
pub(crate) fn in_transaction(
    txn: &mut Txn<'_>,
    revision: u64,
    id: &str,
    record: Record,
) -> Result<Change, ApiError> {
    match RecordKind::try_from(record.kind) {
        Ok(RecordKind::Created) => {
            let base = record
                .base
                .ok_or_else(|| diverged(id, revision, "a create without its state"))?;
            let execution = AgentExecution::decode(base)
                .map_err(|e| diverged(id, revision, &format!("its state does not decode: {e}")))?;
            let stored_id = execution.metadata.as_ref().map(|m| m.id.as_str());
            if stored_id != Some(id) {
                return Err(diverged(id, revision, "a create of another execution"));
            }
            txn.use_revision(revision)?;
            create::persist(txn, execution)
        }
        Ok(RecordKind::StatusUpdated) => {
            let encoded = record
                .ops
                .ok_or_else(|| diverged(id, revision, "a status change without operations"))?;
            let stored = StoredDelta::decode(encoded).map_err(|e| {
                diverged(id, revision, &format!("its operations do not decode: {e}"))
            })?;
            let mut loaded = load_at(txn, id, record.prev, revision)?;
            let status = loaded.execution.status.get_or_insert_with(Default::default);
            delta::apply_all(status, &stored.ops).map_err(|e| {
                diverged(
                    id,
                    revision,
                    &format!("its operations do not apply: {e:?}"),
                )
            })?;
            txn.use_revision(revision)?;
            ops::persist(txn, id, loaded, stored.ops)
        }
        Ok(RecordKind::Deleted) => {
            load_at(txn, id, record.prev, revision)?;
            txn.use_revision(revision)?;
            delete::persist(txn, id)
        }
        _ => Err(diverged(id, revision, "a record of no known kind")),
    }
}

/// Step "load" of a status change or delete: the execution as stored,
/// which must be at `prev`. A terminal phase is no refusal here: the log
/// decided.
fn load_at(txn: &mut Txn<'_>, id: &str, prev: u64, revision: u64) -> Result<ops::Loaded, ApiError> {
    let stored = txn
        .load(id)?
        .ok_or_else(|| diverged(id, revision, "a change of an execution this replica lacks"))?;
    if stored.revision != prev {
        return Err(diverged(
            id,
            revision,
            &format!(
                "a change from revision {prev}, but the replica has it at {}",
                stored.revision
            ),
        ));
    }
    let phase = stored
        .execution
        .status
        .as_ref()
        .map(|s| s.phase)
        .unwrap_or(0);
    Ok(ops::Loaded {
        execution: stored.execution,
        phase,
        revision: stored.revision,
        chain: stored.chain,
    })
}

/// The replica cannot apply what the log says: INTERNAL, naming the
/// change, so that the replica is rebuilt rather than silently skewed.
fn diverged(id: &str, revision: u64, what: &str) -> ApiError {
    ApiError::internal(format!(
        "the log's change at revision {revision} of execution {id} is {what}"
    ))
}
