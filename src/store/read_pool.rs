//! The read pool: at most `--max-reads` threads of its own, each with one
//! read-only connection, run the reads of async code (`get`, list pages, a
//! stream's list and catch-up), so a slow query never stalls an async
//! worker and a burst of clients costs neither threads nor file descriptors
//! beyond the bound.
//!
//! Why not tokio's blocking pool (`spawn_blocking`), which it replaced: that
//! pool grows to 512 threads per runtime, and each read beyond a few opened
//! its own connection (three file descriptors and a page cache); 200
//! clients listing at once took the daemon to 193 threads and 535
//! descriptors. A
//! semaphore in front of it still let threads pile up, since a finished
//! read's thread is not idle yet when the next read is handed over (64
//! clients behind a bound of 2 started 18 threads). Here the bound is the
//! threads themselves: a read waits for a turn (a permit) without a
//! thread, then one of at most `--max-reads` threads runs it.
//!
//! Threads start on demand, one at a time when every running one is busy,
//! and then stay (an idle daemon starts none); each opens its connection
//! on its first read and keeps it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::reader::snapshot;
use crate::protocol::ApiError;

/// A read handed to a pool thread; it sends its own result.
type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// A pool thread's connection, opened on its first read.
type Slot = Option<Connection>;

/// The read pool. Cheap to clone; the threads stop when the last clone is
/// dropped.
#[derive(Clone)]
pub(crate) struct Reader {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// One permit per read that may run; a read keeps its permit until it
    /// is done on its thread, even when its caller stopped waiting (a
    /// dropped request), so the bound counts every running read.
    turns: Arc<Semaphore>,
    max_reads: usize,
    /// Reads handed over, taken by whichever thread is free. Never holds
    /// more than `max_reads` (one per permit), so a send never waits.
    jobs: mpsc::SyncSender<Job>,
    taken: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Threads started, and those among them waiting for a read.
    threads: AtomicUsize,
    idle: Arc<AtomicUsize>,
}

impl Reader {
    /// A pool for the database at `path` (which must already exist) that
    /// runs at most `max_reads` reads at once (at least one).
    pub(crate) fn new(path: PathBuf, max_reads: usize) -> Self {
        let max_reads = max_reads.max(1);
        let (jobs, taken) = mpsc::sync_channel(max_reads);
        Self {
            inner: Arc::new(Inner {
                path,
                turns: Arc::new(Semaphore::new(max_reads)),
                max_reads,
                jobs,
                taken: Arc::new(Mutex::new(taken)),
                threads: AtomicUsize::new(0),
                idle: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    /// Runs `f` on a read connection of a pool thread, in one read
    /// transaction: everything `f` reads comes from one snapshot, so a new
    /// base committed meanwhile (which releases the old chain) cannot tear
    /// a read that follows a chain, and a floor and a chain read together
    /// agree.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        // Waits for a turn while --max-reads reads run; the semaphore is
        // never closed, so this fails only on a bug.
        let turn = self
            .inner
            .turns
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal(format!("read turns closed: {e}")))?;
        let (answer, answered) = oneshot::channel();
        let path = self.inner.path.clone();
        let job: Job = Box::new(move |slot: &mut Slot| {
            let result = read(slot, &path, f);
            // Free the turn before answering, so the next read can start.
            drop::<OwnedSemaphorePermit>(turn);
            // The caller may have stopped waiting; the read is done anyway.
            let _ = answer.send(result);
        });
        self.hand_over(job)?;
        // Waits for the read on its thread; fails only if the thread died
        // (a panic in the read, a bug), which becomes INTERNAL, not a hang.
        answered
            .await
            .map_err(|_| ApiError::internal("the read thread stopped before answering"))?
    }

    /// Queues `job` for a free thread, starting one when none is free and
    /// fewer than `max_reads` run.
    fn hand_over(&self, job: Job) -> Result<(), ApiError> {
        let inner = &self.inner;
        // At most max_reads permits are out, so the queue has room.
        inner
            .jobs
            .try_send(job)
            .map_err(|e| ApiError::internal(format!("read queue: {e}")))?;
        if inner.idle.load(Ordering::Acquire) == 0 {
            let started = inner
                .threads
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < inner.max_reads).then_some(n + 1)
                });
            if let Ok(n) = started {
                if let Err(err) = spawn(n, inner.taken.clone(), inner.idle.clone()) {
                    // The job waits for a running thread; with none, its
                    // caller would wait forever, so say so loudly.
                    inner.threads.fetch_sub(1, Ordering::AcqRel);
                    tracing::error!(%err, "cannot start a read thread");
                    if n == 0 {
                        return Err(ApiError::unavailable(format!(
                            "cannot start a read thread: {err}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Starts read thread `n`: it takes jobs until the pool is dropped.
fn spawn(
    n: usize,
    taken: Arc<Mutex<mpsc::Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("stigmer-read-{n}"))
        .spawn(move || {
            let mut slot: Slot = None;
            loop {
                idle.fetch_add(1, Ordering::AcqRel);
                // One thread waits in recv, the others for the lock; a
                // poisoned lock (a panic while receiving) is still usable.
                let job = taken
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .recv();
                idle.fetch_sub(1, Ordering::AcqRel);
                let Ok(job) = job else {
                    // Every sender is gone: the pool was dropped.
                    return;
                };
                // A panic in a read (a bug) must not take the thread with
                // it: the pool would shrink until reads hang. The read's
                // caller gets INTERNAL (its answer is dropped), and the
                // connection, which may be mid-transaction, is replaced.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut slot)));
                if ran.is_err() {
                    slot = None;
                }
            }
        })
        .map(drop)
}

/// Runs `f` in one snapshot on the thread's connection, opening it first
/// if needed (a failed open is that read's error; the next read tries
/// again).
fn read<T>(
    slot: &mut Slot,
    path: &Path,
    f: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    if slot.is_none() {
        *slot = Some(open_read(path)?);
    }
    match slot {
        Some(conn) => snapshot(conn, f),
        None => Err(ApiError::internal("no read connection")),
    }
}

fn open_read(path: &Path) -> Result<Connection, ApiError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A reader may meet the writer mid-checkpoint; wait briefly, not fail.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use std::time::Duration;

    /// A migrated database in a temporary directory, and a pool for it.
    fn reader(max_reads: usize) -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stigmer.db");
        crate::store::open(&path, Durability::Normal, false).expect("open");
        (dir, Reader::new(path, max_reads))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_reads_run_at_once_than_the_bound_nor_threads() {
        let (_dir, reader) = reader(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let reads: Vec<_> = (0..12)
            .map(|_| {
                let (reader, running, most) = (reader.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    reader
                        .run(move |conn| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            // Work long enough that the others queue.
                            std::thread::sleep(Duration::from_millis(10));
                            running.fetch_sub(1, Ordering::SeqCst);
                            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                                .map_err(ApiError::from)
                        })
                        .await
                })
            })
            .collect();
        for read in reads {
            assert_eq!(read.await.expect("join").expect("read"), 1);
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?} reads at once");
        assert!(reader.inner.threads.load(Ordering::SeqCst) <= 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_whose_caller_left_keeps_its_turn_until_it_ends() {
        let (_dir, reader) = reader(1);
        let (release, held) = mpsc::channel::<()>();
        let (started, on_start) = mpsc::channel::<()>();
        let first = {
            let reader = reader.clone();
            tokio::spawn(async move {
                reader
                    .run(move |_| {
                        let _ = started.send(());
                        // Holds the only turn until released.
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || on_start.recv())
            .await
            .expect("join")
            .expect("the first read started");
        // Its caller stops waiting; the read itself still runs.
        first.abort();
        let second = tokio::spawn({
            let reader = reader.clone();
            async move { reader.run(|_| Ok(2)).await }
        });
        // The second read cannot get a turn while the first runs.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "a second read ran beside the first");
        release.send(()).expect("release");
        assert_eq!(second.await.expect("join").expect("read"), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_panics_is_internal_and_the_pool_goes_on() {
        let (_dir, reader) = reader(1);
        for _ in 0..3 {
            let err = reader
                .run(|_| -> Result<(), ApiError> { panic!("a bug in a read") })
                .await
                .expect_err("a panicked read");
            assert_eq!(err.code, crate::protocol::Code::Internal);
        }
        assert_eq!(reader.run(|_| Ok(7)).await.expect("read"), 7);
        assert_eq!(reader.inner.threads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_cannot_open_the_database_is_an_error_and_the_next_tries_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stigmer.db");
        let reader = Reader::new(path.clone(), 1);
        assert!(reader.run(|_| Ok(())).await.is_err(), "no database yet");
        crate::store::open(&path, Durability::Normal, false).expect("open");
        reader.run(|_| Ok(())).await.expect("opened now");
    }
}
