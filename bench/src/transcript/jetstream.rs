//! The transcript scenario on NATS JetStream (issue 21), in the two shapes
//! the Redis side has, but durable: each runner publishes with an
//! acknowledgement to a file-storage stream (the message stored before the
//! ack), and one push consumer per runner delivers its subject to its
//! subscriber.
//!
//! - whole status (`transcript.nats_jetstream.whole_status`): the whole
//!   cumulative status every `every` tokens (and with the last), then the
//!   status COMPLETED, as upstream's mode and XADD do;
//! - per token (`transcript.nats_jetstream.per_token`): one message per
//!   token, as append mode and PUBLISH do.
//!
//! Disk: the size of the server's JetStream store directory (`-sd`, given
//! here as `store`) before the run, right after it and `CHECKPOINT_WAIT`
//! later (the same wait as the daemon's), and the server's `write_bytes`.
//! The stream keeps every message of the run (`max_msgs` = the daemon's
//! `--history-retention` in this scenario) and is deleted afterwards.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use stigmer_proto::agentexecution::{AgentExecutionStatus, ExecutionPhase};
use tokio::task::JoinSet;

use super::daemon::quarter_marks;
use super::{
    gather, idle_share, join, pace, runner_start, Counters, Disk, Files, Held, Mode, Pacer, Seen,
    Settings, Times, Tokens, CHECKPOINT_WAIT, STALL,
};
use crate::nats;
use crate::procs;
use crate::scenarios::HISTORY_RETENTION;
use crate::stig;
use crate::wire::invalid;

/// The sid of each connection's one subscription.
const SID: u64 = 1;

/// The next message, bounded by `STALL`.
async fn msg(conn: &mut nats::Async) -> io::Result<(Bytes, Option<Bytes>, Bytes)> {
    tokio::time::timeout(STALL, nats::msg(conn))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "nothing received for 30 s"))?
}

/// Bytes of every file under `dir` (0 when it does not exist).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// The store's size, as `Files` (the `db` field; JetStream has no WAL
/// apart: its block files are its log).
fn store_files(store: &Path) -> Files {
    Files {
        db: dir_size(store),
        wal: 0,
    }
}

/// One JetStream mode: runners publishing the whole status every `every`
/// tokens (`per_token` false) or one message per token, each read by a
/// push consumer of its own subject. `tag` names the round's stream.
pub async fn jetstream(
    addr: SocketAddr,
    pid: u32,
    store: &Path,
    s: &Settings,
    tokens: &Arc<Tokens>,
    per_token: bool,
    tag: &str,
) -> io::Result<Mode> {
    let n = tokens.len();
    let kind = if per_token { "token" } else { "status" };
    let stream = format!("BENCH_TR_{}_{tag}", kind.to_uppercase());
    let prefix = format!("bench_tr_{kind}_{tag}");
    let mut api = nats::api_connect(addr).await?;
    let keep = (s.revisions() as usize).max(HISTORY_RETENTION);
    nats::create_stream(&mut api, nats::stream_config(&stream, &prefix, keep)).await?;
    let mut pairs = Vec::with_capacity(s.runners);
    let mut consumers = Vec::with_capacity(s.runners);
    for r in 0..s.runners {
        let subject = format!("{prefix}.r{r}");
        let inbox = format!("_INBOX.tr_{kind}_{tag}_{r}");
        let deliver = format!("deliver.tr_{kind}_{tag}_{r}");
        let mut conn = nats::connect(addr).await?;
        nats::send_flushed(&mut conn, &nats::subscribe(&inbox, SID)).await?;
        let mut sub = nats::connect(addr).await?;
        nats::send_flushed(&mut sub, &nats::subscribe(&deliver, SID)).await?;
        consumers.push(nats::consumer_request(&stream, &subject, &deliver));
        pairs.push((conn, sub, subject, inbox));
    }
    nats::api_batch(&mut api, &consumers).await?;

    let before = store_files(store);
    let written0 = procs::write_bytes(pid).unwrap_or(0);
    let c0 = Counters::take(pid);
    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut subs = JoinSet::new();
    let mut runs = JoinSet::new();
    for (r, (conn, sub, subject, inbox)) in pairs.into_iter().enumerate() {
        let times = Arc::new(Times::new(base, n));
        let mut held = Held::new(tokens.clone(), times.clone(), delivered.clone());
        held.start_bytes = sub.consumed();
        let start = runner_start(s, r);
        let out = Out {
            conn,
            subject,
            inbox,
        };
        if per_token {
            subs.spawn(token_subscriber(sub, held));
            runs.spawn(token_runner(out, tokens.clone(), times, start, *s));
        } else {
            subs.spawn(status_subscriber(sub, held));
            runs.spawn(status_runner(out, tokens.clone(), times, start, *s));
        }
    }
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
    let after_run = store_files(store);
    let written1 = procs::write_bytes(pid).unwrap_or(0);
    let c1 = Counters::take(pid);
    let (w1, w3) = sampler
        .await
        .map_err(|e| io::Error::other(format!("sampler failed: {e}")))?;
    // As long as the daemon's wait, so that both sides' CPU spans match.
    tokio::time::sleep(CHECKPOINT_WAIT).await;
    let after_wait = store_files(store);
    let written2 = procs::write_bytes(pid).unwrap_or(0);
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
            after_checkpoint: after_wait,
            written_run: written1.saturating_sub(written0),
            written_checkpoint: written2.saturating_sub(written0),
            written_first_quarter: w1.unwrap_or(written1).saturating_sub(written0),
            written_last_quarter: written1.saturating_sub(w3.unwrap_or(written1)),
        },
        ..Default::default()
    };
    let finals: u64 = seen.iter().map(|(_, f)| *f).sum();
    gather(&mut mode, seen.into_iter().map(|(s, _)| s).collect());
    mode.final_state_bytes = finals;
    nats::delete_stream(&mut api, &stream).await?;
    Ok(mode)
}

/// A runner's connection: it publishes to `subject` and takes the acks on
/// `inbox`.
struct Out {
    conn: nats::Async,
    subject: String,
    inbox: String,
}

impl Out {
    /// Publishes and waits for the stream's acknowledgement.
    async fn publish(&mut self, payload: &[u8]) -> io::Result<()> {
        let publish = nats::publish(&self.subject, Some(&self.inbox), payload);
        self.conn.send(&publish).await?;
        let (_, _, ack) = msg(&mut self.conn).await?;
        nats::ack_seq(&ack)?;
        Ok(())
    }
}

/// The whole status every `every` tokens (and with the last), then the
/// status COMPLETED.
async fn status_runner(
    mut out: Out,
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    let mut status = stig::transcript_status();
    let mut payload = Vec::new();
    let (mut requests, mut first) = (0u64, 0usize);
    let n = tokens.len();
    let mut pacer = Pacer::new()?;
    for i in 0..n {
        pace(&mut pacer, start, i, &s).await?;
        times.produced[i].store(times.now(), Ordering::Relaxed);
        status.messages[0].content.push_str(tokens.text[i]);
        if (i + 1) % s.every != 0 && i + 1 != n {
            continue;
        }
        payload.clear();
        status
            .encode(&mut payload)
            .map_err(|e| invalid(e.to_string()))?;
        let now = times.now();
        for t in &times.sent[first..=i] {
            t.store(now, Ordering::Relaxed);
        }
        first = i + 1;
        out.publish(&payload).await?;
        requests += 1;
    }
    status.phase = ExecutionPhase::ExecutionCompleted as i32;
    payload.clear();
    status
        .encode(&mut payload)
        .map_err(|e| invalid(e.to_string()))?;
    out.publish(&payload).await?;
    Ok(requests + 1)
}

/// The consumer of one runner's statuses, until the one COMPLETED; each
/// decoded for the length of its AI message. Returns the last status's
/// size too.
async fn status_subscriber(mut conn: nats::Async, mut held: Held) -> io::Result<(Seen, u64)> {
    let mut events = 0u64;
    loop {
        let (_, _, payload) = msg(&mut conn).await?;
        events += 1;
        let status = AgentExecutionStatus::decode(payload.as_ref())
            .map_err(|e| invalid(format!("a JetStream message does not decode: {e}")))?;
        let len = status
            .messages
            .first()
            .map(|m| m.content.len() as u64)
            .unwrap_or(0);
        held.advance(len, conn.consumed());
        if status.phase == ExecutionPhase::ExecutionCompleted as i32 {
            let size = payload.len() as u64;
            return Ok((held.finish(conn.consumed(), events, 0)?, size));
        }
    }
}

/// One message per token.
async fn token_runner(
    mut out: Out,
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    let mut pacer = Pacer::new()?;
    for i in 0..tokens.len() {
        pace(&mut pacer, start, i, &s).await?;
        let now = times.now();
        times.produced[i].store(now, Ordering::Relaxed);
        times.sent[i].store(now, Ordering::Relaxed);
        out.publish(tokens.text[i].as_bytes()).await?;
    }
    Ok(tokens.len() as u64)
}

/// The consumer of one runner's tokens: each message is the next token.
async fn token_subscriber(mut conn: nats::Async, mut held: Held) -> io::Result<(Seen, u64)> {
    let (mut len, mut events) = (0u64, 0u64);
    while !held.done() {
        let (_, _, token) = msg(&mut conn).await?;
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
    fn dir_size_sums_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a").join("x"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("y"), [0u8; 20]).unwrap();
        assert_eq!(dir_size(dir.path()), 120);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }
}
