//! The writer thread: the only code that writes to SQLite, and the handle
//! async code submits writes through.
//!
//! Why a thread and not async: SQLite calls block (and with
//! `--durability full` they fsync); on a tokio worker they would stall every
//! connection on that worker. One dedicated thread owning the one write
//! connection also makes every write serial, which is what makes
//! load-merge-persist atomic per execution without any locking.
//!
//! A write reaches it as a [`Job`]: *what* to write (a
//! [`pipeline::Write`](crate::pipeline::Write)) and *who to answer* (an
//! [`Answer`]: a client's [`Reply`] handle on its connection). The thread
//! ([`thread`]) takes the first job, then whatever else is queued (at most
//! [`MAX_BATCH`]), and runs them in one transaction ([`batch`]): group
//! commit. Only after COMMIT does it broadcast the changes (the broker, in
//! revision order) and then answer each job.
//!
//! "Writer" in this crate means this thread and its handle only; agent
//! runners that send updates are "runners", and the task that writes a slow
//! peer's frames is the outbox's "flusher".

mod batch;
mod thread;

pub(crate) use batch::PrepareOutcome;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use stigmer_proto::daemon::{response, DeleteExecutionResponse};
use tokio::sync::{mpsc, oneshot};

use crate::broker::Broker;
use crate::config::Durability;
use crate::model::{Change, Revisions};
use crate::pipeline::Write;
use crate::protocol::{encode_execution_reply, encode_response, ApiError};
use crate::store::replica::Rebuild;
use crate::wire::Reply;

/// Most jobs in one transaction. Bounds the latency a batch adds to its
/// first job and the work lost to a failed commit, while already reaching
/// the plateau of SQLite's rows-per-commit curve (see anchors: 100 rows per
/// commit give ~90% of the 1000-row rate).
pub const MAX_BATCH: usize = 256;

/// The most bytes of latest states the writer keeps in its
/// [`LatestCache`](crate::store::cache::LatestCache) (counted by encoded
/// size): a few thousand 1 KiB executions, the ones being updated, for at
/// most a few MiB of memory beside a 16 MiB page cache.
const LATEST_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// What a job's caller gets: what was committed, or why nothing was
/// written.
pub type JobResult = Result<Outcome, ApiError>;

/// A job that succeeded.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Its change, committed and broadcast.
    Committed(Arc<Change>),
    /// Nothing needed writing (an `append` retried after it committed): the
    /// execution is at `revision`.
    Unchanged {
        execution_id: Arc<str>,
        revision: u64,
    },
}

/// One write: what to write, and who to answer once it is committed (or
/// refused).
pub struct Job {
    /// The pipeline that runs inside the transaction.
    pub write: Write,
    /// Where the outcome goes.
    pub answer: Answer,
}

/// Who a job's outcome goes to. The writer thread delivers it itself, right
/// after COMMIT and the broadcast (or at once on a refusal), and must never
/// block doing so.
pub enum Answer {
    /// A client's request: the reply is encoded in `form` and queued on its
    /// connection's outbox (written to the socket on this thread when
    /// nothing is queued ahead), with no task in between.
    Client { reply: Reply, form: ReplyForm },
    /// An in-process caller (benchmarks, tests), called on the writer
    /// thread. It must not block.
    Call(Box<dyn FnOnce(JobResult) + Send>),
}

/// The shape of a committed write's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyForm {
    /// create and update_status: the execution as committed, wrapping the
    /// bytes the writer already encoded.
    Execution,
    /// create and update_status with `Request.minimal_reply`: the revision
    /// and id only.
    Minimal,
    /// delete: the delete's revision.
    Deleted,
}

impl Answer {
    /// Delivers `result`. Never blocks: a full connection queue hands the
    /// frame to its flusher.
    pub(crate) fn deliver(self, result: JobResult) {
        match self {
            Answer::Client { reply, form } => {
                let body = match &result {
                    Ok(Outcome::Committed(change)) => encode_reply(form, reply.id(), change),
                    Ok(Outcome::Unchanged {
                        execution_id,
                        revision,
                    }) => encode_execution_reply(reply.id(), *revision, execution_id, None),
                    Err(err) => {
                        encode_response(reply.id(), response::Result::Error(err.to_proto()))
                    }
                };
                // The caller may have gone (connection closed): its change
                // is committed all the same.
                reply.send(body);
            }
            Answer::Call(call) => call(result),
        }
    }
}

/// Encodes the reply to a committed write.
fn encode_reply(form: ReplyForm, id: u64, change: &Change) -> Bytes {
    match (form, &change.state) {
        (ReplyForm::Deleted, _) => encode_response(
            id,
            response::Result::Deleted(DeleteExecutionResponse {
                revision: change.revision,
            }),
        ),
        (ReplyForm::Minimal, _) => {
            encode_execution_reply(id, change.revision, &change.execution_id, None)
        }
        (ReplyForm::Execution, Some(state)) => encode_execution_reply(
            id,
            change.revision,
            &change.execution_id,
            Some(state.encoded()),
        ),
        (ReplyForm::Execution, None) => encode_response(
            id,
            response::Result::Error(
                ApiError::internal("a create or update committed no state").to_proto(),
            ),
        ),
    }
}

/// What the writer thread reads from its queue.
enum Msg {
    Job(Job),
    /// Run a write and roll it back: what it would change (the cluster
    /// mode's proposal, [`Writer::prepare`]).
    Prepare(Write, oneshot::Sender<Result<PrepareOutcome, ApiError>>),
    /// Replace the replica with what etcd holds ([`Writer::rebuild`]).
    Rebuild(Box<Rebuild>, oneshot::Sender<Result<(), ApiError>>),
    /// Commit what is queued before this, then stop (graceful shutdown).
    Stop,
}

/// Counters the writer keeps, for `stigmer status` and the benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Changes committed.
    pub changes: AtomicU64,
    /// Jobs refused (logical errors and failed commits).
    pub refused: AtomicU64,
    /// Time from BEGIN to COMMIT done, per transaction.
    pub commit_latency: crate::metrics::Histogram,
    /// Jobs found by polling the queue rather than after sleeping.
    pub poll_hits: AtomicU64,
    /// Nanoseconds spent polling the queue (CPU the polling costs).
    pub poll_nanos: AtomicU64,
}

/// Everything the writer needs to open the store and run.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// The database file (also to reopen the connection after the database
    /// was read-only).
    pub path: PathBuf,
    pub durability: Durability,
    /// Jobs queued before `submit` waits (`--writer-queue`).
    pub queue: usize,
    /// The longest poll of the queue before the thread sleeps
    /// (`--writer-poll-us`, see `crate::poll`).
    pub poll: Duration,
    pub history_retention: u64,
    /// The largest encoded execution accepted (fits in one frame).
    pub max_execution_bytes: usize,
    /// The cluster mode (`--etcd`): the database is a replica
    /// (`store::check_mode`).
    pub cluster: bool,
}

/// The handle async code uses to submit jobs. Dropping every handle stops the
/// thread after it has finished what is queued.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Msg>,
}

/// A started writer: its handle, the counters it advances, and its thread.
pub struct Running {
    /// Submits jobs.
    pub writer: Writer,
    /// The committed revision counters.
    pub revisions: Arc<Revisions>,
    /// The writer's counters.
    pub stats: Arc<WriterStats>,
    /// The thread; joined at shutdown after every `Writer` is dropped.
    pub thread: JoinHandle<()>,
}

/// Opens (creating and migrating) the database and starts the writer thread.
/// Every committed change is published to `broker`, in revision order,
/// before its caller is answered.
pub fn start(config: WriterConfig, broker: Arc<Broker>) -> Result<Running, String> {
    let (conn, revisions) = crate::store::open(&config.path, config.durability, config.cluster)?;
    let revisions = Arc::new(revisions);
    let stats = Arc::new(WriterStats::default());
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let thread = thread::spawn(thread::WriterThread::new(
        conn,
        config,
        rx,
        revisions.clone(),
        stats.clone(),
        broker,
    ))
    .map_err(|e| format!("cannot start the writer thread: {e}"))?;
    Ok(Running {
        writer: Writer { queue: tx },
        revisions,
        stats,
        thread,
    })
}

impl Writer {
    /// Queues a job; its answer is delivered on the writer thread.
    ///
    /// Callers submit in the order requests arrived, so one connection's
    /// writes commit in order while its reader goes on reading.
    pub async fn submit(&self, job: Job) {
        // Waits only while the queue is full: back-pressure from the disk,
        // never a drop. Fails only once the writer has stopped (shutdown).
        if let Err(mpsc::error::SendError(Msg::Job(job))) = self.queue.send(Msg::Job(job)).await {
            job.answer
                .deliver(Err(ApiError::unavailable("the daemon is shutting down")));
        }
    }

    /// What `write` would change if it were committed now, and the
    /// execution's head before it, without writing anything (the cluster
    /// mode proposes the change to its log, docs/design/cluster.md).
    pub(crate) async fn prepare(&self, write: Write) -> Result<PrepareOutcome, ApiError> {
        let (answer, answered) = oneshot::channel();
        // Waits only while the queue is full; fails once the writer stopped.
        if self.queue.send(Msg::Prepare(write, answer)).await.is_err() {
            return Err(ApiError::unavailable("the daemon is shutting down"));
        }
        // The writer thread answers every prepare it takes, unless it stops
        // first.
        answered
            .await
            .unwrap_or_else(|_| Err(ApiError::unavailable("the daemon is shutting down")))
    }

    /// Replaces the replica with what etcd holds (the cluster mode, after
    /// etcd compacted past it: `store::replica::replace`), after the jobs
    /// queued before it; every open stream then catches up from the new
    /// floor, which means a RESYNC for each.
    pub(crate) async fn rebuild(&self, rebuild: Rebuild) -> Result<(), ApiError> {
        let (answer, answered) = oneshot::channel();
        // Waits only while the queue is full; fails once the writer stopped.
        if self
            .queue
            .send(Msg::Rebuild(Box::new(rebuild), answer))
            .await
            .is_err()
        {
            return Err(ApiError::unavailable("the daemon is shutting down"));
        }
        // Answered once the rebuild committed or failed, unless the thread
        // stops first.
        answered
            .await
            .unwrap_or_else(|_| Err(ApiError::unavailable("the daemon is shutting down")))
    }

    /// Asks the thread to commit everything queued so far and stop. Jobs
    /// submitted afterwards are refused with UNAVAILABLE.
    pub(crate) async fn stop(&self) {
        // Waits for queue room behind the jobs already queued.
        let _ = self.queue.send(Msg::Stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_proto::agentexecution::{AgentExecution, AgentExecutionSpec};
    use stigmer_proto::apiresource::ApiResourceMetadata;

    fn config(dir: &std::path::Path) -> WriterConfig {
        WriterConfig {
            path: dir.join("stigmer.db"),
            durability: Durability::Normal,
            queue: 16,
            poll: Duration::ZERO,
            history_retention: 1000,
            max_execution_bytes: 1 << 20,
            cluster: false,
        }
    }

    fn create(id: &str) -> Write {
        Write::Create(Box::new(AgentExecution {
            metadata: Some(ApiResourceMetadata {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(AgentExecutionSpec {
                agent_id: "agent".into(),
                message: "go".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    /// A prepare queued behind a job sees that job committed, and commits
    /// nothing itself.
    #[tokio::test]
    async fn a_prepare_runs_after_the_jobs_queued_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = start(config(dir.path()), Arc::new(Broker::new(1))).expect("start");
        let (tx, rx) = oneshot::channel();
        running
            .writer
            .submit(Job {
                write: create("aex-a"),
                answer: Answer::Call(Box::new(move |r| drop(tx.send(r)))),
            })
            .await;
        let prepared = running.writer.prepare(create("aex-a")).await;
        let err = prepared.err().expect("the create before it committed");
        assert_eq!(err.code, crate::protocol::Code::AlreadyExists);
        assert!(matches!(
            rx.await.expect("answered"),
            Ok(Outcome::Committed(_))
        ));
        match running.writer.prepare(Write::Delete("aex-a".into())).await {
            Ok(PrepareOutcome::Change(p)) => assert_eq!(p.head, Some(1)),
            _ => panic!("a delete to propose"),
        }
        assert_eq!(running.revisions.last(), 1, "nothing more committed");
        running.writer.stop().await;
        drop(running.writer);
        running.thread.join().expect("join");
    }
}
