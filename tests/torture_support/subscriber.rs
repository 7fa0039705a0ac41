//! The subscribers: six kinds (fast, slow, stalling, disconnecting, past
//! readers, cancelling), each stream whole-state or delta, each following
//! an execution to its END and resuming after drops and crashes, recording
//! every event and, on a delta stream, the state it rebuilds. The watchers
//! (`watcher`) share its reading of a frame (`event_of`), its slow and
//! stalling readers' pauses (`pause`) and its record of an event
//! (`receive`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::{
    request::Command as Cmd, response, Code, Event, Response, SubscribeRequest,
};

use super::record::{
    Ev, Fact, Mode, Outcome, Segment, SubLog, CREATED, DELTA, END, RESYNC, SNAPSHOT, UPDATE,
};
use super::rng::Rng;
use super::shared::Shared;
use super::state::State;
use super::texts::check_texts;
use super::wire::{Closed, Wire, STUCK};

/// One subscriber: picks executions and follows them the way its mode says,
/// until the workload is done.
pub async fn subscriber(
    shared: Arc<Shared>,
    s: usize,
    mut rng: Rng,
    max_stall: Duration,
) -> SubLog {
    let mode = Mode::of(s);
    let mut log = SubLog {
        subscriber: s,
        mode,
        segments: Vec::new(),
    };
    let mut conn: Option<(Wire, u64)> = None;
    for _round in 0..200 {
        if shared.done.load(Ordering::Acquire) {
            break;
        }
        let picked = {
            let r = shared.record();
            let pool = if !r.live.is_empty() && rng.percent(85) {
                &r.live
            } else {
                &r.ids
            };
            (!pool.is_empty()).then(|| {
                (
                    pool[rng.below(pool.len() as u64) as usize].clone(),
                    r.max_seen,
                )
            })
        };
        let Some((execution, max_rev)) = picked else {
            // Nothing created yet: wait for the next acknowledged write.
            let mut acked = shared.acked.subscribe();
            let _ = tokio::time::timeout(STUCK, acked.changed()).await;
            continue;
        };
        let from = if mode == Mode::PastReader {
            match rng.below(3) {
                0 => Some(0),
                1 => {
                    let r = shared.record();
                    let own: Vec<u64> = r
                        .acks
                        .iter()
                        .filter(|(_, (e, _))| *e == execution)
                        .map(|(rev, _)| *rev)
                        .collect();
                    own.get(rng.below(own.len() as u64) as usize)
                        .copied()
                        .or(Some(0))
                }
                _ => Some(rng.below(max_rev + 1)),
            }
        } else {
            None
        };
        // Half the streams ask for deltas, in every mode.
        let deltas = rng.percent(50);
        follow(
            &shared, &mut log, &mut conn, &mut rng, mode, execution, from, deltas, max_stall,
        )
        .await;
    }
    log
}

/// Follows one execution until its stream ends (resuming after drops).
#[allow(clippy::too_many_arguments)]
async fn follow(
    shared: &Shared,
    log: &mut SubLog,
    conn: &mut Option<(Wire, u64)>,
    rng: &mut Rng,
    mode: Mode,
    execution: String,
    mut from: Option<u64>,
    deltas: bool,
    max_stall: Duration,
) {
    let mut resumed = false;
    // A delta stream's state: the last whole state received with the
    // operations of every later DELTA applied, and its revision. Kept
    // across resumes, as the client libraries keep it.
    let mut held: Option<(AgentExecution, u64)> = None;
    // Events to read before dropping the connection (disconnectors) or
    // cancelling (cancellers).
    let mut budget = 1 + rng.below(25);
    loop {
        if conn.is_none() {
            *conn = Some(shared.connect().await);
        }
        let (wire, g) = conn.as_mut().expect("connected");
        let g = *g;
        let sub = wire.id();
        // A resumed delta stream may skip the state it already holds.
        let skip = deltas && resumed && from.is_some() && held.is_some() && rng.percent(50);
        let mut seg = Segment {
            execution: execution.clone(),
            from,
            events: Vec::new(),
            outcome: Outcome::Open,
            cancelled: false,
            resumed,
            deltas,
            skip,
            base: held.as_ref().filter(|_| skip).map(|(_, r)| *r),
        };
        let sent = wire
            .send(
                sub,
                Cmd::Subscribe(SubscribeRequest {
                    execution_id: execution.clone(),
                    from_revision: from,
                    deltas,
                    skip_initial_state: skip,
                    ..Default::default()
                }),
            )
            .await;
        let mut cancel_id = None;
        let mut stalled = false;
        if sent.is_err() {
            seg.outcome = Outcome::Dropped;
        }
        while sent.is_ok() {
            let next = match tokio::time::timeout(STUCK, wire.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    seg.outcome = Outcome::Broken(format!(
                        "no frame for {}s (done: {})",
                        STUCK.as_secs(),
                        shared.done.load(Ordering::Acquire)
                    ));
                    break;
                }
            };
            let resp = match next {
                Ok(resp) => resp,
                Err(Closed) => {
                    seg.outcome = Outcome::Dropped;
                    break;
                }
            };
            if Some(resp.id) == cancel_id {
                match resp.result {
                    Some(response::Result::Cancelled(_)) => {}
                    Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => {}
                    other => {
                        seg.outcome = Outcome::Broken(format!("cancel answered {other:?}"));
                        break;
                    }
                }
                continue;
            }
            let Ok(event) = event_of(resp, sub).map_err(|outcome| seg.outcome = outcome) else {
                break;
            };
            shared.events.fetch_add(1, Ordering::Relaxed);
            let facts = shared.observe(wire.daemon, &execution, event.revision);
            seg.events.push(receive(&event, &mut held, &facts));
            if event.r#type == END {
                seg.outcome = Outcome::Ended;
                break;
            }
            // The mode's behaviour between reads.
            match mode {
                Mode::Fast | Mode::PastReader => {}
                Mode::Slow | Mode::Staller => {
                    pause(shared, rng, mode, max_stall, &mut stalled).await;
                }
                Mode::Disconnector => {
                    budget = budget.saturating_sub(1);
                    if budget == 0 {
                        break;
                    }
                }
                Mode::Canceller => {
                    budget = budget.saturating_sub(1);
                    if budget == 0 && cancel_id.is_none() {
                        seg.cancelled = true;
                        cancel_id = wire.cancel(sub).await.ok();
                        if cancel_id.is_none() {
                            seg.outcome = Outcome::Dropped;
                            break;
                        }
                    }
                }
            }
        }
        let ended = matches!(
            seg.outcome,
            Outcome::Ended | Outcome::Error(..) | Outcome::Broken(_)
        );
        if matches!(seg.outcome, Outcome::Open) {
            // A disconnector's voluntary drop.
            seg.outcome = Outcome::Dropped;
            *conn = None;
        } else if matches!(seg.outcome, Outcome::Dropped) {
            // A crash: wait for the restart (or go to another daemon).
            *conn = None;
            shared.lost(g).await;
        } else if seg.cancelled {
            // Drain a cancel reply that may still be on its way.
            *conn = None;
        }
        // The last revision received (a delta stream's initial state may
        // be older than the revision it resumed from: the execution's last
        // change at or before it).
        let cursor = seg
            .events
            .iter()
            .rev()
            .find(|e| e.kind != END)
            .map(|e| e.revision)
            .max(from);
        log.segments.push(seg);
        if ended {
            return;
        }
        shared.resumes.fetch_add(1, Ordering::Relaxed);
        from = cursor;
        resumed = true;
        budget = 1 + rng.below(25);
    }
}

/// The event a frame for stream `sub` carries; or, for an error reply, a
/// frame for another id or anything but an event, the outcome that ends
/// the stream's segment. A watcher's frames too.
pub fn event_of(resp: Response, sub: u64) -> Result<Event, Outcome> {
    if resp.id != sub {
        return Err(Outcome::Broken(format!(
            "a frame for id {} arrived on a stream with id {sub}: {:?}",
            resp.id, resp.result
        )));
    }
    match resp.result {
        Some(response::Result::Event(e)) => Ok(e),
        Some(response::Result::Error(e)) => Err(Outcome::Error(e.code, e.message)),
        other => Err(Outcome::Broken(format!("not an event: {other:?}"))),
    }
}

/// A slow or stalling reader's pause between reads (of a subscriber or a
/// watcher): a slow one sleeps a few milliseconds; a staller up to
/// `max_stall` after the first event (`stalled` says it was), and now and
/// then again while the workload runs (so that streams of both kinds
/// overflow their queues and catch up from history).
pub async fn pause(
    shared: &Shared,
    rng: &mut Rng,
    mode: Mode,
    max_stall: Duration,
    stalled: &mut bool,
) {
    match mode {
        Mode::Slow => {
            tokio::time::sleep(Duration::from_millis(1 + rng.below(8))).await;
        }
        Mode::Staller => {
            let again = !shared.stop_writing.load(Ordering::Acquire) && rng.percent(3);
            if !*stalled || again {
                *stalled = true;
                let ms = rng.below(max_stall.as_millis() as u64 + 1);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        _ => {}
    }
}

/// Records one event; on a delta stream, keeps `held` (the state the
/// stream describes) up to date: a whole state replaces it, a DELTA's
/// operations apply to it. Every state, whole or rebuilt, is checked for
/// its appended texts (`facts`: those acknowledged at its revision). A
/// watcher calls it with the state it holds of the event's execution.
pub fn receive(event: &Event, held: &mut Option<(AgentExecution, u64)>, facts: &[Fact]) -> Ev {
    let mut ev = Ev::of(event);
    let mut problem = None;
    match event.r#type {
        SNAPSHOT | UPDATE | RESYNC | CREATED => {
            if let Some(e) = &event.execution {
                problem = check_texts(e, facts);
                *held = Some((e.clone(), event.revision));
            }
        }
        DELTA => {
            if event.execution.is_some() {
                problem = Some("a DELTA carrying a whole state".into());
            }
            match held.as_mut() {
                None => {
                    problem = Some("a DELTA with no state to apply it to".into());
                }
                Some((e, revision)) => {
                    // A broken chain (prev_revision) is the checker's to
                    // report; the operations are applied regardless.
                    let status = e.status.get_or_insert_with(Default::default);
                    match stigmer_proto::delta::apply_all(status, &event.ops) {
                        Ok(_) => {}
                        Err(err) => {
                            problem = Some(format!(
                                "the DELTA's operations do not apply to the state at {revision}: {err}"
                            ));
                        }
                    }
                    *revision = event.revision;
                    ev.state = Some(State::of(e));
                    problem = problem.or_else(|| check_texts(e, facts));
                }
            }
        }
        _ => {}
    }
    ev.problem = problem;
    ev
}
