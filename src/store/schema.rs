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
    // 2: each state is stored once, in `history`; `executions.revision`
    // points at the row holding an execution's latest state (pruning keeps
    // such rows, see `writer::prune`). Version 1 pruned history without
    // regard to `executions`, so an execution not updated within the
    // retention window has no history row for its latest state: it is
    // re-inserted from `executions.data` (kind 2 = `ChangeKind::StatusUpdated`,
    // checked by a test), below the compaction floor, where catch-up never
    // reads. Then the duplicate copy goes.
    "INSERT INTO history(revision, execution_id, kind, data)
        SELECT e.revision, e.id, 2, e.data FROM executions e
        WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.revision = e.revision);
     ALTER TABLE executions DROP COLUMN data;",
    // 3: no per-execution index on `history`. It cost one dirty 4 KiB page
    // per execution in every commit (daemon CPU per update, 32 runners:
    // 56-59 µs with it, 40-42 µs without; docs/PERFORMANCE.md). Instead each
    // row records `prev`, the revision of the same execution's previous
    // change, so an execution's history is a chain walked back from its
    // latest revision (`executions.revision`, or its tombstone once
    // deleted), one primary-key lookup per change (`reader::chain`). Deletes
    // are remembered in `tombstones` (kind 3 = `ChangeKind::Deleted`, checked
    // by a test). `meta.last_revision` is no longer written per commit: the
    // history's largest revision is the last one (`writer::load_revisions`).
    "ALTER TABLE history ADD COLUMN prev INTEGER;
     UPDATE history SET prev = (SELECT MAX(h.revision) FROM history h
                                WHERE h.execution_id = history.execution_id
                                  AND h.revision < history.revision);
     CREATE TABLE tombstones (
        execution_id TEXT PRIMARY KEY,
        revision     INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO tombstones(execution_id, revision)
        SELECT execution_id, MAX(revision) FROM history WHERE kind = 3 GROUP BY execution_id;
     DROP INDEX history_by_execution;",
    // 4: `executions` keyed by its id alone (`WITHOUT ROWID`). With a rowid
    // every status update's `UPDATE ... WHERE id = ?` descended two B-trees
    // (the id's automatic index, then the row), as did pruning's check of
    // each history row against `executions`; now one. The writer thread's
    // CPU per update, `benches/store_floor.rs`: 9.9-11.4 µs against
    // 12.5-12.9 µs (three alternating rounds). The secondary indexes
    // already end in `id`, the key they now point with.
    "CREATE TABLE executions_by_id (
        id         TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        phase      INTEGER NOT NULL,
        revision   INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO executions_by_id(id, session_id, phase, revision)
        SELECT id, session_id, phase, revision FROM executions;
     DROP TABLE executions;
     ALTER TABLE executions_by_id RENAME TO executions;
     CREATE INDEX executions_by_session ON executions(session_id, id);
     CREATE INDEX executions_by_phase ON executions(phase, id);",
    // 5: deltas (issue 16). A status change made by operations stores them
    // (`history.ops`, an encoded `Delta`), and the whole state only now and
    // then (`history.data`, a *base*): when the operations since the last
    // base outgrow it, at a terminal phase, after an operation that replaces
    // a whole part. An execution's latest state is its base plus the
    // operations of the rows after it on its chain (`reader::get`);
    // `executions.base` is that base's revision, `base_bytes` its size and
    // `delta_bytes` the operations stored since. Every row written before
    // is a whole state: its own base.
    "ALTER TABLE history ADD COLUMN ops BLOB;
     ALTER TABLE executions ADD COLUMN base INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE executions ADD COLUMN base_bytes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE executions ADD COLUMN delta_bytes INTEGER NOT NULL DEFAULT 0;
     UPDATE executions SET base = revision,
        base_bytes = COALESCE((SELECT length(h.data) FROM history h
                               WHERE h.revision = executions.revision), 0);",
    // 6: session streams (issue 17). A session stream resumed from R reads
    // the chains of the session's executions: the live ones through
    // `executions_by_session`, the deleted ones through their tombstones,
    // which now record the session (indexed, so a small session never scans
    // every tombstone). A delete costs that index entry; no status change
    // costs anything. Tombstones written before this migration do not know
    // their session: `sessions_since` is the last revision at migration,
    // and a session stream resumed from below it gets the explicit resync
    // (a new list) instead of a history that could miss a delete.
    "ALTER TABLE tombstones ADD COLUMN session_id TEXT;
     CREATE INDEX tombstones_by_session ON tombstones(session_id, revision);
     INSERT OR REPLACE INTO meta(key, value)
        SELECT 'sessions_since',
               max(value, COALESCE((SELECT MAX(revision) FROM history), 0))
        FROM meta WHERE key = 'last_revision';",
    // 7: the cluster mode's compaction (issue 20). `log_base` is the
    // revision at which the cluster's log (etcd) last stored the
    // execution's state whole: a replica rebuilt after etcd compacted
    // reads the state back from there, so etcd may be compacted up to the
    // lowest `log_base` still needed and no further
    // (`cluster/compact.rs`). A replica's own bases are its chain's affair
    // and may differ, hence a column of its own. Unused by a standalone
    // daemon (it is each execution's create revision there). Databases of
    // the cluster mode from before stored their log's bases as their own
    // (the same rule on the same records), so `base` is the best start.
    "ALTER TABLE executions ADD COLUMN log_base INTEGER NOT NULL DEFAULT 0;
     UPDATE executions SET log_base = base;",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeKind;
    use crate::store::reader::{self, ListQuery};
    use prost::Message;
    use stigmer_proto::agentexecution::{
        AgentExecution, AgentExecutionSpec, AgentExecutionStatus, ExecutionPhase,
    };
    use stigmer_proto::apiresource::ApiResourceMetadata;

    fn execution(id: &str, session: &str, phase: ExecutionPhase, note: &str) -> AgentExecution {
        AgentExecution {
            api_version: "agentic.stigmer.ai/v1".into(),
            kind: "AgentExecution".into(),
            metadata: Some(ApiResourceMetadata {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(AgentExecutionSpec {
                session_id: session.into(),
                agent_id: "agent".into(),
                message: format!("do {note}"),
                ..Default::default()
            }),
            status: Some(AgentExecutionStatus {
                phase: phase as i32,
                error: note.into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_kinds_written_as_literals() {
        // Migration 2 writes the kind as a literal, migration 3 reads one.
        assert_eq!(ChangeKind::StatusUpdated as i64, 2);
        assert_eq!(ChangeKind::Deleted as i64, 3);
    }

    /// A version-1 database whose pruning removed the history row of an
    /// execution's latest state migrates with every state readable, equal to
    /// what version 1 stored, and the `data` column gone.
    #[test]
    fn version_1_database_migrates_with_every_state() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("v1.sqlite");
        let mut conn = Connection::open(&path).expect("open");
        // Version 1 exactly as it shipped: migrations are append-only, so
        // the first one is version 1's DDL.
        conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
        conn.pragma_update(None, "user_version", 1)
            .expect("v1 version");

        use ExecutionPhase::*;
        // (id, session, phase, its latest revision, state)
        let pruned_v1 = execution("aex-a", "s1", ExecutionInProgress, "pruned latest");
        let kept_v1 = execution("aex-b", "s1", ExecutionCompleted, "kept latest");
        let created_v1 = execution("aex-d", "s2", ExecutionPending, "only created");
        let latest = [(&pruned_v1, 2i64), (&kept_v1, 6), (&created_v1, 8)];
        for (e, revision) in latest {
            let meta = e
                .metadata
                .as_ref()
                .map(|m| m.id.clone())
                .unwrap_or_default();
            let session = e
                .spec
                .as_ref()
                .map(|s| s.session_id.clone())
                .unwrap_or_default();
            let phase = e.status.as_ref().map(|s| s.phase).unwrap_or(0);
            conn.execute(
                "INSERT INTO executions(id, session_id, phase, revision, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![meta, session, phase, revision, e.encode_to_vec()],
            )
            .expect("executions row");
        }
        // History after pruning at floor 3: aex-a's rows 1-2 and aex-b's
        // creation (3) are gone; aex-c was created (5) and deleted (7).
        let older_b = execution("aex-b", "s1", ExecutionInProgress, "older");
        let c = execution("aex-c", "s2", ExecutionPending, "deleted later");
        let history: [(i64, &str, ChangeKind, Option<Vec<u8>>); 5] = [
            (
                4,
                "aex-b",
                ChangeKind::StatusUpdated,
                Some(older_b.encode_to_vec()),
            ),
            (5, "aex-c", ChangeKind::Created, Some(c.encode_to_vec())),
            (
                6,
                "aex-b",
                ChangeKind::StatusUpdated,
                Some(kept_v1.encode_to_vec()),
            ),
            (7, "aex-c", ChangeKind::Deleted, None),
            (
                8,
                "aex-d",
                ChangeKind::Created,
                Some(created_v1.encode_to_vec()),
            ),
        ];
        for (revision, id, kind, data) in &history {
            conn.execute(
                "INSERT INTO history(revision, execution_id, kind, data) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![revision, id, *kind as i64, data],
            )
            .expect("history row");
        }
        conn.execute_batch(
            "UPDATE meta SET value = 8 WHERE key = 'last_revision';
             UPDATE meta SET value = 3 WHERE key = 'compacted_revision';",
        )
        .expect("meta");

        migrate(&mut conn).expect("migrate");

        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('executions')")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("columns");
        assert_eq!(
            columns,
            [
                "id",
                "session_id",
                "phase",
                "revision",
                "base",
                "base_bytes",
                "delta_bytes",
                "log_base"
            ]
        );
        // Version 7: the log's base starts at the replica's own.
        let mismatched: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM executions WHERE log_base != base",
                [],
                |r| r.get(0),
            )
            .expect("log_base");
        assert_eq!(mismatched, 0);
        // Version 4: keyed by id alone, with both list indexes rebuilt.
        let without_rowid: bool = conn
            .query_row(
                "SELECT wr FROM pragma_table_list WHERE name = 'executions'",
                [],
                |r| r.get(0),
            )
            .expect("table list");
        assert!(without_rowid);
        let mut indexes: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_list('executions') WHERE origin = 'c'")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("indexes");
        indexes.sort();
        assert_eq!(indexes, ["executions_by_phase", "executions_by_session"]);

        // Every state reads back unchanged, at its revision.
        for (e, revision) in latest {
            let id = e.metadata.as_ref().map(|m| m.id.as_str()).unwrap_or("");
            let stored = reader::get(&conn, id).expect("get").expect("exists");
            assert_eq!(&stored.execution, e, "{id}");
            assert_eq!(stored.revision, revision as u64, "{id}");
        }
        assert!(reader::get(&conn, "aex-c").expect("get").is_none());
        let all = reader::list(
            &conn,
            &ListQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .expect("list")
        .entries;
        assert_eq!(
            all,
            [pruned_v1.clone(), kept_v1.clone(), created_v1.clone()]
        );
        let s1 = reader::list(
            &conn,
            &ListQuery {
                session_id: Some("s1".into()),
                phase: Some(ExecutionCompleted as i32),
                limit: 10,
                ..Default::default()
            },
        )
        .expect("list")
        .entries;
        assert_eq!(s1, std::slice::from_ref(&kept_v1));

        // The pruned latest state was re-inserted (below the floor, as an
        // update); the history above the floor is as it was.
        let (kind, execution_id): (i64, String) = conn
            .query_row(
                "SELECT kind, execution_id FROM history WHERE revision = 2",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("re-inserted row");
        assert_eq!(kind, ChangeKind::StatusUpdated as i64);
        assert_eq!(execution_id, "aex-a");
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 6);
        let b = reader::history(&conn, "aex-b", 3, 10, usize::MAX).expect("history");
        let b: Vec<_> = b.into_iter().map(|r| (r.revision, r.execution)).collect();
        assert_eq!(b, [(4, Some(older_b)), (6, Some(kept_v1))]);
        assert_eq!(
            reader::deleted_revision(&conn, "aex-c").expect("deleted"),
            Some(7)
        );
        assert_eq!(reader::compacted_revision(&conn).expect("floor"), 3);

        // A second open changes nothing.
        migrate(&mut conn).expect("migrate again");
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(integrity, "ok");
    }

    /// Version 4 to 5 (deltas): every existing row is a whole state, so each
    /// execution's base is its latest row, with that row's size; reads work
    /// unchanged, and the next change is stored as a delta on that base.
    #[test]
    fn version_4_database_migrates_to_bases() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = Connection::open(dir.path().join("v4.sqlite")).expect("open");
        for (index, sql) in MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(sql).expect("an old migration");
            conn.pragma_update(None, "user_version", index as i64 + 1)
                .expect("version");
        }
        let e = execution(
            "aex-a",
            "s1",
            ExecutionPhase::ExecutionInProgress,
            "v4 state",
        );
        let data = e.encode_to_vec();
        conn.execute(
            "INSERT INTO history(revision, execution_id, kind, data, prev) VALUES (1, 'aex-a', 1, ?1, NULL)",
            [&data],
        )
        .expect("history");
        conn.execute(
            "INSERT INTO executions(id, session_id, phase, revision) VALUES ('aex-a', 's1', 2, 1)",
            [],
        )
        .expect("executions");
        migrate(&mut conn).expect("migrate to 5");
        let (base, base_bytes, delta_bytes): (i64, i64, i64) = conn
            .query_row(
                "SELECT base, base_bytes, delta_bytes FROM executions WHERE id = 'aex-a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("executions row");
        assert_eq!((base, base_bytes, delta_bytes), (1, data.len() as i64, 0));
        let stored = reader::get(&conn, "aex-a").expect("get").expect("exists");
        assert_eq!(stored.execution, e);
        assert_eq!(stored.revision, 1);
    }

    /// Version 5 to 6 (session streams): old tombstones keep their rows
    /// with no session, and `sessions_since` is the last revision then, so a
    /// session stream resumed from before it resyncs instead of missing an
    /// old delete; live executions are found through their session.
    #[test]
    fn version_5_database_migrates_to_session_tombstones() {
        use crate::store::selection;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = Connection::open(dir.path().join("v5.sqlite")).expect("open");
        for (index, sql) in MIGRATIONS[..5].iter().enumerate() {
            conn.execute_batch(sql).expect("an old migration");
            conn.pragma_update(None, "user_version", index as i64 + 1)
                .expect("version");
        }
        let e = execution("aex-a", "s1", ExecutionPhase::ExecutionInProgress, "v5");
        conn.execute(
            "INSERT INTO history(revision, execution_id, kind, data, prev) VALUES (1, 'aex-a', 1, ?1, NULL)",
            [&e.encode_to_vec()],
        )
        .expect("history");
        conn.execute(
            "INSERT INTO executions(id, session_id, phase, revision, base) VALUES ('aex-a', 's1', 2, 1, 1)",
            [],
        )
        .expect("executions");
        conn.execute_batch(
            "INSERT INTO history(revision, execution_id, kind, data, prev) VALUES (7, 'aex-b', 3, NULL, NULL);
             INSERT INTO tombstones(execution_id, revision) VALUES ('aex-b', 7);
             UPDATE meta SET value = 7 WHERE key = 'last_revision';",
        )
        .expect("a deleted execution");
        migrate(&mut conn).expect("migrate to 6");
        assert_eq!(selection::sessions_since(&conn).expect("read"), 7);
        let old: Option<String> = conn
            .query_row(
                "SELECT session_id FROM tombstones WHERE execution_id = 'aex-b'",
                [],
                |r| r.get(0),
            )
            .expect("tombstone kept");
        assert_eq!(old, None);
        assert_eq!(
            selection::session_revisions(&conn, "s1", 0).expect("walk"),
            vec![1]
        );
        let listed =
            selection::list_at(&conn, &selection::Scope::Session("s1".into())).expect("list");
        assert_eq!(listed.revision, 7);
        assert_eq!(listed.entries, vec![("aex-a".to_string(), 1)]);
    }
}
