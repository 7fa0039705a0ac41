//! Subscriptions against the real daemon: every revision once and in order,
//! `from_revision`, resuming across a daemon restart or while waiting, a slow
//! consumer's overflow, the notices of a break, streams ended by delete and
//! cancel, and delta subscriptions of appended text. Each ordering test runs
//! on whole-state and on delta streams.

use futures::StreamExt;
use stigmer_client::proto::agentexecution::ExecutionPhase;
use stigmer_client::proto::daemon::EndReason;
use stigmer_client::{Client, Code, Config, Event};

use crate::common::Daemon;
use crate::support::{
    assert_ordered_unique, collect_until_end, connect, create, is_change, last_message, phase_of,
    say_done, say_each, says, state_revisions,
};

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
    let seen = state_revisions(&events);
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
    let mut revs = say_each(&client, &id, (0..5).map(|i| format!("m{i}")), "update").await;
    revs.push(say_done(&client, &id, "done", "complete").await);

    let mut sub = client
        .subscribe(&id, Some(revs[1]))
        .await
        .expect("subscribe");
    let events = collect_until_end(&mut sub).await;
    assert_ordered_unique(&events, EndReason::Terminal);
    let seen = state_revisions(&events);
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

    let before = (0..5).map(|i| format!("before {i}"));
    let expected = say_each(&client, &id, before, "update before restart").await;
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
    let words = (0..5).map(|i| format!("after {i}"));
    let mut after = say_each(&client, &id, words, "update after restart").await;
    after.push(say_done(&client, &id, "after done", "complete after restart").await);
    assert!(after[0] > expected[4], "revisions survive the restart");

    let events = collect_until_end(&mut sub).await;
    assert_ordered_unique(&events, EndReason::Terminal);
    let seen = state_revisions(&events);
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
    let seen = state_revisions(&events);
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
    committed.extend(say_each(&client, &id, (0..30).map(|i| i.to_string()), "update").await);
    committed.push(say_done(&client, &id, "end", "complete").await);
    let events = collect_until_end(&mut sub).await;
    assert_ordered_unique(&events, EndReason::Terminal);
    let snap = events[0].revision();
    let seen = state_revisions(&events);
    let expected: Vec<u64> = committed.into_iter().filter(|r| *r >= snap).collect();
    assert_eq!(seen, expected);
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
