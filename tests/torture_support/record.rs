//! The record of a run: every event a subscriber received (`Ev`, grouped in
//! `Segment`s of a `SubLog`), every event of a watcher's many-execution
//! stream (`WatchEv` in `WatchSegment`s of a `WatchLog`) and every write
//! acknowledged (`Record`), which the checker holds against the committed
//! history.

use std::collections::{BTreeMap, HashMap, HashSet};

use stigmer_proto::daemon::{EndReason, Event, EventType};

use super::state::{Entry, State};

pub const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
pub const UPDATE: i32 = EventType::EventUpdate as i32;
pub const RESYNC: i32 = EventType::EventResync as i32;
pub const END: i32 = EventType::EventEnd as i32;
pub const DELTA: i32 = EventType::EventDelta as i32;
pub const CREATED: i32 = EventType::EventCreated as i32;
pub const DELETED: i32 = EventType::EventDeleted as i32;
pub const BOOKMARK: i32 = EventType::EventBookmark as i32;

/// An event type's name without its `EVENT_` prefix (`type7`: unknown).
pub fn kind_name(kind: i32) -> String {
    EventType::try_from(kind)
        .map(|k| k.as_str_name().trim_start_matches("EVENT_").to_string())
        .unwrap_or_else(|_| format!("type{kind}"))
}

/// One event (or the end of a stream) as a subscriber received it.
#[derive(Clone, Debug)]
pub struct Ev {
    pub kind: i32,
    pub revision: u64,
    /// The state the event carries, or for a DELTA the state the
    /// subscriber rebuilt by applying its operations.
    pub state: Option<State>,
    pub reason: i32,
    /// DELTA only: the revision it says it applies to.
    pub prev_revision: u64,
    /// What the subscriber found wrong on receiving it (operations that do
    /// not apply, a DELTA with no state to apply to, an appended text twice
    /// or not where it was acknowledged).
    pub problem: Option<String>,
}

impl Ev {
    pub fn of(e: &Event) -> Ev {
        Ev {
            kind: e.r#type,
            revision: e.revision,
            state: e.execution.as_ref().map(State::of),
            reason: e.reason,
            prev_revision: e.prev_revision,
            problem: None,
        }
    }
    pub(super) fn describe(&self) -> String {
        let kind = kind_name(self.kind);
        match (&self.state, self.kind) {
            (_, END) => format!(
                "{kind} rev {} {}",
                self.revision,
                EndReason::try_from(self.reason)
                    .map(|r| r.as_str_name())
                    .unwrap_or("?")
            ),
            (Some(s), DELTA) => format!(
                "{kind} rev {} on {} -> {}",
                self.revision, self.prev_revision, s.summary
            ),
            (Some(s), _) => format!("{kind} rev {} {}", self.revision, s.summary),
            (None, _) => format!("{kind} rev {} (no state)", self.revision),
        }
    }
}

/// How a stream segment ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Its END event was received (the last event).
    Ended,
    /// An error reply instead of a stream.
    Error(i32, String),
    /// The connection was dropped (by the subscriber, or by a crash).
    Dropped,
    /// Still open (the subscriber was told to stop while the workload ran).
    Open,
    /// A frame no stream of this subscriber could own, or nothing for too long.
    Broken(String),
}

/// One `subscribe` request and what it got.
#[derive(Clone, Debug)]
pub struct Segment {
    pub execution: String,
    pub from: Option<u64>,
    pub events: Vec<Ev>,
    pub outcome: Outcome,
    /// Whether the subscriber sent `cancel` for it.
    pub cancelled: bool,
    /// Continues the previous segment (a resume after a disconnect).
    pub resumed: bool,
    /// A delta stream (`SubscribeRequest.deltas`).
    pub deltas: bool,
    /// `skip_initial_state`: the subscriber holds the state at `base`, its
    /// last state (the execution's last change at or before `from`).
    pub skip: bool,
    pub base: Option<u64>,
}

/// What one subscriber did.
#[derive(Clone, Debug)]
pub struct SubLog {
    pub subscriber: usize,
    pub mode: Mode,
    pub segments: Vec<Segment>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fast,
    Slow,
    Staller,
    Disconnector,
    PastReader,
    Canceller,
}

impl Mode {
    /// A watcher's kind: fast, slow, stalling, or resuming (`Disconnector`).
    pub fn of_watcher(i: usize) -> Mode {
        [Mode::Fast, Mode::Slow, Mode::Staller, Mode::Disconnector][i % 4]
    }

    pub fn of(i: usize) -> Mode {
        [
            Mode::Fast,
            Mode::Slow,
            Mode::Staller,
            Mode::Disconnector,
            Mode::PastReader,
            Mode::Canceller,
        ][i % 6]
    }
}

/// A text an append put at `offset` of message `message_index` of
/// `execution`. Every appended text is a token `<a{writer}.{n}:...>`, unique
/// in the run, so that a second copy, or a lost one, is visible in any
/// state.
#[derive(Clone, Debug)]
pub struct Fact {
    pub execution: String,
    pub message_index: u32,
    pub offset: u64,
    pub text: String,
}

/// What a many-execution stream selects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selection {
    /// `subscribe { session_id }`.
    Session(String),
    /// `subscribe { all: true }`.
    All,
}

impl Selection {
    /// Watcher `i`'s selection: the sessions in turn, and every
    /// `sessions + 1`-th watcher every execution.
    pub fn of(i: usize, sessions: usize) -> Selection {
        let k = i % (sessions + 1);
        if k == sessions {
            Selection::All
        } else {
            Selection::Session(session_name(k))
        }
    }

    /// Whether an execution of `session` is in it.
    pub fn covers(&self, session: Option<&str>) -> bool {
        match self {
            Selection::All => true,
            Selection::Session(s) => session == Some(s.as_str()),
        }
    }
}

/// Session number `k`'s id.
pub fn session_name(k: usize) -> String {
    format!("s{k}")
}

/// One event of a many-execution stream as a watcher received it: the
/// execution it is about (empty for a BOOKMARK, RESYNC or END), and for a
/// DELTA the state the watcher rebuilt in its cache.
#[derive(Clone, Debug)]
pub struct WatchEv {
    pub execution: String,
    /// A BOOKMARK's `initial_events_end`.
    pub list_end: bool,
    pub ev: Ev,
}

impl WatchEv {
    pub(super) fn describe(&self) -> String {
        let mut out = self.ev.describe();
        if !self.execution.is_empty() {
            out.push_str(&format!(" of {}", self.execution));
        }
        if self.list_end {
            out.push_str(" (end of the initial list)");
        }
        out
    }
}

/// One many-execution `subscribe` request and what it got.
#[derive(Clone, Debug)]
pub struct WatchSegment {
    /// None: a list, then live; Some(R): the changes after R (a resume).
    pub from: Option<u64>,
    pub deltas: bool,
    pub events: Vec<WatchEv>,
    pub outcome: Outcome,
    /// Whether the watcher sent `cancel` for it (at the end of the run).
    pub cancelled: bool,
    /// The daemon that served it (its index).
    pub daemon: usize,
}

/// What one watcher did.
#[derive(Clone, Debug)]
pub struct WatchLog {
    pub watcher: usize,
    pub mode: Mode,
    pub selection: Selection,
    pub segments: Vec<WatchSegment>,
}

/// Every acknowledged write, keyed by revision.
#[derive(Clone, Default)]
pub struct Record {
    pub acks: BTreeMap<u64, (String, Entry)>,
    /// The texts of every acknowledged append (first sends and retries),
    /// by the revision acknowledged: the state there holds each of them at
    /// its offset, once.
    pub facts: HashMap<u64, Vec<Fact>>,
    /// Revisions acknowledged to retried appends (a retry of an append
    /// already applied is acknowledged at the execution's revision then,
    /// which may be another change's).
    pub retry_acks: BTreeMap<u64, String>,
    /// Per execution, the revisions of acknowledged whole statuses that
    /// replaced its messages (and so the appended texts before them).
    pub replaced: HashMap<String, Vec<u64>>,
    /// Broken promises seen by the writers (an ABORTED append applied
    /// anyway, a retry acknowledged before the original).
    pub problems: Vec<String>,
    /// Revisions acknowledged twice (must stay empty).
    pub duplicate_acks: Vec<String>,
    /// Every execution whose create was acknowledged.
    pub ids: Vec<String>,
    /// Every execution id a create was sent for (some replies were lost to
    /// a crash: whether those exist, the final replay tells).
    pub unconfirmed: Vec<String>,
    /// Executions believed writable.
    pub live: Vec<String>,
    /// The session each execution was created in (sent, so also those
    /// whose create's reply was lost).
    pub sessions: HashMap<String, String>,
    /// Executions only their creator (one writer) writes, beside the shared
    /// ones (the ender may still end them).
    pub private: HashSet<String>,
    /// Highest revision seen anywhere (acks and events).
    pub max_seen: u64,
    /// Per daemon (its index), the highest revision it acknowledged or
    /// delivered: its database holds at least that much.
    pub max_seen_on: BTreeMap<usize, u64>,
    /// Per writer connection, acknowledged revisions must increase.
    pub writer_order: Vec<String>,
}

impl Record {
    /// Notes `revision`, acknowledged or delivered by daemon `daemon`.
    pub(super) fn seen(&mut self, daemon: usize, revision: u64) {
        self.max_seen = self.max_seen.max(revision);
        let on = self.max_seen_on.entry(daemon).or_default();
        *on = (*on).max(revision);
    }
}
