//! Property tests of the delta operations: `diff` then `apply_all`
//! rebuilds the new status, ops apply once, refused ops change nothing,
//! appends with stale retries leave each text once (random statuses and
//! growths, 512 cases each). Messages carry tool calls of their own
//! (random ids, some empty or repeated), and growths change them as a
//! runner does (a call added, one completed, while the text grows), so
//! `put_message_tool_call` and its fallback `replace_message` are covered.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::{append, call, is_conflict};
use super::*;
use crate::agentexecution::{
    AgentExecutionStatus, AgentMessage, SubAgentExecution, TodoItem, ToolCall,
};
use crate::apiresource::ApiResourceAudit;
use crate::daemon::{op, Op};
use Outcome::{AlreadyApplied, Applied};

fn text() -> impl Strategy<Value = String> {
    "[a-cé€😀 ]{0,6}"
}

fn message() -> impl Strategy<Value = AgentMessage> {
    (
        0i32..5,
        text(),
        "[0-9]{0,2}",
        0usize..2,
        proptest::collection::vec(tool_call(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(t, content, ts, calls, random, pick)| AgentMessage {
            r#type: t,
            content,
            timestamp: ts,
            // Distinct ids, or random ones (some empty or repeated).
            tool_calls: if pick {
                random
            } else {
                (0..calls).map(|i| call(&i.to_string(), "")).collect()
            },
            metadata: None,
        })
}

fn tool_call() -> impl Strategy<Value = ToolCall> {
    ("[a-d]{0,1}", text(), 0i32..5).prop_map(|(id, result, status)| ToolCall {
        id,
        result,
        status,
        name: "tool".into(),
        ..Default::default()
    })
}

fn sub_agent() -> impl Strategy<Value = SubAgentExecution> {
    ("[a-d]{0,1}", text(), 0i32..5).prop_map(|(id, output, status)| SubAgentExecution {
        id,
        output,
        status,
        ..Default::default()
    })
}

fn todo() -> impl Strategy<Value = TodoItem> {
    (text(), 0i32..5).prop_map(|(content, status)| TodoItem {
        content,
        status,
        ..Default::default()
    })
}

fn status() -> impl Strategy<Value = AgentExecutionStatus> {
    (
        proptest::collection::vec(message(), 0..4),
        1i32..9,
        proptest::collection::vec(tool_call(), 0..4),
        proptest::collection::vec(sub_agent(), 0..3),
        "[a-z]{0,2}",
        "[0-9]{0,2}",
        "[0-9]{0,2}",
        proptest::collection::btree_map("[a-c]{0,1}", todo(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(messages, phase, tool_calls, subs, error, started, completed, todos, audit)| {
                AgentExecutionStatus {
                    messages,
                    phase,
                    tool_calls,
                    sub_agent_executions: subs,
                    error,
                    started_at: started,
                    completed_at: completed,
                    todos,
                    callback_token: Default::default(),
                    audit: audit.then(ApiResourceAudit::default),
                }
            },
        )
}

/// Changes a status the way a runner extends it between two updates.
#[derive(Debug, Clone)]
struct Growth {
    appends: Vec<(usize, String)>,
    added: Vec<AgentMessage>,
    results: Vec<(usize, String)>,
    calls: Vec<ToolCall>,
    edit_call: Option<(usize, ToolCall)>,
    /// Tool calls added to message `.0`'s own list.
    message_calls: Vec<(usize, ToolCall)>,
    /// Message `.0`'s tool call `.1` changed to this one (its id kept).
    edit_message_call: Option<(usize, usize, ToolCall)>,
    subs: Vec<SubAgentExecution>,
    todos: BTreeMap<String, Option<TodoItem>>,
    phase: Option<i32>,
    error: Option<String>,
}

fn growth() -> impl Strategy<Value = Growth> {
    (
        proptest::collection::vec((0usize..4, text()), 0..4),
        proptest::collection::vec(message(), 0..3),
        proptest::collection::vec((0usize..4, text()), 0..3),
        proptest::collection::vec(tool_call(), 0..2),
        proptest::option::of((0usize..4, tool_call())),
        proptest::collection::vec((0usize..4, tool_call()), 0..3),
        proptest::option::of((0usize..4, 0usize..3, tool_call())),
        proptest::collection::vec(sub_agent(), 0..2),
        proptest::collection::btree_map("[a-d]{0,1}", proptest::option::of(todo()), 0..3),
        proptest::option::of(1i32..9),
        proptest::option::of("[a-z]{0,2}"),
    )
        .prop_map(
            |(
                appends,
                added,
                results,
                calls,
                edit_call,
                message_calls,
                edit_message_call,
                subs,
                todos,
                phase,
                error,
            )| Growth {
                appends,
                added,
                results,
                calls,
                edit_call,
                message_calls,
                edit_message_call,
                subs,
                todos,
                phase,
                error,
            },
        )
}

fn grow(old: &AgentExecutionStatus, g: &Growth) -> AgentExecutionStatus {
    let mut new = old.clone();
    for (i, text) in &g.appends {
        if let Some(m) = new.messages.get_mut(*i) {
            m.content.push_str(text);
        }
    }
    if let Some((i, j, c)) = &g.edit_message_call {
        if let Some(existing) = new
            .messages
            .get_mut(*i)
            .and_then(|m| m.tool_calls.get_mut(*j))
        {
            let id = existing.id.clone();
            *existing = ToolCall { id, ..c.clone() };
        }
    }
    for (i, c) in &g.message_calls {
        if let Some(m) = new.messages.get_mut(*i) {
            m.tool_calls.push(c.clone());
        }
    }
    new.messages.extend(g.added.iter().cloned());
    for (i, text) in &g.results {
        if let Some(c) = new.tool_calls.get_mut(*i) {
            c.result.push_str(text);
        }
    }
    if let Some((i, c)) = &g.edit_call {
        if let Some(existing) = new.tool_calls.get_mut(*i) {
            let id = existing.id.clone();
            *existing = ToolCall { id, ..c.clone() };
        }
    }
    new.tool_calls.extend(g.calls.iter().cloned());
    new.sub_agent_executions.extend(g.subs.iter().cloned());
    for (key, item) in &g.todos {
        match item {
            Some(item) => {
                new.todos.insert(key.clone(), item.clone());
            }
            None => {
                new.todos.remove(key);
            }
        }
    }
    if let Some(p) = g.phase {
        new.phase = p;
    }
    if let Some(e) = &g.error {
        new.error = e.clone();
    }
    new
}

/// `new` as the daemon would hold it: audit and callback token are old's.
fn normalized(old: &AgentExecutionStatus, mut new: AgentExecutionStatus) -> AgentExecutionStatus {
    new.audit = old.audit.clone();
    new.callback_token = old.callback_token.clone();
    new
}

fn pair() -> impl Strategy<Value = (AgentExecutionStatus, AgentExecutionStatus)> {
    (status(), growth(), status(), 0u8..4).prop_map(|(old, g, other, pick)| {
        let new = if pick == 0 { other } else { grow(&old, &g) };
        let new = normalized(&old, new);
        (old, new)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The diff rebuilds the new status exactly.
    #[test]
    fn diff_then_apply_rebuilds((old, new) in pair()) {
        let ops = diff(&old, &new);
        let mut rebuilt = old.clone();
        let changed = apply_all(&mut rebuilt, &ops);
        prop_assert_eq!(changed, Ok(!ops.is_empty()));
        prop_assert_eq!(&rebuilt, &new);
        prop_assert!(ops.iter().all(|o| !matches!(o.op, Some(op::Op::Stamp(_)))));
    }

    /// Applying the same ops again changes nothing and acknowledges each.
    #[test]
    fn ops_apply_once((old, new) in pair()) {
        let ops = diff(&old, &new);
        let mut s = old.clone();
        prop_assert!(apply_all(&mut s, &ops).is_ok());
        let once = s.clone();
        for o in &ops {
            prop_assert_eq!(apply(&mut s, o), Ok(AlreadyApplied), "{:?}", o);
        }
        prop_assert_eq!(s, once);
    }

    /// Ops that do not fit a status (diffs of other statuses, random
    /// appends) are refused without changing it, or fit it.
    #[test]
    fn refused_ops_change_nothing(
        mut s in status(),
        (a, b) in pair(),
        appends in proptest::collection::vec((0u32..5, 0u64..30, text()), 0..6),
    ) {
        let mut ops = diff(&a, &b);
        ops.extend(appends.iter().map(|(i, offset, t)| append(*i, *offset, t)));
        for o in &ops {
            let before = s.clone();
            if apply(&mut s, o).is_err() {
                prop_assert_eq!(&s, &before);
            }
        }
    }

    /// Appends with stale retries and wrong offsets: each text once.
    #[test]
    fn appends_with_retries_leave_each_text_once(
        steps in proptest::collection::vec((0u8..3, any::<prop::sample::Index>(), "[a-cé😀]{1,4}", 0u64..40), 1..40)
    ) {
        let mut s = AgentExecutionStatus::default();
        let mut sent: Vec<Op> = Vec::new();
        let mut expected = String::new();
        for (kind, pick, text, offset) in steps {
            let len = expected.len() as u64;
            match kind {
                0 => {
                    let o = append(0, len, &text);
                    prop_assert_eq!(apply(&mut s, &o), Ok(Applied));
                    expected.push_str(&text);
                    sent.push(o);
                }
                1 if !sent.is_empty() => {
                    let o = &sent[pick.index(sent.len())];
                    prop_assert_eq!(apply(&mut s, o), Ok(AlreadyApplied));
                }
                _ => {
                    let o = append(0, offset, &text);
                    let r = apply(&mut s, &o);
                    if offset == len && !sent.is_empty() {
                        prop_assert_eq!(r, Ok(Applied));
                        expected.push_str(&text);
                        sent.push(o);
                    } else if offset > len || (sent.is_empty() && offset != 0) {
                        prop_assert!(is_conflict(r));
                    } else if sent.is_empty() {
                        // Offset 0 of the message this creates.
                        prop_assert_eq!(r, Ok(Applied));
                        expected.push_str(&text);
                        sent.push(o);
                    } else {
                        prop_assert!(r != Ok(Applied));
                    }
                }
            }
            let content = s.messages.first().map(|m| m.content.as_str()).unwrap_or("");
            prop_assert_eq!(content, expected.as_str());
        }
    }
}

/// The pairs above do reach the message tool call paths: among 512 of them,
/// some diffs put a message's tool call and some replace a message.
#[test]
fn pairs_cover_message_tool_calls() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut puts, mut replaces) = (0, 0);
    for _ in 0..512 {
        let (old, new) = pair().new_tree(&mut runner).expect("a pair").current();
        for o in diff(&old, &new) {
            match o.op {
                Some(op::Op::PutMessageToolCall(_)) => puts += 1,
                Some(op::Op::ReplaceMessage(_)) => replaces += 1,
                _ => {}
            }
        }
    }
    assert!(
        puts > 20 && replaces > 20,
        "{puts} puts, {replaces} replaces"
    );
}
