//! Random workloads against many-execution streams (issue 17): for random
//! creates, updates, appends, terminal phases and deletes in two sessions,
//! a session stream equals the merge, in revision order, of the
//! per-execution streams of that session, for every start point. It holds
//! for a watcher that stalls through the workload (its queue overflows and
//! it catches up from history) and across a daemon restart (it resumes from
//! its last revision), for whole-state and delta streams.

mod common;

use std::collections::BTreeMap;

use common::watch::*;
use common::*;
use proptest::prelude::*;
use stigmer_proto::agentexecution::{AgentExecution, ExecutionPhase};
use stigmer_proto::daemon::{EndReason, Event, EventType};

const SESSIONS: [&str; 2] = ["s0", "s1"];

/// One step of a workload.
#[derive(Clone, Debug)]
enum Step {
    Create { session: usize },
    Update { pick: usize },
    Append { pick: usize },
    Finish { pick: usize },
    Delete { pick: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..2usize).prop_map(|session| Step::Create { session }),
        3 => any::<usize>().prop_map(|pick| Step::Update { pick }),
        3 => any::<usize>().prop_map(|pick| Step::Append { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Finish { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Delete { pick }),
    ]
}

/// What the workload did, as the tests predict the streams from it.
#[derive(Default)]
struct Model {
    /// Executions alive and not terminal: (id, session, bytes of message 0).
    open: Vec<(String, usize, u64)>,
    /// Executions alive and terminal: (id, session).
    finished: Vec<(String, usize)>,
    /// Every execution ever created, with its session.
    sessions: BTreeMap<String, usize>,
    /// Each execution's last change (its delete included).
    last_change: BTreeMap<String, u64>,
    /// Each session's last change.
    session_last: [u64; 2],
    /// The last revision committed.
    last: u64,
    /// The execution the step being run changed.
    changed: Option<String>,
}

impl Model {
    async fn run(&mut self, c: &mut Raw, step: &Step) {
        let before = self.last;
        self.apply(c, step).await;
        if self.last > before {
            // The step changed one execution: the one whose change is newest.
            if let Some(id) = self.changed.take() {
                let session = self.sessions[&id];
                self.last_change.insert(id, self.last);
                self.session_last[session] = self.last;
            }
        }
    }

    async fn apply(&mut self, c: &mut Raw, step: &Step) {
        match *step {
            Step::Create { session } => {
                let (id, rev) = create_in(c, SESSIONS[session]).await;
                // A first message to append to.
                self.last = rev.max(update(c, &id, "").await);
                self.sessions.insert(id.clone(), session);
                self.changed = Some(id.clone());
                self.open.push((id, session, 0));
            }
            Step::Update { pick } if !self.open.is_empty() => {
                let n = pick % self.open.len();
                let text = format!("whole {pick}");
                self.last = update(c, &self.open[n].0, &text).await;
                self.open[n].2 = text.len() as u64;
                self.changed = Some(self.open[n].0.clone());
            }
            Step::Append { pick } if !self.open.is_empty() => {
                let n = pick % self.open.len();
                let (id, _, offset) = &mut self.open[n];
                let token = format!("t{} ", pick % 1000);
                self.last = append_text(c, id, *offset, &token).await;
                *offset += token.len() as u64;
                self.changed = Some(id.clone());
            }
            Step::Finish { pick } if !self.open.is_empty() => {
                let (id, session, _) = self.open.remove(pick % self.open.len());
                let done = phase(ExecutionPhase::ExecutionCompleted);
                self.last = expect_execution(c.update(&id, done).await).1;
                self.changed = Some(id.clone());
                self.finished.push((id, session));
            }
            Step::Delete { pick } => {
                let alive: Vec<String> = self
                    .open
                    .iter()
                    .map(|o| o.0.clone())
                    .chain(self.finished.iter().map(|f| f.0.clone()))
                    .collect();
                if alive.is_empty() {
                    return;
                }
                let id = &alive[pick % alive.len()];
                self.last = delete(c, id).await;
                self.changed = Some(id.clone());
                self.open.retain(|o| &o.0 != id);
                self.finished.retain(|f| &f.0 != id);
            }
            _ => {}
        }
    }
}

/// A change as both kinds of stream show it: revision, execution, and the
/// state after it (`None`: deleted).
type Seen = (u64, String, Option<AgentExecution>);

/// The changes of a whole-state many-execution stream's events (the
/// bookmarks left out).
fn changes(events: &[Event]) -> Vec<Seen> {
    events
        .iter()
        .filter(|e| e.r#type != EventType::EventBookmark as i32)
        .map(|e| (e.revision, e.execution_id.clone(), e.execution.clone()))
        .collect()
}

/// The merge, in revision order, of the one-execution streams from `from`
/// of every execution of `session`, up to `last`.
async fn merged(c: &mut Raw, model: &Model, session: usize, from: u64, last: u64) -> Vec<Seen> {
    let mut out = Vec::new();
    for (id, _) in model.sessions.iter().filter(|(_, s)| **s == session) {
        let changed = model.last_change[id];
        if changed <= from {
            // Nothing after `from`: its stream would only wait.
            continue;
        }
        let mut sub = c.subscribe(id, Some(from)).await;
        loop {
            let resp = c.recv(sub).await;
            let Some(stigmer_proto::daemon::response::Result::Event(e)) = resp.result else {
                // NOT_FOUND: deleted at or before `from`.
                break;
            };
            if e.r#type == EventType::EventEnd as i32 {
                if e.reason == EndReason::Deleted as i32 && e.revision > from {
                    out.push((e.revision, id.clone(), None));
                }
                if e.reason == EndReason::Terminal as i32 && changed > e.revision {
                    // Deleted after it finished: a resume from there ends
                    // with the delete.
                    sub = c.subscribe(id, Some(e.revision)).await;
                    continue;
                }
                break;
            }
            out.push((e.revision, id.clone(), e.execution.clone()));
            if e.revision >= changed.min(last) {
                // Caught up: a live stream would wait here.
                cancel(c, sub).await;
                break;
            }
        }
    }
    out.sort_by_key(|s| s.0);
    out
}

/// Every revision a session stream may start from: 0 and each revision of
/// the workload.
async fn check_every_start(c: &mut Raw, model: &Model) {
    for (session, name) in SESSIONS.iter().enumerate() {
        let last = model.session_last[session];
        for from in 0..last {
            let expected = merged(c, model, session, from, last).await;
            let sub = watch(c, Sel::Session(name), Some(from), false).await;
            let events = events_until(c, sub, last).await;
            cancel(c, sub).await;
            assert_ordered(&events);
            assert_eq!(changes(&events), expected, "session {name} from {from}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn session_streams_equal_the_merged_execution_streams(
        before in proptest::collection::vec(step(), 10..40),
        after in proptest::collection::vec(step(), 5..20),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            // A small queue: the stalled watchers overflow and catch up.
            let mut d = Daemon::start(&["--subscriber-queue", "2", "--connection-queue", "4"]);
            let mut c = d.connect().await;
            let mut model = Model::default();
            // Watchers opened first and not read until the workload is done:
            // whole-state and delta, per session.
            let mut watchers = Vec::new();
            for (session, name) in SESSIONS.iter().enumerate() {
                for deltas in [false, true] {
                    let mut w = d.connect().await;
                    let sub = watch(&mut w, Sel::Session(name), None, deltas).await;
                    watchers.push((session, deltas, w, sub));
                }
            }
            for s in &before {
                model.run(&mut c, s).await;
            }
            // Each stalled watcher reads its list and catches up.
            let mut seen = Vec::new();
            for (session, deltas, mut w, sub) in watchers {
                let mut events = initial_list(&mut w, sub).await;
                let listed = events.last().map_or(0, |e| e.revision);
                let last = model.session_last[session];
                if last > listed {
                    events.extend(events_until(&mut w, sub, last).await);
                }
                seen.push((session, deltas, events));
            }
            d.stop();
            d.restart();
            let mut c = d.connect().await;
            for s in &after {
                model.run(&mut c, s).await;
            }
            // Each watcher resumes from its last revision; its cache then
            // equals the store.
            for (session, deltas, mut events) in seen {
                let from = events.last().map_or(0, |e| e.revision);
                let sub = watch(&mut c, Sel::Session(SESSIONS[session]), Some(from), deltas).await;
                let last = model.session_last[session];
                if last > from {
                    events.extend(events_until(&mut c, sub, last).await);
                }
                cancel(&mut c, sub).await;
                assert_ordered(&events);
                let mut cache = Cache::default();
                for e in &events {
                    cache.apply(e);
                }
                for (id, _) in model.sessions.iter().filter(|(_, s)| **s == session) {
                    let stored = get(&mut c, id).await.map(|(state, rev)| (rev, state));
                    assert_eq!(cache.states.get(id).cloned(), stored, "{id}, deltas {deltas}");
                }
            }
            check_every_start(&mut c, &model).await;
        });
    }
}
