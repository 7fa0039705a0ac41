//! The watch checker behind `tests/torture.rs`: a workload of writers
//! (whole statuses and appends), subscribers of every kind (each stream
//! whole-state or delta) and (optionally) a killer, a record of every
//! acknowledged write and every event received (for a delta stream, the
//! state it rebuilds), and a checker that holds each subscriber's events
//! against the committed history.
//!
//! Everything random comes from one seed (printed, and settable with
//! `TORTURE_SEED`), so a failing run can be replayed with the same choices
//! (the interleavings still vary: the daemon runs on real threads).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionId, AgentExecutionSpec, AgentExecutionStatus,
    AgentExecutionUpdateStatusInput, AgentMessage, ExecutionPhase, MessageType, TodoItem, ToolCall,
    ToolCallStatus,
};
use stigmer_proto::apiresource::{ApiResourceId, ApiResourceMetadata};
use stigmer_proto::daemon::{
    op, request::Command as Cmd, response, AppendRequest, AppendText, AppendToolResult,
    CancelSubscriptionRequest, Code, EndReason, Event, EventType, Op, PutTodo, Request, Response,
    SubscribeRequest,
};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

pub const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
pub const UPDATE: i32 = EventType::EventUpdate as i32;
pub const RESYNC: i32 = EventType::EventResync as i32;
pub const END: i32 = EventType::EventEnd as i32;
pub const DELTA: i32 = EventType::EventDelta as i32;

/// A stream that sends nothing for this long while the workload is over is
/// stuck (a failure guard, not a timing assertion: every stream of a
/// finished workload must end within milliseconds).
pub const STUCK: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Randomness

/// splitmix64: small, seedable, good enough to pick moves.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// Sizes of one run. The defaults are the CI form; `TORTURE_*` environment
/// variables make a long run (docs/RELIABILITY.md).
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub writers: usize,
    /// Executions kept live at once (more are created as others end).
    pub executions: usize,
    pub subscribers: usize,
    /// Acknowledged updates before the workload stops (at least).
    pub updates: u64,
    /// SIGKILLs (crash runs only).
    pub kills: u64,
    /// Longest stall of a stalling subscriber.
    pub max_stall: Duration,
    /// RESYNC events are legitimate (small history retention).
    pub allow_resync: bool,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

impl Config {
    /// The CI defaults, overridden by `TORTURE_SEED`, `TORTURE_WRITERS`,
    /// `TORTURE_EXECUTIONS`, `TORTURE_SUBSCRIBERS`, `TORTURE_UPDATES`,
    /// `TORTURE_KILLS`, `TORTURE_MAX_STALL_MS`.
    pub fn from_env(updates: u64, kills: u64) -> Config {
        let default_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Config {
            seed: env_u64("TORTURE_SEED", default_seed),
            writers: env_u64("TORTURE_WRITERS", 4) as usize,
            executions: env_u64("TORTURE_EXECUTIONS", 8) as usize,
            subscribers: env_u64("TORTURE_SUBSCRIBERS", 12) as usize,
            updates: env_u64("TORTURE_UPDATES", updates),
            kills: env_u64("TORTURE_KILLS", kills),
            max_stall: Duration::from_millis(env_u64("TORTURE_MAX_STALL_MS", 2000)),
            allow_resync: false,
        }
    }
}

// ---------------------------------------------------------------------------
// A raw client that reports a broken connection instead of panicking

pub struct Wire {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
    next_id: u64,
}

#[derive(Debug)]
pub struct Closed;

impl Wire {
    pub async fn connect(path: &Path) -> Result<Wire, Closed> {
        let stream = UnixStream::connect(path).await.map_err(|_| Closed)?;
        Ok(Wire {
            framed: Framed::new(stream, stigmer_proto::frame::codec(64 * 1024 * 1024)),
            next_id: 1,
        })
    }
    pub fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
    pub async fn send(&mut self, id: u64, command: Cmd) -> Result<(), Closed> {
        let req = Request {
            protocol_version: 1,
            id,
            minimal_reply: false,
            command: Some(command),
        };
        self.framed
            .send(Bytes::from(req.encode_to_vec()))
            .await
            .map_err(|_| Closed)
    }
    pub async fn recv(&mut self) -> Result<Response, Closed> {
        match self.framed.next().await {
            Some(Ok(body)) => Ok(Response::decode(body).expect("a Response decodes")),
            _ => Err(Closed),
        }
    }
    /// One request, one reply (only for connections without streams).
    pub async fn call(&mut self, command: Cmd) -> Result<Response, Closed> {
        let id = self.id();
        self.send(id, command).await?;
        let resp = self.recv().await?;
        assert_eq!(resp.id, id, "unexpected frame while waiting for {id}");
        Ok(resp)
    }
}

// ---------------------------------------------------------------------------
// States, hashed

/// An execution state reduced to what the checker compares: a hash of its
/// whole encoding (equal states encode equally) and a summary for traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub hash: u64,
    pub terminal: bool,
    pub summary: String,
}

impl State {
    pub fn of(e: &AgentExecution) -> State {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.encode_to_vec().hash(&mut h);
        let status = e.status.clone().unwrap_or_default();
        let phase = ExecutionPhase::try_from(status.phase)
            .map(|p| p.as_str_name().trim_start_matches("EXECUTION_").to_string())
            .unwrap_or_else(|_| format!("phase{}", status.phase));
        let last: String = status
            .messages
            .last()
            .map(|m| m.content.chars().take(20).collect())
            .unwrap_or_default();
        State {
            hash: h.finish(),
            terminal: stigmer::internals::is_terminal(e),
            summary: format!("{phase} {last:?} #{:08x}", h.finish() as u32),
        }
    }
}

/// One committed change of an execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    State(State),
    /// An append's acknowledgement: its revision but not its state (append
    /// replies are minimal), and whether it ended the execution. The state
    /// comes from the daemon's replay, or from what the streams carried at
    /// that revision (`resolve_appended`).
    Appended {
        terminal: bool,
    },
    Deleted,
}

impl Entry {
    fn describe(&self) -> String {
        match self {
            Entry::State(s) => s.summary.clone(),
            Entry::Appended { terminal } => {
                format!("(an append, state not acknowledged, terminal: {terminal})")
            }
            Entry::Deleted => "DELETED".into(),
        }
    }

    /// The execution is over after this change (nothing may follow).
    pub fn over(&self) -> bool {
        match self {
            Entry::State(s) => s.terminal,
            Entry::Appended { terminal } => *terminal,
            Entry::Deleted => true,
        }
    }

    pub fn terminal_state(&self) -> bool {
        !matches!(self, Entry::Deleted) && self.over()
    }

    /// Whether a replayed entry is the one acknowledged (`self`).
    fn acknowledged_as(&self, replayed: &Entry) -> bool {
        match (self, replayed) {
            (Entry::Appended { terminal }, Entry::State(s)) => s.terminal == *terminal,
            (a, b) => a == b,
        }
    }
}

// ---------------------------------------------------------------------------
// The record

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
    fn describe(&self) -> String {
        let kind = EventType::try_from(self.kind)
            .map(|k| k.as_str_name().trim_start_matches("EVENT_").to_string())
            .unwrap_or_else(|_| format!("type{}", self.kind));
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

/// Every acknowledged write, keyed by revision.
#[derive(Default)]
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
    /// Highest revision seen anywhere (acks and events).
    pub max_seen: u64,
    /// Per writer connection, acknowledged revisions must increase.
    pub writer_order: Vec<String>,
}

/// State shared by the workload's tasks.
pub struct Shared {
    pub socket: PathBuf,
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
        Arc::new(Shared {
            socket,
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

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ack(&self, execution: &str, revision: u64, entry: Entry) {
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
    fn ack_append(&self, execution: &str, revision: u64, facts: Vec<Fact>, retry: bool) {
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

    fn saw(&self, revision: u64) {
        let mut r = self.record();
        r.max_seen = r.max_seen.max(revision);
    }

    /// Notes a revision delivered on a stream of `execution`, and answers
    /// the texts acknowledged at it so far.
    fn observe(&self, execution: &str, revision: u64) -> Vec<Fact> {
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
            if let Ok(wire) = Wire::connect(&self.socket).await {
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

pub fn new_id() -> String {
    format!("aex-{}", ulid::Ulid::new().to_string().to_lowercase())
}

pub fn new_execution(id: &str, agent: &str) -> AgentExecution {
    AgentExecution {
        metadata: Some(ApiResourceMetadata {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            agent_id: agent.into(),
            message: "torture".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn update_cmd(id: &str, status: AgentExecutionStatus) -> Cmd {
    Cmd::UpdateStatus(AgentExecutionUpdateStatusInput {
        execution_id: id.into(),
        status: Some(status),
    })
}

pub fn message_status(text: String) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: text,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn phase_status(p: ExecutionPhase) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: p as i32,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Writers

/// A write's fate.
pub enum Wrote {
    Acked,
    /// Refused: the execution is over (terminal or deleted).
    Over,
    /// The connection broke: unknown whether it committed.
    Lost,
    /// An append refused with ABORTED (a stale offset or revision).
    Aborted,
}

/// What a writer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterKind {
    /// Whole statuses, upstream's way (the daemon diffs them into deltas).
    Whole,
    /// Appends: text tokens, sometimes with a todo, a tool call, its result
    /// or the phase, sometimes compare-and-set.
    Appender,
    /// Either, at random.
    Mixed,
}

impl WriterKind {
    pub fn of(w: usize) -> WriterKind {
        [WriterKind::Whole, WriterKind::Appender, WriterKind::Mixed][w % 3]
    }
}

/// The operations an append ends its execution with, if any.
fn ends(ops: &[Op]) -> bool {
    ops.iter().any(
        |o| matches!(o.op, Some(op::Op::SetPhase(p)) if stigmer_proto::delta::is_terminal_phase(p)),
    )
}

/// Sends one write and records its acknowledgement.
async fn write(shared: &Shared, wire: &mut Wire, last: &mut u64, id: &str, cmd: Cmd) -> Wrote {
    let is_delete = matches!(cmd, Cmd::Delete(_));
    let appended = match &cmd {
        Cmd::Append(a) => Some(Entry::Appended {
            terminal: ends(&a.ops),
        }),
        _ => None,
    };
    let replaces = matches!(&cmd, Cmd::UpdateStatus(u)
        if u.status.as_ref().is_some_and(|s| !s.messages.is_empty()));
    let resp = match wire.call(cmd).await {
        Ok(resp) => resp,
        Err(Closed) => return Wrote::Lost,
    };
    let (revision, entry) = match resp.result {
        Some(response::Result::Execution(reply)) => match (reply.execution, appended) {
            (Some(e), None) => (reply.revision, Entry::State(State::of(&e))),
            (None, Some(entry)) => (reply.revision, entry),
            (e, _) => panic!("unexpected reply to a write on {id}: {e:?}"),
        },
        Some(response::Result::Deleted(d)) if is_delete => (d.revision, Entry::Deleted),
        Some(response::Result::Error(e))
            if e.code == Code::FailedPrecondition as i32 || e.code == Code::NotFound as i32 =>
        {
            return Wrote::Over
        }
        Some(response::Result::Error(e)) if e.code == Code::Unavailable as i32 => {
            return Wrote::Lost
        }
        other => panic!("unexpected reply to a write on {id}: {other:?}"),
    };
    if revision <= *last {
        let msg = format!("a writer's revision went from {last} to {revision}");
        shared.record().writer_order.push(msg);
    }
    *last = revision;
    if replaces {
        let mut r = shared.record();
        r.replaced.entry(id.to_string()).or_default().push(revision);
    }
    shared.ack(id, revision, entry);
    Wrote::Acked
}

/// Creates an execution (client-chosen id, so a lost reply is still known).
async fn create(shared: &Shared, wire: &mut Wire, last: &mut u64, agent: &str) -> Wrote {
    let id = new_id();
    shared.record().unconfirmed.push(id.clone());
    let wrote = write(
        shared,
        wire,
        last,
        &id,
        Cmd::Create(new_execution(&id, agent)),
    )
    .await;
    if let Wrote::Acked = wrote {
        // Only now may subscribers pick it (before, NOT_FOUND is right).
        let mut r = shared.record();
        r.ids.push(id.clone());
        r.live.push(id);
    }
    wrote
}

fn pick_live(shared: &Shared, rng: &mut Rng) -> Option<String> {
    let r = shared.record();
    if r.live.is_empty() {
        return None;
    }
    Some(r.live[rng.below(r.live.len() as u64) as usize].clone())
}

fn retire(shared: &Shared, id: &str) {
    shared.record().live.retain(|l| l != id);
}

/// A writer's connection: reconnects after a crash.
struct Conn {
    wire: Wire,
    generation: u64,
    /// The last revision acknowledged on this connection.
    last: u64,
}

impl Conn {
    async fn open(shared: &Shared) -> Conn {
        let (wire, generation) = shared.connect().await;
        Conn {
            wire,
            generation,
            last: 0,
        }
    }

    async fn reconnect(&mut self, shared: &Shared) {
        shared.wait_restart(self.generation).await;
        *self = Conn::open(shared).await;
    }
}

/// A writer: writes of random sizes to random live executions (whole
/// statuses, appends or both, by its kind) until told to stop; reconnects
/// after a crash.
pub async fn writer(shared: Arc<Shared>, w: usize, mut rng: Rng) {
    let kind = WriterKind::of(w);
    let mut conn = Conn::open(&shared).await;
    let mut appender = Appender {
        w,
        n: 0,
        cursors: HashMap::new(),
        run: None,
    };
    let mut n = 0u64;
    while !shared.stop_writing.load(Ordering::Acquire) {
        let Some(id) = pick_live(&shared, &mut rng) else {
            // The ender keeps executions live; until it has, create one.
            if let Wrote::Lost = create(&shared, &mut conn.wire, &mut conn.last, "writer").await {
                conn.reconnect(&shared).await;
            }
            continue;
        };
        let append = match kind {
            WriterKind::Whole => false,
            WriterKind::Appender => true,
            WriterKind::Mixed => rng.percent(50),
        };
        // A runner streams a run of tokens into one execution.
        let id = if !append {
            id
        } else {
            match appender.run.take() {
                Some((run_id, left)) if left > 0 && shared.record().live.contains(&run_id) => {
                    appender.run = Some((run_id.clone(), left - 1));
                    run_id
                }
                _ => {
                    appender.run = Some((id.clone(), rng.below(12)));
                    id
                }
            }
        };
        let wrote = if append {
            // After an ABORTED (a stale offset), again from where the
            // execution is now (a few times).
            let mut wrote = Wrote::Aborted;
            for _ in 0..3 {
                wrote = appender.append(&shared, &mut conn, &id, &mut rng).await;
                if !matches!(wrote, Wrote::Aborted) {
                    break;
                }
            }
            wrote
        } else {
            n += 1;
            let pad = match rng.below(10) {
                0 => 4000,
                1..=3 => 400,
                _ => 10,
            };
            let text = format!("w{w} n{n} {}", "x".repeat(rng.below(pad) as usize));
            let cmd = update_cmd(&id, message_status(text));
            write(&shared, &mut conn.wire, &mut conn.last, &id, cmd).await
        };
        match wrote {
            Wrote::Acked | Wrote::Aborted => {}
            Wrote::Over => retire(&shared, &id),
            Wrote::Lost => conn.reconnect(&shared).await,
        }
    }
}

/// Where a writer appends next in one execution, as far as it knows.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    message_index: u32,
    offset: u64,
    /// The execution's revision when this was learnt (for compare-and-set).
    revision: u64,
    /// The length of the result of this writer's tool call, once put.
    tool_result: Option<u64>,
}

/// The appending side of a writer.
struct Appender {
    w: usize,
    n: u64,
    cursors: HashMap<String, Cursor>,
    /// The execution it is streaming into, and how many appends are left.
    run: Option<(String, u64)>,
}

pub fn text_op(message_index: u32, offset: u64, text: &str, r#type: i32) -> Op {
    Op {
        op: Some(op::Op::AppendText(AppendText {
            message_index,
            offset,
            text: text.into(),
            r#type,
        })),
    }
}

/// The appended texts of a state: each token's id (`a3.17`), message and
/// byte offset.
fn tokens(e: &AgentExecution) -> Vec<(&str, usize, usize)> {
    let mut out = Vec::new();
    let Some(status) = e.status.as_ref() else {
        return out;
    };
    for (i, m) in status.messages.iter().enumerate() {
        let c = m.content.as_str();
        let mut at = 0;
        while let Some(p) = c[at..].find("<a") {
            let start = at + p;
            let Some(colon) = c[start..].find(':') else {
                break;
            };
            out.push((&c[start + 1..start + colon], i, start));
            at = start + colon;
        }
    }
    out
}

/// What is wrong with the appended texts of a state: a text twice, or one
/// acknowledged at this state's revision (`facts`) not at its offset.
pub fn check_texts(e: &AgentExecution, facts: &[Fact]) -> Option<String> {
    let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for (id, message, offset) in tokens(e) {
        if let Some((m, o)) = seen.insert(id, (message, offset)) {
            return Some(format!(
                "the appended text <{id}:…> is there twice: message {m} at byte {o} and message {message} at byte {offset}"
            ));
        }
    }
    let messages = e.status.as_ref().map(|s| &s.messages[..]).unwrap_or(&[]);
    for f in facts {
        let at = messages.get(f.message_index as usize).and_then(|m| {
            m.content
                .get(f.offset as usize..f.offset as usize + f.text.len())
        });
        if at != Some(f.text.as_str()) {
            return Some(format!(
                "the acknowledged append of {:?} at byte {} of message {} is not there (found {at:?}; {} messages)",
                f.text,
                f.offset,
                f.message_index,
                messages.len()
            ));
        }
    }
    None
}

impl Appender {
    /// A new token: unique in the run, recognisable in any state, with
    /// multi-byte characters (offsets are in bytes).
    fn token(&mut self, rng: &mut Rng) -> String {
        self.n += 1;
        let pad = match rng.below(20) {
            0 => 400,
            1..=4 => 40,
            _ => 4,
        };
        let pad: String = (0..rng.below(pad))
            .map(|_| ['x', 'é', '🦀', ' '][rng.below(4) as usize])
            .collect();
        format!("<a{}.{}:{pad}>", self.w, self.n)
    }

    /// Reads the execution and picks where to append: at the end of its
    /// last message, or a new message.
    async fn locate(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        id: &str,
        rng: &mut Rng,
    ) -> Result<(Cursor, AgentExecution), Wrote> {
        let resp = match conn
            .wire
            .call(Cmd::Get(AgentExecutionId { value: id.into() }))
            .await
        {
            Ok(resp) => resp,
            Err(Closed) => return Err(Wrote::Lost),
        };
        let (e, revision) = match resp.result {
            Some(response::Result::Execution(r)) => (r.execution.expect("execution"), r.revision),
            Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => {
                return Err(Wrote::Over)
            }
            Some(response::Result::Error(e)) if e.code == Code::Unavailable as i32 => {
                return Err(Wrote::Lost)
            }
            // A broken promise, reported with the others rather than a
            // panic, so that the run ends and shows the rest.
            Some(response::Result::Error(e)) => {
                shared
                    .record()
                    .problems
                    .push(format!("get of {id} answered {e:?}"));
                return Err(Wrote::Aborted);
            }
            other => panic!("unexpected reply to a get of {id}: {other:?}"),
        };
        let status = e.status.clone().unwrap_or_default();
        let tool = format!("t{}", self.w);
        let tool_result = status
            .tool_calls
            .iter()
            .find(|c| c.id == tool)
            .map(|c| c.result.len() as u64);
        let cursor = match status.messages.last() {
            Some(m) if rng.percent(80) => Cursor {
                message_index: status.messages.len() as u32 - 1,
                offset: m.content.len() as u64,
                revision,
                tool_result,
            },
            _ => Cursor {
                message_index: status.messages.len() as u32,
                offset: 0,
                revision,
                tool_result,
            },
        };
        Ok((cursor, e))
    }

    /// One append of one or two tokens (and sometimes more operations),
    /// retried after a lost reply until it is answered; sometimes sent
    /// twice on purpose, as a client whose reply was lost would.
    async fn append(&mut self, shared: &Shared, conn: &mut Conn, id: &str, rng: &mut Rng) -> Wrote {
        let cursor = match self.cursors.get(id) {
            Some(c) => *c,
            None => match self.locate(shared, conn, id, rng).await {
                Ok((c, _)) => c,
                Err(wrote) => return wrote,
            },
        };
        let new_message_type = if rng.percent(10) {
            MessageType::MessageHuman as i32
        } else {
            0
        };
        let mut ops = Vec::new();
        let mut facts = Vec::new();
        let mut offset = cursor.offset;
        for _ in 0..1 + rng.percent(15) as usize {
            let text = self.token(rng);
            ops.push(text_op(
                cursor.message_index,
                offset,
                &text,
                new_message_type,
            ));
            facts.push(Fact {
                execution: id.into(),
                message_index: cursor.message_index,
                offset,
                text: text.clone(),
            });
            offset += text.len() as u64;
        }
        let mut tool_result = cursor.tool_result;
        let tool = format!("t{}", self.w);
        match rng.below(20) {
            0 | 1 => ops.push(Op {
                op: Some(op::Op::PutTodo(PutTodo {
                    key: format!("w{}", self.w),
                    item: Some(TodoItem {
                        id: format!("w{}", self.w),
                        content: format!("n{}", self.n),
                        ..Default::default()
                    }),
                })),
            }),
            2 => {
                ops.push(Op {
                    op: Some(op::Op::PutToolCall(ToolCall {
                        id: tool.clone(),
                        name: format!("grep{}", self.n),
                        status: ToolCallStatus::ToolCallRunning as i32,
                        ..Default::default()
                    })),
                });
                tool_result = Some(0);
            }
            3..=5 if tool_result.is_some() => {
                let text = format!("r{};", self.n);
                let at = tool_result.unwrap_or(0);
                ops.push(Op {
                    op: Some(op::Op::AppendToolResult(AppendToolResult {
                        tool_call_id: tool.clone(),
                        offset: at,
                        text: text.clone(),
                    })),
                });
                tool_result = Some(at + text.len() as u64);
            }
            6 => ops.push(Op {
                op: Some(op::Op::SetPhase(ExecutionPhase::ExecutionInProgress as i32)),
            }),
            _ => {}
        }
        // Compare-and-set against the revision this writer last learnt.
        let expected = (rng.percent(10) && cursor.revision > 0).then_some(cursor.revision);
        let cmd = Cmd::Append(AppendRequest {
            execution_id: id.into(),
            expected_revision: expected,
            ops,
        });
        // None: the first send. Some(None): a retry after a lost reply.
        // Some(Some(r)): a deliberate resend of an append acknowledged at r.
        let mut retry: Option<Option<u64>> = None;
        loop {
            let resp = match conn.wire.call(cmd.clone()).await {
                Ok(resp) => resp,
                Err(Closed) => {
                    conn.reconnect(shared).await;
                    retry = Some(None);
                    continue;
                }
            };
            match resp.result {
                Some(response::Result::Execution(reply)) => {
                    let revision = reply.revision;
                    if reply.execution.is_some() {
                        shared
                            .record()
                            .problems
                            .push(format!("an append to {id} was not answered minimally"));
                    }
                    self.cursors.insert(
                        id.to_string(),
                        Cursor {
                            message_index: cursor.message_index,
                            offset,
                            revision,
                            tool_result,
                        },
                    );
                    match retry {
                        None => {
                            if revision <= conn.last {
                                let msg = format!(
                                    "a writer's revision went from {} to {revision}",
                                    conn.last
                                );
                                shared.record().writer_order.push(msg);
                            }
                            conn.last = revision;
                            shared.ack_append(id, revision, facts.clone(), false);
                            // Sometimes the same append again, as after a
                            // reply lost to a reconnect.
                            if rng.percent(5) {
                                retry = Some(Some(revision));
                                continue;
                            }
                        }
                        Some(original) => {
                            if original.is_none() {
                                shared.retries_after_crash.fetch_add(1, Ordering::Relaxed);
                            }
                            if original.is_some_and(|o| revision < o) {
                                shared.record().problems.push(format!(
                                    "a resent append to {id} was acknowledged at revision {revision}, before the original's {original:?}"
                                ));
                            }
                            shared.ack_append(id, revision, facts.clone(), true);
                        }
                    }
                    return Wrote::Acked;
                }
                // A stale offset that falls inside a character of the
                // text appended since is INVALID_ARGUMENT, not ABORTED
                // (proto/src/delta.rs: "not on a character boundary:
                // Invalid"); both mean "not applied, look again".
                Some(response::Result::Error(e))
                    if e.code == Code::Aborted as i32
                        || (e.code == Code::InvalidArgument as i32
                            && e.message.contains("inside a UTF-8 character")) =>
                {
                    if e.code == Code::Aborted as i32 {
                        shared.aborted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.inside_character.fetch_add(1, Ordering::Relaxed);
                    }
                    self.cursors.remove(id);
                    // Only this writer ever sends these texts: refused,
                    // they are nowhere (a retry of one already applied is
                    // acknowledged, not refused).
                    match self.locate(shared, conn, id, rng).await {
                        Ok((c, state)) => {
                            let ids: HashSet<&str> =
                                tokens(&state).into_iter().map(|(t, _, _)| t).collect();
                            for f in &facts {
                                let t = &f.text[1..f.text.find(':').unwrap_or(1)];
                                if ids.contains(t) {
                                    shared.record().problems.push(format!(
                                        "an append to {id} ({} send) was refused ({}), but its text {:?} is in the state (revision {})",
                                        match retry {
                                            None => "first",
                                            Some(None) => "a retried",
                                            Some(Some(_)) => "a resent",
                                        },
                                        e.message,
                                        f.text,
                                        c.revision
                                    ));
                                }
                            }
                            self.cursors.insert(id.to_string(), c);
                            return Wrote::Aborted;
                        }
                        Err(wrote) => return wrote,
                    }
                }
                Some(response::Result::Error(e))
                    if e.code == Code::FailedPrecondition as i32
                        || e.code == Code::NotFound as i32 =>
                {
                    self.cursors.remove(id);
                    return Wrote::Over;
                }
                Some(response::Result::Error(e)) if e.code == Code::Unavailable as i32 => {
                    conn.reconnect(shared).await;
                    retry = Some(None);
                }
                other => panic!("unexpected reply to an append to {id}: {other:?}"),
            }
        }
    }
}

/// The ender: keeps `executions` live, and every so many acknowledged
/// writes ends one of them mid-stream: completed or cancelled (by a whole
/// status), completed or failed (by an append), or deleted.
pub async fn ender(shared: Arc<Shared>, executions: usize, every: u64, mut rng: Rng) {
    let mut conn = Conn::open(&shared).await;
    let mut acked = shared.acked.subscribe();
    loop {
        // Top up the live set.
        while shared.record().live.len() < executions {
            if let Wrote::Lost = create(&shared, &mut conn.wire, &mut conn.last, "ender").await {
                conn.reconnect(&shared).await;
            }
        }
        let target = *acked.borrow() + 1 + rng.below(every * 2);
        let _ = acked
            .wait_for(|n| *n >= target || shared.stop_writing.load(Ordering::Acquire))
            .await;
        if shared.stop_writing.load(Ordering::Acquire) {
            return;
        }
        let Some(id) = pick_live(&shared, &mut rng) else {
            continue;
        };
        retire(&shared, &id);
        let phase = |p: ExecutionPhase| Op {
            op: Some(op::Op::SetPhase(p as i32)),
        };
        let cmd = match rng.below(5) {
            0 => update_cmd(&id, phase_status(ExecutionPhase::ExecutionCompleted)),
            1 => update_cmd(&id, phase_status(ExecutionPhase::ExecutionCancelled)),
            2 => Cmd::Append(AppendRequest {
                execution_id: id.clone(),
                expected_revision: None,
                ops: vec![phase(ExecutionPhase::ExecutionCompleted)],
            }),
            3 => Cmd::Append(AppendRequest {
                execution_id: id.clone(),
                expected_revision: None,
                ops: vec![
                    Op {
                        op: Some(op::Op::SetError("gave up".into())),
                    },
                    phase(ExecutionPhase::ExecutionFailed),
                ],
            }),
            _ => Cmd::Delete(ApiResourceId { value: id.clone() }),
        };
        if let Wrote::Lost = write(&shared, &mut conn.wire, &mut conn.last, &id, cmd).await {
            conn.reconnect(&shared).await;
        }
    }
}

/// Ends every execution still live (COMPLETED), so that every stream ends.
pub async fn finish_all(shared: &Shared) {
    let (mut wire, _) = shared.connect().await;
    let mut last = 0;
    let ids: Vec<String> = std::mem::take(&mut shared.record().live);
    for id in ids {
        let cmd = update_cmd(&id, phase_status(ExecutionPhase::ExecutionCompleted));
        match write(shared, &mut wire, &mut last, &id, cmd).await {
            Wrote::Acked | Wrote::Over => {}
            Wrote::Lost | Wrote::Aborted => panic!("the daemon went away while finishing {id}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Subscribers

/// One subscriber: picks executions and follows them the way its mode says,
/// until the workload is done.
pub async fn subscriber(
    shared: Arc<Shared>,
    s: usize,
    mut rng: Rng,
    max_stall: Duration,
) -> SubLog {
    let mode = Mode::of(s);
    let mut log = SubLog {
        subscriber: s,
        mode,
        segments: Vec::new(),
    };
    let mut conn: Option<(Wire, u64)> = None;
    for _round in 0..200 {
        if shared.done.load(Ordering::Acquire) {
            break;
        }
        let picked = {
            let r = shared.record();
            let pool = if !r.live.is_empty() && rng.percent(85) {
                &r.live
            } else {
                &r.ids
            };
            (!pool.is_empty()).then(|| {
                (
                    pool[rng.below(pool.len() as u64) as usize].clone(),
                    r.max_seen,
                )
            })
        };
        let Some((execution, max_rev)) = picked else {
            // Nothing created yet: wait for the next acknowledged write.
            let mut acked = shared.acked.subscribe();
            let _ = tokio::time::timeout(STUCK, acked.changed()).await;
            continue;
        };
        let from = if mode == Mode::PastReader {
            match rng.below(3) {
                0 => Some(0),
                1 => {
                    let r = shared.record();
                    let own: Vec<u64> = r
                        .acks
                        .iter()
                        .filter(|(_, (e, _))| *e == execution)
                        .map(|(rev, _)| *rev)
                        .collect();
                    own.get(rng.below(own.len() as u64) as usize)
                        .copied()
                        .or(Some(0))
                }
                _ => Some(rng.below(max_rev + 1)),
            }
        } else {
            None
        };
        // Half the streams ask for deltas, in every mode.
        let deltas = rng.percent(50);
        follow(
            &shared, &mut log, &mut conn, &mut rng, mode, execution, from, deltas, max_stall,
        )
        .await;
    }
    log
}

/// Follows one execution until its stream ends (resuming after drops).
#[allow(clippy::too_many_arguments)]
async fn follow(
    shared: &Shared,
    log: &mut SubLog,
    conn: &mut Option<(Wire, u64)>,
    rng: &mut Rng,
    mode: Mode,
    execution: String,
    mut from: Option<u64>,
    deltas: bool,
    max_stall: Duration,
) {
    let mut resumed = false;
    // A delta stream's state: the last whole state received with the
    // operations of every later DELTA applied, and its revision. Kept
    // across resumes, as the client libraries keep it.
    let mut held: Option<(AgentExecution, u64)> = None;
    // Events to read before dropping the connection (disconnectors) or
    // cancelling (cancellers).
    let mut budget = 1 + rng.below(25);
    loop {
        if conn.is_none() {
            *conn = Some(shared.connect().await);
        }
        let (wire, g) = conn.as_mut().expect("connected");
        let g = *g;
        let sub = wire.id();
        // A resumed delta stream may skip the state it already holds.
        let skip = deltas && resumed && from.is_some() && held.is_some() && rng.percent(50);
        let mut seg = Segment {
            execution: execution.clone(),
            from,
            events: Vec::new(),
            outcome: Outcome::Open,
            cancelled: false,
            resumed,
            deltas,
            skip,
            base: held.as_ref().filter(|_| skip).map(|(_, r)| *r),
        };
        let sent = wire
            .send(
                sub,
                Cmd::Subscribe(SubscribeRequest {
                    execution_id: execution.clone(),
                    from_revision: from,
                    deltas,
                    skip_initial_state: skip,
                    ..Default::default()
                }),
            )
            .await;
        let mut cancel_id = None;
        let mut stalled = false;
        if sent.is_err() {
            seg.outcome = Outcome::Dropped;
        }
        while sent.is_ok() {
            let next = match tokio::time::timeout(STUCK, wire.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    seg.outcome = Outcome::Broken(format!(
                        "no frame for {}s (done: {})",
                        STUCK.as_secs(),
                        shared.done.load(Ordering::Acquire)
                    ));
                    break;
                }
            };
            let resp = match next {
                Ok(resp) => resp,
                Err(Closed) => {
                    seg.outcome = Outcome::Dropped;
                    break;
                }
            };
            if Some(resp.id) == cancel_id {
                match resp.result {
                    Some(response::Result::Cancelled(_)) => {}
                    Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => {}
                    other => {
                        seg.outcome = Outcome::Broken(format!("cancel answered {other:?}"));
                        break;
                    }
                }
                continue;
            }
            if resp.id != sub {
                seg.outcome = Outcome::Broken(format!(
                    "a frame for id {} arrived on a stream with id {sub}: {:?}",
                    resp.id, resp.result
                ));
                break;
            }
            let event = match resp.result {
                Some(response::Result::Event(e)) => e,
                Some(response::Result::Error(e)) => {
                    seg.outcome = Outcome::Error(e.code, e.message);
                    break;
                }
                other => {
                    seg.outcome = Outcome::Broken(format!("not an event: {other:?}"));
                    break;
                }
            };
            shared.events.fetch_add(1, Ordering::Relaxed);
            let facts = shared.observe(&execution, event.revision);
            seg.events.push(receive(&event, &mut held, &facts));
            if event.r#type == END {
                seg.outcome = Outcome::Ended;
                break;
            }
            // The mode's behaviour between reads.
            match mode {
                Mode::Fast | Mode::PastReader => {}
                Mode::Slow => {
                    tokio::time::sleep(Duration::from_millis(1 + rng.below(8))).await;
                }
                Mode::Staller => {
                    // After the first event, and now and then again while
                    // the workload runs (so that streams of both kinds
                    // overflow their queues and catch up from history).
                    let again = !shared.stop_writing.load(Ordering::Acquire) && rng.percent(3);
                    if !stalled || again {
                        stalled = true;
                        let ms = rng.below(max_stall.as_millis() as u64 + 1);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                }
                Mode::Disconnector => {
                    budget = budget.saturating_sub(1);
                    if budget == 0 {
                        break;
                    }
                }
                Mode::Canceller => {
                    budget = budget.saturating_sub(1);
                    if budget == 0 && cancel_id.is_none() {
                        let id = wire.id();
                        cancel_id = Some(id);
                        seg.cancelled = true;
                        let cancel = Cmd::Cancel(CancelSubscriptionRequest {
                            subscription_id: sub,
                        });
                        if wire.send(id, cancel).await.is_err() {
                            seg.outcome = Outcome::Dropped;
                            break;
                        }
                    }
                }
            }
        }
        let ended = matches!(
            seg.outcome,
            Outcome::Ended | Outcome::Error(..) | Outcome::Broken(_)
        );
        if matches!(seg.outcome, Outcome::Open) {
            // A disconnector's voluntary drop.
            seg.outcome = Outcome::Dropped;
            *conn = None;
        } else if matches!(seg.outcome, Outcome::Dropped) {
            // A crash: wait for the restart.
            *conn = None;
            shared.wait_restart(g).await;
        } else if seg.cancelled {
            // Drain a cancel reply that may still be on its way.
            *conn = None;
        }
        // The last revision received (a delta stream's initial state may
        // be older than the revision it resumed from: the execution's last
        // change at or before it).
        let cursor = seg
            .events
            .iter()
            .rev()
            .find(|e| e.kind != END)
            .map(|e| e.revision)
            .max(from);
        log.segments.push(seg);
        if ended {
            return;
        }
        shared.resumes.fetch_add(1, Ordering::Relaxed);
        from = cursor;
        resumed = true;
        budget = 1 + rng.below(25);
    }
}

/// Records one event; on a delta stream, keeps `held` (the state the
/// stream describes) up to date: a whole state replaces it, a DELTA's
/// operations apply to it. Every state, whole or rebuilt, is checked for
/// its appended texts (`facts`: those acknowledged at its revision).
pub fn receive(event: &Event, held: &mut Option<(AgentExecution, u64)>, facts: &[Fact]) -> Ev {
    let mut ev = Ev::of(event);
    let mut problem = None;
    match event.r#type {
        SNAPSHOT | UPDATE | RESYNC => {
            if let Some(e) = &event.execution {
                problem = check_texts(e, facts);
                *held = Some((e.clone(), event.revision));
            }
        }
        DELTA => {
            if event.execution.is_some() {
                problem = Some("a DELTA carrying a whole state".into());
            }
            match held.as_mut() {
                None => {
                    problem = Some("a DELTA with no state to apply it to".into());
                }
                Some((e, revision)) => {
                    // A broken chain (prev_revision) is the checker's to
                    // report; the operations are applied regardless.
                    let status = e.status.get_or_insert_with(Default::default);
                    match stigmer_proto::delta::apply_all(status, &event.ops) {
                        Ok(_) => {}
                        Err(err) => {
                            problem = Some(format!(
                                "the DELTA's operations do not apply to the state at {revision}: {err}"
                            ));
                        }
                    }
                    *revision = event.revision;
                    ev.state = Some(State::of(e));
                    problem = problem.or_else(|| check_texts(e, facts));
                }
            }
        }
        _ => {}
    }
    ev.problem = problem;
    ev
}

// ---------------------------------------------------------------------------
// The committed history and the checker

/// Every committed change of every execution, in revision order.
pub type History = HashMap<String, Vec<(u64, Entry)>>;

/// A broken guarantee, with the smallest trace that shows it.
#[derive(Debug)]
pub struct Violation {
    pub what: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "VIOLATION: {}", self.what)?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// Replays every execution's history from revision 0 (the daemon keeps it
/// all when `--history-retention` is larger than the run). Each state is
/// checked for its appended texts: none twice, and those acknowledged at
/// its revision at their offsets.
pub async fn replay(socket: &Path, ids: &[String], record: &Record) -> (History, Vec<Violation>) {
    let mut wire = Wire::connect(socket).await.expect("connect for replay");
    let mut history = History::new();
    let mut violations = Vec::new();
    for id in ids {
        let sub = wire.id();
        wire.send(
            sub,
            Cmd::Subscribe(SubscribeRequest {
                execution_id: id.clone(),
                from_revision: Some(0),
                ..Default::default()
            }),
        )
        .await
        .expect("send");
        let mut entries = Vec::new();
        loop {
            let resp = tokio::time::timeout(STUCK, wire.recv())
                .await
                .expect("replay stuck")
                .expect("replay connection");
            assert_eq!(resp.id, sub);
            match resp.result {
                Some(response::Result::Event(e)) if e.r#type == UPDATE => {
                    let execution = e.execution.as_ref().expect("state");
                    let facts = facts_of(record, id, e.revision);
                    if let Some(problem) = check_texts(execution, &facts) {
                        violations.push(Violation {
                            what: format!("replay of {id}, revision {}: {problem}", e.revision),
                            trace: vec![],
                        });
                    }
                    entries.push((e.revision, Entry::State(State::of(execution))));
                }
                Some(response::Result::Event(e)) if e.r#type == END => {
                    if e.reason == EndReason::Deleted as i32 {
                        entries.push((e.revision, Entry::Deleted));
                    } else if e.reason != EndReason::Terminal as i32 {
                        violations.push(Violation {
                            what: format!("replay of {id} ended with reason {}", e.reason),
                            trace: vec![],
                        });
                    }
                    break;
                }
                Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => break,
                other => {
                    violations.push(Violation {
                        what: format!("replay of {id} got {other:?}"),
                        trace: vec![],
                    });
                    break;
                }
            }
        }
        if !entries.is_empty() {
            history.insert(id.clone(), entries);
        }
    }
    (history, violations)
}

/// The texts acknowledged at `revision` of `id`.
fn facts_of(record: &Record, id: &str, revision: u64) -> Vec<Fact> {
    record
        .facts
        .get(&revision)
        .map(|f| f.iter().filter(|f| f.execution == id).cloned().collect())
        .unwrap_or_default()
}

/// Replays every execution's history from revision 0 as a delta stream
/// (the create whole, then the operations of each change), rebuilds each
/// state, and checks it against `history` revision by revision: the same
/// changes, the same states, each DELTA applying to the revision before.
/// Answers the violations and the number of DELTA events.
pub async fn replay_deltas(
    socket: &Path,
    ids: &[String],
    history: &History,
) -> (Vec<Violation>, u64) {
    let mut wire = Wire::connect(socket).await.expect("connect for replay");
    let mut violations = Vec::new();
    let mut deltas = 0;
    let empty = Vec::new();
    for id in ids {
        let sub = wire.id();
        wire.send(
            sub,
            Cmd::Subscribe(SubscribeRequest {
                execution_id: id.clone(),
                from_revision: Some(0),
                deltas: true,
                skip_initial_state: false,
                ..Default::default()
            }),
        )
        .await
        .expect("send");
        let want = history.get(id).unwrap_or(&empty);
        let mut got: Vec<(u64, Entry)> = Vec::new();
        let mut held: Option<(AgentExecution, u64)> = None;
        let mut problem = None;
        loop {
            let resp = tokio::time::timeout(STUCK, wire.recv())
                .await
                .expect("delta replay stuck")
                .expect("delta replay connection");
            assert_eq!(resp.id, sub);
            let e = match resp.result {
                Some(response::Result::Event(e)) => e,
                Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => break,
                other => {
                    problem = Some(format!("got {other:?}"));
                    break;
                }
            };
            match e.r#type {
                UPDATE | DELTA => {
                    if e.r#type == DELTA {
                        deltas += 1;
                        let on = held.as_ref().map(|(_, r)| *r);
                        if on != Some(e.prev_revision) {
                            problem = Some(format!(
                                "the DELTA at {} applies to {}, but the last revision received is {on:?}",
                                e.revision, e.prev_revision
                            ));
                        }
                    } else if !got.is_empty() {
                        problem = Some(format!(
                            "a whole state (UPDATE) at {} for a change made by operations",
                            e.revision
                        ));
                    }
                    let ev = receive(&e, &mut held, &[]);
                    problem = problem.or(ev.problem);
                    match ev.state {
                        Some(state) => got.push((e.revision, Entry::State(state))),
                        None => problem = problem.or(Some("an event without a state".into())),
                    }
                }
                END => {
                    if e.reason == EndReason::Deleted as i32 {
                        got.push((e.revision, Entry::Deleted));
                    } else if e.reason != EndReason::Terminal as i32 {
                        problem = Some(format!("the stream ended with reason {}", e.reason));
                    }
                    break;
                }
                other => problem = Some(format!("an event of type {other}")),
            }
            if problem.is_some() {
                break;
            }
        }
        if problem.is_none() && got != *want {
            let first = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            problem = Some(format!(
                "rebuilt {} changes, committed {}; first difference at change {first}: rebuilt {:?}, committed {:?}",
                got.len(),
                want.len(),
                got.get(first).map(|(r, e)| format!("rev {r} {}", e.describe())),
                want.get(first).map(|(r, e)| format!("rev {r} {}", e.describe())),
            ));
        }
        if let Some(problem) = problem {
            violations.push(Violation {
                what: format!("delta replay of {id} from revision 0: {problem}"),
                trace: vec![],
            });
        }
    }
    (violations, deltas)
}

/// The committed history from the acknowledgements alone (complete when no
/// write lost its reply). Appends are there without their states
/// (`Entry::Appended`) until `resolve_appended` fills them in.
pub fn history_from_acks(record: &Record) -> History {
    let mut h = History::new();
    for (rev, (id, entry)) in &record.acks {
        h.entry(id.clone()).or_default().push((*rev, entry.clone()));
    }
    // A resent append applied anew (its message replaced meanwhile) is a
    // change only its retry acknowledged.
    for (rev, id) in &record.retry_acks {
        if !record.acks.contains_key(rev) {
            h.entry(id.clone())
                .or_default()
                .push((*rev, Entry::Appended { terminal: false }));
        }
    }
    for entries in h.values_mut() {
        entries.sort_by_key(|(r, _)| *r);
    }
    h
}

/// Fills in the state of each append the acknowledgements know only by
/// revision (no replay from the daemon: its history was pruned) with what
/// the streams carried at that revision: a whole state if any stream
/// carried one, else a state a delta stream rebuilt. The checker then holds
/// every stream, whole and delta, to that one state. Answers how many stay
/// unknown (no stream delivered that revision).
pub fn resolve_appended(history: &mut History, logs: &[SubLog]) -> (Vec<Violation>, u64) {
    let mut out = Vec::new();
    for whole in [true, false] {
        for log in logs {
            for seg in &log.segments {
                let Some(entries) = history.get_mut(&seg.execution) else {
                    continue;
                };
                for ev in &seg.events {
                    let Some(state) = &ev.state else { continue };
                    if (ev.kind != DELTA) != whole {
                        continue;
                    }
                    let Ok(i) = entries.binary_search_by_key(&ev.revision, |(r, _)| *r) else {
                        continue;
                    };
                    if let Entry::Appended { terminal } = entries[i].1 {
                        if terminal != state.terminal {
                            out.push(Violation {
                                what: format!(
                                    "the append acknowledged at revision {} of {} was {}terminal, the state streamed there is {}",
                                    ev.revision,
                                    seg.execution,
                                    if terminal { "" } else { "not " },
                                    state.summary
                                ),
                                trace: vec![],
                            });
                        }
                        entries[i].1 = Entry::State(state.clone());
                    }
                }
            }
        }
    }
    let unknown = history
        .values()
        .flatten()
        .filter(|(_, e)| matches!(e, Entry::Appended { .. }))
        .count() as u64;
    (out, unknown)
}

/// Checks the replayed history against the acknowledgements: every
/// acknowledged write is there with the acknowledged state (an append: at
/// its revision, terminal or not as it said; its texts were checked by the
/// replay); revisions are unique across executions; nothing follows a
/// terminal state or a delete. With `exact`, the replay holds nothing that
/// was not acknowledged. The writers' own findings are reported here too.
pub fn check_history(record: &Record, replayed: &History, exact: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    for msg in record
        .duplicate_acks
        .iter()
        .chain(&record.writer_order)
        .chain(&record.problems)
    {
        out.push(Violation {
            what: msg.clone(),
            trace: vec![],
        });
    }
    let mut owner: HashMap<u64, &str> = HashMap::new();
    for (id, entries) in replayed {
        let mut last = 0;
        let mut over = false;
        for (rev, entry) in entries {
            if *rev <= last {
                out.push(Violation {
                    what: format!("replay of {id}: revision {rev} after {last}"),
                    trace: vec![],
                });
            }
            if over {
                out.push(Violation {
                    what: format!("replay of {id}: revision {rev} after the execution was over"),
                    trace: vec![],
                });
            }
            over = entry.over();
            last = *rev;
            if let Some(other) = owner.insert(*rev, id) {
                out.push(Violation {
                    what: format!("revision {rev} belongs to both {other} and {id}"),
                    trace: vec![],
                });
            }
            if exact && !record.acks.contains_key(rev) && !record.retry_acks.contains_key(rev) {
                out.push(Violation {
                    what: format!("replay of {id} has revision {rev}, never acknowledged"),
                    trace: vec![],
                });
            }
        }
    }
    for (rev, (id, entry)) in &record.acks {
        let found = replayed
            .get(id)
            .and_then(|h| h.iter().find(|(r, _)| r == rev));
        match found {
            None => out.push(Violation {
                what: format!("acknowledged revision {rev} of {id} is missing"),
                trace: vec![format!("acknowledged: {}", entry.describe())],
            }),
            Some((_, got)) if !entry.acknowledged_as(got) => out.push(Violation {
                what: format!("revision {rev} of {id} differs from its acknowledgement"),
                trace: vec![
                    format!("acknowledged: {}", entry.describe()),
                    format!("replayed:     {}", got.describe()),
                ],
            }),
            Some(_) => {}
        }
    }
    for (rev, id) in &record.retry_acks {
        let found = replayed.get(id).is_some_and(|h| {
            h.iter()
                .any(|(r, e)| r == rev && !matches!(e, Entry::Deleted))
        });
        if !found {
            out.push(Violation {
                what: format!(
                    "a retried append to {id} was acknowledged at revision {rev}, which is not a state of {id}"
                ),
                trace: vec![],
            });
        }
    }
    out
}

/// The appended texts in the final state `e` of `id` (`get`, after the
/// run): each acknowledged text is there exactly once, where it was
/// acknowledged, unless a later change replaced the messages (a whole
/// status, or a change whose acknowledgement a crash lost).
pub fn check_final_texts(
    record: &Record,
    history: &History,
    id: &str,
    e: &AgentExecution,
) -> Vec<Violation> {
    let empty = Vec::new();
    let replaced = record.replaced.get(id).unwrap_or(&empty);
    let unacknowledged: Vec<u64> = history
        .get(id)
        .map(|h| {
            h.iter()
                .map(|(r, _)| *r)
                .filter(|r| !record.acks.contains_key(r) && !record.retry_acks.contains_key(r))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (t, _, _) in tokens(e) {
        *count.entry(t).or_default() += 1;
    }
    let mut checked = HashSet::new();
    for (rev, facts) in &record.facts {
        if replaced.iter().chain(&unacknowledged).any(|r| r > rev) {
            continue;
        }
        for f in facts.iter().filter(|f| f.execution == id) {
            if !checked.insert(&f.text) {
                continue;
            }
            let t = &f.text[1..f.text.find(':').unwrap_or(1)];
            let n = count.get(t).copied().unwrap_or(0);
            let problem = if n != 1 {
                Some(format!("is there {n} times"))
            } else {
                check_texts(e, std::slice::from_ref(f))
            };
            if let Some(problem) = problem {
                out.push(Violation {
                    what: format!(
                        "the text {:?} appended to {id} (acknowledged at revision {rev}) {problem} in its final state",
                        f.text
                    ),
                    trace: vec![],
                });
            }
        }
    }
    out
}

/// Counts of what the checker looked at.
#[derive(Debug, Default)]
pub struct Checked {
    pub segments: u64,
    pub events: u64,
    pub resyncs: u64,
    pub resumed: u64,
    pub ends: u64,
    /// Delta streams: subscribe requests, DELTA events, resumes that
    /// skipped the initial state, and resumes that started with it.
    pub delta_segments: u64,
    pub deltas: u64,
    pub skipped: u64,
    pub initial_states: u64,
}

/// Checks every subscriber's segments against `history`.
pub fn check_subscribers(
    logs: &[SubLog],
    history: &History,
    allow_resync: bool,
    counts: &mut Checked,
) -> Vec<Violation> {
    let empty = Vec::new();
    let mut out = Vec::new();
    for log in logs {
        let mut cursor: Option<u64> = None;
        for (i, seg) in log.segments.iter().enumerate() {
            let h = history.get(&seg.execution).unwrap_or(&empty);
            if !seg.resumed {
                cursor = seg.from;
            } else if seg.from != cursor {
                out.push(Violation {
                    what: format!(
                        "subscriber {} resumed from {:?} instead of its last revision {cursor:?}",
                        log.subscriber, seg.from
                    ),
                    trace: vec![],
                });
            }
            counts.segments += 1;
            counts.events += seg.events.len() as u64;
            counts.resumed += seg.resumed as u64;
            counts.resyncs += seg.events.iter().filter(|e| e.kind == RESYNC).count() as u64;
            counts.ends += seg.events.iter().filter(|e| e.kind == END).count() as u64;
            if seg.deltas {
                counts.delta_segments += 1;
                counts.deltas += seg.events.iter().filter(|e| e.kind == DELTA).count() as u64;
                counts.skipped += seg.skip as u64;
                counts.initial_states += (seg.from.is_some()
                    && seg.events.first().is_some_and(|e| e.kind == SNAPSHOT))
                    as u64;
            }
            if let Err(mut v) = check_segment(h, seg, &mut cursor, allow_resync) {
                v.trace.insert(
                    0,
                    format!(
                        "subscriber {} ({:?}), segment {i}: subscribe {} from {:?}{}{}",
                        log.subscriber,
                        log.mode,
                        seg.execution,
                        seg.from,
                        match (seg.deltas, seg.skip) {
                            (false, _) => String::new(),
                            (true, false) => ", deltas".into(),
                            (true, true) => format!(
                                ", deltas, skip_initial_state (holding revision {:?})",
                                seg.base
                            ),
                        },
                        if seg.resumed { " (a resume)" } else { "" }
                    ),
                );
                out.push(v);
                // Later segments of this subscriber build on a broken one.
                break;
            }
        }
    }
    out
}

/// Checks one segment; `cursor` is the last revision delivered before it
/// (None: nothing yet) and becomes the last delivered by it.
///
/// A delta segment is checked as the stream of states it describes (the
/// subscriber rebuilt each DELTA's state), under the same rules as a
/// whole-state one, and also: each DELTA applies to the revision of the
/// stream's previous state (`prev_revision`), which is the execution's
/// previous change; its operations applied cleanly; only a create comes
/// whole (UPDATE); a resume without `skip_initial_state` starts with the
/// state at its `from_revision` (a SNAPSHOT at the execution's last change
/// at or before it), one with it starts with the next change.
pub fn check_segment(
    h: &[(u64, Entry)],
    seg: &Segment,
    cursor: &mut Option<u64>,
    allow_resync: bool,
) -> Result<(), Violation> {
    let fail = |what: String, seg: &Segment, upto: usize, cursor: Option<u64>| -> Violation {
        let mut trace = Vec::new();
        let first = upto.saturating_sub(2);
        if first > 0 {
            trace.push(format!("  ... {first} earlier events"));
        }
        if seg.events.is_empty() {
            trace.push("  received  nothing".into());
        } else {
            for e in &seg.events[first..=upto.min(seg.events.len() - 1)] {
                trace.push(format!("  received  {}", e.describe()));
            }
        }
        let lo = cursor.unwrap_or(0);
        let hi = seg.events.get(upto).map(|e| e.revision).unwrap_or(u64::MAX);
        let window: Vec<&(u64, Entry)> = h
            .iter()
            .filter(|(r, _)| *r > lo.saturating_sub(1) && (*r <= hi || hi < lo))
            .collect();
        trace.push(format!(
            "committed history of {} after revision {lo} ({} changes in all, last {:?}):",
            seg.execution,
            h.len(),
            h.last().map(|(r, e)| format!("rev {r} {}", e.describe()))
        ));
        let shown = window.len().min(6);
        for (r, e) in &window[..shown] {
            trace.push(format!("  committed rev {r} {}", e.describe()));
        }
        if window.len() > shown {
            trace.push(format!("  ... and {} more", window.len() - shown));
        }
        if window.is_empty() {
            trace.push("  (none)".into());
        }
        Violation { what, trace }
    };
    let state_at = |rev: u64| h.iter().find(|(r, _)| *r == rev).map(|(_, e)| e);
    let next_after = |c: Option<u64>| h.iter().find(|(r, _)| c.is_none_or(|c| *r > c));
    let before = |rev: u64| h.iter().rev().find(|(r, _)| *r < rev).map(|(r, _)| *r);
    let at_or_before = |rev: u64| h.iter().rev().find(|(r, _)| *r <= rev);
    let deleted_at = h
        .iter()
        .find(|(_, e)| *e == Entry::Deleted)
        .map(|(r, _)| *r);
    let mut terminal_delivered = false;
    let mut delivered_any = false;
    // The revision of the state a delta stream holds (a DELTA applies to it).
    let mut held = if seg.skip { seg.base } else { None };
    // A delta stream resumed without skip_initial_state starts with the
    // state at its from_revision, if the execution had one then (with
    // pruned history the daemon may not be able to rebuild it: a RESYNC).
    if let (true, false, Some(from), Some(first)) =
        (seg.deltas, seg.skip, seg.from, seg.events.first())
    {
        let had_state = at_or_before(from).is_some_and(|(_, e)| *e != Entry::Deleted);
        if had_state && first.kind != SNAPSHOT && !allow_resync {
            return Err(fail(
                format!(
                    "a delta stream from revision {from} without skip_initial_state did not start with the state at {from}"
                ),
                seg,
                0,
                *cursor,
            ));
        }
    }
    for (i, ev) in seg.events.iter().enumerate() {
        let c = *cursor;
        if let Some(problem) = &ev.problem {
            return Err(fail(problem.clone(), seg, i, c));
        }
        if terminal_delivered && ev.kind != END {
            return Err(fail(
                "an event after the terminal state (the stream should have ended)".into(),
                seg,
                i,
                c,
            ));
        }
        match ev.kind {
            SNAPSHOT | UPDATE | RESYNC | DELTA => {
                // The whole state at from_revision a resumed delta stream
                // starts with (not after its from_revision).
                let initial = ev.kind == SNAPSHOT && i == 0 && seg.deltas && !seg.skip;
                let initial = initial.then_some(seg.from).flatten();
                if ev.kind == SNAPSHOT && initial.is_none() && (i != 0 || seg.from.is_some()) {
                    return Err(fail(
                        "a SNAPSHOT that is not the first event of a stream without from_revision \
                         (nor the initial state of a delta stream resumed without skip_initial_state)"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                if ev.kind == DELTA && !seg.deltas {
                    return Err(fail(
                        "a DELTA on a stream that did not ask for deltas".into(),
                        seg,
                        i,
                        c,
                    ));
                }
                if let Some(from) = initial {
                    let want = at_or_before(from).map(|(r, _)| *r);
                    if want != Some(ev.revision) {
                        return Err(fail(
                            format!(
                                "the initial state of a delta stream from revision {from} is at {}, but the execution's last change at or before {from} is {want:?}",
                                ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                } else if let Some(c) = c {
                    if ev.revision <= c {
                        return Err(fail(
                            format!(
                                "revision {} is not after {c} (out of order or duplicate)",
                                ev.revision
                            ),
                            seg,
                            i,
                            Some(c),
                        ));
                    }
                }
                let Some(got) = &ev.state else {
                    return Err(fail("a state event without a state".into(), seg, i, c));
                };
                match state_at(ev.revision) {
                    Some(Entry::State(want)) if want == got => {}
                    // An append whose state no whole-state stream carried
                    // and no replay shows: nothing to compare with.
                    Some(Entry::Appended { terminal }) if *terminal == got.terminal => {}
                    Some(Entry::State(_)) | Some(Entry::Appended { .. }) => {
                        return Err(fail(
                            format!(
                                "the state at revision {} is not the committed one{}",
                                ev.revision,
                                if ev.kind == DELTA {
                                    " (as rebuilt from the DELTA)"
                                } else {
                                    ""
                                }
                            ),
                            seg,
                            i,
                            c,
                        ))
                    }
                    _ => {
                        return Err(fail(
                            format!(
                                "revision {} is not a committed change of this execution",
                                ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ))
                    }
                }
                if (ev.kind == UPDATE || ev.kind == DELTA)
                    && (c.is_some() || seg.from.is_some())
                    && initial.is_none()
                {
                    let want = next_after(c).map(|(r, _)| *r);
                    if want != Some(ev.revision) {
                        return Err(fail(
                            format!(
                                "gap: expected revision {want:?} next, received {}",
                                ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                }
                if ev.kind == DELTA {
                    if held != Some(ev.prev_revision) {
                        return Err(fail(
                            format!(
                                "a DELTA applying to revision {}, but the stream's last state is at {held:?}",
                                ev.prev_revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                    let committed = before(ev.revision);
                    if committed != Some(ev.prev_revision) {
                        return Err(fail(
                            format!(
                                "a DELTA applying to revision {}, but the execution's change before {} is {committed:?}",
                                ev.prev_revision, ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                }
                if ev.kind == UPDATE
                    && seg.deltas
                    && h.first().is_some_and(|(r, _)| *r != ev.revision)
                {
                    return Err(fail(
                        "a whole state (UPDATE) on a delta stream for a change made by operations"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                if ev.kind == RESYNC && !allow_resync {
                    return Err(fail(
                        "RESYNC although the history reaches back (retention larger than the run)"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                *cursor = Some(ev.revision).max(initial);
                held = Some(ev.revision);
                delivered_any = true;
                terminal_delivered = got.terminal;
            }
            END => {
                if i + 1 != seg.events.len() {
                    return Err(fail("events after END".into(), seg, i + 1, c));
                }
                let reason = EndReason::try_from(ev.reason).unwrap_or(EndReason::Unspecified);
                match reason {
                    EndReason::Terminal => {
                        // The terminal state was delivered in this stream,
                        // or (a resume) at or before the cursor.
                        let last = h.last();
                        let ok = terminal_delivered
                            || (!delivered_any
                                && matches!(last, Some((r, e))
                                    if e.terminal_state() && c.is_some_and(|c| *r <= c)));
                        if !ok {
                            return Err(fail(
                                "END_REASON_TERMINAL before the terminal state was delivered"
                                    .into(),
                                seg,
                                i,
                                c,
                            ));
                        }
                        if Some(ev.revision) != c && !(c.is_none() && ev.revision == 0) {
                            return Err(fail(
                                format!(
                                    "END revision {} is not the last delivered {c:?}",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                    }
                    EndReason::Deleted => {
                        let want = next_after(c).map(|(r, _)| *r);
                        // With pruned history, the changes before the delete
                        // may be skipped (the END says it is gone).
                        let skipped = want != deleted_at && c.is_some() && !allow_resync;
                        if deleted_at.is_none() || skipped {
                            return Err(fail(
                                format!(
                                    "END_REASON_DELETED at {} but the next committed change is {want:?} (delete at {deleted_at:?})",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                        // A stream that had to resync once the delete
                        // itself was pruned (its tombstone goes with the
                        // history) cannot know the delete's revision: it
                        // ends at the last revision it delivered.
                        let forgotten = allow_resync && Some(ev.revision) == c;
                        if Some(ev.revision) != deleted_at && !forgotten {
                            return Err(fail(
                                format!(
                                    "END_REASON_DELETED revision {} is not the delete's {deleted_at:?}",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                        *cursor = Some(ev.revision);
                    }
                    EndReason::Cancelled if seg.cancelled => {
                        if Some(ev.revision) != c && !(c.is_none() && ev.revision == 0) {
                            return Err(fail(
                                format!(
                                    "END revision {} is not the last delivered {c:?}",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                    }
                    other => {
                        return Err(fail(format!("unexpected END reason {other:?}"), seg, i, c));
                    }
                }
            }
            other => return Err(fail(format!("unknown event type {other}"), seg, i, c)),
        }
    }
    let last_i = seg.events.len().saturating_sub(1);
    match &seg.outcome {
        Outcome::Ended => Ok(()),
        Outcome::Dropped | Outcome::Open => Ok(()),
        Outcome::Error(code, message) => {
            let not_found = *code == Code::NotFound as i32;
            let allowed = not_found
                && seg.events.is_empty()
                && match (seg.from, deleted_at) {
                    // Never created (a create whose reply was lost, or none).
                    _ if h.is_empty() => true,
                    // Snapshot of a deleted execution.
                    (None, Some(_)) => true,
                    // Resume after the delete, or (history pruned) from
                    // before a delete the daemon no longer remembers.
                    (Some(r), Some(d)) => d <= r || allow_resync,
                    _ => false,
                };
            if allowed {
                Ok(())
            } else {
                Err(fail(
                    format!("error reply {code} ({message})"),
                    seg,
                    last_i,
                    *cursor,
                ))
            }
        }
        Outcome::Broken(why) => Err(fail(why.clone(), seg, last_i, *cursor)),
    }
}
