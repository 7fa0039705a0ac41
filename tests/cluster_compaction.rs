//! The cluster mode's compaction (issue 20): daemons compact etcd's history
//! to what `--history-retention` and the executions' states still need,
//! and a daemon whose replica etcd compacted past rebuilds it from a read
//! at one revision, its streams getting an explicit RESYNC, never a gap.
//! Against a real 3-member etcd on loopback; skipped, saying so, without
//! `etcd`.

mod common;
#[path = "../etcd/tests/common/mod.rs"]
mod etcd_cluster;

use std::time::Duration;

use common::watch::{
    append_cmd as append, create_in, delete, get, initial_list, text_of, watch, Cache, Sel,
    BOOKMARK, RESYNC, UPDATE,
};
use common::{phase, Daemon, Raw};
use etcd_cluster::eventually;
use stigmer_proto::agentexecution::ExecutionPhase;
use stigmer_proto::daemon::{response, Event};

/// Each daemon keeps 20 revisions and compacts etcd every 100 ms.
const ARGS: [&str; 4] = [
    "--history-retention",
    "20",
    "--etcd-compaction-interval",
    "100ms",
];

fn start(etcd: &etcd_cluster::Cluster) -> Daemon {
    let endpoints = etcd.endpoints().join(",");
    let mut args = vec!["--etcd", endpoints.as_str()];
    args.extend(ARGS);
    Daemon::start(&args)
}

/// The revision an append committed at.
fn committed(reply: stigmer_proto::daemon::Response) -> u64 {
    match reply.result {
        Some(response::Result::Execution(r)) => r.revision,
        other => panic!("expected a committed append, got {other:?}"),
    }
}

/// What daemon A writes while daemon B is away: `rounds` appends of ~100
/// bytes to `id` (whose text starts at `text`), a delete of `gone`, a new
/// execution in session `s1` and `done` completed. Returns the appends'
/// revisions, the new execution's id and the last revision.
async fn write_while_away(
    ca: &mut Raw,
    id: &str,
    text: &mut String,
    gone: &str,
    done: &str,
    rounds: usize,
) -> (Vec<u64>, String, u64) {
    let mut appended = Vec::new();
    for i in 0..rounds {
        let word = format!("{i:04}:{}|", "x".repeat(95));
        appended.push(committed(
            ca.call(append(id, text.len() as u64, &word)).await,
        ));
        text.push_str(&word);
    }
    delete(ca, gone).await;
    let (new, _) = create_in(ca, "s1").await;
    let last = committed(
        ca.update(done, phase(ExecutionPhase::ExecutionCompleted))
            .await,
    );
    (appended, new, last)
}

/// Waits until `conn`'s daemon has execution `id` at `revision`.
async fn until_at(conn: &mut Raw, id: &str, revision: u64) {
    for _ in 0..800 {
        if get(conn, id).await.is_some_and(|(_, at)| at == revision) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never reached revision {revision}");
}

/// Waits until daemon `a` compacted etcd past `revision`.
async fn compacted_past(a: &Daemon, revision: u64) {
    eventually(Duration::from_secs(20), "etcd compacted", || async {
        (a.metric("stigmer_etcd_compacted_revision") > revision as f64).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restarted_after_etcd_compacted_past_it_rebuilds_and_resumes_resync() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let a = start(&etcd);
    let mut b = start(&etcd);
    let (mut ca, mut cb) = (a.connect().await, b.connect().await);
    let (id, _) = create_in(&mut ca, "s1").await;
    let (gone, _) = create_in(&mut ca, "s1").await;
    let (done, before) = create_in(&mut ca, "s1").await;
    until_at(&mut cb, &done, before).await;
    drop(cb);
    b.kill();
    let mut text = String::new();
    let (_, new, last) = write_while_away(&mut ca, &id, &mut text, &gone, &done, 60).await;
    compacted_past(&a, before).await;

    b.restart();
    let mut cb = b.connect().await;
    // The replica is rebuilt: A's states, the delete, the new execution.
    until_at(&mut cb, &done, last).await;
    assert_eq!(b.metric("stigmer_replica_rebuilds_total"), 1.0);
    for execution in [&id, &new, &done] {
        assert_eq!(
            get(&mut cb, execution).await,
            get(&mut ca, execution).await,
            "{execution} as A has it"
        );
    }
    assert_eq!(get(&mut cb, &gone).await, None, "deleted while B was away");
    assert_eq!(text_of(&mut cb, &id).await.map(|t| t.0), Some(text.clone()));

    // A stream resumed from before the compaction gets an explicit resync
    // with the current state, and continues from there.
    let sub = cb.subscribe(&id, Some(before)).await;
    let first = cb.event(sub).await;
    assert_eq!(first.r#type, RESYNC, "{first:?}");
    let (current, at) = get(&mut ca, &id).await.expect("on A");
    assert_eq!((first.execution, first.revision), (Some(current), at));
    let next = committed(ca.call(append(&id, text.len() as u64, "after")).await);
    let event = cb.event(sub).await;
    assert_eq!((event.r#type, event.revision), (UPDATE, next));

    // A daemon on an empty database joins after the compaction: it
    // rebuilds from etcd too (a replica's database is disposable).
    let c = start(&etcd);
    let mut cc = c.connect().await;
    until_at(&mut cc, &done, last).await;
    assert_eq!(c.metric("stigmer_replica_rebuilds_total"), 1.0);
    for execution in [&id, &new, &done] {
        assert_eq!(get(&mut cc, execution).await, get(&mut cb, execution).await);
    }
    assert_eq!(get(&mut cc, &gone).await, None);

    // So does a session watch, which then lists the session again.
    let watcher = watch(&mut cb, Sel::Session("s1"), Some(before), true).await;
    let resync = cb.event(watcher).await;
    assert_eq!(resync.r#type, RESYNC, "{resync:?}");
    let listed = initial_list(&mut cb, watcher).await;
    let mut cache = Cache::default();
    listed.iter().for_each(|e| cache.apply(e));
    let ids: Vec<&String> = cache.states.keys().collect();
    let mut expected = vec![&id, &new, &done];
    expected.sort();
    assert_eq!(ids, expected);
}

/// Whether `events` of one execution's whole-state stream, against the
/// revisions its writer was acknowledged (`acked`, in order), skip
/// nothing silently: every UPDATE is the acknowledged change right after
/// the event before it, and only a RESYNC may jump (forward).
fn assert_gap_free(events: &[Event], acked: &[u64]) {
    let mut last = 0;
    for e in events {
        assert!(e.revision > last, "revision {} after {last}", e.revision);
        if e.r#type == UPDATE && last != 0 {
            let at = acked.iter().position(|r| *r == last);
            let next = at.and_then(|i| acked.get(i + 1));
            assert_eq!(
                next,
                Some(&e.revision),
                "an update skipped from {last} to {}",
                e.revision
            );
        }
        last = e.revision;
    }
}

/// A TCP relay to one etcd member whose connections the test can cut:
/// daemon B's only way to etcd, so that B stays up (its clients' streams
/// open) while its replica cannot follow.
struct Relay {
    url: String,
    open: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: &str) -> Relay {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let open = tokio::sync::watch::Sender::new(true);
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*gate.borrow() {
                    continue;
                }
                let (upstream, mut cut) = (upstream.clone(), gate.subscribe());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Relay { url, open }
    }

    /// Drops every relayed connection and refuses new ones until
    /// [`Relay::restore`].
    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_on_a_cut_off_replica_resync_after_etcd_compacted_past_it() {
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let a = start(&etcd);
    let relay = Relay::start(&etcd.endpoint(0)).await;
    let mut args = vec!["--etcd", relay.url.as_str()];
    args.extend(ARGS);
    let b = Daemon::start(&args);
    let (mut ca, mut cb) = (a.connect().await, b.connect().await);
    let (id, created) = create_in(&mut ca, "s1").await;
    let (gone, _) = create_in(&mut ca, "s1").await;
    let (done, before) = create_in(&mut ca, "s1").await;
    until_at(&mut cb, &done, before).await;
    // A whole-state stream of `id` and a delta session watch, on B.
    let sub = cb.subscribe(&id, Some(created)).await;
    let watcher = watch(&mut cb, Sel::Session("s1"), None, true).await;
    let listed = initial_list(&mut cb, watcher).await;
    let mut cache = Cache::default();
    listed.iter().for_each(|e| cache.apply(e));

    // B loses etcd (its streams stay open) while A writes far past the
    // retention and compacts etcd past B; then B reaches etcd again.
    relay.cut();
    let mut text = String::new();
    let (acked, new, last) = write_while_away(&mut ca, &id, &mut text, &gone, &done, 60).await;
    compacted_past(&a, before).await;
    relay.restore();

    // The one-execution stream: nothing skipped silently, a RESYNC, and
    // it ends at A's state.
    let mut events = Vec::new();
    let final_revision = *acked.last().expect("appends");
    while events
        .last()
        .is_none_or(|e: &Event| e.revision < final_revision)
    {
        events.push(cb.event(sub).await);
    }
    assert_gap_free(&events, &acked);
    assert!(events.iter().any(|e| e.r#type == RESYNC), "{events:?}");
    let (state, _) = get(&mut ca, &id).await.expect("on A");
    assert_eq!(events.last().and_then(|e| e.execution.clone()), Some(state));
    assert_eq!(b.metric("stigmer_replica_rebuilds_total"), 1.0);

    // The session watch: a RESYNC and a new list; its cache, kept through
    // them as a client keeps it, ends equal to A's session.
    let mut resynced = false;
    loop {
        let e = cb.event(watcher).await;
        resynced |= e.r#type == RESYNC;
        cache.apply(&e);
        if e.revision >= last && (e.r#type != BOOKMARK || e.initial_events_end) {
            break;
        }
    }
    assert!(resynced, "the session watch resynced");
    let mut expected = std::collections::BTreeMap::new();
    for execution in [&id, &new, &done] {
        let (state, at) = get(&mut ca, execution).await.expect("on A");
        expected.insert(execution.clone(), (at, state));
    }
    assert_eq!(cache.states, expected);
}
