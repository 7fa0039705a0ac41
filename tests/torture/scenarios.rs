//! The torture runs proper: the whole workload (writers, the ender,
//! subscribers and watchers of every kind, and in the crash runs the
//! killer) against one daemon, then every check of `torture_support` on
//! what it recorded.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::common;
use crate::crash::{check_files, killer};
use crate::torture_support::*;
use crate::ALL_HISTORY;

pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) args: Vec<&'static str>,
    pub(crate) config: Config,
    pub(crate) crash: bool,
    /// The final replay from revision 0 is complete (retention not reached).
    pub(crate) replayable: bool,
}

/// The load run's flags (the cluster runs' too, but `--etcd`): retention
/// beyond the run; queues small enough that stalled readers fill their
/// connection's queue, so their streams overflow and catch up from history.
pub(crate) const LOAD_ARGS: [&str; 6] = [
    "--history-retention",
    ALL_HISTORY,
    "--subscriber-queue",
    "8",
    "--connection-queue",
    "16",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_under_load() {
    run(Scenario {
        name: "load",
        args: LOAD_ARGS.to_vec(),
        config: Config::from_env(1500, 0),
        crash: false,
        replayable: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_with_resync_beyond_retention() {
    let mut config = Config::from_env(1200, 0);
    config.allow_resync = true;
    // The watchers' check needs the whole history (and RESYNC, then a new
    // list, is not checked by it): `tests/watch.rs` covers that.
    config.watchers = 0;
    run(Scenario {
        name: "resync",
        args: vec![
            "--history-retention",
            "32",
            "--subscriber-queue",
            "2",
            "--connection-queue",
            "4",
        ],
        config,
        crash: false,
        replayable: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_durability_normal() {
    run(Scenario {
        name: "sigkill-normal",
        args: vec!["--history-retention", ALL_HISTORY, "--durability", "normal"],
        config: Config::from_env(300, 20),
        crash: true,
        replayable: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_durability_full() {
    run(Scenario {
        name: "sigkill-full",
        args: vec!["--history-retention", ALL_HISTORY, "--durability", "full"],
        config: Config::from_env(150, 5),
        crash: true,
        replayable: true,
    })
    .await;
}

/// What injects faults while the workload runs (the killer of the crash
/// runs, the cluster run's): given what the workload's tasks share, the
/// daemons and a random source, it kills and restarts what it kills, and
/// answers the daemons (running) and what it found wrong.
pub(crate) type Faults = Box<
    dyn FnOnce(
            Arc<Shared>,
            Vec<common::Daemon>,
            Rng,
        )
            -> Pin<Box<dyn Future<Output = (Vec<common::Daemon>, Vec<Violation>)> + Send>>
        + Send,
>;

async fn run(scenario: Scenario) {
    let daemon = common::Daemon::start(&scenario.args);
    let kills = scenario.config.kills;
    let faults = scenario.crash.then(|| -> Faults {
        Box::new(move |shared, mut daemons, rng| {
            Box::pin(async move {
                let daemon = daemons.pop().expect("one daemon");
                let db = daemon.db.clone();
                let (daemon, violations) = killer(shared, daemon, db, kills, rng).await;
                (vec![daemon], violations)
            })
        })
    });
    run_on(scenario, vec![daemon], faults).await;
}

/// The whole workload on `daemons` (more than one: the cluster mode, which
/// share their executions), clients spread over all of them, with `faults`
/// injected meanwhile (then a write whose reply was lost may or may not
/// have committed); then every check on each daemon.
pub(crate) async fn run_on(
    scenario: Scenario,
    daemons: Vec<common::Daemon>,
    faults: Option<Faults>,
) {
    let cfg = scenario.config.clone();
    let crash = faults.is_some();
    let started = Instant::now();
    eprintln!(
        "torture {}: seed {} (TORTURE_SEED={} replays its choices), {cfg:?}",
        scenario.name, cfg.seed, cfg.seed
    );
    assert!(
        cfg.watchers == 0 || scenario.replayable,
        "the watchers' check needs the daemon's whole history"
    );
    let sockets: Vec<_> = daemons.iter().map(|d| d.socket.clone()).collect();
    let shared = Shared::spread(sockets.clone(), cfg.sessions);
    let mut rng = Rng::new(cfg.seed);

    let every = (cfg.updates / (cfg.executions as u64 * 3)).max(5);
    let ender = tokio::spawn(ender(shared.clone(), cfg.executions, every, rng.fork()));
    let writers: Vec<_> = (0..cfg.writers)
        .map(|w| tokio::spawn(writer(shared.clone(), w, rng.fork())))
        .collect();
    let subscribers: Vec<_> = (0..cfg.subscribers)
        .map(|s| tokio::spawn(subscriber(shared.clone(), s, rng.fork(), cfg.max_stall)))
        .collect();
    let watchers: Vec<_> = (0..cfg.watchers)
        .map(|i| tokio::spawn(watcher(shared.clone(), i, rng.fork(), cfg.max_stall)))
        .collect();

    let mut violations = Vec::new();
    let mut daemons = match faults {
        Some(faults) => {
            let (daemons, found) = faults(shared.clone(), daemons, rng.fork()).await;
            violations.extend(found);
            daemons
        }
        None => daemons,
    };
    // The workload runs until enough writes were acknowledged.
    let mut acked = shared.acked.subscribe();
    let _ = acked.wait_for(|n| *n >= cfg.updates).await;
    shared.stop_writing.store(true, Ordering::Release);
    shared.acked.send_modify(|_| {});
    for w in writers {
        w.await.expect("writer");
    }
    ender.await.expect("ender");
    // Every execution ever created ends, so every stream must end.
    let ids = shared.record.lock().expect("record").unconfirmed.clone();
    shared.record.lock().expect("record").live = ids.clone();
    finish_all(&shared).await;
    shared.done.store(true, Ordering::Release);
    let mut logs = Vec::new();
    for s in subscribers {
        logs.push(s.await.expect("subscriber"));
    }

    // The committed history: the acknowledgements, and each daemon's replay
    // (whole states, and again as deltas rebuilt from the history), once
    // every replica has caught up.
    let record = shared.record.lock().expect("record").clone();
    for socket in &sockets {
        caught_up(socket, record.max_seen).await;
    }
    let mut replayed_deltas = 0;
    let mut unresolved = 0;
    let history = if scenario.replayable {
        let mut history = None;
        for socket in &sockets {
            let (replayed, replay_violations) = replay(socket, &ids, &record).await;
            violations.extend(replay_violations);
            violations.extend(check_history(&record, &replayed, !crash));
            let (delta_violations, deltas) = replay_deltas(socket, &ids, &replayed).await;
            violations.extend(delta_violations);
            replayed_deltas += deltas;
            history.get_or_insert(replayed);
        }
        history.expect("one daemon at least")
    } else {
        // Appends are acknowledged without their states: the streams'
        // states at those revisions stand in for them (and must agree).
        let mut history = history_from_acks(&record);
        violations.extend(check_history(&record, &history, true));
        let (resolve_violations, unknown) = resolve_appended(&mut history, &logs);
        violations.extend(resolve_violations);
        unresolved = unknown;
        history
    };
    // The watchers read up to their selection's last change, then stop.
    let selections: Vec<Selection> = (0..cfg.watchers)
        .map(|i| Selection::of(i, shared.sessions))
        .collect();
    let last_changes = targets(&history, &record.sessions, &selections);
    shared.targets.send_replace(Some(Arc::new(last_changes)));
    let mut watch_logs = Vec::new();
    for w in watchers {
        watch_logs.push(w.await.expect("watcher"));
    }
    // The daemons' own count of queue overflows (each since its last
    // start).
    let mut overflows = 0;
    for socket in &sockets {
        use stigmer_proto::daemon::{request::Command as Cmd, response, StatusRequest};
        let mut wire = Wire::connect(socket).await.expect("connect");
        match wire
            .call(Cmd::Status(StatusRequest { prometheus: false }))
            .await
            .expect("status")
            .result
        {
            Some(response::Result::Status(s)) => overflows += s.subscriber_overflows,
            other => panic!("status answered {other:?}"),
        }
    }
    let mut counts = Checked::default();
    violations.extend(check_subscribers(
        &logs,
        &history,
        cfg.allow_resync,
        &mut counts,
    ));
    violations.extend(check_watchers(
        &watch_logs,
        &history,
        &record.sessions,
        &mut counts,
    ));
    for socket in &sockets {
        violations.extend(check_current_states(socket, &history, &record).await);
    }
    if crash {
        // Each database holds everything (every replica caught up).
        for daemon in &mut daemons {
            daemon.kill();
            violations.extend(check_files(&daemon.db, record.max_seen));
        }
    }

    let figures = format!(
        "torture {}: seed {}, {} writers, {} subscribers, {} executions, {} acknowledged writes \
         (last revision {}; {} appends, {} retried appends acknowledged ({} after a crash), \
         {} ABORTED, {} INVALID_ARGUMENT for a stale offset inside a character), \
         {} subscribe segments ({} resumes), {} events checked, {} RESYNC, {} END, \
         {} queue overflows caught up from history since the daemons' last start; \
         delta streams: {} segments, {} DELTA events, {} resumes skipping the initial state, \
         {} starting with it, {} DELTA events in the replay, {} appended states unseen; \
         {} watchers of {} sessions: {} subscribe segments ({} lists, {} resumes), {} events \
         ({} DELTA, {} progress bookmarks); \
         {} SIGKILLs of a daemon survived, {} of etcd's leader; writes whose reply was lost: \
         {} to a broken connection, {} UNAVAILABLE; {} violations, {:.1}s",
        scenario.name,
        cfg.seed,
        cfg.writers,
        cfg.subscribers,
        ids.len(),
        record.acks.len(),
        record.max_seen,
        shared.appends.load(Ordering::Relaxed),
        shared.retries.load(Ordering::Relaxed),
        shared.retries_after_crash.load(Ordering::Relaxed),
        shared.aborted.load(Ordering::Relaxed),
        shared.inside_character.load(Ordering::Relaxed),
        counts.segments,
        counts.resumed,
        counts.events,
        counts.resyncs,
        counts.ends,
        overflows,
        counts.delta_segments,
        counts.deltas,
        counts.skipped,
        counts.initial_states,
        replayed_deltas,
        unresolved,
        cfg.watchers,
        cfg.sessions,
        counts.watch_segments,
        counts.watch_lists,
        counts.watch_resumes,
        counts.watch_events,
        counts.watch_deltas,
        counts.watch_bookmarks,
        shared.crashes_seen.load(Ordering::Relaxed),
        shared.leader_kills.load(Ordering::Relaxed),
        shared.lost_replies.load(Ordering::Relaxed),
        shared.unavailable.load(Ordering::Relaxed),
        violations.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{figures}");
    if !violations.is_empty() {
        for v in violations.iter().take(5) {
            eprintln!("{v}");
        }
        panic!(
            "{} violations (first shown above); {figures}",
            violations.len()
        );
    }
    // A stream-less, quiet sanity check that the workload did something.
    assert!(counts.events > 0 && *shared.acked.borrow() >= cfg.updates);
    drop(daemons);
}

/// Waits until the daemon at `socket` has applied `revision` (its last
/// revision, as `status` reports it).
pub(crate) async fn caught_up(socket: &std::path::Path, revision: u64) {
    use stigmer_proto::daemon::{request::Command as Cmd, response, StatusRequest};
    for _ in 0..600 {
        let mut wire = Wire::connect(socket).await.expect("connect");
        if let Some(response::Result::Status(s)) = wire
            .call(Cmd::Status(StatusRequest { prometheus: false }))
            .await
            .expect("status")
            .result
        {
            if s.revision >= revision {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the daemon at {} never reached revision {revision}",
        socket.display()
    );
}
