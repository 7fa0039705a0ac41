//! The state the workload's tasks share: the record (behind a lock), the
//! counters of the figures line, and the signals that stop the writers,
//! subscribers and watchers and tell them of a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::record::{Fact, Record, Selection};
use super::state::Entry;
use super::wire::{Wire, STUCK};

/// With several daemons, how long a client whose connection broke (or
/// whose write was answered UNAVAILABLE while etcd elects a leader) waits
/// before it connects again: it paces the retries; another daemon serves.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// State shared by the workload's tasks.
pub struct Shared {
    /// The (first) daemon's socket: the one the killer restarts.
    pub socket: PathBuf,
    /// Every daemon's socket: connections take turns over them (the
    /// cluster mode's run spreads its clients over two daemons).
    pub sockets: Vec<PathBuf>,
    next: AtomicUsize,
    /// Sessions the executions are created in (`s0`, `s1`, ...), which
    /// the watchers follow.
    pub sessions: usize,
    /// Once the run's history is known: the last committed change of each
    /// watcher's selection, which it reads up to before it stops.
    pub targets: watch::Sender<Option<Arc<HashMap<Selection, u64>>>>,
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
    /// SIGKILLs of etcd's leader (the cluster runs).
    pub leader_kills: AtomicUsize,
    /// Writes whose reply a fault lost (committed or not): the connection
    /// broke, or the daemon answered UNAVAILABLE.
    pub lost_replies: AtomicU64,
    pub unavailable: AtomicU64,
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
        Shared::spread(vec![socket], 1)
    }

    /// Clients spread over `sockets` (at least one), a connection each in
    /// turn; executions created in `sessions` sessions.
    pub fn spread(sockets: Vec<PathBuf>, sessions: usize) -> Arc<Shared> {
        Arc::new(Shared {
            socket: sockets[0].clone(),
            sockets,
            next: AtomicUsize::new(0),
            sessions: sessions.max(1),
            targets: watch::channel(None).0,
            record: Mutex::new(Record::default()),
            acked: watch::channel(0).0,
            generation: watch::channel(0).0,
            stop_writing: AtomicBool::new(false),
            done: AtomicBool::new(false),
            events: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            crashes_seen: AtomicUsize::new(0),
            leader_kills: AtomicUsize::new(0),
            lost_replies: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
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

    /// A write acknowledged at `revision` by daemon number `daemon`.
    pub(super) fn ack(&self, daemon: usize, execution: &str, revision: u64, entry: Entry) {
        {
            let mut r = self.record();
            if let Some((other, _)) = r.acks.get(&revision) {
                let msg = format!("revision {revision} acknowledged for {other} and {execution}");
                r.duplicate_acks.push(msg);
            }
            r.acks.insert(revision, (execution.to_string(), entry));
            r.seen(daemon, revision);
        }
        self.acked.send_modify(|n| *n += 1);
    }

    /// An append's acknowledgement at `revision`: a first send's (its own
    /// change, counted like any write) or a retry's (the execution's
    /// revision when the retry found it applied, or its own).
    pub(super) fn ack_append(
        &self,
        daemon: usize,
        execution: &str,
        revision: u64,
        facts: Vec<Fact>,
        retry: bool,
    ) {
        {
            let mut r = self.record();
            r.facts.entry(revision).or_default().extend(facts);
            if retry {
                r.retry_acks.insert(revision, execution.to_string());
                r.seen(daemon, revision);
            }
        }
        if retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
            self.acked.send_modify(|n| *n += 1);
        } else {
            self.appends.fetch_add(1, Ordering::Relaxed);
            self.ack(
                daemon,
                execution,
                revision,
                Entry::Appended { terminal: false },
            );
        }
    }

    /// Notes a revision delivered by daemon number `daemon` on a stream of
    /// `execution`, and answers the texts acknowledged at it so far.
    pub(super) fn observe(&self, daemon: usize, execution: &str, revision: u64) -> Vec<Fact> {
        let mut r = self.record();
        r.seen(daemon, revision);
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

    /// Connects to the daemons in turn (the next one that answers),
    /// waiting for a restart when none does.
    pub async fn connect(&self) -> (Wire, u64) {
        loop {
            let generation = *self.generation.borrow();
            let turn = self.next.fetch_add(1, Ordering::Relaxed);
            for k in 0..self.sockets.len() {
                let daemon = (turn + k) % self.sockets.len();
                if let Ok(wire) = Wire::connect_to(&self.sockets[daemon], daemon).await {
                    return (wire, generation);
                }
            }
            self.wait_restart(generation).await;
        }
    }

    /// A connection (of generation `g`) broke, or its daemon answered
    /// UNAVAILABLE: with one daemon, waits for its restart; with several,
    /// another one serves (after a short pause that paces the retries
    /// while etcd elects a leader), so the client connects again at once.
    pub async fn lost(&self, g: u64) {
        if self.sockets.len() > 1 {
            tokio::time::sleep(RETRY_PAUSE).await;
        } else {
            self.wait_restart(g).await;
        }
    }

    /// Waits until the daemon has been restarted after generation `g`.
    pub async fn wait_restart(&self, g: u64) {
        let mut rx = self.generation.subscribe();
        let waited = tokio::time::timeout(STUCK, rx.wait_for(|now| *now > g)).await;
        assert!(waited.is_ok(), "the daemon was not restarted");
    }
}
