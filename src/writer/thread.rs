//! The writer thread's loop: wait for a job (polling briefly before it
//! sleeps), take what else is queued, commit the batch, broadcast, answer.
//!
//! Group commit: the thread blocks for the first job, then takes whatever
//! else is already queued (at most [`MAX_BATCH`]) and runs them all in one
//! `BEGIN IMMEDIATE ... COMMIT` ([`super::batch`]). A lone job commits at
//! once (no added wait); under load the commit (and its fsync in full
//! durability) is shared. Only after COMMIT succeeds are the changes
//! broadcast, in revision order, and then each caller answered.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::batch::{transact, Batch};
use super::{Answer, Job, Msg, Outcome, WriterConfig, WriterStats, LATEST_CACHE_BYTES, MAX_BATCH};
use crate::broker::Broker;
use crate::model::{Change, Revisions};
use crate::pipeline::{self, Write};
use crate::poll::{PollWindow, Polled};
use crate::store::cache::LatestCache;
use crate::store::checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT_PAGES};

/// Starts `thread` on its own OS thread, named for `top` and profiles.
pub(super) fn spawn(thread: WriterThread) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stigmer-writer".into())
        .spawn(move || thread.run())
}

/// The thread's state: the one write connection and what it serves from.
pub(super) struct WriterThread {
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
    /// Where committed changes are broadcast (pipeline step 5).
    broker: Arc<Broker>,
}

impl WriterThread {
    pub(super) fn new(
        conn: Connection,
        config: WriterConfig,
        rx: mpsc::Receiver<Msg>,
        revisions: Arc<Revisions>,
        stats: Arc<WriterStats>,
        broker: Arc<Broker>,
    ) -> Self {
        Self {
            conn,
            cache: LatestCache::new(LATEST_CACHE_BYTES),
            reopen: false,
            rx,
            config,
            revisions,
            stats,
            broker,
        }
    }

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
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
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
            // A prepare or a rebuild ends the batch: it runs after the
            // jobs queued before it are committed.
            let mut after = None;
            match first {
                Msg::Job(job) => batch.push(job),
                Msg::Stop => break,
                other => after = Some(other),
            }
            while after.is_none() && batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(Msg::Job(next)) => batch.push(next),
                    Ok(Msg::Stop) => {
                        stopping = true;
                        break;
                    }
                    Ok(other) => after = Some(other),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch);
            }
            match after {
                Some(Msg::Prepare(write, answer)) => self.prepare(write, answer),
                Some(Msg::Rebuild(rebuild, answer)) => self.rebuild(&rebuild, answer),
                _ => {}
            }
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

    /// Commits one batch, then broadcasts its changes and answers its jobs.
    fn commit_batch(&mut self, batch: &mut Vec<Job>) {
        if self.reopen {
            self.try_reopen();
        }
        let started = Instant::now();
        let (writes, answers): (Vec<Write>, Vec<Answer>) =
            batch.drain(..).map(|job| (job.write, job.answer)).unzip();
        let bounds = self.batch();
        let outcome = transact(&mut self.conn, &mut self.cache, bounds, writes);
        match outcome {
            Ok(committed) => {
                self.revisions.set(committed.last, committed.compacted);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.commit_latency.observe(started.elapsed());
                // Broadcast first, in revision order, then acknowledge: both
                // strictly after COMMIT.
                let changes: Vec<Arc<Change>> = committed
                    .results
                    .iter()
                    .filter_map(|r| match r {
                        Ok(Outcome::Committed(change)) => Some(change.clone()),
                        _ => None,
                    })
                    .collect();
                pipeline::broadcast(&self.broker, &changes);
                for (answer, result) in answers.into_iter().zip(committed.results) {
                    match &result {
                        Ok(_) => self.stats.changes.fetch_add(1, Ordering::Relaxed),
                        Err(_) => self.stats.refused.fetch_add(1, Ordering::Relaxed),
                    };
                    answer.deliver(result);
                }
            }
            Err(err) => {
                // The connection knows whether SQLite had to open the file
                // read-only; only then can a new connection help.
                self.reopen |= self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
                tracing::error!(%err, jobs = answers.len(), "write transaction failed; nothing from it was committed");
                self.stats
                    .refused
                    .fetch_add(answers.len() as u64, Ordering::Relaxed);
                for answer in answers {
                    answer.deliver(Err(err.clone()));
                }
            }
        }
    }

    /// Runs `write` and rolls it back (see [`super::batch::prepare`]); the
    /// caller may have gone, which changes nothing.
    fn prepare(
        &mut self,
        write: Write,
        answer: tokio::sync::oneshot::Sender<
            Result<super::PrepareOutcome, crate::protocol::ApiError>,
        >,
    ) {
        if self.reopen {
            self.try_reopen();
        }
        let bounds = self.batch();
        let outcome = super::batch::prepare(&mut self.conn, &mut self.cache, bounds, write);
        let _ = answer.send(outcome);
    }

    /// Replaces the replica (see `store::replica::replace`), then tells
    /// every open stream to catch up from the history, as after a queue
    /// overflow: each finds its position below the new floor and resyncs.
    fn rebuild(
        &mut self,
        rebuild: &crate::store::replica::Rebuild,
        answer: tokio::sync::oneshot::Sender<Result<(), crate::protocol::ApiError>>,
    ) {
        if self.reopen {
            self.try_reopen();
        }
        // The cache holds states the rebuild may replace.
        self.cache.clear();
        let result = crate::store::replica::replace(&self.conn, rebuild);
        if result.is_ok() {
            self.revisions.set(rebuild.revision, rebuild.revision);
            self.broker.resync_all();
        }
        let _ = answer.send(result);
    }

    /// Where the next transaction starts and the bounds it runs under.
    fn batch(&self) -> Batch {
        Batch {
            first_revision: self.revisions.last() + 1,
            compacted: self.revisions.compacted(),
            max_execution_bytes: self.config.max_execution_bytes,
            history_retention: self.config.history_retention,
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
        match crate::store::open_write_connection(&self.config.path, self.config.durability) {
            Ok(conn) if !conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) => {
                tracing::info!("database writable again: reopened the write connection");
                self.conn = conn;
                self.reopen = false;
            }
            Ok(_) => tracing::debug!("database still read-only"),
            Err(err) => tracing::debug!(%err, "cannot reopen the database yet"),
        }
    }
}
