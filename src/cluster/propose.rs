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
//! A connection's proposals run in order on a task of its own ([`Queue`]):
//! the connection's reader goes on reading meanwhile, and proposals of
//! different connections go to etcd concurrently (raft batches them).
//! Proposals of one execution take turns on this daemon ([`Turns`]): they
//! would only race each other's compare-and-swap (etcd commits one change
//! of a key per revision whatever happens), and a hot execution written by
//! many connections of one daemon would see its writers exhaust their
//! attempts, where one daemon alone serializes them on its writer thread.
//! Conflicts are then only between daemons.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use stigmer_etcd::{Compare, CompareOp, OpResponse, Put, Range, Txn};
use tokio::sync::mpsc;

use super::Cluster;
use crate::pipeline::replicate::{record_of, Record};
use crate::pipeline::Write;
use crate::protocol::{ApiError, Code};
use crate::wire::Reply;
use crate::writer::{Answer, JobResult, Outcome, PrepareOutcome, ReplyForm, Writer};

/// Attempts of one write against concurrent changes of its execution
/// before it is answered ABORTED: a hot execution written through several
/// daemons at once loses a race rarely twice in a row.
pub(crate) const MAX_ATTEMPTS: usize = 16;

/// One connection's proposals, run one after another on a task of their
/// own, in the order the connection sent them: its writes commit in that
/// order, as they do through the writer thread, and its reader goes on
/// reading meanwhile. The queue needs no bound of its own: each proposal
/// holds its request's reply, and a connection holds at most
/// `--connection-queue` of those.
pub(crate) struct Queue {
    proposals: mpsc::UnboundedSender<Proposal>,
}

struct Proposal {
    reply: Reply,
    write: Write,
    form: ReplyForm,
}

impl Queue {
    /// Starts the task; it ends once the queue is dropped and drained.
    pub(crate) fn start(cluster: Arc<Cluster>, writer: Writer) -> Queue {
        let (proposals, mut queued) = mpsc::unbounded_channel::<Proposal>();
        tokio::spawn(async move {
            // Waits for the connection's next write.
            while let Some(Proposal { reply, write, form }) = queued.recv().await {
                let result = propose(&cluster, &writer, write).await;
                Answer::Client { reply, form }.deliver(result);
            }
        });
        Queue { proposals }
    }

    /// Queues a validated write; its reply is sent once it is committed in
    /// etcd and applied here (or refused).
    pub(crate) fn push(&self, reply: Reply, write: Write, form: ReplyForm) {
        if let Err(mpsc::error::SendError(p)) = self.proposals.send(Proposal { reply, write, form })
        {
            Answer::Client {
                reply: p.reply,
                form: p.form,
            }
            .deliver(Err(ApiError::unavailable("the daemon is shutting down")));
        }
    }
}

/// One proposal at a time per execution on this daemon (module docs). An
/// entry lives while a proposal of its execution runs or waits, so the map
/// holds at most the proposals in flight (each bounded by its connection's
/// queue).
#[derive(Default)]
pub(crate) struct Turns {
    held: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An execution's turn, given back when dropped.
struct Turn<'t> {
    turns: &'t Turns,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Held only to clone or remove an entry: a panic cannot leave it
        // half-changed, so a poisoned lock is still used.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for execution `id`'s turn (first come, first served).
    async fn take(&self, id: &str) -> Turn<'_> {
        let lock = self.map().entry(id.to_owned()).or_default().clone();
        // Waits while another proposal of this execution runs.
        let guard = lock.clone().lock_owned().await;
        Turn {
            turns: self,
            id: id.to_owned(),
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self.turns.map();
        // The map's and this turn's: nobody else waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            held.remove(&self.id);
        }
    }
}

/// Steps 1-4 (module docs), in execution `write`'s turn.
pub(crate) async fn propose(cluster: &Cluster, writer: &Writer, write: Write) -> JobResult {
    // A create without an id gets a new one: no turn to wait for.
    let _turn = match write.execution_id() {
        Some(id) => Some(cluster.turns.take(id).await),
        None => None,
    };
    let request_id = Bytes::from(ulid::Ulid::new().to_bytes().to_vec());
    for _ in 0..MAX_ATTEMPTS {
        let attempt = write
            .try_clone()
            .ok_or_else(|| ApiError::internal("this write cannot be proposed"))?;
        // Runs after the changes the replica queued before it.
        let prepared = match writer.prepare(attempt).await {
            Ok(prepared) => prepared,
            Err(err) if may_be_behind(&err) => {
                // Refused on this replica's state, which may lag etcd (a
                // write acknowledged by another daemon a moment ago): ask
                // etcd, and retry once the replica has what it has.
                if caught_up_with_etcd(cluster, write.execution_id()).await {
                    continue;
                }
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        let prepared = match prepared {
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
        cluster.hear(revision);
        if !cluster.wait_applied(revision).await {
            return Err(behind(cluster, revision));
        }
        let mut change = prepared.change;
        change.revision = revision;
        return Ok(Outcome::Committed(Arc::new(change)));
    }
    Err(ApiError::new(
        Code::Aborted,
        format!("the execution kept changing through other daemons ({MAX_ATTEMPTS} attempts)"),
    ))
}

/// Refusals a replica behind etcd may give wrongly: ABORTED (an offset or
/// revision that is stale here but current in etcd) and NOT_FOUND (an
/// execution created through another daemon a moment ago).
/// FAILED_PRECONDITION (a terminal phase) is final: the log only moves
/// forward.
fn may_be_behind(err: &ApiError) -> bool {
    matches!(err.code, Code::Aborted | Code::NotFound)
}

/// True when etcd has a newer change of execution `id` than this replica
/// had, and the replica has now applied it.
async fn caught_up_with_etcd(cluster: &Cluster, id: Option<&str>) -> bool {
    let Some(id) = id else {
        return false;
    };
    let before = cluster.applied();
    cluster.catch_up_with(id).await && cluster.applied() > before
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
