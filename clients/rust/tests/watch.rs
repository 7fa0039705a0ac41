//! `Client::watch` against the real daemon: the initial list and its
//! end-of-list bookmark, live creates, updates (whole and as deltas) and
//! deletes, the cache equal to `get` of every execution after a run,
//! resuming across a daemon restart with no gap and no duplicate, and a
//! session's watch never seeing another session. Build the daemon first
//! (`cargo build -p stigmer`).
//!
//! No test waits on a clock: each reads events until the one it needs (a
//! sentinel execution created last); the timeout is a failure guard.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Daemon;
use futures::StreamExt;
use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_client::{
    blocking, Client, ListFilter, NewExecution, Notice, Selector, Watch, WatchEvent, WatchOptions,
};

/// A failure guard, not a timing assertion.
const GUARD: Duration = Duration::from_secs(30);

fn id_of(e: &AgentExecution) -> String {
    e.metadata
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_default()
}

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

async fn create(client: &Client, agent: &str, session: &str) -> (String, u64) {
    let (e, rev) = client
        .create(NewExecution::new(agent, "do the thing").session_id(session))
        .await
        .expect("create");
    (id_of(&e), rev)
}

async fn next(watch: &mut Watch) -> WatchEvent {
    tokio::time::timeout(GUARD, watch.next())
        .await
        .expect("an event in time")
        .expect("the watch goes on")
        .expect("no error")
}

/// Reads events until the one about `id` (inclusive).
async fn until(watch: &mut Watch, id: &str) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    loop {
        let ev = next(watch).await;
        let done = ev.execution_id() == Some(id);
        events.push(ev);
        if done {
            return events;
        }
    }
}

/// Reads the initial list up to its end-of-list bookmark.
async fn list(watch: &mut Watch) -> (Vec<WatchEvent>, u64) {
    let mut events = Vec::new();
    loop {
        match next(watch).await {
            WatchEvent::Bookmark {
                revision,
                initial_events_end: true,
            } => return (events, revision),
            ev => events.push(ev),
        }
    }
}

/// The cache equals the daemon's `get` of every execution `filter` lists,
/// and holds nothing else.
async fn assert_cache_is_the_daemon(client: &Client, watch: &Watch, filter: &ListFilter) {
    let all = client.list_all(filter).await.expect("list");
    let ids: BTreeSet<String> = all.iter().map(id_of).collect();
    let cached: BTreeSet<String> = watch.cache().iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(
        cached, ids,
        "the cache holds exactly the matching executions"
    );
    for id in ids {
        let (stored, revision) = client.get(&id).await.expect("get");
        let held = watch.cache().entry(&id).expect("cached");
        assert_eq!(
            held.revision, revision,
            "{id}: the cache is at the last revision"
        );
        assert_eq!(*held.execution, stored, "{id}: the cache equals get()");
    }
}

/// Each event's kind, execution id ("" for none) and revision.
fn kinds_ids_revisions(events: &[WatchEvent]) -> Vec<(&'static str, String, u64)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind(),
                e.execution_id().unwrap_or("").to_string(),
                e.revision(),
            )
        })
        .collect()
}

#[tokio::test]
async fn session_watch_lists_then_follows_creates_updates_deletes() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let (a, ra) = create(&client, "agent-a", "s").await;
    let (b, rb) = create(&client, "agent-b", "s").await;
    let (other, _) = create(&client, "agent-x", "other").await;

    let mut watch = client
        .watch(Selector::session("s"), WatchOptions::default())
        .await
        .expect("watch");
    let (snapshots, end) = list(&mut watch).await;
    let listed = kinds_ids_revisions(&snapshots);
    assert_eq!(
        listed,
        [("snapshot", a.clone(), ra), ("snapshot", b.clone(), rb)]
    );
    assert!(
        end >= rb,
        "the list's bookmark is at or above its snapshots"
    );
    assert!(watch.cache().is_complete());

    // Changes in both sessions; only "s" may be seen.
    let (c, rc) = create(&client, "agent-c", "s").await;
    let (_, r1) = client
        .update_status(&a, says("hello", ExecutionPhase::ExecutionInProgress))
        .await
        .expect("update");
    let r2 = client
        .append_text(&a, 0, 5, " world")
        .await
        .expect("append");
    client
        .update_status(
            &other,
            says("elsewhere", ExecutionPhase::ExecutionInProgress),
        )
        .await
        .expect("update other");
    create(&client, "agent-y", "other").await;
    let rd = client.delete(&b).await.expect("delete");
    let (sentinel, rs) = create(&client, "sentinel", "s").await;

    let events = until(&mut watch, &sentinel).await;
    let seen = kinds_ids_revisions(&events);
    assert_eq!(
        seen,
        [
            ("created", c.clone(), rc),
            ("delta", a.clone(), r1),
            ("delta", a.clone(), r2),
            ("deleted", b.clone(), rd),
            ("created", sentinel.clone(), rs),
        ],
        "every change of the session once, in order, and nothing else"
    );
    // Each update hands the whole state at its revision.
    let last_text = |e: &WatchEvent| {
        e.execution()
            .and_then(|x| x.status.as_ref())
            .and_then(|s| s.messages.last())
            .map(|m| m.content.clone())
    };
    assert_eq!(last_text(&events[1]).as_deref(), Some("hello"));
    assert_eq!(last_text(&events[2]).as_deref(), Some("hello world"));
    assert!(!events[2].ops().is_empty());
    assert!(
        watch.cache().get(&b).is_none(),
        "a deleted execution leaves the cache"
    );
    assert_eq!(watch.last_revision(), Some(rs));
    let filter = ListFilter {
        session_id: Some("s".into()),
        ..Default::default()
    };
    assert_cache_is_the_daemon(&client, &watch, &filter).await;
}

#[tokio::test]
async fn cache_equals_get_after_a_run_with_deltas() {
    cache_equals_get_after_a_run(true).await;
}

#[tokio::test]
async fn cache_equals_get_after_a_run_with_whole_states() {
    cache_equals_get_after_a_run(false).await;
}

/// Several executions stream text and change phase at once (some before
/// the watch starts); afterwards the cache is what `get` says.
async fn cache_equals_get_after_a_run(deltas: bool) {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let mut ids = Vec::new();
    for i in 0..4 {
        let (id, _) = create(&client, &format!("agent-{i}"), &format!("s{}", i % 2)).await;
        client
            .append_text(&id, 0, 0, "early")
            .await
            .expect("append");
        ids.push(id);
    }
    let options = WatchOptions {
        deltas,
        ..Default::default()
    };
    let mut watch = client.watch(Selector::All, options).await.expect("watch");
    let (snapshots, _) = list(&mut watch).await;
    assert_eq!(snapshots.len(), 4);

    let writers = ids.iter().map(|id| {
        let client = client.clone();
        let id = id.clone();
        async move {
            let mut offset = 5u64;
            for n in 0..10 {
                let text = format!(" token{n}");
                client
                    .append_text(&id, 0, offset, text.clone())
                    .await
                    .expect("append");
                offset += text.len() as u64;
            }
            client
                .update_status(&id, says("done", ExecutionPhase::ExecutionCompleted))
                .await
                .expect("complete");
        }
    });
    futures::future::join_all(writers).await;
    client.delete(&ids[0]).await.expect("delete");
    let (sentinel, _) = create(&client, "sentinel", "s9").await;
    let events = until(&mut watch, &sentinel).await;
    let revisions: Vec<u64> = events.iter().map(WatchEvent::revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions strictly increase: {revisions:?}"
    );
    let updates = events
        .iter()
        .filter(|e| matches!(e, WatchEvent::Updated { .. }));
    assert_eq!(updates.clone().count(), 4 * 11, "every change seen");
    assert!(updates.clone().all(|e| (e.kind() == "delta") == deltas));
    assert_cache_is_the_daemon(&client, &watch, &ListFilter::default()).await;
}

#[tokio::test]
async fn watch_resumes_across_a_daemon_restart_without_gap_or_duplicate() {
    let mut daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let (a, _) = create(&client, "agent-a", "s").await;
    let notices = Arc::new(Mutex::new(Vec::new()));
    let heard = notices.clone();
    let mut watch = client
        .watch(Selector::session("s"), WatchOptions::default())
        .await
        .expect("watch")
        .on_notice(move |n| heard.lock().expect("lock").push(n.clone()));
    list(&mut watch).await;

    // Every write's revision: the watch must deliver each exactly once.
    let mut written = BTreeMap::new();
    for i in 0..3 {
        let (_, r) = client
            .update_status(
                &a,
                says(&format!("before {i}"), ExecutionPhase::ExecutionInProgress),
            )
            .await
            .expect("update");
        written.insert(r, a.clone());
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(next(&mut watch).await);
    }

    // The daemon stops (ending the stream with SHUTDOWN) and comes back.
    daemon.stop();
    daemon.spawn();
    for i in 0..3 {
        let (_, r) = client
            .update_status(
                &a,
                says(&format!("after {i}"), ExecutionPhase::ExecutionInProgress),
            )
            .await
            .expect("update after restart");
        written.insert(r, a.clone());
    }
    let (b, rb) = create(&client, "agent-b", "s").await;
    written.insert(rb, b.clone());
    let rd = client.delete(&a).await.expect("delete");
    written.insert(rd, a.clone());
    let (sentinel, rs) = create(&client, "sentinel", "s").await;
    written.insert(rs, sentinel.clone());
    seen.extend(until(&mut watch, &sentinel).await);

    let changes: Vec<(u64, String)> = seen
        .iter()
        .filter(|e| !matches!(e, WatchEvent::Bookmark { .. }))
        .map(|e| (e.revision(), e.execution_id().unwrap_or("").to_string()))
        .collect();
    let revisions: Vec<u64> = seen.iter().map(WatchEvent::revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] <= w[1]),
        "revisions never go back: {revisions:?}"
    );
    assert_eq!(
        changes,
        written.into_iter().collect::<Vec<_>>(),
        "every change once, in order, across the restart"
    );
    let notices = notices.lock().expect("lock").clone();
    assert!(
        matches!(notices.first(), Some(Notice::Reconnecting { .. })),
        "{notices:?}"
    );
    assert!(
        notices.iter().any(|n| matches!(
            n,
            Notice::Resumed {
                from_revision: Some(_),
                ..
            }
        )),
        "{notices:?}"
    );
    let filter = ListFilter {
        session_id: Some("s".into()),
        ..Default::default()
    };
    assert_cache_is_the_daemon(&client, &watch, &filter).await;
}

#[tokio::test]
async fn watch_from_a_revision_gets_only_later_changes() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    let (a, _) = create(&client, "agent-a", "s").await;
    let (_, r) = client
        .update_status(&a, says("one", ExecutionPhase::ExecutionInProgress))
        .await
        .expect("update");
    let (_, r2) = client
        .update_status(&a, says("two", ExecutionPhase::ExecutionInProgress))
        .await
        .expect("update");
    let options = WatchOptions {
        from_revision: Some(r),
        ..Default::default()
    };
    let mut watch = client.watch(Selector::All, options).await.expect("watch");
    let (sentinel, rs) = create(&client, "sentinel", "s").await;
    let events = until(&mut watch, &sentinel).await;
    let seen: Vec<(&str, u64)> = events.iter().map(|e| (e.kind(), e.revision())).collect();
    // The cache held nothing to apply a delta to: whole states.
    assert_eq!(seen, [("update", r2), ("created", rs)]);
    assert!(!watch.cache().is_complete());
    assert_eq!(watch.cache().len(), 2);
}

#[tokio::test]
async fn an_empty_session_lists_nothing_then_follows() {
    let daemon = Daemon::start();
    let client = Client::connect(&daemon.socket).await.expect("connect");
    create(&client, "agent-x", "other").await;
    let mut watch = client
        .watch(Selector::session("empty"), WatchOptions::default())
        .await
        .expect("watch");
    let (snapshots, _) = list(&mut watch).await;
    assert!(snapshots.is_empty());
    let (id, _) = create(&client, "agent-a", "empty").await;
    let events = until(&mut watch, &id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind(), "created");
}

#[test]
fn blocking_watch_iterates_and_keeps_its_cache() {
    let daemon = Daemon::start();
    let client = blocking::Client::connect(&daemon.socket).expect("connect");
    let (e, _) = client
        .create(NewExecution::new("agent-a", "hi").session_id("s"))
        .expect("create");
    let id = id_of(&e);
    let mut watch = client
        .watch(Selector::session("s"), WatchOptions::default())
        .expect("watch");
    let first = watch.next().expect("an event").expect("snapshot");
    assert_eq!(first.kind(), "snapshot");
    let end = watch.next().expect("an event").expect("bookmark");
    assert!(matches!(
        end,
        WatchEvent::Bookmark {
            initial_events_end: true,
            ..
        }
    ));
    let (_, r) = client
        .update_status(&id, says("hi", ExecutionPhase::ExecutionCompleted))
        .expect("update");
    let update = watch.next().expect("an event").expect("update");
    assert_eq!(update.revision(), r);
    assert_eq!(watch.cache().len(), 1);
    assert_eq!(watch.last_revision(), Some(r));
    watch.cancel().expect("cancel");
}
