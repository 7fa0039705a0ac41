//! One batch transaction: every job's pipeline, the revision counter and
//! pruning, then COMMIT, as one `BEGIN IMMEDIATE ... COMMIT`.
//!
//! A job's logical refusal (not found, terminal phase) fails that job alone;
//! an SQLite error fails the whole batch (it rolls back, and every caller is
//! told).

use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::Connection;

use super::{JobResult, Outcome};
use crate::model::Change;
use crate::pipeline::{Applied, Write};
use crate::protocol::{ApiError, Code};
use crate::store::cache::LatestCache;
use crate::store::prune::prune;
use crate::store::{Immediate, Txn};

/// Where a batch starts and the bounds it runs under.
#[derive(Clone, Copy, Debug)]
pub(super) struct Batch {
    /// The revision the batch's first change takes.
    pub(super) first_revision: u64,
    /// The compaction floor before the batch.
    pub(super) compacted: u64,
    /// The largest encoded execution accepted.
    pub(super) max_execution_bytes: usize,
    /// `--history-retention`, for pruning.
    pub(super) history_retention: u64,
}

impl Batch {
    /// The jobs' view of the transaction opened on `conn`.
    fn txn<'c>(&self, conn: &'c Connection, cache: &'c mut LatestCache) -> Txn<'c> {
        Txn::new(
            conn,
            self.first_revision,
            self.max_execution_bytes,
            self.compacted,
            cache,
        )
    }
}

/// A committed batch: each job's result, in order, with the last revision
/// and the compaction floor as committed.
pub(super) struct Committed {
    pub(super) results: Vec<JobResult>,
    pub(super) last: u64,
    pub(super) compacted: u64,
}

/// Runs `writes` in one transaction and commits it (see the module docs).
///
/// When it fails, SQLite rolled back every job's writes, so `cache` (which
/// the jobs changed as they wrote) is cleared: the next loads read the
/// committed states from the database.
pub(super) fn transact(
    conn: &mut Connection,
    cache: &mut LatestCache,
    batch: Batch,
    writes: Vec<Write>,
) -> Result<Committed, ApiError> {
    let outcome = (|| {
        let tx = Immediate::begin(conn)?;
        let mut txn = batch.txn(tx.conn, cache);
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            // Pipeline steps 2-4 (load, build, persist) of this write.
            match write.apply(&mut txn, SystemTime::now()) {
                Ok(Applied::Change(change)) => {
                    results.push(Ok(Outcome::Committed(Arc::new(change))))
                }
                Ok(Applied::Unchanged {
                    execution_id,
                    revision,
                }) => results.push(Ok(Outcome::Unchanged {
                    execution_id,
                    revision,
                })),
                Err(err) if is_storage_failure(&err) => return Err(err),
                Err(err) => results.push(Err(err)),
            }
        }
        let last = txn.next_revision() - 1;
        let mut compacted = batch.compacted;
        if last >= batch.first_revision {
            // No counter row is written: the history's largest revision is
            // the last one (`store::load_revisions`), one page fewer per
            // commit.
            compacted = prune(tx.conn, last, compacted, batch.history_retention)?;
        }
        tx.commit()?;
        Ok(Committed {
            results,
            last,
            compacted,
        })
    })();
    if outcome.is_err() {
        cache.clear();
    }
    outcome
}

/// A write run to learn what it would change, then rolled back: what the
/// cluster mode proposes to its log (docs/design/cluster.md, "Writes").
pub(crate) struct Prepared {
    /// The change as this store would commit it (its revision is only a
    /// placeholder: the log gives the real one).
    pub(crate) change: Change,
    /// The revision of the execution's last change before it (its key's
    /// `mod_revision` in the log); `None` for an id never used.
    pub(crate) head: Option<u64>,
}

/// What preparing a write found.
// Made once per proposal and moved straight to its caller: boxing the
// large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum PrepareOutcome {
    /// A change to propose.
    Change(Prepared),
    /// Nothing to write (an append already applied): acknowledge as is.
    Unchanged {
        execution_id: Arc<str>,
        revision: u64,
    },
}

/// Runs `write` in a transaction that is rolled back: the same pipeline,
/// rules and limits as a commit, and nothing written. The cache, which the
/// pipeline fills as it writes, forgets the execution afterwards.
pub(super) fn prepare(
    conn: &mut Connection,
    cache: &mut LatestCache,
    batch: Batch,
    write: Write,
) -> Result<PrepareOutcome, ApiError> {
    let known_id = write.execution_id().map(str::to_owned);
    // The cached state the pipeline takes, put back after the rollback:
    // the replica applies this very change next, and without it would
    // rebuild the state from SQLite, replaying every delta since its base
    // (profiled: most of the cluster mode's CPU per append, growing with
    // the transcript). Sharing it costs the pipeline one copy of the state.
    let saved = known_id.as_deref().and_then(|id| cache.peek(id));
    let outcome = (|| {
        let tx = Immediate::begin(conn)?;
        let mut txn = batch.txn(tx.conn, cache);
        let head = match &known_id {
            Some(id) => txn.head(id)?,
            None => None,
        };
        let applied = write.apply(&mut txn, SystemTime::now());
        // Dropped uncommitted: rolled back.
        drop(tx);
        Ok::<_, ApiError>(match applied? {
            Applied::Change(change) => PrepareOutcome::Change(Prepared { change, head }),
            Applied::Unchanged {
                execution_id,
                revision,
            } => PrepareOutcome::Unchanged {
                execution_id,
                revision,
            },
        })
    })();
    // The pipeline may have cached the state it would have written: the
    // state as committed goes back instead.
    match &outcome {
        Ok(PrepareOutcome::Change(p)) => cache.remove(&p.change.execution_id),
        _ => {
            if let Some(id) = &known_id {
                cache.remove(id);
            }
        }
    }
    if let (Some(id), Some((execution, revision, chain, encoded_len))) = (&known_id, saved) {
        cache.put(id, execution, revision, chain, encoded_len);
    }
    outcome
}

/// Storage failures abort the batch; logical refusals do not.
fn is_storage_failure(err: &ApiError) -> bool {
    matches!(err.code, Code::Unavailable | Code::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeKind;
    use crate::store::prune::PRUNE_MAX_REVISIONS;
    use crate::store::{load_revisions, reader, schema};
    use crate::writer::LATEST_CACHE_BYTES;
    use std::sync::Mutex;
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

        fn batch(&self) -> Batch {
            Batch {
                first_revision: self.last + 1,
                compacted: self.compacted,
                max_execution_bytes: 1 << 20,
                history_retention: self.retention,
            }
        }

        /// Commits one batch of jobs, as the writer thread does.
        fn commit(&mut self, jobs: Vec<Write>) -> Vec<JobResult> {
            let batch = self.batch();
            let committed = transact(&mut self.conn, &mut self.cache, batch, jobs).expect("commit");
            self.last = committed.last;
            self.compacted = committed.compacted;
            committed.results
        }

        /// What must be in the history: every revision above the floor,
        /// and below it each execution's chain from its base to its head.
        fn expected_kept(&self) -> Vec<u64> {
            let mut kept: Vec<u64> = (self.compacted + 1..=self.last).collect();
            let heads: Vec<(i64, i64)> = self
                .conn
                .prepare("SELECT revision, base FROM executions")
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .expect("executions");
            for (head, base) in heads {
                let mut next = Some(head);
                while let Some(revision) = next.filter(|r| *r >= base) {
                    if revision as u64 <= self.compacted {
                        kept.push(revision as u64);
                    }
                    next = self
                        .conn
                        .query_row(
                            "SELECT prev FROM history WHERE revision = ?1",
                            [revision],
                            |r| r.get(0),
                        )
                        .expect("a row of a chain");
                }
            }
            kept.sort_unstable();
            kept.dedup();
            kept
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

    fn new_execution(id: &str) -> Write {
        Write::Create(Box::new(AgentExecution {
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
        }))
    }

    fn progress(id: &str, note: &str) -> Write {
        Write::UpdateStatus(Box::new(AgentExecutionUpdateStatusInput {
            execution_id: id.into(),
            status: Some(AgentExecutionStatus {
                phase: ExecutionPhase::ExecutionInProgress as i32,
                error: note.into(),
                ..Default::default()
            }),
        }))
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
        db.commit(vec![Write::Delete("aex-b".into())]); // 8
        assert_eq!(reader::chain(&db.conn, "aex-b", 4).expect("chain"), [5, 8]);
        assert_eq!(
            reader::deleted_revision(&db.conn, "aex-b").expect("deleted"),
            Some(8)
        );
        assert_eq!(load_revisions(&db.conn).expect("revisions"), (8, 0));
    }

    /// Preparing a write (the cluster mode's proposal) runs its pipeline and
    /// writes nothing: the change it would make, the execution's head
    /// before it, and the store (and the writer's cache) as they were.
    #[test]
    fn prepare_runs_the_pipeline_and_writes_nothing() {
        let mut db = Db::new(1000);
        db.commit(vec![new_execution("aex-a")]); // 1
        db.commit(vec![progress("aex-a", "a1")]); // 2
        let history = db.history_revisions();
        let prepared = |db: &mut Db, write: Write| {
            let batch = db.batch();
            match prepare(&mut db.conn, &mut db.cache, batch, write).expect("prepare") {
                PrepareOutcome::Change(p) => p,
                PrepareOutcome::Unchanged { .. } => panic!("a change was expected"),
            }
        };
        let p = prepared(&mut db, progress("aex-a", "a2"));
        assert_eq!(p.head, Some(2));
        assert_eq!(p.change.kind, ChangeKind::StatusUpdated);
        assert_eq!(p.change.delta.as_ref().map(|d| d.prev_revision), Some(2));
        let state = p.change.state.as_ref().expect("a state");
        assert_eq!(
            state.execution.status.as_ref().map(|s| s.error.as_str()),
            Some("a2")
        );
        // Nothing written, and the next load is not served a state that
        // was never committed; the committed one stays cached (the replica
        // applies the change next and must not rebuild it from SQLite).
        assert_eq!(db.history_revisions(), history);
        assert_eq!(note(&db, "aex-a"), ("a1".into(), 2));
        let cached = db.cache.peek("aex-a").expect("still cached");
        assert_eq!(cached.1, 2);
        assert_eq!(
            cached.0.status.as_ref().map(|s| s.error.as_str()),
            Some("a1")
        );
        db.commit(vec![progress("aex-a", "a3")]); // 3
        assert_eq!(note(&db, "aex-a"), ("a3".into(), 3));
        // A delete's head is the execution's revision; after it, the
        // tombstone's is (a recreate must find the key at that revision).
        let p = prepared(&mut db, Write::Delete("aex-a".into()));
        assert_eq!((p.head, p.change.kind), (Some(3), ChangeKind::Deleted));
        assert!(reader::get(&db.conn, "aex-a").expect("get").is_some());
        db.commit(vec![Write::Delete("aex-a".into())]); // 4
        let p = prepared(&mut db, new_execution("aex-a"));
        assert_eq!((p.head, p.change.kind), (Some(4), ChangeKind::Created));
        let p = prepared(&mut db, new_execution("aex-new"));
        assert_eq!(p.head, None);
        // A refusal is the pipeline's own.
        let batch = db.batch();
        let err = prepare(&mut db.conn, &mut db.cache, batch, progress("aex-a", "x"))
            .err()
            .expect("not found");
        assert_eq!(err.code, Code::NotFound);
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

    /// Pruning never deletes a row an execution's latest state is rebuilt
    /// from (its base and the deltas after it); rows of a chain below the
    /// floor go once a new base or a delete no longer needs them; above the
    /// floor the history stays complete for catch-up.
    #[test]
    fn pruning_keeps_the_chains_latest_states_are_rebuilt_from() {
        let mut db = Db::new(4);
        db.commit(vec![new_execution("aex-idle"), new_execution("aex-busy")]);
        db.commit(vec![progress("aex-idle", "idle once")]); // 3
        for i in 0..20 {
            db.commit(vec![progress("aex-busy", &format!("busy {i}"))]);
        }
        assert_eq!(db.last, 23);
        assert_eq!(db.compacted, 19);
        // Below the floor only the chains of the latest states are left.
        assert_eq!(note(&db, "aex-idle"), ("idle once".into(), 3));
        assert_eq!(note(&db, "aex-busy"), ("busy 19".into(), 23));
        assert_eq!(db.history_revisions(), db.expected_kept());
        assert!(
            db.history_revisions().contains(&3),
            "aex-idle's latest change"
        );
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

        // aex-idle moves on; more pruning; every state is still whole.
        db.commit(vec![progress("aex-idle", "idle twice")]); // 24
        assert_eq!(note(&db, "aex-idle"), ("idle twice".into(), 24));
        assert_eq!(db.history_revisions(), db.expected_kept());
        let results = db.commit(vec![progress("aex-idle", "a"), progress("aex-idle", "b")]);
        assert!(results.iter().all(Result::is_ok));
        for i in 0..6 {
            db.commit(vec![progress("aex-busy", &format!("later {i}"))]);
        }
        assert_eq!((db.last, db.compacted), (32, 28));
        assert_eq!(note(&db, "aex-idle"), ("b".into(), 26));
        assert_eq!(db.history_revisions(), db.expected_kept());

        // A terminal change is stored whole (a new base): aex-idle's old
        // chain, below the floor, goes at once.
        db.commit(vec![finish("aex-idle")]); // 33
        let idle_chain_below_floor: Vec<u64> = db
            .history_revisions()
            .into_iter()
            .filter(|r| *r <= db.compacted && [1, 3, 24, 25, 26].contains(r))
            .collect();
        assert!(
            idle_chain_below_floor.is_empty(),
            "{idle_chain_below_floor:?}"
        );
        assert_eq!(db.history_revisions(), db.expected_kept());

        // A delete removes the chain below the floor; its delete stays until
        // pruned like any change.
        db.commit(vec![Write::Delete("aex-busy".into())]); // 34
        assert!(reader::get(&db.conn, "aex-busy").expect("get").is_none());
        assert_eq!(
            reader::deleted_revision(&db.conn, "aex-busy").expect("deleted"),
            Some(34)
        );
        assert!(db
            .history_revisions()
            .iter()
            .all(|r| *r > db.compacted || *r == 33));
        assert_eq!(db.history_revisions(), db.expected_kept());
        let integrity: String = db
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(integrity, "ok");
    }

    fn finish(id: &str) -> Write {
        Write::UpdateStatus(Box::new(AgentExecutionUpdateStatusInput {
            execution_id: id.into(),
            status: Some(AgentExecutionStatus {
                phase: ExecutionPhase::ExecutionCompleted as i32,
                ..Default::default()
            }),
        }))
    }

    /// A job that reports what `Txn::load` gives for `id` (and writes nothing).
    fn peek(id: &'static str, seen: Arc<Mutex<Option<(String, u64)>>>) -> Write {
        Write::Test(Box::new(move |txn| {
            let stored = txn.load(id)?.expect("exists");
            let error = stored.execution.status.map(|s| s.error).unwrap_or_default();
            *seen.lock().expect("lock") = Some((error, stored.revision));
            Err(ApiError::not_found("peek writes nothing"))
        }))
    }

    /// A batch that fails rolls back every job's writes, in SQLite and in
    /// the writer's cache: what the next jobs load is the committed state.
    #[test]
    fn failed_batch_leaves_the_committed_states() {
        let mut db = Db::new(100);
        db.commit(vec![new_execution("aex-x")]);
        db.commit(vec![progress("aex-x", "committed")]);
        let failing = Write::Test(Box::new(|_txn| Err(ApiError::unavailable("disk full"))));
        let batch = db.batch();
        let outcome = transact(
            &mut db.conn,
            &mut db.cache,
            batch,
            vec![progress("aex-x", "rolled back"), failing],
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
                    5 => vec![Write::Delete(id.into())],
                    _ => vec![
                        progress(id, &format!("u{i}")),
                        progress(id, &format!("v{i}")),
                    ],
                };
                let results = db.commit(jobs);
                let outcomes: Vec<String> = results
                    .into_iter()
                    .map(|r| match r {
                        Ok(Outcome::Committed(c)) => format!("ok {}", c.revision),
                        Ok(Outcome::Unchanged { revision, .. }) => format!("same {revision}"),
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
