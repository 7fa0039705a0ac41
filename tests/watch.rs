//! Many-execution streams (issue 17) against the real binary: a session or
//! all-executions `subscribe` lists then watches with no gap, resumes from
//! any revision (the same sequence from every start point, as Kubernetes'
//! watch conformance tests check), resyncs explicitly below the compaction
//! floor, sends bookmarks while idle, catches up after a stalled reader,
//! survives a restart, and never shows an execution outside its selection.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::watch::*;
use common::*;
use stigmer_proto::agentexecution::ExecutionPhase;
use stigmer_proto::daemon::{request::Command as Cmd, Code, SubscribeRequest};

#[tokio::test]
async fn a_session_watch_lists_then_follows_its_session_only() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s1").await;
    let (b, _) = create_in(&mut c, "s1").await;
    let (other, _) = create_in(&mut c, "s2").await;
    let a_rev = update(&mut c, &a, "first").await;

    let mut w = d.connect().await;
    let sub = watch(&mut w, Sel::Session("s1"), None, false).await;
    let list = initial_list(&mut w, sub).await;
    // b (created before a's update) first: the list is in revision order.
    let ids: Vec<&str> = list[..2].iter().map(|e| e.execution_id.as_str()).collect();
    assert_eq!(ids, [b.as_str(), a.as_str()]);
    assert_eq!(list[1].revision, a_rev);
    let end = &list[2];
    assert!(end.initial_events_end && end.execution_id.is_empty());
    assert_eq!(
        end.revision, a_rev,
        "the list's revision: the last committed"
    );

    // Live: a creation, updates, a terminal phase (the stream goes on), a
    // delete; nothing of s2.
    let (n, n_rev) = create_in(&mut c, "s1").await;
    update(&mut c, &other, "not watched").await;
    let b_rev = update(&mut c, &b, "b").await;
    let done = expect_execution(
        c.update(&a, phase(ExecutionPhase::ExecutionCompleted))
            .await,
    )
    .1;
    let gone = delete(&mut c, &n).await;
    let live = events_until(&mut w, sub, gone).await;
    let seen: Vec<(i32, &str, u64)> = live
        .iter()
        .map(|e| (e.r#type, e.execution_id.as_str(), e.revision))
        .collect();
    assert_eq!(
        seen,
        [
            (CREATED, n.as_str(), n_rev),
            (UPDATE, b.as_str(), b_rev),
            (UPDATE, a.as_str(), done),
            (DELETED, n.as_str(), gone),
        ]
    );
    assert!(live[2].execution.is_some() && live[3].execution.is_none());
}

#[tokio::test]
async fn a_delta_watch_of_everything_rebuilds_every_state() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s1").await;
    update(&mut c, &a, "").await;
    let mut w = d.connect().await;
    let sub = watch(&mut w, Sel::All, None, true).await;
    let mut cache = Cache::default();
    let mut events = initial_list(&mut w, sub).await;
    let (b, _) = create_in(&mut c, "s2").await;
    update(&mut c, &b, "").await;
    let mut offsets = HashMap::new();
    let mut last = 0;
    for i in 0..20 {
        let id = if i % 3 == 0 { &b } else { &a };
        let offset = offsets.entry(id.clone()).or_insert(0u64);
        let token = format!("tok{i} ");
        last = append_text(&mut c, id, *offset, &token).await;
        *offset += token.len() as u64;
    }
    events.extend(events_until(&mut w, sub, last).await);
    assert_ordered(&events);
    assert!(events
        .iter()
        .any(|e| e.r#type == DELTA && !e.execution_id.is_empty()));
    for e in &events {
        cache.apply(e);
    }
    for id in [&a, &b] {
        let (state, rev) = get(&mut c, id).await.expect("exists");
        assert_eq!(cache.states[id.as_str()], (rev, state), "{id}");
    }
}

/// Kubernetes' watch conformance: watches opened at each event's revision
/// all see the same sequence from that point. For a session watch and an
/// all watch, whole-state and delta.
#[tokio::test]
async fn watches_from_every_revision_see_the_same_sequence() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let start = get_revision(&mut c).await;
    let session = |i: usize| if i % 2 == 0 { "even" } else { "odd" };
    // The last revision of each session's changes.
    let mut lasts: HashMap<&str, u64> = HashMap::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        let (id, rev) = create_in(&mut c, session(i)).await;
        ids.push(id);
        lasts.insert(session(i), rev);
    }
    for i in 0..12 {
        lasts.insert(
            session(i % 4),
            update(&mut c, &ids[i % 4], &format!("u{i}")).await,
        );
    }
    lasts.insert("odd", delete(&mut c, &ids[1]).await);
    for (sel, deltas) in [
        (Sel::All, false),
        (Sel::Session("even"), false),
        (Sel::Session("odd"), true),
    ] {
        let last = match sel {
            Sel::All => lasts.values().copied().max().unwrap_or(0),
            Sel::Session(s) => lasts[s],
        };
        let sub = watch(&mut c, sel, Some(start), deltas).await;
        let full = events_until(&mut c, sub, last).await;
        cancel(&mut c, sub).await;
        assert_ordered(&full);
        assert!(
            full.iter()
                .all(|e| e.r#type != SNAPSHOT && e.r#type != BOOKMARK),
            "{full:#?}"
        );
        for (i, e) in full.iter().enumerate() {
            let sub = watch(&mut c, sel, Some(e.revision), deltas).await;
            let from_here = if i + 1 == full.len() {
                Vec::new()
            } else {
                events_until(&mut c, sub, last).await
            };
            cancel(&mut c, sub).await;
            assert_eq!(from_here, full[i + 1..], "from revision {}", e.revision);
        }
    }
}

#[tokio::test]
async fn a_resume_below_the_floor_resyncs_then_lists_again() {
    let d = Daemon::start(&["--history-retention", "4"]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s").await;
    let (b, _) = create_in(&mut c, "s").await;
    let mut last = 0;
    for i in 0..40 {
        last = update(&mut c, if i % 2 == 0 { &a } else { &b }, &format!("{i}")).await;
    }
    for sel in [Sel::Session("s"), Sel::All] {
        let sub = watch(&mut c, sel, Some(1), false).await;
        let first = c.event(sub).await;
        assert_eq!(first.r#type, RESYNC, "{first:?}");
        assert_eq!(first.revision, 1, "where the stream stood");
        let list = initial_list(&mut c, sub).await;
        let listed: Vec<&str> = list[..2].iter().map(|e| e.execution_id.as_str()).collect();
        assert_eq!(listed.len(), 2);
        assert!(listed.contains(&a.as_str()) && listed.contains(&b.as_str()));
        assert_eq!(list[2].revision, last);
        cancel(&mut c, sub).await;
    }
}

#[tokio::test]
async fn a_quiet_watch_gets_bookmarks_that_follow_other_sessions() {
    let d = Daemon::start(&["--bookmark-interval", "100ms"]);
    let mut c = d.connect().await;
    create_in(&mut c, "quiet").await;
    let mut w = d.connect().await;
    let sub = watch(&mut w, Sel::Session("quiet"), None, false).await;
    let list = initial_list(&mut w, sub).await;
    let listed_at = list.last().expect("bookmark").revision;
    // Another session moves on; the quiet watch's bookmarks follow.
    let (busy, _) = create_in(&mut c, "busy").await;
    let moved = update(&mut c, &busy, "x").await;
    loop {
        let e = w.event(sub).await;
        assert_eq!(e.r#type, BOOKMARK, "nothing of the busy session: {e:?}");
        assert!(!e.initial_events_end);
        assert!(e.revision >= listed_at);
        if e.revision >= moved {
            break;
        }
    }
    // A resume from the bookmark misses nothing and repeats nothing.
    let (mine, mine_rev) = create_in(&mut c, "quiet").await;
    let sub = watch(&mut c, Sel::Session("quiet"), Some(moved), false).await;
    let e = c.event(sub).await;
    assert_eq!(
        (e.r#type, e.execution_id, e.revision),
        (CREATED, mine, mine_rev)
    );
}

#[tokio::test]
async fn a_stalled_watcher_catches_up_without_loss() {
    let d = Daemon::start(&["--subscriber-queue", "2", "--connection-queue", "4"]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s").await;
    let mut w = d.connect().await;
    let sub = watch(&mut w, Sel::All, None, false).await;
    let mut events = initial_list(&mut w, sub).await;
    // The watcher does not read while 300 changes commit.
    let mut expected = Vec::new();
    for i in 0..300 {
        expected.push(update(&mut c, &a, &format!("update {i} {}", "x".repeat(2000))).await);
    }
    let last = *expected.last().expect("updates");
    let caught_up = events_until(&mut w, sub, last).await;
    let revisions: Vec<u64> = caught_up.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, expected, "every revision, in order, once");
    events.extend(caught_up);
    assert_ordered(&events);
    assert!(d.metric("stigmer_subscriber_overflows_total") > 0.0);
}

#[tokio::test]
async fn a_watch_resumes_across_a_restart() {
    let mut d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s").await;
    let mut w = d.connect().await;
    let sub = watch(&mut w, Sel::Session("s"), None, true).await;
    let mut events = initial_list(&mut w, sub).await;
    let r = update(&mut c, &a, "before").await;
    events.extend(events_until(&mut w, sub, r).await);
    let resume_at = events.last().expect("events").revision;
    d.stop();
    d.restart();
    let mut c = d.connect().await;
    let after = update(&mut c, &a, "after").await;
    let (b, b_rev) = create_in(&mut c, "s").await;
    let sub = watch(&mut c, Sel::Session("s"), Some(resume_at), true).await;
    let resumed = events_until(&mut c, sub, b_rev).await;
    let seen: Vec<(i32, &str, u64)> = resumed
        .iter()
        .map(|e| (e.r#type, e.execution_id.as_str(), e.revision))
        .collect();
    assert_eq!(
        seen,
        [(DELTA, a.as_str(), after), (CREATED, b.as_str(), b_rev)]
    );
    let mut cache = Cache::default();
    for e in events.iter().chain(&resumed) {
        cache.apply(e);
    }
    let (state, rev) = get(&mut c, &a).await.expect("a");
    assert_eq!(cache.states[a.as_str()], (rev, state));
}

/// The initial list is complete and consistent while writers run: every
/// watch opened mid-load ends with the same states as the store.
#[tokio::test]
async fn the_initial_list_is_complete_while_writers_run() {
    let d = Daemon::start(&[]);
    let socket = d.socket.clone();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let socket = socket.clone();
            tokio::spawn(async move {
                let mut c = Raw::connect(&socket).await;
                let mut last = 0;
                for i in 0..40 {
                    let (id, _) = create_in(&mut c, "load").await;
                    last = update(&mut c, &id, &format!("{w}/{i}")).await;
                    if i % 5 == 0 {
                        last = delete(&mut c, &id).await;
                    }
                }
                last
            })
        })
        .collect();
    let mut watchers = Vec::new();
    for deltas in [false, true, false, true] {
        let mut w = d.connect().await;
        let sub = watch(&mut w, Sel::Session("load"), None, deltas).await;
        let list = initial_list(&mut w, sub).await;
        watchers.push((w, sub, list));
    }
    let mut last = 0;
    for w in writers {
        last = last.max(w.await.expect("writer"));
    }
    let mut c = d.connect().await;
    for (mut w, sub, mut events) in watchers {
        events.extend(events_until(&mut w, sub, last).await);
        assert_ordered(&events);
        let mut cache = Cache::default();
        for e in &events {
            cache.apply(e);
        }
        let mut store = BTreeMap::new();
        let list = c
            .call(Cmd::List(stigmer_proto::daemon::ListExecutionsRequest {
                page_size: 1000,
                session_id: "load".into(),
                ..Default::default()
            }))
            .await;
        let Some(stigmer_proto::daemon::response::Result::List(page)) = list.result else {
            panic!("list failed: {list:?}");
        };
        for e in page.entries {
            let id = e.metadata.as_ref().expect("metadata").id.clone();
            let (state, rev) = get(&mut c, &id).await.expect("listed");
            store.insert(id, (rev, state));
        }
        assert_eq!(cache.states, store);
    }
}

#[tokio::test]
async fn bad_selections_are_invalid_arguments() {
    let d = Daemon::start(&["--max-subscriptions-per-connection", "2"]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s").await;
    for req in [
        SubscribeRequest {
            execution_id: a.clone(),
            all: true,
            ..Default::default()
        },
        SubscribeRequest {
            session_id: "s".into(),
            all: true,
            ..Default::default()
        },
        SubscribeRequest {
            session_id: "x".repeat(5000),
            ..Default::default()
        },
    ] {
        let resp = c.call(Cmd::Subscribe(req)).await;
        expect_error(&resp, Code::InvalidArgument);
    }
    let resp = c
        .call(Cmd::Subscribe(SubscribeRequest {
            all: true,
            // Past any revision here, and past a shared etcd's too (the
            // cluster mode, STIGMER_TEST_ETCD, scripts/test-cluster-mode).
            from_revision: Some(1_000_000_000),
            ..Default::default()
        }))
        .await;
    expect_error(&resp, Code::OutOfRange);
    // Many-execution streams count against the per-connection limit.
    let one = watch(&mut c, Sel::All, None, false).await;
    initial_list(&mut c, one).await;
    let two = watch(&mut c, Sel::Session("s"), None, false).await;
    initial_list(&mut c, two).await;
    let three = watch(&mut c, Sel::Session("t"), None, false).await;
    expect_error(&c.recv(three).await, Code::ResourceExhausted);
    // An empty session is not an error: an empty list, then live.
    cancel(&mut c, two).await;
    let empty = watch(&mut c, Sel::Session("nobody"), None, false).await;
    let list = initial_list(&mut c, empty).await;
    assert_eq!(list.len(), 1);
}

/// A list longer than a page (64 executions, 1 MiB of states) comes whole,
/// in revision order, across several reads.
#[tokio::test]
async fn a_list_longer_than_a_page_comes_whole() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let mut expected = Vec::new();
    for i in 0..150 {
        let (id, _) = create_in(&mut c, "big").await;
        // 150 states of ~12 KiB: about 1.8 MiB in all.
        let rev = update(&mut c, &id, &format!("{i} {}", "y".repeat(12 * 1024))).await;
        expected.push((id, rev));
    }
    let sub = watch(&mut c, Sel::Session("big"), None, false).await;
    let list = initial_list(&mut c, sub).await;
    let listed: Vec<(String, u64)> = list[..list.len() - 1]
        .iter()
        .map(|e| (e.execution_id.clone(), e.revision))
        .collect();
    assert_eq!(listed, expected);
}

/// SIGTERM ends a many-execution stream with END_REASON_SHUTDOWN at the
/// revision to resume from.
#[tokio::test]
async fn shutdown_ends_a_watch_with_where_to_resume() {
    let mut d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s").await;
    let mut w = d.connect().await;
    let sub = watch(&mut w, Sel::All, None, true).await;
    initial_list(&mut w, sub).await;
    let last = update(&mut c, &a, "x").await;
    events_until(&mut w, sub, last).await;
    d.stop();
    let end = w.event(sub).await;
    assert_eq!(end.r#type, END);
    assert_eq!(
        end.reason,
        stigmer_proto::daemon::EndReason::Shutdown as i32
    );
    assert_eq!(end.revision, last);
}

/// The daemon's status of its streams as a test reads it.
async fn status(c: &mut Raw) -> stigmer_proto::daemon::DaemonStatus {
    match c
        .call(Cmd::Status(stigmer_proto::daemon::StatusRequest {
            prometheus: true,
        }))
        .await
        .result
    {
        Some(stigmer_proto::daemon::response::Result::Status(s)) => s,
        other => panic!("expected a status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_watches_by_scope() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (a, _) = create_in(&mut c, "s1").await;
    create_in(&mut c, "s2").await;

    // One subscription, two watches of s1, one of s2, one of everything,
    // each open (its list read) before the status is asked.
    let mut w = d.connect().await;
    let sub = w.subscribe(&a, None).await;
    w.event(sub).await;
    for sel in [
        Sel::Session("s1"),
        Sel::Session("s1"),
        Sel::Session("s2"),
        Sel::All,
    ] {
        let id = watch(&mut w, sel, None, false).await;
        initial_list(&mut w, id).await;
    }
    let s = status(&mut c).await;
    assert_eq!(s.subscriptions, 5, "every stream counts as a subscription");
    assert_eq!((s.session_watches, s.all_watches), (3, 1));
    let by_session: BTreeMap<&str, u64> = s
        .watches_by_session
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(by_session, BTreeMap::from([("s1", 2), ("s2", 1)]));
    assert_eq!(s.subscriptions_by_execution.get(&a), Some(&1));
    assert_eq!(
        s.subscriptions_by_execution.len(),
        1,
        "watches are not per execution"
    );
    for line in [
        "stigmer_watches{scope=\"session\"} 3",
        "stigmer_watches{scope=\"all\"} 1",
        "stigmer_subscribers 5",
    ] {
        assert!(s.prometheus.contains(line), "{line} in:\n{}", s.prometheus);
    }

    // The connection goes: its streams end and are counted out.
    drop(w);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = status(&mut c).await;
        if s.subscriptions == 0 {
            assert_eq!((s.session_watches, s.all_watches), (0, 0));
            assert!(s.watches_by_session.is_empty());
            assert!(s
                .prometheus
                .contains("stigmer_watches{scope=\"session\"} 0"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "streams still counted 10 s after their connection closed: {s:?}"
        );
        tokio::task::yield_now().await;
    }
}
