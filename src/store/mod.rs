//! The store: SQLite in WAL mode, the only durable state.
//!
//! - [`writer`]: one thread owns the write connection. It takes write jobs
//!   from a bounded queue, runs as many as are waiting in one transaction
//!   (group commit), assigns revisions in order, and only after COMMIT hands
//!   each change to the broker and answers its caller.
//! - [`reader`]: a small pool of read-only connections used from
//!   `spawn_blocking`, so async tasks never block on SQLite.
//! - [`schema`]: tables and migrations (versioned with `user_version`).
//! - [`txn`]: the typed operations a write job may perform.
//! - [`cache`]: the writer thread's cache of the latest states it wrote.

pub mod cache;
pub mod reader;
pub mod schema;
pub mod txn;
pub mod writer;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use stigmer_proto::agentexecution::{AgentExecution, ExecutionPhase};

use crate::config::Durability;
use crate::protocol::Status;

pub use reader::Reader;
pub use txn::Txn;
pub use writer::{OnCommit, Writer, WriterStats};

/// What kind of change a revision recorded (stored in `history.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created = 1,
    StatusUpdated = 2,
    Deleted = 3,
}

impl ChangeKind {
    /// From the stored integer; unknown values are a corrupt database.
    pub fn from_i64(v: i64) -> Result<Self, Status> {
        match v {
            1 => Ok(Self::Created),
            2 => Ok(Self::StatusUpdated),
            3 => Ok(Self::Deleted),
            other => Err(Status::internal(format!("unknown history kind {other}"))),
        }
    }
}

/// The state a create or status update left: the message (for phase checks)
/// and the bytes the writer encoded and stored, which replies and events
/// wrap as they are instead of encoding the execution again.
#[derive(Debug)]
pub struct State {
    pub execution: Arc<AgentExecution>,
    pub encoded: Bytes,
}

/// One committed change: what the broker fans out and what history replays.
#[derive(Debug)]
pub struct Change {
    /// The global revision assigned at commit.
    pub revision: u64,
    /// The execution it changed.
    pub execution_id: Arc<str>,
    /// The execution after the change; `None` for a delete.
    pub state: Option<State>,
    /// The `Event { UPDATE }` for this change, built on first use and then
    /// shared by every subscriber (see `protocol::encode_event_frame`).
    event: OnceLock<Bytes>,
    /// When the broker received it (just after COMMIT), for the broadcast
    /// latency histogram.
    published_at: OnceLock<std::time::Instant>,
}

impl Change {
    /// A create or status update as committed.
    pub fn new(revision: u64, execution_id: Arc<str>, state: State) -> Self {
        Self::with_state(revision, execution_id, Some(state))
    }

    /// A delete as committed.
    pub fn deleted(revision: u64, execution_id: Arc<str>) -> Self {
        Self::with_state(revision, execution_id, None)
    }

    fn with_state(revision: u64, execution_id: Arc<str>, state: Option<State>) -> Self {
        Self {
            revision,
            execution_id,
            state,
            event: OnceLock::new(),
            published_at: OnceLock::new(),
        }
    }

    /// Records the moment of publication (the first call wins).
    pub fn mark_published(&self) {
        let _ = self.published_at.set(std::time::Instant::now());
    }

    /// Time since publication, if published.
    pub fn since_published(&self) -> Option<std::time::Duration> {
        self.published_at.get().map(|t| t.elapsed())
    }

    /// True when the change left the execution in a terminal phase.
    pub fn is_terminal(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| is_terminal(&s.execution))
    }

    /// The encoded `Event` of type UPDATE carrying this change; `None` for a
    /// delete, which streams end on instead.
    pub fn update_event_bytes(&self) -> Option<&Bytes> {
        let state = self.state.as_ref()?;
        Some(self.event.get_or_init(|| {
            crate::protocol::encode_update_event(self.revision, &self.execution_id, &state.encoded)
        }))
    }
}

/// True for the phases after which no update is accepted.
pub fn is_terminal_phase(phase: i32) -> bool {
    matches!(
        ExecutionPhase::try_from(phase),
        Ok(ExecutionPhase::ExecutionCompleted
            | ExecutionPhase::ExecutionFailed
            | ExecutionPhase::ExecutionCancelled
            | ExecutionPhase::ExecutionTerminated)
    )
}

/// True when the execution is in a terminal phase.
pub fn is_terminal(execution: &AgentExecution) -> bool {
    execution
        .status
        .as_ref()
        .map(|s| is_terminal_phase(s.phase))
        .unwrap_or(false)
}

/// Revisions the daemon has committed, shared by the writer (which advances
/// them) and every reader of them.
#[derive(Debug, Default)]
pub struct Revisions {
    /// The last committed revision.
    last: AtomicU64,
    /// History at or below this revision may have been pruned.
    compacted: AtomicU64,
}

impl Revisions {
    /// The last committed revision.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
    /// The compaction floor: a resume from below it needs a RESYNC.
    pub fn compacted(&self) -> u64 {
        self.compacted.load(Ordering::Acquire)
    }
    pub(crate) fn set(&self, last: u64, compacted: u64) {
        self.compacted.store(compacted, Ordering::Release);
        self.last.store(last, Ordering::Release);
    }
}

/// The writer connection's page cache, in KiB (see `open`).
pub const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// Everything needed to open the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub durability: Durability,
    pub writer_queue: usize,
    /// The writer thread's longest poll before it sleeps (`crate::poll`).
    pub writer_poll: std::time::Duration,
    pub history_retention: u64,
    /// The largest encoded execution accepted (fits in one frame).
    pub max_execution_bytes: usize,
}

/// An exclusive lock on the database (a `flock` on `<db>.lock`), held for
/// the daemon's lifetime so two daemons never share one database.
pub struct DbLock {
    _lock: nix::fcntl::Flock<File>,
}

/// Creates the database's directory (mode 0700 when we create it) and takes
/// the lock. Fails with a clear message when another daemon holds it.
pub fn lock_database(path: &Path) -> Result<DbLock, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => format!(
                "database {} is in use by another stigmer daemon (lock {})",
                path.display(),
                lock_path.display()
            ),
            other => format!("cannot lock {}: {other}", lock_path.display()),
        },
    )?;
    Ok(DbLock { _lock: lock })
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}

/// Makes the database files readable by their owner only (the WAL and shm
/// files inherit the database file's mode when SQLite creates them).
pub fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// The opened store: the writer handle, the read pool and shared counters.
pub struct Store {
    /// Submits write jobs to the writer thread.
    pub writer: Writer,
    /// Runs reads on pooled read connections.
    pub reader: Reader,
    /// The committed revision counters.
    pub revisions: Arc<Revisions>,
    /// The writer's counters.
    pub stats: Arc<WriterStats>,
    /// The writer thread; joined at shutdown after every `Writer` is dropped.
    pub thread: std::thread::JoinHandle<()>,
}

/// Opens the writer's connection with its pragmas: WAL, the durability's
/// `synchronous`, a busy timeout, and a larger page cache. Used at start-up
/// and by the writer to reopen after the database was read-only.
pub fn open_write_connection(
    path: &Path,
    durability: Durability,
) -> Result<rusqlite::Connection, String> {
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF;"
    ))
    .map_err(|e| format!("cannot configure database {}: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| format!("cannot configure database: {e}"))?;
    conn.set_prepared_statement_cache_capacity(32);
    // The writer's page cache: SQLite's default (2 MB, ~500 pages) is
    // smaller than one checkpoint interval of history pages plus the hot
    // executions, and the profile of 32 writers showed the writer re-reading
    // pages with pread (~4% of its time). 16 MiB is only used under load.
    conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))
        .map_err(|e| format!("cannot configure database: {e}"))?;
    Ok(conn)
}

/// Opens (creating if needed) and migrates the database, then starts the
/// writer thread. `on_commit` receives every committed change in revision
/// order (the broker's publish).
pub fn open(config: &StoreConfig, on_commit: OnCommit) -> Result<Store, String> {
    let path = &config.path;
    let mut conn = open_write_connection(path, config.durability)?;
    restrict_permissions(path)
        .map_err(|e| format!("cannot set permissions of {}: {e}", path.display()))?;
    schema::migrate(&mut conn)?;
    let (last, compacted) = writer::load_revisions(&conn).map_err(|e| e.to_string())?;
    let revisions = Arc::new(Revisions::default());
    revisions.set(last, compacted);
    let stats = Arc::new(WriterStats::default());
    let (writer, thread) = Writer::start(
        conn,
        writer::WriterConfig {
            queue: config.writer_queue,
            poll: config.writer_poll,
            history_retention: config.history_retention,
            max_execution_bytes: config.max_execution_bytes,
            path: path.clone(),
            durability: config.durability,
        },
        revisions.clone(),
        stats.clone(),
        on_commit,
    )
    .map_err(|e| format!("cannot start the writer thread: {e}"))?;
    Ok(Store {
        writer,
        reader: Reader::new(path.clone()),
        revisions,
        stats,
        thread,
    })
}
