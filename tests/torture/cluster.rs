//! The torture workload across two daemons sharing their executions
//! through a real 3-member etcd cluster (the cluster mode, issue 20):
//! writers (to shared executions and to their own), the ender, subscribers
//! and session watchers of every kind spread over both daemons, and every
//! check on each daemon's streams and history; once quietly, once with
//! `kill -9` of etcd's leader and of each daemon mid-run (restarted on its
//! database and socket once writes went on without it), the clients of a
//! killed daemon resuming on either one. Skipped, saying so, without
//! `etcd`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::common;
use crate::crash::check_files;
use crate::etcd_cluster::Cluster;
use crate::scenarios::{caught_up, run_on, Faults, Scenario, LOAD_ARGS};
use crate::torture_support::*;

/// The workload `name` with `config` on two daemons sharing the etcd
/// cluster at `endpoints` (each with the load run's flags too), with
/// `faults` injected meanwhile if any (then the crash runs' rules).
async fn run_on_two_daemons(
    endpoints: &[String],
    name: &'static str,
    config: Config,
    faults: Option<Faults>,
) {
    let endpoints = endpoints.join(",");
    let mut args = vec!["--etcd", endpoints.as_str()];
    args.extend(LOAD_ARGS);
    let daemons = vec![common::Daemon::start(&args), common::Daemon::start(&args)];
    let scenario = Scenario {
        name,
        args: Vec::new(),
        config,
        crash: faults.is_some(),
        replayable: true,
    };
    run_on(scenario, daemons, faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_across_two_daemons_sharing_etcd() {
    let Some(etcd) = Cluster::start().await else {
        return;
    };
    run_on_two_daemons(&etcd.endpoints(), "cluster", Config::from_env(600, 0), None).await;
    drop(etcd);
}

/// As above, with faults mid-run: by turns `kill -9` of etcd's leader
/// (the workload must go on through the two members left; the member is
/// restarted before the next fault) and of a daemon (each in turn),
/// restarted on the same database and socket, whose replica catches up
/// from its last applied revision. A write whose reply the fault lost may
/// or may not have committed: the crash runs' rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_across_two_daemons_with_kills() {
    let Some(etcd) = Cluster::start().await else {
        return;
    };
    let endpoints = etcd.endpoints();
    let config = Config::from_env(600, 4);
    let etcd = Arc::new(tokio::sync::Mutex::new(etcd));
    let faults: Faults = {
        let (etcd, kills, updates) = (etcd.clone(), config.kills, config.updates);
        Box::new(move |shared, daemons, rng| {
            Box::pin(cluster_killer(shared, daemons, etcd, kills, updates, rng))
        })
    };
    run_on_two_daemons(&endpoints, "cluster-kills", config, Some(faults)).await;
    drop(etcd);
}

/// `kills` faults spread over a run of `updates` acknowledged writes:
/// even ones kill etcd's leader (and one in four a daemon too, while the
/// member is down), odd ones a daemon (each in turn).
async fn cluster_killer(
    shared: Arc<Shared>,
    mut daemons: Vec<common::Daemon>,
    etcd: Arc<tokio::sync::Mutex<Cluster>>,
    kills: u64,
    updates: u64,
    mut rng: Rng,
) -> (Vec<common::Daemon>, Vec<Violation>) {
    let mut violations = Vec::new();
    let mut acked = shared.acked.subscribe();
    // Writes between two faults, on average.
    let gap = (updates / (kills + 1)).max(2);
    for k in 0..kills {
        // Some acknowledged writes, then sometimes a few milliseconds, so
        // faults land inside proposals and between them.
        let target = *acked.borrow() + gap / 2 + rng.below(gap);
        let _ = acked.wait_for(|n| *n >= target).await;
        if rng.percent(50) {
            tokio::time::sleep(std::time::Duration::from_millis(rng.below(15))).await;
        }
        if k % 2 == 0 {
            let mut etcd = etcd.lock().await;
            let leader = etcd.kill_leader().await;
            shared.leader_kills.fetch_add(1, Ordering::Relaxed);
            // The two members left elect a leader and the writes go on.
            let more = 1 + rng.below(gap / 2);
            violations.extend(writes_go_on(&mut acked, more, "of killing etcd's leader").await);
            // Now and then a daemon dies too while the member is down: it
            // restarts against the two members left.
            if rng.percent(25) {
                let i = rng.below(daemons.len() as u64) as usize;
                let down_for = 1 + rng.below(gap / 2);
                violations.extend(kill_and_restart(&shared, &mut daemons[i], i, down_for).await);
            }
            etcd.restart(leader);
            etcd.wait_healthy().await;
        } else {
            let i = (k / 2) as usize % daemons.len();
            let down_for = 1 + rng.below(gap / 2);
            violations.extend(kill_and_restart(&shared, &mut daemons[i], i, down_for).await);
        }
    }
    (daemons, violations)
}

/// Waits (at most `STUCK`) for `more` writes acknowledged beyond what
/// `acked` counts now; if they do not come, the violation "no write
/// acknowledged within …s `when`".
async fn writes_go_on(
    acked: &mut tokio::sync::watch::Receiver<u64>,
    more: u64,
    when: &str,
) -> Option<Violation> {
    let target = *acked.borrow() + more;
    let went_on = tokio::time::timeout(STUCK, acked.wait_for(|n| *n >= target))
        .await
        .is_ok();
    (!went_on).then(|| Violation {
        what: format!("no write acknowledged within {}s {when}", STUCK.as_secs()),
        trace: vec![],
    })
}

/// `kill -9` of daemon `i` under load: its database is sound and holds
/// everything it acknowledged or delivered. It stays down while `down_for`
/// more writes are acknowledged through the other daemon; restarted on the
/// same database and socket, it answers at least what it had at once, and
/// its replica catches up from its last applied revision to everything
/// committed by then.
async fn kill_and_restart(
    shared: &Shared,
    daemon: &mut common::Daemon,
    i: usize,
    down_for: u64,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let own = {
        let r = shared.record.lock().expect("record");
        r.max_seen_on.get(&i).copied().unwrap_or(0)
    };
    let (db, socket) = (daemon.db.clone(), daemon.socket.clone());
    tokio::task::block_in_place(|| daemon.kill());
    shared.crashes_seen.fetch_add(1, Ordering::Relaxed);
    let found = tokio::task::spawn_blocking(move || check_files(&db, own))
        .await
        .expect("check");
    violations.extend(found);
    let mut acked = shared.acked.subscribe();
    let while_down = format!("while daemon {i} was down");
    violations.extend(writes_go_on(&mut acked, down_for, &while_down).await);
    let everyone = shared.record.lock().expect("record").max_seen;
    tokio::task::block_in_place(|| daemon.restart());
    let mut wire = Wire::connect(&socket).await.expect("connect");
    let pong = wire
        .call(stigmer_proto::daemon::request::Command::Ping(
            stigmer_proto::daemon::PingRequest {},
        ))
        .await
        .expect("ping");
    let at_restart = match pong.result {
        Some(stigmer_proto::daemon::response::Result::Pong(p)) => p.revision,
        other => panic!("ping answered {other:?}"),
    };
    if at_restart < own {
        violations.push(Violation {
            what: format!(
                "after its restart daemon {i}'s revision is {at_restart}, but it had acknowledged or delivered {own}"
            ),
            trace: vec![],
        });
    }
    let started = std::time::Instant::now();
    caught_up(&socket, everyone).await;
    eprintln!(
        "daemon {i} killed having acknowledged or delivered up to revision {own}; restarted at \
         {at_restart} after {down_for} writes elsewhere; caught up to {everyone} in {:.0?}",
        started.elapsed()
    );
    shared.generation.send_modify(|g| *g += 1);
    violations
}
