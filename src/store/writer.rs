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
//!
//! Checkpoints: SQLite's automatic checkpoint runs inside the COMMIT that
//! crosses 1000 WAL pages, so one unlucky batch per ~1000 pages paid for
//! copying the WAL into the database and an fsync (profiled: 11% of the
//! writer thread's time under 32 writers, and the tail of the latency
//! distribution). A [`Checkpointer`] thread on its own connection now runs
//! PASSIVE checkpoints beside the writer (WAL mode lets one writer append
//! while a checkpoint copies older frames), so no caller waits for one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::cache::LatestCache;
use super::{Change, Revisions, Txn};
use crate::poll::{PollWindow, Polled};
use crate::protocol::Status;

/// Most jobs in one transaction. Bounds the latency a batch adds to its
/// first job and the work lost to a failed commit, while already reaching
/// the plateau of SQLite's rows-per-commit curve (see anchors: 100 rows per
/// commit give ~90% of the 1000-row rate).
pub const MAX_BATCH: usize = 256;

/// Receives each transaction's committed changes, in revision order, right
/// after COMMIT (the broker's publish, through `pipeline::Broadcast`). The
/// whole batch at once, so that a subscriber gets all of its events in one
/// write.
pub type OnCommit = Box<dyn Fn(&[Arc<Change>]) + Send>;

/// The checkpointer runs a checkpoint once this many revisions have been
/// committed since the last one (a few MiB of WAL with 1 KiB states: large
/// enough that rewrites of the same hot pages coalesce, small enough that
/// the WAL and each checkpoint stay short)...
pub const CHECKPOINT_AFTER_CHANGES: u64 = 4096;
/// ...or, when anything at all was committed, after this long, so a quiet
/// daemon's WAL is folded back soon after a burst.
const CHECKPOINT_AFTER: Duration = Duration::from_secs(1);
/// How often the checkpointer looks at the revision counter (one atomic
/// load; it sleeps otherwise).
pub const CHECKPOINT_POLL: Duration = Duration::from_millis(50);
/// The writer's own automatic checkpoint, kept only as a backstop should
/// the checkpointer fall behind (e.g. a reader pins old frames): 16384
/// pages, 64 MiB of WAL, instead of SQLite's 1000.
pub const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16384;

/// The most revisions one transaction prunes. The batch that prunes waits
/// for the DELETE: a slice of 1/16 of the window, the rule before, took
/// 15.7-19.9 ms at the default retention (6,250 revisions, 1 KiB states,
/// timed in `benches/store_floor.rs`) and would take seconds at a
/// retention of millions; 2048 revisions take 3.1-4.0 ms, and cost less
/// per row (1.7 against 2.8 µs).
pub const PRUNE_MAX_REVISIONS: u64 = 2048;

/// The most bytes of latest states the writer keeps in its [`LatestCache`]
/// (counted by encoded size): a few thousand 1 KiB executions, the ones
/// being updated, for at most a few MiB of memory beside a 16 MiB page cache.
const LATEST_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// A write job: runs inside the open transaction, returns the change it made.
pub type Job = Box<dyn FnOnce(&mut Txn<'_>) -> Result<Change, Status> + Send>;

/// What a caller gets back: the committed change, or why nothing was written.
pub type JobResult = Result<Arc<Change>, Status>;

/// Receives a job's outcome on the writer thread: after COMMIT (and after the
/// change was broadcast), or at once when refused. It must not block: the
/// caller's reply goes straight into its connection's queue from here, which
/// saves a task wake-up per write.
pub type Done = Box<dyn FnOnce(JobResult) + Send>;

struct Request {
    job: Job,
    done: Done,
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
    /// Time from BEGIN to COMMIT done, per transaction.
    pub commit_latency: crate::metrics::Histogram,
    /// Jobs found by polling the queue rather than after sleeping.
    pub poll_hits: AtomicU64,
    /// Nanoseconds spent polling the queue (CPU the polling costs).
    pub poll_nanos: AtomicU64,
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
    /// The longest poll of the queue before the thread sleeps.
    pub poll: Duration,
    pub history_retention: u64,
    pub max_execution_bytes: usize,
    /// To reopen the connection after the database was read-only.
    pub path: std::path::PathBuf,
    pub durability: crate::config::Durability,
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
                    cache: LatestCache::new(LATEST_CACHE_BYTES),
                    reopen: false,
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

    /// Queues a job; `done` receives its outcome on the writer thread.
    ///
    /// Callers submit in the order requests arrived, so one connection's
    /// writes commit in order while its reader goes on reading.
    pub async fn submit(&self, job: Job, done: Done) {
        // Waits only while the queue is full: back-pressure from the disk,
        // never a drop. Fails only once the writer has stopped (shutdown).
        if let Err(mpsc::error::SendError(Msg::Job(request))) =
            self.queue.send(Msg::Job(Request { job, done })).await
        {
            (request.done)(Err(Status::unavailable("the daemon is shutting down")));
        }
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
    /// Latest states written through `conn`, served to `Txn::load`.
    cache: LatestCache,
    /// Set when a batch failed because the database was read-only: SQLite
    /// keeps a connection opened on a read-only file read-only, so writes
    /// can only resume on a new connection once the file is writable again.
    reopen: bool,
    rx: mpsc::Receiver<Msg>,
    config: WriterConfig,
    revisions: Arc<Revisions>,
    stats: Arc<WriterStats>,
    on_commit: OnCommit,
}

impl WriterThread {
    fn run(mut self) {
        let checkpointer = self
            .conn
            .path()
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .and_then(|path| Checkpointer::start(&path, self.revisions.clone()));
        if checkpointer.is_some() {
            if let Err(err) =
                self.conn
                    .pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            {
                tracing::warn!(%err, "cannot move the automatic checkpoint out of the way");
            }
        }
        let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        let mut stopping = false;
        let mut poll = PollWindow::new(self.config.poll);
        loop {
            let idle_since = Instant::now();
            let first = match poll.poll(|| self.rx.try_recv().ok()) {
                Polled::Got(first, polled) => {
                    self.stats.poll_hits.fetch_add(1, Ordering::Relaxed);
                    self.note_polled(polled);
                    first
                }
                Polled::Nothing(polled) => {
                    self.note_polled(polled);
                    // Blocks this (dedicated) thread until a job arrives;
                    // None once every Writer handle is gone.
                    let Some(first) = self.rx.blocking_recv() else {
                        break;
                    };
                    poll.blocked(idle_since.elapsed());
                    first
                }
            };
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
        // No checkpoint may run beside the final one below.
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop();
        }
        // Fold the WAL back into the database so the files left behind are
        // compact and a later open need not replay it.
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(%err, "final WAL checkpoint failed");
        }
        tracing::debug!("writer thread stopped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<Request>) {
        if self.reopen {
            self.try_reopen();
        }
        let started = Instant::now();
        let first_revision = self.revisions.last() + 1;
        let (jobs, replies): (Vec<Job>, Vec<Done>) =
            batch.drain(..).map(|r| (r.job, r.done)).unzip();
        let outcome = self.run_transaction(jobs, first_revision);
        match outcome {
            Ok((results, last, compacted)) => {
                self.revisions.set(last, compacted);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.commit_latency.observe(started.elapsed());
                // Broadcast first, in revision order, then acknowledge: both
                // strictly after COMMIT.
                let changes: Vec<Arc<Change>> = results.iter().flatten().cloned().collect();
                (self.on_commit)(&changes);
                for (reply, result) in replies.into_iter().zip(results) {
                    match &result {
                        Ok(_) => self.stats.changes.fetch_add(1, Ordering::Relaxed),
                        Err(_) => self.stats.refused.fetch_add(1, Ordering::Relaxed),
                    };
                    // The caller may have gone (connection closed): its change
                    // is committed all the same.
                    reply(result);
                }
            }
            Err(status) => {
                // The connection knows whether SQLite had to open the file
                // read-only; only then can a new connection help.
                self.reopen |= self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
                tracing::error!(%status, jobs = replies.len(), "write transaction failed; nothing from it was committed");
                self.stats
                    .refused
                    .fetch_add(replies.len() as u64, Ordering::Relaxed);
                for reply in replies {
                    reply(Err(status.clone()));
                }
            }
        }
    }

    fn note_polled(&self, polled: Duration) {
        self.stats
            .poll_nanos
            .fetch_add(crate::poll::nanos(polled), Ordering::Relaxed);
    }

    /// Replaces the connection after a read-only failure; keeps the old one
    /// (and tries again before the next batch) while the file is still not
    /// writable.
    fn try_reopen(&mut self) {
        match super::open_write_connection(&self.config.path, self.config.durability) {
            Ok(conn) if !conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) => {
                tracing::info!("database writable again: reopened the write connection");
                self.conn = conn;
                self.reopen = false;
            }
            Ok(_) => tracing::debug!("database still read-only"),
            Err(err) => tracing::debug!(%err, "cannot reopen the database yet"),
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
        transact(
            &mut self.conn,
            &mut self.cache,
            jobs,
            first_revision,
            self.revisions.compacted(),
            self.config.max_execution_bytes,
            self.config.history_retention,
        )
    }
}

/// One batch transaction (see `WriterThread::run_transaction`): the jobs,
/// the revision counter and pruning, then COMMIT. Returns each job's result,
/// the last revision and the compaction floor, as committed.
///
/// When it fails, SQLite rolled back every job's writes, so `cache` (which
/// the jobs changed as they wrote) is cleared: the next loads read the
/// committed states from the database.
#[allow(clippy::type_complexity)]
fn transact(
    conn: &mut Connection,
    cache: &mut LatestCache,
    jobs: Vec<Job>,
    first_revision: u64,
    compacted: u64,
    max_execution_bytes: usize,
    history_retention: u64,
) -> Result<(Vec<JobResult>, u64, u64), Status> {
    let outcome = (|| {
        let tx = Immediate::begin(conn)?;
        let mut txn = Txn::new(
            tx.conn,
            first_revision,
            max_execution_bytes,
            compacted,
            cache,
        );
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job(&mut txn) {
                Ok(change) => results.push(Ok(Arc::new(change))),
                Err(status) if is_storage_failure(&status) => return Err(status),
                Err(status) => results.push(Err(status)),
            }
        }
        let last = txn.next_revision() - 1;
        let mut compacted = compacted;
        if last >= first_revision {
            // No counter row is written: the history's largest revision is
            // the last one (`load_revisions`), one page fewer per commit.
            compacted = prune(tx.conn, last, compacted, history_retention)?;
        }
        tx.commit()?;
        Ok((results, last, compacted))
    })();
    if outcome.is_err() {
        cache.clear();
    }
    outcome
}

/// One write transaction, `BEGIN IMMEDIATE ... COMMIT`, rolled back when
/// dropped uncommitted.
///
/// Why not rusqlite's `Transaction`: it runs both statements through
/// `execute_batch`, which parses the SQL text again for every batch (~1% of
/// the writer thread under 32 writers); these are prepared once and cached.
struct Immediate<'c> {
    conn: &'c Connection,
}

impl<'c> Immediate<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Immediate { conn })
    }

    fn commit(self) -> rusqlite::Result<()> {
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

/// A thread that checkpoints the WAL beside the writer (see the module
/// docs), on its own connection to the database.
struct Checkpointer {
    /// `true` asks the thread to stop; the condvar wakes it at once.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Opens a connection to `path` and starts the thread; `None` (with a
    /// warning) if either fails, in which case SQLite's automatic checkpoint
    /// simply stays in charge.
    fn start(path: &str, revisions: Arc<Revisions>) -> Option<Checkpointer> {
        let conn = match Connection::open(path) {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "cannot open the checkpoint connection");
                return None;
            }
        };
        // A checkpoint may meet a reader ending its transaction; PASSIVE
        // never waits for one, this only covers opening the WAL index.
        let _ = conn.busy_timeout(Duration::from_secs(1));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("stigmer-checkpoint".into())
            .spawn(move || checkpoint_loop(conn, &signal, &revisions));
        match spawned {
            Ok(thread) => Some(Checkpointer { stop, thread }),
            Err(err) => {
                tracing::warn!(%err, "cannot start the checkpoint thread");
                None
            }
        }
    }

    /// Stops the thread after the checkpoint it may be running.
    fn stop(self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if self.thread.join().is_err() {
            tracing::error!("the checkpoint thread panicked");
        }
    }
}

fn checkpoint_loop(conn: Connection, stop: &(Mutex<bool>, Condvar), revisions: &Revisions) {
    let (flag, wake) = stop;
    let mut done = revisions.last();
    let mut since = Instant::now();
    loop {
        {
            let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
            // Sleeps CHECKPOINT_POLL, or until asked to stop.
            let (guard, _) = wake
                .wait_timeout_while(guard, CHECKPOINT_POLL, |stop| !*stop)
                .unwrap_or_else(|p| p.into_inner());
            if *guard {
                return;
            }
        }
        let last = revisions.last();
        let due = last >= done + CHECKPOINT_AFTER_CHANGES
            || (last > done && since.elapsed() >= CHECKPOINT_AFTER);
        if !due {
            continue;
        }
        // PASSIVE: copies what it can without blocking the writer or any
        // reader; what it cannot copy now, the next round will.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match result {
            Ok((log, copied)) => tracing::trace!(log, copied, "checkpoint"),
            Err(err) => tracing::warn!(%err, "checkpoint failed; will retry"),
        }
        done = last;
        since = Instant::now();
    }
}

/// Storage failures abort the batch; logical refusals do not.
fn is_storage_failure(status: &Status) -> bool {
    use crate::protocol::Code;
    matches!(status.code, Code::Unavailable | Code::Internal)
}

/// Deletes history older than the retention window, in slices of 1/16 of the
/// window but never more than [`PRUNE_MAX_REVISIONS`], so that pruning costs
/// one bounded DELETE every so many commits rather than one row per commit,
/// and no commit waits long for it. When the history is further behind
/// (a lowered `--history-retention`), each commit prunes one more slice
/// until it has caught up. Returns the new compaction floor.
///
/// A row that holds an execution's latest state (`executions.revision`
/// points at it) is kept: it is that execution's only copy of its state.
/// The check is a lookup by `executions`' primary key (the row's
/// `execution_id`); an index on `executions.revision` would be rewritten by
/// every status update. Only the slice above the old floor is scanned: a row
/// kept below the floor is deleted by the write that stops pointing at it
/// (`Txn::release`), so the rows below the floor are exactly the kept ones.
fn prune(tx: &Connection, last: u64, compacted: u64, retention: u64) -> Result<u64, Status> {
    let Some(floor) = prune_floor(last, compacted, retention) else {
        return Ok(compacted);
    };
    tx.prepare_cached(
        "DELETE FROM history WHERE revision > ?1 AND revision <= ?2
           AND NOT EXISTS (SELECT 1 FROM executions e
                           WHERE e.id = history.execution_id AND e.revision = history.revision)",
    )?
    .execute([compacted as i64, floor as i64])?;
    // Deletes older than the window go with their history.
    tx.prepare_cached("DELETE FROM tombstones WHERE revision <= ?1")?
        .execute([floor as i64])?;
    tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'compacted_revision'")?
        .execute([floor as i64])?;
    Ok(floor)
}

/// The pruning rule alone ([`prune`]): with revisions up to `last`
/// committed and history pruned up to `compacted`, the new floor to prune
/// up to now, or `None` while the history is within a slice of
/// `retention`. Public so that the benchmarks' SQLite floors prune by the
/// very same rule.
pub fn prune_floor(last: u64, compacted: u64, retention: u64) -> Option<u64> {
    let retention = retention.max(1);
    let slice = (retention / 16).clamp(1, PRUNE_MAX_REVISIONS);
    if last.saturating_sub(compacted) < retention + slice {
        return None;
    }
    Some((last - retention).min(compacted + PRUNE_MAX_REVISIONS))
}

/// Reads the revision counters at startup: the last revision is the
/// history's largest (every change writes a history row, and pruning keeps
/// the newest `--history-retention`), or `meta.last_revision`, which schema
/// versions before 3 wrote with every commit, whichever is larger.
pub fn load_revisions(conn: &Connection) -> Result<(u64, u64), Status> {
    let get = |key: &str| -> Result<u64, Status> {
        let v: i64 =
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?;
        Ok(v as u64)
    };
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(revision) FROM history", [], |r| r.get(0))?;
    let last = get("last_revision")?.max(newest.unwrap_or(0) as u64);
    Ok((last, get("compacted_revision")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{create, delete, update_status};
    use crate::store::{reader, schema};
    use stigmer_proto::agentexecution::{
        AgentExecution, AgentExecutionSpec, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
        ExecutionPhase,
    };
    use stigmer_proto::apiresource::ApiResourceMetadata;

    /// A migrated database and the counters the writer thread would keep.
    struct Db {
        conn: Connection,
        cache: LatestCache,
        last: u64,
        compacted: u64,
        retention: u64,
    }

    impl Db {
        fn new(retention: u64) -> Db {
            let mut conn = Connection::open_in_memory().expect("open");
            schema::migrate(&mut conn).expect("migrate");
            Db {
                conn,
                cache: LatestCache::new(LATEST_CACHE_BYTES),
                last: 0,
                compacted: 0,
                retention,
            }
        }

        /// Commits one batch of jobs, as the writer thread does.
        fn commit(&mut self, jobs: Vec<Job>) -> Vec<JobResult> {
            let (results, last, compacted) = transact(
                &mut self.conn,
                &mut self.cache,
                jobs,
                self.last + 1,
                self.compacted,
                1 << 20,
                self.retention,
            )
            .expect("commit");
            self.last = last;
            self.compacted = compacted;
            results
        }

        fn history_revisions(&self) -> Vec<u64> {
            self.conn
                .prepare("SELECT revision FROM history ORDER BY revision")
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, i64>(0))?
                        .collect::<Result<Vec<i64>, _>>()
                })
                .expect("history")
                .into_iter()
                .map(|r| r as u64)
                .collect()
        }
    }

    fn new_execution(id: &str) -> Job {
        create::job(AgentExecution {
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
        })
    }

    fn progress(id: &str, note: &str) -> Job {
        update_status::job(AgentExecutionUpdateStatusInput {
            execution_id: id.into(),
            status: Some(AgentExecutionStatus {
                phase: ExecutionPhase::ExecutionInProgress as i32,
                error: note.into(),
                ..Default::default()
            }),
        })
    }

    fn note(db: &Db, id: &str) -> (String, u64) {
        let stored = reader::get(&db.conn, id).expect("get").expect("exists");
        let error = stored.execution.status.map(|s| s.error).unwrap_or_default();
        (error, stored.revision)
    }

    /// An execution's history is the chain of its own changes, found by
    /// walking `prev` links back from its latest revision (no index): with
    /// other executions' changes interleaved, after any revision, through a
    /// delete (the tombstone is the chain's head), and the last revision is
    /// recovered from the history alone at start-up.
    #[test]
    fn history_chain_follows_one_execution_through_interleaved_changes() {
        let mut db = Db::new(1000);
        db.commit(vec![new_execution("aex-a"), new_execution("aex-b")]); // 1, 2
        db.commit(vec![progress("aex-a", "a1"), progress("aex-b", "b1")]); // 3, 4
        db.commit(vec![progress("aex-b", "b2")]); // 5
        db.commit(vec![progress("aex-a", "a2"), progress("aex-a", "a3")]); // 6, 7
        assert_eq!(
            reader::chain(&db.conn, "aex-a", 0).expect("chain"),
            [1, 3, 6, 7]
        );
        assert_eq!(reader::chain(&db.conn, "aex-a", 3).expect("chain"), [6, 7]);
        assert_eq!(
            reader::chain(&db.conn, "aex-a", 7).expect("chain"),
            [] as [u64; 0]
        );
        assert_eq!(
            reader::chain(&db.conn, "aex-b", 1).expect("chain"),
            [2, 4, 5]
        );
        assert!(reader::chain(&db.conn, "aex-none", 0)
            .expect("chain")
            .is_empty());
        let page = reader::history(&db.conn, "aex-a", 1, 2, usize::MAX).expect("history");
        assert_eq!(
            page.iter().map(|r| r.revision).collect::<Vec<_>>(),
            [3, 6],
            "a page is the oldest `limit` rows after `after`"
        );
        db.commit(vec![delete::job("aex-b".into())]); // 8
        assert_eq!(reader::chain(&db.conn, "aex-b", 4).expect("chain"), [5, 8]);
        assert_eq!(
            reader::deleted_revision(&db.conn, "aex-b").expect("deleted"),
            Some(8)
        );
        assert_eq!(load_revisions(&db.conn).expect("revisions"), (8, 0));
    }

    /// One transaction prunes at most `PRUNE_MAX_REVISIONS` revisions, so no
    /// batch waits for a long DELETE: a history far behind its (lowered)
    /// retention catches up a slice per commit, and then stays within it.
    #[test]
    fn pruning_is_bounded_per_transaction() {
        let mut db = Db::new(1_000_000);
        db.commit(vec![new_execution("aex-a"), new_execution("aex-b")]);
        for batch in 0..100 {
            db.commit(
                (0..50)
                    .map(|i| progress("aex-a", &format!("{batch}.{i}")))
                    .collect(),
            );
        }
        assert_eq!((db.last, db.compacted), (5002, 0));
        db.retention = 100;
        let mut floors = Vec::new();
        for i in 0..4 {
            db.commit(vec![progress("aex-a", &format!("after {i}"))]);
            floors.push(db.compacted);
        }
        let max = PRUNE_MAX_REVISIONS;
        assert_eq!(floors, [max, 2 * max, 5005 - 100, 5005 - 100]);
        assert_eq!(db.last, 5006);
        // Above the floor every revision is left; below it only aex-b's
        // latest state (its creation, revision 2).
        let kept = db.history_revisions();
        assert_eq!(kept.first(), Some(&2));
        assert_eq!(kept[1..], (5005 - 100 + 1..=5006).collect::<Vec<_>>()[..]);
        assert_eq!(note(&db, "aex-b").1, 2);
        assert_eq!(note(&db, "aex-a"), ("after 3".into(), 5006));
    }

    /// Pruning never deletes the row an execution's latest state lives in;
    /// a kept row below the floor goes once the execution moves on or is
    /// deleted; above the floor the history stays complete for catch-up.
    #[test]
    fn pruning_keeps_latest_states() {
        let mut db = Db::new(4);
        db.commit(vec![new_execution("aex-idle"), new_execution("aex-busy")]);
        db.commit(vec![progress("aex-idle", "idle once")]); // 3
        for i in 0..20 {
            db.commit(vec![progress("aex-busy", &format!("busy {i}"))]);
        }
        assert_eq!(db.last, 23);
        assert_eq!(db.compacted, 19);
        // Below the floor only aex-idle's latest state is left.
        assert_eq!(note(&db, "aex-idle"), ("idle once".into(), 3));
        assert_eq!(note(&db, "aex-busy"), ("busy 19".into(), 23));
        assert_eq!(db.history_revisions(), [3, 20, 21, 22, 23]);
        // Catch-up from the floor sees the complete history above it.
        let rows =
            reader::history(&db.conn, "aex-busy", db.compacted, 100, usize::MAX).expect("history");
        let revisions: Vec<u64> = rows.iter().map(|r| r.revision).collect();
        assert_eq!(revisions, [20, 21, 22, 23]);
        assert!(
            reader::history(&db.conn, "aex-idle", db.compacted, 100, usize::MAX)
                .expect("history")
                .is_empty()
        );

        // aex-idle moves on: its old row, below the floor, goes at once.
        db.commit(vec![progress("aex-idle", "idle twice")]); // 24
        assert_eq!(note(&db, "aex-idle"), ("idle twice".into(), 24));
        assert_eq!(db.history_revisions(), [21, 22, 23, 24]);

        // Two updates of one execution in one batch, then more pruning.
        let results = db.commit(vec![progress("aex-idle", "a"), progress("aex-idle", "b")]);
        assert!(results.iter().all(Result::is_ok));
        for i in 0..6 {
            db.commit(vec![progress("aex-busy", &format!("later {i}"))]);
        }
        assert_eq!((db.last, db.compacted), (32, 28));
        assert_eq!(note(&db, "aex-idle"), ("b".into(), 26));
        assert_eq!(db.history_revisions(), [26, 29, 30, 31, 32]);

        // A delete of an execution whose state is below the floor removes
        // that row; its delete stays until pruned like any change.
        db.commit(vec![delete::job("aex-idle".into())]); // 33
        assert!(reader::get(&db.conn, "aex-idle").expect("get").is_none());
        assert_eq!(
            reader::deleted_revision(&db.conn, "aex-idle").expect("deleted"),
            Some(33)
        );
        assert_eq!(db.history_revisions(), [30, 31, 32, 33]);
        let integrity: String = db
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(integrity, "ok");
    }

    /// A job that reports what `Txn::load` gives for `id` (and writes nothing).
    fn peek(id: &'static str, seen: Arc<Mutex<Option<(String, u64)>>>) -> Job {
        Box::new(move |txn| {
            let stored = txn.load(id)?.expect("exists");
            let error = stored.execution.status.map(|s| s.error).unwrap_or_default();
            *seen.lock().expect("lock") = Some((error, stored.revision));
            Err(Status::not_found("peek writes nothing"))
        })
    }

    /// A batch that fails rolls back every job's writes, in SQLite and in
    /// the writer's cache: what the next jobs load is the committed state.
    #[test]
    fn failed_batch_leaves_the_committed_states() {
        let mut db = Db::new(100);
        db.commit(vec![new_execution("aex-x")]);
        db.commit(vec![progress("aex-x", "committed")]);
        let failing: Job = Box::new(|_txn| Err(Status::unavailable("disk full")));
        let outcome = transact(
            &mut db.conn,
            &mut db.cache,
            vec![progress("aex-x", "rolled back"), failing],
            db.last + 1,
            db.compacted,
            1 << 20,
            db.retention,
        );
        assert!(outcome.is_err());
        assert_eq!(note(&db, "aex-x"), ("committed".into(), 2));
        let seen = Arc::new(Mutex::new(None));
        db.commit(vec![peek("aex-x", seen.clone())]);
        assert_eq!(*seen.lock().expect("lock"), Some(("committed".into(), 2)));
        db.commit(vec![progress("aex-x", "next")]);
        assert_eq!(note(&db, "aex-x"), ("next".into(), 3));
        // Within a batch, a job loads what the one before it wrote.
        db.commit(vec![
            progress("aex-x", "first"),
            peek("aex-x", seen.clone()),
        ]);
        assert_eq!(*seen.lock().expect("lock"), Some(("first".into(), 4)));
    }

    /// With and without the cache, a mix of jobs leaves the same states.
    #[test]
    fn cache_changes_nothing_but_speed() {
        let run = |budget: usize| {
            let mut db = Db::new(8);
            db.cache = LatestCache::new(budget);
            let mut log = Vec::new();
            for i in 0..40 {
                let id = ["aex-a", "aex-b", "aex-c"][i % 3];
                let jobs = match i % 7 {
                    0 => vec![new_execution(id), progress(id, &format!("n{i}"))],
                    5 => vec![delete::job(id.into())],
                    _ => vec![
                        progress(id, &format!("u{i}")),
                        progress(id, &format!("v{i}")),
                    ],
                };
                let results = db.commit(jobs);
                let outcomes: Vec<String> = results
                    .into_iter()
                    .map(|r| match r {
                        Ok(c) => format!("ok {}", c.revision),
                        Err(s) => format!("{:?}", s.code),
                    })
                    .collect();
                // The states as the database has them (the clock stamps differ
                // between runs, so compared by note and revision).
                let states: Vec<_> = ["aex-a", "aex-b", "aex-c"]
                    .iter()
                    .map(|id| {
                        reader::get(&db.conn, id)
                            .expect("get")
                            .map(|s| (s.execution.status.map(|s| s.error), s.revision))
                    })
                    .collect();
                log.push((outcomes, states));
            }
            log
        };
        assert_eq!(run(LATEST_CACHE_BYTES), run(0));
        // A cache so small it keeps flipping generations.
        assert_eq!(run(3000), run(0));
    }
}
