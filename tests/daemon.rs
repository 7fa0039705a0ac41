//! Integration tests of the daemon's guarantees, against the real binary on
//! a temporary socket and database, over the raw protocol.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use common::*;
use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecutionId, AgentExecutionStatus, ExecutionPhase, ToolCall,
};
use stigmer_proto::apiresource::ApiResourceId;
use stigmer_proto::daemon::{
    request::Command as Cmd, response, CancelSubscriptionRequest, Code, EndReason, EventType,
    ListExecutionsRequest, PingRequest, Request, Response,
};

const UPDATE: i32 = EventType::EventUpdate as i32;
const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
const RESYNC: i32 = EventType::EventResync as i32;
const END: i32 = EventType::EventEnd as i32;

fn completed() -> AgentExecutionStatus {
    phase(ExecutionPhase::ExecutionCompleted)
}

/// Checks a stream's events: revisions strictly increasing, ending in END.
fn assert_ordered(events: &[stigmer_proto::daemon::Event]) {
    let mut last = 0;
    for e in events.iter().filter(|e| e.r#type != END) {
        assert!(e.revision > last, "revision {} after {last}", e.revision);
        last = e.revision;
    }
}

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
async fn many_writers_many_subscribers_every_revision_once_in_order() {
    let d = Daemon::start(&[]);
    let mut setup = d.connect().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(setup.create(&format!("agent-{i}")).await.0);
    }
    // Subscribers: 3 per execution, on separate connections.
    let mut subs = Vec::new();
    for id in &ids {
        for _ in 0..3 {
            let mut c = d.connect().await;
            let s = c.subscribe(id, None).await;
            let snap = c.event(s).await;
            assert_eq!(snap.r#type, SNAPSHOT);
            subs.push((id.clone(), c, s, snap.revision));
        }
    }
    // Writers: 4 per execution, 25 updates each, concurrently.
    let mut writers = Vec::new();
    for id in &ids {
        for w in 0..4 {
            let socket = d.socket.clone();
            let id = id.clone();
            writers.push(tokio::spawn(async move {
                let mut c = Raw::connect(&socket).await;
                let mut revs = Vec::new();
                for n in 0..25 {
                    let (_, rev) =
                        expect_execution(c.update(&id, ai_status(&format!("w{w} n{n}"))).await);
                    revs.push(rev);
                }
                (id, revs)
            }));
        }
    }
    let mut committed: HashMap<String, Vec<u64>> = HashMap::new();
    for w in writers {
        let (id, revs) = w.await.expect("writer");
        committed.entry(id).or_default().extend(revs);
    }
    // Finish each execution so streams end.
    let mut final_rev = HashMap::new();
    for id in &ids {
        let (_, rev) = expect_execution(setup.update(id, completed()).await);
        committed.entry(id.clone()).or_default().push(rev);
        final_rev.insert(id.clone(), rev);
    }
    for (id, mut c, s, snap_rev) in subs {
        let events = c.events_until_end(s).await;
        assert_ordered(&events);
        let got: Vec<u64> = events
            .iter()
            .filter(|e| e.r#type == UPDATE)
            .map(|e| e.revision)
            .collect();
        let mut want: Vec<u64> = committed[&id]
            .iter()
            .copied()
            .filter(|r| *r > snap_rev)
            .collect();
        want.sort_unstable();
        assert_eq!(
            got, want,
            "subscriber of {id} saw every revision once, in order"
        );
        assert_eq!(
            events.last().map(|e| e.reason),
            Some(EndReason::Terminal as i32)
        );
        assert_eq!(events.last().map(|e| e.revision), Some(final_rev[&id]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_racing_with_updates_has_no_gap() {
    let d = Daemon::start(&[]);
    let mut setup = d.connect().await;
    let (id, _) = setup.create("racer").await;
    let socket = d.socket.clone();
    let wid = id.clone();
    let writer = tokio::spawn(async move {
        let mut c = Raw::connect(&socket).await;
        let mut revs = Vec::new();
        for n in 0..300 {
            revs.push(expect_execution(c.update(&wid, ai_status(&format!("{n}"))).await).1);
        }
        revs.push(expect_execution(c.update(&wid, completed()).await).1);
        revs
    });
    // Open subscriptions while the writer runs, each from a snapshot.
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut c = d.connect().await;
        let s = c.subscribe(&id, None).await;
        streams.push((c, s));
        tokio::task::yield_now().await;
    }
    let revs = writer.await.expect("writer");
    for (mut c, s) in streams {
        let events = c.events_until_end(s).await;
        assert_ordered(&events);
        let first = &events[0];
        assert!(first.r#type == SNAPSHOT || first.r#type == END, "{first:?}");
        let start = first.revision;
        let got: Vec<u64> = events[1..]
            .iter()
            .filter(|e| e.r#type == UPDATE)
            .map(|e| e.revision)
            .collect();
        let want: Vec<u64> = revs.iter().copied().filter(|r| *r > start).collect();
        assert_eq!(
            got, want,
            "no gap between the snapshot at {start} and the live stream"
        );
    }
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
async fn slow_subscriber_does_not_slow_writers_and_catches_up() {
    // Tiny queues so that the stalled subscriber overflows at once.
    let d = Daemon::start(&["--subscriber-queue", "4", "--connection-queue", "4"]);
    let mut setup = d.connect().await;
    let (id, _) = setup.create("slow").await;
    let mut slow = d.connect().await;
    let s = slow.subscribe(&id, None).await;
    // The slow subscriber now reads nothing while 2,000 updates of 16 KiB
    // (32 MiB of events) are committed.
    let payload = "x".repeat(16 * 1024);
    let rss_before = rss_bytes(d.pid());
    let mut revs = Vec::new();
    let mut w = d.connect().await;
    for n in 0..2000 {
        revs.push(expect_execution(w.update(&id, ai_status(&format!("{n}{payload}"))).await).1);
    }
    revs.push(expect_execution(w.update(&id, completed()).await).1);
    let rss_after = rss_bytes(d.pid());
    assert!(
        rss_after < rss_before + 24 * 1024 * 1024,
        "daemon memory stays bounded: {rss_before} -> {rss_after}"
    );
    // Now it reads: every revision after the snapshot, in order (or a
    // RESYNC, which the history retention here does not require).
    let events = slow.events_until_end(s).await;
    assert_ordered(&events);
    assert_eq!(events[0].r#type, SNAPSHOT);
    assert!(events.iter().all(|e| e.r#type != RESYNC));
    let got: Vec<u64> = events
        .iter()
        .filter(|e| e.r#type == UPDATE)
        .map(|e| e.revision)
        .collect();
    let want: Vec<u64> = revs
        .iter()
        .copied()
        .filter(|r| *r > events[0].revision)
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_restart_and_resync_beyond_retention() {
    let mut d = Daemon::start(&["--history-retention", "50"]);
    let (id, revs) = {
        let mut c = d.connect().await;
        let (id, r0) = c.create("resumer").await;
        let mut revs = vec![r0];
        for n in 0..10 {
            revs.push(expect_execution(c.update(&id, ai_status(&format!("{n}"))).await).1);
        }
        (id, revs)
    };
    assert_eq!(d.stop().code(), Some(0));
    d.restart();
    let mut c = d.connect().await;
    // State survived; resume from the 5th revision replays the rest exactly.
    let from = revs[4];
    let s = c.subscribe(&id, Some(from)).await;
    let mut got = Vec::new();
    for _ in 0..(revs.len() - 5) {
        let e = c.event(s).await;
        assert_eq!(e.r#type, UPDATE);
        got.push(e.revision);
    }
    assert_eq!(got, revs[5..].to_vec());
    // New revisions continue above the old ones.
    let (_, next) = expect_execution(c.update(&id, ai_status("after restart")).await);
    assert!(next > *revs.last().unwrap_or(&0));
    assert_eq!(c.event(s).await.revision, next);
    // Push the history past the retention window: a resume from the start
    // now gets an explicit RESYNC with the current state.
    let mut last = next;
    for n in 0..120 {
        last = expect_execution(c.update(&id, ai_status(&format!("r{n}"))).await).1;
    }
    let s2 = c.subscribe(&id, Some(revs[0])).await;
    let e = c.event(s2).await;
    assert_eq!(e.r#type, RESYNC);
    assert_eq!(e.revision, last);
    // A revision from the future is refused.
    let s3 = c.subscribe(&id, Some(last + 1000)).await;
    expect_error(&c.recv(s3).await, Code::OutOfRange);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_with_shutdown_and_keeps_acknowledged_writes() {
    let mut d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("stopper").await;
    let mut acked = 0;
    for n in 0..50 {
        acked = expect_execution(c.update(&id, ai_status(&format!("{n}"))).await).1;
    }
    let s = c.subscribe(&id, None).await;
    assert_eq!(c.event(s).await.r#type, SNAPSHOT);
    let child = d.child.take().expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let end = c.event(s).await;
    assert_eq!(end.r#type, END);
    assert_eq!(end.reason, EndReason::Shutdown as i32);
    assert_eq!(end.revision, acked);
    let mut child = child;
    assert_eq!(child.wait().expect("wait").code(), Some(0), "exit 0");
    assert!(!d.socket.exists(), "socket file removed on exit");
    d.restart();
    let mut c = d.connect().await;
    let (_, rev) = expect_execution(c.call(Cmd::Get(AgentExecutionId { value: id })).await);
    assert_eq!(rev, acked, "every acknowledged update survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_streams_and_resume_learns_of_it() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, created) = c.create("deleted").await;
    let s = c.subscribe(&id, None).await;
    assert_eq!(c.event(s).await.r#type, SNAPSHOT);
    let rev = match c
        .call(Cmd::Delete(ApiResourceId { value: id.clone() }))
        .await
        .result
    {
        Some(response::Result::Deleted(d)) => d.revision,
        other => panic!("{other:?}"),
    };
    let end = c.event(s).await;
    assert_eq!(
        (end.r#type, end.reason, end.revision),
        (END, EndReason::Deleted as i32, rev)
    );
    expect_error(
        &c.call(Cmd::Get(AgentExecutionId { value: id.clone() }))
            .await,
        Code::NotFound,
    );
    expect_error(
        &c.call(Cmd::Delete(ApiResourceId { value: id.clone() }))
            .await,
        Code::NotFound,
    );
    let s2 = c.subscribe(&id, Some(created)).await;
    let end = c.event(s2).await;
    assert_eq!((end.r#type, end.reason), (END, EndReason::Deleted as i32));
    let s3 = c.subscribe(&id, None).await;
    expect_error(&c.recv(s3).await, Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_subscription_ids() {
    let d = Daemon::start(&["--max-subscriptions-per-connection", "3"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("cancel").await;
    // Reusing a live stream's id, for any command, is a connection error
    // (id 0, then close; docs/PROTOCOL.md): an error under the stream's id
    // would read as the end of the stream. Other connections go on.
    for reuse in [
        Cmd::Ping(PingRequest {}),
        Cmd::Subscribe(stigmer_proto::daemon::SubscribeRequest {
            execution_id: id.clone(),
            from_revision: None,
            ..Default::default()
        }),
    ] {
        let mut r = d.connect().await;
        let s = r.subscribe(&id, None).await;
        assert_eq!(r.event(s).await.r#type, SNAPSHOT);
        r.send(s, reuse).await;
        let message = r.expect_refused(Code::InvalidArgument).await;
        assert!(message.contains("already used"), "{message}");
    }
    let s = c.subscribe(&id, None).await;
    assert_eq!(c.event(s).await.r#type, SNAPSHOT);
    // The limit of 3 streams per connection.
    let s2 = c.subscribe(&id, None).await;
    let s3 = c.subscribe(&id, None).await;
    let s4 = c.subscribe(&id, None).await;
    assert_eq!(c.event(s2).await.r#type, SNAPSHOT);
    assert_eq!(c.event(s3).await.r#type, SNAPSHOT);
    expect_error(&c.recv(s4).await, Code::ResourceExhausted);
    // Cancel ends the stream with CANCELLED and frees a slot.
    let cancel = c
        .call(Cmd::Cancel(CancelSubscriptionRequest {
            subscription_id: s,
        }))
        .await;
    assert!(
        matches!(cancel.result, Some(response::Result::Cancelled(_))),
        "{cancel:?}"
    );
    let end = c.event(s).await;
    assert_eq!((end.r#type, end.reason), (END, EndReason::Cancelled as i32));
    let again = c
        .call(Cmd::Cancel(CancelSubscriptionRequest {
            subscription_id: s,
        }))
        .await;
    expect_error(&again, Code::NotFound);
    let s5 = c.subscribe(&id, None).await;
    assert_eq!(c.event(s5).await.r#type, SNAPSHOT);
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

/// `--writer-poll-us`: while updates come within the cap of each other the
/// writer thread finds them by polling; once they stop it sleeps (the poll
/// counter stands still); at 0 it never polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_polls_only_while_updates_come_close() {
    const HITS: &str = "stigmer_writer_poll_hits_total";
    const POLLED: &str = "stigmer_writer_poll_seconds_total";
    // A cap far above this test's round trip, even on a loaded machine.
    let d = Daemon::start(&["--writer-poll-us", "20000"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("poller").await;
    send_updates(&mut c, &id, 200).await;
    assert!(d.metric(HITS) > 0.0, "no update was found by polling");
    // Idle: after at most one window (20 ms) the thread sleeps.
    assert_eq!(
        polled_while_idle(&d, POLLED).await,
        0.0,
        "the writer kept polling while idle"
    );
    assert_poll_off("--writer-poll-us", HITS, POLLED).await;
}

/// Sends `n` status updates to `id`, one at a time, each acknowledged.
async fn send_updates(c: &mut Raw, id: &str, n: usize) {
    for i in 0..n {
        expect_execution(c.update(id, ai_status(&format!("step {i}"))).await);
    }
}

/// Seconds of polling counted in `polled` over 300 ms of idle time, from
/// 100 ms after the last request.
async fn polled_while_idle(d: &Daemon, polled: &str) -> f64 {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let before = d.metric(polled);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    d.metric(polled) - before
}

/// Requests the connection workers read while polling for them.
const READER_POLL_HITS: &str = "stigmer_reader_poll_hits_total";

/// With `flag` at 0, 50 updates from one peer are never polled for.
async fn assert_poll_off(flag: &str, hits: &str, polled: &str) {
    let d = Daemon::start(&[flag, "0"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("sleeper").await;
    send_updates(&mut c, &id, 50).await;
    assert_eq!(d.metric(hits), 0.0, "{flag} 0 still polled");
    assert_eq!(d.metric(polled), 0.0, "{flag} 0 still polled");
}

/// `--reader-poll-us`: while one connection sends requests within the cap
/// of each other a worker polls for them; while two connections send at
/// once it does not; idle, it sleeps (the poll counter stands still); at 0
/// it never polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_polls_only_for_a_lone_peer() {
    const HITS: &str = READER_POLL_HITS;
    const POLLED: &str = "stigmer_reader_poll_seconds_total";
    // A cap far above this test's round trip, even on a loaded machine.
    let d = Daemon::start(&["--reader-poll-us", "20000"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("lone").await;
    // The start-up probe's connection came within a window of this one:
    // requests count as concurrent for four windows (80 ms) after it.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    send_updates(&mut c, &id, 200).await;
    let lone_hits = d.metric(HITS);
    assert!(lone_hits > 0.0, "no request was read while polling");

    // Two peers taking turns, each well within the cap of the other.
    let mut other = d.connect().await;
    let (other_id, _) = other.create("second").await;
    let before = d.metric(HITS);
    for i in 0..50 {
        expect_execution(c.update(&id, ai_status(&format!("a {i}"))).await);
        expect_execution(other.update(&other_id, ai_status(&format!("b {i}"))).await);
    }
    // The poll already running when the second peer arrived may end with a
    // hit; after that nothing is polled for (a stall of more than four
    // windows on a loaded machine could let one more poll start: a handful,
    // where polling every request would give ~100).
    assert!(
        d.metric(HITS) - before <= 10.0,
        "polled while two peers sent: {} hits",
        d.metric(HITS) - before
    );

    // Idle: after at most one window (20 ms) the poll sleeps. Reading the
    // metric is itself a lone request, which may be polled after for at
    // most one window; polling through the idle time would add ~0.3 s.
    let idle = polled_while_idle(&d, POLLED).await;
    assert!(idle <= 0.05, "kept polling while idle: {idle} s");
    assert_poll_off("--reader-poll-us", HITS, POLLED).await;
}

/// `--worker-threads 3`: connections are spread over three shards (three
/// in a row land on all three), each is served there (a write on each,
/// watched from another), and a lone peer is polled for whichever shard it
/// is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_shard_serves_and_polls() {
    const HITS: &str = READER_POLL_HITS;
    let d = Daemon::start(&["--worker-threads", "3", "--reader-poll-us", "20000"]);
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(d.connect().await);
    }
    let mut watcher = d.connect().await;
    for (n, peer) in peers.iter_mut().enumerate() {
        let (id, _) = peer.create(&format!("shard-{n}")).await;
        let sub = watcher.subscribe(&id, None).await;
        assert_eq!(watcher.recv(sub).await.id, sub, "snapshot");
        // Past the concurrency hold of the connections just made.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let before = d.metric(HITS);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        send_updates(peer, &id, 100).await;
        assert!(
            d.metric(HITS) > before,
            "peer {n} was not polled for on its shard"
        );
        for _ in 0..100 {
            let event = watcher.recv(sub).await;
            assert!(
                matches!(event.result, Some(response::Result::Event(_))),
                "{event:?}"
            );
        }
    }
}

#[test]
fn files_are_private_and_one_daemon_per_database_and_socket() {
    let d = Daemon::start(&[]);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&d.db), 0o600, "database readable by its owner only");
    assert_eq!(mode(&d.socket), 0o600, "socket usable by its owner only");
    // A second daemon on the same database refuses to start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(d.dir.join("other.sock"))
        .args(["daemon", "--db"])
        .arg(&d.db)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another stigmer daemon"));
    // A second daemon on the same live socket refuses too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["daemon", "--db"])
        .arg(d.dir.join("other.db"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
}

#[test]
fn stale_socket_file_is_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("s.sock");
    // A socket file with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    let (mut child, _log) = spawn_daemon(&socket, &tmp.path().join("db"), &[]);
    let _ = child.kill();
    let _ = child.wait();
    // A regular file is never deleted.
    let file = tmp.path().join("f.sock");
    std::fs::write(&file, b"data").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(&file)
        .args(["daemon", "--db"])
        .arg(tmp.path().join("db2"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&file).expect("read"), b"data");
}
