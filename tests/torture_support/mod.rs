//! The watch checker behind `tests/torture.rs`: a workload of writers,
//! subscribers of every kind and (optionally) a killer, a record of every
//! acknowledged write and every event received, and a checker that holds
//! each subscriber's events against the committed history.
//!
//! Everything random comes from one seed (printed, and settable with
//! `TORTURE_SEED`), so a failing run can be replayed with the same choices
//! (the interleavings still vary: the daemon runs on real threads).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
    AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_proto::apiresource::{ApiResourceId, ApiResourceMetadata};
use stigmer_proto::daemon::{
    request::Command as Cmd, response, CancelSubscriptionRequest, Code, EndReason, Event,
    EventType, Request, Response, SubscribeRequest,
};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

pub const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
pub const UPDATE: i32 = EventType::EventUpdate as i32;
pub const RESYNC: i32 = EventType::EventResync as i32;
pub const END: i32 = EventType::EventEnd as i32;

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
    Deleted,
}

impl Entry {
    fn describe(&self) -> String {
        match self {
            Entry::State(s) => s.summary.clone(),
            Entry::Deleted => "DELETED".into(),
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
    pub state: Option<State>,
    pub reason: i32,
}

impl Ev {
    pub fn of(e: &Event) -> Ev {
        Ev {
            kind: e.r#type,
            revision: e.revision,
            state: e.execution.as_ref().map(State::of),
            reason: e.reason,
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

/// Every acknowledged write, keyed by revision.
#[derive(Default)]
pub struct Record {
    pub acks: BTreeMap<u64, (String, Entry)>,
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

    fn saw(&self, revision: u64) {
        let mut r = self.record();
        r.max_seen = r.max_seen.max(revision);
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

fn update_cmd(id: &str, status: AgentExecutionStatus) -> Cmd {
    Cmd::UpdateStatus(AgentExecutionUpdateStatusInput {
        execution_id: id.into(),
        status: Some(status),
    })
}

fn message_status(text: String) -> AgentExecutionStatus {
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

fn phase_status(p: ExecutionPhase) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: p as i32,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Writers

/// A write's fate.
enum Wrote {
    Acked,
    /// Refused: the execution is over (terminal or deleted).
    Over,
    /// The connection broke: unknown whether it committed.
    Lost,
}

/// Sends one write and records its acknowledgement.
async fn write(shared: &Shared, wire: &mut Wire, last: &mut u64, id: &str, cmd: Cmd) -> Wrote {
    let is_delete = matches!(cmd, Cmd::Delete(_));
    let resp = match wire.call(cmd).await {
        Ok(resp) => resp,
        Err(Closed) => return Wrote::Lost,
    };
    let (revision, entry) = match resp.result {
        Some(response::Result::Execution(reply)) => (
            reply.revision,
            Entry::State(State::of(&reply.execution.expect("execution"))),
        ),
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

/// A writer: status updates of random sizes to random live executions until
/// told to stop; reconnects after a crash.
pub async fn writer(shared: Arc<Shared>, w: usize, mut rng: Rng) {
    let (mut wire, mut g) = shared.connect().await;
    let mut last = 0;
    let mut n = 0u64;
    while !shared.stop_writing.load(Ordering::Acquire) {
        let Some(id) = pick_live(&shared, &mut rng) else {
            // The ender keeps executions live; until it has, create one.
            if let Wrote::Lost = create(&shared, &mut wire, &mut last, "writer").await {
                shared.wait_restart(g).await;
                (wire, g) = shared.connect().await;
                last = 0;
            }
            continue;
        };
        n += 1;
        let pad = match rng.below(10) {
            0 => 4000,
            1..=3 => 400,
            _ => 10,
        };
        let text = format!("w{w} n{n} {}", "x".repeat(rng.below(pad) as usize));
        match write(
            &shared,
            &mut wire,
            &mut last,
            &id,
            update_cmd(&id, message_status(text)),
        )
        .await
        {
            Wrote::Acked => {}
            Wrote::Over => retire(&shared, &id),
            Wrote::Lost => {
                shared.wait_restart(g).await;
                (wire, g) = shared.connect().await;
                last = 0;
            }
        }
    }
}

/// The ender: keeps `executions` live, and every so many acknowledged
/// writes ends one of them mid-stream: completed, cancelled
/// (EXECUTION_CANCELLED) or deleted.
pub async fn ender(shared: Arc<Shared>, executions: usize, every: u64, mut rng: Rng) {
    let (mut wire, mut g) = shared.connect().await;
    let mut last = 0;
    let mut acked = shared.acked.subscribe();
    loop {
        // Top up the live set.
        while shared.record().live.len() < executions {
            if let Wrote::Lost = create(&shared, &mut wire, &mut last, "ender").await {
                shared.wait_restart(g).await;
                (wire, g) = shared.connect().await;
                last = 0;
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
        let cmd = match rng.below(3) {
            0 => update_cmd(&id, phase_status(ExecutionPhase::ExecutionCompleted)),
            1 => update_cmd(&id, phase_status(ExecutionPhase::ExecutionCancelled)),
            _ => Cmd::Delete(ApiResourceId { value: id.clone() }),
        };
        if let Wrote::Lost = write(&shared, &mut wire, &mut last, &id, cmd).await {
            shared.wait_restart(g).await;
            (wire, g) = shared.connect().await;
            last = 0;
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
            Wrote::Lost => panic!("the daemon went away while finishing {id}"),
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
        follow(
            &shared, &mut log, &mut conn, &mut rng, mode, execution, from, max_stall,
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
    max_stall: Duration,
) {
    let mut resumed = false;
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
        let mut seg = Segment {
            execution: execution.clone(),
            from,
            events: Vec::new(),
            outcome: Outcome::Open,
            cancelled: false,
            resumed,
        };
        let sent = wire
            .send(
                sub,
                Cmd::Subscribe(SubscribeRequest {
                    execution_id: execution.clone(),
                    from_revision: from,
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
            shared.saw(event.revision);
            let ev = Ev::of(&event);
            seg.events.push(ev);
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
                    if !stalled {
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
        let cursor = seg
            .events
            .iter()
            .rev()
            .find(|e| e.kind != END)
            .map(|e| e.revision)
            .or(from);
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
/// all when `--history-retention` is larger than the run).
pub async fn replay(socket: &Path, ids: &[String]) -> (History, Vec<Violation>) {
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
                    let state = State::of(e.execution.as_ref().expect("state"));
                    entries.push((e.revision, Entry::State(state)));
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

/// The committed history from the acknowledgements alone (complete when no
/// write lost its reply).
pub fn history_from_acks(record: &Record) -> History {
    let mut h = History::new();
    for (rev, (id, entry)) in &record.acks {
        h.entry(id.clone()).or_default().push((*rev, entry.clone()));
    }
    h
}

/// Checks the replayed history against the acknowledgements: every
/// acknowledged write is there with the acknowledged state; revisions are
/// unique across executions; nothing follows a terminal state or a delete.
/// With `exact`, the replay holds nothing that was not acknowledged.
pub fn check_history(record: &Record, replayed: &History, exact: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    for msg in record.duplicate_acks.iter().chain(&record.writer_order) {
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
            over = match entry {
                Entry::Deleted => true,
                Entry::State(s) => s.terminal,
            };
            last = *rev;
            if let Some(other) = owner.insert(*rev, id) {
                out.push(Violation {
                    what: format!("revision {rev} belongs to both {other} and {id}"),
                    trace: vec![],
                });
            }
            if exact && !record.acks.contains_key(rev) {
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
            Some((_, got)) if got != entry => out.push(Violation {
                what: format!("revision {rev} of {id} differs from its acknowledgement"),
                trace: vec![
                    format!("acknowledged: {}", entry.describe()),
                    format!("replayed:     {}", got.describe()),
                ],
            }),
            Some(_) => {}
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
            if let Err(mut v) = check_segment(h, seg, &mut cursor, allow_resync) {
                v.trace.insert(
                    0,
                    format!(
                        "subscriber {} ({:?}), segment {i}: subscribe {} from {:?}{}",
                        log.subscriber,
                        log.mode,
                        seg.execution,
                        seg.from,
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
    let deleted_at = h
        .iter()
        .find(|(_, e)| *e == Entry::Deleted)
        .map(|(r, _)| *r);
    let mut terminal_delivered = false;
    let mut delivered_any = false;
    for (i, ev) in seg.events.iter().enumerate() {
        let c = *cursor;
        if terminal_delivered && ev.kind != END {
            return Err(fail(
                "an event after the terminal state (the stream should have ended)".into(),
                seg,
                i,
                c,
            ));
        }
        match ev.kind {
            SNAPSHOT | UPDATE | RESYNC => {
                if ev.kind == SNAPSHOT && (i != 0 || seg.from.is_some()) {
                    return Err(fail(
                        "a SNAPSHOT that is not the first event of a stream without from_revision"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                if let Some(c) = c {
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
                    Some(Entry::State(_)) => {
                        return Err(fail(
                            format!(
                                "the state at revision {} is not the committed one",
                                ev.revision
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
                if ev.kind == UPDATE && (c.is_some() || seg.from.is_some()) {
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
                if ev.kind == RESYNC && !allow_resync {
                    return Err(fail(
                        "RESYNC although the history reaches back (retention larger than the run)"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                *cursor = Some(ev.revision);
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
                                && matches!(last, Some((r, Entry::State(s)))
                                    if s.terminal && c.is_some_and(|c| *r <= c)));
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
                        if Some(ev.revision) != deleted_at {
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
        Outcome::Dropped | Outcome::Open => {
            if terminal_delivered {
                // Fine only if the connection was dropped (a crash or a
                // disconnector's choice) before END could arrive.
            }
            Ok(())
        }
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
