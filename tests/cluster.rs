//! The cluster mode (issue 20): daemons that share their
//! executions through a real 3-member etcd cluster on loopback (the harness
//! of the etcd client's own tests). Skipped, saying so, without `etcd`.

mod common;
#[path = "../etcd/tests/common/mod.rs"]
mod etcd_cluster;

use std::time::{Duration, Instant};

use common::watch::{append_cmd as append, get, text_of};
use common::{Daemon, Raw};
use stigmer_proto::daemon::{request::Command as Cmd, response, Code, EventType};

/// The revision an append was committed at, or its error code.
fn outcome(reply: stigmer_proto::daemon::Response) -> Result<u64, i32> {
    match reply.result {
        Some(response::Result::Execution(r)) => Ok(r.revision),
        Some(response::Result::Error(e)) => Err(e.code),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Waits until `conn`'s daemon has execution `id` at `revision` or later
/// (its replica caught up); returns its text.
async fn until_replicated(conn: &mut Raw, id: &str, revision: u64) -> String {
    for _ in 0..400 {
        if let Some((text, at)) = text_of(conn, id).await {
            if at >= revision {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never reached revision {revision} on the other daemon");
}

/// The revisions of the next `n` UPDATE events of stream `sub` on `conn`.
async fn updates(conn: &mut Raw, sub: u64, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let event = conn.event(sub).await;
        if event.r#type == EventType::EventUpdate as i32 {
            seen.push(event.revision);
        }
    }
    seen
}

/// Appends `text` at `offset` to `id` through `conn`, the same append
/// again while it is UNAVAILABLE (at most `tries` more times, 100 ms
/// apart: safe, it is applied once at most); the revision it was committed
/// at, or the code it failed with.
async fn append_retrying(
    conn: &mut Raw,
    id: &str,
    offset: u64,
    text: &str,
    tries: u32,
) -> Result<u64, i32> {
    let mut tried = 0;
    loop {
        match outcome(conn.call(append(id, offset, text)).await) {
            Err(code) if code == Code::Unavailable as i32 && tried < tries => {
                tried += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            done => return done,
        }
    }
}

/// Two daemons sharing `etcd` (started with `more` flags too) and a
/// connection to each.
async fn two_connected(etcd: &etcd_cluster::Cluster, more: &[&str]) -> (Daemon, Daemon, Raw, Raw) {
    let endpoints = etcd.endpoints().join(",");
    let mut args = vec!["--etcd", endpoints.as_str()];
    args.extend(more);
    let (a, b) = (Daemon::start(&args), Daemon::start(&args));
    let (ca, cb) = (a.connect().await, b.connect().await);
    (a, b, ca, cb)
}

/// Two daemons sharing `etcd`, a connection to each, and an execution
/// created through the first and replicated to the second: its id and
/// revision.
async fn two_daemons(etcd: &etcd_cluster::Cluster) -> (Daemon, Daemon, Raw, Raw, String, u64) {
    let (a, b, mut ca, mut cb) = two_connected(etcd, &[]).await;
    let (id, created) = ca.create("bot").await;
    until_replicated(&mut cb, &id, created).await;
    (a, b, ca, cb, id, created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_one_revision_sequence() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb, id, created) = two_daemons(&etcd).await;
    // A stream on each daemon, from the create on.
    let (sa, sb) = (
        ca.subscribe(&id, Some(created)).await,
        cb.subscribe(&id, Some(created)).await,
    );
    // Appends through either daemon, in turn.
    let mut acked = Vec::new();
    let mut text = String::new();
    for i in 0..10 {
        let word = format!("w{i} ");
        let conn = if i % 2 == 0 { &mut ca } else { &mut cb };
        let revision = outcome(conn.call(append(&id, text.len() as u64, &word)).await)
            .expect("an append at the current offset commits");
        text.push_str(&word);
        acked.push(revision);
    }
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "{acked:?}");
    for (conn, sub) in [(&mut ca, sa), (&mut cb, sb)] {
        let seen = updates(conn, sub, acked.len()).await;
        assert_eq!(seen, acked, "every daemon streams the same revisions");
    }
    for conn in [&mut ca, &mut cb] {
        let got = text_of(conn, &id).await;
        assert_eq!(got, Some((text.clone(), *acked.last().expect("appends"))));
        // status names the backend and where the replica stands.
        let reply = conn
            .call(Cmd::Status(stigmer_proto::daemon::StatusRequest::default()))
            .await;
        let Some(response::Result::Status(status)) = reply.result else {
            panic!("expected a status, got {reply:?}");
        };
        assert_eq!(status.backend, "etcd");
        let last = *acked.last().expect("appends");
        assert_eq!(status.replica_applied_revision, last);
        assert!(status.etcd_revision >= last, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_at_one_offset_through_two_daemons_one_wins() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb, id, _) = two_daemons(&etcd).await;
    let mut last = 0;
    for round in 0..5u64 {
        let offset = round * 2;
        let (ra, rb) = tokio::join!(
            ca.call(append(&id, offset, "x.")),
            cb.call(append(&id, offset, "y."))
        );
        let (ra, rb) = (outcome(ra), outcome(rb));
        let won = [ra.is_ok(), rb.is_ok()];
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "exactly one of two appends at offset {offset} commits: {ra:?} {rb:?}"
        );
        let (lost, won) = if let Ok(r) = ra {
            (rb, r)
        } else {
            (ra, rb.unwrap_or(0))
        };
        assert_eq!(lost, Err(Code::Aborted as i32), "the other is ABORTED");
        last = won;
    }
    // Both daemons end with one text, never interleaved.
    for conn in [&mut ca, &mut cb] {
        let text = until_replicated(conn, &id, last).await;
        assert_eq!(text.len(), 10, "{text}");
        assert!(
            text.as_bytes().chunks(2).all(|c| c == b"x." || c == b"y."),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connections_pipelined_writes_commit_in_its_order() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let a = Daemon::start(&["--etcd", &etcd.endpoints().join(",")]);
    let mut ca = a.connect().await;
    let (id, _) = ca.create("bot").await;
    // Twenty appends sent before any reply is read, each at the offset the
    // ones before it leave.
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let request = ca.next_id();
        ca.send(request, append(&id, i * 2, "a.")).await;
        ids.push(request);
    }
    let mut revisions = Vec::new();
    for request in ids {
        revisions.push(outcome(ca.recv(request).await).expect("each append commits in turn"));
    }
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_loses_no_acknowledged_append() {
    let Some(mut etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb, id, created) = two_daemons(&etcd).await;
    let sb = cb.subscribe(&id, Some(created)).await;
    let mut text = String::new();
    let mut acked = Vec::new();
    for i in 0..30 {
        if i == 10 {
            etcd.kill_leader().await;
        }
        let word = format!("{i}.");
        // UNAVAILABLE while the cluster elects a leader: the same append
        // again, at the same offset, is safe (applied once at most).
        let revision = append_retrying(&mut ca, &id, text.len() as u64, &word, 20)
            .await
            .unwrap_or_else(|code| panic!("append {i}: code {code}"));
        text.push_str(&word);
        acked.push(revision);
    }
    let seen = updates(&mut cb, sb, acked.len()).await;
    assert_eq!(
        seen, acked,
        "the other daemon streamed every acknowledged append once, in order"
    );
    let got = text_of(&mut cb, &id).await.map(|(t, _)| t);
    assert_eq!(got, Some(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_writes_are_unavailable_and_streams_continue_when_it_returns() {
    let Some(mut etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let a = Daemon::start(&["--etcd", &etcd.endpoints().join(",")]);
    let mut ca = a.connect().await;
    let (id, created) = ca.create("bot").await;
    let mut watcher = a.connect().await;
    let sub = watcher.subscribe(&id, Some(created)).await;
    let first = outcome(ca.call(append(&id, 0, "before.")).await).expect("append");
    etcd.kill_all();
    let started = Instant::now();
    let refused = ca.call(append(&id, 7, "during.")).await;
    // Within the client's request timeout (5 s) and a little.
    assert_error_within(
        &refused,
        Code::Unavailable,
        started,
        Duration::from_secs(15),
    );
    for i in 0..etcd_cluster::MEMBERS {
        etcd.restart(i);
    }
    etcd.wait_healthy().await;
    // The refused append never reached a member (all were down), so the
    // same offset commits now.
    let second = append_retrying(&mut ca, &id, 7, "after.", 50)
        .await
        .unwrap_or_else(|code| panic!("code {code}"));
    // The stream stayed open and has both, in order, with nothing between.
    let seen = updates(&mut watcher, sub, 2).await;
    assert_eq!(seen, [first, second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_and_restarted_catches_up_from_its_last_revision() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, mut b, mut ca, cb, id, _) = two_daemons(&etcd).await;
    drop(cb);
    b.kill();
    let mut text = String::new();
    let mut last = 0;
    for i in 0..5 {
        let word = format!("{i}.");
        last = outcome(ca.call(append(&id, text.len() as u64, &word)).await).expect("append");
        text.push_str(&word);
    }
    b.restart();
    let mut cb = b.connect().await;
    assert_eq!(until_replicated(&mut cb, &id, last).await, text);
}

/// Runs `stigmer daemon` on `db` with `args` expecting it to refuse to
/// start; returns what it printed.
fn refused_start(dir: &std::path::Path, db: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(dir.join("refused.sock"))
        .arg("daemon")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run the daemon");
    assert!(!output.status.success(), "the daemon started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A database serves alone or as a replica, never one then the other: the
/// revisions of the two differ. Needs no etcd: the check comes first, and
/// the client connects lazily.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_serves_alone_or_as_a_replica_never_both() {
    let nowhere = "http://127.0.0.1:9";
    let mut alone = Daemon::start(&[]);
    alone.connect().await.create("bot").await;
    alone.stop();
    let said = refused_start(&alone.dir, &alone.db, &["--etcd", nowhere]);
    assert!(said.contains("has served without --etcd"), "{said}");
    let mut replica = Daemon::start(&["--etcd", nowhere]);
    replica.stop();
    let said = refused_start(&replica.dir, &replica.db, &[]);
    assert!(said.contains("is a replica of an etcd cluster"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_too_large_for_etcd_is_refused_before_it_is_proposed() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, _cb, id, _) = two_daemons(&etcd).await;
    let big = "x".repeat(700 * 1024);
    let reply = ca.call(append(&id, 0, &big)).await;
    assert_eq!(outcome(reply), Err(Code::ResourceExhausted as i32));
    // Below the limit, fine.
    let small = "x".repeat(100 * 1024);
    outcome(ca.call(append(&id, 0, &small)).await).expect("a 100 KiB append");
}

/// A session watch on one daemon sees every change of the session made
/// through the other, in order, once each, with deltas that rebuild the
/// same states, and nothing of another session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_watch_on_one_daemon_follows_writes_through_another() {
    use common::watch::{
        assert_ordered, create_in, delete, events_until, initial_list, watch, Cache, Sel, CREATED,
        DELETED,
    };
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb) = two_connected(&etcd, &[]).await;
    let sub = watch(&mut cb, Sel::Session("s1"), None, true).await;
    initial_list(&mut cb, sub).await;
    let (one, _) = create_in(&mut ca, "s1").await;
    let (other, _) = create_in(&mut ca, "s2").await;
    let (two, _) = create_in(&mut ca, "s1").await;
    // Appends to both, in turn, each at the end of its own text.
    let mut lengths = [0u64; 2];
    for i in 0..6 {
        let (id, len) = if i % 2 == 0 {
            (&one, &mut lengths[0])
        } else {
            (&two, &mut lengths[1])
        };
        let word = format!("{i}.");
        outcome(ca.call(append(id, *len, &word)).await).expect("an append at the end commits");
        *len += word.len() as u64;
    }
    let last = delete(&mut ca, &two).await;
    let events = events_until(&mut cb, sub, last).await;
    assert_ordered(&events);
    let mut cache = Cache::default();
    for e in &events {
        cache.apply(e);
    }
    assert!(
        events.iter().all(|e| e.execution_id != other),
        "another session's change"
    );
    assert_eq!(events.iter().filter(|e| e.r#type == CREATED).count(), 2);
    assert_eq!(events.iter().filter(|e| e.r#type == DELETED).count(), 1);
    // The watcher's cache holds what daemon A holds.
    let (state, revision) = get(&mut ca, &one).await.expect("on A");
    let (cached_revision, cached) = cache.states.get(&one).expect("in the cache").clone();
    assert_eq!((cached_revision, cached), (revision, state));
    assert!(!cache.states.contains_key(&two), "deleted");
}

/// The error code of a reply, if it is an error.
fn error_code(reply: &stigmer_proto::daemon::Response) -> Option<i32> {
    match &reply.result {
        Some(response::Result::Error(e)) => Some(e.code),
        _ => None,
    }
}

/// Asserts that `reply` is the error `code`, and that it came less than
/// `bound` after `started`.
#[track_caller]
fn assert_error_within(
    reply: &stigmer_proto::daemon::Response,
    code: Code,
    started: Instant,
    bound: Duration,
) {
    let elapsed = started.elapsed();
    assert_eq!(error_code(reply), Some(code as i32), "{reply:?}");
    assert!(elapsed < bound, "{elapsed:?}");
}

/// Read-after-write across daemons: a `get` through daemon B right after
/// daemon A acknowledged a create, an append or a delete sees it (B's
/// replica first catches up with etcd's copy of the execution). Many
/// rounds: B's replica often wins the race by itself, and without the
/// catch-up a round here and there finds the older state or NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_through_another_daemon_sees_what_the_first_acknowledged() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb) = two_connected(&etcd, &[]).await;
    for round in 0..30 {
        let (id, created) = ca.create("bot").await;
        let found = get(&mut cb, &id).await.map(|(_, at)| at);
        assert_eq!(found, Some(created), "round {round}: the create, on B");
        let word = format!("r{round}.");
        let appended = outcome(ca.call(append(&id, 0, &word)).await).expect("append");
        let got = text_of(&mut cb, &id).await;
        assert_eq!(
            got,
            Some((word, appended)),
            "round {round}: the append, on B"
        );
        if round % 3 == 0 {
            common::watch::delete(&mut ca, &id).await;
            let reply = cb
                .call(Cmd::Get(stigmer_proto::agentexecution::AgentExecutionId {
                    value: id.clone(),
                }))
                .await;
            assert_eq!(
                error_code(&reply),
                Some(Code::NotFound as i32),
                "round {round}: the delete, on B: {reply:?}"
            );
        }
    }
}

/// Every subscribe through daemon B that names what daemon A just
/// acknowledged opens without an error and goes on from there: one
/// execution (a snapshot at A's revision, or a resume from it), a session
/// and every execution resumed from A's revision. A revision past etcd's
/// own is OUT_OF_RANGE at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_through_another_daemon_from_what_the_first_acknowledged() {
    use common::watch::{create_in, watch, Sel, CREATED};
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb) = two_connected(&etcd, &[]).await;
    for round in 0..10 {
        // One execution, without and with from_revision.
        let (id, created) = create_in(&mut ca, "s1").await;
        let snapshot = cb.subscribe(&id, None).await;
        let first = cb.event(snapshot).await;
        assert_eq!(
            (first.r#type, first.revision),
            (EventType::EventSnapshot as i32, created),
            "round {round}: {first:?}"
        );
        let resumed = cb.subscribe(&id, Some(created)).await;
        // A session's and every execution's stream, from the create.
        let session = watch(&mut cb, Sel::Session("s1"), Some(created), false).await;
        let all = watch(&mut cb, Sel::All, Some(created), false).await;
        let appended = outcome(ca.call(append(&id, 0, "x")).await).expect("append");
        for sub in [snapshot, resumed] {
            let event = cb.event(sub).await;
            assert_eq!(
                (event.r#type, event.revision),
                (EventType::EventUpdate as i32, appended),
                "round {round}: {event:?}"
            );
        }
        for sub in [session, all] {
            let event = cb.event(sub).await;
            assert_eq!(event.revision, appended, "round {round}: {event:?}");
            assert_ne!(event.r#type, CREATED, "round {round}: nothing before it");
        }
        for sub in [snapshot, resumed, session, all] {
            common::watch::cancel(&mut cb, sub).await;
        }
    }
    // A revision never committed anywhere: refused at once, not waited for.
    let started = Instant::now();
    let beyond = watch(&mut cb, Sel::All, Some(1 << 40), false).await;
    let reply = cb.recv(beyond).await;
    assert_error_within(&reply, Code::OutOfRange, started, Duration::from_secs(4));
}

/// With every etcd member down, reads go on from the replica (after the
/// bounded attempt to catch up): a `get` and a subscribe answer with the
/// state this daemon has; but a subscribe from a revision this replica has
/// not reached is UNAVAILABLE, never a stream with a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_reads_answer_from_the_replica_but_never_with_a_gap() {
    let Some(mut etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, b, _ca, mut cb, id, created) = two_daemons(&etcd).await;
    let mut other = b.connect().await;
    let mut third = b.connect().await;
    etcd.kill_all();
    let started = Instant::now();
    let (found, snapshot, resumed) = tokio::join!(
        get(&mut cb, &id),
        async {
            let sub = other.subscribe(&id, None).await;
            other.recv(sub).await
        },
        async {
            let sub = third.subscribe(&id, Some(created + 1_000)).await;
            third.recv(sub).await
        },
    );
    assert_eq!(
        found.map(|(_, at)| at),
        Some(created),
        "the replica's state"
    );
    match snapshot.result {
        Some(response::Result::Event(e)) => assert_eq!(
            (e.r#type, e.revision),
            (EventType::EventSnapshot as i32, created)
        ),
        other => panic!("expected the replica's snapshot, got {other:?}"),
    }
    // Within the catch-up's bound (5 s) and a little.
    assert_error_within(
        &resumed,
        Code::Unavailable,
        started,
        Duration::from_secs(12),
    );
}

/// A cancel sent right behind a subscribe on one connection, without
/// waiting for anything, always cancels it, although the cluster mode
/// opens the stream only once the replica caught up: the cancel is
/// answered `cancelled`, the stream ends with END_REASON_CANCELLED (after
/// at most its first state), and nothing of it follows. Every kind of
/// stream, many rounds, through the daemon that did not take the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_right_behind_a_subscribe_always_cancels_it() {
    use stigmer_proto::daemon::{CancelSubscriptionRequest, EndReason, SubscribeRequest};
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb, id, created) = two_daemons(&etcd).await;
    let mut last = created;
    for round in 0..12 {
        // What B is asked for was just written through A.
        last = outcome(ca.call(append(&id, round, "x")).await).expect("append");
        let request = match round % 4 {
            0 => SubscribeRequest {
                execution_id: id.clone(),
                ..Default::default()
            },
            1 => SubscribeRequest {
                execution_id: id.clone(),
                from_revision: Some(last),
                ..Default::default()
            },
            2 => SubscribeRequest {
                session_id: String::new(),
                all: true,
                ..Default::default()
            },
            _ => SubscribeRequest {
                all: true,
                from_revision: Some(last),
                ..Default::default()
            },
        };
        let (sub, cancel) = (cb.next_id(), cb.next_id());
        cb.send(sub, Cmd::Subscribe(request)).await;
        cb.send(
            cancel,
            Cmd::Cancel(CancelSubscriptionRequest {
                subscription_id: sub,
            }),
        )
        .await;
        let answered = cb.recv(cancel).await;
        assert!(
            matches!(answered.result, Some(response::Result::Cancelled(_))),
            "round {round}: the cancel found the stream: {answered:?}"
        );
        let events = cb.events_until_end(sub).await;
        let end = events.last().expect("an END");
        assert_eq!(
            end.reason,
            EndReason::Cancelled as i32,
            "round {round}: {events:?}"
        );
        assert!(
            events[..events.len() - 1].iter().all(|e| {
                e.r#type == EventType::EventSnapshot as i32
                    || e.r#type == EventType::EventBookmark as i32
            }),
            "round {round}: nothing but a first state before the END: {events:?}"
        );
    }
    // Nothing of any cancelled stream after its END: a write B streams,
    // then a round trip on the connection, and no frame for them arrived.
    let sync = cb.subscribe(&id, Some(last)).await;
    let more = outcome(ca.call(append(&id, 12, "y")).await).expect("append");
    assert_eq!(cb.event(sync).await.revision, more);
    cb.expect_pong().await;
    for stray in cb.pending() {
        assert_eq!(stray.id, sync, "a frame of a cancelled stream: {stray:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_finished_deletes_through_etcd_and_every_replica_follows() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let (_a, _b, mut ca, mut cb) = two_connected(&etcd, &["--keep-finished", "1s"]).await;
    let (id, _) = ca.create("bot").await;
    let done = common::phase(stigmer_proto::agentexecution::ExecutionPhase::ExecutionCompleted);
    let finished = common::expect_execution(ca.update(&id, done).await).1;
    until_replicated(&mut cb, &id, finished).await;
    // Both daemons sweep: the execution goes, through etcd, on both.
    let mut gone = false;
    for _ in 0..600 {
        gone = get(&mut ca, &id).await.is_none() && get(&mut cb, &id).await.is_none();
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "deleted on both daemons within 15 s");
    // The replicas still follow etcd: a later write reaches both.
    let (next, created) = ca.create("bot").await;
    until_replicated(&mut cb, &next, created).await;
    let (_, on_a) = get(&mut ca, &next).await.expect("on A");
    assert_eq!(on_a, created);
}
