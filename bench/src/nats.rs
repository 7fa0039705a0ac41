//! The NATS JetStream side (issue 21): a minimal client of the NATS text
//! protocol over the same buffered-socket code as the stigmer and Redis
//! clients (`wire.rs`), and the few JetStream API requests the scenarios
//! need (create and delete a file-backed stream, create push consumers).
//!
//! Hand-rolled rather than `async-nats` for the reason `wire.rs` gives:
//! `async-nats` runs each connection on its own task fed by a channel, a
//! hop the stigmer and Redis clients do not have. A publish here is one
//! `write_all` of pre-built bytes, as an XADD is.

use std::io;
use std::net::{SocketAddr, TcpStream as StdTcp};

use bytes::{Buf, Bytes, BytesMut};
use serde_json::{json, Value as Json};
use tokio::net::TcpStream;

use crate::wire::{invalid, AsyncConn, Parse, SyncConn};

/// Longest control line the bench accepts (a `MSG` line with two subjects
/// is well under 1 KiB; `INFO` is a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

/// What the server sends.
#[derive(Debug)]
pub enum Op {
    /// `MSG` or `HMSG` (headers, when present, are left in `headers`).
    Msg {
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
    Info,
    Ping,
    Pong,
    Ok,
    Err(Bytes),
}

/// One whole server operation.
pub struct Nats;

impl Parse for Nats {
    type Out = Op;
    fn parse(buf: &mut BytesMut) -> io::Result<Option<Op>> {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            if buf.len() > MAX_LINE {
                return Err(invalid("NATS control line too long"));
            }
            return Ok(None);
        };
        let line = &buf[..eol];
        let word_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let op = match &line[..word_end] {
            b"MSG" | b"HMSG" => {
                let headered = line[0] == b'H';
                let args: Vec<&[u8]> = line[word_end..]
                    .split(|&b| b == b' ' || b == b'\t')
                    .filter(|a| !a.is_empty())
                    .collect();
                let num = |a: &[u8]| -> io::Result<usize> {
                    std::str::from_utf8(a)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| invalid("bad NATS size"))
                };
                // MSG subject sid [reply] total; HMSG subject sid [reply] hdr total
                let fixed = if headered { 4 } else { 3 };
                if args.len() != fixed && args.len() != fixed + 1 {
                    return Err(invalid(format!(
                        "bad NATS line {:?}",
                        String::from_utf8_lossy(line)
                    )));
                }
                let total = num(args[args.len() - 1])?;
                let hdr = if headered {
                    num(args[args.len() - 2])?
                } else {
                    0
                };
                if hdr > total {
                    return Err(invalid("NATS header longer than message"));
                }
                let reply = (args.len() == fixed + 1).then(|| Bytes::copy_from_slice(args[2]));
                let subject = Bytes::copy_from_slice(args[0]);
                let start = eol + 2;
                if buf.len() < start + total + 2 {
                    return Ok(None);
                }
                buf.advance(start);
                let mut body = buf.split_to(total).freeze();
                buf.advance(2);
                let headers = headered.then(|| body.split_to(hdr));
                return Ok(Some(Op::Msg {
                    subject,
                    reply,
                    headers,
                    payload: body,
                }));
            }
            b"INFO" => Op::Info,
            b"PING" => Op::Ping,
            b"PONG" => Op::Pong,
            b"+OK" => Op::Ok,
            b"-ERR" => Op::Err(Bytes::copy_from_slice(&line[word_end..])),
            other => {
                return Err(invalid(format!(
                    "unknown NATS operation {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        buf.advance(eol + 2);
        Ok(Some(op))
    }
}

/// `CONNECT` (no +OK for every command, headers for JetStream's status
/// messages) followed by a `PING` whose `PONG` says the server took it.
const HANDSHAKE: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
\"no_responders\":true,\"protocol\":1,\"lang\":\"stigmer-bench\",\"version\":\"0\"}\r\nPING\r\n";

/// `PUB subject [reply] len`, then the payload.
pub fn publish(subject: &str, reply: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    if let Some(reply) = reply {
        out.push(b' ');
        out.extend_from_slice(reply.as_bytes());
    }
    out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// `SUB subject sid`.
pub fn subscribe(subject: &str, sid: u64) -> Vec<u8> {
    format!("SUB {subject} {sid}\r\n").into_bytes()
}

/// A `MSG` (anything else is an error, PINGs aside, which the callers
/// answer); the server's `INFO` updates and stray `PONG`s are skipped.
fn expect_msg(op: Op) -> io::Result<Option<(Bytes, Option<Bytes>, Bytes)>> {
    match op {
        Op::Msg {
            subject,
            reply,
            headers,
            payload,
        } => {
            // A status-only message (503 no responders, 408 ...) has headers
            // and no payload.
            if let Some(h) = headers {
                if payload.is_empty() {
                    return Err(invalid(format!(
                        "NATS status message: {}",
                        String::from_utf8_lossy(&h).trim()
                    )));
                }
            }
            Ok(Some((subject, reply, payload)))
        }
        Op::Info | Op::Ok | Op::Pong | Op::Ping => Ok(None),
        Op::Err(e) => Err(invalid(format!(
            "NATS error: {}",
            String::from_utf8_lossy(&e)
        ))),
    }
}

/// A blocking connection for the latency scenario.
pub type Sync = SyncConn<StdTcp>;
/// An async connection for the rest.
pub type Async = AsyncConn<TcpStream>;

pub fn connect_sync(addr: SocketAddr) -> io::Result<Sync> {
    let mut conn = SyncConn::connect_tcp(addr)?;
    match conn.recv::<Nats>()? {
        Op::Info => {}
        other => return Err(invalid(format!("expected INFO, got {other:?}"))),
    }
    conn.send(HANDSHAKE)?;
    sync_flush_wait(&mut conn)?;
    Ok(conn)
}

/// Reads until the `PONG` of a `PING` sent before.
fn sync_flush_wait(conn: &mut Sync) -> io::Result<()> {
    loop {
        match conn.recv::<Nats>()? {
            Op::Pong => return Ok(()),
            Op::Ping => conn.send(b"PONG\r\n")?,
            Op::Err(e) => {
                return Err(invalid(format!(
                    "NATS error: {}",
                    String::from_utf8_lossy(&e)
                )))
            }
            _ => {}
        }
    }
}

/// Sends `bytes` and waits until the server has processed them (a `PING`
/// behind them answered), so a `SUB` is in place before what depends on it.
pub fn sync_send_flushed(conn: &mut Sync, bytes: &[u8]) -> io::Result<()> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(b"PING\r\n");
    conn.send(&out)?;
    sync_flush_wait(conn)
}

/// The next message: (subject, reply, payload).
pub fn sync_msg(conn: &mut Sync) -> io::Result<(Bytes, Option<Bytes>, Bytes)> {
    loop {
        let op = conn.recv::<Nats>()?;
        if matches!(op, Op::Ping) {
            conn.send(b"PONG\r\n")?;
            continue;
        }
        if let Some(msg) = expect_msg(op)? {
            return Ok(msg);
        }
    }
}

pub async fn connect(addr: SocketAddr) -> io::Result<Async> {
    let mut conn = AsyncConn::connect_tcp(addr).await?;
    match conn.recv::<Nats>().await? {
        Op::Info => {}
        other => return Err(invalid(format!("expected INFO, got {other:?}"))),
    }
    conn.send(HANDSHAKE).await?;
    flush_wait(&mut conn).await?;
    Ok(conn)
}

async fn flush_wait(conn: &mut Async) -> io::Result<()> {
    loop {
        match conn.recv::<Nats>().await? {
            Op::Pong => return Ok(()),
            Op::Ping => conn.send(b"PONG\r\n").await?,
            Op::Err(e) => {
                return Err(invalid(format!(
                    "NATS error: {}",
                    String::from_utf8_lossy(&e)
                )))
            }
            _ => {}
        }
    }
}

/// As `sync_send_flushed`.
pub async fn send_flushed(conn: &mut Async, bytes: &[u8]) -> io::Result<()> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(b"PING\r\n");
    conn.send(&out).await?;
    flush_wait(conn).await
}

/// The next message: (subject, reply, payload).
pub async fn msg(conn: &mut Async) -> io::Result<(Bytes, Option<Bytes>, Bytes)> {
    loop {
        let op = conn.recv::<Nats>().await?;
        if matches!(op, Op::Ping) {
            conn.send(b"PONG\r\n").await?;
            continue;
        }
        if let Some(msg) = expect_msg(op)? {
            return Ok(msg);
        }
    }
}

/// The stream sequence of a JetStream publish acknowledgement
/// (`{"stream":..,"seq":N}`), or its error.
pub fn ack_seq(payload: &[u8]) -> io::Result<u64> {
    let v: Json = serde_json::from_slice(payload)
        .map_err(|e| invalid(format!("JetStream ack is not JSON: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(invalid(format!("JetStream error: {err}")));
    }
    v.get("seq")
        .and_then(Json::as_u64)
        .ok_or_else(|| invalid(format!("JetStream ack without seq: {v}")))
}

/// The stream sequence of a push consumer's delivery, from its reply
/// subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
/// (or the newer form with domain and account hash in front: 12 tokens and
/// more, the stream sequence 8th). Consumers with `ack_policy: none`
/// still carry it.
pub fn delivery_seq(reply: Option<&Bytes>) -> io::Result<u64> {
    let reply = reply.ok_or_else(|| invalid("a JetStream delivery without a reply subject"))?;
    let tokens: Vec<&[u8]> = reply.split(|&b| b == b'.').collect();
    let at = match tokens.len() {
        9 => 5,
        n if n >= 12 => 7,
        _ => return Err(invalid("unexpected JetStream ack subject")),
    };
    std::str::from_utf8(tokens[at])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad stream sequence in ack subject"))
}

/// A JetStream API reply: its JSON, or the error it carries.
fn api_reply(payload: &[u8]) -> io::Result<Json> {
    let v: Json = serde_json::from_slice(payload)
        .map_err(|e| invalid(format!("JetStream API reply is not JSON: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(invalid(format!("JetStream API error: {err}")));
    }
    Ok(v)
}

/// The file-backed stream every scenario publishes to: `subjects` `<prefix>.>`,
/// limits retention capped at `max_msgs` messages (the daemon's
/// `--history-retention`), the oldest discarded, one replica (a single
/// server). Storage settings are the server's defaults (see
/// docs/PERFORMANCE.md: written to the block file before the ack, fsynced
/// on the file store's own interval).
pub fn stream_config(name: &str, prefix: &str, max_msgs: usize) -> Json {
    json!({
        "name": name,
        "subjects": [format!("{prefix}.>")],
        "storage": "file",
        "retention": "limits",
        "discard": "old",
        "max_msgs": max_msgs,
        "num_replicas": 1,
    })
}

/// A push consumer that delivers every new message on `filter` to
/// `deliver`, unacknowledged (`ack_policy: none`, as an ordered consumer
/// is; no heartbeats or flow control, which the bench's own window
/// replaces).
pub fn push_consumer(stream: &str, filter: &str, deliver: &str) -> Json {
    json!({
        "stream_name": stream,
        "config": {
            "deliver_subject": deliver,
            "deliver_policy": "new",
            "ack_policy": "none",
            "replay_policy": "instant",
            "filter_subject": filter,
        },
    })
}

/// The inbox a setup connection takes API replies on (`<inbox>.<n>`).
pub const API_INBOX: &str = "_INBOX.bench_api";
const API_SID: u64 = 999_999;

/// A setup connection for JetStream API requests.
pub async fn api_connect(addr: SocketAddr) -> io::Result<Async> {
    let mut conn = connect(addr).await?;
    send_flushed(&mut conn, &subscribe(&format!("{API_INBOX}.*"), API_SID)).await?;
    Ok(conn)
}

/// JetStream API requests sent together and answered in order of their
/// replies (matched by reply subject): one round trip for a batch.
pub async fn api_batch(conn: &mut Async, requests: &[(String, Json)]) -> io::Result<Vec<Json>> {
    let mut out = Vec::new();
    for (i, (subject, body)) in requests.iter().enumerate() {
        let body = serde_json::to_vec(body).map_err(|e| invalid(e.to_string()))?;
        out.extend_from_slice(&publish(subject, Some(&format!("{API_INBOX}.{i}")), &body));
    }
    conn.send(&out).await?;
    let mut replies: Vec<Option<Json>> = vec![None; requests.len()];
    for _ in 0..requests.len() {
        let (subject, _, payload) = msg(conn).await?;
        let i = subject
            .rsplit(|&b| b == b'.')
            .next()
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|&i| i < replies.len())
            .ok_or_else(|| invalid("a JetStream API reply to no request"))?;
        replies[i] = Some(api_reply(&payload)?);
    }
    replies
        .into_iter()
        .map(|r| r.ok_or_else(|| invalid("a JetStream API request unanswered")))
        .collect()
}

pub async fn api(conn: &mut Async, subject: String, body: Json) -> io::Result<Json> {
    let mut replies = api_batch(conn, &[(subject, body)]).await?;
    replies
        .pop()
        .ok_or_else(|| invalid("a JetStream API request unanswered"))
}

pub async fn create_stream(conn: &mut Async, config: Json) -> io::Result<()> {
    let name = config["name"].as_str().unwrap_or_default().to_string();
    api(conn, format!("$JS.API.STREAM.CREATE.{name}"), config).await?;
    Ok(())
}

/// Deletes a stream (and its consumers), so later scenarios and rounds meet
/// the same server, as the Redis side `DEL`s its streams.
pub async fn delete_stream(conn: &mut Async, name: &str) -> io::Result<()> {
    api(conn, format!("$JS.API.STREAM.DELETE.{name}"), json!({})).await?;
    Ok(())
}

/// The consumer-create request for `push_consumer`'s body.
pub fn consumer_request(stream: &str, filter: &str, deliver: &str) -> (String, Json) {
    (
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        push_consumer(stream, filter, deliver),
    )
}

/// Blocking request for the latency scenario's setup, on a connection that
/// subscribed `reply` already.
pub fn sync_api(conn: &mut Sync, subject: &str, body: &Json, reply: &str) -> io::Result<Json> {
    let body = serde_json::to_vec(body).map_err(|e| invalid(e.to_string()))?;
    conn.send(&publish(subject, Some(reply), &body))?;
    let (_, _, payload) = sync_msg(conn)?;
    api_reply(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_msg_hmsg_and_control_lines_in_pieces() {
        let whole: &[u8] =
            b"INFO {\"a\":1}\r\nMSG d.lat 1 $JS.ACK.S.c.1.42.1.1700.0 5\r\nhello\r\n\
HMSG _INBOX.x 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPING\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            while let Some(_op) = Nats::parse(&mut buf).unwrap() {}
        }
        let mut buf = BytesMut::from(whole);
        assert!(matches!(Nats::parse(&mut buf).unwrap(), Some(Op::Info)));
        let Some(Op::Msg {
            subject,
            reply,
            payload,
            headers,
        }) = Nats::parse(&mut buf).unwrap()
        else {
            panic!("expected MSG")
        };
        assert_eq!(&subject[..], b"d.lat");
        assert_eq!(&payload[..], b"hello");
        assert!(headers.is_none());
        assert_eq!(delivery_seq(reply.as_ref()).unwrap(), 42);
        let op = Nats::parse(&mut buf).unwrap().unwrap();
        assert!(expect_msg(op).is_err(), "a 503 status is an error");
        assert!(matches!(Nats::parse(&mut buf).unwrap(), Some(Op::Ping)));
        assert!(buf.is_empty());
    }

    #[test]
    fn ack_and_publish_shapes() {
        assert_eq!(ack_seq(br#"{"stream":"S","seq":7}"#).unwrap(), 7);
        assert!(ack_seq(br#"{"error":{"code":503}}"#).is_err());
        assert_eq!(
            publish("s.a", Some("_I.1"), b"xy"),
            b"PUB s.a _I.1 2\r\nxy\r\n"
        );
    }
}
