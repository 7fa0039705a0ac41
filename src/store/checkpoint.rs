//! The checkpointer: a thread that folds the WAL back into the database
//! beside the writer, on its own connection.
//!
//! Why: SQLite's automatic checkpoint runs inside the COMMIT that crosses
//! 1000 WAL pages, so one unlucky batch per ~1000 pages paid for copying the
//! WAL into the database and an fsync (profiled: 11% of the writer thread's
//! time under 32 runners, and the tail of the latency distribution). This
//! thread runs PASSIVE checkpoints instead (WAL mode lets one writer append
//! while a checkpoint copies older frames), so no caller waits for one; the
//! writer's own automatic checkpoint stays as a backstop
//! ([`WRITER_AUTOCHECKPOINT_PAGES`]).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::model::Revisions;

/// The checkpointer runs a checkpoint once this many revisions have been
/// committed since the last one (a few MiB of WAL with 1 KiB states: large
/// enough that rewrites of the same hot pages coalesce, small enough that
/// the WAL and each checkpoint stay short)...
pub const CHECKPOINT_AFTER_CHANGES: u64 = 4096;
/// ...or, when anything at all was committed, after this long, so a quiet
/// daemon's WAL is folded back soon after a burst. After as long again
/// with no commit at all, a TRUNCATE checkpoint empties the WAL file: under
/// continuous writes a PASSIVE checkpoint beside the writer never finds
/// every frame copied, so the WAL file keeps the size it grew to (up to
/// the writer's backstop) until the daemon goes quiet.
const CHECKPOINT_AFTER: Duration = Duration::from_secs(1);
/// How often the checkpointer looks at the revision counter (one atomic
/// load; it sleeps otherwise).
pub const CHECKPOINT_POLL: Duration = Duration::from_millis(50);
/// The writer's own automatic checkpoint, kept only as a backstop should
/// the checkpointer fall behind (e.g. a reader pins old frames): 16384
/// pages, 64 MiB of WAL, instead of SQLite's 1000.
pub const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16384;

/// The checkpoint thread (see the module docs).
pub(crate) struct Checkpointer {
    /// `true` asks the thread to stop; the condvar wakes it at once.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Opens a connection to `path` and starts the thread; `None` (with a
    /// warning) if either fails, in which case SQLite's automatic checkpoint
    /// simply stays in charge.
    pub(crate) fn start(path: &str, revisions: Arc<Revisions>) -> Option<Checkpointer> {
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
    pub(crate) fn stop(self) {
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
    // Whether the WAL was emptied since the last commit.
    let mut truncated = false;
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
        if last == done && !truncated && since.elapsed() >= CHECKPOINT_AFTER {
            // Quiet: nothing committed since the last checkpoint copied
            // everything. TRUNCATE waits for readers (its busy timeout), and
            // a write arriving meanwhile waits for it (a file truncation).
            if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::debug!(%err, "truncating the quiet WAL failed; will retry");
            } else {
                truncated = true;
            }
            since = Instant::now();
            continue;
        }
        let due = last >= done + CHECKPOINT_AFTER_CHANGES
            || (last > done && since.elapsed() >= CHECKPOINT_AFTER);
        if !due {
            continue;
        }
        truncated = false;
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
