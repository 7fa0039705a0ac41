//! The cluster mode (issue 20, docs/design/cluster.md): etcd is the log,
//! this daemon's SQLite a replica of it. Writes become compare-and-swap
//! transactions in etcd ([`propose`]); one prefix watch feeds every change,
//! this daemon's own included, to the writer thread at etcd's revision
//! ([`replica`]), which persists and broadcasts it as it does a local
//! write. Reads and streams are served from the replica unchanged.
//! etcd's history is kept short by every daemon's compactor
//! ([`compact`]); a replica that etcd compacted past is rebuilt from a
//! read at one revision ([`rebuild`]).

pub(crate) mod compact;
pub(crate) mod propose;
pub(crate) mod rebuild;
pub(crate) mod replica;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Under `--etcd-prefix`, each execution's key: `<prefix>/e/<id>`.
const EXECUTIONS: &str = "/e/";

/// How long a proposal waits for this daemon's replica to apply its own
/// commit (or a conflicting one) before answering UNAVAILABLE.
pub(crate) const APPLY_WAIT: Duration = Duration::from_secs(5);

/// The largest state the cluster mode accepts. etcd refuses a request over
/// `--max-request-bytes` (1.5 MiB by default), and a change stored whole
/// carries the state and, after a replacing operation, that operation
/// (up to the state's size again): 640 KiB keeps such a record, its key
/// and the transaction's envelope under etcd's default. A larger state is
/// refused by the pipeline (RESOURCE_EXHAUSTED naming the limit) before
/// anything is proposed.
pub(crate) const MAX_STATE_BYTES: usize = 640 * 1024;

/// The largest encoded state accepted: `frame_limited` (what fits in a
/// frame), and in the cluster mode no more than [`MAX_STATE_BYTES`].
pub(crate) fn max_execution_bytes(frame_limited: usize, cluster: bool) -> usize {
    if cluster {
        frame_limited.min(MAX_STATE_BYTES)
    } else {
        frame_limited
    }
}

/// The connection to the cluster, shared by the proposals and the replica.
pub(crate) struct Cluster {
    pub(crate) client: stigmer_etcd::Client,
    prefix: String,
    /// The last revision the replica applied (committed and broadcast).
    applied: watch::Sender<u64>,
    /// The last revision handed to the writer thread.
    submitted: std::sync::atomic::AtomicU64,
    /// The newest etcd revision heard of (for the replica's lag).
    heard: std::sync::atomic::AtomicU64,
    /// The revision this daemon last compacted etcd to (or found it
    /// compacted to), for the metrics.
    compacted: std::sync::atomic::AtomicU64,
    /// Times the replica was rebuilt after etcd compacted past it.
    rebuilds: std::sync::atomic::AtomicU64,
    /// Proposals of one execution take turns (`propose.rs`).
    turns: propose::Turns,
}

impl Cluster {
    /// `client` to the cluster, keys under `prefix`, the replica at
    /// `applied` (its last revision).
    pub(crate) fn new(client: stigmer_etcd::Client, prefix: &str, applied: u64) -> Arc<Cluster> {
        Arc::new(Cluster {
            client,
            prefix: prefix.trim_end_matches('/').to_owned(),
            applied: watch::Sender::new(applied),
            submitted: std::sync::atomic::AtomicU64::new(applied),
            heard: std::sync::atomic::AtomicU64::new(applied),
            compacted: std::sync::atomic::AtomicU64::new(0),
            rebuilds: std::sync::atomic::AtomicU64::new(0),
            turns: propose::Turns::default(),
        })
    }

    /// The key of execution `id`.
    pub(crate) fn key(&self, id: &str) -> String {
        format!("{}{EXECUTIONS}{id}", self.prefix)
    }

    /// The prefix of every execution's key (what the replica watches).
    pub(crate) fn executions_prefix(&self) -> String {
        format!("{}{EXECUTIONS}", self.prefix)
    }

    /// The execution id of `key`, if it is one of ours.
    pub(crate) fn id_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(EXECUTIONS)
    }

    /// The last revision the replica applied.
    pub(crate) fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The newest etcd revision this daemon has heard of.
    pub(crate) fn heard(&self) -> u64 {
        self.heard.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Notes that etcd has reached `revision` (an event, a progress
    /// notification, a write's answer).
    pub(crate) fn hear(&self, revision: u64) {
        self.heard
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
    }

    /// The revision this daemon last compacted etcd to (0: not yet).
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted.load(std::sync::atomic::Ordering::Acquire)
    }

    fn note_compacted(&self, revision: u64) {
        self.compacted
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
    }

    /// Times the replica was rebuilt after etcd compacted past it.
    pub(crate) fn rebuilds(&self) -> u64 {
        self.rebuilds.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The last revision the replica handed to the writer thread.
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted.load(std::sync::atomic::Ordering::Acquire)
    }

    fn mark_submitted(&self, revision: u64) {
        self.submitted
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
    }

    /// Records that the replica applied everything up to `revision`.
    pub(crate) fn mark_applied(&self, revision: u64) {
        self.applied.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    /// Makes sure this replica has what etcd has of execution `id` (one
    /// read from etcd, bounded by the client's request timeout; a wait,
    /// bounded by [`APPLY_WAIT`], when etcd is ahead): a client that learned
    /// of a change through another daemon then finds it here. False when
    /// etcd could not be read or the replica did not catch up in time.
    pub(crate) async fn catch_up_with(&self, id: &str) -> bool {
        // One etcd read and a wait, bounded (`catch_up`).
        let caught = self
            .catch_up(Some(id), None, Within::Wait(APPLY_WAIT))
            .await;
        matches!(caught, CatchUp::Reached)
    }

    /// Waits until the replica applied `revision`, at most [`APPLY_WAIT`].
    pub(crate) async fn wait_applied(&self, revision: u64) -> bool {
        // Bounded by `APPLY_WAIT` (`wait_applied_until`).
        self.wait_applied_until(revision, tokio::time::Instant::now() + APPLY_WAIT)
            .await
    }

    /// Waits until the replica applied `revision`, at most until
    /// `deadline`: true when it did.
    async fn wait_applied_until(&self, revision: u64, deadline: tokio::time::Instant) -> bool {
        let mut seen = self.applied.subscribe();
        // Bounded: a replica that stalls (etcd gone, a diverged record)
        // answers UNAVAILABLE rather than hanging the caller.
        tokio::time::timeout_at(deadline, seen.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The one way this replica catches up with etcd, for the proposals
    /// ([`Cluster::catch_up_with`]) and the reads ([`Cluster::before_read`]):
    /// one read from etcd of execution `execution`'s key (with `None`, a key
    /// that never exists, for the header's revision), then a wait until the
    /// replica has applied that key's last change and `revision`, bounded
    /// as `within` says.
    ///
    /// A `revision` past etcd's own is [`CatchUp::PastEtcd`] at once,
    /// without a wait. When etcd cannot be read (in time), only `revision`
    /// is left to wait for, and the answer is [`CatchUp::Short`] whatever
    /// the wait gives.
    async fn catch_up(
        &self,
        execution: Option<&str>,
        revision: Option<u64>,
        within: Within,
    ) -> CatchUp {
        let key = execution.map_or_else(|| self.executions_prefix(), |id| self.key(id));
        let range = self.client.range(stigmer_etcd::Range::key(key));
        // One read from etcd, bounded by the client's own request timeout
        // and, with `Within::Total`, by the deadline of the whole.
        let (read, deadline) = match within {
            Within::Total(bound) => {
                let deadline = tokio::time::Instant::now() + bound;
                let read = match tokio::time::timeout_at(deadline, range).await {
                    Ok(read) => read.map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                };
                (read, deadline)
            }
            Within::Wait(bound) => {
                let read = range.await.map_err(|e| e.to_string());
                (read, tokio::time::Instant::now() + bound)
            }
        };
        let mut target = revision.unwrap_or(0);
        let read = match read {
            Ok(found) => {
                let newest = found.header.revision.max(0) as u64;
                self.hear(newest);
                if revision.is_some_and(|r| r > newest) {
                    return CatchUp::PastEtcd { newest };
                }
                if let Some(kv) = found.kvs.first() {
                    target = target.max(kv.mod_revision.max(0) as u64);
                }
                true
            }
            Err(err) => {
                tracing::debug!(%err, "cannot read etcd to catch up with it");
                false
            }
        };
        // Waits for the replica to apply `target`, until the deadline; a
        // replica that stalls (etcd gone) leaves the caller to decide.
        let reached = target <= self.applied() || self.wait_applied_until(target, deadline).await;
        if read && reached {
            CatchUp::Reached
        } else {
            CatchUp::Short
        }
    }

    /// The read-after-write rule of the cluster mode (docs/OPERATIONS.md,
    /// "More than one machine"), run before every read that names an
    /// execution (`get`, a one-execution `subscribe`) or a revision (a
    /// `subscribe` of any kind with `from_revision`), so that what a client
    /// learned through another daemon (an id, a revision) is found here:
    ///
    /// - one read from etcd (the execution's key; for a revision alone, a
    ///   key that never exists, for the header), then a wait until this
    ///   replica has applied the key's last change and the revision named,
    ///   all of it bounded by [`APPLY_WAIT`];
    /// - a revision past etcd's own is `OUT_OF_RANGE` at once (it was never
    ///   committed anywhere), as a revision past the last one is on a
    ///   daemon alone;
    /// - when etcd cannot be read or the replica does not catch up in time,
    ///   the read is answered from the replica as it stands (reads go on
    ///   while etcd is away), except that a revision the replica has not
    ///   reached is `UNAVAILABLE`: a stream resumed from it would skip what
    ///   lies between, so the client retries (here or where it got it).
    pub(crate) async fn before_read(
        &self,
        execution: Option<&str>,
        revision: Option<u64>,
    ) -> Result<(), crate::protocol::ApiError> {
        let ahead = revision.filter(|r| *r > self.applied());
        if execution.is_none() && ahead.is_none() {
            return Ok(());
        }
        // One etcd read and a wait, `APPLY_WAIT` in all (`catch_up`); what
        // it found decides only a revision past etcd's, the rest is below.
        if let CatchUp::PastEtcd { newest } = self
            .catch_up(execution, ahead, Within::Total(APPLY_WAIT))
            .await
        {
            let r = ahead.unwrap_or(0);
            return Err(crate::protocol::ApiError::out_of_range(format!(
                "from_revision {r} is ahead of the cluster's last revision {newest}"
            )));
        }
        match ahead {
            Some(r) if r > self.applied() => Err(crate::protocol::ApiError::unavailable(format!(
                "from_revision {r} is ahead of this daemon's replica (at revision {}), which did \
                 not reach it within {} s (etcd unreachable or slow); retry, here or through \
                 the daemon that gave that revision",
                self.applied(),
                APPLY_WAIT.as_secs()
            ))),
            _ => Ok(()),
        }
    }
}

/// How long [`Cluster::catch_up`] may take.
#[derive(Clone, Copy, Debug)]
enum Within {
    /// The etcd read and the wait together, from the start: a client's read
    /// waits for all of it, so it is bounded as a whole.
    Total(Duration),
    /// The wait alone, from etcd's answer (the read is bounded by the
    /// client's own request timeout): a proposal asks etcd only after a
    /// refusal, and retries once the replica caught up.
    Wait(Duration),
}

/// What [`Cluster::catch_up`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CatchUp {
    /// etcd was read, and the replica has applied what it named.
    Reached,
    /// etcd could not be read in time, or the replica did not apply what
    /// etcd named in time.
    Short,
    /// The revision to reach is past etcd's own (`newest`): it was never
    /// committed anywhere.
    PastEtcd { newest: u64 },
}
