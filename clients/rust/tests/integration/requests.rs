//! Requests and replies against the real daemon: many calls multiplexed on
//! one connection, the typed errors, listing by pages and filters, and the
//! blocking API.

use std::collections::BTreeSet;

use futures::future::join_all;
use futures::StreamExt;
use stigmer_client::proto::agentexecution::ExecutionPhase;
use stigmer_client::proto::daemon::EndReason;
use stigmer_client::{blocking, Client, Code, Error, Event, ListFilter, NewExecution};

use crate::common::Daemon;
use crate::support::{assert_ordered_unique, create, id_of, last_message, phase_of, says};

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
