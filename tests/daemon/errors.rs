//! Bad input and limits: a bad request gets its code and the connection
//! stays; a broken connection is answered, then closed, and no other
//! notices; connections beyond `--max-connections` are refused.

use prost::Message;
use stigmer_proto::agentexecution::AgentExecutionStatus;
use stigmer_proto::daemon::{
    request::Command as Cmd, CancelSubscriptionRequest, Code, PingRequest, Request,
};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_code_and_the_connection_stays() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    // Wrong protocol version.
    c.send_bytes(
        Request {
            protocol_version: 2,
            id: 7,
            minimal_reply: false,
            command: Some(Cmd::Ping(PingRequest {})),
        }
        .encode_to_vec(),
    )
    .await;
    expect_error(&c.recv(7).await, Code::FailedPrecondition);
    // No command (or one this daemon does not know: field 99).
    c.send_bytes(vec![0x08, 0x01, 0x10, 0x08, 0x9a, 0x06, 0x00])
        .await;
    expect_error(&c.recv(8).await, Code::Unimplemented);
    // Invalid UTF-8 inside a command.
    c.send_bytes(vec![
        0x08, 0x01, 0x10, 0x09, 0x5a, 0x05, 0x22, 0x03, 0x1a, 0x01, 0xff,
    ])
    .await;
    expect_error(&c.recv(9).await, Code::InvalidArgument);
    // Missing required fields and unknown enum values.
    let r = c
        .call(Cmd::Create(
            stigmer_proto::agentexecution::AgentExecution::default(),
        ))
        .await;
    expect_error(&r, Code::InvalidArgument);
    let (id, _) = c.create("bad").await;
    let r = c
        .update(
            &id,
            AgentExecutionStatus {
                phase: 77,
                ..Default::default()
            },
        )
        .await;
    expect_error(&r, Code::InvalidArgument);
    let r = c.call(Cmd::UpdateStatus(Default::default())).await;
    expect_error(&r, Code::InvalidArgument);
    // Cancel of an unknown stream.
    let r = c
        .call(Cmd::Cancel(CancelSubscriptionRequest {
            subscription_id: 999,
        }))
        .await;
    expect_error(&r, Code::NotFound);
    // Duplicate id on create.
    let mut dup = new_execution("dup", None);
    dup.metadata = Some(stigmer_proto::apiresource::ApiResourceMetadata {
        id: id.clone(),
        ..Default::default()
    });
    expect_error(&c.call(Cmd::Create(dup)).await, Code::AlreadyExists);
    // Still usable.
    c.expect_pong().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_answer_then_close_without_affecting_others() {
    let d = Daemon::start(&["--max-frame-length", "4096"]);
    let mut other = d.connect().await;
    // A length prefix over the limit: RESOURCE_EXHAUSTED with id 0, closed.
    let mut c = d.connect().await;
    use tokio::io::AsyncWriteExt;
    c.framed
        .get_mut()
        .write_all(&[0x00, 0x10, 0x00, 0x00])
        .await
        .expect("write");
    c.expect_refused(Code::ResourceExhausted).await;
    // Garbage that is not a Request: INVALID_ARGUMENT with id 0, closed.
    let mut c = d.connect().await;
    c.send_bytes(vec![0xff, 0xff, 0xff]).await;
    c.expect_refused(Code::InvalidArgument).await;
    // Request id 0.
    let mut c = d.connect().await;
    c.send_bytes(
        Request {
            protocol_version: 1,
            id: 0,
            minimal_reply: false,
            command: Some(Cmd::Ping(PingRequest {})),
        }
        .encode_to_vec(),
    )
    .await;
    expect_error(&c.recv_any().await.expect("error"), Code::InvalidArgument);
    assert!(c.closed().await);
    // An update whose state would not fit a frame is refused, not stored.
    let (id, _) = other.create("big").await;
    let r = other.update(&id, ai_status(&"y".repeat(3900))).await;
    expect_error(&r, Code::ResourceExhausted);
    // A frame cut off by EOF just ends that connection.
    let mut c = d.connect().await;
    c.framed
        .get_mut()
        .write_all(&[0x00, 0x00, 0x00, 0x10, 0x08])
        .await
        .expect("write");
    c.framed.get_mut().shutdown().await.expect("shutdown");
    assert!(c.closed().await);
    // Nobody else noticed.
    other.expect_pong().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit() {
    let d = Daemon::start(&["--max-connections", "2"]);
    let mut a = d.connect().await;
    let mut b = d.connect().await;
    a.expect_pong().await;
    b.expect_pong().await;
    let mut c = d.connect().await;
    c.expect_refused(Code::ResourceExhausted).await;
    drop(b);
    // The freed slot is reusable (the daemon notices the close asynchronously).
    let mut tries = 0;
    loop {
        let mut d2 = d.connect().await;
        let id = d2.next_id();
        let ping = Request {
            protocol_version: 1,
            id,
            minimal_reply: false,
            command: Some(Cmd::Ping(PingRequest {})),
        };
        // A refused connection may already be closed: a failed send is a retry.
        let sent =
            futures::SinkExt::send(&mut d2.framed, bytes::Bytes::from(ping.encode_to_vec())).await;
        match d2.recv_any().await {
            Some(r) if r.id == id && sent.is_ok() => break,
            Some(r) if r.id == id => break,
            _ => {
                tries += 1;
                assert!(tries < 200, "slot never freed");
                tokio::task::yield_now().await;
            }
        }
    }
    a.expect_pong().await;
}
