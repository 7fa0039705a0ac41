//! Tables and migrations. The schema version is SQLite's `user_version`;
//! each migration runs once, in order, in its own transaction, so a database
//! from any earlier version opens and one from a newer version is refused.

use rusqlite::Connection;

/// Migrations, index + 1 = the `user_version` after it runs.
const MIGRATIONS: &[&str] = &[
    // 1: the latest state of each execution, the history of every committed
    // change (for resume), and the revision counters.
    "CREATE TABLE executions (
        id         TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        phase      INTEGER NOT NULL,
        revision   INTEGER NOT NULL,
        data       BLOB NOT NULL
     );
     CREATE INDEX executions_by_session ON executions(session_id, id);
     CREATE INDEX executions_by_phase ON executions(phase, id);
     CREATE TABLE history (
        revision     INTEGER PRIMARY KEY,
        execution_id TEXT NOT NULL,
        kind         INTEGER NOT NULL,
        data         BLOB
     );
     CREATE INDEX history_by_execution ON history(execution_id, revision);
     CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO meta(key, value) VALUES ('last_revision', 0), ('compacted_revision', 0);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("cannot read schema version: {e}"))?;
    if current > SCHEMA_VERSION {
        return Err(format!(
            "database schema version {current} is newer than this daemon's ({SCHEMA_VERSION}); \
             upgrade stigmer"
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn
            .transaction()
            .map_err(|e| format!("migration {version}: {e}"))?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {version}: {e}"))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| format!("migration {version}: {e}"))?;
        tx.commit()
            .map_err(|e| format!("migration {version}: {e}"))?;
    }
    Ok(())
}
