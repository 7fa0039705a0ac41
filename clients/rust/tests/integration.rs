//! The client against the real daemon: multiplexing, ordered and unique
//! subscription events, resuming across a daemon restart, typed errors, the
//! blocking API. Build the daemon first (`cargo build -p stigmer`); see
//! tests/common/mod.rs for how it is found.
//!
//! No test waits on a clock: each waits for the event it needs (a ping, an
//! END, the exit of a process).

mod common;

use std::collections::BTreeSet;

use common::Daemon;
use futures::future::join_all;
use futures::StreamExt;
use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_client::proto::daemon::EndReason;
use stigmer_client::{
    blocking, Client, Code, Config, Error, Event, ListFilter, NewExecution, Subscription,
};

fn id_of(e: &AgentExecution) -> String {
    e.metadata
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_default()
}

fn phase_of(e: &AgentExecution) -> ExecutionPhase {
    e.status.as_ref().map(|s| s.phase()).unwrap_or_default()
}

/// A status whose single AI message says `text`.
fn says(text: &str, phase: ExecutionPhase) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: phase as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: text.to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn last_message(e: &AgentExecution) -> String {
    e.status
        .as_ref()
        .and_then(|s| s.messages.last())
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

async fn create(client: &Client, agent: &str) -> (String, u64) {
    let (e, rev) = client
        .create(NewExecution::new(agent, "do the thing"))
        .await
        .expect("create");
    (id_of(&e), rev)
}

/// A client whose subscriptions ask for deltas or whole states.
async fn connect(daemon: &Daemon, deltas: bool) -> Client {
    let config = Config {
        deltas,
        ..Config::default()
    };
    Client::connect_with(&daemon.socket, config)
        .await
        .expect("connect")
}

/// A change event of the stream's kind: whole states (`Update`), or
/// operations with the state rebuilt locally (`Delta`).
fn is_change(e: &Event, deltas: bool) -> bool {
    if deltas {
        matches!(e, Event::Delta { .. })
    } else {
        matches!(e, Event::Update { .. })
    }
}

/// Reads events until END (or an error, which fails the test).
async fn collect_until_end(sub: &mut Subscription) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(ev) = sub.next().await {
        let ev = ev.expect("stream error");
        let end = matches!(ev, Event::End { .. });
        events.push(ev);
        if end {
            return events;
        }
    }
    panic!("stream ended without END after {events:?}");
}

/// Every revision strictly increases, and the last event is END `reason`.
fn assert_ordered_unique(events: &[Event], reason: EndReason) {
    let revisions: Vec<u64> = events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions not strictly increasing: {revisions:?}"
    );
    match events.last() {
        Some(Event::End { reason: r, .. }) => assert_eq!(*r, reason),
        other => panic!("last event is not END: {other:?}"),
    }
}

#[tokio::test]
async fn multiplexed_concurrent_calls() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");

    // 32 creates in flight at once on one connection.
    let creates = join_all((0..32).map(|i| {
        let client = client.clone();
        async move { create(&client, &format!("agent-{i}")).await }
    }))
    .await;
    let ids: BTreeSet<String> = creates.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 32, "every create got its own execution");
    let revs: BTreeSet<u64> = creates.iter().map(|(_, r)| *r).collect();
    assert_eq!(revs.len(), 32, "every create got its own revision");

    // Gets and pings interleaved: each reply reaches its own caller.
    let gets = join_all(creates.iter().enumerate().map(|(i, (id, _))| {
        let client = client.clone();
        let id = id.clone();
        async move {
            let (pong, got) = tokio::join!(client.ping(), client.get(&id));
            pong.expect("ping");
            let (e, _) = got.expect("get");
            (i, id, e)
        }
    }))
    .await;
    for (i, id, e) in gets {
        assert_eq!(id_of(&e), id);
        assert_eq!(e.spec.unwrap_or_default().agent_id, format!("agent-{i}"));
    }

    // Updates to one execution, all in flight at once: applied in the order
    // sent, so revisions increase with the send order and the last wins.
    let (id, _) = create(&client, "ordered").await;
    let updates = join_all((0..50).map(|i| {
        let client = client.clone();
        let id = id.clone();
        async move {
            client
                .update_status(
                    id,
                    says(&format!("step {i}"), ExecutionPhase::ExecutionInProgress),
                )
                .await
                .expect("update")
        }
    }))
    .await;
    let revisions: Vec<u64> = updates.iter().map(|(_, r)| *r).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "updates from one connection committed out of send order: {revisions:?}"
    );
    for (i, (e, _)) in updates.iter().enumerate() {
        assert_eq!(last_message(e), format!("step {i}"));
    }
    let (e, rev) = client.get(&id).await.expect("get");
    assert_eq!(last_message(&e), "step 49");
    assert_eq!(rev, *revisions.last().unwrap_or(&0));

    let pong = client.ping().await.expect("ping");
    assert_eq!(pong.protocol_version, 1);
    assert!(pong.revision >= rev);
}

#[tokio::test]
async fn subscribe_sees_every_revision_once_in_order() {
    subscribe_sees_every_revision_once_in_order_with(false).await;
}

/// `subscribe_sees_every_revision_once_in_order` on a delta stream (the client's default): the same
/// revisions and states, each change as its operations (resuming without
/// the state being sent again).
#[tokio::test]
async fn subscribe_sees_every_revision_once_in_order_deltas() {
    subscribe_sees_every_revision_once_in_order_with(true).await;
}

async fn subscribe_sees_every_revision_once_in_order_with(deltas: bool) {
    let daemon = Daemon::start();
    let client = connect(&daemon, deltas).await;
    let (id, created) = create(&client, "a").await;
    let mut sub = client.subscribe(&id, None).await.expect("subscribe");

    let mut committed = vec![created];
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!("tok{i} "));
        let status = says(&text, ExecutionPhase::ExecutionInProgress);
        // Every other update asks for a minimal reply: the revision alone.
        let rev = if i % 2 == 0 {
            client.update_status(&id, status).await.expect("update").1
        } else {
            client.update_status_ack(&id, status).await.expect("update")
        };
        committed.push(rev);
    }
    let (_, rev) = client
        .update_status(&id, says(&text, ExecutionPhase::ExecutionCompleted))
        .await
        .expect("complete");
    committed.push(rev);

    let events = collect_until_end(&mut sub).await;
    assert_ordered_unique(&events, EndReason::Terminal);
    let Some(Event::Snapshot { revision: snap, .. }) = events.first() else {
        panic!("first event is not a snapshot: {:?}", events.first());
    };
    // The snapshot is the state at some commit; every later commit follows
    // as an update, none skipped, none repeated.
    let expected: Vec<u64> = committed.iter().copied().filter(|r| r >= snap).collect();
    let seen: Vec<u64> = events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect();
    assert_eq!(seen, expected);
    assert!(events[1..events.len() - 1]
        .iter()
        .all(|e| is_change(e, deltas)));
    let final_state = events[events.len() - 2]
        .execution()
        .cloned()
        .unwrap_or_default();
    assert_eq!(phase_of(&final_state), ExecutionPhase::ExecutionCompleted);
    assert_eq!(last_message(&final_state), text);
    // The stream is over.
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn subscribe_from_revision_replays_only_later_changes() {
    subscribe_from_revision_replays_only_later_changes_with(false).await;
}

/// `subscribe_from_revision_replays_only_later_changes` on a delta stream (the client's default): the same
/// revisions and states, each change as its operations (resuming without
/// the state being sent again).
#[tokio::test]
async fn subscribe_from_revision_replays_only_later_changes_deltas() {
    subscribe_from_revision_replays_only_later_changes_with(true).await;
}

async fn subscribe_from_revision_replays_only_later_changes_with(deltas: bool) {
    let daemon = Daemon::start();
    let client = connect(&daemon, deltas).await;
    let (id, _) = create(&client, "a").await;
    let mut revs = Vec::new();
    for i in 0..5 {
        let (_, r) = client
            .update_status(
                &id,
                says(&format!("m{i}"), ExecutionPhase::ExecutionInProgress),
            )
            .await
            .expect("update");
        revs.push(r);
    }
    let (_, r) = client
        .update_status(&id, says("done", ExecutionPhase::ExecutionCompleted))
        .await
        .expect("complete");
    revs.push(r);

    let mut sub = client
        .subscribe(&id, Some(revs[1]))
        .await
        .expect("subscribe");
    let events = collect_until_end(&mut sub).await;
    assert_ordered_unique(&events, EndReason::Terminal);
    let seen: Vec<u64> = events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect();
    assert_eq!(seen, revs[2..].to_vec());
    assert!(is_change(&events[0], deltas), "{:?}", events[0]);
}

#[tokio::test]
async fn resume_across_daemon_restart() {
    resume_across_daemon_restart_with(false).await;
}

/// `resume_across_daemon_restart` on a delta stream (the client's default): the same
/// revisions and states, each change as its operations (resuming without
/// the state being sent again).
#[tokio::test]
async fn resume_across_daemon_restart_deltas() {
    resume_across_daemon_restart_with(true).await;
}

async fn resume_across_daemon_restart_with(deltas: bool) {
    let mut daemon = Daemon::start();
    let client = connect(&daemon, deltas).await;
    let (id, _) = create(&client, "a").await;
    let mut sub = client.subscribe(&id, None).await.expect("subscribe");
    let first = sub.next().await.expect("an event").expect("snapshot");
    assert!(matches!(first, Event::Snapshot { .. }));

    let mut expected = Vec::new();
    for i in 0..5 {
        let (_, r) = client
            .update_status(
                &id,
                says(&format!("before {i}"), ExecutionPhase::ExecutionInProgress),
            )
            .await
            .expect("update before restart");
        expected.push(r);
    }
    // Read exactly those five updates.
    for r in &expected {
        let ev = sub.next().await.expect("an event").expect("update");
        assert_eq!(ev.revision(), *r);
    }

    // The daemon stops (ending the stream with SHUTDOWN) and comes back on
    // the same database and socket.
    daemon.stop();
    daemon.spawn();

    // The same client reconnects by itself for unary calls. These updates
    // happen while the subscription is disconnected: it must replay them.
    let mut after = Vec::new();
    for i in 0..5 {
        let (_, r) = client
            .update_status(
                &id,
                says(&format!("after {i}"), ExecutionPhase::ExecutionInProgress),
            )
            .await
            .expect("update after restart");
        after.push(r);
    }
    let (_, r) = client
        .update_status(&id, says("after done", ExecutionPhase::ExecutionCompleted))
        .await
        .expect("complete after restart");
    after.push(r);
    assert!(after[0] > expected[4], "revisions survive the restart");

    let events = collect_until_end(&mut sub).await;
    assert_ordered_unique(&events, EndReason::Terminal);
    let seen: Vec<u64> = events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect();
    assert_eq!(seen, after, "no gap, no duplicate across the restart");
    assert!(events
        .iter()
        .all(|e| is_change(e, deltas) || matches!(e, Event::End { .. })));
}

#[tokio::test]
async fn resume_while_waiting_for_events() {
    // The restart happens while the consumer is blocked on next(): the
    // stream must notice the SHUTDOWN, reconnect with backoff on its own, and
    // deliver the changes made after the restart.
    let mut daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let (id, _) = create(&client, "a").await;
    let mut sub = client.subscribe(&id, None).await.expect("subscribe");
    let snap = sub.next().await.expect("an event").expect("snapshot");

    let socket = daemon.socket.clone();
    let waiter = tokio::spawn(async move {
        let events = collect_until_end(&mut sub).await;
        (sub, events)
    });
    // Restart the daemon on a blocking thread while the waiter is parked.
    let daemon = tokio::task::spawn_blocking(move || {
        daemon.stop();
        daemon.spawn();
        daemon
    })
    .await
    .expect("restart");

    let writer = Client::connect(&socket)
        .await
        .expect("connect after restart");
    let (_, r1) = writer
        .update_status(&id, says("x", ExecutionPhase::ExecutionInProgress))
        .await
        .expect("update");
    let (_, r2) = writer
        .update_status(&id, says("y", ExecutionPhase::ExecutionFailed))
        .await
        .expect("fail");
    let (_sub, events) = waiter.await.expect("waiter");
    assert_ordered_unique(&events, EndReason::Terminal);
    let seen: Vec<u64> = events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect();
    assert_eq!(seen, vec![r1, r2]);
    assert!(r1 > snap.revision());
    drop(daemon);
}

#[tokio::test]
async fn slow_consumer_overflow_resubscribes_without_loss() {
    let daemon = Daemon::start();
    let config = Config {
        stream_queue: 2,
        ..Config::default()
    };
    let client = Client::connect_with(&daemon.socket, config)
        .await
        .expect("connect");
    let (id, created) = create(&client, "a").await;
    let mut sub = client.subscribe(&id, None).await.expect("subscribe");
    // 30 updates while nobody reads the stream: its 2-event buffer
    // overflows, and the client resubscribes from the last delivered
    // revision when the consumer catches up.
    let mut committed = vec![created];
    for i in 0..30 {
        let (_, r) = client
            .update_status(
                &id,
                says(&format!("{i}"), ExecutionPhase::ExecutionInProgress),
            )
            .await
            .expect("update");
        committed.push(r);
    }
    let (_, r) = client
        .update_status(&id, says("end", ExecutionPhase::ExecutionCompleted))
        .await
        .expect("complete");
    committed.push(r);
    let events = collect_until_end(&mut sub).await;
    assert_ordered_unique(&events, EndReason::Terminal);
    let snap = events[0].revision();
    let seen: Vec<u64> = events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect();
    let expected: Vec<u64> = committed.into_iter().filter(|r| *r >= snap).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn typed_errors() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");

    let missing = "aex-01jf8zq3k4m5n6p7q8r9s0t1v2";
    let err = client.get(missing).await.expect_err("get unknown");
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    assert!(err.to_string().starts_with("NOT_FOUND: "), "{err}");
    let err = client
        .update_status(missing, says("x", ExecutionPhase::ExecutionInProgress))
        .await
        .expect_err("update unknown");
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    let err = client.delete(missing).await.expect_err("delete unknown");
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");

    let err = client
        .create(NewExecution::new("", "prompt"))
        .await
        .expect_err("empty agent");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let err = client
        .create(NewExecution::new("agent", ""))
        .await
        .expect_err("empty message");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let err = client
        .list(&ListFilter {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .expect_err("page too large");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");

    let (id, _) = create(&client, "a").await;
    let err = client
        .create(NewExecution::new("a", "again").id(id.clone()))
        .await
        .expect_err("duplicate id");
    assert_eq!(err.code(), Some(Code::AlreadyExists), "{err}");

    client
        .update_status(&id, says("done", ExecutionPhase::ExecutionCompleted))
        .await
        .expect("complete");
    let err = client
        .update_status(&id, says("more", ExecutionPhase::ExecutionInProgress))
        .await
        .expect_err("update after terminal");
    assert_eq!(err.code(), Some(Code::FailedPrecondition), "{err}");

    // Start-of-stream errors arrive as the stream's first (and last) item.
    let mut sub = client.subscribe(missing, None).await.expect("subscribe");
    let err = sub.next().await.expect("an item").expect_err("NOT_FOUND");
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    assert!(sub.next().await.is_none());
    let mut sub = client
        .subscribe(&id, Some(u64::MAX / 2))
        .await
        .expect("subscribe");
    let err = sub
        .next()
        .await
        .expect("an item")
        .expect_err("OUT_OF_RANGE");
    assert_eq!(err.code(), Some(Code::OutOfRange), "{err}");

    let err = client.cancel(987_654).await.expect_err("cancel unknown");
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");

    // A request over the frame limit is refused locally; the connection
    // stays usable.
    let huge = "x".repeat(stigmer_client::proto::frame::DEFAULT_MAX_FRAME_LENGTH + 1);
    let err = client
        .create(NewExecution::new("a", huge))
        .await
        .expect_err("too large");
    assert!(matches!(err, Error::FrameTooLarge { .. }), "{err}");
    client.ping().await.expect("still connected");
}

#[tokio::test]
async fn list_pages_and_filters() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let mut ids = Vec::new();
    for i in 0..7 {
        let (e, _) = client
            .create(NewExecution::new("a", format!("p{i}")).session_id("s-list"))
            .await
            .expect("create");
        ids.push(id_of(&e));
    }
    create(&client, "other-session").await;
    client
        .update_status(&ids[3], says("x", ExecutionPhase::ExecutionInProgress))
        .await
        .expect("update");

    let filter = ListFilter {
        session_id: Some("s-list".into()),
        page_size: 3,
        ..Default::default()
    };
    let first = client.list(&filter).await.expect("page 1");
    assert_eq!(first.executions.len(), 3);
    assert!(first.next_page_token.is_some());
    let all = client.list_all(&filter).await.expect("all pages");
    assert_eq!(all.iter().map(id_of).collect::<Vec<_>>(), ids);

    let in_progress = client
        .list_all(&ListFilter {
            phase: Some(ExecutionPhase::ExecutionInProgress),
            ..Default::default()
        })
        .await
        .expect("by phase");
    assert_eq!(
        in_progress.iter().map(id_of).collect::<Vec<_>>(),
        vec![ids[3].clone()]
    );
}

#[tokio::test]
async fn delete_and_cancel_end_streams() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let (id, _) = create(&client, "a").await;

    let mut watching = client.subscribe(&id, None).await.expect("subscribe");
    assert!(matches!(
        watching.next().await,
        Some(Ok(Event::Snapshot { .. }))
    ));
    let rev = client.delete(&id).await.expect("delete");
    let events = collect_until_end(&mut watching).await;
    match events.last() {
        Some(Event::End {
            reason: EndReason::Deleted,
            revision,
            ..
        }) => assert_eq!(*revision, rev),
        other => panic!("expected END deleted, got {other:?}"),
    }
    let err = client.get(&id).await.expect_err("deleted");
    assert_eq!(err.code(), Some(Code::NotFound));

    let (id, _) = create(&client, "b").await;
    let mut sub = client.subscribe(&id, None).await.expect("subscribe");
    assert!(matches!(sub.next().await, Some(Ok(Event::Snapshot { .. }))));
    sub.cancel().await.expect("cancel");
    // Dropping a subscription cancels it too; the connection keeps working.
    let sub = client.subscribe(&id, None).await.expect("subscribe");
    drop(sub);
    client.ping().await.expect("ping");
}

#[test]
fn blocking_api() {
    let daemon = Daemon::start();
    let client = blocking::Client::connect(&daemon.socket).expect("connect");
    let pong = client.ping().expect("ping");
    assert_eq!(pong.protocol_version, 1);

    let (e, _) = client
        .create(NewExecution::new("blocking", "hello").session_id("s-b"))
        .expect("create");
    let id = id_of(&e);
    let sub = client.subscribe(&id, None).expect("subscribe");
    let (_, r1) = client
        .update_status(&id, says("one", ExecutionPhase::ExecutionInProgress))
        .expect("update");
    let (_, r2) = client
        .update_status(&id, says("two", ExecutionPhase::ExecutionCancelled))
        .expect("cancel phase");

    let events: Vec<Event> = sub.map(|e| e.expect("event")).collect();
    assert_ordered_unique(&events, EndReason::Terminal);
    let revs: Vec<u64> = events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect();
    assert!(
        revs.ends_with(&[r1, r2]) || revs.ends_with(&[r2]),
        "{revs:?}"
    );

    let (got, rev) = client.get(&id).expect("get");
    assert_eq!(rev, r2);
    assert_eq!(phase_of(&got), ExecutionPhase::ExecutionCancelled);
    let all = client
        .list_all(&ListFilter {
            session_id: Some("s-b".into()),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(all.len(), 1);
    let err = client
        .update_status(&id, says("late", ExecutionPhase::ExecutionInProgress))
        .expect_err("terminal");
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    assert!(client.delete(&id).is_ok());
}

#[tokio::test]
async fn notices_report_the_break_and_the_resumption() {
    // Subscription::on_notice hears once that the stream broke and once
    // that it resumed, from where, so a program can tell its user.
    use std::sync::{Arc, Mutex};
    use stigmer_client::Notice;

    let mut daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let (id, _) = create(&client, "a").await;
    let notices = Arc::new(Mutex::new(Vec::new()));
    let heard = notices.clone();
    let mut sub = client
        .subscribe(&id, None)
        .await
        .expect("subscribe")
        .on_notice(move |n| heard.lock().expect("lock").push(n.clone()));
    let snap = sub.next().await.expect("an event").expect("snapshot");

    let socket = daemon.socket.clone();
    let waiter = tokio::spawn(async move { collect_until_end(&mut sub).await });
    let daemon = tokio::task::spawn_blocking(move || {
        daemon.stop();
        daemon.spawn();
        daemon
    })
    .await
    .expect("restart");
    let writer = Client::connect(&socket)
        .await
        .expect("connect after restart");
    writer
        .update_status(&id, says("done", ExecutionPhase::ExecutionCompleted))
        .await
        .expect("complete");
    let events = waiter.await.expect("waiter");
    assert_ordered_unique(&events, EndReason::Terminal);
    let notices = notices.lock().expect("lock").clone();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        matches!(&notices[0], Notice::Reconnecting { last_revision, .. } if *last_revision == Some(snap.revision())),
        "{notices:?}"
    );
    assert!(
        matches!(&notices[1], Notice::Resumed { from_revision, .. } if *from_revision == Some(snap.revision())),
        "{notices:?}"
    );
    drop(daemon);
}

/// `append_text` builds a message token by token; the same append again
/// (a retry) is acknowledged at the same revision without a second copy; a
/// stale offset is ABORTED; a delta subscription hands out each token's
/// operations with the whole state kept up to date.
#[tokio::test]
async fn append_text_and_delta_subscription() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let (id, _) = create(&client, "a").await;
    let mut sub = client.subscribe(&id, None).await.expect("subscribe");
    assert!(matches!(sub.next().await, Some(Ok(Event::Snapshot { .. }))));
    let mut text = String::new();
    let mut revisions = Vec::new();
    for token in ["Hello", ", ", "wörld"] {
        let r = client
            .append_text(&id, 0, text.len() as u64, token)
            .await
            .expect("append");
        text.push_str(token);
        revisions.push(r);
    }
    let again = client
        .append_text(&id, 0, (text.len() - "wörld".len()) as u64, "wörld")
        .await
        .expect("a retry is acknowledged");
    assert_eq!(again, *revisions.last().expect("appended"));
    let stale = client.append_text(&id, 0, 1, "x").await;
    assert!(matches!(&stale, Err(e) if e.is(Code::Aborted)), "{stale:?}");
    for (i, r) in revisions.iter().enumerate() {
        let Some(Ok(Event::Delta {
            revision,
            ops,
            execution,
        })) = sub.next().await
        else {
            panic!("expected a delta");
        };
        assert_eq!(revision, *r);
        assert!(!ops.is_empty());
        let expected: String = ["Hello", ", ", "wörld"][..=i].concat();
        assert_eq!(last_message(&execution), expected);
    }
    let (stored, _) = client.get(&id).await.expect("get");
    assert_eq!(last_message(&stored), "Hello, wörld");
}
