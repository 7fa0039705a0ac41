//! The torture suite: the stream guarantees of docs/PROTOCOL.md checked
//! under load, slow and stalling readers, disconnects and resumes, streams
//! from past revisions, executions cancelled and deleted mid-stream, and
//! SIGKILL of the daemon at random moments; for whole-state streams and
//! delta streams (`deltas: true`) side by side, with writers that send
//! whole statuses, appends, or both. See docs/RELIABILITY.md.
//!
//! The CI form runs by default (a few minutes on two cores). Long runs set
//! `TORTURE_*` variables (see `torture_support::Config::from_env`) and
//! `--nocapture` to see the figures, e.g.
//!
//! ```text
//! TORTURE_UPDATES=200000 TORTURE_KILLS=500 TORTURE_SUBSCRIBERS=48 \
//!   cargo test --release --test torture -- --nocapture --test-threads 1
//! ```

mod common;
mod torture_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use torture_support::*;

/// History retention far beyond any run: every revision stays replayable.
const ALL_HISTORY: &str = "1000000000";

struct Scenario {
    name: &'static str,
    args: Vec<&'static str>,
    config: Config,
    crash: bool,
    /// The final replay from revision 0 is complete (retention not reached).
    replayable: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_under_load() {
    run(Scenario {
        name: "load",
        args: vec![
            "--history-retention",
            ALL_HISTORY,
            "--subscriber-queue",
            "8",
            // Small enough that stalled readers fill their connection's
            // queue, so their streams overflow and catch up from history.
            "--connection-queue",
            "16",
        ],
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

async fn run(scenario: Scenario) {
    let cfg = scenario.config.clone();
    let started = Instant::now();
    eprintln!(
        "torture {}: seed {} (TORTURE_SEED={} replays its choices), {cfg:?}",
        scenario.name, cfg.seed, cfg.seed
    );
    let daemon = common::Daemon::start(&scenario.args);
    let db = daemon.db.clone();
    let shared = Shared::new(daemon.socket.clone());
    let mut rng = Rng::new(cfg.seed);

    let every = (cfg.updates / (cfg.executions as u64 * 3)).max(5);
    let ender = tokio::spawn(ender(shared.clone(), cfg.executions, every, rng.fork()));
    let writers: Vec<_> = (0..cfg.writers)
        .map(|w| tokio::spawn(writer(shared.clone(), w, rng.fork())))
        .collect();
    let subscribers: Vec<_> = (0..cfg.subscribers)
        .map(|s| tokio::spawn(subscriber(shared.clone(), s, rng.fork(), cfg.max_stall)))
        .collect();

    let mut violations = Vec::new();
    let mut daemon = if scenario.crash {
        let (daemon, kill_violations) =
            killer(shared.clone(), daemon, db.clone(), cfg.kills, rng.fork()).await;
        violations.extend(kill_violations);
        daemon
    } else {
        daemon
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

    // The committed history: the acknowledgements, and the daemon's replay
    // (whole states, and again as deltas rebuilt from the history).
    let record = std::mem::take(&mut *shared.record.lock().expect("record"));
    let mut replayed_deltas = 0;
    let mut unresolved = 0;
    let history = if scenario.replayable {
        let (replayed, replay_violations) = replay(&daemon.socket, &ids, &record).await;
        violations.extend(replay_violations);
        violations.extend(check_history(&record, &replayed, !scenario.crash));
        let (delta_violations, deltas) = replay_deltas(&daemon.socket, &ids, &replayed).await;
        violations.extend(delta_violations);
        replayed_deltas = deltas;
        replayed
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
    // The daemon's own count of queue overflows and RESYNCs (since its
    // last start).
    let status = {
        use stigmer_proto::daemon::{request::Command as Cmd, response, StatusRequest};
        let mut wire = Wire::connect(&daemon.socket).await.expect("connect");
        match wire
            .call(Cmd::Status(StatusRequest { prometheus: false }))
            .await
            .expect("status")
            .result
        {
            Some(response::Result::Status(s)) => s,
            other => panic!("status answered {other:?}"),
        }
    };
    let mut counts = Checked::default();
    violations.extend(check_subscribers(
        &logs,
        &history,
        cfg.allow_resync,
        &mut counts,
    ));
    violations.extend(check_current_states(&daemon.socket, &history, &record).await);
    if scenario.crash {
        daemon.kill();
        violations.extend(check_files(&db, record.max_seen));
    }

    let figures = format!(
        "torture {}: seed {}, {} writers, {} subscribers, {} executions, {} acknowledged writes \
         (last revision {}; {} appends, {} retried appends acknowledged ({} after a crash), \
         {} ABORTED, {} INVALID_ARGUMENT for a stale offset inside a character), \
         {} subscribe segments ({} resumes), {} events checked, {} RESYNC, {} END, \
         {} queue overflows caught up from history since the daemon's last start; \
         delta streams: {} segments, {} DELTA events, {} resumes skipping the initial state, \
         {} starting with it, {} DELTA events in the replay, {} appended states unseen; \
         {} SIGKILLs survived, {} violations, {:.1}s",
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
        status.subscriber_overflows,
        counts.delta_segments,
        counts.deltas,
        counts.skipped,
        counts.initial_states,
        replayed_deltas,
        unresolved,
        if scenario.crash { cfg.kills } else { 0 },
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
}

/// Lossless under back-pressure, for both kinds of stream, made certain:
/// the random stalls of the scenarios above overflow a queue only now and
/// then (a Unix socket buffers a few hundred small frames), so here each
/// kind of stream is stalled in turn while its execution takes a burst of
/// appends and whole statuses, and must overflow (the daemon's counter
/// says so), catch up from history and deliver every change; with a short
/// history, RESYNC where the history no longer reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_of_both_kinds_overflow_and_catch_up() {
    for (retention, allow_resync) in [(ALL_HISTORY, false), ("32", true)] {
        let d = common::Daemon::start(&[
            "--history-retention",
            retention,
            "--subscriber-queue",
            "2",
            "--connection-queue",
            "4",
        ]);
        // (deltas, from the create's revision, skip_initial_state)
        for (deltas, from, skip) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (true, true, true),
        ] {
            let what = format!(
                "retention {retention}, deltas {deltas}, from_revision {from}, skip {skip}"
            );
            let v = stall_once(&d.socket, deltas, from, skip, allow_resync).await;
            assert!(v.is_ok(), "{what}: {}", v.err().unwrap_or_default());
        }
    }
}

/// One stalled stream on a fresh execution; Err describes what broke.
async fn stall_once(
    socket: &std::path::Path,
    deltas: bool,
    from: bool,
    skip: bool,
    allow_resync: bool,
) -> Result<(), String> {
    use stigmer_proto::agentexecution::{AgentExecutionId, ExecutionPhase};
    use stigmer_proto::daemon::{
        request::Command as Cmd, response, AppendRequest, StatusRequest, SubscribeRequest,
    };
    let mut w = Wire::connect(socket).await.expect("connect");
    let overflows = |resp: stigmer_proto::daemon::Response| match resp.result {
        Some(response::Result::Status(s)) => s.subscriber_overflows,
        other => panic!("status answered {other:?}"),
    };
    let status = Cmd::Status(StatusRequest { prometheus: false });
    let before = overflows(w.call(status.clone()).await.expect("status"));
    // The committed history, exactly: one writer, whose every write is
    // followed by a get (append replies carry no state).
    let id = new_id();
    let mut h: Vec<(u64, Entry)> = Vec::new();
    let (created, created_rev) = match w
        .call(Cmd::Create(new_execution(&id, "stall")))
        .await
        .expect("create")
        .result
    {
        Some(response::Result::Execution(r)) => (r.execution.expect("execution"), r.revision),
        other => panic!("create answered {other:?}"),
    };
    h.push((created_rev, Entry::State(State::of(&created))));
    let mut r = Wire::connect(socket).await.expect("connect");
    let sub = r.id();
    r.send(
        sub,
        Cmd::Subscribe(SubscribeRequest {
            execution_id: id.clone(),
            from_revision: from.then_some(created_rev),
            deltas,
            skip_initial_state: skip,
            ..Default::default()
        }),
    )
    .await
    .expect("subscribe");
    // The subscriber reads nothing while 400 changes are committed.
    let mut offset = 0u64;
    let mut rng = Rng::new(created_rev);
    for n in 0..400 {
        let cmd = if n % 40 == 39 {
            let text = format!("whole {n}");
            offset = text.len() as u64;
            update_cmd(&id, message_status(text))
        } else {
            let text = format!("<a0.{n}:{}>", "é".repeat(rng.below(8) as usize));
            let op = text_op(0, offset, &text, 0);
            offset += text.len() as u64;
            Cmd::Append(AppendRequest {
                execution_id: id.clone(),
                expected_revision: None,
                ops: vec![op],
            })
        };
        let revision = match w.call(cmd).await.expect("write").result {
            Some(response::Result::Execution(r)) => r.revision,
            other => panic!("write {n} answered {other:?}"),
        };
        let state = match w
            .call(Cmd::Get(AgentExecutionId { value: id.clone() }))
            .await
            .expect("get")
            .result
        {
            Some(response::Result::Execution(r)) if r.revision == revision => {
                r.execution.expect("execution")
            }
            other => panic!("get after write {n} answered {other:?}"),
        };
        h.push((revision, Entry::State(State::of(&state))));
    }
    let last = match w
        .call(update_cmd(
            &id,
            phase_status(ExecutionPhase::ExecutionCompleted),
        ))
        .await
        .expect("complete")
        .result
    {
        Some(response::Result::Execution(r)) => {
            (r.revision, State::of(&r.execution.expect("execution")))
        }
        other => panic!("complete answered {other:?}"),
    };
    h.push((last.0, Entry::State(last.1)));
    // Now the stream, to its END.
    let mut seg = Segment {
        execution: id.clone(),
        from: from.then_some(created_rev),
        events: Vec::new(),
        outcome: Outcome::Open,
        cancelled: false,
        resumed: false,
        deltas,
        skip,
        base: skip.then_some(created_rev),
    };
    let mut held = skip.then(|| (created.clone(), created_rev));
    loop {
        let resp = tokio::time::timeout(STUCK, r.recv())
            .await
            .map_err(|_| "the stream went silent".to_string())?
            .map_err(|_| "the stream's connection closed".to_string())?;
        match resp.result {
            Some(response::Result::Event(e)) => {
                seg.events.push(receive(&e, &mut held, &[]));
                if e.r#type == END {
                    seg.outcome = Outcome::Ended;
                    break;
                }
            }
            other => return Err(format!("the stream answered {other:?}")),
        }
    }
    let mut cursor = seg.from;
    check_segment(&h, &seg, &mut cursor, allow_resync).map_err(|v| v.to_string())?;
    let after = overflows(w.call(status).await.expect("status"));
    if after <= before {
        return Err(format!(
            "the stalled stream never overflowed its queue ({before} overflows before, {after} after)"
        ));
    }
    let resyncs = seg.events.iter().filter(|e| e.kind == RESYNC).count();
    let delivered = seg.events.iter().filter(|e| e.kind != END).count();
    if allow_resync && resyncs == 0 {
        return Err(format!(
            "400 changes past a 32-revision history, yet no RESYNC ({delivered} events)"
        ));
    }
    Ok(())
}

/// SIGKILLs the daemon `kills` times at random moments under load; after
/// each, checks the files it left (integrity, no revision lost) and
/// restarts it.
async fn killer(
    shared: Arc<Shared>,
    mut daemon: common::Daemon,
    db: std::path::PathBuf,
    kills: u64,
    mut rng: Rng,
) -> (common::Daemon, Vec<Violation>) {
    let mut violations = Vec::new();
    let mut acked = shared.acked.subscribe();
    for _ in 0..kills {
        // A random number of acknowledged writes (0: at once after a
        // restart), then sometimes a few more milliseconds, so kills land
        // inside batches, between them, and during start-up catch-ups.
        let target = *acked.borrow() + rng.below(60);
        let _ = acked.wait_for(|n| *n >= target).await;
        if rng.percent(50) {
            tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
        }
        daemon = tokio::task::spawn_blocking(move || {
            daemon.kill();
            daemon
        })
        .await
        .expect("kill");
        shared.crashes_seen.fetch_add(1, Ordering::Relaxed);
        // Everything acknowledged or delivered so far came from the dead
        // daemon and was committed.
        let max_seen = shared.record.lock().expect("record").max_seen;
        let dbc = db.clone();
        let found = tokio::task::spawn_blocking(move || check_files(&dbc, max_seen))
            .await
            .expect("check");
        violations.extend(found);
        daemon = tokio::task::spawn_blocking(move || {
            daemon.restart();
            daemon
        })
        .await
        .expect("restart");
        // Revisions never go back.
        let mut wire = Wire::connect(&daemon.socket).await.expect("connect");
        let pong = wire
            .call(stigmer_proto::daemon::request::Command::Ping(
                stigmer_proto::daemon::PingRequest {},
            ))
            .await
            .expect("ping");
        if let Some(stigmer_proto::daemon::response::Result::Pong(p)) = pong.result {
            if p.revision < max_seen {
                violations.push(Violation {
                    what: format!(
                        "after restart the daemon's revision is {} but {max_seen} was acknowledged or delivered",
                        p.revision
                    ),
                    trace: vec![],
                });
            }
        }
        shared.generation.send_modify(|g| *g += 1);
    }
    (daemon, violations)
}

/// The database a crash left: `PRAGMA integrity_check` is ok and the last
/// revision is at least `max_seen`.
fn check_files(db: &std::path::Path, max_seen: u64) -> Vec<Violation> {
    use rusqlite::{Connection, OpenFlags};
    let mut out = Vec::new();
    let conn = match Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(c) => c,
        Err(e) => {
            return vec![Violation {
                what: format!("cannot open the database after the crash: {e}"),
                trace: vec![],
            }]
        }
    };
    let integrity: Result<String, _> = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0));
    match integrity {
        Ok(s) if s == "ok" => {}
        other => out.push(Violation {
            what: format!("integrity_check after the crash: {other:?}"),
            trace: vec![],
        }),
    }
    let last: Result<i64, _> = conn.query_row(
        // As the daemon computes it at start-up (store::writer::load_revisions).
        "SELECT MAX((SELECT value FROM meta WHERE key = 'last_revision'),
                    COALESCE((SELECT MAX(revision) FROM history), 0))",
        [],
        |r| r.get(0),
    );
    match last {
        Ok(last) if last as u64 >= max_seen => {}
        other => out.push(Violation {
            what: format!(
                "after the crash the database's last revision is {other:?}, but {max_seen} was acknowledged or delivered"
            ),
            trace: vec![],
        }),
    }
    out
}

/// `get` of every execution answers its last committed state, which holds
/// every text appended since its messages were last replaced, once.
async fn check_current_states(
    socket: &std::path::Path,
    history: &History,
    record: &Record,
) -> Vec<Violation> {
    use stigmer_proto::agentexecution::AgentExecutionId;
    use stigmer_proto::daemon::{request::Command as Cmd, response, Code};
    let mut out = Vec::new();
    let mut wire = Wire::connect(socket).await.expect("connect");
    for (id, entries) in history {
        let resp = wire
            .call(Cmd::Get(AgentExecutionId { value: id.clone() }))
            .await
            .expect("get");
        let (last_rev, last) = entries.last().expect("non-empty");
        if let Some(response::Result::Execution(r)) = &resp.result {
            let e = r.execution.as_ref().expect("execution");
            out.extend(check_final_texts(record, history, id, e));
        }
        let ok = match (&resp.result, last) {
            (Some(response::Result::Execution(r)), Entry::State(s)) => {
                r.revision == *last_rev && State::of(r.execution.as_ref().expect("e")) == *s
            }
            (Some(response::Result::Execution(r)), Entry::Appended { terminal }) => {
                r.revision == *last_rev
                    && State::of(r.execution.as_ref().expect("e")).terminal == *terminal
            }
            (Some(response::Result::Error(e)), Entry::Deleted) => e.code == Code::NotFound as i32,
            _ => false,
        };
        if !ok {
            out.push(Violation {
                what: format!("get {id} does not answer its last committed change"),
                trace: vec![
                    format!("committed rev {last_rev}: {last:?}"),
                    format!("got {resp:?}"),
                ],
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The checker checks: each broken guarantee is caught.

fn st(hash: u64, terminal: bool) -> Entry {
    Entry::State(State {
        hash,
        terminal,
        summary: format!("s{hash}"),
    })
}

fn ev(kind: i32, revision: u64, state: Option<(u64, bool)>, reason: i32) -> Ev {
    Ev {
        kind,
        revision,
        state: state.map(|(hash, terminal)| State {
            hash,
            terminal,
            summary: format!("s{hash}"),
        }),
        reason,
        prev_revision: 0,
        problem: None,
    }
}

fn delta(revision: u64, prev_revision: u64, state: (u64, bool)) -> Ev {
    Ev {
        prev_revision,
        ..ev(DELTA, revision, Some(state), 0)
    }
}

fn seg(from: Option<u64>, events: Vec<Ev>) -> Segment {
    Segment {
        execution: "aex-x".into(),
        from,
        events,
        outcome: Outcome::Ended,
        cancelled: false,
        resumed: false,
        deltas: false,
        skip: false,
        base: None,
    }
}

fn dseg(from: Option<u64>, skip: Option<u64>, events: Vec<Ev>) -> Segment {
    Segment {
        deltas: true,
        skip: skip.is_some(),
        base: skip,
        ..seg(from, events)
    }
}

fn check(h: &[(u64, Entry)], s: &Segment) -> Result<(), String> {
    let mut cursor = s.from;
    check_segment(h, s, &mut cursor, false).map_err(|v| v.to_string())
}

#[test]
fn checker_accepts_a_correct_stream_and_catches_each_broken_guarantee() {
    use stigmer_proto::daemon::EndReason;
    let terminal = EndReason::Terminal as i32;
    let h = vec![(3, st(1, false)), (7, st(2, false)), (9, st(3, true))];
    // Correct: snapshot, updates, terminal, END.
    let good = seg(
        None,
        vec![
            ev(SNAPSHOT, 3, Some((1, false)), 0),
            ev(UPDATE, 7, Some((2, false)), 0),
            ev(UPDATE, 9, Some((3, true)), 0),
            ev(END, 9, None, terminal),
        ],
    );
    check(&h, &good).expect("a correct stream passes");
    // Resume from 3 starts exactly at 7.
    let resumed = seg(
        Some(3),
        vec![
            ev(UPDATE, 7, Some((2, false)), 0),
            ev(UPDATE, 9, Some((3, true)), 0),
            ev(END, 9, None, terminal),
        ],
    );
    check(&h, &resumed).expect("a correct resume passes");
    let cases: Vec<(&str, Segment)> = vec![
        (
            "gap",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 3, Some((1, false)), 0),
                    ev(UPDATE, 9, Some((3, true)), 0),
                ],
            ),
        ),
        (
            "not after",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 7, Some((2, false)), 0),
                    ev(UPDATE, 7, Some((2, false)), 0),
                ],
            ),
        ),
        (
            "not the committed one",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 3, Some((1, false)), 0),
                    ev(UPDATE, 7, Some((99, false)), 0),
                ],
            ),
        ),
        (
            "gap",
            seg(
                Some(3),
                vec![
                    ev(UPDATE, 9, Some((3, true)), 0),
                    ev(END, 9, None, terminal),
                ],
            ),
        ),
        (
            "before the terminal state",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 7, Some((2, false)), 0),
                    ev(END, 7, None, terminal),
                ],
            ),
        ),
        (
            "after the terminal state",
            seg(
                Some(7),
                vec![
                    ev(UPDATE, 9, Some((3, true)), 0),
                    ev(UPDATE, 10, Some((4, false)), 0),
                ],
            ),
        ),
        (
            "RESYNC",
            seg(Some(0), vec![ev(RESYNC, 7, Some((2, false)), 0)]),
        ),
    ];
    for (want, s) in cases {
        let err = check(&h, &s).expect_err(want);
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            err.contains("committed rev"),
            "the trace shows the history: {err}"
        );
    }
    // A resume that does not start from the last revision delivered.
    let log = SubLog {
        subscriber: 0,
        mode: Mode::Disconnector,
        segments: vec![
            seg(None, vec![ev(SNAPSHOT, 3, Some((1, false)), 0)]),
            Segment {
                resumed: true,
                ..seg(Some(7), vec![ev(UPDATE, 9, Some((3, true)), 0)])
            },
        ],
    };
    let mut h2 = History::new();
    h2.insert("aex-x".into(), h.clone());
    let v = check_subscribers(&[log], &h2, false, &mut Checked::default());
    assert!(v.iter().any(|v| v.what.contains("resumed from")), "{v:?}");
}

#[test]
fn checker_accepts_correct_delta_streams_and_catches_each_broken_one() {
    use stigmer_proto::daemon::EndReason;
    let terminal = EndReason::Terminal as i32;
    let h = vec![(3, st(1, false)), (7, st(2, false)), (9, st(3, true))];
    let end = ev(END, 9, None, terminal);
    // From the start: the snapshot, then each change as operations whose
    // rebuilt state is the committed one.
    let good = dseg(
        None,
        None,
        vec![
            ev(SNAPSHOT, 3, Some((1, false)), 0),
            delta(7, 3, (2, false)),
            delta(9, 7, (3, true)),
            end.clone(),
        ],
    );
    check(&h, &good).expect("a correct delta stream passes");
    // Resumed from 8 with the initial state: the state at 7 (the last
    // change at or before 8), then the change after 8.
    let resumed = dseg(
        Some(8),
        None,
        vec![
            ev(SNAPSHOT, 7, Some((2, false)), 0),
            delta(9, 7, (3, true)),
            end.clone(),
        ],
    );
    check(&h, &resumed).expect("a resume with the initial state passes");
    // Resumed from 8 holding the state at 7: the change after 8 at once.
    let skipped = dseg(Some(8), Some(7), vec![delta(9, 7, (3, true)), end.clone()]);
    check(&h, &skipped).expect("a resume skipping the initial state passes");
    let snapshot = ev(SNAPSHOT, 3, Some((1, false)), 0);
    let broken = Ev {
        problem: Some("the DELTA's operations do not apply to the state at 3".into()),
        ..delta(7, 3, (2, false))
    };
    let cases: Vec<(&str, Segment)> = vec![
        (
            "the stream's last state is at",
            dseg(None, None, vec![snapshot.clone(), delta(7, 2, (2, false))]),
        ),
        (
            "not the committed one (as rebuilt from the DELTA)",
            dseg(None, None, vec![snapshot.clone(), delta(7, 3, (99, false))]),
        ),
        (
            "do not apply",
            dseg(None, None, vec![snapshot.clone(), broken]),
        ),
        (
            "did not ask for deltas",
            seg(None, vec![snapshot.clone(), delta(7, 3, (2, false))]),
        ),
        (
            "did not start with the state at 8",
            dseg(Some(8), None, vec![delta(9, 7, (3, true))]),
        ),
        (
            "last change at or before 8 is Some(7)",
            dseg(
                Some(8),
                None,
                vec![snapshot.clone(), delta(9, 7, (3, true))],
            ),
        ),
        (
            "a SNAPSHOT that is not the first event",
            dseg(Some(8), Some(7), vec![ev(SNAPSHOT, 7, Some((2, false)), 0)]),
        ),
        (
            "the stream's last state is at Some(3)",
            dseg(Some(8), Some(3), vec![delta(9, 7, (3, true))]),
        ),
        (
            "the execution's change before 9 is Some(7)",
            dseg(Some(8), Some(3), vec![delta(9, 3, (3, true))]),
        ),
        (
            "a whole state (UPDATE) on a delta stream",
            dseg(
                None,
                None,
                vec![snapshot.clone(), ev(UPDATE, 7, Some((2, false)), 0)],
            ),
        ),
        (
            "gap",
            dseg(None, None, vec![snapshot.clone(), delta(9, 3, (3, true))]),
        ),
    ];
    for (want, s) in cases {
        let err = check(&h, &s).expect_err(want);
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            err.contains("committed rev"),
            "the trace shows the history: {err}"
        );
    }
}

#[test]
fn appended_texts_are_checked_in_every_state() {
    use stigmer_proto::agentexecution::{AgentExecution, AgentExecutionStatus, AgentMessage};
    let state = |contents: &[&str]| AgentExecution {
        status: Some(AgentExecutionStatus {
            messages: contents
                .iter()
                .map(|c| AgentMessage {
                    content: c.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let fact = |message_index, offset, text: &str| Fact {
        execution: "aex-x".into(),
        message_index,
        offset,
        text: text.into(),
    };
    let e = state(&["w0 n1 x", "<a1.1:é><a1.2:>", "<a2.1:🦀>"]);
    assert_eq!(check_texts(&e, &[fact(1, 9, "<a1.2:>")]), None);
    assert!(check_texts(&e, &[fact(1, 0, "<a1.2:>")])
        .expect("misplaced")
        .contains("is not there"));
    assert!(check_texts(&e, &[fact(3, 0, "<a1.2:>")])
        .expect("no such message")
        .contains("is not there"));
    let twice = state(&["<a1.1:é><a1.2:>", "<a1.1:é>"]);
    assert!(check_texts(&twice, &[])
        .expect("twice")
        .contains("<a1.1:…> is there twice"));
}

// ---------------------------------------------------------------------------
// Regressions found by the torture runs.

/// Found by `watch_guarantees_with_resync_beyond_retention`: a resume from
/// before a delete, once the history before the delete was pruned, answered
/// NOT_FOUND instead of END_REASON_DELETED at the delete's revision (and a
/// stream that had to resync onto a deleted execution ended DELETED at its
/// old revision instead of the delete's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_a_deleted_execution_beyond_retention_ends_deleted() {
    use stigmer_proto::apiresource::ApiResourceId;
    use stigmer_proto::daemon::{request::Command as Cmd, response, Code, EndReason};
    let d = common::Daemon::start(&["--history-retention", "4"]);
    let mut c = d.connect().await;
    let (x, _) = c.create("x").await;
    for n in 0..3 {
        common::expect_execution(c.update(&x, common::ai_status(&format!("{n}"))).await);
    }
    let (y, _) = c.create("y").await;
    let deleted = match c
        .call(Cmd::Delete(ApiResourceId { value: x.clone() }))
        .await
        .result
    {
        Some(response::Result::Deleted(d)) => d.revision,
        other => panic!("{other:?}"),
    };
    // One more write prunes x's creation but keeps its delete.
    common::expect_execution(c.update(&y, common::ai_status("y")).await);
    let s = c.subscribe(&x, Some(0)).await;
    let end = c.event(s).await;
    assert_eq!(
        (end.r#type, end.reason, end.revision),
        (END, EndReason::Deleted as i32, deleted)
    );
    // Once the delete itself is pruned the daemon has no trace of x.
    for n in 0..10 {
        common::expect_execution(c.update(&y, common::ai_status(&format!("{n}"))).await);
    }
    let s = c.subscribe(&x, Some(0)).await;
    common::expect_error(&c.recv(s).await, Code::NotFound);
}

/// Found by `watch_guarantees_with_resync_beyond_retention`: a stream from
/// revision R whose history read found nothing after R, racing with the
/// commit of the execution's terminal update (or of an update and a
/// delete), re-read the current state, saw it terminal (or gone) and ended
/// with END_REASON_TERMINAL without the terminal update (or NOT_FOUND /
/// END_REASON_DELETED without the update before the delete). Each
/// iteration races a resume against those commits; the stream must deliver
/// every change after R, then END.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_racing_with_the_final_commits_delivers_them_before_end() {
    use stigmer_proto::agentexecution::ExecutionPhase;
    use stigmer_proto::apiresource::ApiResourceId;
    use stigmer_proto::daemon::{request::Command as Cmd, response, EndReason, SubscribeRequest};
    let d = common::Daemon::start(&[]);
    let mut writer = d.connect().await;
    let mut reader = d.connect().await;
    for n in 0..150u64 {
        let (id, created) = writer.create("race").await;
        let delete = n % 2 == 1;
        // Both sides are sent before either reply is read.
        let sub = reader.next_id();
        reader
            .send(
                sub,
                Cmd::Subscribe(SubscribeRequest {
                    execution_id: id.clone(),
                    from_revision: Some(created),
                    ..Default::default()
                }),
            )
            .await;
        let u = writer.next_id();
        let last = if delete {
            writer
                .send(
                    u,
                    Cmd::UpdateStatus(
                        stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput {
                            execution_id: id.clone(),
                            status: Some(common::ai_status("last words")),
                        },
                    ),
                )
                .await;
            let del = writer.next_id();
            writer
                .send(del, Cmd::Delete(ApiResourceId { value: id.clone() }))
                .await;
            common::expect_execution(writer.recv(u).await);
            match writer.recv(del).await.result {
                Some(response::Result::Deleted(d)) => d.revision,
                other => panic!("{other:?}"),
            }
        } else {
            writer
                .send(
                    u,
                    Cmd::UpdateStatus(
                        stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput {
                            execution_id: id.clone(),
                            status: Some(common::phase(ExecutionPhase::ExecutionCompleted)),
                        },
                    ),
                )
                .await;
            common::expect_execution(writer.recv(u).await).1
        };
        let events = reader.events_until_end(sub).await;
        let end = events.last().expect("END");
        if delete {
            assert_eq!(events.len(), 2, "iteration {n}: {events:?}");
            assert_eq!(events[0].r#type, UPDATE, "iteration {n}: {events:?}");
            assert_eq!(
                (end.reason, end.revision),
                (EndReason::Deleted as i32, last)
            );
        } else {
            assert_eq!(events.len(), 2, "iteration {n}: {events:?}");
            assert_eq!(events[0].revision, last, "iteration {n}: {events:?}");
            assert_eq!(
                (end.reason, end.revision),
                (EndReason::Terminal as i32, last)
            );
        }
    }
}

/// Found by `watch_guarantees_with_resync_beyond_retention` (seed
/// 1796522701380580945): a delta stream resumed from revision R without
/// `skip_initial_state`, where the state at R can no longer be rebuilt
/// (the base it was built on was pruned after a newer base replaced it)
/// but R is still above the compaction floor, got no initial state and
/// no RESYNC: its first event was a DELTA on R, which the client, holding
/// nothing, cannot apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_resume_whose_base_was_pruned_starts_with_a_whole_state() {
    use stigmer_proto::daemon::{
        op, request::Command as Cmd, response, AppendRequest, AppendText, Op, SubscribeRequest,
    };
    // Pruning starts once 9 revisions are past the floor: revision 9
    // prunes revision 1.
    let d = common::Daemon::start(&["--history-retention", "8"]);
    let mut c = d.connect().await;
    // Revision 1: x is created (its first base).
    let (x, _) = c.create("x").await;
    // Revisions 2-6: appends, stored as deltas on that base.
    let mut offset = 0;
    let mut r = 0;
    for n in 0..5 {
        let text = format!("t{n} ");
        let resp = c
            .call(Cmd::Append(AppendRequest {
                execution_id: x.clone(),
                expected_revision: None,
                ops: vec![Op {
                    op: Some(op::Op::AppendText(AppendText {
                        message_index: 0,
                        offset,
                        text: text.clone(),
                        r#type: 0,
                    })),
                }],
            }))
            .await;
        r = match resp.result {
            Some(response::Result::Execution(reply)) => reply.revision,
            other => panic!("expected an acknowledgement, got {other:?}"),
        };
        offset += text.len() as u64;
    }
    // Revision 7: a whole status that replaces the message: a new base,
    // which releases the old chain (revisions 1-6) to pruning.
    common::expect_execution(c.update(&x, common::ai_status("replaced")).await);
    // Revisions 8-9 on another execution: the floor passes revision 1
    // (x's old base) but not R = 6.
    let (y, _) = c.create("y").await;
    common::expect_execution(c.update(&y, common::ai_status("y")).await);
    // A delta stream from R, asking for the state at R.
    let s = c.next_id();
    c.send(
        s,
        Cmd::Subscribe(SubscribeRequest {
            execution_id: x.clone(),
            from_revision: Some(r),
            deltas: true,
            skip_initial_state: false,
            ..Default::default()
        }),
    )
    .await;
    let first = c.event(s).await;
    assert!(
        [SNAPSHOT, UPDATE, RESYNC].contains(&first.r#type),
        "a delta stream from {r} without skip_initial_state must start with a whole state \
         (the state at {r}, or a RESYNC if it cannot be rebuilt); got {first:?}"
    );
}

/// Found by a long run of `watch_guarantees_with_resync_beyond_retention`
/// (30,000 writes, 8 writers, 36 subscribers, 16 executions, seed
/// 1796523275933464956): an appender's `get` answered INTERNAL "a history
/// row between its base and its head is missing". `reader::get` reads the
/// execution's row and then the chain of history rows in separate
/// statements, outside a transaction: a write committed between them that
/// gives the execution a new base deletes the old chain's rows below the
/// compaction floor, which the read then misses. Here a writer keeps
/// building chains (appends) and replacing them (a whole status: a new
/// base), with a history of 4 revisions so that every chain is below the
/// floor, while a reader gets the execution as fast as it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_racing_with_a_new_base_never_misses_the_chain() {
    use stigmer_proto::agentexecution::AgentExecutionId;
    use stigmer_proto::daemon::{
        op, request::Command as Cmd, response, AppendRequest, AppendText, Op,
    };
    let d = common::Daemon::start(&["--history-retention", "4"]);
    let mut w = d.connect().await;
    let (x, _) = w.create("x").await;
    let socket = d.socket.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let x = x.clone();
        tokio::spawn(async move {
            let mut r = common::Raw::connect(&socket).await;
            let mut gets = 0u64;
            while !stop.load(Ordering::Acquire) {
                let resp = r
                    .call(Cmd::Get(AgentExecutionId { value: x.clone() }))
                    .await;
                gets += 1;
                if let Some(response::Result::Error(e)) = resp.result {
                    return Err(format!("get {gets} answered {e:?}"));
                }
            }
            Ok(gets)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut rounds = 0;
    while Instant::now() < deadline && !reader.is_finished() {
        rounds += 1;
        // A chain: a base (the whole status), then appends on it.
        let text = format!("round {rounds} ");
        common::expect_execution(w.update(&x, common::ai_status(&text)).await);
        let mut offset = text.len() as u64;
        for n in 0..8 {
            let t = format!("t{n} ");
            let resp = w
                .call(Cmd::Append(AppendRequest {
                    execution_id: x.clone(),
                    expected_revision: None,
                    ops: vec![Op {
                        op: Some(op::Op::AppendText(AppendText {
                            message_index: 0,
                            offset,
                            text: t.clone(),
                            r#type: 0,
                        })),
                    }],
                }))
                .await;
            assert!(
                matches!(resp.result, Some(response::Result::Execution(_))),
                "{resp:?}"
            );
            offset += t.len() as u64;
        }
    }
    stop.store(true, Ordering::Release);
    let gets = reader.await.expect("reader");
    assert!(gets.is_ok(), "after {rounds} rounds: {}", gets.unwrap_err());
}
