//! What the cluster mode (issue 20, docs/design/cluster.md) needs of a
//! replica's store beyond the write pipelines: where its executions stand
//! (`heads`), how far etcd may be compacted without losing a state this
//! replica's log still needs (`compaction_bound`), and the rebuild that
//! replaces the replica with what etcd holds after etcd compacted past it
//! (`replace`).
//!
//! The rebuild keeps the store's invariants (docs/ARCHITECTURE.md): after
//! it the compaction floor is etcd's revision `R` of the read, and the
//! history at or below the floor is exactly the chains the executions'
//! latest states are rebuilt from, as pruning leaves it. Every stream then
//! finds its position below the floor and resyncs: nothing is skipped
//! silently.

use std::collections::{HashMap, HashSet};

use prost::Message;
use rusqlite::Connection;
use stigmer_proto::agentexecution::AgentExecution;

use super::txn::{insert_whole, Whole};
use super::Immediate;
use crate::model::ChangeKind;
use crate::protocol::ApiError;

/// Every execution's latest revision, by id.
pub(crate) fn heads(conn: &Connection) -> Result<HashMap<String, u64>, ApiError> {
    let mut stmt = conn.prepare("SELECT id, revision FROM executions")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest revision etcd may be compacted to without removing a state
/// that an execution's latest change is rebuilt from: the lowest
/// `log_base` among executions changed since their log base (`None` when
/// every execution's latest change is stored whole, where any revision
/// will do, since compaction keeps each key's latest version). One scan of
/// `executions`, on a read thread, once per `--etcd-compaction-interval`.
pub(crate) fn compaction_bound(conn: &Connection) -> Result<Option<u64>, ApiError> {
    let bound: Option<i64> = conn.query_row(
        "SELECT MIN(log_base) FROM executions WHERE log_base < revision",
        [],
        |r| r.get(0),
    )?;
    Ok(bound.map(|b| b as u64))
}

/// An execution as etcd holds it at the rebuild's revision.
pub(crate) struct Install {
    pub(crate) execution: AgentExecution,
    /// Its latest change's revision.
    pub(crate) revision: u64,
    /// Where etcd last stored it whole.
    pub(crate) log_base: u64,
}

/// The replica as etcd holds it at `revision` (every execution's key read
/// at that one revision).
pub(crate) struct Rebuild {
    pub(crate) revision: u64,
    /// Executions the replica already holds at the revision etcd has.
    pub(crate) keep: HashSet<String>,
    /// Executions it lacks or holds at another revision.
    pub(crate) install: Vec<Install>,
}

/// Replaces the replica with `rebuild`, in one transaction: executions
/// neither kept nor installed (deleted in etcd meanwhile) go; installed
/// ones are stored whole at their revision (each its own base); history
/// rows outside the kept chains and every tombstone go; the compaction
/// floor and the last revision become the rebuild's revision. Readers see
/// the old replica or the new one, never a mix.
pub(crate) fn replace(conn: &Connection, rebuild: &Rebuild) -> Result<(), ApiError> {
    let tx = Immediate::begin(conn)?;
    let local: Vec<String> = heads(conn)?.into_keys().collect();
    for id in local {
        if !rebuild.keep.contains(&id) {
            conn.prepare_cached("DELETE FROM executions WHERE id = ?1")?
                .execute([&id])?;
        }
    }
    // Pruning's rule, over the whole history: only the chains of kept
    // executions stay (every row is at or below the new floor).
    conn.execute(
        "DELETE FROM history WHERE NOT EXISTS (SELECT 1 FROM executions e
             WHERE e.id = history.execution_id AND history.revision >= e.base)",
        [],
    )?;
    conn.execute("DELETE FROM tombstones", [])?;
    for install in &rebuild.install {
        let Some(id) = install.execution.metadata.as_ref().map(|m| m.id.as_str()) else {
            continue;
        };
        if rebuild.keep.contains(id) {
            continue;
        }
        let data = install.execution.encode_to_vec();
        // Stored whole at its revision, its own base (`Txn::insert`'s rows).
        insert_whole(
            conn,
            Whole {
                id,
                execution: &install.execution,
                revision: install.revision,
                kind: ChangeKind::StatusUpdated,
                data: &data,
                log_base: install.log_base,
            },
        )?;
    }
    conn.prepare_cached(
        "UPDATE meta SET value = ?1 WHERE key IN ('compacted_revision', 'last_revision')",
    )?
    .execute([rebuild.revision as i64])?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{reader, schema};
    use stigmer_proto::agentexecution::{AgentExecutionSpec, AgentExecutionStatus};
    use stigmer_proto::apiresource::ApiResourceMetadata;

    fn execution(id: &str, session: &str, error: &str) -> AgentExecution {
        AgentExecution {
            metadata: Some(ApiResourceMetadata {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(AgentExecutionSpec {
                session_id: session.into(),
                ..Default::default()
            }),
            status: Some(AgentExecutionStatus {
                error: error.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A store with aex-a at 3 (a delta on its create at 1), aex-b at 2
    /// (its create), and aex-c's delete at 4 (its earlier rows pruned).
    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        schema::migrate(&mut conn).expect("migrate");
        let a = execution("aex-a", "s1", "a").encode_to_vec();
        let b = execution("aex-b", "s1", "b").encode_to_vec();
        conn.execute_batch(&format!(
            "INSERT INTO history(revision, execution_id, kind, data, prev, ops)
               VALUES (1, 'aex-a', 1, x'{}', NULL, NULL),
                      (2, 'aex-b', 1, x'{}', NULL, NULL),
                      (3, 'aex-a', 2, NULL, 1, x''),
                      (4, 'aex-c', 3, NULL, NULL, NULL);
             INSERT INTO executions(id, session_id, phase, revision, base, base_bytes, delta_bytes, log_base)
               VALUES ('aex-a', 's1', 0, 3, 1, 1, 0, 1),
                      ('aex-b', 's1', 0, 2, 2, 1, 0, 2);
             INSERT INTO tombstones(execution_id, revision, session_id) VALUES ('aex-c', 4, 's1');",
            hex(&a),
            hex(&b)
        ))
        .expect("rows");
        conn
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_bound_is_the_lowest_log_base_of_a_changed_execution() {
        let conn = store();
        assert_eq!(compaction_bound(&conn).expect("bound"), Some(1));
        conn.execute("UPDATE executions SET log_base = 3 WHERE id = 'aex-a'", [])
            .expect("rebase");
        assert_eq!(compaction_bound(&conn).expect("bound"), None);
    }

    #[test]
    fn a_rebuild_keeps_installs_and_drops_the_rest_under_one_floor() {
        let conn = store();
        let rebuild = Rebuild {
            revision: 20,
            keep: HashSet::from(["aex-a".to_owned()]),
            install: vec![Install {
                execution: execution("aex-d", "s2", "d"),
                revision: 17,
                log_base: 9,
            }],
        };
        replace(&conn, &rebuild).expect("replace");
        assert_eq!(
            heads(&conn).expect("heads"),
            HashMap::from([("aex-a".to_owned(), 3), ("aex-d".to_owned(), 17)])
        );
        // aex-a's chain stays; aex-b's create and aex-c's delete go.
        let mut revisions: Vec<i64> = conn
            .prepare("SELECT revision FROM history ORDER BY revision")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        revisions.sort();
        assert_eq!(revisions, vec![1, 3, 17]);
        let tombstones: i64 = conn
            .query_row("SELECT COUNT(*) FROM tombstones", [], |r| r.get(0))
            .expect("count");
        assert_eq!(tombstones, 0);
        assert_eq!(reader::compacted_revision(&conn).expect("floor"), 20);
        let stored = reader::get(&conn, "aex-d").expect("get").expect("aex-d");
        assert_eq!(stored.revision, 17);
        assert_eq!(stored.execution, execution("aex-d", "s2", "d"));
        assert_eq!(compaction_bound(&conn).expect("bound"), Some(1));
    }
}
