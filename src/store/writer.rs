//! The writer thread: the only code that writes to SQLite.
//!
//! Why a thread and not async: SQLite calls block (and with
//! `--durability full` they fsync); on a tokio worker they would stall every
//! connection on that worker. One dedicated thread owning the one write
//! connection also makes every write serial, which is what makes
//! load-merge-persist atomic per execution without any locking.
//!
//! Group commit: the thread blocks for the first job, then takes whatever
//! else is already queued (at most [`MAX_BATCH`]) and runs them all in one
//! `BEGIN IMMEDIATE ... COMMIT`. A lone job commits at once (no added wait);
//! under load the commit (and its fsync in full durability) is shared.
//! Only after COMMIT succeeds does it hand each change to `on_commit` (the
//! broker) in revision order and answer each caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{Change, Revisions, Txn};
use crate::protocol::Status;

/// Most jobs in one transaction. Bounds the latency a batch adds to its
/// first job and the work lost to a failed commit, while already reaching
/// the plateau of SQLite's rows-per-commit curve (see anchors: 100 rows per
/// commit give ~90% of the 1000-row rate).
pub const MAX_BATCH: usize = 256;

/// Receives every committed change, in revision order, right after COMMIT
/// (the broker's publish, through `pipeline::Broadcast`).
pub type OnCommit = Box<dyn Fn(&Arc<Change>) + Send>;

/// A write job: runs inside the open transaction, returns the change it made.
pub type Job = Box<dyn FnOnce(&mut Txn<'_>) -> Result<Change, Status> + Send>;

/// What a caller gets back: the committed change, or why nothing was written.
pub type JobResult = Result<Arc<Change>, Status>;

struct Request {
    job: Job,
    reply: oneshot::Sender<JobResult>,
}

/// What the writer thread reads from its queue.
enum Msg {
    Job(Request),
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
    /// Total time spent in committed transactions, in nanoseconds.
    pub commit_nanos: AtomicU64,
    /// Time from BEGIN to COMMIT done, per transaction.
    pub commit_latency: crate::metrics::Histogram,
}

/// The handle async code uses to submit jobs. Dropping every handle stops the
/// thread after it has finished what is queued.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Msg>,
}

/// Settings of the writer thread.
pub struct WriterConfig {
    pub queue: usize,
    pub history_retention: u64,
    pub max_execution_bytes: usize,
}

impl Writer {
    /// Starts the writer thread on `conn` (already migrated and configured).
    pub fn start(
        conn: Connection,
        config: WriterConfig,
        revisions: Arc<Revisions>,
        stats: Arc<WriterStats>,
        on_commit: OnCommit,
    ) -> std::io::Result<(Writer, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let handle = std::thread::Builder::new()
            .name("stigmer-writer".into())
            .spawn(move || {
                WriterThread {
                    conn,
                    rx,
                    config,
                    revisions,
                    stats,
                    on_commit,
                }
                .run()
            })?;
        Ok((Writer { queue: tx }, handle))
    }

    /// Queues a job. Returns the receiver of its result.
    ///
    /// Callers submit in the order requests arrived and then await the
    /// receiver elsewhere, so one connection's writes commit in order while
    /// its reader goes on reading.
    pub async fn submit(&self, job: Job) -> Result<oneshot::Receiver<JobResult>, Status> {
        let (reply, rx) = oneshot::channel();
        // Waits only while the queue is full: back-pressure from the disk,
        // never a drop. Fails only once the writer has stopped (shutdown).
        self.queue
            .send(Msg::Job(Request { job, reply }))
            .await
            .map_err(|_| Status::unavailable("the daemon is shutting down"))?;
        Ok(rx)
    }

    /// Asks the thread to commit everything queued so far and stop. Jobs
    /// submitted afterwards are refused with UNAVAILABLE.
    pub async fn stop(&self) {
        // Waits for queue room behind the jobs already queued.
        let _ = self.queue.send(Msg::Stop).await;
    }
}

struct WriterThread {
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    config: WriterConfig,
    revisions: Arc<Revisions>,
    stats: Arc<WriterStats>,
    on_commit: OnCommit,
}

impl WriterThread {
    fn run(mut self) {
        let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        let mut stopping = false;
        // Blocks this (dedicated) thread until a job arrives; None once every
        // Writer handle is gone.
        while let Some(first) = self.rx.blocking_recv() {
            match first {
                Msg::Job(request) => batch.push(request),
                Msg::Stop => break,
            }
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(Msg::Job(next)) => batch.push(next),
                    Ok(Msg::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
            if stopping {
                break;
            }
        }
        // Anything queued behind Stop is refused (its sender sees the queue close).
        self.rx.close();
        // Fold the WAL back into the database so the files left behind are
        // compact and a later open need not replay it.
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(%err, "final WAL checkpoint failed");
        }
        tracing::debug!("writer thread stopped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<Request>) {
        let started = Instant::now();
        let first_revision = self.revisions.last() + 1;
        let (jobs, replies): (Vec<Job>, Vec<oneshot::Sender<JobResult>>) =
            batch.drain(..).map(|r| (r.job, r.reply)).unzip();
        let outcome = self.run_transaction(jobs, first_revision);
        match outcome {
            Ok((results, last, compacted)) => {
                self.revisions.set(last, compacted);
                let elapsed = started.elapsed().as_nanos() as u64;
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .commit_nanos
                    .fetch_add(elapsed, Ordering::Relaxed);
                self.stats.commit_latency.observe(started.elapsed());
                // Broadcast first, in revision order, then acknowledge: both
                // strictly after COMMIT.
                for result in results.iter().flatten() {
                    (self.on_commit)(result);
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    match &result {
                        Ok(_) => self.stats.changes.fetch_add(1, Ordering::Relaxed),
                        Err(_) => self.stats.refused.fetch_add(1, Ordering::Relaxed),
                    };
                    // The caller may have gone (connection closed): its change
                    // is committed all the same.
                    let _ = reply.send(result);
                }
            }
            Err(status) => {
                tracing::error!(%status, jobs = replies.len(), "write transaction failed; nothing from it was committed");
                self.stats
                    .refused
                    .fetch_add(replies.len() as u64, Ordering::Relaxed);
                for reply in replies {
                    let _ = reply.send(Err(status.clone()));
                }
            }
        }
    }

    /// Runs every job in one transaction. A job's logical refusal (not found,
    /// terminal phase) fails that job alone; an SQLite error fails the whole
    /// batch (it rolls back, and every caller is told).
    #[allow(clippy::type_complexity)]
    fn run_transaction(
        &mut self,
        jobs: Vec<Job>,
        first_revision: u64,
    ) -> Result<(Vec<JobResult>, u64, u64), Status> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut txn = Txn::new(&tx, first_revision, self.config.max_execution_bytes);
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job(&mut txn) {
                Ok(change) => results.push(Ok(Arc::new(change))),
                Err(status) if is_storage_failure(&status) => return Err(status),
                Err(status) => results.push(Err(status)),
            }
        }
        let last = txn.next_revision() - 1;
        let mut compacted = self.revisions.compacted();
        if last >= first_revision {
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'last_revision'")?
                .execute([last as i64])?;
            compacted = prune(&tx, last, compacted, self.config.history_retention)?;
        }
        tx.commit()?;
        Ok((results, last, compacted))
    }
}

/// Storage failures abort the batch; logical refusals do not.
fn is_storage_failure(status: &Status) -> bool {
    use crate::protocol::Code;
    matches!(status.code, Code::Unavailable | Code::Internal)
}

/// Deletes history older than the retention window, in slices of 1/16 of the
/// window so that pruning costs one bounded DELETE every few thousand commits
/// rather than one row per commit. Returns the new compaction floor.
fn prune(
    tx: &rusqlite::Transaction<'_>,
    last: u64,
    compacted: u64,
    retention: u64,
) -> Result<u64, Status> {
    let retention = retention.max(1);
    let slack = (retention / 16).max(1);
    if last.saturating_sub(compacted) < retention + slack {
        return Ok(compacted);
    }
    let floor = last - retention;
    tx.prepare_cached("DELETE FROM history WHERE revision <= ?1")?
        .execute([floor as i64])?;
    tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'compacted_revision'")?
        .execute([floor as i64])?;
    Ok(floor)
}

/// Reads the revision counters at startup.
pub fn load_revisions(conn: &Connection) -> Result<(u64, u64), Status> {
    let get = |key: &str| -> Result<u64, Status> {
        let v: i64 =
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?;
        Ok(v as u64)
    };
    Ok((get("last_revision")?, get("compacted_revision")?))
}
