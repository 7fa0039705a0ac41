//! Proposals: a write of the cluster mode, as one compare-and-swap
//! transaction in etcd (docs/design/cluster.md, "Writes").
//!
//! 1. prepare: the writer thread runs the write's pipeline on the replica
//!    and rolls it back ([`Writer::prepare`]): the change, and the
//!    execution's head (its key's `mod_revision`).
//! 2. propose: put the change's [`Record`] if the key is still at the head
//!    (absent, for a new id); else read the key.
//! 3. on a conflict: the key moved. If its record carries this request's
//!    id, an earlier attempt committed (its reply was lost): done.
//!    Otherwise wait for the replica to apply the newer change and go back
//!    to 1 (at most [`MAX_ATTEMPTS`]); a text append at a stale offset then
//!    fails as it does locally (ABORTED).
//! 4. acknowledge once this daemon's replica has applied the revision, so
//!    a read here right after the reply sees the change, and subscribers
//!    had it first.
//!
//! A proposal runs on its own task: the connection's reader goes on
//! reading (proposals of one connection are not ordered among themselves
//! yet).

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use stigmer_etcd::{Compare, CompareOp, OpResponse, Put, Range, Txn};

use super::Cluster;
use crate::pipeline::replicate::{record_of, Record};
use crate::pipeline::Write;
use crate::protocol::ApiError;
use crate::wire::Reply;
use crate::writer::{Answer, JobResult, Outcome, PrepareOutcome, ReplyForm, Writer};

/// Attempts of one write against concurrent changes of its execution
/// before it is answered ABORTED: a hot execution written through several
/// daemons at once loses a race rarely twice in a row.
pub(crate) const MAX_ATTEMPTS: usize = 16;

/// Proposes `write` on a task of its own, answering `reply` when it is
/// committed and applied here (or refused).
pub(crate) fn spawn(
    cluster: Arc<Cluster>,
    writer: Writer,
    reply: Reply,
    write: Write,
    form: ReplyForm,
) {
    tokio::spawn(async move {
        let result = propose(&cluster, &writer, write).await;
        Answer::Client { reply, form }.deliver(result);
    });
}

/// Steps 1-4 (module docs).
pub(crate) async fn propose(cluster: &Cluster, writer: &Writer, write: Write) -> JobResult {
    let request_id = Bytes::from(ulid::Ulid::new().to_bytes().to_vec());
    for _ in 0..MAX_ATTEMPTS {
        let attempt = write
            .try_clone()
            .ok_or_else(|| ApiError::internal("this write cannot be proposed"))?;
        // Runs after the changes the replica queued before it.
        let prepared = match writer.prepare(attempt).await? {
            PrepareOutcome::Unchanged {
                execution_id,
                revision,
            } => {
                return Ok(Outcome::Unchanged {
                    execution_id,
                    revision,
                })
            }
            PrepareOutcome::Change(prepared) => prepared,
        };
        let key = cluster.key(&prepared.change.execution_id);
        let record = record_of(
            &prepared.change,
            prepared.head.unwrap_or(0),
            request_id.clone(),
        );
        let guard = match prepared.head {
            Some(head) => Compare::mod_revision(key.clone(), CompareOp::Equal, head as i64),
            None => Compare::version(key.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([Put::new(key.clone(), record.encode_to_vec())])
            .or_else([Range::key(key.clone())]);
        // One round trip to etcd's leader (bounded by the client's request
        // timeout, failover included).
        let committed_at = match cluster.client.txn(txn).await {
            Ok(answer) if answer.succeeded => Some(answer.revision as u64),
            Ok(answer) => {
                let current = answer.responses.into_iter().find_map(|r| match r {
                    OpResponse::Range(range) => range.kvs.into_iter().next(),
                    _ => None,
                });
                let Some(current) = current else {
                    return Err(ApiError::internal(format!(
                        "etcd has no key {key}, which this replica has at revision {}",
                        prepared.head.unwrap_or(0)
                    )));
                };
                let revision = current.mod_revision as u64;
                if ours(current.value.as_ref(), &request_id) {
                    Some(revision)
                } else {
                    // Another change won; retry on top of it once applied.
                    if !cluster.wait_applied(revision).await {
                        return Err(behind(cluster, revision));
                    }
                    None
                }
            }
            Err(stigmer_etcd::Error::RequestTooLarge { message }) => {
                return Err(ApiError::resource_exhausted(format!(
                    "the change is too large for etcd's request limit: {message}"
                )))
            }
            Err(stigmer_etcd::Error::Unavailable { reason }) => {
                // It may have committed before the answer was lost.
                match cluster.client.get(key.clone()).await {
                    Ok(Some(current)) if ours(current.value.as_ref(), &request_id) => {
                        Some(current.mod_revision as u64)
                    }
                    Ok(_) => None,
                    Err(_) => return Err(ApiError::unavailable(format!("etcd: {reason}"))),
                }
            }
            Err(err) => return Err(ApiError::unavailable(format!("etcd: {err}"))),
        };
        let Some(revision) = committed_at else {
            continue;
        };
        if !cluster.wait_applied(revision).await {
            return Err(behind(cluster, revision));
        }
        let mut change = prepared.change;
        change.revision = revision;
        return Ok(Outcome::Committed(Arc::new(change)));
    }
    Err(ApiError::new(
        crate::protocol::Code::Aborted,
        format!("the execution kept changing through other daemons ({MAX_ATTEMPTS} attempts)"),
    ))
}

/// Whether `value` is a record of this request.
fn ours(value: &[u8], request_id: &Bytes) -> bool {
    Record::decode(value).is_ok_and(|r| r.request_id == *request_id)
}

fn behind(cluster: &Cluster, revision: u64) -> ApiError {
    ApiError::unavailable(format!(
        "committed in etcd at revision {revision}, but this daemon's replica is at {} \
         and did not catch up within {:?}",
        cluster.applied(),
        super::APPLY_WAIT
    ))
}
