//! The transcript scenario on the stigmer daemon: upstream's mode (the whole
//! status every `every` tokens), append mode (one `append` per token) and,
//! for the append's cost beside an update's under the same load, one 1 KiB
//! `update_status` per token; each execution read by a delta subscriber.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use stigmer_proto::agentexecution::ExecutionPhase;
use stigmer_proto::daemon::{op, EventType, Op};
use tokio::task::JoinSet;

use super::{
    gather, idle_share, join, pace, recv_timed, runner_start, Counters, Disk, Files, Held, Mode,
    Pacer, Seen, Settings, Times, Tokens, CHECKPOINT_WAIT, SETTLE, SUB_ID,
};
use crate::procs;
use crate::stig::{self, Frame};
use crate::wire::{invalid, AsyncConn};

/// The AI message's length after one operation of a delta (message 0 is the
/// only message); a gap or an overlap fails the run.
pub(super) fn content_len_after(op: &Op, len: u64) -> io::Result<u64> {
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

/// What a stigmer mode's runners send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sends {
    /// The whole cumulative status every `every` tokens (upstream's way).
    Upstream,
    /// One `append` per token.
    Append,
    /// One `update_status` of the throughput scenario's 1 KiB status per
    /// token (the status never changes, so each update is stored and
    /// streamed as a stamp, as there): an update's cost under the same pace
    /// and subscribers as an append's. The text is not sent, so the
    /// subscriber counts a token per DELTA and the final state is not
    /// checked against the tokens.
    Update1Kib,
}

/// One stigmer mode on a daemon of its own (`db` its database), each
/// execution with one delta subscriber.
pub async fn stigmer(
    socket: &Path,
    pid: u32,
    db: &Path,
    s: &Settings,
    tokens: &Arc<Tokens>,
    sends: Sends,
) -> io::Result<Mode> {
    let n = tokens.len();
    let mut runners = Vec::with_capacity(s.runners);
    let mut subscribers = Vec::with_capacity(s.runners);
    for _ in 0..s.runners {
        let mut conn = AsyncConn::connect(socket).await?;
        conn.send(&stig::create(1)).await?;
        let (execution, _) = stig::execution_reply(&recv_timed::<Frame, _>(&mut conn).await?, 1)?;
        let mut sub = AsyncConn::connect(socket).await?;
        sub.send(&stig::subscribe_deltas(SUB_ID, &execution))
            .await?;
        let first = stig::event(&recv_timed::<Frame, _>(&mut sub).await?, SUB_ID)?;
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
        let by_count = sends == Sends::Update1Kib;
        subs.spawn(stigmer_subscriber(sub, held, revision, by_count));
        let start = runner_start(s, r);
        let (tokens, s) = (tokens.clone(), *s);
        match sends {
            Sends::Upstream => {
                runs.spawn(upstream_runner(conn, execution, tokens, times, start, s))
            }
            Sends::Append => {
                let requests = AppendTokens::new(&execution, tokens);
                runs.spawn(per_token_runner(conn, requests, n, times, start, s))
            }
            Sends::Update1Kib => {
                let requests = UpdateTokens::new(&execution);
                runs.spawn(per_token_runner(conn, requests, n, times, start, s))
            }
        };
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
    if sends != Sends::Update1Kib {
        mode.final_state_bytes = stigmer_final_states(socket, &ids, tokens).await?;
    }
    Ok(mode)
}

/// `write_bytes` when the subscribers hold a quarter, then three quarters,
/// of all the tokens.
pub(super) async fn quarter_marks(
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
pub(super) async fn stigmer_final_states(
    socket: &Path,
    ids: &[String],
    tokens: &Tokens,
) -> io::Result<u64> {
    let want = tokens.content();
    let mut conn = AsyncConn::connect(socket).await?;
    let mut total = 0u64;
    for (i, execution_id) in ids.iter().enumerate() {
        let id = i as u64 + 1;
        conn.send(&stig::get(id, execution_id)).await?;
        let execution = stig::execution(&recv_timed::<Frame, _>(&mut conn).await?, id)?;
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
/// revision), until the END that follows the completion. `by_count`: each
/// DELTA holds the next token (`Sends::Update1Kib`, whose updates carry no
/// text); otherwise the AI message's length says which tokens it holds.
pub(super) async fn stigmer_subscriber(
    mut conn: AsyncConn,
    mut held: Held,
    mut last: u64,
    by_count: bool,
) -> io::Result<Seen> {
    let (mut len, mut events, mut resyncs) = (0u64, 1u64, 0u64);
    let mut deltas = 0usize;
    loop {
        let body = recv_timed::<Frame, _>(&mut conn).await?;
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
                if by_count {
                    deltas += 1;
                    len = held.tokens.ends.get(deltas - 1).copied().unwrap_or(len);
                } else {
                    for op in &event.ops {
                        len = content_len_after(op, len)?;
                    }
                }
            }
            Ok(kind @ (EventType::EventUpdate | EventType::EventResync)) => {
                if kind == EventType::EventResync {
                    resyncs += 1;
                }
                if by_count {
                    return Err(invalid(
                        "a stream of stamps resynced: the tokens count is lost",
                    ));
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
pub(super) async fn upstream_runner(
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
    let mut pacer = Pacer::new()?;
    for i in 0..n {
        pace(&mut pacer, start, i, &s).await?;
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
        stig::execution_reply(&recv_timed::<Frame, _>(&mut conn).await?, id)?;
        id += 1;
    }
    updates.set_phase(ExecutionPhase::ExecutionCompleted);
    conn.send(updates.frame(id)).await?;
    stig::execution_reply(&recv_timed::<Frame, _>(&mut conn).await?, id)?;
    Ok(id - 1)
}

/// What a runner that sends one request per token sends: the request of
/// token `i`, then the one that completes the execution.
pub(super) trait PerToken {
    fn token(&mut self, id: u64, i: usize) -> &[u8];
    fn finish(&mut self, id: u64) -> &[u8];
}

/// Append mode: one `append` per token (an `AppendText` at the tracked
/// offset), then one setting the phase COMPLETED.
pub(super) struct AppendTokens {
    appends: stig::Appends,
    tokens: Arc<Tokens>,
}

impl AppendTokens {
    pub(super) fn new(execution: &str, tokens: Arc<Tokens>) -> AppendTokens {
        AppendTokens {
            appends: stig::Appends::new(execution),
            tokens,
        }
    }
}

impl PerToken for AppendTokens {
    fn token(&mut self, id: u64, i: usize) -> &[u8] {
        self.appends.token(id, self.tokens.text[i])
    }
    fn finish(&mut self, id: u64) -> &[u8] {
        self.appends.finish(id, ExecutionPhase::ExecutionCompleted)
    }
}

/// `Sends::Update1Kib`: the throughput scenario's `update_status` (the same
/// 1 KiB status, `minimal_reply`) per token, then the same status
/// COMPLETED.
pub(super) struct UpdateTokens {
    updates: stig::Updates,
    completed: stig::Updates,
}

impl UpdateTokens {
    pub(super) fn new(execution: &str) -> UpdateTokens {
        let mut status = stig::status_of_size(1024);
        let updates = stig::Updates::new(execution, &status);
        status.phase = ExecutionPhase::ExecutionCompleted as i32;
        UpdateTokens {
            updates,
            completed: stig::Updates::new(execution, &status),
        }
    }
}

impl PerToken for UpdateTokens {
    fn token(&mut self, id: u64, _: usize) -> &[u8] {
        self.updates.frame(id)
    }
    fn finish(&mut self, id: u64) -> &[u8] {
        self.completed.frame(id)
    }
}

/// A runner with one request per token (append mode, or a 1 KiB update per
/// token), each waiting for its reply, then the completion.
pub(super) async fn per_token_runner(
    mut conn: AsyncConn,
    mut requests: impl PerToken,
    n: usize,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    let mut id = 2u64;
    let mut pacer = Pacer::new()?;
    for i in 0..n {
        pace(&mut pacer, start, i, &s).await?;
        let now = times.now();
        times.produced[i].store(now, Ordering::Relaxed);
        times.sent[i].store(now, Ordering::Relaxed);
        conn.send(requests.token(id, i)).await?;
        stig::execution_reply(&recv_timed::<Frame, _>(&mut conn).await?, id)?;
        id += 1;
    }
    conn.send(requests.finish(id)).await?;
    stig::execution_reply(&recv_timed::<Frame, _>(&mut conn).await?, id)?;
    Ok(id - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
