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
            change
                .delta
                .as_ref()
                .map(|d| bytes::Bytes::from(StoredDelta { ops: d.ops.clone() }.encode_to_vec())),
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
            delta::apply_to(&mut loaded.execution, &stored.ops).map_err(|e| {
                diverged(id, revision, &format!("its operations do not apply: {e:?}"))
            })?;
            txn.use_revision(revision)?;
            let change = ops::persist(txn, id, loaded, stored.ops)?;
            if record.base.is_some() {
                // The log holds this state whole from here on: compaction
                // may pass the previous base (`cluster/compact.rs`).
                txn.set_log_base(id, revision)?;
            }
            Ok(change)
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
    Ok(ops::Loaded::from_stored(stored))
}

/// The replica cannot apply what the log says: INTERNAL, naming the
/// change, so that the replica is rebuilt rather than silently skewed.
fn diverged(id: &str, revision: u64, what: &str) -> ApiError {
    ApiError::internal(format!(
        "the log's change at revision {revision} of execution {id} is {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Applied, Replicated, Write};
    use crate::store::cache::LatestCache;
    use crate::store::{reader, schema, Immediate};
    use proptest::prelude::*;
    use rusqlite::Connection;
    use std::collections::HashMap;
    use std::time::SystemTime;
    use stigmer_proto::agentexecution::{
        AgentExecutionSpec, AgentExecutionStatus, AgentExecutionUpdateStatusInput, AgentMessage,
        ExecutionPhase, MessageType,
    };
    use stigmer_proto::apiresource::ApiResourceMetadata;
    use stigmer_proto::daemon::{op, AppendRequest, AppendText, Op};

    /// One store, as the writer thread keeps it.
    struct Store {
        conn: Connection,
        cache: LatestCache,
        next: u64,
    }

    impl Store {
        fn new() -> Store {
            let mut conn = Connection::open_in_memory().expect("open");
            schema::migrate(&mut conn).expect("migrate");
            Store {
                conn,
                cache: LatestCache::new(1 << 20),
                next: 1,
            }
        }

        /// Runs one write in its own transaction, as a batch of one.
        fn commit(&mut self, write: Write) -> Result<Option<Change>, ApiError> {
            let tx = Immediate::begin(&self.conn)?;
            let mut txn = Txn::new(tx.conn, self.next, 1 << 20, 0, &mut self.cache);
            let applied = write.apply(&mut txn, SystemTime::UNIX_EPOCH);
            let next = txn.next_revision();
            match applied {
                Ok(Applied::Change(change)) => {
                    tx.commit()?;
                    self.next = next;
                    Ok(Some(change))
                }
                Ok(Applied::Unchanged { .. }) => Ok(None),
                Err(err) => {
                    drop(tx);
                    self.cache.clear();
                    Err(err)
                }
            }
        }
    }

    /// A random step of a runner or an operator.
    #[derive(Clone, Debug)]
    enum Step {
        Create(usize),
        Append(usize, String),
        Replace(usize, String),
        Complete(usize),
        Delete(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        let id = 0..3usize;
        let text = "[a-zé ]{1,6}";
        prop_oneof![
            2 => id.clone().prop_map(Step::Create),
            6 => (id.clone(), text).prop_map(|(i, t)| Step::Append(i, t)),
            1 => (id.clone(), text).prop_map(|(i, t)| Step::Replace(i, t)),
            1 => id.clone().prop_map(Step::Complete),
            1 => id.prop_map(Step::Delete),
        ]
    }

    fn id(i: usize) -> String {
        format!("aex-0000000000000000000000000{i}")
    }

    fn ai(text: &str, phase: ExecutionPhase) -> AgentExecutionStatus {
        AgentExecutionStatus {
            phase: phase as i32,
            messages: vec![AgentMessage {
                r#type: MessageType::MessageAi as i32,
                content: text.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The write of `step`, given the texts' lengths so far.
    fn write(step: &Step, texts: &HashMap<usize, usize>) -> Write {
        match step {
            Step::Create(i) => Write::Create(Box::new(AgentExecution {
                metadata: Some(ApiResourceMetadata {
                    id: id(*i),
                    ..Default::default()
                }),
                spec: Some(AgentExecutionSpec {
                    agent_id: "agent".into(),
                    message: "hello".into(),
                    session_id: format!("s{}", i % 2),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            Step::Append(i, text) => Write::Append(Box::new(AppendRequest {
                execution_id: id(*i),
                expected_revision: None,
                ops: vec![Op {
                    op: Some(op::Op::AppendText(AppendText {
                        message_index: 0,
                        offset: texts.get(i).copied().unwrap_or(0) as u64,
                        text: text.clone(),
                        r#type: 0,
                    })),
                }],
            })),
            Step::Replace(i, text) => {
                Write::UpdateStatus(Box::new(AgentExecutionUpdateStatusInput {
                    execution_id: id(*i),
                    status: Some(ai(text, ExecutionPhase::ExecutionInProgress)),
                }))
            }
            Step::Complete(i) => Write::UpdateStatus(Box::new(AgentExecutionUpdateStatusInput {
                execution_id: id(*i),
                status: Some(AgentExecutionStatus {
                    phase: ExecutionPhase::ExecutionCompleted as i32,
                    ..Default::default()
                }),
            })),
            Step::Delete(i) => Write::Delete(id(*i)),
        }
    }

    /// The log's revision of local revision `r`: etcd's revisions skip
    /// those of other keys.
    fn sparse(r: u64) -> u64 {
        if r == 0 {
            0
        } else {
            r * 3 + 7
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every change a daemon commits, sent through its record and
        /// applied by a replica at the log's revision, re-makes the same
        /// state, and the replica ends with every execution as the origin
        /// has it.
        #[test]
        fn a_replica_fed_the_records_reaches_the_same_states(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            let (mut origin, mut replica) = (Store::new(), Store::new());
            // The origin's latest revision of each execution, and its text's
            // length (what a runner tracks for its offsets).
            let mut heads: HashMap<usize, u64> = HashMap::new();
            let mut texts: HashMap<usize, usize> = HashMap::new();
            for step in &steps {
                let i = match step {
                    Step::Create(i) | Step::Append(i, _) | Step::Replace(i, _)
                    | Step::Complete(i) | Step::Delete(i) => *i,
                };
                let Ok(Some(change)) = origin.commit(write(step, &texts)) else {
                    continue; // refused (not found, terminal, ...): nothing to log
                };
                let prev = match change.kind {
                    ChangeKind::Created => 0,
                    ChangeKind::StatusUpdated => {
                        change.delta.as_ref().map(|d| d.prev_revision).unwrap_or(0)
                    }
                    ChangeKind::Deleted => heads.get(&i).copied().unwrap_or(0),
                };
                let mut record = record_of(&change, sparse(prev), bytes::Bytes::from_static(b"r"));
                // Through the log's bytes, as another daemon would get it.
                record = Record::decode(record.encode_to_vec().as_slice()).expect("decode");
                let replayed = replica
                    .commit(Write::Replicate(Box::new(Replicated {
                        revision: sparse(change.revision),
                        execution_id: id(i),
                        record,
                    })))
                    .expect("the replica applies what the origin committed")
                    .expect("a change");
                prop_assert_eq!(replayed.kind, change.kind);
                prop_assert_eq!(replayed.revision, sparse(change.revision));
                prop_assert_eq!(
                    replayed.state.as_ref().map(|s| s.execution.clone()),
                    change.state.as_ref().map(|s| s.execution.clone())
                );
                match change.kind {
                    ChangeKind::Deleted => {
                        heads.remove(&i);
                        texts.remove(&i);
                    }
                    _ => {
                        heads.insert(i, change.revision);
                        let len = change
                            .state
                            .as_ref()
                            .and_then(|s| s.execution.status.as_ref())
                            .and_then(|s| s.messages.first())
                            .map_or(0, |m| m.content.len());
                        texts.insert(i, len);
                    }
                }
            }
            for i in 0..3 {
                let a = reader::get(&origin.conn, &id(i)).expect("read origin");
                let b = reader::get(&replica.conn, &id(i)).expect("read replica");
                prop_assert_eq!(a.is_some(), b.is_some());
                if let (Some(a), Some(b)) = (a, b) {
                    prop_assert_eq!(sparse(a.revision), b.revision);
                    prop_assert_eq!(a.execution, b.execution);
                }
            }
        }
    }

    #[test]
    fn a_change_from_another_revision_than_the_replicas_is_refused() {
        let mut origin = Store::new();
        let mut replica = Store::new();
        let create = origin
            .commit(write(&Step::Create(0), &HashMap::new()))
            .expect("create")
            .expect("a change");
        replica
            .commit(Write::Replicate(Box::new(Replicated {
                revision: 1,
                execution_id: id(0),
                record: record_of(&create, 0, bytes::Bytes::new()),
            })))
            .expect("create replicated");
        let append = origin
            .commit(write(&Step::Append(0, "hi".into()), &HashMap::new()))
            .expect("append")
            .expect("a change");
        let mut record = record_of(&append, 1, bytes::Bytes::new());
        record.prev = 5;
        let err = replica
            .commit(Write::Replicate(Box::new(Replicated {
                revision: 2,
                execution_id: id(0),
                record,
            })))
            .expect_err("the replica is not at revision 5");
        assert_eq!(err.code, crate::protocol::Code::Internal);
        assert!(err.message.contains("revision 5"), "{}", err.message);
        // A revision below the replica's is refused as well.
        let err = replica
            .commit(Write::Replicate(Box::new(Replicated {
                revision: 1,
                execution_id: id(0),
                record: record_of(&append, 1, bytes::Bytes::new()),
            })))
            .expect_err("revisions only go up");
        assert_eq!(err.code, crate::protocol::Code::Internal);
    }
}
