//! The transcript scenario on Redis: upstream's pattern (`XADD` of the whole
//! status every `every` tokens, read by `XREAD BLOCK`) and pub/sub (one
//! `PUBLISH` per token).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use stigmer_proto::agentexecution::{AgentExecutionStatus, ExecutionPhase};
use tokio::task::JoinSet;

use super::{
    gather, idle_share, join, pace, recv_timed, runner_start, Counters, Held, Mode, Pacer, Seen,
    Settings, Times, Tokens,
};
use crate::redis::{self, Resp, Value};
use crate::scenarios::HISTORY_RETENTION;
use crate::stig;
use crate::wire::{invalid, AsyncConn};

/// One XADD of a whole status, RESP written straight around its encoding.
pub(super) fn xadd_status(
    out: &mut Vec<u8>,
    key: &[u8],
    maxlen: &[u8],
    status: &AgentExecutionStatus,
) {
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
pub(super) fn xread_entries(reply: Value) -> io::Result<Vec<(Bytes, Bytes)>> {
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
        recv_timed::<Resp, _>(&mut setup).await?.ok()?;
    }
    let mut pairs = Vec::with_capacity(s.runners);
    for key in &keys {
        let conn = AsyncConn::connect(socket).await?;
        let mut sub = AsyncConn::connect(socket).await?;
        if publish {
            sub.send(&redis::command(&[b"SUBSCRIBE", key.as_bytes()]))
                .await?;
            recv_timed::<Resp, _>(&mut sub).await?.ok()?;
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
        recv_timed::<Resp, _>(&mut setup).await?.ok()?;
    }
    Ok(mode)
}

/// Upstream's pattern on Redis: XADD of the whole status every `every`
/// tokens (and with the last), then the status COMPLETED.
pub(super) async fn xadd_runner(
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
    let mut pacer = Pacer::new()?;
    for i in 0..n {
        pace(&mut pacer, start, i, &s).await?;
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
        recv_timed::<Resp, _>(&mut conn).await?.ok()?.into_bulk()?;
        requests += 1;
    }
    status.phase = ExecutionPhase::ExecutionCompleted as i32;
    xadd_status(&mut out, key.as_bytes(), maxlen.as_bytes(), &status);
    conn.send(&out).await?;
    recv_timed::<Resp, _>(&mut conn).await?.ok()?.into_bulk()?;
    Ok(requests + 1)
}

/// One XREAD BLOCK consumer of a stream, from its start, until the entry
/// whose status is COMPLETED; each entry's status decoded for the length
/// of its AI message. Returns the last entry's size too.
pub(super) async fn xread_consumer(
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
        let reply = recv_timed::<Resp, _>(&mut conn).await?.ok()?;
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
pub(super) async fn publish_runner(
    mut conn: AsyncConn,
    channel: String,
    tokens: Arc<Tokens>,
    times: Arc<Times>,
    start: tokio::time::Instant,
    s: Settings,
) -> io::Result<u64> {
    let mut pacer = Pacer::new()?;
    for i in 0..tokens.len() {
        pace(&mut pacer, start, i, &s).await?;
        let publish = redis::command(&[b"PUBLISH", channel.as_bytes(), tokens.text[i].as_bytes()]);
        let now = times.now();
        times.produced[i].store(now, Ordering::Relaxed);
        times.sent[i].store(now, Ordering::Relaxed);
        conn.send(&publish).await?;
        match recv_timed::<Resp, _>(&mut conn).await?.ok()? {
            Value::Int(1) => {}
            other => return Err(invalid(format!("PUBLISH reached {other:?}"))),
        }
    }
    Ok(tokens.len() as u64)
}

/// The subscriber of one channel: each message is the next token.
pub(super) async fn publish_subscriber(
    mut conn: AsyncConn,
    mut held: Held,
) -> io::Result<(Seen, u64)> {
    let (mut len, mut events) = (0u64, 1u64);
    while !held.done() {
        let mut message = recv_timed::<Resp, _>(&mut conn).await?.ok()?.into_array()?;
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
