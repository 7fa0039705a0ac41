//! The watchers: many-execution streams (`subscribe` by `session_id`, or
//! `all`), each following its selection for the whole run: fast, slow,
//! stalling, or resuming (it drops its connection now and then and resumes
//! from the last revision it received, or now and then starts over with a
//! new list). After a crash every watcher resumes, on whichever daemon
//! answers. Each keeps the states its streams describe, as a client's
//! cache does (whole states set, DELTAs apply to the state held, deletes
//! remove), records every event, and stops once it has read up to the
//! last change of its selection: then it cancels its stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::{request::Command as Cmd, response, SubscribeRequest};

use super::record::{
    Mode, Outcome, Selection, WatchEv, WatchLog, WatchSegment, BOOKMARK, DELETED, END, RESYNC,
};
use super::rng::Rng;
use super::shared::Shared;
use super::subscriber::{event_of, pause, receive};
use super::wire::{Closed, STUCK};

/// One watcher: `Selection::of(i, …)`, `Mode::of_watcher(i)`, each stream
/// whole-state or delta at random; until it has read its selection's last
/// change (`Shared::targets`, once the run is over).
pub async fn watcher(shared: Arc<Shared>, i: usize, mut rng: Rng, max_stall: Duration) -> WatchLog {
    let mode = Mode::of_watcher(i);
    let selection = Selection::of(i, shared.sessions);
    let mut log = WatchLog {
        watcher: i,
        mode,
        selection: selection.clone(),
        segments: Vec::new(),
    };
    // The cache: each execution's state and its revision.
    let mut held: HashMap<String, (AgentExecution, u64)> = HashMap::new();
    // The last revision received (an event's or a bookmark's) since the
    // end of the last initial list: where a resume starts.
    let mut cursor: Option<u64> = None;
    let mut targets = shared.targets.subscribe();
    loop {
        let (mut wire, g) = shared.connect().await;
        let sub = wire.id();
        if cursor.is_none() {
            // A new list: a client holding nothing starts without
            // from_revision.
            held.clear();
        }
        // Whole states or deltas, on each request (a delta stream resumed
        // from R builds on the states held at R).
        let deltas = rng.percent(50);
        let mut seg = WatchSegment {
            from: cursor,
            deltas,
            events: Vec::new(),
            outcome: Outcome::Open,
            cancelled: false,
            daemon: wire.daemon,
        };
        let (session_id, all) = match &selection {
            Selection::Session(s) => (s.clone(), false),
            Selection::All => (String::new(), true),
        };
        let sent = wire
            .send(
                sub,
                Cmd::Subscribe(SubscribeRequest {
                    session_id,
                    all,
                    from_revision: cursor,
                    deltas,
                    ..Default::default()
                }),
            )
            .await;
        if sent.is_err() {
            seg.outcome = Outcome::Dropped;
        }
        // Events to read after the list before dropping the connection
        // (resuming kind); one list in ten is dropped midway instead (a
        // list is dropped at most that often, so each kind of list ends).
        let mut budget = 1 + rng.below(40);
        let mut list_budget = (cursor.is_none() && rng.percent(10)).then(|| 1 + rng.below(8));
        let mut stalled = false;
        let mut cancel_id = None;
        while sent.is_ok() {
            // Read up to the selection's last change: cancel.
            let target = targets
                .borrow()
                .as_ref()
                .map(|t| t.get(&selection).copied().unwrap_or(0));
            if cancel_id.is_none() && target.is_some_and(|t| cursor.is_some_and(|c| c >= t)) {
                seg.cancelled = true;
                cancel_id = wire.cancel(sub).await.ok();
                if cancel_id.is_none() {
                    seg.outcome = Outcome::Dropped;
                    break;
                }
            }
            let next = tokio::select! {
                next = tokio::time::timeout(STUCK, wire.recv()) => next,
                // Waits for the run's end (the targets), if not known yet.
                _ = targets.changed(), if target.is_none() => continue,
            };
            let resp = match next {
                Ok(Ok(resp)) => resp,
                Ok(Err(Closed)) => {
                    seg.outcome = Outcome::Dropped;
                    break;
                }
                Err(_) => {
                    seg.outcome = Outcome::Broken(format!(
                        "no frame for {}s (its selection's last change: {target:?})",
                        STUCK.as_secs()
                    ));
                    break;
                }
            };
            if Some(resp.id) == cancel_id {
                match resp.result {
                    Some(response::Result::Cancelled(_)) => continue,
                    other => {
                        seg.outcome = Outcome::Broken(format!("cancel answered {other:?}"));
                        break;
                    }
                }
            }
            let Ok(event) = event_of(resp, sub).map_err(|outcome| seg.outcome = outcome) else {
                break;
            };
            shared
                .events
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let execution = event.execution_id.clone();
            let ev = match event.r#type {
                BOOKMARK | RESYNC | END => {
                    if event.r#type == RESYNC {
                        held.clear();
                    }
                    super::record::Ev::of(&event)
                }
                _ => {
                    let facts = shared.observe(wire.daemon, &execution, event.revision);
                    let mut slot = held.remove(&execution);
                    let ev = receive(&event, &mut slot, &facts);
                    if let (Some(state), false) = (slot, event.r#type == DELETED) {
                        held.insert(execution.clone(), state);
                    }
                    ev
                }
            };
            let list_end = event.r#type == BOOKMARK && event.initial_events_end;
            if list_end || (cursor.is_some() && event.r#type != END) {
                cursor = Some(event.revision);
            }
            seg.events.push(WatchEv {
                execution,
                list_end,
                ev,
            });
            if event.r#type == END {
                seg.outcome = Outcome::Ended;
                break;
            }
            if cancel_id.is_some() {
                continue;
            }
            // The mode's behaviour between reads.
            match mode {
                Mode::Slow | Mode::Staller => {
                    pause(&shared, &mut rng, mode, max_stall, &mut stalled).await;
                }
                Mode::Disconnector => {
                    let left = if cursor.is_some() {
                        &mut budget
                    } else {
                        match list_budget.as_mut() {
                            Some(left) => left,
                            None => continue,
                        }
                    };
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        let outcome = seg.outcome.clone();
        log.segments.push(seg);
        match outcome {
            // Dropped by the watcher (resuming kind): resume, or now and
            // then start over with a new list.
            Outcome::Open => {
                if rng.percent(20) {
                    cursor = None;
                }
            }
            // A crash (or etcd's leader gone): resume once a daemon serves.
            Outcome::Dropped => shared.lost(g).await,
            // Cancelled at the end, or broken (the checker says how).
            Outcome::Ended | Outcome::Error(..) | Outcome::Broken(_) => return log,
        }
    }
}
