//! The five scenarios of issue 5, each for stigmer and for its Redis
//! equivalent (the NATS JetStream and etcd sides are in `peers.rs`). Every
//! loop is bounded in count or in time.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stigmer_proto::agentexecution::AgentExecutionStatus;
use stigmer_proto::daemon::EventType;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::procs;
use crate::redis::{self, Resp, Value};
use crate::stig::{self, Frame};
use crate::wire::{invalid, AsyncConn, SyncConn};

/// Redis streams are capped like the daemon's history (--history-retention
/// 100,000 revisions for the whole daemon), so both keep a bounded log of
/// about the same size: one stream gets all of it, `n` streams a share each.
pub(crate) const HISTORY_RETENTION: usize = 100_000;

/// The request id of every subscription (one per connection).
const SUB_ID: u64 = 1;

#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub samples: usize,
}

pub(crate) fn latency_of(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let n = samples.len().max(1);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: usize| us(samples[(n * q / 100).min(n - 1)]);
    Latency {
        p50_us: at(50),
        p99_us: at(99),
        mean_us: samples.iter().map(|d| us(*d)).sum::<f64>() / n as f64,
        samples: samples.len(),
    }
}

/// Scenario 1, stigmer: update on one connection, the event on another.
/// Each iteration also reads the writer's acknowledgement before the next
/// update, so exactly one update is in flight.
pub fn latency_stigmer(
    socket: &Path,
    status: &AgentExecutionStatus,
    warmup: usize,
    n: usize,
) -> io::Result<Latency> {
    latency_between(socket, socket, status, warmup, n)
}

/// Scenario 1 with the writer on one daemon and the subscriber on another
/// (the cluster mode's "across hosts"; the same daemon twice otherwise).
pub fn latency_between(
    writer_socket: &Path,
    sub_socket: &Path,
    status: &AgentExecutionStatus,
    warmup: usize,
    n: usize,
) -> io::Result<Latency> {
    let mut writer = SyncConn::connect(writer_socket)?;
    let mut sub = SyncConn::connect(sub_socket)?;
    writer.send(&stig::create(1))?;
    let (execution, _) = stig::execution_reply(&writer.recv::<Frame>()?, 1)?;
    if writer_socket != sub_socket {
        // Another daemon of the cluster has the execution once its replica
        // applied the create (bounded: a few seconds at most).
        let mut tries = 0;
        loop {
            sub.send(&stig::get(2, &execution))?;
            if stig::execution(&sub.recv::<Frame>()?, 2).is_ok() {
                break;
            }
            tries += 1;
            if tries > 500 {
                return Err(invalid("the other daemon never had the execution"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sub.send(&stig::subscribe(SUB_ID, &execution))?;
    let (kind, _) = stig::event_revision(&sub.recv::<Frame>()?, SUB_ID)?;
    if kind != EventType::EventSnapshot {
        return Err(invalid("expected a snapshot first"));
    }
    let mut updates = stig::Updates::new(&execution, status);
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let id = i as u64 + 2;
        let request = updates.frame(id);
        let started = Instant::now();
        writer.send(request)?;
        let event = sub.recv::<Frame>()?;
        let elapsed = started.elapsed();
        let (_, revision) = stig::event_revision(&event, SUB_ID)?;
        let (_, acked) = stig::execution_reply(&writer.recv::<Frame>()?, id)?;
        if acked != revision {
            return Err(invalid(format!("event {revision} but ack {acked}")));
        }
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    Ok(latency_of(samples))
}

/// Scenario 1, Redis pub/sub: PUBLISH on one connection, the message on a
/// SUBSCRIBE connection.
pub fn latency_redis_pubsub(
    socket: &Path,
    payload: &[u8],
    warmup: usize,
    n: usize,
) -> io::Result<Latency> {
    let mut writer = SyncConn::connect(socket)?;
    let mut sub = SyncConn::connect(socket)?;
    sub.send(&redis::command(&[b"SUBSCRIBE", b"lat"]))?;
    sub.recv::<Resp>()?.ok()?;
    let publish = redis::command(&[b"PUBLISH", b"lat", payload]);
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let started = Instant::now();
        writer.send(&publish)?;
        let message = sub.recv::<Resp>()?.ok()?.into_array()?;
        let elapsed = started.elapsed();
        if message.len() != 3 {
            return Err(invalid("expected a pub/sub message"));
        }
        match writer.recv::<Resp>()?.ok()? {
            Value::Int(1) => {}
            other => return Err(invalid(format!("PUBLISH reached {other:?}"))),
        }
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    Ok(latency_of(samples))
}

fn xadd(key: &[u8], payload: &[u8], streams: usize) -> Vec<u8> {
    let maxlen = (HISTORY_RETENTION / streams.max(1)).to_string();
    redis::command(&[
        b"XADD",
        key,
        b"MAXLEN",
        b"~",
        maxlen.as_bytes(),
        b"*",
        b"status",
        payload,
    ])
}

fn xread(key: &[u8], after: &[u8]) -> Vec<u8> {
    redis::command(&[
        b"XREAD", b"BLOCK", b"0", b"COUNT", b"1", b"STREAMS", key, after,
    ])
}

/// The id of the single entry of an XREAD reply.
fn xread_entry_id(reply: Value) -> io::Result<bytes::Bytes> {
    let mut streams = reply.into_array()?;
    let mut stream = streams
        .pop()
        .ok_or_else(|| invalid("empty XREAD"))?
        .into_array()?;
    let mut entries = stream
        .pop()
        .ok_or_else(|| invalid("bad XREAD"))?
        .into_array()?;
    let mut entry = entries
        .pop()
        .ok_or_else(|| invalid("no entry"))?
        .into_array()?;
    entry.truncate(1);
    entry
        .pop()
        .ok_or_else(|| invalid("no entry id"))?
        .into_bulk()
}

/// Scenario 1, Redis streams: XADD on one connection, read by a blocked
/// XREAD on another (re-armed from the last id right after each entry).
pub fn latency_redis_stream(
    socket: &Path,
    payload: &[u8],
    warmup: usize,
    n: usize,
) -> io::Result<Latency> {
    let mut writer = SyncConn::connect(socket)?;
    let mut reader = SyncConn::connect(socket)?;
    writer.send(&redis::command(&[b"DEL", b"lat"]))?;
    writer.recv::<Resp>()?.ok()?;
    let add = xadd(b"lat", payload, 1);
    reader.send(&xread(b"lat", b"0-0"))?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let started = Instant::now();
        writer.send(&add)?;
        let reply = reader.recv::<Resp>()?.ok()?;
        let elapsed = started.elapsed();
        let id = xread_entry_id(reply)?;
        let added = writer.recv::<Resp>()?.ok()?.into_bulk()?;
        if added != id {
            return Err(invalid("XREAD returned another entry"));
        }
        reader.send(&xread(b"lat", &id))?;
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    Ok(latency_of(samples))
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub per_s: f64,
    /// Server CPU time per operation (update, XADD or delivery), in µs.
    pub server_cpu_us: f64,
    /// The bench client's own CPU time per operation, in µs: it shares the
    /// machine with the server, so it is part of the budget a rate needs.
    pub client_cpu_us: f64,
    /// The share of the machine's CPU time left idle over the window.
    pub idle: f64,
    /// Operations counted.
    pub ops: u64,
    /// stigmer only: revisions the daemon committed over the whole run
    /// (warm-up included), at least every acknowledged update.
    pub committed: u64,
    pub acked: u64,
}

/// Counts operations between the end of a warm-up and the end of the
/// measured window, with the server's CPU time over the same window.
pub(crate) async fn measure(
    counter: &AtomicU64,
    server_pid: u32,
    warmup: Duration,
    window: Duration,
) -> Rate {
    let me = std::process::id();
    tokio::time::sleep(warmup).await;
    let c0 = counter.load(Ordering::Relaxed);
    let cpu0 = procs::cpu_seconds(server_pid).unwrap_or(0.0);
    let own0 = procs::cpu_seconds(me).unwrap_or(0.0);
    let ticks0 = procs::machine_ticks().unwrap_or((0, 0));
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let c1 = counter.load(Ordering::Relaxed);
    let cpu1 = procs::cpu_seconds(server_pid).unwrap_or(0.0);
    let own1 = procs::cpu_seconds(me).unwrap_or(0.0);
    let ticks1 = procs::machine_ticks().unwrap_or((0, 0));
    let elapsed = t0.elapsed().as_secs_f64();
    let ops = c1 - c0;
    let per_op = |seconds: f64| {
        if ops > 0 {
            seconds * 1e6 / ops as f64
        } else {
            0.0
        }
    };
    let all = ticks1.1.saturating_sub(ticks0.1);
    Rate {
        per_s: ops as f64 / elapsed,
        server_cpu_us: per_op(cpu1 - cpu0),
        client_cpu_us: per_op(own1 - own0),
        idle: if all > 0 {
            ticks1.0.saturating_sub(ticks0.0) as f64 / all as f64
        } else {
            0.0
        },
        ops,
        committed: 0,
        acked: 0,
    }
}

async fn stigmer_revision(socket: &Path) -> io::Result<u64> {
    let mut conn = AsyncConn::connect(socket).await?;
    conn.send(&stig::ping(1)).await?;
    stig::ping_revision(&conn.recv::<Frame>().await?, 1)
}

async fn stigmer_create(conn: &mut AsyncConn, id: u64) -> io::Result<String> {
    conn.send(&stig::create(id)).await?;
    Ok(stig::execution_reply(&conn.recv::<Frame>().await?, id)?.0)
}

pub(crate) async fn join_all(mut set: JoinSet<io::Result<()>>) -> io::Result<()> {
    while let Some(joined) = set.join_next().await {
        joined.map_err(|e| io::Error::other(format!("task failed: {e}")))??;
    }
    Ok(())
}

/// What the writer tasks of a throughput run share: the count of
/// acknowledged writes, and the flag that stops them.
#[derive(Clone, Default)]
pub(crate) struct Tally {
    counter: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Tally {
    /// Whether the writers are to go on.
    pub(crate) fn going(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// One more write acknowledged.
    pub(crate) fn acked(&self) {
        self.counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The rate of the writer tasks of `set` (`measure`: after `warmup`,
    /// over `window`); then they are stopped and joined, and `acked` is
    /// every write they counted.
    pub(crate) async fn measure(
        &self,
        set: JoinSet<io::Result<()>>,
        pid: u32,
        warmup: Duration,
        window: Duration,
    ) -> io::Result<Rate> {
        let mut rate = measure(&self.counter, pid, warmup, window).await;
        self.stop.store(true, Ordering::Relaxed);
        join_all(set).await?;
        rate.acked = self.counter.load(Ordering::Relaxed);
        Ok(rate)
    }
}

/// Scenario 2 (and 5), stigmer: `writers` connections, each updating its own
/// execution one acknowledged update at a time.
pub async fn throughput_stigmer(
    socket: &Path,
    pid: u32,
    status: &AgentExecutionStatus,
    writers: usize,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    let tally = Tally::default();
    let mut conns = Vec::with_capacity(writers);
    for _ in 0..writers {
        let mut conn = AsyncConn::connect(socket).await?;
        let execution = stigmer_create(&mut conn, 1).await?;
        conns.push((conn, execution));
    }
    let before = stigmer_revision(socket).await?;
    let mut set = JoinSet::new();
    for (mut conn, execution) in conns {
        let tally = tally.clone();
        let mut updates = stig::Updates::new(&execution, status);
        set.spawn(async move {
            let mut id = 2u64;
            while tally.going() {
                conn.send(updates.frame(id)).await?;
                stig::execution_reply(&conn.recv::<Frame>().await?, id)?;
                tally.acked();
                id += 1;
            }
            Ok(())
        });
    }
    let mut rate = tally.measure(set, pid, warmup, window).await?;
    let after = stigmer_revision(socket).await?;
    rate.committed = after - before;
    if rate.committed < rate.acked {
        return Err(invalid(format!(
            "{} updates acknowledged but only {} committed",
            rate.acked, rate.committed
        )));
    }
    Ok(rate)
}

/// Scenario 2, Redis: `writers` connections, each XADDing to its own stream
/// one acknowledged entry at a time.
pub async fn throughput_redis(
    socket: &Path,
    pid: u32,
    payload: &[u8],
    writers: usize,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    let tally = Tally::default();
    let mut set = JoinSet::new();
    for w in 0..writers {
        let mut conn = AsyncConn::connect(socket).await?;
        let add = xadd(format!("tp{w}").as_bytes(), payload, writers);
        let tally = tally.clone();
        set.spawn(async move {
            while tally.going() {
                conn.send(&add).await?;
                conn.recv::<Resp>().await?.ok()?.into_bulk()?;
                tally.acked();
            }
            Ok(())
        });
    }
    let rate = tally.measure(set, pid, warmup, window).await?;
    // Free the streams, so later scenarios and rounds meet the same server.
    let mut conn = AsyncConn::connect(socket).await?;
    for w in 0..writers {
        conn.send(&redis::command(&[b"DEL", format!("tp{w}").as_bytes()]))
            .await?;
        conn.recv::<Resp>().await?.ok()?;
    }
    Ok(rate)
}

/// Scenario 5's baseline: one writer, one acknowledged update at a time.
pub async fn single_writer_stigmer(
    socket: &Path,
    pid: u32,
    status: &AgentExecutionStatus,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    throughput_stigmer(socket, pid, status, 1, warmup, window).await
}

/// Flow control shared by both fan-out runs: the writer keeps at most
/// `window` updates not yet delivered to every subscriber, so neither
/// server's per-subscriber buffers grow without bound (Redis would
/// disconnect a subscriber past its output-buffer limit; stigmer would send
/// it through a history catch-up).
pub(crate) struct FanoutGate {
    pub(crate) delivered: AtomicU64,
    /// The delivery count the writer waits for.
    target: AtomicU64,
    wake: Notify,
}

impl FanoutGate {
    pub(crate) fn new() -> FanoutGate {
        FanoutGate {
            delivered: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
        }
    }

    pub(crate) fn delivered_one(&self) {
        let d = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if d == self.target.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    pub(crate) async fn wait_for(&self, target: u64) {
        self.target.store(target, Ordering::Relaxed);
        // Bounded: every update is delivered within moments, and a lost
        // subscriber shows up as a missing count, not a hang.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.delivered.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.wake.notified()).await;
        }
    }
}

/// Updates (or publishes) the writer may have ahead of full delivery.
pub(crate) const FANOUT_WINDOW: u64 = 8;

/// Scenario 3, stigmer: one writer, `subscribers` connections each with one
/// subscription to the same execution.
pub async fn fanout_stigmer(
    socket: &Path,
    pid: u32,
    status: &AgentExecutionStatus,
    subscribers: usize,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    let mut writer = AsyncConn::connect(socket).await?;
    let execution = stigmer_create(&mut writer, 1).await?;
    let gate = Arc::new(FanoutGate::new());
    let mut readers: JoinSet<io::Result<()>> = JoinSet::new();
    for _ in 0..subscribers {
        let mut conn = AsyncConn::connect(socket).await?;
        conn.send(&stig::subscribe(SUB_ID, &execution)).await?;
        stig::event_revision(&conn.recv::<Frame>().await?, SUB_ID)?;
        let gate = gate.clone();
        readers.spawn(async move {
            loop {
                let body = conn.recv::<Frame>().await?;
                // Counting is all a subscriber does; the first events are
                // checked to be this stream's updates.
                if gate.delivered.load(Ordering::Relaxed) < subscribers as u64 * 2 {
                    let (kind, _) = stig::event_revision(&body, SUB_ID)?;
                    if kind != EventType::EventUpdate {
                        return Err(invalid(format!("unexpected {kind:?}")));
                    }
                }
                gate.delivered_one();
            }
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (gate, stop) = (gate.clone(), stop.clone());
        let mut updates = stig::Updates::new(&execution, status);
        let subs = subscribers as u64;
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                gate.wait_for(sent.saturating_sub(FANOUT_WINDOW) * subs)
                    .await;
                let id = sent + 2;
                writer.send(updates.frame(id)).await?;
                stig::execution_reply(&writer.recv::<Frame>().await?, id)?;
                sent += 1;
            }
            io::Result::Ok(())
        })
    };
    fanout_rate(&gate, &stop, writing, readers, pid, warmup, window).await
}

/// Ends a fan-out run: counts deliveries over the measured window, stops
/// the writer (its error, if any, is the run's) and drops the subscribers.
pub(crate) async fn fanout_rate(
    gate: &FanoutGate,
    stop: &AtomicBool,
    writing: tokio::task::JoinHandle<io::Result<()>>,
    mut readers: JoinSet<io::Result<()>>,
    pid: u32,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    let rate = measure(&gate.delivered, pid, warmup, window).await;
    stop.store(true, Ordering::Relaxed);
    // Waits for the writer's last round trip.
    writing
        .await
        .map_err(|e| io::Error::other(format!("writer failed: {e}")))??;
    readers.abort_all();
    Ok(rate)
}

/// Scenario 3, Redis: one publisher, `subscribers` SUBSCRIBE connections on
/// one channel.
pub async fn fanout_redis(
    socket: &Path,
    pid: u32,
    payload: &[u8],
    subscribers: usize,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    let mut writer = AsyncConn::connect(socket).await?;
    let gate = Arc::new(FanoutGate::new());
    let mut readers: JoinSet<io::Result<()>> = JoinSet::new();
    for _ in 0..subscribers {
        let mut conn = AsyncConn::connect(socket).await?;
        conn.send(&redis::command(&[b"SUBSCRIBE", b"fan"])).await?;
        conn.recv::<Resp>().await?.ok()?;
        let gate = gate.clone();
        readers.spawn(async move {
            loop {
                let message = conn.recv::<Resp>().await?.ok()?.into_array()?;
                if message.len() != 3 {
                    return Err(invalid("expected a pub/sub message"));
                }
                gate.delivered_one();
            }
        });
    }
    let publish = redis::command(&[b"PUBLISH", b"fan", payload]);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (gate, stop) = (gate.clone(), stop.clone());
        let subs = subscribers as u64;
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                gate.wait_for(sent.saturating_sub(FANOUT_WINDOW) * subs)
                    .await;
                writer.send(&publish).await?;
                match writer.recv::<Resp>().await?.ok()? {
                    Value::Int(n) if n as usize == subs as usize => {}
                    other => return Err(invalid(format!("PUBLISH reached {other:?}"))),
                }
                sent += 1;
            }
            io::Result::Ok(())
        })
    };
    fanout_rate(&gate, &stop, writing, readers, pid, warmup, window).await
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Idle {
    pub rss_bytes: u64,
    pub rss_before_bytes: u64,
}

/// Connections opened at once while setting up the idle scenario.
pub(crate) const IDLE_CONNECT_BATCH: usize = 200;

/// Scenario 4: `n` connections, each holding one subscription (to one of
/// `executions` executions); the server's RSS once they are all open.
pub async fn idle_stigmer(
    socket: &Path,
    pid: u32,
    n: usize,
    executions: usize,
) -> io::Result<Idle> {
    let mut setup = AsyncConn::connect(socket).await?;
    let mut ids = Vec::with_capacity(executions);
    for e in 0..executions {
        ids.push(stigmer_create(&mut setup, e as u64 + 1).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = procs::rss_bytes(pid)?;
    let ids = Arc::new(ids);
    let mut held = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(IDLE_CONNECT_BATCH) {
        let mut set = JoinSet::new();
        for &i in chunk {
            let (ids, socket) = (ids.clone(), socket.to_path_buf());
            set.spawn(async move {
                let mut conn = AsyncConn::connect(&socket).await?;
                conn.send(&stig::subscribe(SUB_ID, &ids[i % ids.len()]))
                    .await?;
                stig::event_revision(&conn.recv::<Frame>().await?, SUB_ID)?;
                io::Result::Ok(conn)
            });
        }
        while let Some(joined) = set.join_next().await {
            held.push(joined.map_err(|e| io::Error::other(e.to_string()))??);
        }
    }
    // Let the daemon settle (allocator, lazily started tasks).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = procs::rss_bytes(pid)?;
    // For profiling: keep the connections open this many more seconds.
    if let Some(hold) = std::env::var("STIGMER_BENCH_IDLE_HOLD")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        say_hold(pid, hold);
        tokio::time::sleep(Duration::from_secs(hold.min(600))).await;
    }
    drop(held);
    Ok(Idle {
        rss_bytes: rss,
        rss_before_bytes: rss_before,
    })
}

fn say_hold(pid: u32, secs: u64) {
    eprintln!("[bench] holding 10,000 idle connections to pid {pid} for {secs} s");
}

/// Scenario 4 for Redis (for comparison only): `n` SUBSCRIBE connections.
pub async fn idle_redis(socket: &Path, pid: u32, n: usize, channels: usize) -> io::Result<Idle> {
    let rss_before = procs::rss_bytes(pid)?;
    let mut held = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(IDLE_CONNECT_BATCH) {
        let mut set = JoinSet::new();
        for &i in chunk {
            let socket = socket.to_path_buf();
            set.spawn(async move {
                let mut conn = AsyncConn::connect(&socket).await?;
                let channel = format!("idle{}", i % channels);
                conn.send(&redis::command(&[b"SUBSCRIBE", channel.as_bytes()]))
                    .await?;
                conn.recv::<Resp>().await?.ok()?;
                io::Result::Ok(conn)
            });
        }
        while let Some(joined) = set.join_next().await {
            held.push(joined.map_err(|e| io::Error::other(e.to_string()))??);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = procs::rss_bytes(pid)?;
    drop(held);
    Ok(Idle {
        rss_bytes: rss,
        rss_before_bytes: rss_before,
    })
}

/// The Redis server's pid (INFO server), for its RSS and CPU time.
pub fn redis_pid(socket: &Path) -> io::Result<u32> {
    let mut conn = SyncConn::connect(socket)?;
    conn.send(&redis::command(&[b"INFO", b"server"]))?;
    let info = conn.recv::<Resp>()?.ok()?.into_bulk()?;
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| invalid("no process_id in INFO"))
}
