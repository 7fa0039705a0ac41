//! The executions' final states, after the run: `get` answers each one's
//! last committed change, and every text appended since its messages were
//! last replaced is there once, where it was acknowledged.

use std::collections::{HashMap, HashSet};

use stigmer_proto::agentexecution::{AgentExecution, AgentExecutionId};
use stigmer_proto::daemon::{request::Command as Cmd, response, Code};

use super::history::History;
use super::record::Record;
use super::report::Violation;
use super::state::{Entry, State};
use super::texts::{check_texts, tokens};
use super::wire::Wire;

/// `get` of every execution answers its last committed state, which holds
/// every text appended since its messages were last replaced, once.
pub async fn check_current_states(
    socket: &std::path::Path,
    history: &History,
    record: &Record,
) -> Vec<Violation> {
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

/// The appended texts in the final state `e` of `id` (`get`, after the
/// run): each acknowledged text is there exactly once, where it was
/// acknowledged, unless a later change replaced the messages (a whole
/// status, or a change whose acknowledgement a crash lost).
pub fn check_final_texts(
    record: &Record,
    history: &History,
    id: &str,
    e: &AgentExecution,
) -> Vec<Violation> {
    let empty = Vec::new();
    let replaced = record.replaced.get(id).unwrap_or(&empty);
    let unacknowledged: Vec<u64> = history
        .get(id)
        .map(|h| {
            h.iter()
                .map(|(r, _)| *r)
                .filter(|r| !record.acks.contains_key(r) && !record.retry_acks.contains_key(r))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (t, _, _) in tokens(e) {
        *count.entry(t).or_default() += 1;
    }
    let mut checked = HashSet::new();
    for (rev, facts) in &record.facts {
        if replaced.iter().chain(&unacknowledged).any(|r| r > rev) {
            continue;
        }
        for f in facts.iter().filter(|f| f.execution == id) {
            if !checked.insert(&f.text) {
                continue;
            }
            let t = &f.text[1..f.text.find(':').unwrap_or(1)];
            let n = count.get(t).copied().unwrap_or(0);
            let problem = if n != 1 {
                Some(format!("is there {n} times"))
            } else {
                check_texts(e, std::slice::from_ref(f))
            };
            if let Some(problem) = problem {
                out.push(Violation {
                    what: format!(
                        "the text {:?} appended to {id} (acknowledged at revision {rev}) {problem} in its final state",
                        f.text
                    ),
                    trace: vec![],
                });
            }
        }
    }
    out
}
