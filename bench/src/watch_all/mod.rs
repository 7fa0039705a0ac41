//! The watch_all scenario (issue 17, `--only watch_all`): a fleet of
//! executions followed through many-execution streams, beside Redis pub/sub
//! with pattern subscriptions, in the same round (the order rotating).
//!
//! - stigmer: 1,000 executions in 100 sessions (10 each), each given a 1 KiB
//!   status first; 32 writers, each a connection updating its share of the
//!   executions in turn (`update_status` of the whole status, one in flight,
//!   `minimal_reply`), paced at `rate` updates per second per writer; 10
//!   watchers with `all: true` and 100 with `session_id` (one per session),
//!   each on its own connection, whole-state streams: each reads its
//!   initial list (SNAPSHOTs, then the end-of-list BOOKMARK), then follows
//!   the UPDATEs.
//! - Redis: the same 32 writers `PUBLISH exec.<session>.<execution>` with
//!   the same status bytes; 10 connections `PSUBSCRIBE exec.*` and 100
//!   `PSUBSCRIBE exec.<session>.*`.
//!
//! Every update carries its send time: the first 20 bytes of the status's
//! AI message are the nanoseconds since the run's start, written into the
//! pre-built request just before it is sent. A delivery's latency runs from
//! that stamp to the moment its watcher's read returned the frame (before
//! any decoding). Each update reaches 11 watchers (the 10 all-watchers and
//! its session's); the run fails unless every watcher got every update
//! exactly once (and, on stigmer, in increasing revision order, each
//! session watcher only its session's executions).
//!
//! Figures over the measured window (after the warm-up): latency p50/p99 of
//! the updates sent in it, the server's CPU time (/proc) per delivery and
//! per update, and the memory per watcher: the server's RSS once the 110
//! watchers are in place (1 s after the last list ended) less its RSS
//! before they connected, over 110.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use stigmer_proto::agentexecution::AgentExecutionStatus;
use stigmer_proto::daemon::EventType;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use crate::procs;
use crate::redis::{self, Resp, Value as Reply};
use crate::scenarios::{latency_of, Latency};
use crate::stig::{self, Frame};
use crate::wire::{invalid, AsyncConn, Parse};

mod report;
pub use report::{json, ratios, rows};

pub const EXECUTIONS: usize = 1000;
pub const SESSIONS: usize = 100;
pub const WRITERS: usize = 32;
pub const ALL_WATCHERS: usize = 10;
const PER_SESSION: usize = EXECUTIONS / SESSIONS;
const WATCHERS: usize = ALL_WATCHERS + SESSIONS;
/// Watchers each update reaches: every all-watcher and its session's.
const PER_UPDATE: u64 = ALL_WATCHERS as u64 + 1;
/// The request id of every watch.
const SUB_ID: u64 = 1;
/// The send stamp: nanoseconds since the run's start, zero-padded.
const STAMP: usize = 20;
/// How long a setup read may wait, and how long the watchers get to
/// receive the last updates once the writers stop.
const STALL: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_secs(10);

/// The scenario's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Updates per second per writer; 0: each writer as fast as its
    /// acknowledgements allow.
    pub rate: f64,
    pub status_bytes: usize,
    pub warmup: Duration,
    pub window: Duration,
}

/// One side's measurements.
#[derive(Clone, Copy, Debug, Default)]
pub struct Side {
    pub latency: Latency,
    /// Deliveries and acknowledged updates within the window.
    pub deliveries: u64,
    pub updates: u64,
    pub seconds: f64,
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
    pub idle: f64,
    pub rss_before: u64,
    pub rss_watching: u64,
    /// From the first watcher's connect to every watcher in place (stigmer:
    /// every initial list read to its end-of-list bookmark).
    pub subscribe_s: f64,
}

impl Side {
    pub(super) fn per_delivery(&self, seconds: f64) -> f64 {
        if self.deliveries > 0 {
            seconds * 1e6 / self.deliveries as f64
        } else {
            0.0
        }
    }

    pub(super) fn per_s(&self, n: u64) -> f64 {
        if self.seconds > 0.0 {
            n as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(super) fn rss_per_watcher(&self) -> f64 {
        self.rss_watching.saturating_sub(self.rss_before) as f64 / WATCHERS as f64
    }
}

/// Both sides of one round.
#[derive(Clone, Copy, Debug, Default)]
pub struct Round {
    pub stigmer: Side,
    pub redis: Side,
}

fn session_name(s: usize) -> String {
    format!("sess{s:03}")
}

/// Execution `e`'s session.
fn session_of(e: usize) -> usize {
    e / PER_SESSION
}

/// The run's clock and what the watchers share.
struct Clock {
    base: Instant,
    /// The measured window, in stamps (u64::MAX until set).
    start: AtomicU64,
    end: AtomicU64,
    delivered: AtomicU64,
    updates: AtomicU64,
    samples: Mutex<Vec<Duration>>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: Instant::now(),
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
            delivered: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// A delivery of the update stamped `stamp`, read at `at`.
    fn record(&self, stamp: u64, at: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let (start, end) = (
            self.start.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        );
        if stamp >= start && stamp < end {
            if let Ok(mut samples) = self.samples.lock() {
                samples.push(Duration::from_nanos(at.saturating_sub(stamp)));
            }
        }
    }
}

fn write_stamp(out: &mut [u8], mut ns: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (ns % 10) as u8;
        ns /= 10;
    }
}

fn read_stamp(bytes: &[u8]) -> io::Result<u64> {
    let digits = bytes
        .get(..STAMP)
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .ok_or_else(|| invalid("an update without its send stamp"))?;
    Ok(digits.iter().fold(0u64, |n, d| {
        n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
    }))
}

/// The status every update carries: `status_bytes` long, its AI message
/// starting with the (zeroed) stamp.
fn stamped_status(status_bytes: usize) -> AgentExecutionStatus {
    let mut status = stig::status_of_size(status_bytes.max(STAMP + 16));
    let content = &mut status.messages[0].content;
    content.replace_range(..STAMP, &"0".repeat(STAMP));
    status
}

/// Where the zeroed stamp is in `bytes`.
fn stamp_at(bytes: &[u8]) -> io::Result<usize> {
    bytes
        .windows(STAMP)
        .position(|w| w.iter().all(|&b| b == b'0'))
        .ok_or_else(|| invalid("no stamp in the request"))
}

async fn recv<P: Parse, S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut AsyncConn<S>,
) -> io::Result<P::Out> {
    tokio::time::timeout(STALL, conn.recv::<P>())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "nothing received for 30 s"))?
}

/// Waits until writer `w`'s `i`th update is due: the writers' first
/// updates spread over one interval, so they do not all fire at once.
async fn pace(start: tokio::time::Instant, w: usize, i: u64, rate: f64) {
    if rate > 0.0 {
        let offset = w as f64 / WRITERS as f64 + i as f64;
        tokio::time::sleep_until(start + Duration::from_secs_f64(offset / rate)).await;
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

/// The warm-up, then the measured window: sets the window's stamps and
/// takes the counters at both ends.
async fn window(clock: &Clock, pid: u32, s: &Settings) -> Side {
    let me = std::process::id();
    tokio::time::sleep(s.warmup).await;
    clock.start.store(clock.now(), Ordering::Relaxed);
    let (d0, u0) = (
        clock.delivered.load(Ordering::Relaxed),
        clock.updates.load(Ordering::Relaxed),
    );
    let cpu0 = procs::cpu_seconds(pid).unwrap_or(0.0);
    let own0 = procs::cpu_seconds(me).unwrap_or(0.0);
    let ticks0 = procs::machine_ticks().unwrap_or((0, 0));
    let t0 = Instant::now();
    tokio::time::sleep(s.window).await;
    clock.end.store(clock.now(), Ordering::Relaxed);
    let (d1, u1) = (
        clock.delivered.load(Ordering::Relaxed),
        clock.updates.load(Ordering::Relaxed),
    );
    let cpu1 = procs::cpu_seconds(pid).unwrap_or(0.0);
    let own1 = procs::cpu_seconds(me).unwrap_or(0.0);
    let ticks1 = procs::machine_ticks().unwrap_or((0, 0));
    let all = ticks1.1.saturating_sub(ticks0.1);
    Side {
        deliveries: d1 - d0,
        updates: u1 - u0,
        seconds: t0.elapsed().as_secs_f64(),
        server_cpu_s: cpu1 - cpu0,
        client_cpu_s: own1 - own0,
        idle: if all > 0 {
            ticks1.0.saturating_sub(ticks0.0) as f64 / all as f64
        } else {
            0.0
        },
        ..Side::default()
    }
}

/// After the writers stopped: waits until every acknowledged update has
/// reached its 11 watchers (bounded), then checks that none came twice.
async fn drain(clock: &Clock, readers: &mut JoinSet<io::Result<()>>) -> io::Result<()> {
    let want = clock.updates.load(Ordering::Relaxed) * PER_UPDATE;
    let deadline = Instant::now() + DRAIN;
    while clock.delivered.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        if let Some(ended) = readers.try_join_next() {
            ended.map_err(|e| io::Error::other(format!("watcher failed: {e}")))??;
            return Err(invalid("a watcher's stream ended"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = clock.delivered.load(Ordering::Relaxed);
    if got != want {
        while let Some(ended) = readers.try_join_next() {
            ended.map_err(|e| io::Error::other(format!("watcher failed: {e}")))??;
        }
        return Err(invalid(format!(
            "the watchers received {got} deliveries of {want} ({PER_UPDATE} per update)"
        )));
    }
    readers.abort_all();
    Ok(())
}

/// The latency of the updates sent within the window.
fn finish(clock: &Clock, mut side: Side) -> Side {
    let samples = clock
        .samples
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    side.latency = latency_of(samples);
    side
}

/// The writers' connections, and the server's RSS 300 ms after, before
/// any watcher connects.
async fn connect_writers(socket: &Path, pid: u32) -> io::Result<(Vec<AsyncConn>, u64)> {
    let mut writers = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        writers.push(AsyncConn::connect(socket).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((writers, procs::rss_bytes(pid)?))
}

/// Once every watcher is in place (they began subscribing at `started`):
/// how long that took, in seconds, and the server's RSS 1 s later.
async fn in_place(started: Instant, pid: u32) -> io::Result<(f64, u64)> {
    let subscribe_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok((subscribe_s, procs::rss_bytes(pid)?))
}

/// One writer's task: its connection, its share of the executions (the
/// pre-built requests and where their stamps go), the clock, the stop
/// flag, the pacing's start, its number and its rate.
type Writer<M, F> =
    fn(AsyncConn, M, Arc<Clock>, Arc<AtomicBool>, tokio::time::Instant, usize, f64) -> F;

/// The measured part of a side, its watchers read by `readers`: `writers`
/// (each with its share in `per_writer`) running `write`, paced, through
/// the warm-up and the window; then they stop and every delivery is
/// drained. The figures of the window (`finish`).
async fn write_window<M, F>(
    clock: &Arc<Clock>,
    pid: u32,
    s: &Settings,
    mut readers: JoinSet<io::Result<()>>,
    writers: Vec<AsyncConn>,
    per_writer: Vec<M>,
    write: Writer<M, F>,
) -> io::Result<Side>
where
    F: std::future::Future<Output = io::Result<()>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = tokio::time::Instant::now();
    let mut writing = JoinSet::new();
    for (w, (conn, mine)) in writers.into_iter().zip(per_writer).enumerate() {
        let (clock, stop) = (clock.clone(), stop.clone());
        writing.spawn(write(conn, mine, clock, stop, start, w, s.rate));
    }
    let side = window(clock, pid, s).await;
    stop.store(true, Ordering::Relaxed);
    join(writing).await?;
    drain(clock, &mut readers).await?;
    Ok(finish(clock, side))
}

/// The stigmer side, on a daemon of its own (`pid`, listening on `socket`).
pub async fn stigmer(socket: &Path, pid: u32, s: &Settings) -> io::Result<Side> {
    let status = stamped_status(s.status_bytes);
    let mut setup = AsyncConn::connect(socket).await?;
    let mut per_writer: Vec<Vec<(stig::Updates, usize)>> =
        (0..WRITERS).map(|_| Vec::new()).collect();
    let mut id = 0u64;
    for e in 0..EXECUTIONS {
        id += 1;
        setup
            .send(&stig::create_in_session(id, &session_name(session_of(e))))
            .await?;
        let (execution, _) = stig::execution_reply(&recv::<Frame, _>(&mut setup).await?, id)?;
        let mut updates = stig::Updates::new(&execution, &status);
        let at = stamp_at(updates.command_mut())?;
        // Its first status, so that the lists carry whole states.
        id += 1;
        setup.send(updates.frame(id)).await?;
        stig::execution_reply(&recv::<Frame, _>(&mut setup).await?, id)?;
        per_writer[e % WRITERS].push((updates, at));
    }
    let (writers, rss_before) = connect_writers(socket, pid).await?;

    let clock = Arc::new(Clock::new());
    let started = Instant::now();
    let mut lists = JoinSet::new();
    for w in 0..WATCHERS {
        let session = (w >= ALL_WATCHERS).then(|| session_name(w - ALL_WATCHERS));
        let socket = socket.to_path_buf();
        lists.spawn(async move {
            let mut conn = AsyncConn::connect(&socket).await?;
            conn.send(&stig::watch(SUB_ID, session.as_deref())).await?;
            let want = if session.is_some() {
                PER_SESSION
            } else {
                EXECUTIONS
            };
            let last = read_list(&mut conn, want).await?;
            io::Result::Ok((conn, session, last))
        });
    }
    let watchers = join(lists).await?;
    let (subscribe_s, rss_watching) = in_place(started, pid).await?;

    let mut readers = JoinSet::new();
    for (conn, session, last) in watchers {
        readers.spawn(stigmer_watcher(conn, session, last, clock.clone()));
    }
    let side = write_window(&clock, pid, s, readers, writers, per_writer, stigmer_writer).await?;
    Ok(Side {
        rss_before,
        rss_watching,
        subscribe_s,
        ..side
    })
}

/// A watch's initial list: `want` SNAPSHOTs, then the end-of-list
/// BOOKMARK; returns the bookmark's revision.
async fn read_list(conn: &mut AsyncConn, want: usize) -> io::Result<u64> {
    let mut n = 0;
    loop {
        let event = stig::event(&recv::<Frame, _>(conn).await?, SUB_ID)?;
        match EventType::try_from(event.r#type) {
            Ok(EventType::EventSnapshot) => n += 1,
            Ok(EventType::EventBookmark) if event.initial_events_end => {
                if n != want {
                    return Err(invalid(format!("a list of {n} executions, not {want}")));
                }
                return Ok(event.revision);
            }
            Ok(EventType::EventBookmark) => {}
            other => return Err(invalid(format!("{other:?} in a watch's list"))),
        }
    }
}

/// One watcher: every UPDATE after its list, in increasing revision order,
/// of its session's executions when it has a session.
async fn stigmer_watcher(
    mut conn: AsyncConn,
    session: Option<String>,
    mut last: u64,
    clock: Arc<Clock>,
) -> io::Result<()> {
    loop {
        let body = conn.recv::<Frame>().await?;
        let at = clock.now();
        let event = stig::event(&body, SUB_ID)?;
        match EventType::try_from(event.r#type) {
            Ok(EventType::EventUpdate) => {}
            // A quiet stream's progress (none expected while updates flow).
            Ok(EventType::EventBookmark) => continue,
            other => return Err(invalid(format!("a watcher received {other:?}"))),
        }
        if event.revision <= last {
            return Err(invalid(format!(
                "revision {} after {last} on one watch",
                event.revision
            )));
        }
        last = event.revision;
        let execution = event
            .execution
            .ok_or_else(|| invalid("an UPDATE without its execution"))?;
        if let Some(session) = &session {
            let of = execution.spec.as_ref().map(|s| s.session_id.as_str());
            if of != Some(session.as_str()) {
                return Err(invalid(format!("{session}'s watcher got {of:?}")));
            }
        }
        let content = execution
            .status
            .as_ref()
            .and_then(|s| s.messages.first())
            .map(|m| m.content.as_bytes())
            .unwrap_or_default();
        clock.record(read_stamp(content)?, at);
    }
}

/// One writer: its executions in turn, each update stamped as it leaves.
async fn stigmer_writer(
    mut conn: AsyncConn,
    mut mine: Vec<(stig::Updates, usize)>,
    clock: Arc<Clock>,
    stop: Arc<AtomicBool>,
    start: tokio::time::Instant,
    w: usize,
    rate: f64,
) -> io::Result<()> {
    let n = mine.len() as u64;
    let mut i = 0u64;
    while n > 0 && !stop.load(Ordering::Relaxed) {
        pace(start, w, i, rate).await;
        let (updates, at) = &mut mine[(i % n) as usize];
        write_stamp(&mut updates.command_mut()[*at..*at + STAMP], clock.now());
        let id = i + 1;
        conn.send(updates.frame(id)).await?;
        stig::execution_reply(&recv::<Frame, _>(&mut conn).await?, id)?;
        clock.updates.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    Ok(())
}

/// The Redis side: `PUBLISH exec.<session>.<execution>` of the same status
/// bytes, watched with `PSUBSCRIBE`.
pub async fn redis(socket: &Path, pid: u32, s: &Settings) -> io::Result<Side> {
    let payload = stamped_status(s.status_bytes).encode_to_vec();
    let payload_at = stamp_at(&payload)?;
    let mut per_writer: Vec<Vec<(Vec<u8>, usize)>> = (0..WRITERS).map(|_| Vec::new()).collect();
    for e in 0..EXECUTIONS {
        let channel = format!("exec.{}.e{e:04}", session_name(session_of(e)));
        let publish = redis::command(&[b"PUBLISH", channel.as_bytes(), &payload]);
        let at = stamp_at(&publish)?;
        per_writer[e % WRITERS].push((publish, at));
    }
    let (writers, rss_before) = connect_writers(socket, pid).await?;

    let clock = Arc::new(Clock::new());
    let started = Instant::now();
    let mut subscribing = JoinSet::new();
    for w in 0..WATCHERS {
        let pattern = if w < ALL_WATCHERS {
            "exec.*".to_string()
        } else {
            format!("exec.{}.*", session_name(w - ALL_WATCHERS))
        };
        let socket = socket.to_path_buf();
        subscribing.spawn(async move {
            let mut conn = AsyncConn::connect(&socket).await?;
            conn.send(&redis::command(&[b"PSUBSCRIBE", pattern.as_bytes()]))
                .await?;
            recv::<Resp, _>(&mut conn).await?.ok()?;
            io::Result::Ok(conn)
        });
    }
    let watchers = join(subscribing).await?;
    let (subscribe_s, rss_watching) = in_place(started, pid).await?;

    let mut readers = JoinSet::new();
    for conn in watchers {
        readers.spawn(redis_watcher(conn, payload_at, clock.clone()));
    }
    let side = write_window(&clock, pid, s, readers, writers, per_writer, redis_writer).await?;
    Ok(Side {
        rss_before,
        rss_watching,
        subscribe_s,
        ..side
    })
}

/// One pattern subscriber: each `pmessage` is a delivery.
async fn redis_watcher(mut conn: AsyncConn, at: usize, clock: Arc<Clock>) -> io::Result<()> {
    loop {
        let reply = conn.recv::<Resp>().await?;
        let now = clock.now();
        let mut message = reply.ok()?.into_array()?;
        if message.len() != 4 {
            return Err(invalid("expected a pmessage"));
        }
        let payload = message.pop().map(Reply::into_bulk).transpose()?;
        let payload = payload.ok_or_else(|| invalid("a pmessage without payload"))?;
        let stamp = payload
            .get(at..)
            .ok_or_else(|| invalid("a payload shorter than the status"))?;
        clock.record(read_stamp(stamp)?, now);
    }
}

/// One publisher: its channels in turn, each PUBLISH stamped as it leaves
/// and answered with its 11 receivers.
async fn redis_writer(
    mut conn: AsyncConn,
    mut mine: Vec<(Vec<u8>, usize)>,
    clock: Arc<Clock>,
    stop: Arc<AtomicBool>,
    start: tokio::time::Instant,
    w: usize,
    rate: f64,
) -> io::Result<()> {
    let n = mine.len() as u64;
    let mut i = 0u64;
    while n > 0 && !stop.load(Ordering::Relaxed) {
        pace(start, w, i, rate).await;
        let (publish, at) = &mut mine[(i % n) as usize];
        write_stamp(&mut publish[*at..*at + STAMP], clock.now());
        conn.send(publish).await?;
        match recv::<Resp, _>(&mut conn).await?.ok()? {
            Reply::Int(r) if r == PER_UPDATE as i64 => {}
            other => return Err(invalid(format!("PUBLISH reached {other:?}"))),
        }
        clock.updates.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_in_place() {
        let status = stamped_status(1024);
        assert_eq!(status.encoded_len(), 1024);
        let mut bytes = status.encode_to_vec();
        let at = stamp_at(&bytes).unwrap();
        write_stamp(&mut bytes[at..at + STAMP], 12_345_678_901);
        let back = AgentExecutionStatus::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            read_stamp(back.messages[0].content.as_bytes()).unwrap(),
            12_345_678_901
        );
        assert_eq!(read_stamp(&bytes[at..]).unwrap(), 12_345_678_901);
        assert!(read_stamp(b"12x").is_err());
    }

    #[test]
    fn sessions_hold_ten_executions_each() {
        assert_eq!(session_of(0), 0);
        assert_eq!(session_of(9), 0);
        assert_eq!(session_of(10), 1);
        assert_eq!(session_of(EXECUTIONS - 1), SESSIONS - 1);
        // A session's pattern must not match its neighbours' channels.
        assert!(!format!("exec.{}.e0100", session_name(10)).starts_with("exec.sess001."));
    }
}
