//! Scenarios 1-4 for the durable peers of issue 21, NATS JetStream (file
//! storage) and etcd (one member, defaults), shaped exactly like their
//! stigmer and Redis counterparts in `scenarios.rs`: the same payload bytes,
//! the same one-update-in-flight loops, the same warm-up and window, the
//! same fan-out flow control, and the same RSS sampling.
//!
//! Each scenario creates what it uses (a JetStream stream and its
//! consumers, etcd keys) and the JetStream ones delete their stream at the
//! end, as the Redis side `DEL`s its streams. etcd keeps every revision
//! (its default: no auto-compaction), as a single-member etcd left at its
//! defaults does.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::etcd;
use crate::nats;
use crate::procs;
use crate::scenarios::{
    fanout_rate, latency_of, FanoutGate, Idle, Latency, Rate, Tally, FANOUT_WINDOW,
    HISTORY_RETENTION, IDLE_CONNECT_BATCH,
};
use crate::wire::invalid;

/// The sid of each connection's one subscription.
const SID: u64 = 1;

/// Stream name and subject prefix of one scenario's JetStream stream, unique
/// per round (`tag`) so that a stream left behind by a failed round cannot
/// be mistaken for this one.
fn stream_names(scenario: &str, tag: &str) -> (String, String) {
    (
        format!("BENCH_{}_{tag}", scenario.to_uppercase()),
        format!("bench_{scenario}_{tag}"),
    )
}

/// Scenario 1, JetStream: publish-with-ack on one connection, the message
/// pushed by a consumer to another. Each iteration also reads the publish
/// acknowledgement (the stream sequence) before the next publish, and checks
/// that the delivery carried that sequence, as the stigmer side checks that
/// the event's revision is the one acknowledged.
pub fn latency_nats(
    addr: SocketAddr,
    payload: &[u8],
    warmup: usize,
    n: usize,
    tag: &str,
) -> io::Result<Latency> {
    let (stream, prefix) = stream_names("lat", tag);
    let inbox = format!("_INBOX.lat_{tag}");
    let deliver = format!("deliver.lat_{tag}");
    let subject = format!("{prefix}.lat");
    let mut writer = nats::connect_sync(addr)?;
    nats::sync_send_flushed(&mut writer, &nats::subscribe(&inbox, SID))?;
    nats::sync_api(
        &mut writer,
        &format!("$JS.API.STREAM.CREATE.{stream}"),
        &nats::stream_config(&stream, &prefix, HISTORY_RETENTION),
        &inbox,
    )?;
    let mut sub = nats::connect_sync(addr)?;
    nats::sync_send_flushed(&mut sub, &nats::subscribe(&deliver, SID))?;
    let (create, body) = nats::consumer_request(&stream, &subject, &deliver);
    nats::sync_api(&mut writer, &create, &body, &inbox)?;
    let publish = nats::publish(&subject, Some(&inbox), payload);
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let started = Instant::now();
        writer.send(&publish)?;
        let (_, reply, body) = nats::sync_msg(&mut sub)?;
        let elapsed = started.elapsed();
        if body.len() != payload.len() {
            return Err(invalid("JetStream delivered another payload"));
        }
        let delivered = nats::delivery_seq(reply.as_ref())?;
        let (_, _, ack) = nats::sync_msg(&mut writer)?;
        let acked = nats::ack_seq(&ack)?;
        if acked != delivered {
            return Err(invalid(format!("delivery {delivered} but ack {acked}")));
        }
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    nats::sync_api(
        &mut writer,
        &format!("$JS.API.STREAM.DELETE.{stream}"),
        &serde_json::json!({}),
        &inbox,
    )?;
    Ok(latency_of(samples))
}

/// Scenario 1, etcd: a put on one connection, seen by a watch on another.
/// Each iteration reads the put's reply too and checks that the event
/// carried the revision the put committed at.
pub async fn latency_etcd(
    addr: SocketAddr,
    payload: &[u8],
    warmup: usize,
    n: usize,
) -> io::Result<Latency> {
    let mut writer = etcd::connect(addr).await?;
    let mut watcher = etcd::connect(addr).await?;
    let mut watch = watcher.watch(b"bench/lat").await?;
    let put = etcd::put_request(b"bench/lat", payload);
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let started = Instant::now();
        // The put is polled first (its request written), then the watch.
        let (acked, seen) = tokio::join!(writer.put(put.clone()), async {
            let event = watch.next().await;
            (event, started.elapsed())
        });
        let (event, elapsed) = seen;
        let (event, acked) = (event?, acked?);
        let revision = match event.events.as_slice() {
            [one] => one.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0),
            _ => return Err(invalid("etcd watch: expected one event")),
        };
        if revision != acked {
            return Err(invalid(format!("event {revision} but put {acked}")));
        }
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    Ok(latency_of(samples))
}

/// Scenario 2, JetStream: `writers` connections, each publishing to its own
/// subject of one file-backed stream and waiting for the acknowledgement
/// (the message stored) before the next.
pub async fn throughput_nats(
    addr: SocketAddr,
    pid: u32,
    payload: &[u8],
    writers: usize,
    warmup: Duration,
    window: Duration,
    tag: &str,
) -> io::Result<Rate> {
    let (stream, prefix) = stream_names("tp", tag);
    let mut api = nats::api_connect(addr).await?;
    nats::create_stream(
        &mut api,
        nats::stream_config(&stream, &prefix, HISTORY_RETENTION),
    )
    .await?;
    let tally = Tally::default();
    let mut set = JoinSet::new();
    for w in 0..writers {
        let mut conn = nats::connect(addr).await?;
        // One inbox per connection: a reply goes to every subscriber of
        // its subject.
        let inbox = format!("_INBOX.tp_{tag}_{w}");
        nats::send_flushed(&mut conn, &nats::subscribe(&inbox, SID)).await?;
        let publish = nats::publish(&format!("{prefix}.w{w}"), Some(&inbox), payload);
        let tally = tally.clone();
        set.spawn(async move {
            while tally.going() {
                conn.send(&publish).await?;
                let (_, _, ack) = nats::msg(&mut conn).await?;
                nats::ack_seq(&ack)?;
                tally.acked();
            }
            Ok(())
        });
    }
    let rate = tally.measure(set, pid, warmup, window).await?;
    nats::delete_stream(&mut api, &stream).await?;
    Ok(rate)
}

/// Scenario 2, etcd: `writers` connections, each putting its own key one
/// acknowledged put at a time.
pub async fn throughput_etcd(
    addr: SocketAddr,
    pid: u32,
    payload: &[u8],
    writers: usize,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    let tally = Tally::default();
    let mut set = JoinSet::new();
    for w in 0..writers {
        let mut conn = etcd::connect(addr).await?;
        let put = etcd::put_request(format!("bench/tp{w}").as_bytes(), payload);
        let tally = tally.clone();
        set.spawn(async move {
            while tally.going() {
                conn.put(put.clone()).await?;
                tally.acked();
            }
            Ok(())
        });
    }
    tally.measure(set, pid, warmup, window).await
}

/// Scenario 3, JetStream: one publisher (each publish acknowledged), and
/// `subscribers` connections, each with its own push consumer of the
/// published subject delivering to that connection.
pub async fn fanout_nats(
    addr: SocketAddr,
    pid: u32,
    payload: &[u8],
    subscribers: usize,
    warmup: Duration,
    window: Duration,
    tag: &str,
) -> io::Result<Rate> {
    let (stream, prefix) = stream_names("fan", tag);
    let subject = format!("{prefix}.fan");
    let mut api = nats::api_connect(addr).await?;
    nats::create_stream(
        &mut api,
        nats::stream_config(&stream, &prefix, HISTORY_RETENTION),
    )
    .await?;
    let gate = Arc::new(FanoutGate::new());
    let mut readers: JoinSet<io::Result<()>> = JoinSet::new();
    let ids: Vec<usize> = (0..subscribers).collect();
    for chunk in ids.chunks(IDLE_CONNECT_BATCH) {
        let mut consumers = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let deliver = format!("deliver.fan_{tag}_{i}");
            let mut conn = nats::connect(addr).await?;
            nats::send_flushed(&mut conn, &nats::subscribe(&deliver, SID)).await?;
            consumers.push(nats::consumer_request(&stream, &subject, &deliver));
            let (gate, size) = (gate.clone(), payload.len());
            readers.spawn(async move {
                loop {
                    let (_, _, body) = nats::msg(&mut conn).await?;
                    if body.len() != size {
                        return Err(invalid("JetStream delivered another payload"));
                    }
                    gate.delivered_one();
                }
            });
        }
        nats::api_batch(&mut api, &consumers).await?;
    }
    let mut writer = nats::connect(addr).await?;
    let inbox = format!("_INBOX.fan_{tag}");
    nats::send_flushed(&mut writer, &nats::subscribe(&inbox, SID)).await?;
    let publish = nats::publish(&subject, Some(&inbox), payload);
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
                let (_, _, ack) = nats::msg(&mut writer).await?;
                nats::ack_seq(&ack)?;
                sent += 1;
            }
            io::Result::Ok(())
        })
    };
    let rate = fanout_rate(&gate, &stop, writing, readers, pid, warmup, window).await?;
    nats::delete_stream(&mut api, &stream).await?;
    Ok(rate)
}

/// Scenario 3, etcd: one writer (each put acknowledged), and `subscribers`
/// connections, each with one watch of the written key. A watch response
/// may carry several events; each counts as a delivery.
pub async fn fanout_etcd(
    addr: SocketAddr,
    pid: u32,
    payload: &[u8],
    subscribers: usize,
    warmup: Duration,
    window: Duration,
) -> io::Result<Rate> {
    const KEY: &[u8] = b"bench/fan";
    let gate = Arc::new(FanoutGate::new());
    let mut readers: JoinSet<io::Result<()>> = JoinSet::new();
    for _ in 0..subscribers {
        let mut conn = etcd::connect(addr).await?;
        let mut watch = conn.watch(KEY).await?;
        let (gate, size) = (gate.clone(), payload.len());
        readers.spawn(async move {
            // The connection lives as long as its watch.
            let _conn = conn;
            loop {
                let response = watch.next().await?;
                for event in &response.events {
                    if event.kv.as_ref().map(|kv| kv.value.len()) != Some(size) {
                        return Err(invalid("etcd delivered another value"));
                    }
                    gate.delivered_one();
                }
            }
        });
    }
    let mut writer = etcd::connect(addr).await?;
    let put = etcd::put_request(KEY, payload);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (gate, stop) = (gate.clone(), stop.clone());
        let subs = subscribers as u64;
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                gate.wait_for(sent.saturating_sub(FANOUT_WINDOW) * subs)
                    .await;
                writer.put(put.clone()).await?;
                sent += 1;
            }
            io::Result::Ok(())
        })
    };
    fanout_rate(&gate, &stop, writing, readers, pid, warmup, window).await
}

/// Scenario 4, JetStream: `n` connections, each with a push consumer of one
/// of `subjects` subjects delivering to it; the server's RSS before and
/// once they are all in place.
pub async fn idle_nats(
    addr: SocketAddr,
    pid: u32,
    n: usize,
    subjects: usize,
    tag: &str,
) -> io::Result<Idle> {
    let (stream, prefix) = stream_names("idle", tag);
    let mut api = nats::api_connect(addr).await?;
    nats::create_stream(
        &mut api,
        nats::stream_config(&stream, &prefix, HISTORY_RETENTION),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = procs::rss_bytes(pid)?;
    let mut held = Vec::with_capacity(n);
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(IDLE_CONNECT_BATCH) {
        let mut set = JoinSet::new();
        for &i in chunk {
            let deliver = format!("deliver.idle_{tag}_{i}");
            set.spawn(async move {
                let mut conn = nats::connect(addr).await?;
                nats::send_flushed(&mut conn, &nats::subscribe(&deliver, SID)).await?;
                io::Result::Ok(conn)
            });
        }
        while let Some(joined) = set.join_next().await {
            held.push(joined.map_err(|e| io::Error::other(e.to_string()))??);
        }
        let consumers: Vec<_> = chunk
            .iter()
            .map(|&i| {
                nats::consumer_request(
                    &stream,
                    &format!("{prefix}.e{}", i % subjects.max(1)),
                    &format!("deliver.idle_{tag}_{i}"),
                )
            })
            .collect();
        nats::api_batch(&mut api, &consumers).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = procs::rss_bytes(pid)?;
    drop(held);
    nats::delete_stream(&mut api, &stream).await?;
    Ok(Idle {
        rss_bytes: rss,
        rss_before_bytes: rss_before,
    })
}

/// Scenario 4, etcd: `n` connections, each with one watch of one of `keys`
/// keys; the server's RSS before and once they are all open.
pub async fn idle_etcd(addr: SocketAddr, pid: u32, n: usize, keys: usize) -> io::Result<Idle> {
    let rss_before = procs::rss_bytes(pid)?;
    let mut held = Vec::with_capacity(n);
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(IDLE_CONNECT_BATCH) {
        let mut set = JoinSet::new();
        for &i in chunk {
            set.spawn(async move {
                let mut conn = etcd::connect(addr).await?;
                let key = format!("bench/idle{}", i % keys.max(1));
                let watch = conn.watch(key.as_bytes()).await?;
                io::Result::Ok((conn, watch))
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
