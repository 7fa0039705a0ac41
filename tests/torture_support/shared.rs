//! The state the workload's tasks share: the record (behind a lock), the
//! counters of the figures line, and the signals that stop the writers and
//! subscribers and tell them of a restart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::record::{Fact, Record};
use super::state::Entry;
use super::wire::{Wire, STUCK};

/// State shared by the workload's tasks.
pub struct Shared {
    /// The (first) daemon's socket: the one the killer restarts.
    pub socket: PathBuf,
    /// Every daemon's socket: connections take turns over them (the
    /// cluster mode's run spreads its clients over two daemons).
    pub sockets: Vec<PathBuf>,
    next: AtomicUsize,
    pub record: Mutex<Record>,
    /// Count of acknowledged writes (waited on by the killer and the ender).
    pub acked: watch::Sender<u64>,
    /// Bumped after each restart of the daemon; clients that lost their
    /// connection wait for it.
    pub generation: watch::Sender<u64>,
    /// Writers stop.
    pub stop_writing: AtomicBool,
    /// Subscribers finish their current stream and stop.
    pub done: AtomicBool,
    pub events: AtomicU64,
    pub resumes: AtomicU64,
    pub crashes_seen: AtomicUsize,
    /// Appends acknowledged (first sends), retries acknowledged, appends
    /// refused with ABORTED.
    pub appends: AtomicU64,
    pub retries: AtomicU64,
    pub aborted: AtomicU64,
    /// Of the retries: those after a reply lost to a crash (the others are
    /// deliberate resends of an acknowledged append).
    pub retries_after_crash: AtomicU64,
    /// Stale offsets inside a character, refused with INVALID_ARGUMENT.
    pub inside_character: AtomicU64,
}

impl Shared {
    pub fn new(socket: PathBuf) -> Arc<Shared> {
        Shared::spread(vec![socket])
    }

    /// Clients spread over `sockets` (at least one), a connection each in
    /// turn.
    pub fn spread(sockets: Vec<PathBuf>) -> Arc<Shared> {
        Arc::new(Shared {
            socket: sockets[0].clone(),
            sockets,
            next: AtomicUsize::new(0),
            record: Mutex::new(Record::default()),
            acked: watch::channel(0).0,
            generation: watch::channel(0).0,
            stop_writing: AtomicBool::new(false),
            done: AtomicBool::new(false),
            events: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            crashes_seen: AtomicUsize::new(0),
            appends: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            retries_after_crash: AtomicU64::new(0),
            inside_character: AtomicU64::new(0),
        })
    }

    pub(super) fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn ack(&self, execution: &str, revision: u64, entry: Entry) {
        {
            let mut r = self.record();
            if let Some((other, _)) = r.acks.get(&revision) {
                let msg = format!("revision {revision} acknowledged for {other} and {execution}");
                r.duplicate_acks.push(msg);
            }
            r.acks.insert(revision, (execution.to_string(), entry));
            r.max_seen = r.max_seen.max(revision);
        }
        self.acked.send_modify(|n| *n += 1);
    }

    /// An append's acknowledgement at `revision`: a first send's (its own
    /// change, counted like any write) or a retry's (the execution's
    /// revision when the retry found it applied, or its own).
    pub(super) fn ack_append(&self, execution: &str, revision: u64, facts: Vec<Fact>, retry: bool) {
        {
            let mut r = self.record();
            r.facts.entry(revision).or_default().extend(facts);
            if retry {
                r.retry_acks.insert(revision, execution.to_string());
                r.max_seen = r.max_seen.max(revision);
            }
        }
        if retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
            self.acked.send_modify(|n| *n += 1);
        } else {
            self.appends.fetch_add(1, Ordering::Relaxed);
            self.ack(execution, revision, Entry::Appended { terminal: false });
        }
    }

    pub(super) fn saw(&self, revision: u64) {
        let mut r = self.record();
        r.max_seen = r.max_seen.max(revision);
    }

    /// Notes a revision delivered on a stream of `execution`, and answers
    /// the texts acknowledged at it so far.
    pub(super) fn observe(&self, execution: &str, revision: u64) -> Vec<Fact> {
        let mut r = self.record();
        r.max_seen = r.max_seen.max(revision);
        r.facts
            .get(&revision)
            .map(|f| {
                f.iter()
                    .filter(|f| f.execution == execution)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Connects, waiting for a restart when the daemon is down.
    pub async fn connect(&self) -> (Wire, u64) {
        loop {
            let generation = *self.generation.borrow();
            let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.sockets.len();
            if let Ok(wire) = Wire::connect(&self.sockets[turn]).await {
                return (wire, generation);
            }
            self.wait_restart(generation).await;
        }
    }

    /// Waits until the daemon has been restarted after generation `g`.
    pub async fn wait_restart(&self, g: u64) {
        let mut rx = self.generation.subscribe();
        let waited = tokio::time::timeout(STUCK, rx.wait_for(|now| *now > g)).await;
        assert!(waited.is_ok(), "the daemon was not restarted");
    }
}
