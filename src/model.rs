//! The domain types every part shares: a committed [`Change`] and the
//! [`State`] it left, what kind of change it was, the phase rules that make
//! an execution final, and the [`Revisions`] counters.
//!
//! They live here, below the store, the pipeline and the broker, so that
//! each of those can use them without importing another: the store writes
//! and reads changes, the pipeline builds them, the broker fans them out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::Op;

use crate::protocol::ApiError;

/// What kind of change a revision recorded (stored in `history.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Created = 1,
    StatusUpdated = 2,
    Deleted = 3,
}

impl ChangeKind {
    /// From the stored integer; unknown values are a corrupt database.
    pub(crate) fn from_i64(v: i64) -> Result<Self, ApiError> {
        match v {
            1 => Ok(Self::Created),
            2 => Ok(Self::StatusUpdated),
            3 => Ok(Self::Deleted),
            other => Err(ApiError::internal(format!("unknown history kind {other}"))),
        }
    }
}

/// The state a create or status update left: the message (for phase checks
/// and replies), and its encoding, made at most once: by the writer when it
/// stores a whole state, else on first use (a full reply, a whole-state
/// subscriber), and then shared. A change stored as a delta, answered
/// minimally and watched only by delta streams is never encoded whole.
#[derive(Debug)]
pub struct State {
    pub execution: Arc<AgentExecution>,
    encoded: OnceLock<Bytes>,
}

impl State {
    /// A state, with its encoding when the writer already made it.
    pub fn new(execution: Arc<AgentExecution>, encoded: Option<Bytes>) -> Self {
        let cell = OnceLock::new();
        if let Some(bytes) = encoded {
            let _ = cell.set(bytes);
        }
        State {
            execution,
            encoded: cell,
        }
    }

    /// The encoding, only if it was already made (by the writer, for a
    /// state it stored whole; or by a subscriber that needed it).
    pub(crate) fn encoded_if_made(&self) -> Option<&Bytes> {
        self.encoded.get()
    }

    /// The encoded `AgentExecution`.
    pub fn encoded(&self) -> &Bytes {
        self.encoded
            .get_or_init(|| Bytes::from(prost::Message::encode_to_vec(&*self.execution)))
    }
}

/// What a change made by operations carries for delta streams: the
/// operations and the revision they apply on top of.
#[derive(Debug)]
pub struct Delta {
    /// The operations, in order (the commit stamp last).
    pub ops: Vec<Op>,
    /// The execution's revision before this change.
    pub prev_revision: u64,
}

/// One committed change: what the broker fans out and what history replays.
#[derive(Debug)]
pub struct Change {
    /// The global revision assigned at commit.
    pub revision: u64,
    /// The execution it changed.
    pub execution_id: Arc<str>,
    /// Create, status change or delete.
    pub(crate) kind: ChangeKind,
    /// A delete's session (the state is gone); other changes read it from
    /// their state (`Change::session_id`).
    deleted_session: Option<Arc<str>>,
    /// The execution after the change; `None` for a delete.
    pub state: Option<State>,
    /// The operations of a change made by them (`update_status`, `append`);
    /// `None` for a create or a delete.
    pub delta: Option<Delta>,
    /// The `Event { UPDATE }` for this change, built on first use and then
    /// shared by every whole-state subscriber (see
    /// `protocol::encode_event_frame`).
    event: OnceLock<Bytes>,
    /// The `Event { DELTA }`, likewise, for delta subscribers.
    delta_event: OnceLock<Bytes>,
    /// The event many-execution streams take where it differs from the
    /// above: CREATED, DELETED, or a DELTA naming its execution.
    many_event: OnceLock<Bytes>,
    /// When the broker received it (just after COMMIT), for the broadcast
    /// latency histogram.
    published_at: OnceLock<std::time::Instant>,
}

impl Change {
    /// A create as committed.
    pub fn new(revision: u64, execution_id: Arc<str>, state: State) -> Self {
        Self::with(
            revision,
            execution_id,
            ChangeKind::Created,
            Some(state),
            None,
        )
    }

    /// A change made by operations, as committed.
    pub(crate) fn by_ops(
        revision: u64,
        execution_id: Arc<str>,
        state: State,
        delta: Delta,
    ) -> Self {
        Self::with(
            revision,
            execution_id,
            ChangeKind::StatusUpdated,
            Some(state),
            Some(delta),
        )
    }

    /// A delete as committed, of an execution of `session_id`.
    pub(crate) fn deleted(revision: u64, execution_id: Arc<str>, session_id: Arc<str>) -> Self {
        let mut change = Self::with(revision, execution_id, ChangeKind::Deleted, None, None);
        change.deleted_session = Some(session_id);
        change
    }

    fn with(
        revision: u64,
        execution_id: Arc<str>,
        kind: ChangeKind,
        state: Option<State>,
        delta: Option<Delta>,
    ) -> Self {
        Self {
            revision,
            execution_id,
            kind,
            deleted_session: None,
            state,
            delta,
            event: OnceLock::new(),
            delta_event: OnceLock::new(),
            many_event: OnceLock::new(),
            published_at: OnceLock::new(),
        }
    }

    /// The session of the execution it changed (`spec.session_id`).
    pub(crate) fn session_id(&self) -> &str {
        match (&self.state, &self.deleted_session) {
            (Some(state), _) => state
                .execution
                .spec
                .as_ref()
                .map_or("", |spec| spec.session_id.as_str()),
            (None, Some(session)) => session,
            (None, None) => "",
        }
    }

    /// Records the moment of publication (the first call wins).
    pub(crate) fn mark_published(&self) {
        let _ = self.published_at.set(std::time::Instant::now());
    }

    /// Time since publication, if published.
    pub(crate) fn since_published(&self) -> Option<std::time::Duration> {
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
    pub(crate) fn update_event_bytes(&self) -> Option<&Bytes> {
        let state = self.state.as_ref()?;
        Some(self.event.get_or_init(|| {
            crate::protocol::encode_update_event(self.revision, &self.execution_id, state.encoded())
        }))
    }

    /// The event a stream sends for this change: a DELTA for a delta
    /// stream when the change was made by operations, else the whole-state
    /// UPDATE; `None` for a delete.
    pub(crate) fn event_bytes(&self, deltas: bool) -> Option<&Bytes> {
        match (&self.delta, deltas) {
            (Some(delta), true) if self.state.is_some() => {
                Some(self.delta_event.get_or_init(|| {
                    crate::protocol::encode_delta_event(
                        self.revision,
                        delta.prev_revision,
                        &delta.ops,
                        None,
                    )
                }))
            }
            _ => self.update_event_bytes(),
        }
    }

    /// The event a many-execution stream sends for this change: CREATED for
    /// a create, DELETED for a delete, a DELTA naming the execution for a
    /// delta stream when the change was made by operations, else the
    /// whole-state UPDATE (the same bytes one-execution streams share).
    pub(crate) fn many_event_bytes(&self, deltas: bool) -> &Bytes {
        use stigmer_proto::daemon::EventType;
        let encode = |kind: EventType, state: Option<&State>| {
            crate::protocol::encode_state_event(
                kind,
                self.revision,
                &self.execution_id,
                state.map(|s| s.encoded().as_ref()),
            )
        };
        match (self.kind, &self.state, &self.delta) {
            (ChangeKind::Created, Some(state), _) => self
                .many_event
                .get_or_init(|| encode(EventType::EventCreated, Some(state))),
            (ChangeKind::Deleted, _, _) | (_, None, _) => self
                .many_event
                .get_or_init(|| encode(EventType::EventDeleted, None)),
            (_, Some(_), Some(delta)) if deltas => self.many_event.get_or_init(|| {
                crate::protocol::encode_delta_event(
                    self.revision,
                    delta.prev_revision,
                    &delta.ops,
                    Some(&self.execution_id),
                )
            }),
            (_, Some(state), _) => self.event.get_or_init(|| {
                crate::protocol::encode_update_event(
                    self.revision,
                    &self.execution_id,
                    state.encoded(),
                )
            }),
        }
    }
}

/// Length of a ULID in its text form.
const ULID_LEN: usize = 26;

/// True for an id of the form every execution id has (`create` makes
/// them): `aex-` and a lowercase ULID. The daemon answers any other form
/// INVALID_ARGUMENT; the CLI refuses it before asking.
pub(crate) fn is_execution_id(id: &str) -> bool {
    id.strip_prefix("aex-")
        .filter(|u| {
            u.len() == ULID_LEN
                && u.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        })
        .is_some_and(|u| ulid::Ulid::from_string(u).is_ok())
}

/// True for the phases after which no update is accepted (the rule the
/// clients apply too, so it lives with the operations).
pub(crate) use stigmer_proto::delta::is_terminal_phase;

/// True when the execution is in a terminal phase.
pub fn is_terminal(execution: &AgentExecution) -> bool {
    execution
        .status
        .as_ref()
        .map(|s| is_terminal_phase(s.phase))
        .unwrap_or(false)
}

/// The last non-empty line of the execution's last message with text (or
/// of its error), for one-line views (`executions watch`, `top`, the web
/// dashboard's table).
pub(crate) fn latest_text(e: &AgentExecution) -> &str {
    fn last_line(text: &str) -> &str {
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
    }
    let Some(status) = e.status.as_ref() else {
        return "";
    };
    if !status.error.is_empty() {
        return last_line(&status.error);
    }
    status
        .messages
        .iter()
        .rev()
        .map(|m| last_line(&m.content))
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// When an execution finished: its `completed_at`, else (a terminal
/// execution written before that stamp existed) the last status update's
/// time; `None` while it has not finished.
pub(crate) fn finished_at(execution: &AgentExecution) -> Option<std::time::SystemTime> {
    let status = execution.status.as_ref()?;
    if !is_terminal_phase(status.phase) {
        return None;
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(&status.completed_at) {
        return Some(t);
    }
    let updated = status
        .audit
        .as_ref()?
        .status_audit
        .as_ref()?
        .updated_at
        .as_ref()?;
    let since_epoch = std::time::Duration::new(
        u64::try_from(updated.seconds).ok()?,
        u32::try_from(updated.nanos).ok()?,
    );
    std::time::UNIX_EPOCH.checked_add(since_epoch)
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
    pub(crate) fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
    /// The compaction floor: a resume from below it needs a RESYNC.
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted.load(Ordering::Acquire)
    }
    pub(crate) fn set(&self, last: u64, compacted: u64) {
        self.compacted.store(compacted, Ordering::Release);
        self.last.store(last, Ordering::Release);
    }
}
