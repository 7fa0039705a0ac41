//! The store: SQLite in WAL mode, the only durable state. Everything here
//! is synchronous; async code reaches it through the writer thread
//! (`crate::writer`) and the read pool ([`Reader`]).
//!
//! - [`txn`]: the typed operations a write makes inside the writer's open
//!   transaction, and the `BEGIN IMMEDIATE ... COMMIT` guard.
//! - [`cache`]: the writer thread's cache of the latest states it wrote.
//! - [`prune`]: keeps the history within `--history-retention`.
//! - [`checkpoint`]: the thread that folds the WAL back beside the writer.
//! - [`reader`]: the queries `get`, `list` and streams run, each on a
//!   read-only connection.
//! - [`read_pool`]: the threads that run them for async code, at most
//!   `--max-reads` at once.
//! - [`selection`]: the reads of many-execution streams (a list at one
//!   revision, a selection's history after a revision).
//! - [`replica`]: the cluster mode's needs: where executions stand, how far
//!   etcd may be compacted, and the rebuild after etcd compacted past the
//!   replica.
//! - [`schema`]: tables and migrations (versioned with `user_version`).
//! - [`lock`]: the `flock` that keeps a second daemon off the database.

pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod lock;
pub(crate) mod prune;
pub(crate) mod read_pool;
pub(crate) mod reader;
pub(crate) mod replica;
pub(crate) mod schema;
pub(crate) mod selection;
pub(crate) mod txn;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::config::Durability;
use crate::model::Revisions;
use crate::protocol::ApiError;

pub(crate) use lock::{lock_database, DbLock};
pub(crate) use read_pool::Reader;
pub(crate) use txn::{Immediate, Txn};

/// The writer connection's page cache, in KiB (see [`open_write_connection`]).
pub const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// Makes the database files readable by their owner only (the WAL and shm
/// files inherit the database file's mode when SQLite creates them).
pub(crate) fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Opens the writer's connection with its pragmas: WAL, the durability's
/// `synchronous`, a busy timeout, and a larger page cache. Used at start-up
/// and by the writer to reopen after the database was read-only.
pub(crate) fn open_write_connection(
    path: &Path,
    durability: Durability,
) -> Result<Connection, String> {
    let conn = Connection::open(path)
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
    // executions, and the profile of 32 runners showed the writer re-reading
    // pages with pread (~4% of its time). 16 MiB is only used under load.
    conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))
        .map_err(|e| format!("cannot configure database: {e}"))?;
    Ok(conn)
}

/// Opens (creating if needed) and migrates the database for writing,
/// checks it serves in the mode asked ([`check_mode`]: `cluster` is
/// `--etcd`), and reads its revision counters. The writer thread takes the
/// connection.
pub(crate) fn open(
    path: &Path,
    durability: Durability,
    cluster: bool,
) -> Result<(Connection, Revisions), String> {
    let mut conn = open_write_connection(path, durability)?;
    restrict_permissions(path)
        .map_err(|e| format!("cannot set permissions of {}: {e}", path.display()))?;
    schema::migrate(&mut conn)?;
    let (last, compacted) = load_revisions(&conn).map_err(|e| e.to_string())?;
    check_mode(&conn, path, cluster, last)?;
    let revisions = Revisions::default();
    revisions.set(last, compacted);
    Ok((conn, revisions))
}

/// A database serves either alone or as a replica of an etcd cluster
/// (`--etcd`), never one then the other: a replica's revisions are etcd's,
/// a lone daemon's its own, and mixing them would break every stream's
/// order. The first start in the cluster mode marks an empty database
/// (`meta.cluster_mode`); a database with history (`last`, its last
/// revision) that is not so marked is refused with `--etcd`, and a marked
/// one without it.
pub(crate) fn check_mode(
    conn: &Connection,
    path: &Path,
    cluster: bool,
    last: u64,
) -> Result<(), String> {
    let marked = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'cluster_mode'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(|e| format!("cannot read the database's mode: {e}"))?
        == Some(1);
    let db = path.display();
    match (cluster, marked) {
        (true, true) | (false, false) => Ok(()),
        (true, false) if last == 0 => conn
            .execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('cluster_mode', 1)",
                [],
            )
            .map(drop)
            .map_err(|e| format!("cannot mark {db} as a replica: {e}")),
        (true, false) => Err(format!(
            "{db} has served without --etcd (its revisions are its own, up to {last}, not              etcd's); give the cluster mode a database of its own with --db"
        )),
        (false, true) => Err(format!(
            "{db} is a replica of an etcd cluster (it served with --etcd); start with the same              --etcd, or use another --db"
        )),
    }
}

/// Reads the revision counters at startup: the last revision is the
/// history's largest (every change writes a history row, and pruning keeps
/// the newest `--history-retention`), or `meta.last_revision`, which schema
/// versions before 3 wrote with every commit, whichever is larger.
pub(crate) fn load_revisions(conn: &Connection) -> Result<(u64, u64), ApiError> {
    let get = |key: &str| -> Result<u64, ApiError> {
        let v: i64 =
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?;
        Ok(v as u64)
    };
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(revision) FROM history", [], |r| r.get(0))?;
    let last = get("last_revision")?.max(newest.unwrap_or(0) as u64);
    Ok((last, get("compacted_revision")?))
}
