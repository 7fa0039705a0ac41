//! The transcript scenario (issue 16, `--only transcript`): `runners`
//! runners, each streaming `tokens` tokens into its own execution, with one
//! subscriber each, in two modes on the stigmer side and two on the Redis
//! side, run in turn (the order rotating each round):
//!
//! - stigmer, upstream's mode: the whole cumulative status (`update_status`
//!   with `minimal_reply`) every `every` tokens, read by a delta
//!   subscriber (the daemon diffs each status into operations);
//! - stigmer, append mode: one `append` (an `AppendText` at the tracked
//!   offset) per token, read by a delta subscriber;
//! - Redis, upstream's pattern: `XADD` of the whole status every `every`
//!   tokens to a stream per execution, read by one `XREAD BLOCK` consumer
//!   per stream;
//! - Redis pub/sub: one `PUBLISH` per token, one subscriber per channel.
//!
//! The status has one shape everywhere: phase IN_PROGRESS and one AI
//! message growing by a token ("word " style, 4-6 bytes) at a time; each run
//! ends with the phase COMPLETED (the stigmer streams then END; the pub/sub
//! side has no state to complete).
//!
//! Each runner waits for the acknowledgement of each request before the
//! next, as a runner's client does, and produces its tokens at `rate` per
//! second (0: as fast as the acknowledgements allow). A token's latency runs
//! from the moment its runner produced it to the moment its subscriber holds
//! it: in append mode and for PUBLISH that is the token's own request; in
//! upstream's mode the token waits for the update that carries it, so the
//! latency from that update's send is reported beside it.
//!
//! Every loop is bounded: a connection that stays silent for `STALL` fails
//! the run.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use stigmer_proto::agentexecution::{AgentExecutionStatus, ExecutionPhase};
use stigmer_proto::daemon::{op, EventType, Op};
use tokio::task::JoinSet;

use crate::procs;
use crate::redis::{self, Resp, Value};
use crate::scenarios::{latency_of, Latency, HISTORY_RETENTION};
use crate::stig::{self, Frame};
use crate::wire::{invalid, AsyncConn, Parse};

/// How long any connection may stay silent before the run fails.
const STALL: Duration = Duration::from_secs(30);
/// Before a stigmer mode's run: time for the checkpointer to fold the
/// creates into the database and empty the WAL, so the run's growth is the
/// run's own.
const SETTLE: Duration = Duration::from_millis(3000);
/// After a stigmer mode's run: time for the checkpointer to copy the WAL
/// into the database (within a second of the last commit) and, the daemon
/// being quiet a second later, to empty the WAL file (TRUNCATE).
pub const CHECKPOINT_WAIT: Duration = Duration::from_millis(3000);
/// The request id of every subscription.
const SUB_ID: u64 = 1;

/// The scenario's settings (from the command line).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub runners: usize,
    pub tokens: usize,
    /// Upstream's mode: tokens per whole-status update.
    pub every: usize,
    /// Tokens per second per runner; 0: as fast as acknowledgements allow.
    pub rate: f64,
}

impl Settings {
    /// Revisions a stigmer mode commits (for `--history-retention`): every
    /// token's, plus the create and the completion of each execution.
    pub fn revisions(&self) -> u64 {
        (self.runners * (self.tokens + 2)) as u64
    }
}

/// Words of 3-5 letters and a space: tokens of 4-6 bytes, as a model's
/// word-sized tokens are.
const WORDS: [&str; 16] = [
    "the ", "and ", "for ", "run ", "tool ", "data ", "code ", "step ", "file ", "with ", "model ",
    "agent ", "token ", "write ", "reads ", "plan ",
];

/// The tokens every runner streams, in order (the same sequence for all),
/// and where each ends in the AI message's content (UTF-8 bytes).
pub struct Tokens {
    pub text: Vec<&'static str>,
    pub ends: Vec<u64>,
}

impl Tokens {
    pub fn new(n: usize) -> Tokens {
        // A fixed LCG: the same words every run.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let (mut text, mut ends) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut end = 0u64;
        for _ in 0..n {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let word = WORDS[(x >> 33) as usize % WORDS.len()];
            end += word.len() as u64;
            text.push(word);
            ends.push(end);
        }
        Tokens { text, ends }
    }

    /// The final AI message's length in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    fn content(&self) -> String {
        self.text.concat()
    }
}

/// The database's files, for their growth.
#[derive(Clone, Copy, Debug, Default)]
pub struct Files {
    pub db: u64,
    pub wal: u64,
}

impl Files {
    fn of(db: &Path) -> Files {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Files {
            db: procs::file_size(db),
            wal: procs::file_size(&PathBuf::from(wal)),
        }
    }

    pub fn total(&self) -> u64 {
        self.db + self.wal
    }
}

/// What a stigmer mode wrote to storage.
#[derive(Clone, Copy, Debug, Default)]
pub struct Disk {
    /// The database and WAL files before the run, right after it, and
    /// `CHECKPOINT_WAIT` later.
    pub before: Files,
    pub after_run: Files,
    pub after_checkpoint: Files,
    /// The daemon's `write_bytes` (/proc/<pid>/io) from before the run to
    /// right after it, and to after the checkpoint wait.
    pub written_run: u64,
    pub written_checkpoint: u64,
    /// `write_bytes` over the first and the last quarter of the tokens (by
    /// the tokens the subscribers held).
    pub written_first_quarter: u64,
    pub written_last_quarter: u64,
}

/// One mode's measurements (all runners together).
#[derive(Clone, Debug, Default)]
pub struct Mode {
    pub tokens: u64,
    /// Requests the runners sent (updates, appends, XADDs, PUBLISHes),
    /// completions included.
    pub requests: u64,
    /// From the first token to the last subscriber done.
    pub seconds: f64,
    /// From a token's production to its subscriber holding it.
    pub latency: Latency,
    /// From the send of the request that carried a token to its subscriber
    /// holding it (the same as `latency` where each token has its request).
    pub latency_from_send: Latency,
    /// Bytes the subscribers read off their sockets (the first snapshot or
    /// subscribe confirmation included), and the messages they read.
    pub sub_bytes: u64,
    pub sub_events: u64,
    /// Subscriber bytes over the first and the last quarter of the tokens.
    pub sub_first_quarter: u64,
    pub sub_last_quarter: u64,
    pub resyncs: u64,
    /// The encoded final states (the whole `AgentExecution` a `get`
    /// returns; on Redis the last status entry), summed over executions.
    pub final_state_bytes: u64,
    /// Server CPU over the run (stigmer: to after the checkpoint wait).
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
    pub idle: f64,
    /// stigmer only.
    pub disk: Disk,
}

impl Mode {
    pub fn per_token(&self, x: f64) -> f64 {
        if self.tokens > 0 {
            x / self.tokens as f64
        } else {
            0.0
        }
    }
}

/// The send times of one runner's tokens, in ns since the run's start.
struct Times {
    base: Instant,
    produced: Vec<AtomicU64>,
    sent: Vec<AtomicU64>,
}

impl Times {
    fn new(base: Instant, n: usize) -> Times {
        Times {
            base,
            produced: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// A subscriber's progress through the tokens.
struct Held {
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    delivered: Arc<AtomicU64>,
    next: usize,
    from_produced: Vec<Duration>,
    from_sent: Vec<Duration>,
    start_bytes: u64,
    first_quarter: Option<u64>,
    third_quarter: Option<u64>,
    last_token: Option<u64>,
}

/// What one subscriber saw.
struct Seen {
    from_produced: Vec<Duration>,
    from_sent: Vec<Duration>,
    bytes: u64,
    events: u64,
    first_quarter: u64,
    last_quarter: u64,
    resyncs: u64,
}

impl Held {
    fn new(tokens: Arc<Tokens>, times: Arc<Times>, delivered: Arc<AtomicU64>) -> Held {
        let n = tokens.len();
        Held {
            tokens,
            times,
            delivered,
            next: 0,
            from_produced: Vec::with_capacity(n),
            from_sent: Vec::with_capacity(n),
            start_bytes: 0,
            first_quarter: None,
            third_quarter: None,
            last_token: None,
        }
    }

    /// The message now holds `len` bytes; `consumed` bytes have been read.
    fn advance(&mut self, len: u64, consumed: u64) {
        let now = self.times.now();
        let n = self.tokens.len();
        let from = self.next;
        while self.next < n && self.tokens.ends[self.next] <= len {
            let i = self.next;
            let produced = self.times.produced[i].load(Ordering::Relaxed);
            let sent = self.times.sent[i].load(Ordering::Relaxed);
            self.from_produced
                .push(Duration::from_nanos(now.saturating_sub(produced)));
            self.from_sent
                .push(Duration::from_nanos(now.saturating_sub(sent)));
            self.next += 1;
        }
        if self.next == from {
            return;
        }
        self.delivered
            .fetch_add((self.next - from) as u64, Ordering::Relaxed);
        if self.first_quarter.is_none() && self.next >= n / 4 {
            self.first_quarter = Some(consumed);
        }
        if self.third_quarter.is_none() && self.next >= n - n / 4 {
            self.third_quarter = Some(consumed);
        }
        if self.last_token.is_none() && self.next == n {
            self.last_token = Some(consumed);
        }
    }

    fn done(&self) -> bool {
        self.next == self.tokens.len()
    }

    fn finish(self, bytes: u64, events: u64, resyncs: u64) -> io::Result<Seen> {
        if !self.done() {
            return Err(invalid(format!(
                "the stream ended at token {} of {}",
                self.next,
                self.tokens.len()
            )));
        }
        let q1 = self.first_quarter.unwrap_or(bytes);
        let q3 = self.third_quarter.unwrap_or(bytes);
        let last = self.last_token.unwrap_or(bytes);
        Ok(Seen {
            from_produced: self.from_produced,
            from_sent: self.from_sent,
            bytes,
            events,
            first_quarter: q1.saturating_sub(self.start_bytes),
            last_quarter: last.saturating_sub(q3),
            resyncs,
        })
    }
}

async fn recv_timed<P: Parse>(conn: &mut AsyncConn) -> io::Result<P::Out> {
    match tokio::time::timeout(STALL, conn.recv::<P>()).await {
        Ok(got) => got,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("nothing received for {} s", STALL.as_secs()),
        )),
    }
}

/// Waits until token `i` is due (runner start `start`, `rate` per second).
async fn pace(start: tokio::time::Instant, i: usize, rate: f64) {
    if rate > 0.0 {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
    }
}

/// Runner `r`'s start: the runners' first tokens spread over one token
/// interval, so they do not all fire at once.
fn runner_start(s: &Settings, r: usize) -> tokio::time::Instant {
    let offset = if s.rate > 0.0 {
        Duration::from_secs_f64(r as f64 / s.rate / s.runners as f64)
    } else {
        Duration::ZERO
    };
    tokio::time::Instant::now() + offset
}

/// Counters taken before and after a run.
struct Counters {
    server_cpu: f64,
    own_cpu: f64,
    ticks: (u64, u64),
}

impl Counters {
    fn take(pid: u32) -> Counters {
        Counters {
            server_cpu: procs::cpu_seconds(pid).unwrap_or(0.0),
            own_cpu: procs::cpu_seconds(std::process::id()).unwrap_or(0.0),
            ticks: procs::machine_ticks().unwrap_or((0, 0)),
        }
    }
}

fn idle_share(before: &Counters, after: &Counters) -> f64 {
    let all = after.ticks.1.saturating_sub(before.ticks.1);
    if all > 0 {
        after.ticks.0.saturating_sub(before.ticks.0) as f64 / all as f64
    } else {
        0.0
    }
}

/// Runs the tasks to the end; the first error fails the run.
async fn join<T: 'static>(mut set: JoinSet<io::Result<T>>) -> io::Result<Vec<T>> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| io::Error::other(format!("task failed: {e}")))? {
            Ok(v) => out.push(v),
            Err(e) => {
                set.abort_all();
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Fills in a mode's subscriber figures.
fn gather(mode: &mut Mode, seen: Vec<Seen>) {
    let (mut produced, mut sent) = (Vec::new(), Vec::new());
    for s in seen {
        mode.sub_bytes += s.bytes;
        mode.sub_events += s.events;
        mode.sub_first_quarter += s.first_quarter;
        mode.sub_last_quarter += s.last_quarter;
        mode.resyncs += s.resyncs;
        produced.extend(s.from_produced);
        sent.extend(s.from_sent);
    }
    mode.latency = latency_of(produced);
    mode.latency_from_send = latency_of(sent);
}

/// The AI message's length after one operation of a delta (message 0 is the
/// only message); a gap or an overlap fails the run.
fn content_len_after(op: &Op, len: u64) -> io::Result<u64> {
    let first_len = |m: Option<&stigmer_proto::agentexecution::AgentMessage>| {
        m.map(|m| m.content.len() as u64).unwrap_or(0)
    };
    Ok(match &op.op {
        Some(op::Op::AppendText(t)) if t.message_index == 0 => {
            if t.offset != len {
                return Err(invalid(format!(
                    "append_text at {} but the subscriber holds {len} bytes",
                    t.offset
                )));
            }
            len + t.text.len() as u64
        }
        Some(op::Op::AddMessage(m)) if m.index == 0 => first_len(m.message.as_ref()),
        Some(op::Op::ReplaceMessage(m)) if m.index == 0 => first_len(m.message.as_ref()),
        Some(op::Op::ReplaceMessages(m)) => first_len(m.messages.first()),
        _ => len,
    })
}

/// One stigmer mode on a daemon of its own (`db` its database): runners on
/// `update_status` every `every` tokens (`append` false) or one `append` per
/// token, each execution with one delta subscriber.
pub async fn stigmer(
    socket: &Path,
    pid: u32,
    db: &Path,
    s: &Settings,
    tokens: &Arc<Tokens>,
    append: bool,
) -> io::Result<Mode> {
    let n = tokens.len();
    let mut runners = Vec::with_capacity(s.runners);
    let mut subscribers = Vec::with_capacity(s.runners);
    for _ in 0..s.runners {
        let mut conn = AsyncConn::connect(socket).await?;
        conn.send(&stig::create(1)).await?;
        let (execution, _) = stig::execution_reply(&recv_timed::<Frame>(&mut conn).await?, 1)?;
        let mut sub = AsyncConn::connect(socket).await?;
        sub.send(&stig::subscribe_deltas(SUB_ID, &execution))
            .await?;
        let first = stig::event(&recv_timed::<Frame>(&mut sub).await?, SUB_ID)?;
        if first.r#type != EventType::EventSnapshot as i32 {
            return Err(invalid("a delta stream must start with a snapshot"));
        }
        runners.push((conn, execution));
        subscribers.push((sub, first.revision));
    }
    tokio::time::sleep(SETTLE).await;

    let before = Files::of(db);
    let written0 = procs::write_bytes(pid)?;
    let c0 = Counters::take(pid);
    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let ids: Vec<String> = runners.iter().map(|(_, id)| id.clone()).collect();
    let mut subs = JoinSet::new();
    let mut runs = JoinSet::new();
    for (r, ((conn, execution), (sub, revision))) in
        runners.into_iter().zip(subscribers).enumerate()
    {
        let times = Arc::new(Times::new(base, n));
        let mut held = Held::new(tokens.clone(), times.clone(), delivered.clone());
        held.start_bytes = sub.consumed();
        subs.spawn(stigmer_subscriber(sub, held, revision));
        let start = runner_start(s, r);
        if append {
            runs.spawn(append_runner(
                conn,
                execution,
                tokens.clone(),
                times,
                start,
                *s,
            ));
        } else {
            runs.spawn(upstream_runner(
                conn,
                execution,
                tokens.clone(),
                times,
                start,
                *s,
            ));
        }
    }
    // The disk's quarter marks, by the tokens the subscribers hold.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(quarter_marks(
        pid,
        delivered.clone(),
        (s.runners * n) as u64,
        done.clone(),
    ));
    let requests: u64 = join(runs).await?.into_iter().sum();
    let seen = join(subs).await;
    done.store(true, Ordering::Relaxed);
    let seen = seen?;
    let seconds = base.elapsed().as_secs_f64();
    let after_run = Files::of(db);
    let written1 = procs::write_bytes(pid)?;
    let c1 = Counters::take(pid);
    let (w1, w3) = sampler
        .await
        .map_err(|e| io::Error::other(format!("sampler failed: {e}")))?;
    tokio::time::sleep(CHECKPOINT_WAIT).await;
    let after_checkpoint = Files::of(db);
    let written2 = procs::write_bytes(pid)?;
    let server_cpu2 = procs::cpu_seconds(pid).unwrap_or(0.0);

    let mut mode = Mode {
        tokens: (s.runners * n) as u64,
        requests,
        seconds,
        server_cpu_s: server_cpu2 - c0.server_cpu,
        client_cpu_s: c1.own_cpu - c0.own_cpu,
        idle: idle_share(&c0, &c1),
        disk: Disk {
            before,
            after_run,
            after_checkpoint,
            written_run: written1.saturating_sub(written0),
            written_checkpoint: written2.saturating_sub(written0),
            written_first_quarter: w1.unwrap_or(written1).saturating_sub(written0),
            written_last_quarter: written1.saturating_sub(w3.unwrap_or(written1)),
        },
        ..Default::default()
    };
    gather(&mut mode, seen);
    mode.final_state_bytes = stigmer_final_states(socket, &ids, tokens).await?;
    Ok(mode)
}

/// `write_bytes` when the subscribers hold a quarter, then three quarters,
/// of all the tokens.
async fn quarter_marks(
    pid: u32,
    delivered: Arc<AtomicU64>,
    total: u64,
    done: Arc<AtomicBool>,
) -> (Option<u64>, Option<u64>) {
    let (mut q1, mut q3) = (None, None);
    while !done.load(Ordering::Relaxed) && q3.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let d = delivered.load(Ordering::Relaxed);
        if q1.is_none() && d >= total / 4 {
            q1 = procs::write_bytes(pid).ok();
        }
        if q3.is_none() && d >= total - total / 4 {
            q3 = procs::write_bytes(pid).ok();
        }
    }
    (q1, q3)
}

/// Every execution's final state: checked against the tokens sent (each
/// exactly once, in order, and the phase COMPLETED), and its encoded size
/// summed.
async fn stigmer_final_states(socket: &Path, ids: &[String], tokens: &Tokens) -> io::Result<u64> {
    let want = tokens.content();
    let mut conn = AsyncConn::connect(socket).await?;
    let mut total = 0u64;
    for (i, execution_id) in ids.iter().enumerate() {
        let id = i as u64 + 1;
        conn.send(&stig::get(id, execution_id)).await?;
        let execution = stig::execution(&recv_timed::<Frame>(&mut conn).await?, id)?;
        let status = execution.status.clone().unwrap_or_default();
        let content = status.messages.first().map(|m| m.content.as_str());
        if content != Some(want.as_str())
            || status.phase != ExecutionPhase::ExecutionCompleted as i32
        {
            return Err(invalid(format!(
                "{execution_id} ended with {} bytes in phase {}, not the {} bytes sent",
                content.map(str::len).unwrap_or(0),
                status.phase,
                want.len()
            )));
        }
        total += execution.encoded_len() as u64;
    }
    Ok(total)
}

/// A delta subscriber: DELTA events (each checked to follow the last
/// revision), until the END that follows the completion.
async fn stigmer_subscriber(
    mut conn: AsyncConn,
    mut held: Held,
    mut last: u64,
) -> io::Result<Seen> {
    let (mut len, mut events, mut resyncs) = (0u64, 1u64, 0u64);
    loop {
        let body = recv_timed::<Frame>(&mut conn).await?;
        events += 1;
        let event = stig::event(&body, SUB_ID)?;
        match EventType::try_from(event.r#type) {
            Ok(EventType::EventDelta) => {
                if event.prev_revision != last {
                    return Err(invalid(format!(
                        "a delta from revision {} after revision {last}",
                        event.prev_revision
                    )));
                }
                last = event.revision;
                for op in &event.ops {
                    len = content_len_after(op, len)?;
                }
            }
            Ok(kind @ (EventType::EventUpdate | EventType::EventResync)) => {
                if kind == EventType::EventResync {
                    resyncs += 1;
                }
                last = event.revision;
                len = event
                    .execution
                    .and_then(|e| e.status)
                    .and_then(|s| s.messages.into_iter().next())
                    .map(|m| m.content.len() as u64)
                    .unwrap_or(0);
            }
            Ok(EventType::EventEnd) => break,
            other => return Err(invalid(format!("unexpected event {other:?}"))),
        }
        held.advance(len, conn.consumed());
    }
    held.finish(conn.consumed(), events, resyncs)
}

/// Upstream's runner: the whole status every `every` tokens (and with the
/// last token), then the status COMPLETED.
async fn upstream_runner(
    mut conn: AsyncConn,
    execution: String,
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    let mut updates = stig::StatusUpdates::new(&execution);
    let (mut id, mut first) = (2u64, 0usize);
    let n = tokens.len();
    for i in 0..n {
        pace(start, i, s.rate).await;
        times.produced[i].store(times.now(), Ordering::Relaxed);
        updates.push(tokens.text[i]);
        if (i + 1) % s.every != 0 && i + 1 != n {
            continue;
        }
        let now = times.now();
        for t in &times.sent[first..=i] {
            t.store(now, Ordering::Relaxed);
        }
        first = i + 1;
        conn.send(updates.frame(id)).await?;
        stig::execution_reply(&recv_timed::<Frame>(&mut conn).await?, id)?;
        id += 1;
    }
    updates.set_phase(ExecutionPhase::ExecutionCompleted);
    conn.send(updates.frame(id)).await?;
    stig::execution_reply(&recv_timed::<Frame>(&mut conn).await?, id)?;
    Ok(id - 1)
}

/// The append runner: one `append` per token, then one setting the phase
/// COMPLETED.
async fn append_runner(
    mut conn: AsyncConn,
    execution: String,
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    let mut appends = stig::Appends::new(&execution);
    let mut id = 2u64;
    for i in 0..tokens.len() {
        pace(start, i, s.rate).await;
        let now = times.now();
        times.produced[i].store(now, Ordering::Relaxed);
        times.sent[i].store(now, Ordering::Relaxed);
        conn.send(appends.token(id, tokens.text[i])).await?;
        stig::execution_reply(&recv_timed::<Frame>(&mut conn).await?, id)?;
        id += 1;
    }
    conn.send(appends.finish(id, ExecutionPhase::ExecutionCompleted))
        .await?;
    stig::execution_reply(&recv_timed::<Frame>(&mut conn).await?, id)?;
    Ok(id - 1)
}

/// One XADD of a whole status, RESP written straight around its encoding.
fn xadd_status(out: &mut Vec<u8>, key: &[u8], maxlen: &[u8], status: &AgentExecutionStatus) {
    out.clear();
    out.extend_from_slice(b"*8\r\n");
    let args: [&[u8]; 7] = [b"XADD", key, b"MAXLEN", b"~", maxlen, b"*", b"status"];
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("${}\r\n", status.encoded_len()).as_bytes());
    status.encode(out).expect("a Vec grows as needed");
    out.extend_from_slice(b"\r\n");
}

/// The entries (id, the `status` field's value) of an XREAD reply.
fn xread_entries(reply: Value) -> io::Result<Vec<(Bytes, Bytes)>> {
    let mut out = Vec::new();
    for stream in reply.into_array()? {
        let mut stream = stream.into_array()?;
        let entries = stream
            .pop()
            .ok_or_else(|| invalid("an XREAD stream without entries"))?
            .into_array()?;
        for entry in entries {
            let mut entry = entry.into_array()?;
            let mut fields = entry
                .pop()
                .ok_or_else(|| invalid("an entry without fields"))?
                .into_array()?;
            let id = entry
                .pop()
                .ok_or_else(|| invalid("an entry without an id"))?
                .into_bulk()?;
            let value = fields
                .pop()
                .ok_or_else(|| invalid("an entry without a value"))?
                .into_bulk()?;
            out.push((id, value));
        }
    }
    Ok(out)
}

/// One Redis mode: XADD of the whole status every `every` tokens, read by
/// one XREAD BLOCK consumer per stream (`publish` false), or one PUBLISH per
/// token with one subscriber per channel.
pub async fn redis(
    socket: &Path,
    pid: u32,
    s: &Settings,
    tokens: &Arc<Tokens>,
    publish: bool,
) -> io::Result<Mode> {
    let n = tokens.len();
    let keys: Vec<String> = (0..s.runners).map(|r| format!("transcript{r}")).collect();
    let mut setup = AsyncConn::connect(socket).await?;
    for key in &keys {
        setup
            .send(&redis::command(&[b"DEL", key.as_bytes()]))
            .await?;
        recv_timed::<Resp>(&mut setup).await?.ok()?;
    }
    let mut pairs = Vec::with_capacity(s.runners);
    for key in &keys {
        let conn = AsyncConn::connect(socket).await?;
        let mut sub = AsyncConn::connect(socket).await?;
        if publish {
            sub.send(&redis::command(&[b"SUBSCRIBE", key.as_bytes()]))
                .await?;
            recv_timed::<Resp>(&mut sub).await?.ok()?;
        }
        pairs.push((conn, sub));
    }
    let c0 = Counters::take(pid);
    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut subs = JoinSet::new();
    let mut runs = JoinSet::new();
    for (r, (conn, sub)) in pairs.into_iter().enumerate() {
        let times = Arc::new(Times::new(base, n));
        let mut held = Held::new(tokens.clone(), times.clone(), delivered.clone());
        held.start_bytes = sub.consumed();
        let start = runner_start(s, r);
        let key = keys[r].clone();
        if publish {
            subs.spawn(publish_subscriber(sub, held));
            runs.spawn(publish_runner(conn, key, tokens.clone(), times, start, *s));
        } else {
            subs.spawn(xread_consumer(sub, key.clone(), held));
            runs.spawn(xadd_runner(conn, key, tokens.clone(), times, start, *s));
        }
    }
    let requests: u64 = join(runs).await?.into_iter().sum();
    let seen = join(subs).await?;
    let seconds = base.elapsed().as_secs_f64();
    let c1 = Counters::take(pid);
    let mut mode = Mode {
        tokens: (s.runners * n) as u64,
        requests,
        seconds,
        server_cpu_s: c1.server_cpu - c0.server_cpu,
        client_cpu_s: c1.own_cpu - c0.own_cpu,
        idle: idle_share(&c0, &c1),
        ..Default::default()
    };
    let finals: u64 = seen.iter().map(|(_, f)| *f).sum();
    gather(&mut mode, seen.into_iter().map(|(s, _)| s).collect());
    mode.final_state_bytes = finals;
    // Free the streams, so later scenarios and rounds meet the same server.
    for key in &keys {
        setup
            .send(&redis::command(&[b"DEL", key.as_bytes()]))
            .await?;
        recv_timed::<Resp>(&mut setup).await?.ok()?;
    }
    Ok(mode)
}

/// Upstream's pattern on Redis: XADD of the whole status every `every`
/// tokens (and with the last), then the status COMPLETED.
async fn xadd_runner(
    mut conn: AsyncConn,
    key: String,
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    // Capped as the other scenarios' streams are (the daemon's retention
    // shared by the streams).
    let maxlen = (HISTORY_RETENTION / s.runners.max(1)).to_string();
    let mut status = stig::transcript_status();
    let mut out = Vec::new();
    let (mut requests, mut first) = (0u64, 0usize);
    let n = tokens.len();
    for i in 0..n {
        pace(start, i, s.rate).await;
        times.produced[i].store(times.now(), Ordering::Relaxed);
        status.messages[0].content.push_str(tokens.text[i]);
        if (i + 1) % s.every != 0 && i + 1 != n {
            continue;
        }
        xadd_status(&mut out, key.as_bytes(), maxlen.as_bytes(), &status);
        let now = times.now();
        for t in &times.sent[first..=i] {
            t.store(now, Ordering::Relaxed);
        }
        first = i + 1;
        conn.send(&out).await?;
        recv_timed::<Resp>(&mut conn).await?.ok()?.into_bulk()?;
        requests += 1;
    }
    status.phase = ExecutionPhase::ExecutionCompleted as i32;
    xadd_status(&mut out, key.as_bytes(), maxlen.as_bytes(), &status);
    conn.send(&out).await?;
    recv_timed::<Resp>(&mut conn).await?.ok()?.into_bulk()?;
    Ok(requests + 1)
}

/// One XREAD BLOCK consumer of a stream, from its start, until the entry
/// whose status is COMPLETED; each entry's status decoded for the length
/// of its AI message. Returns the last entry's size too.
async fn xread_consumer(
    mut conn: AsyncConn,
    key: String,
    mut held: Held,
) -> io::Result<(Seen, u64)> {
    let mut last = Bytes::from_static(b"0-0");
    let mut events = 0u64;
    loop {
        conn.send(&redis::command(&[
            b"XREAD",
            b"BLOCK",
            b"0",
            b"STREAMS",
            key.as_bytes(),
            &last,
        ]))
        .await?;
        let reply = recv_timed::<Resp>(&mut conn).await?.ok()?;
        let entries = xread_entries(reply)?;
        events += 1;
        let mut completed = None;
        let mut len = 0;
        for (id, value) in entries {
            let status = AgentExecutionStatus::decode(value.as_ref())
                .map_err(|e| invalid(format!("a stream entry does not decode: {e}")))?;
            len = status
                .messages
                .first()
                .map(|m| m.content.len() as u64)
                .unwrap_or(0);
            if status.phase == ExecutionPhase::ExecutionCompleted as i32 {
                completed = Some(value.len() as u64);
            }
            last = id;
        }
        held.advance(len, conn.consumed());
        if let Some(size) = completed {
            return Ok((held.finish(conn.consumed(), events, 0)?, size));
        }
    }
}

/// One PUBLISH per token.
async fn publish_runner(
    mut conn: AsyncConn,
    channel: String,
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    for i in 0..tokens.len() {
        pace(start, i, s.rate).await;
        let publish = redis::command(&[b"PUBLISH", channel.as_bytes(), tokens.text[i].as_bytes()]);
        let now = times.now();
        times.produced[i].store(now, Ordering::Relaxed);
        times.sent[i].store(now, Ordering::Relaxed);
        conn.send(&publish).await?;
        match recv_timed::<Resp>(&mut conn).await?.ok()? {
            Value::Int(1) => {}
            other => return Err(invalid(format!("PUBLISH reached {other:?}"))),
        }
    }
    Ok(tokens.len() as u64)
}

/// The subscriber of one channel: each message is the next token.
async fn publish_subscriber(mut conn: AsyncConn, mut held: Held) -> io::Result<(Seen, u64)> {
    let (mut len, mut events) = (0u64, 1u64);
    while !held.done() {
        let mut message = recv_timed::<Resp>(&mut conn).await?.ok()?.into_array()?;
        if message.len() != 3 {
            return Err(invalid("expected a pub/sub message"));
        }
        let token = message.pop().expect("three items").into_bulk()?;
        let want = held.tokens.text[held.next];
        if token.as_ref() != want.as_bytes() {
            return Err(invalid("a token out of order"));
        }
        len += token.len() as u64;
        events += 1;
        held.advance(len, conn.consumed());
    }
    // No state: the "final state" is the text itself.
    let text = held.tokens.total_bytes();
    Ok((held.finish(conn.consumed(), events, 0)?, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_words_of_four_to_six_bytes() {
        let tokens = Tokens::new(8000);
        assert!(tokens.text.iter().all(|t| (4..=6).contains(&t.len())));
        assert!(tokens.text.iter().all(|t| t.ends_with(' ')));
        // ~40 KB for 8,000 tokens.
        let total = tokens.total_bytes();
        assert!((36_000..=44_000).contains(&total), "{total}");
        assert_eq!(tokens.content().len() as u64, total);
        assert_eq!(tokens.ends[0], tokens.text[0].len() as u64);
    }

    /// A subscriber holds a token once the message reaches its end; the
    /// quarter marks are taken as the tokens pass them.
    #[test]
    fn held_tokens_and_quarters() {
        let tokens = Arc::new(Tokens::new(8));
        let times = Arc::new(Times::new(Instant::now(), 8));
        let delivered = Arc::new(AtomicU64::new(0));
        let mut held = Held::new(tokens.clone(), times, delivered.clone());
        held.start_bytes = 10;
        held.advance(tokens.ends[1], 100);
        assert_eq!(held.next, 2);
        held.advance(tokens.ends[1] + 1, 150);
        assert_eq!(held.next, 2);
        held.advance(tokens.ends[5], 400);
        held.advance(tokens.ends[7], 600);
        assert!(held.done());
        assert_eq!(delivered.load(Ordering::Relaxed), 8);
        let seen = held.finish(650, 5, 0).unwrap();
        assert_eq!(seen.first_quarter, 90);
        assert_eq!(seen.last_quarter, 200);
        assert_eq!(seen.from_produced.len(), 8);
    }

    #[test]
    fn delta_ops_move_the_length() {
        use stigmer_proto::daemon::AppendText;
        let append = |offset, text: &str| Op {
            op: Some(op::Op::AppendText(AppendText {
                message_index: 0,
                offset,
                text: text.into(),
                r#type: 0,
            })),
        };
        assert_eq!(content_len_after(&append(0, "the "), 0).unwrap(), 4);
        assert!(content_len_after(&append(3, "x"), 4).is_err());
        let phase = Op {
            op: Some(op::Op::SetPhase(3)),
        };
        assert_eq!(content_len_after(&phase, 9).unwrap(), 9);
    }

    #[test]
    fn xadd_status_is_a_resp_command() {
        let mut status = stig::transcript_status();
        status.messages[0].content.push_str("the ");
        let mut out = Vec::new();
        xadd_status(&mut out, b"k", b"100", &status);
        let want = redis::command(&[
            b"XADD",
            b"k",
            b"MAXLEN",
            b"~",
            b"100",
            b"*",
            b"status",
            &status.encode_to_vec(),
        ]);
        assert_eq!(out, want);
    }
}
