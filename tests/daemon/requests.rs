//! Each request's answer: create, get, update_status and the finality of a
//! terminal state, minimal replies, concurrent writers to one execution
//! (nothing lost), and list's filters and pages.

use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecutionId, AgentExecutionStatus, ExecutionPhase, ToolCall,
};
use stigmer_proto::daemon::{
    request::Command as Cmd, response, Code, EndReason, ListExecutionsRequest, PingRequest,
    Response,
};

use crate::common::*;
use crate::{completed, SNAPSHOT, UPDATE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_create_get_update_and_terminal_finality() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    match c.call(Cmd::Ping(PingRequest {})).await.result {
        Some(response::Result::Pong(p)) => {
            assert_eq!(p.protocol_version, 1);
            assert_eq!(p.max_frame_length, 4 * 1024 * 1024);
        }
        other => panic!("{other:?}"),
    }
    let (id, rev1) = c.create("agent-1").await;
    assert!(id.starts_with("aex-") && id.len() == 30, "{id}");
    let (got, rev) = expect_execution(
        c.call(Cmd::Get(AgentExecutionId { value: id.clone() }))
            .await,
    );
    assert_eq!(rev, rev1);
    assert_eq!(got.api_version, "agentic.stigmer.ai/v1");
    assert_eq!(got.kind, "AgentExecution");
    assert_eq!(
        got.status.as_ref().map(|s| s.phase),
        Some(ExecutionPhase::ExecutionPending as i32)
    );

    let (e, rev2) = expect_execution(c.update(&id, ai_status("hi")).await);
    assert!(rev2 > rev1);
    let status = e.status.expect("status");
    assert!(!status.started_at.is_empty(), "started_at stamped");
    assert_eq!(status.messages[0].content, "hi");
    // An empty list leaves the stored one (upstream merge rule).
    let (e, _) = expect_execution(c.update(&id, completed()).await);
    let status = e.status.expect("status");
    assert_eq!(status.messages[0].content, "hi");
    assert!(!status.completed_at.is_empty(), "completed_at stamped");
    // Terminal is final.
    let msg = expect_error(
        &c.update(&id, ai_status("late")).await,
        Code::FailedPrecondition,
    );
    assert!(msg.contains("EXECUTION_COMPLETED"), "{msg}");
    // Subscribing to a finished execution: its state, then END at once.
    let sub = c.subscribe(&id, None).await;
    let events = c.events_until_end(sub).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].r#type, SNAPSHOT);
    assert_eq!(events[1].reason, EndReason::Terminal as i32);
    // Unknown ids: well-formed, and naming no execution.
    expect_error(
        &c.call(Cmd::Get(AgentExecutionId {
            value: MISSING.into(),
        }))
        .await,
        Code::NotFound,
    );
    let sub = c.subscribe(MISSING, None).await;
    expect_error(&c.recv(sub).await, Code::NotFound);
    expect_error(&c.update(MISSING, ai_status("x")).await, Code::NotFound);
    // Malformed ids can name no execution: INVALID_ARGUMENT, never
    // NOT_FOUND (docs/PROTOCOL.md, "Errors").
    expect_error(
        &c.call(Cmd::Get(AgentExecutionId {
            value: "aex-nope".into(),
        }))
        .await,
        Code::InvalidArgument,
    );
    let sub = c.subscribe("aex-nope", None).await;
    expect_error(&c.recv(sub).await, Code::InvalidArgument);
    expect_error(
        &c.update("aex-nope", ai_status("x")).await,
        Code::InvalidArgument,
    );
}

/// A well-formed execution id that names no execution.
const MISSING: &str = "aex-01jzzzzzzzzzzzzzzzzzzzzzzz";

/// `Request.minimal_reply`: create and update_status answer with the
/// revision and the execution id only; subscribers still get every state
/// in full; errors and other commands are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_replies_carry_the_revision_and_id_only() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let minimal = |resp: Response| match resp.result {
        Some(response::Result::Execution(r)) => {
            assert!(r.execution.is_none(), "a minimal reply has no execution");
            (r.execution_id, r.revision)
        }
        other => panic!("expected an execution reply, got {other:?}"),
    };
    c.send_with(1, Cmd::Create(new_execution("agent-1", None)), true)
        .await;
    let (id, created) = minimal(c.recv(1).await);
    assert!(id.starts_with("aex-") && id.len() == 30, "{id}");
    assert!(created > 0);
    let sub = c.subscribe(&id, None).await;
    assert_eq!(c.recv(sub).await.id, sub, "the snapshot");

    c.send_with(
        2,
        Cmd::UpdateStatus(update_input(&id, ai_status("hi"))),
        true,
    )
    .await;
    let reply = c.recv(2).await;
    assert!(reply.encoded_len() < 64, "{} bytes", reply.encoded_len());
    let (replied_id, updated) = minimal(reply);
    assert_eq!(replied_id, id);
    assert!(updated > created);
    // The subscriber gets the whole state at that revision.
    match c.recv(sub).await.result {
        Some(response::Result::Event(e)) => {
            assert_eq!((e.r#type, e.revision), (UPDATE, updated));
            let status = e.execution.and_then(|x| x.status).expect("status");
            assert_eq!(status.messages[0].content, "hi");
        }
        other => panic!("expected an update event, got {other:?}"),
    }
    // A full reply names the execution too.
    match c.update(&id, ai_status("again")).await.result {
        Some(response::Result::Execution(r)) => {
            assert_eq!(r.execution_id, id);
            assert!(r.execution.is_some());
        }
        other => panic!("expected an execution reply, got {other:?}"),
    }
    // Errors are errors; other commands ignore the flag.
    c.send_with(
        3,
        Cmd::UpdateStatus(update_input(MISSING, ai_status("x"))),
        true,
    )
    .await;
    expect_error(&c.recv(3).await, Code::NotFound);
    c.send_with(4, Cmd::Get(AgentExecutionId { value: id.clone() }), true)
        .await;
    let (got, _) = expect_execution(c.recv(4).await);
    assert_eq!(got.metadata.map(|m| m.id), Some(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_execution_lose_nothing() {
    let d = Daemon::start(&[]);
    let mut setup = d.connect().await;
    let (id, _) = setup.create("atomic").await;
    // Writer A only sets messages, writer B only sets tool_calls. A racy
    // load-merge-save would overwrite one with the other's stale copy.
    let a = {
        let (socket, id) = (d.socket.clone(), id.clone());
        tokio::spawn(async move {
            let mut c = Raw::connect(&socket).await;
            for n in 0..200 {
                expect_execution(c.update(&id, ai_status(&format!("a{n}"))).await);
            }
        })
    };
    let b = {
        let (socket, id) = (d.socket.clone(), id.clone());
        tokio::spawn(async move {
            let mut c = Raw::connect(&socket).await;
            for n in 0..200 {
                let status = AgentExecutionStatus {
                    tool_calls: vec![ToolCall {
                        id: format!("b{n}"),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                expect_execution(c.update(&id, status).await);
            }
        })
    };
    a.await.expect("a");
    b.await.expect("b");
    let (e, _) = expect_execution(
        setup
            .call(Cmd::Get(AgentExecutionId { value: id.clone() }))
            .await,
    );
    let status = e.status.expect("status");
    assert_eq!(status.messages[0].content, "a199");
    assert_eq!(status.tool_calls[0].id, "b199");
    // The history holds all 400 updates plus the create.
    let sub = setup.subscribe(&id, Some(0)).await;
    let mut n = 0;
    loop {
        let ev =
            tokio::time::timeout(std::time::Duration::from_millis(2000), setup.recv(sub)).await;
        match ev {
            Ok(r) => match r.result {
                Some(response::Result::Event(e)) if e.r#type == UPDATE => n += 1,
                other => panic!("{other:?}"),
            },
            Err(_) => break,
        }
        if n == 401 {
            break;
        }
    }
    assert_eq!(n, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_paginates() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let mut in_s1 = Vec::new();
    for i in 0..25 {
        let session = if i % 2 == 0 { "s1" } else { "s2" };
        let resp = c
            .call(Cmd::Create(new_execution("lister", Some(session))))
            .await;
        let id = expect_execution(resp).0.metadata.expect("m").id;
        if session == "s1" {
            in_s1.push(id);
        }
    }
    expect_execution(c.update(&in_s1[0], completed()).await);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = ListExecutionsRequest {
            page_size: 5,
            page_token: token.clone(),
            session_id: "s1".into(),
            ..Default::default()
        };
        let page = match c.call(Cmd::List(req)).await.result {
            Some(response::Result::List(l)) => l,
            other => panic!("{other:?}"),
        };
        assert!(page.entries.len() <= 5);
        seen.extend(page.entries.into_iter().map(|e| e.metadata.expect("m").id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, in_s1, "every execution of s1 once, in creation order");
    let req = ListExecutionsRequest {
        phase: ExecutionPhase::ExecutionCompleted as i32,
        ..Default::default()
    };
    match c.call(Cmd::List(req)).await.result {
        Some(response::Result::List(l)) => assert_eq!(l.entries.len(), 1),
        other => panic!("{other:?}"),
    }
    let bad = ListExecutionsRequest {
        page_size: 5000,
        ..Default::default()
    };
    expect_error(&c.call(Cmd::List(bad)).await, Code::InvalidArgument);
    let bad = ListExecutionsRequest {
        page_token: "not-a-token".into(),
        ..Default::default()
    };
    expect_error(&c.call(Cmd::List(bad)).await, Code::InvalidArgument);
}
