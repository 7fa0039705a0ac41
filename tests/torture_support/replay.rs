//! The daemon's own account of the committed history: every execution
//! replayed from revision 0 as whole states (each checked for its appended
//! texts), and again as a delta stream whose rebuilt states must be those.

use std::path::Path;

use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::{
    request::Command as Cmd, response, Code, EndReason, Response, SubscribeRequest,
};

use super::history::History;
use super::record::{Fact, Record, DELTA, END, UPDATE};
use super::report::Violation;
use super::state::{Entry, State};
use super::subscriber::receive;
use super::texts::check_texts;
use super::wire::{Wire, STUCK};

/// Replays every execution's history from revision 0 (the daemon keeps it
/// all when `--history-retention` is larger than the run). Each state is
/// checked for its appended texts: none twice, and those acknowledged at
/// its revision at their offsets.
pub async fn replay(socket: &Path, ids: &[String], record: &Record) -> (History, Vec<Violation>) {
    let mut wire = Wire::connect(socket).await.expect("connect for replay");
    let mut history = History::new();
    let mut violations = Vec::new();
    for id in ids {
        let sub = subscribe_from_0(&mut wire, id, false).await;
        let mut entries = Vec::new();
        loop {
            let resp = next(&mut wire, "replay").await;
            assert_eq!(resp.id, sub);
            match resp.result {
                Some(response::Result::Event(e)) if e.r#type == UPDATE => {
                    let execution = e.execution.as_ref().expect("state");
                    let facts = facts_of(record, id, e.revision);
                    if let Some(problem) = check_texts(execution, &facts) {
                        violations.push(Violation {
                            what: format!("replay of {id}, revision {}: {problem}", e.revision),
                            trace: vec![],
                        });
                    }
                    entries.push((e.revision, Entry::State(State::of(execution))));
                }
                Some(response::Result::Event(e)) if e.r#type == END => {
                    if e.reason == EndReason::Deleted as i32 {
                        entries.push((e.revision, Entry::Deleted));
                    } else if e.reason != EndReason::Terminal as i32 {
                        violations.push(Violation {
                            what: format!("replay of {id} ended with reason {}", e.reason),
                            trace: vec![],
                        });
                    }
                    break;
                }
                Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => break,
                other => {
                    violations.push(Violation {
                        what: format!("replay of {id} got {other:?}"),
                        trace: vec![],
                    });
                    break;
                }
            }
        }
        if !entries.is_empty() {
            history.insert(id.clone(), entries);
        }
    }
    (history, violations)
}

/// Subscribes to `id` from revision 0, as a delta stream (with its
/// initial state) or whole states; the stream's id.
async fn subscribe_from_0(wire: &mut Wire, id: &str, deltas: bool) -> u64 {
    let sub = wire.id();
    let request = SubscribeRequest {
        execution_id: id.to_string(),
        from_revision: Some(0),
        deltas,
        skip_initial_state: false,
        ..Default::default()
    };
    wire.send(sub, Cmd::Subscribe(request)).await.expect("send");
    sub
}

/// The next frame of a replay (`what`), within `STUCK`.
async fn next(wire: &mut Wire, what: &str) -> Response {
    tokio::time::timeout(STUCK, wire.recv())
        .await
        .unwrap_or_else(|e| panic!("{what} stuck: {e:?}"))
        .unwrap_or_else(|e| panic!("{what} connection: {e:?}"))
}

/// The texts acknowledged at `revision` of `id`.
fn facts_of(record: &Record, id: &str, revision: u64) -> Vec<Fact> {
    record
        .facts
        .get(&revision)
        .map(|f| f.iter().filter(|f| f.execution == id).cloned().collect())
        .unwrap_or_default()
}

/// Replays every execution's history from revision 0 as a delta stream
/// (the create whole, then the operations of each change), rebuilds each
/// state, and checks it against `history` revision by revision: the same
/// changes, the same states, each DELTA applying to the revision before.
/// Answers the violations and the number of DELTA events.
pub async fn replay_deltas(
    socket: &Path,
    ids: &[String],
    history: &History,
) -> (Vec<Violation>, u64) {
    let mut wire = Wire::connect(socket).await.expect("connect for replay");
    let mut violations = Vec::new();
    let mut deltas = 0;
    let empty = Vec::new();
    for id in ids {
        let sub = subscribe_from_0(&mut wire, id, true).await;
        let want = history.get(id).unwrap_or(&empty);
        let mut got: Vec<(u64, Entry)> = Vec::new();
        let mut held: Option<(AgentExecution, u64)> = None;
        let mut problem = None;
        loop {
            let resp = next(&mut wire, "delta replay").await;
            assert_eq!(resp.id, sub);
            let e = match resp.result {
                Some(response::Result::Event(e)) => e,
                Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => break,
                other => {
                    problem = Some(format!("got {other:?}"));
                    break;
                }
            };
            match e.r#type {
                UPDATE | DELTA => {
                    if e.r#type == DELTA {
                        deltas += 1;
                        let on = held.as_ref().map(|(_, r)| *r);
                        if on != Some(e.prev_revision) {
                            problem = Some(format!(
                                "the DELTA at {} applies to {}, but the last revision received is {on:?}",
                                e.revision, e.prev_revision
                            ));
                        }
                    } else if !got.is_empty() {
                        problem = Some(format!(
                            "a whole state (UPDATE) at {} for a change made by operations",
                            e.revision
                        ));
                    }
                    let ev = receive(&e, &mut held, &[]);
                    problem = problem.or(ev.problem);
                    match ev.state {
                        Some(state) => got.push((e.revision, Entry::State(state))),
                        None => problem = problem.or(Some("an event without a state".into())),
                    }
                }
                END => {
                    if e.reason == EndReason::Deleted as i32 {
                        got.push((e.revision, Entry::Deleted));
                    } else if e.reason != EndReason::Terminal as i32 {
                        problem = Some(format!("the stream ended with reason {}", e.reason));
                    }
                    break;
                }
                other => problem = Some(format!("an event of type {other}")),
            }
            if problem.is_some() {
                break;
            }
        }
        if problem.is_none() && got != *want {
            let first = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            problem = Some(format!(
                "rebuilt {} changes, committed {}; first difference at change {first}: rebuilt {:?}, committed {:?}",
                got.len(),
                want.len(),
                got.get(first).map(|(r, e)| format!("rev {r} {}", e.describe())),
                want.get(first).map(|(r, e)| format!("rev {r} {}", e.describe())),
            ));
        }
        if let Some(problem) = problem {
            violations.push(Violation {
                what: format!("delta replay of {id} from revision 0: {problem}"),
                trace: vec![],
            });
        }
    }
    (violations, deltas)
}
