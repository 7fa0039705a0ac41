//! Unit tests of the delta operations: each op's rules (`apply.rs`), the
//! commit stamp (`stamp.rs`), `diff`'s minimal ops (`diff.rs`) and a
//! stored chain's replay (`replay.rs`), case by case. The helpers here are shared with the property tests
//! (`proptests.rs`).

use super::diff::op;
use super::stamp::MAX_SECONDS;
use super::*;
use crate::agentexecution::{
    AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType, SubAgentExecution, TodoItem,
    TodoStatus, ToolCall,
};
use crate::daemon::{
    op, AddMessage, AppendText, AppendToolResult, Messages, Op, PutMessageToolCall, PutTodo,
    ReplaceMessage, SubAgents, ToolCalls,
};
use crate::wkt::Timestamp;

fn wrap(o: op::Op) -> Op {
    op(o)
}

fn msg(r#type: MessageType, text: &str) -> AgentMessage {
    AgentMessage {
        r#type: r#type as i32,
        content: text.into(),
        ..Default::default()
    }
}

pub(super) fn append(index: u32, offset: u64, text: &str) -> Op {
    wrap(op::Op::AppendText(AppendText {
        message_index: index,
        offset,
        text: text.into(),
        r#type: 0,
    }))
}

pub(super) fn call(id: &str, result: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "read".into(),
        result: result.into(),
        ..Default::default()
    }
}

pub(super) fn is_conflict(r: Result<Outcome, ApplyError>) -> bool {
    matches!(r, Err(ApplyError::Conflict(_)))
}

fn is_invalid(r: Result<Outcome, ApplyError>) -> bool {
    matches!(r, Err(ApplyError::Invalid(_)))
}

use Outcome::{AlreadyApplied, Applied};

#[test]
fn append_text_creates_appends_and_acknowledges() {
    let mut s = AgentExecutionStatus::default();
    assert_eq!(apply(&mut s, &append(0, 0, "héllo")), Ok(Applied));
    assert_eq!(s.messages, vec![msg(MessageType::MessageAi, "héllo")]);
    assert_eq!(apply(&mut s, &append(0, 6, " wörld")), Ok(Applied));
    assert_eq!(s.messages[0].content, "héllo wörld");
    // Retries: the text is already there.
    assert_eq!(apply(&mut s, &append(0, 0, "héllo")), Ok(AlreadyApplied));
    assert_eq!(apply(&mut s, &append(0, 6, " wörld")), Ok(AlreadyApplied));
    assert_eq!(apply(&mut s, &append(0, 3, "llo")), Ok(AlreadyApplied));
    assert_eq!(apply(&mut s, &append(0, 13, "")), Ok(AlreadyApplied));
    assert_eq!(s.messages[0].content, "héllo wörld");
    // Stale or wrong offsets.
    let r = apply(&mut s, &append(0, 6, " world"));
    assert_eq!(
        r,
        Err(ApplyError::Conflict(
            "message 0 is 13 bytes long and does not hold this text at offset 6".into()
        ))
    );
    assert!(is_conflict(apply(&mut s, &append(0, 14, "x"))));
    assert!(
        is_conflict(apply(&mut s, &append(0, 10, "rld!"))),
        "partial overlap"
    );
    assert!(
        matches!(
            apply(&mut s, &append(0, 2, "x")),
            Err(ApplyError::Conflict(_))
        ),
        "inside é: a stale offset"
    );
    // Creation only at the count, only at offset 0.
    assert!(is_conflict(apply(&mut s, &append(2, 0, "x"))));
    assert!(is_conflict(apply(&mut s, &append(1, 3, "x"))));
    assert_eq!(s.messages.len(), 1);
    let human = wrap(op::Op::AppendText(AppendText {
        message_index: 1,
        offset: 0,
        text: String::new(),
        r#type: MessageType::MessageHuman as i32,
    }));
    assert_eq!(apply(&mut s, &human), Ok(Applied), "creating is a change");
    assert_eq!(s.messages[1], msg(MessageType::MessageHuman, ""));
    assert_eq!(apply(&mut s, &human), Ok(AlreadyApplied));
    let unknown = wrap(op::Op::AppendText(AppendText {
        message_index: 2,
        offset: 0,
        text: "x".into(),
        r#type: 42,
    }));
    assert!(is_invalid(apply(&mut s, &unknown)));
    assert!(is_conflict(apply(&mut s, &append(0, u64::MAX, "x"))));
}

#[test]
fn add_and_replace_message() {
    let mut s = AgentExecutionStatus::default();
    let add = |index, m: &AgentMessage| {
        wrap(op::Op::AddMessage(AddMessage {
            index,
            message: Some(m.clone()),
        }))
    };
    let a = msg(MessageType::MessageHuman, "hi");
    let b = msg(MessageType::MessageAi, "yo");
    assert_eq!(apply(&mut s, &add(0, &a)), Ok(Applied));
    assert_eq!(apply(&mut s, &add(1, &b)), Ok(Applied));
    assert_eq!(apply(&mut s, &add(0, &a)), Ok(AlreadyApplied));
    assert!(is_conflict(apply(&mut s, &add(0, &b))));
    assert!(is_conflict(apply(&mut s, &add(3, &b))));
    let none = wrap(op::Op::AddMessage(AddMessage {
        index: 2,
        message: None,
    }));
    assert_eq!(apply(&mut s, &none), Ok(Applied));
    assert_eq!(s.messages[2], AgentMessage::default());
    let bad = AgentMessage {
        r#type: 9,
        ..Default::default()
    };
    assert!(is_invalid(apply(&mut s, &add(3, &bad))));
    let replace = |index, m: &AgentMessage| {
        wrap(op::Op::ReplaceMessage(ReplaceMessage {
            index,
            message: Some(m.clone()),
        }))
    };
    assert_eq!(apply(&mut s, &replace(2, &a)), Ok(Applied));
    assert_eq!(apply(&mut s, &replace(2, &a)), Ok(AlreadyApplied));
    assert!(is_conflict(apply(&mut s, &replace(3, &a))));
    let all = wrap(op::Op::ReplaceMessages(Messages {
        messages: vec![b.clone()],
    }));
    assert_eq!(apply(&mut s, &all), Ok(Applied));
    assert_eq!(apply(&mut s, &all), Ok(AlreadyApplied));
    assert_eq!(s.messages, vec![b]);
}

#[test]
fn tool_calls_by_id() {
    let mut s = AgentExecutionStatus::default();
    let put = |c: ToolCall| wrap(op::Op::PutToolCall(c));
    assert_eq!(apply(&mut s, &put(call("a", ""))), Ok(Applied));
    assert_eq!(apply(&mut s, &put(call("b", ""))), Ok(Applied));
    assert_eq!(apply(&mut s, &put(call("a", "r"))), Ok(Applied));
    assert_eq!(apply(&mut s, &put(call("a", "r"))), Ok(AlreadyApplied));
    assert_eq!(s.tool_calls, vec![call("a", "r"), call("b", "")]);
    assert!(is_invalid(apply(&mut s, &put(call("", "")))));
    let mut unknown = call("c", "");
    unknown.status = 17;
    assert!(is_invalid(apply(&mut s, &put(unknown))));
    let res = |id: &str, offset, text: &str| {
        wrap(op::Op::AppendToolResult(AppendToolResult {
            tool_call_id: id.into(),
            offset,
            text: text.into(),
        }))
    };
    assert_eq!(apply(&mut s, &res("a", 1, "ésumé")), Ok(Applied));
    assert_eq!(s.tool_calls[0].result, "résumé");
    assert_eq!(apply(&mut s, &res("a", 1, "ésumé")), Ok(AlreadyApplied));
    assert!(is_conflict(apply(&mut s, &res("a", 1, "x"))));
    assert!(
        is_conflict(apply(&mut s, &res("a", 2, "x"))),
        "inside é: stale"
    );
    assert!(is_conflict(apply(&mut s, &res("zz", 0, "x"))));
    assert!(is_invalid(apply(&mut s, &res("", 0, "x"))));
    let all = wrap(op::Op::ReplaceToolCalls(ToolCalls {
        tool_calls: vec![call("b", "")],
    }));
    assert_eq!(apply(&mut s, &all), Ok(Applied));
    assert_eq!(apply(&mut s, &all), Ok(AlreadyApplied));
}

pub(super) fn put_in_message(index: u32, c: ToolCall) -> Op {
    wrap(op::Op::PutMessageToolCall(PutMessageToolCall {
        message_index: index,
        tool_call: Some(c),
    }))
}

#[test]
fn message_tool_calls_by_id() {
    let mut s = AgentExecutionStatus {
        messages: vec![
            msg(MessageType::MessageHuman, "q"),
            msg(MessageType::MessageAi, "an"),
        ],
        tool_calls: vec![call("a", "status-level")],
        ..Default::default()
    };
    let put = put_in_message;
    // Insert: appended at the end of that message's list.
    assert_eq!(apply(&mut s, &put(1, call("a", ""))), Ok(Applied));
    assert_eq!(apply(&mut s, &put(1, call("b", ""))), Ok(Applied));
    // Replace by id, in place.
    assert_eq!(apply(&mut s, &put(1, call("a", "r"))), Ok(Applied));
    assert_eq!(apply(&mut s, &put(1, call("a", "r"))), Ok(AlreadyApplied));
    assert_eq!(
        s.messages[1].tool_calls,
        vec![call("a", "r"), call("b", "")]
    );
    assert_eq!(s.messages[1].content, "an", "nothing else of it changes");
    assert!(s.messages[0].tool_calls.is_empty(), "only that message");
    assert_eq!(
        s.tool_calls,
        vec![call("a", "status-level")],
        "the status's own tool calls are another list"
    );
    // Repeated ids (as a whole status may hold): the first one is replaced.
    s.messages[0].tool_calls = vec![call("d", "1"), call("d", "2")];
    assert_eq!(apply(&mut s, &put(0, call("d", "3"))), Ok(Applied));
    assert_eq!(
        s.messages[0].tool_calls,
        vec![call("d", "3"), call("d", "2")]
    );
    let before = s.clone();
    // Refusals: an empty or missing tool call (Invalid, checked before the
    // index), an unknown status (Invalid), an index past the messages
    // (Conflict: it never creates a message). Nothing changes.
    assert_eq!(
        apply(&mut s, &put(1, call("", ""))),
        Err(ApplyError::Invalid(
            "put_message_tool_call: the tool call's id is empty".into()
        ))
    );
    assert!(is_invalid(apply(&mut s, &put(9, call("", "")))));
    let missing = wrap(op::Op::PutMessageToolCall(PutMessageToolCall {
        message_index: 0,
        tool_call: None,
    }));
    assert!(is_invalid(apply(&mut s, &missing)));
    let mut unknown = call("c", "");
    unknown.status = 17;
    assert_eq!(
        apply(&mut s, &put(1, unknown)),
        Err(ApplyError::Invalid(
            "put_message_tool_call.tool_call.status: unknown enum value 17".into()
        ))
    );
    assert_eq!(
        apply(&mut s, &put(2, call("c", ""))),
        Err(ApplyError::Conflict(
            "there are 2 messages: message 2 does not exist".into()
        ))
    );
    assert!(is_conflict(apply(&mut s, &put(u32::MAX, call("c", "")))));
    assert_eq!(s, before);
}

#[test]
fn sub_agents_by_id() {
    let mut s = AgentExecutionStatus::default();
    let sub = |id: &str, output: &str| SubAgentExecution {
        id: id.into(),
        output: output.into(),
        ..Default::default()
    };
    let put = |x| wrap(op::Op::PutSubAgent(x));
    assert_eq!(apply(&mut s, &put(sub("x", ""))), Ok(Applied));
    assert_eq!(apply(&mut s, &put(sub("x", "done"))), Ok(Applied));
    assert_eq!(apply(&mut s, &put(sub("x", "done"))), Ok(AlreadyApplied));
    assert!(is_invalid(apply(&mut s, &put(sub("", "")))));
    assert_eq!(s.sub_agent_executions, vec![sub("x", "done")]);
    let all = wrap(op::Op::ReplaceSubAgents(SubAgents {
        sub_agent_executions: vec![],
    }));
    assert_eq!(apply(&mut s, &all), Ok(Applied));
    assert_eq!(apply(&mut s, &all), Ok(AlreadyApplied));
}

#[test]
fn todos() {
    let mut s = AgentExecutionStatus::default();
    let item = TodoItem {
        id: "t".into(),
        content: "read".into(),
        status: TodoStatus::TodoPending as i32,
        ..Default::default()
    };
    let put = |key: &str, item: &TodoItem| {
        wrap(op::Op::PutTodo(PutTodo {
            key: key.into(),
            item: Some(item.clone()),
        }))
    };
    assert_eq!(apply(&mut s, &put("t", &item)), Ok(Applied));
    assert_eq!(apply(&mut s, &put("t", &item)), Ok(AlreadyApplied));
    assert_eq!(apply(&mut s, &put("", &item)), Ok(Applied), "the empty key");
    let mut bad = item.clone();
    bad.status = 99;
    assert!(is_invalid(apply(&mut s, &put("u", &bad))));
    let remove = |key: &str| wrap(op::Op::RemoveTodo(key.into()));
    assert_eq!(apply(&mut s, &remove("t")), Ok(Applied));
    assert_eq!(apply(&mut s, &remove("t")), Ok(AlreadyApplied));
    assert_eq!(s.todos.keys().collect::<Vec<_>>(), vec![""]);
}

#[test]
fn scalars() {
    let mut s = AgentExecutionStatus::default();
    let phase = |p: i32| wrap(op::Op::SetPhase(p));
    assert!(is_invalid(apply(&mut s, &phase(0))));
    assert!(is_invalid(apply(&mut s, &phase(42))));
    assert_eq!(apply(&mut s, &phase(2)), Ok(Applied));
    assert_eq!(apply(&mut s, &phase(2)), Ok(AlreadyApplied));
    for (o, get) in [
        (
            op::Op::SetError("boom".into()),
            (|s: &AgentExecutionStatus| s.error.clone()) as fn(&_) -> String,
        ),
        (op::Op::SetStartedAt("t0".into()), |s| s.started_at.clone()),
        (op::Op::SetCompletedAt("t1".into()), |s| {
            s.completed_at.clone()
        }),
    ] {
        let o = wrap(o);
        assert_eq!(apply(&mut s, &o), Ok(Applied));
        assert_eq!(apply(&mut s, &o), Ok(AlreadyApplied));
        assert!(!get(&s).is_empty());
    }
    assert!(is_invalid(apply(&mut s, &Op { op: None })));
}

fn t(seconds: i64, nanos: i32) -> Timestamp {
    Timestamp { seconds, nanos }
}

/// The same strings as the daemon's own `stamps_started_and_completed_once`
/// (src/pipeline/update_status.rs).
#[test]
fn stamps_started_and_completed_once() {
    let mut s = AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionCompleted as i32,
        ..Default::default()
    };
    let now = t(1_700_000_000, 0);
    stamp(&mut s, &now);
    assert_eq!(s.started_at, "2023-11-14T22:13:20.000000Z");
    assert_eq!(s.completed_at, s.started_at);
    stamp(&mut s, &t(1_700_000_005, 0));
    assert_eq!(
        s.completed_at, "2023-11-14T22:13:20.000000Z",
        "never overwritten"
    );
    let info = s.audit.and_then(|a| a.status_audit).unwrap_or_default();
    assert_eq!(info.event, "status_updated");
    assert_eq!(info.created_at, Some(now));
    assert_eq!(info.updated_at, Some(t(1_700_000_005, 0)));
}

#[test]
fn stamp_rules() {
    let mut pending = AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionPending as i32,
        ..Default::default()
    };
    stamp(&mut pending, &t(1, 999_999_999));
    assert_eq!(pending.started_at, "");
    let mut running = AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        ..Default::default()
    };
    stamp(&mut running, &t(1, 123_456_789));
    assert_eq!(
        running.started_at, "1970-01-01T00:00:01.123456Z",
        "truncated"
    );
    assert_eq!(running.completed_at, "");
    let o = wrap(op::Op::Stamp(t(-1, 0)));
    assert!(is_invalid(apply(&mut running, &o)));
    let o = wrap(op::Op::Stamp(t(MAX_SECONDS + 1, 0)));
    assert!(is_invalid(apply(&mut running, &o)));
    let o = wrap(op::Op::Stamp(t(5, 1_000_000_000)));
    assert!(is_invalid(apply(&mut running, &o)));
    let o = wrap(op::Op::Stamp(t(MAX_SECONDS, 999_999_999)));
    assert_eq!(apply(&mut running, &o), Ok(Applied));
    assert_eq!(apply(&mut running, &o), Ok(Applied), "always Applied");
    // The public function never panics, even out of range.
    stamp(&mut running, &t(i64::MIN, i32::MIN));
    assert_eq!(
        rfc3339(&t(i64::MAX, i32::MAX)),
        "9999-12-31T23:59:59.999999Z"
    );
    for p in 0..10 {
        assert_eq!(is_terminal_phase(p), [3, 4, 5, 8].contains(&p), "{p}");
    }
}

#[test]
fn apply_all_reports_change_and_position() {
    let mut s = AgentExecutionStatus::default();
    let ops = vec![append(0, 0, "ab"), append(0, 2, "c")];
    assert_eq!(apply_all(&mut s, &ops), Ok(true));
    assert_eq!(apply_all(&mut s, &ops), Ok(false));
    let err = apply_all(&mut s, &[append(0, 3, "d"), append(0, 9, "e")]);
    assert_eq!(
        err,
        Err(ApplyError::Conflict(
            "ops[1]: message 0 is 4 bytes long; offset 9 is past its end".into()
        ))
    );
}

#[test]
fn diff_is_minimal_for_extensions() {
    let old = AgentExecutionStatus {
        messages: vec![
            msg(MessageType::MessageHuman, "q"),
            msg(MessageType::MessageAi, "an"),
        ],
        tool_calls: vec![call("a", "x")],
        phase: 2,
        ..Default::default()
    };
    let mut new = old.clone();
    new.messages[1].content.push_str("swer");
    new.messages.push(msg(MessageType::MessageAi, "more"));
    new.tool_calls[0].result.push('y');
    new.tool_calls.push(call("b", ""));
    new.phase = 3;
    let ops = diff(&old, &new);
    let kinds: Vec<_> = ops.iter().filter_map(|o| o.op.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            op::Op::AppendText(AppendText {
                message_index: 1,
                offset: 2,
                text: "swer".into(),
                r#type: MessageType::MessageAi as i32,
            }),
            op::Op::AddMessage(AddMessage {
                index: 2,
                message: Some(msg(MessageType::MessageAi, "more")),
            }),
            op::Op::AppendToolResult(AppendToolResult {
                tool_call_id: "a".into(),
                offset: 1,
                text: "y".into(),
            }),
            op::Op::PutToolCall(call("b", "")),
            op::Op::SetPhase(3),
        ]
    );
    assert!(diff(&new, &new).is_empty());
    // Not an extension: removed or reordered.
    let mut fewer = old.clone();
    fewer.messages.pop();
    fewer.tool_calls.clear();
    let ops = diff(&old, &fewer);
    assert!(matches!(ops[0].op, Some(op::Op::ReplaceMessages(_))));
    assert!(matches!(ops[1].op, Some(op::Op::ReplaceToolCalls(_))));
}

/// Upstream's runner pattern (clients/python/examples/agent_runner.py
/// --mode full): the whole status every few tokens, while the AI message's
/// content grows and its own copy of the tool calls gains a call or
/// completes one. Each change is its text and the tool calls that changed,
/// never the whole message.
#[test]
fn diff_of_a_message_streaming_text_and_tool_calls() {
    let running = |id: &str| ToolCall {
        id: id.into(),
        name: "search_logs".into(),
        status: crate::agentexecution::ToolCallStatus::ToolCallRunning as i32,
        ..Default::default()
    };
    let completed = |id: &str| ToolCall {
        status: crate::agentexecution::ToolCallStatus::ToolCallCompleted as i32,
        result: "3 matches".into(),
        ..running(id)
    };
    let mut old = AgentExecutionStatus {
        messages: vec![
            msg(MessageType::MessageHuman, "summarize the logs"),
            msg(MessageType::MessageAi, "the logs show "),
        ],
        tool_calls: vec![running("call-1")],
        phase: ExecutionPhase::ExecutionInProgress as i32,
        ..Default::default()
    };
    old.messages[1].tool_calls = vec![running("call-1")];
    // The next update: more text, call-1 completed, call-2 started, in both
    // the status's list and the message's.
    let mut new = old.clone();
    new.messages[1].content.push_str("a steady rise ");
    new.messages[1].tool_calls = vec![completed("call-1"), running("call-2")];
    new.tool_calls = vec![completed("call-1"), running("call-2")];
    let ops = diff(&old, &new);
    let kinds: Vec<_> = ops.iter().filter_map(|o| o.op.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            op::Op::AppendText(AppendText {
                message_index: 1,
                offset: 14,
                text: "a steady rise ".into(),
                r#type: MessageType::MessageAi as i32,
            }),
            op::Op::PutMessageToolCall(PutMessageToolCall {
                message_index: 1,
                tool_call: Some(completed("call-1")),
            }),
            op::Op::PutMessageToolCall(PutMessageToolCall {
                message_index: 1,
                tool_call: Some(running("call-2")),
            }),
            op::Op::PutToolCall(completed("call-1")),
            op::Op::PutToolCall(running("call-2")),
        ]
    );
    let mut rebuilt = old.clone();
    assert_eq!(apply_all(&mut rebuilt, &ops), Ok(true));
    assert_eq!(rebuilt, new);
    assert_eq!(apply_all(&mut rebuilt, &ops), Ok(false), "applies once");
    // Only the tool calls changed (no new text): no append_text.
    let mut done = new.clone();
    done.messages[1].tool_calls[1] = completed("call-2");
    let ops = diff(&new, &done);
    assert_eq!(ops, vec![put_in_message(1, completed("call-2"))], "{ops:?}");
    // Not a keyed extension of the message's tool calls, or another part of
    // the message changed: replace_message, as before.
    let replaced = |to: &AgentExecutionStatus| {
        let ops = diff(&new, to);
        assert!(
            matches!(ops.as_slice(), [o] if matches!(o.op, Some(op::Op::ReplaceMessage(_)))),
            "{ops:?}"
        );
        let mut rebuilt = new.clone();
        assert_eq!(apply_all(&mut rebuilt, &ops), Ok(true));
        assert_eq!(&rebuilt, to);
    };
    let mut removed = new.clone();
    removed.messages[1].tool_calls.pop();
    replaced(&removed);
    let mut reordered = new.clone();
    reordered.messages[1].tool_calls.reverse();
    replaced(&reordered);
    let mut empty_id = new.clone();
    empty_id.messages[1].tool_calls.push(running(""));
    replaced(&empty_id);
    let mut repeated = new.clone();
    repeated.messages[1].tool_calls.push(running("call-1"));
    replaced(&repeated);
    let mut rewritten = new.clone();
    rewritten.messages[1].content = "the logs say".into();
    rewritten.messages[1].tool_calls.push(running("call-3"));
    replaced(&rewritten);
    let mut stamped = new.clone();
    stamped.messages[1].timestamp = "t1".into();
    stamped.messages[1].tool_calls.push(running("call-3"));
    replaced(&stamped);
}

#[test]
fn replay_applies_the_deltas_after_a_base_in_order() {
    use crate::agentexecution::AgentExecution;
    use crate::daemon::Delta;
    use prost::Message;

    let delta = |ops: Vec<Op>| Delta { ops }.encode_to_vec();
    // A base without a status: the first delta creates it.
    let base = AgentExecution::default().encode_to_vec();
    let deltas = [
        delta(vec![append(0, 0, "hel")]),
        delta(vec![append(0, 3, "lo"), append(0, 5, "!")]),
    ];
    let state = replay(base.as_slice(), deltas.iter().map(Vec::as_slice)).expect("replays");
    let status = state.status.expect("a status");
    assert_eq!(status.messages.len(), 1);
    assert_eq!(status.messages[0].content, "hello!");

    // No delta: the base as stored.
    let whole = replay(base.as_slice(), std::iter::empty::<&[u8]>()).expect("replays");
    assert_eq!(whole, AgentExecution::default());

    // Out of order, the second delta's offset is stale: a refusal naming
    // the operation, never a state.
    let reversed = replay(base.as_slice(), deltas.iter().rev().map(Vec::as_slice));
    assert!(
        matches!(&reversed, Err(ReplayError::Apply(e)) if e.message().starts_with("ops[0]: ")),
        "{reversed:?}"
    );
    // Damaged pieces are told apart.
    assert!(matches!(
        replay(&b"\xff"[..], std::iter::empty::<&[u8]>()),
        Err(ReplayError::Base(_))
    ));
    assert!(matches!(
        replay(base.as_slice(), [&b"\xff"[..]]),
        Err(ReplayError::Delta(_))
    ));
}

#[test]
fn apply_to_creates_a_missing_status_and_answers_as_apply_all() {
    use crate::agentexecution::AgentExecution;

    let mut execution = AgentExecution::default();
    assert_eq!(apply_to(&mut execution, &[append(0, 0, "hi")]), Ok(true));
    assert_eq!(
        execution
            .status
            .as_ref()
            .map(|s| s.messages[0].content.as_str()),
        Some("hi")
    );
    // The same op again is already applied; a stale offset is refused.
    assert_eq!(apply_to(&mut execution, &[append(0, 0, "hi")]), Ok(false));
    assert!(apply_to(&mut execution, &[append(0, 1, "x")]).is_err());
}
