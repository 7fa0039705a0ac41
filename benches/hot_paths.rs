//! Criterion micro-benchmarks of the per-update hot paths tuned for issue 5
//! (see docs/PERFORMANCE.md): the frame codec, the merge the writer thread
//! runs, the encodings of an update's event and reply, and the broker's
//! fan-out. Each "before" variant is the code path as it was, kept here so
//! the gain stays measurable.
//!
//!     CARGO_TARGET_DIR=target-bench cargo bench --bench hot_paths

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message;
use stigmer::internals::{
    decode_request, encode_event_frame, encode_execution_reply, encode_response,
    encode_update_event, merge, stamp, Broker, Change, State,
};
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionUpdateStatusInput,
};
use stigmer_proto::apiresource::ApiResourceMetadata;
use stigmer_proto::daemon::{request, response, Event, EventType, ExecutionReply, Request};
use tokio_util::codec::{Decoder, Encoder};

fn stored() -> AgentExecution {
    let mut status = common::status();
    stamp(&mut status, SystemTime::now());
    AgentExecution {
        api_version: "agentic.stigmer.ai/v1".into(),
        kind: "AgentExecution".into(),
        metadata: Some(ApiResourceMetadata {
            id: "aex-01jbench0000000000000000000".into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            agent_id: "bench-agent".into(),
            message: "benchmark".into(),
            ..Default::default()
        }),
        status: Some(status),
    }
}

fn update_frame() -> BytesMut {
    let req = Request {
        protocol_version: 1,
        id: 42,
        minimal_reply: false,
        command: Some(request::Command::UpdateStatus(
            AgentExecutionUpdateStatusInput {
                execution_id: "aex-01jbench0000000000000000000".into(),
                status: Some(common::status()),
            },
        )),
    };
    let mut codec = stigmer_proto::frame::codec(stigmer_proto::frame::DEFAULT_MAX_FRAME_LENGTH);
    let mut buf = BytesMut::new();
    codec
        .encode(bytes::Bytes::from(req.encode_to_vec()), &mut buf)
        .expect("encodes");
    buf
}

fn frame_codec(c: &mut Criterion) {
    let frame = update_frame();
    let mut codec = stigmer_proto::frame::codec(stigmer_proto::frame::DEFAULT_MAX_FRAME_LENGTH);
    c.bench_function("codec/decode update_status frame (1 KiB)", |b| {
        b.iter(|| {
            let mut buf = frame.clone();
            let body = codec.decode(&mut buf).expect("ok").expect("whole frame");
            black_box(decode_request(&body).is_ok())
        })
    });
    let event = Bytes1k::event();
    c.bench_function("codec/event frame for one subscriber", |b| {
        b.iter(|| black_box(encode_event_frame(black_box(7), &event)))
    });
}

struct Bytes1k;
impl Bytes1k {
    fn event() -> bytes::Bytes {
        encode_update_event(
            1234,
            "aex-01jbench0000000000000000000",
            &stored().encode_to_vec(),
        )
    }
}

/// The writer thread's CPU work per update, SQLite aside: decode the stored
/// state, merge, stamp, and encode for the row, the history and the event.
fn merge_path(c: &mut Criterion) {
    let stored_bytes = stored().encode_to_vec();
    let incoming = common::status();
    let now = SystemTime::now();
    c.bench_function("merge/decode+merge+stamp", |b| {
        b.iter(|| {
            let mut execution = AgentExecution::decode(stored_bytes.as_slice()).expect("decodes");
            let status = execution.status.get_or_insert_with(Default::default);
            merge(status, incoming.clone());
            stamp(status, now);
            black_box(execution)
        })
    });
    let execution = stored();
    c.bench_function(
        "merge/encodings before (size check, row, history, event)",
        |b| {
            b.iter(|| {
                black_box(execution.encoded_len());
                black_box(execution.encode_to_vec());
                black_box(execution.encode_to_vec());
                let event = Event {
                    r#type: EventType::EventUpdate as i32,
                    revision: 1234,
                    execution_id: "aex-01jbench0000000000000000000".into(),
                    execution: Some(execution.clone()),
                    ..Default::default()
                };
                black_box(event.encode_to_vec())
            })
        },
    );
    c.bench_function("merge/encodings after (once, event wraps the bytes)", |b| {
        b.iter(|| {
            let bytes = execution.encode_to_vec();
            black_box(encode_update_event(
                1234,
                "aex-01jbench0000000000000000000",
                &bytes,
            ))
        })
    });
    let encoded = execution.encode_to_vec();
    c.bench_function("reply/clone+encode (cmd::execution_reply today)", |b| {
        b.iter(|| {
            black_box(encode_response(
                42,
                response::Result::Execution(ExecutionReply {
                    execution: Some(execution.clone()),
                    revision: 1234,
                    execution_id: "aex-1".into(),
                }),
            ))
        })
    });
    c.bench_function("reply/wrap encoded (encode_execution_reply)", |b| {
        b.iter(|| black_box(encode_execution_reply(42, 1234, "aex-1", Some(&encoded))))
    });
    c.bench_function("reply/minimal (Request.minimal_reply)", |b| {
        b.iter(|| black_box(encode_execution_reply(42, 1234, "aex-1", None)))
    });
}

/// A committed status update of "aex-1" at `revision`.
fn change(revision: u64, execution: &Arc<AgentExecution>, encoded: &bytes::Bytes) -> Arc<Change> {
    Arc::new(Change::new(
        revision,
        Arc::from("aex-1"),
        State::new(execution.clone(), Some(encoded.clone())),
    ))
}

/// Publishing one change to 1,000 subscribers of one execution (the
/// writer-thread side of fan-out; the stream tasks drain the queues).
fn broker_fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 1000;
    const DRAIN_EVERY: u64 = 64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let broker = Arc::new(Broker::new(4096));
    let subs: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| broker.subscribe("aex-1"))
        .collect();
    let execution = Arc::new(stored());
    let encoded = bytes::Bytes::from(execution.encode_to_vec());
    c.bench_function("broker/publish to 1000 subscribers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut out = Vec::new();
            let mut last_sent = 0;
            for i in 0..iters {
                let change = change(i + 1, &execution, &encoded);
                let started = Instant::now();
                broker.publish(&change);
                total += started.elapsed();
                if (i + 1) % DRAIN_EVERY == 0 || i + 1 == iters {
                    for sub in &subs {
                        rt.block_on(sub.recv(&mut out, &mut last_sent));
                        out.clear();
                    }
                }
            }
            total
        })
    });
}

/// Publishing one change to 100 armed subscribers, each on its own socket
/// pair: the direct-delivery path (frame head + shared event, one `writev`
/// per subscriber on the publishing thread). The peers are drained outside
/// the timed part.
fn broker_direct(c: &mut Criterion) {
    use std::io::Read;
    use stigmer::internals::{Outbox, WriteHalf};
    const SUBSCRIBERS: usize = 100;
    let broker = Arc::new(Broker::new(4096));
    let mut peers = Vec::new();
    let mut keep = Vec::new();
    for i in 0..SUBSCRIBERS {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        let outbox = Arc::new(Outbox::new(WriteHalf::from_std(a), 1 << 20));
        let sub = broker.subscribe("aex-1");
        sub.arm(&outbox, i as u64 + 1, 0, false);
        peers.push(b);
        keep.push((sub, outbox));
    }
    let execution = Arc::new(stored());
    let encoded = bytes::Bytes::from(execution.encode_to_vec());
    let mut buf = vec![0u8; 1 << 16];
    // Outside the routine, which criterion calls once per sample: a
    // revision already delivered would be skipped.
    let mut revision = 0u64;
    c.bench_function("broker/direct delivery to 100 armed subscribers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                revision += 1;
                let change = change(revision, &execution, &encoded);
                let started = Instant::now();
                broker.publish(&change);
                total += started.elapsed();
                for peer in &mut peers {
                    while matches!(peer.read(&mut buf), Ok(n) if n > 0) {}
                }
            }
            total
        })
    });
    let direct: u64 = broker
        .stats
        .direct
        .load(std::sync::atomic::Ordering::Relaxed);
    let queued: usize = keep.iter().map(|(_, outbox)| outbox.queued()).sum();
    assert!(
        direct > 0 && queued == 0,
        "{direct} direct, {queued} left queued"
    );
    drop(keep);
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = frame_codec, merge_path, broker_fanout, broker_direct
}
criterion_main!(hot_paths);
