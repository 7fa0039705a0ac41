//! [`diff`]: the ops that turn one status into another, minimal where the
//! new one extends the old (the daemon turns a whole `update_status` into
//! ops with it, and stores and streams those).

use std::collections::{HashMap, HashSet};

use crate::agentexecution::{AgentExecutionStatus, AgentMessage, ToolCall};
use crate::daemon::{
    op, AddMessage, AppendText, AppendToolResult, Messages, Op, PutMessageToolCall, PutTodo,
    ReplaceMessage, SubAgents, ToolCalls,
};

pub(super) fn op(op: op::Op) -> Op {
    Op { op: Some(op) }
}

/// The ops that turn `old` into `new`, for every field but `audit` and
/// `callback_token` (taken to be equal: the daemon never takes them from
/// input).
///
/// Minimal where `new` extends `old`: text appended to a message's content →
/// `append_text` at the old length; a message's own tool calls changed or
/// new in the same order (each with a non-empty id, the first with that id)
/// → `put_message_tool_call` for each, after that message's `append_text`
/// when its content grew too; new messages → `add_message`; a tool call
/// whose result grew (nothing else changed) → `append_tool_result`; changed
/// or new tool calls / sub-agents in the same order (the same id rule) →
/// `put_tool_call` / `put_sub_agent`; todos → `put_todo` / `remove_todo`;
/// phase, error, started_at, completed_at → their setters. Where a list is
/// not an extension: a message changed otherwise (its type, timestamp or
/// metadata, its content other than extended, its tool calls removed,
/// reordered, or with empty or repeated ids) → `replace_message`; fewer
/// messages → `replace_messages`; tool calls or sub-agents removed,
/// reordered, or with empty or repeated ids → `replace_tool_calls` /
/// `replace_sub_agents`. Never emits `stamp`.
///
/// The ops apply cleanly when `new` is a status `update_status` accepts
/// (every enum value known) and its phase is not UNSPECIFIED unless `old`'s
/// is too (`set_phase` refuses UNSPECIFIED; the daemon's merge never goes
/// back to it). Ops come in the order: messages (each changed one in index
/// order: its `append_text`, then its `put_message_tool_call`s, or its
/// `replace_message`; then the new ones), tool calls, sub-agents, todos,
/// phase, error, started_at, completed_at, so a phase change follows the
/// text it ends.
pub fn diff(old: &AgentExecutionStatus, new: &AgentExecutionStatus) -> Vec<Op> {
    let mut ops = Vec::new();
    diff_messages(&old.messages, &new.messages, &mut ops);
    match keyed_ops(
        &old.tool_calls,
        &new.tool_calls,
        |c| &c.id,
        |o, n| match result_suffix(o, n) {
            Some(text) => op::Op::AppendToolResult(AppendToolResult {
                tool_call_id: n.id.clone(),
                offset: o.result.len() as u64,
                text: text.to_string(),
            }),
            None => op::Op::PutToolCall(n.clone()),
        },
        |n| op::Op::PutToolCall(n.clone()),
    ) {
        Some(list) => ops.extend(list),
        None => ops.push(op(op::Op::ReplaceToolCalls(ToolCalls {
            tool_calls: new.tool_calls.clone(),
        }))),
    }
    match keyed_ops(
        &old.sub_agent_executions,
        &new.sub_agent_executions,
        |s| &s.id,
        |_, n| op::Op::PutSubAgent(n.clone()),
        |n| op::Op::PutSubAgent(n.clone()),
    ) {
        Some(list) => ops.extend(list),
        None => ops.push(op(op::Op::ReplaceSubAgents(SubAgents {
            sub_agent_executions: new.sub_agent_executions.clone(),
        }))),
    }
    for (key, item) in &new.todos {
        if old.todos.get(key) != Some(item) {
            ops.push(op(op::Op::PutTodo(PutTodo {
                key: key.clone(),
                item: Some(item.clone()),
            })));
        }
    }
    for key in old.todos.keys() {
        if !new.todos.contains_key(key) {
            ops.push(op(op::Op::RemoveTodo(key.clone())));
        }
    }
    if old.phase != new.phase {
        ops.push(op(op::Op::SetPhase(new.phase)));
    }
    if old.error != new.error {
        ops.push(op(op::Op::SetError(new.error.clone())));
    }
    if old.started_at != new.started_at {
        ops.push(op(op::Op::SetStartedAt(new.started_at.clone())));
    }
    if old.completed_at != new.completed_at {
        ops.push(op(op::Op::SetCompletedAt(new.completed_at.clone())));
    }
    ops
}

/// The ops that turn message `o` (at `index`) into `n` without replacing
/// it, or None: when only its content grew (→ `append_text` at the old
/// length) and/or its own tool calls changed as `keyed_ops` allows (→ one
/// `put_message_tool_call` per changed or new tool call, after the
/// `append_text`). A runner that resends its whole status while its AI
/// message both streams text and makes tool calls thus costs what changed,
/// not the whole message.
fn message_ops(index: u32, o: &AgentMessage, n: &AgentMessage) -> Option<Vec<Op>> {
    let same_rest = o.r#type == n.r#type && o.timestamp == n.timestamp && o.metadata == n.metadata;
    if !same_rest || !n.content.starts_with(&o.content) {
        return None;
    }
    let put = |c: &ToolCall| {
        op::Op::PutMessageToolCall(PutMessageToolCall {
            message_index: index,
            tool_call: Some(c.clone()),
        })
    };
    let calls = keyed_ops(&o.tool_calls, &n.tool_calls, |c| &c.id, |_, n| put(n), put)?;
    let mut ops = Vec::with_capacity(calls.len() + 1);
    if n.content.len() > o.content.len() {
        ops.push(op(op::Op::AppendText(AppendText {
            message_index: index,
            offset: o.content.len() as u64,
            // A char boundary of `n.content`: it starts with `o.content`.
            text: n.content.get(o.content.len()..)?.to_string(),
            r#type: n.r#type,
        })));
    }
    ops.extend(calls);
    Some(ops)
}

/// What `n`'s result adds to `o`'s when nothing else of the tool call
/// changed.
fn result_suffix<'a>(o: &ToolCall, n: &'a ToolCall) -> Option<&'a str> {
    let same_rest = o.id == n.id
        && o.name == n.name
        && o.args == n.args
        && o.status == n.status
        && o.component_metadata == n.component_metadata
        && o.started_at == n.started_at
        && o.completed_at == n.completed_at
        && o.error == n.error;
    if same_rest && n.result.len() > o.result.len() && n.result.starts_with(&o.result) {
        n.result.get(o.result.len()..)
    } else {
        None
    }
}

fn diff_messages(old: &[AgentMessage], new: &[AgentMessage], ops: &mut Vec<Op>) {
    let replace_all = || {
        op(op::Op::ReplaceMessages(Messages {
            messages: new.to_vec(),
        }))
    };
    if new.len() < old.len() || u32::try_from(new.len()).is_err() {
        ops.push(replace_all());
        return;
    }
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        if o == n {
            continue;
        }
        // Fits: new.len() fits in a u32 (checked above).
        let index = i as u32;
        match message_ops(index, o, n) {
            Some(list) => ops.extend(list),
            None => ops.push(op(op::Op::ReplaceMessage(ReplaceMessage {
                index,
                message: Some(n.clone()),
            }))),
        }
    }
    for (i, n) in new.iter().enumerate().skip(old.len()) {
        ops.push(op(op::Op::AddMessage(AddMessage {
            index: i as u32,
            message: Some(n.clone()),
        })));
    }
}

/// The put ops that turn the id-keyed list `old` into `new`, or None when
/// `new` is not `old` with elements changed in place and new ones appended,
/// each changed or new one with a non-empty id that is the first with that
/// id (what `put_*` finds).
fn keyed_ops<T: PartialEq>(
    old: &[T],
    new: &[T],
    id: fn(&T) -> &str,
    changed: impl Fn(&T, &T) -> op::Op,
    added: impl Fn(&T) -> op::Op,
) -> Option<Vec<Op>> {
    if new.len() < old.len() {
        return None;
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, o) in old.iter().enumerate() {
        first.entry(id(o)).or_insert(i);
    }
    let mut ops = Vec::new();
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        if id(o) != id(n) {
            return None;
        }
        if o == n {
            continue;
        }
        if id(n).is_empty() || first.get(id(n)) != Some(&i) {
            return None;
        }
        ops.push(op(changed(o, n)));
    }
    let mut seen: HashSet<&str> = first.keys().copied().collect();
    for n in new.iter().skip(old.len()) {
        if id(n).is_empty() || !seen.insert(id(n)) {
            return None;
        }
        ops.push(op(added(n)));
    }
    Some(ops)
}
