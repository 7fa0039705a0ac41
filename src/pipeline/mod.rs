//! The write pipelines: every change to an execution runs as named steps,
//! written down in order in one place per command, each step one function.
//!
//! | command         | steps |
//! |-----------------|-------|
//! | [`create`]        | validate → build → persist → broadcast |
//! | [`update_status`] | validate → load → build → diff → persist → broadcast |
//! | [`append`]        | validate → load → check → apply → stamp → persist → broadcast |
//! | [`delete`]        | validate → load → persist → broadcast |
//!
//! Status changes are made by operations ([`ops`]): `append` receives them,
//! `update_status` computes them from a whole status (its `diff` step).
//!
//! - **validate** runs on the connection's task before the request is
//!   queued (a refusal costs no disk access): `<command>::validate`.
//! - **load, build, persist** run on the writer thread inside its batch
//!   transaction, which makes them atomic per execution:
//!   `<command>::in_transaction` calls them in order, each taking what the
//!   one before returned, so the order is fixed by the types, not checked
//!   at run time. A new step is one line there.
//! - **broadcast** runs on the writer thread after COMMIT, for the whole
//!   batch in revision order ([`broadcast`]), before any caller is answered.
//!
//! A write travels to the writer thread as a [`Write`]: a plain value naming
//! its pipeline and carrying its (validated) input.

pub(crate) mod append;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod ops;
pub(crate) mod replicate;
pub(crate) mod update_status;
pub(crate) mod validate;

use std::sync::Arc;
use std::time::SystemTime;

use stigmer_proto::agentexecution::{AgentExecution, AgentExecutionUpdateStatusInput};
use stigmer_proto::daemon::AppendRequest;

use crate::broker::Broker;
use crate::model::Change;
use crate::protocol::ApiError;
use crate::store::Txn;

/// One validated write, on its way to the writer thread. The inputs are
/// boxed so a queued job stays a few words (one allocation per write, as
/// the boxed closure it replaced).
pub enum Write {
    /// A new execution ([`create`]).
    Create(Box<AgentExecution>),
    /// A status update ([`update_status`]).
    UpdateStatus(Box<AgentExecutionUpdateStatusInput>),
    /// Operations on a status ([`append`]).
    Append(Box<AppendRequest>),
    /// A delete, by execution id ([`delete`]).
    Delete(String),
    /// A change decided by the cluster's log, at its revision
    /// ([`replicate`]).
    #[allow(private_interfaces)]
    Replicate(Box<Replicated>),
    /// Tests only: any change made inside the transaction (its type names
    /// the crate-private `Txn`, which no caller outside the crate sees).
    #[cfg(test)]
    #[allow(private_interfaces)]
    Test(TestWrite),
}

/// A change from the cluster's log for [`Write::Replicate`].
#[derive(Clone)]
pub(crate) struct Replicated {
    /// The log's revision of the change.
    pub(crate) revision: u64,
    pub(crate) execution_id: String,
    pub(crate) record: replicate::Record,
}

/// A test's own in-transaction step.
#[cfg(test)]
pub(crate) type TestWrite = Box<dyn FnOnce(&mut Txn<'_>) -> Result<Change, ApiError> + Send>;

impl Write {
    /// A copy, to run again (a proposal retried after a conflict); `None`
    /// for a test's closure.
    pub(crate) fn try_clone(&self) -> Option<Write> {
        Some(match self {
            Write::Create(e) => Write::Create(e.clone()),
            Write::UpdateStatus(input) => Write::UpdateStatus(input.clone()),
            Write::Append(req) => Write::Append(req.clone()),
            Write::Delete(id) => Write::Delete(id.clone()),
            Write::Replicate(r) => Write::Replicate(r.clone()),
            #[cfg(test)]
            Write::Test(_) => return None,
        })
    }

    /// The execution this write changes, when known before it runs (a
    /// create without an id gets a new one).
    pub(crate) fn execution_id(&self) -> Option<&str> {
        match self {
            Write::Create(e) => e
                .metadata
                .as_ref()
                .map(|m| m.id.as_str())
                .filter(|id| !id.is_empty()),
            Write::UpdateStatus(input) => Some(&input.execution_id),
            Write::Append(req) => Some(&req.execution_id),
            Write::Delete(id) => Some(id),
            Write::Replicate(r) => Some(&r.execution_id),
            #[cfg(test)]
            Write::Test(_) => None,
        }
    }

    /// Runs this write's in-transaction steps (load, build, persist) in the
    /// writer's open transaction; `now` stamps the change.
    pub(crate) fn apply(self, txn: &mut Txn<'_>, now: SystemTime) -> Result<Applied, ApiError> {
        match self {
            Write::Create(execution) => {
                create::in_transaction(txn, *execution, now).map(Applied::Change)
            }
            Write::UpdateStatus(input) => {
                update_status::in_transaction(txn, *input, now).map(Applied::Change)
            }
            Write::Append(req) => append::in_transaction(txn, *req, now),
            Write::Delete(id) => delete::in_transaction(txn, &id).map(Applied::Change),
            Write::Replicate(r) => {
                let Replicated {
                    revision,
                    execution_id,
                    record,
                } = *r;
                replicate::in_transaction(txn, revision, &execution_id, record).map(Applied::Change)
            }
            #[cfg(test)]
            Write::Test(apply) => apply(txn).map(Applied::Change),
        }
    }
}

/// What a write did inside the transaction.
// `Applied` lives for a moment on the writer thread's stack before the
// change moves into its `Arc`; boxing it would add an allocation per write.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Applied {
    /// A change, to commit and broadcast.
    Change(Change),
    /// Nothing to write: an `append` whose operations were all already
    /// applied (a retry); acknowledged with the execution's revision.
    Unchanged {
        execution_id: Arc<str>,
        revision: u64,
    },
}

/// The last step of every write pipeline: hands one transaction's committed
/// changes to the broker, in revision order. The writer thread calls it
/// right after COMMIT; it never blocks.
pub(crate) fn broadcast(broker: &Broker, changes: &[Arc<Change>]) {
    broker.publish_all(changes);
}

/// A protobuf Timestamp.
pub(crate) fn timestamp(t: SystemTime) -> stigmer_proto::wkt::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    stigmer_proto::wkt::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
