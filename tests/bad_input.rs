//! Hostile and broken input the other suites do not cover: each test is a
//! row of the table in docs/RELIABILITY.md ("Hostile and broken input"),
//! which also points at the rows tests/daemon/ covers.

mod common;

use common::*;
use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, ExecutionPhase,
};
use stigmer_proto::daemon::{
    request::Command as Cmd, response, Code, EventType, ListExecutionsRequest, PingRequest,
    PingResponse, Request, Response,
};
use tokio::io::AsyncWriteExt;

const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
const UPDATE: i32 = EventType::EventUpdate as i32;

async fn pong(c: &mut Raw) {
    assert!(
        matches!(
            c.call(Cmd::Ping(PingRequest {})).await.result,
            Some(response::Result::Pong(_))
        ),
        "the connection still answers"
    );
}

/// A well-formed protobuf frame of another message: a `Response` (what a
/// confused peer echoing the daemon would send) and an `AgentExecution`.
/// Protobuf cannot tell messages apart, so the answer follows from how the
/// bytes read as a `Request`: here neither carries a usable id, so it is the
/// connection error INVALID_ARGUMENT (id 0) and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_frame_of_the_wrong_message() {
    let d = Daemon::start(&[]);
    let mut other = d.connect().await;
    // Response { id: 5, pong } reads as Request { protocol_version: 5, id: 0, ping }.
    let wrong = Response {
        id: 5,
        result: Some(response::Result::Pong(PingResponse {
            protocol_version: 1,
            daemon_version: "x".into(),
            revision: 3,
            max_frame_length: 9,
        })),
    };
    let mut c = d.connect().await;
    c.send_bytes(wrong.encode_to_vec()).await;
    let r = c.recv_any().await.expect("an error frame");
    assert_eq!(r.id, 0);
    expect_error(&r, Code::InvalidArgument);
    assert!(c.closed().await);
    // An AgentExecution: field 1 (a string) where Request has a varint.
    let mut c = d.connect().await;
    c.send_bytes(new_execution("wrong", None).encode_to_vec())
        .await;
    let r = c.recv_any().await.expect("an error frame");
    assert_eq!(r.id, 0);
    expect_error(&r, Code::InvalidArgument);
    assert!(c.closed().await);
    // A request whose envelope is sound but whose command is another
    // message (an AgentExecution where get's AgentExecutionId belongs)
    // decodes field by field: get { value: "" }, so INVALID_ARGUMENT on
    // that request's id, and the connection stays.
    let mut c = d.connect().await;
    let mut body = Request {
        protocol_version: 1,
        id: 41,
        minimal_reply: false,
        command: None,
    }
    .encode_to_vec();
    let exec = AgentExecution::default().encode_to_vec();
    body.extend_from_slice(&[0x6a, exec.len() as u8]);
    body.extend_from_slice(&exec);
    c.send_bytes(body).await;
    let r = c.recv(41).await;
    assert!(
        matches!(&r.result, Some(response::Result::Error(e)) if e.code == Code::InvalidArgument as i32 || e.code == Code::NotFound as i32),
        "{r:?}"
    );
    pong(&mut c).await;
    pong(&mut other).await;
}

/// Huge repeated fields within the frame limit (64 KiB here): 20,000 tiny
/// messages in one update are accepted, stored and streamed whole; 32,550
/// of them still fit the request frame but the stored state would not fit a
/// frame: RESOURCE_EXHAUSTED, nothing is stored, the connection stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_repeated_fields_within_the_limit() {
    let d = Daemon::start(&["--max-frame-length", "65536"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("repeated").await;
    let s = c.subscribe(&id, None).await;
    assert_eq!(c.event(s).await.r#type, SNAPSHOT);
    let many = |n: usize| AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        messages: vec![AgentMessage::default(); n],
        ..Default::default()
    };
    let (stored, rev) = expect_execution(c.update(&id, many(20_000)).await);
    assert_eq!(
        stored.status.as_ref().expect("status").messages.len(),
        20_000
    );
    let e = c.event(s).await;
    assert_eq!((e.r#type, e.revision), (UPDATE, rev));
    assert_eq!(
        e.execution
            .expect("state")
            .status
            .expect("s")
            .messages
            .len(),
        20_000
    );
    let r = c.update(&id, many(32_550)).await;
    expect_error(&r, Code::ResourceExhausted);
    let (_, now) = expect_execution(
        c.call(Cmd::Get(stigmer_proto::agentexecution::AgentExecutionId {
            value: id.clone(),
        }))
        .await,
    );
    assert_eq!(now, rev, "nothing stored");
    pong(&mut c).await;
}

/// A reused request id on requests that are not streams: the daemon does not
/// track them, so each request gets its own reply under the same id (the
/// client cannot tell them apart: ids are the client's to keep unique). A
/// reused id of an open stream is INVALID_ARGUMENT (tests/daemon/,
/// `cancel_and_subscription_ids`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_request_id_on_plain_requests() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    for _ in 0..3 {
        c.send(77, Cmd::Ping(PingRequest {})).await;
    }
    for _ in 0..3 {
        let r = c.recv(77).await;
        assert!(matches!(r.result, Some(response::Result::Pong(_))));
    }
    pong(&mut c).await;
}

/// Nonsense pagination beyond tests/daemon/'s (page size over 1000, a token
/// the daemon did not make): a token from another filter, tokens of random
/// bytes and of huge length, page size 0 (= 100), and the largest allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsense_pagination() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    for _ in 0..5 {
        c.create("pager").await;
    }
    let list = |page_size: u32, page_token: String, session_id: &str| {
        Cmd::List(ListExecutionsRequest {
            page_size,
            page_token,
            session_id: session_id.into(),
            ..Default::default()
        })
    };
    let first = match c.call(list(2, String::new(), "")).await.result {
        Some(response::Result::List(l)) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.entries.len(), 2);
    // The same token with another filter: either refused or a consistent
    // (filtered) page, never an error of another kind or a broken connection.
    let r = c
        .call(list(2, first.next_page_token.clone(), "other-session"))
        .await;
    match &r.result {
        Some(response::Result::List(l)) => assert!(l.entries.is_empty(), "{l:?}"),
        Some(response::Result::Error(e)) => assert_eq!(e.code, Code::InvalidArgument as i32),
        other => panic!("{other:?}"),
    }
    for token in [
        "\u{0}\u{1}\u{2}".to_string(),
        "====".into(),
        "A".repeat(100_000),
        first.next_page_token.chars().rev().collect(),
    ] {
        let r = c.call(list(2, token, "")).await;
        match &r.result {
            Some(response::Result::Error(e)) => assert_eq!(e.code, Code::InvalidArgument as i32),
            // A reversed token may happen to be a well-formed one.
            Some(response::Result::List(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    for (size, want) in [(0, 5), (1000, 5)] {
        match c.call(list(size, String::new(), "")).await.result {
            Some(response::Result::List(l)) => assert_eq!(l.entries.len(), want),
            other => panic!("{other:?}"),
        }
    }
    expect_error(
        &c.call(list(u32::MAX, String::new(), "")).await,
        Code::InvalidArgument,
    );
    pong(&mut c).await;
}

/// Thousands of subscriptions on one connection: the first
/// `--max-subscriptions-per-connection` (1024) open, the others get
/// RESOURCE_EXHAUSTED; an update reaches every open stream; the connection
/// and the daemon stay healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_subscriptions_on_one_connection() {
    let d = Daemon::start(&[]);
    let mut w = d.connect().await;
    let (id, _) = w.create("popular").await;
    let mut c = d.connect().await;
    // Sent in batches of 250, each batch's replies read before the next:
    // a client that sends thousands of requests without reading is a slow
    // consumer, and the daemon would rightly disconnect it.
    let (mut open, mut refused) = (Vec::new(), 0);
    for _ in 0..12 {
        let mut batch = Vec::new();
        for _ in 0..250 {
            batch.push(c.subscribe(&id, None).await);
        }
        for s in batch {
            match c.recv(s).await.result {
                Some(response::Result::Event(e)) if e.r#type == SNAPSHOT => open.push(s),
                Some(response::Result::Error(e)) if e.code == Code::ResourceExhausted as i32 => {
                    refused += 1
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!((open.len(), refused), (1024, 3000 - 1024));
    let (_, rev) = expect_execution(w.update(&id, ai_status("to all")).await);
    for s in &open {
        let e = c.event(*s).await;
        assert_eq!((e.r#type, e.revision), (UPDATE, rev));
    }
    pong(&mut c).await;
    pong(&mut w).await;
}

/// A client that connects and sends nothing holds one connection slot and
/// nothing else: others are served, and SIGTERM still stops the daemon
/// (its connection is closed at shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_connects_and_sends_nothing() {
    let mut d = Daemon::start(&[]);
    let mut silent = d.connect().await;
    let mut c = d.connect().await;
    let (id, _) = c.create("busy").await;
    expect_execution(c.update(&id, ai_status("working")).await);
    pong(&mut c).await;
    assert_eq!(d.stop().code(), Some(0), "clean exit with a silent client");
    assert!(silent.closed().await, "the silent connection is closed");
}

/// A client that never reads: it subscribes to a busy execution and pipes
/// thousands of requests without reading a reply. Only that connection is
/// held back (bounded queues); writers and other subscribers go on, the
/// daemon's memory stays bounded, and SIGTERM still stops it within the
/// shutdown grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads() {
    let d = Daemon::start(&["--connection-queue", "16", "--subscriber-queue", "8"]);
    let mut w = d.connect().await;
    let (id, _) = w.create("flood").await;
    // The deaf client: a subscribe, then pings it never reads, written
    // from a task (its socket buffer fills and the writes block).
    let flood = {
        let frame = |req: Request| {
            let body = req.encode_to_vec();
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            frame
        };
        let mut bytes = frame(Request {
            protocol_version: 1,
            id: 1,
            minimal_reply: false,
            command: Some(Cmd::Subscribe(stigmer_proto::daemon::SubscribeRequest {
                execution_id: id.clone(),
                from_revision: None,
                ..Default::default()
            })),
        });
        let ping = frame(Request {
            protocol_version: 1,
            id: 2,
            minimal_reply: false,
            command: Some(Cmd::Ping(PingRequest {})),
        });
        for _ in 0..50_000 {
            bytes.extend_from_slice(&ping);
        }
        let mut stream = tokio::net::UnixStream::connect(&d.socket)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = stream.write_all(&bytes).await;
            // Holds the connection open, never reading.
            stream
        })
    };
    let mut watcher = d.connect().await;
    let ws = watcher.subscribe(&id, None).await;
    assert_eq!(watcher.event(ws).await.r#type, SNAPSHOT);
    let rss_before = rss_bytes(d.pid());
    let payload = "z".repeat(8 * 1024);
    let mut revs = Vec::new();
    for n in 0..500 {
        revs.push(expect_execution(w.update(&id, ai_status(&format!("{n}{payload}"))).await).1);
    }
    for rev in &revs {
        assert_eq!(
            watcher.event(ws).await.revision,
            *rev,
            "the watcher gets everything"
        );
    }
    let rss_after = rss_bytes(d.pid());
    assert!(
        rss_after < rss_before + 48 * 1024 * 1024,
        "memory stays bounded: {rss_before} -> {rss_after}"
    );
    // SIGTERM: the deaf connection cannot hold the daemon past its grace.
    let stopped = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.stop()
    });
    let status = tokio::time::timeout(STEP_TIMEOUT, stopped)
        .await
        .expect("the daemon stops despite a peer that never reads")
        .expect("join");
    assert_eq!(status.code(), Some(0));
    flood.abort();
}
