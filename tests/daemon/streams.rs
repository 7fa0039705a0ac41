//! The stream guarantees: every committed revision once, in order, to every
//! subscriber (many writers, subscribes racing with updates, a subscriber
//! that stalls); how streams end (a delete, a cancel) and the ids and
//! limit of a connection's streams.

use std::collections::HashMap;

use stigmer_proto::agentexecution::AgentExecutionId;
use stigmer_proto::apiresource::ApiResourceId;
use stigmer_proto::daemon::{
    request::Command as Cmd, response, CancelSubscriptionRequest, Code, EndReason, PingRequest,
};

use crate::common::*;
use crate::{assert_ordered, completed, END, RESYNC, SNAPSHOT, UPDATE};

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
