//! stigmer-etcd against real etcd: three-member clusters on loopback
//! (tests/common), for what the daemon will rely on: compare-and-swap on a
//! key's mod_revision, prefix ranges, ordered watches with replay (whole
//! and fragmented), progress bookmarks, compaction, etcd's request size limit, and the faults (the
//! leader's kill -9, every member down, restart). Each test skips, saying
//! so, when `etcd` is not installed.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{eventually, Cluster, PROGRESS_INTERVAL};
use futures::StreamExt;
use stigmer_etcd::{
    Client, Compare, CompareOp, Delete, Error, Event, EventKind, OpResponse, Options, Put, Range,
    Txn, Watch, WatchEvent, WatchOptions,
};

/// The longest a test waits for one watch item that must come.
const ITEM_WITHIN: Duration = Duration::from_secs(5);

/// The next item of a watch, failing the test if none comes in time.
async fn next_item(watch: &mut Watch) -> Option<Result<WatchEvent, Error>> {
    tokio::time::timeout(ITEM_WITHIN, watch.next())
        .await
        .expect("a watch item within 5 s")
}

/// The next `count` events of a watch (skipping progress notifications),
/// checking that each item's revision is its last event's and that
/// revisions never go back.
async fn take_events(watch: &mut Watch, count: usize) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    while events.len() < count {
        match next_item(watch).await {
            Some(Ok(WatchEvent::Events {
                revision,
                events: batch,
            })) => {
                assert_eq!(batch.last().map(Event::revision), Some(revision));
                for event in batch {
                    if let Some(previous) = events.last() {
                        assert!(
                            event.revision() >= previous.revision(),
                            "revision went back"
                        );
                    }
                    events.push(event);
                }
            }
            Some(Ok(WatchEvent::Progress { .. })) => {}
            other => panic!("watch ended early: {other:?}"),
        }
    }
    assert_eq!(events.len(), count, "more events than expected");
    events
}

/// A put retried while the cluster is unavailable, for at most `within`
/// (a test's stand-in for the daemon's retry; a put of the same value to
/// the same key is harmless to repeat).
/// Also returns how many attempts failed as unavailable.
async fn put_retrying(client: &Client, key: &str, value: &str, within: Duration) -> (i64, usize) {
    let deadline = Instant::now() + within;
    let mut failed = 0;
    loop {
        match client.put(Put::new(key.to_owned(), value.to_owned())).await {
            Ok(response) => return (response.header.revision, failed),
            Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("put {key}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_on_mod_revision_lets_one_of_two_concurrent_writers_win() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let a = cluster.client().await;
    // The second writer starts from another member.
    let mut rotated = cluster.endpoints();
    rotated.rotate_left(1);
    let b = cluster.client_with(rotated, Cluster::options()).await;
    let key = "/cas/execution";

    // Create only if absent: mod_revision 0 means "no such key".
    let create = |value: &'static str| {
        Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
            .and_then([Put::new(key, value)])
    };
    let created = a.txn(create("v0")).await.unwrap();
    assert!(created.succeeded);
    assert!(!a.txn(create("again")).await.unwrap().succeeded);
    let mut revision = created.revision;

    for round in 0..20 {
        let cas = |client: Client, value: String| {
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
                .and_then([Put::new(key, value)])
                .or_else([Range::key(key)]);
            tokio::spawn(async move { client.txn(txn).await })
        };
        let (ra, rb) = tokio::join!(
            cas(a.clone(), format!("a{round}")),
            cas(b.clone(), format!("b{round}"))
        );
        let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        assert!(ra.succeeded != rb.succeeded, "round {round}: {ra:?} {rb:?}");
        let (winner, loser, value) = if ra.succeeded {
            (ra, rb, format!("a{round}"))
        } else {
            (rb, ra, format!("b{round}"))
        };
        assert!(winner.revision > revision);
        // The loser's failure branch read the winner's write.
        let [OpResponse::Range(read)] = loser.responses.as_slice() else {
            panic!("expected the failure branch's range: {loser:?}");
        };
        assert_eq!(read.kvs.len(), 1);
        assert_eq!(read.kvs[0].mod_revision, winner.revision);
        assert_eq!(read.kvs[0].value, Bytes::from(value));
        assert!(loser.revision >= winner.revision);
        revision = winner.revision;
    }

    // The other compare targets.
    let kv = a.get(key).await.unwrap().unwrap();
    let holds = |compare: Compare| {
        let a = a.clone();
        async move { a.txn(Txn::new().when([compare])).await.unwrap().succeeded }
    };
    assert!(holds(Compare::version(key, CompareOp::Equal, kv.version)).await);
    assert!(holds(Compare::version(key, CompareOp::Greater, 20)).await);
    assert!(!holds(Compare::version(key, CompareOp::Less, 2)).await);
    assert!(
        holds(Compare::create_revision(
            key,
            CompareOp::Equal,
            created.revision
        ))
        .await
    );
    assert!(
        holds(Compare::mod_revision(
            key,
            CompareOp::Less,
            kv.mod_revision + 1
        ))
        .await
    );
    assert!(holds(Compare::value(key, CompareOp::Equal, kv.value.clone())).await);
    assert!(holds(Compare::value(key, CompareOp::NotEqual, "other")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_a_prefix_with_limit_count_and_revision() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let client = cluster.client().await;
    for key in ["/p", "/p/a", "/p/b", "/p/c", "/q/a"] {
        client.put(Put::new(key, format!("v{key}"))).await.unwrap();
    }
    let all = client.range(Range::prefix("/p/")).await.unwrap();
    let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_ref()).collect();
    assert_eq!(keys, [&b"/p/a"[..], b"/p/b", b"/p/c"]);
    assert_eq!(all.count, 3);
    assert!(!all.more);
    assert_eq!(all.kvs[1].value, Bytes::from("v/p/b"));

    let page = client.range(Range::prefix("/p/").limit(2)).await.unwrap();
    assert_eq!(page.kvs.len(), 2);
    assert!(page.more);
    assert_eq!(page.count, 3);

    let counted = client
        .range(Range::prefix("/p/").count_only())
        .await
        .unwrap();
    assert!(counted.kvs.is_empty());
    assert_eq!(counted.count, 3);

    let keys_only = client
        .range(Range::prefix("/p/").keys_only())
        .await
        .unwrap();
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));

    // [key, range_end) and a read in the past.
    let before = all.header.revision;
    client.put(Put::new("/p/b", "changed")).await.unwrap();
    let ab = client
        .range(Range::key("/p/a").range_end("/p/c"))
        .await
        .unwrap();
    assert_eq!(ab.kvs.len(), 2);
    assert_eq!(ab.kvs[1].value, Bytes::from("changed"));
    let past = client
        .range(Range::key("/p/b").revision(before))
        .await
        .unwrap();
    assert_eq!(past.kvs[0].value, Bytes::from("v/p/b"));
    assert_eq!(
        client
            .range(Range::key("/p/b").revision(before + 1000))
            .await
            .unwrap_err(),
        Error::FutureRevision {
            revision: before + 1000
        }
    );

    assert_eq!(client.get("/p/missing").await.unwrap(), None);
    let deleted = client
        .delete_range(Delete::prefix("/p/").prev_kv())
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 3);
    assert_eq!(deleted.prev_kvs.len(), 3);
    assert_eq!(client.range(Range::prefix("/p/")).await.unwrap().count, 0);
    assert!(client.get("/p").await.unwrap().is_some());

    let members = client.member_list().await.unwrap();
    assert_eq!(members.len(), common::MEMBERS);
    for endpoint in cluster.endpoints() {
        let status = client.status(&endpoint).await.unwrap();
        assert!(status.leader != 0 && status.raft_term > 0 && status.db_size > 0);
        assert!(status.revision >= deleted.header.revision);
        assert!(members.iter().any(|m| m.id == status.member_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_every_event_in_order_live_and_replayed() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let client = cluster.client().await;
    let mut live = client
        .watch(WatchOptions::prefix("/w/").prev_kv(true))
        .await
        .unwrap();

    // (revision, kind, key, value) of every change under /w/, in order;
    // changes elsewhere must not show.
    let mut expected: Vec<(i64, EventKind, String, String)> = Vec::new();
    for i in 0..30 {
        let key = format!("/w/{}", i % 4);
        let value = format!("v{i}");
        let revision = client
            .put(Put::new(key.clone(), value.clone()))
            .await
            .unwrap()
            .header
            .revision;
        expected.push((revision, EventKind::Put, key, value));
        client.put(Put::new("/elsewhere", "x")).await.unwrap();
        if i % 7 == 6 {
            let key = format!("/w/{}", i % 4);
            let revision = client
                .delete_range(Delete::key(key.clone()))
                .await
                .unwrap()
                .header
                .revision;
            expected.push((revision, EventKind::Delete, key, String::new()));
        }
    }
    // Two changes at one revision.
    let txn = client
        .txn(Txn::new().and_then([Put::new("/w/t1", "x"), Put::new("/w/t2", "y")]))
        .await
        .unwrap();
    expected.push((txn.revision, EventKind::Put, "/w/t1".into(), "x".into()));
    expected.push((txn.revision, EventKind::Put, "/w/t2".into(), "y".into()));

    let simplify = |events: &[Event]| -> Vec<(i64, EventKind, String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e.revision(),
                    e.kind,
                    String::from_utf8_lossy(&e.kv.key).into_owned(),
                    String::from_utf8_lossy(&e.kv.value).into_owned(),
                )
            })
            .collect()
    };
    let events = take_events(&mut live, expected.len()).await;
    assert_eq!(simplify(&events), expected);
    assert_eq!(live.last_revision(), txn.revision);
    // prev_kv: the second put of /w/1 (i = 5) shows the first (i = 1).
    let second = events
        .iter()
        .find(|e| e.kv.key == "/w/1" && e.kv.value == "v5")
        .unwrap();
    assert_eq!(second.prev_kv.as_ref().unwrap().value, Bytes::from("v1"));

    // Replay from the first change: the same sequence.
    let first = expected[0].0;
    let mut replay = client
        .watch(WatchOptions::prefix("/w/").start_revision(first))
        .await
        .unwrap();
    assert_eq!(
        simplify(&take_events(&mut replay, expected.len()).await),
        expected
    );

    // Resume from a revision in the middle: exactly the suffix.
    let middle = expected[expected.len() / 2].0;
    let suffix: Vec<_> = expected.iter().filter(|e| e.0 >= middle).cloned().collect();
    let mut resumed = client
        .watch(WatchOptions::prefix("/w/").start_revision(middle))
        .await
        .unwrap();
    assert_eq!(
        simplify(&take_events(&mut resumed, suffix.len()).await),
        suffix
    );

    // The transaction's two changes came in one item.
    let mut from_txn = client
        .watch(WatchOptions::prefix("/w/t").start_revision(txn.revision))
        .await
        .unwrap();
    match next_item(&mut from_txn).await {
        Some(Ok(WatchEvent::Events { revision, events })) => {
            assert_eq!(revision, txn.revision);
            assert_eq!(events.len(), 2);
        }
        other => panic!("expected the transaction's events: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_arrive_periodically_and_on_request() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let client = cluster.client().await;
    let mut quiet = client
        .watch(WatchOptions::prefix("/quiet/").progress_notify(true))
        .await
        .unwrap();
    let elsewhere = client
        .put(Put::new("/elsewhere", "x"))
        .await
        .unwrap()
        .header
        .revision;
    // Periodic (every PROGRESS_INTERVAL of quiet): a bookmark at or past
    // the write elsewhere arrives within a few intervals.
    let started = Instant::now();
    loop {
        match next_item(&mut quiet).await {
            Some(Ok(WatchEvent::Progress { revision })) if revision >= elsewhere => break,
            Some(Ok(WatchEvent::Progress { .. })) => {}
            other => panic!("expected progress: {other:?}"),
        }
    }
    assert!(started.elapsed() < PROGRESS_INTERVAL * 8);
    assert!(quiet.last_revision() >= elsewhere);

    // On request, on a watch that did not ask for periodic ones.
    let mut asked = client.watch(WatchOptions::key("/quiet2")).await.unwrap();
    let later = client
        .put(Put::new("/elsewhere", "y"))
        .await
        .unwrap()
        .header
        .revision;
    asked.request_progress().await.unwrap();
    match next_item(&mut asked).await {
        Some(Ok(WatchEvent::Progress { revision })) => assert!(revision >= later),
        other => panic!("expected progress: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_makes_older_watches_and_reads_fail_as_compacted() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let client = cluster.client().await;
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(
            client
                .put(Put::new("/c/key", format!("v{i}")))
                .await
                .unwrap()
                .header
                .revision,
        );
    }
    client.compact(revisions[3], true).await.unwrap();

    let mut stale = client
        .watch(WatchOptions::prefix("/c/").start_revision(revisions[1]))
        .await
        .unwrap();
    assert_eq!(
        next_item(&mut stale).await.unwrap().unwrap(),
        WatchEvent::Compacted {
            compact_revision: revisions[3]
        }
    );
    assert!(
        next_item(&mut stale).await.is_none(),
        "ended after Compacted"
    );

    assert_eq!(
        client
            .range(Range::key("/c/key").revision(revisions[1]))
            .await
            .unwrap_err(),
        Error::Compacted {
            revision: revisions[1]
        }
    );
    // The compaction revision itself is kept.
    let kept = client
        .range(Range::key("/c/key").revision(revisions[3]))
        .await
        .unwrap();
    assert_eq!(kept.kvs[0].value, Bytes::from("v3"));
    let mut from_kept = client
        .watch(WatchOptions::prefix("/c/").start_revision(revisions[3]))
        .await
        .unwrap();
    let replayed: Vec<i64> = take_events(&mut from_kept, 3)
        .await
        .iter()
        .map(Event::revision)
        .collect();
    assert_eq!(replayed, revisions[3..]);

    assert_eq!(
        client.compact(revisions[2], false).await.unwrap_err(),
        Error::Compacted {
            revision: revisions[2]
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_etcds_size_limit_is_request_too_large() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let client = cluster.client().await;
    let mib = 1024 * 1024;
    client
        .put(Put::new("/big/ok", vec![b'x'; mib]))
        .await
        .unwrap();
    // Over etcd's 1.5 MiB (refused by etcd), and over its gRPC receive
    // limit of 2 MiB (refused by grpc-go before etcd sees it).
    for size in [mib * 8 / 5, 3 * mib] {
        let error = client
            .put(Put::new("/big/no", vec![b'x'; size]))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::RequestTooLarge { .. }),
            "{size} bytes: {error}"
        );
    }
    let txn = Txn::new().and_then([
        Put::new("/big/a", vec![b'x'; mib]),
        Put::new("/big/b", vec![b'x'; mib]),
    ]);
    assert!(matches!(
        client.txn(txn).await.unwrap_err(),
        Error::RequestTooLarge { .. }
    ));
    assert_eq!(client.get("/big/no").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_delays_writes_but_loses_nothing_acknowledged() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let client = cluster.client().await;
    const WRITERS: usize = 8;
    const PUTS: usize = 40;
    // (key, value, revision) of every acknowledged put.
    let acked: Arc<Mutex<Vec<(String, String, i64)>>> = Arc::default();
    let first_ack_after_kill: Arc<Mutex<Option<Instant>>> = Arc::default();
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let retried: Arc<AtomicUsize> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = client.clone();
            let acked = acked.clone();
            let killed_at = killed_at.clone();
            let first_ack_after_kill = first_ack_after_kill.clone();
            let retried = retried.clone();
            tokio::spawn(async move {
                for i in 0..PUTS {
                    let key = format!("/ack/{w}/{i}");
                    let value = format!("{w}.{i}");
                    let (revision, failed) =
                        put_retrying(&client, &key, &value, Duration::from_secs(20)).await;
                    retried.fetch_add(failed, Ordering::Relaxed);
                    acked.lock().unwrap().push((key, value, revision));
                    if killed_at.lock().unwrap().is_some() {
                        first_ack_after_kill
                            .lock()
                            .unwrap()
                            .get_or_insert_with(Instant::now);
                    }
                }
            })
        })
        .collect();

    // Kill the leader mid-run.
    eventually(Duration::from_secs(20), "a quarter of the puts", || {
        let done = acked.lock().unwrap().len();
        async move { (done >= WRITERS * PUTS / 4).then_some(()) }
    })
    .await;
    let leader = cluster.kill_leader().await;
    *killed_at.lock().unwrap() = Some(Instant::now());
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), WRITERS * PUTS);
    let killed_at = killed_at.lock().unwrap().unwrap();
    let resumed = first_ack_after_kill
        .lock()
        .unwrap()
        .expect("puts acknowledged after the kill");
    eprintln!(
        "writes resumed {:?} after the leader's kill -9; {} puts failed as unavailable and were retried",
        resumed.duration_since(killed_at),
        retried.load(Ordering::Relaxed)
    );
    assert!(resumed.duration_since(killed_at) < Duration::from_secs(15));

    // Every acknowledged put is there, at its acknowledged revision.
    let stored = client.range(Range::prefix("/ack/")).await.unwrap();
    let stored: HashMap<Bytes, (Bytes, i64)> = stored
        .kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.mod_revision)))
        .collect();
    for (key, value, revision) in &acked {
        let (stored_value, stored_revision) = stored
            .get(key.as_bytes())
            .unwrap_or_else(|| panic!("acknowledged {key} is lost"));
        assert_eq!(stored_value, value.as_bytes());
        assert_eq!(stored_revision, revision, "{key}");
    }

    // The killed member comes back and catches up.
    cluster.restart(leader);
    cluster.wait_healthy().await;
    let newest = client
        .put(Put::new("/after", "x"))
        .await
        .unwrap()
        .header
        .revision;
    let endpoint = cluster.endpoint(leader);
    eventually(
        Duration::from_secs(10),
        "the restarted member catches up",
        || {
            let client = client.clone();
            let endpoint = endpoint.clone();
            async move {
                let status = client.status(&endpoint).await.ok()?;
                (status.revision >= newest).then_some(())
            }
        },
    )
    .await;

    // And a watch replaying the whole run (from any member) shows every
    // acknowledged revision.
    let first = acked.iter().map(|a| a.2).min().unwrap();
    let mut replay = client
        .watch(WatchOptions::prefix("/ack/").start_revision(first))
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let last = acked.iter().map(|a| a.2).max().unwrap();
    while replay.last_revision() < last {
        if let Some(Ok(WatchEvent::Events { events, .. })) = next_item(&mut replay).await {
            seen.extend(events.iter().map(|e| (e.kv.key.clone(), e.revision())));
        }
    }
    for (key, _, revision) in &acked {
        assert!(
            seen.contains(&(Bytes::from(key.clone()), *revision)),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_member_down_calls_fail_fast_and_work_again_after_restart() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let timeout = Duration::from_secs(1);
    let options = Options {
        connect_timeout: Duration::from_millis(500),
        request_timeout: timeout,
        ..Options::default()
    };
    // The client prefers a follower, which dies first.
    let follower = (cluster.leader().await + 1) % common::MEMBERS;
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(follower);
    let client = cluster.client_with(endpoints, options).await;
    client.put(Put::new("/durable", "before")).await.unwrap();

    // A hung member (SIGSTOP: its connection stays open, nothing answers)
    // costs the call in progress its timeout, not more; the next call
    // starts at another member.
    cluster.signal(follower, "STOP");
    let started = Instant::now();
    let error = client.get("/durable").await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(started.elapsed() < timeout + Duration::from_millis(500));
    let started = Instant::now();
    client.get("/durable").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    cluster.signal(follower, "CONT");

    // One member down: calls move on to another at once.
    cluster.kill(follower);
    let started = Instant::now();
    client.put(Put::new("/durable", "one down")).await.unwrap();
    client.get("/durable").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let mut watch = client
        .watch(WatchOptions::prefix("/durable"))
        .await
        .unwrap();

    // Every member down: each call is refused as unavailable within its
    // timeout, and the open watch ends with an error.
    cluster.kill_all();
    let within = timeout + Duration::from_millis(500);
    let started = Instant::now();
    let error = client
        .put(Put::new("/durable", "none up"))
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(started.elapsed() < within, "{:?}", started.elapsed());
    eprintln!(
        "put with every member down: {error} after {:?}",
        started.elapsed()
    );
    // The other calls, at once: each within its own timeout.
    let started = Instant::now();
    let (get, txn, watch_again, members) = tokio::join!(
        client.get("/durable"),
        client.txn(Txn::new().and_then([Put::new("/durable", "txn")])),
        client.watch(WatchOptions::key("/durable")),
        client.member_list(),
    );
    assert!(get.unwrap_err().is_unavailable());
    assert!(txn.unwrap_err().is_unavailable());
    assert!(watch_again.unwrap_err().is_unavailable());
    assert!(members.unwrap_err().is_unavailable());
    assert!(started.elapsed() < within, "{:?}", started.elapsed());
    loop {
        match next_item(&mut watch).await {
            Some(Ok(WatchEvent::Events { .. } | WatchEvent::Progress { .. })) => {}
            Some(Err(error)) => {
                assert!(error.is_unavailable(), "{error}");
                eprintln!("open watch with every member down: {error}");
                break;
            }
            other => panic!("expected the watch to break: {other:?}"),
        }
    }
    assert!(next_item(&mut watch).await.is_none());

    // Restart: the same client works again, and nothing was lost.
    for i in 0..common::MEMBERS {
        cluster.restart(i);
    }
    cluster.wait_healthy().await;
    assert_eq!(
        client.get("/durable").await.unwrap().unwrap().value,
        Bytes::from("one down")
    );
    client.put(Put::new("/durable", "after")).await.unwrap();
}

/// A watch catching up puts up to 1,000 revisions in one response: with
/// large values that passes the client's response limit, and the watch
/// fails at every attempt. Fragmented, it arrives in pieces within etcd's
/// request limit, and each revision still comes whole (the two puts of one
/// transaction in one item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_watch_replays_what_one_response_cannot_hold() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let writer = cluster.client().await;
    let mib = 1024 * 1024;
    let mut first = 0;
    for i in 0..12 {
        let put = Put::new(format!("/frag/k{i:02}"), vec![b'x'; mib]);
        let revision = writer.put(put).await.unwrap().header.revision;
        if first == 0 {
            first = revision;
        }
    }
    let pair = Txn::new().and_then([
        Put::new("/frag/pair-a", vec![b'a'; 600 * 1024]),
        Put::new("/frag/pair-b", vec![b'b'; 600 * 1024]),
    ]);
    let pair_revision = writer.txn(pair).await.unwrap().revision;
    let options = Options {
        max_response_bytes: 4 * mib,
        ..Cluster::options()
    };
    let reader = cluster.client_with(cluster.endpoints(), options).await;
    let replay = || WatchOptions::prefix("/frag/").start_revision(first);

    // Whole: one response of ~13 MiB, over the 4 MiB limit.
    let mut whole = reader.watch(replay()).await.unwrap();
    match next_item(&mut whole).await {
        Some(Err(_)) => {}
        other => panic!("a response over the limit must end the watch: {other:?}"),
    }

    // Fragmented: every revision, in order, each in one item.
    let mut fragmented = reader.watch(replay().fragment(true)).await.unwrap();
    let mut revisions = Vec::new();
    while revisions.last() != Some(&pair_revision) {
        match next_item(&mut fragmented).await {
            Some(Ok(WatchEvent::Events { revision, events })) => {
                let mut seen: Vec<i64> = events.iter().map(Event::revision).collect();
                seen.dedup();
                assert_eq!(seen.last(), Some(&revision));
                if revision == pair_revision {
                    assert_eq!(
                        events.iter().filter(|e| e.revision() == revision).count(),
                        2,
                        "a transaction's puts come in one item"
                    );
                }
                for r in seen {
                    assert!(revisions.last().is_none_or(|l| *l < r), "order");
                    revisions.push(r);
                }
            }
            Some(Ok(WatchEvent::Progress { .. })) => {}
            other => panic!("the fragmented watch ended: {other:?}"),
        }
    }
    assert_eq!(revisions.len(), 13);
    assert_eq!(revisions[0], first);
}
