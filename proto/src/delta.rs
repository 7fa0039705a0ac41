//! Deltas: applying, diffing and stamping the operations (`Op`, in
//! `stigmer/daemon/v1/delta.proto`) that change an execution's status.
//!
//! This module exists so that the daemon (which applies a runner's `append`,
//! turns a whole `update_status` into ops with [`diff`], and stamps every
//! commit) and the Rust client (which rebuilds the state from a delta
//! stream) run the same code. The Python client mirrors it
//! (`clients/python/src/stigmer_client/_delta.py`); `tests/vectors/deltas.json`
//! proves both give the same bytes.
//!
//! # How each operation applies
//!
//! [`apply`] answers [`Outcome::Applied`] (the status changed),
//! [`Outcome::AlreadyApplied`] (the status already holds what the operation
//! would make: a retry after a lost reply is acknowledged without a second
//! copy), [`ApplyError::Conflict`] (the operation does not fit the status: a
//! stale offset or index, an unknown tool call id; the daemon answers
//! `ABORTED` and the message names what the status holds, so the client can
//! retry) or [`ApplyError::Invalid`] (the operation itself is malformed; the
//! daemon answers `INVALID_ARGUMENT`). Checks of the operation alone run
//! before checks against the status.
//!
//! Offsets and lengths are in bytes of UTF-8.
//!
//! - **`append_text {message_index: i, offset, text, type}`**: `type` must
//!   be a known `MessageType` (else Invalid). When `i` equals the number of
//!   messages, a message of `type` (UNSPECIFIED: `MESSAGE_AI`) with empty
//!   content is created first, only when `offset` is 0 (else Conflict); the
//!   operation is then Applied, even with empty text. `i` greater than the
//!   count: Conflict. Then, with `c` the message's content: `offset` greater
//!   than `len(c)`: Conflict; `offset` not on a character boundary of `c`:
//!   Conflict (a stale offset); `offset == len(c)`: `text` is appended, Applied (AlreadyApplied
//!   when `text` is empty); `c[offset..offset + len(text)] == text`:
//!   AlreadyApplied; anything else: Conflict naming `len(c)`. `type` is
//!   ignored for an existing message.
//! - **`add_message {index, message}`**: `index` equal to the count: the
//!   message is pushed, Applied; `index` below the count and the message
//!   there equal to `message`: AlreadyApplied; else Conflict naming the count.
//! - **`put_tool_call`**: an empty id is Invalid. Replaces, in place, the
//!   first entry of `tool_calls` with the same id (AlreadyApplied when equal),
//!   else appends it.
//! - **`append_tool_result {tool_call_id, offset, text}`**: an empty id is
//!   Invalid; no tool call with that id: Conflict; else as `append_text` on
//!   the first such tool call's `result`.
//! - **`put_todo {key, item}`**: inserts or replaces `todos[key]`
//!   (AlreadyApplied when equal). **`remove_todo key`**: removes it
//!   (AlreadyApplied when absent). The empty key is a key like any other
//!   (protobuf maps allow it, and [`diff`] needs it).
//! - **`put_sub_agent`**: as `put_tool_call`, on `sub_agent_executions`.
//! - **`set_phase`**: UNSPECIFIED or an unknown value is Invalid;
//!   AlreadyApplied when equal. **`set_error`**, **`set_started_at`**,
//!   **`set_completed_at`**: set the string (AlreadyApplied when equal).
//! - **`replace_message {index, message}`**: `index` below the count:
//!   replaces that message (AlreadyApplied when equal); else Conflict.
//!   **`replace_messages`**, **`replace_tool_calls`**,
//!   **`replace_sub_agents`**: replace the whole list (AlreadyApplied when
//!   equal).
//! - **`stamp(t)`**: [`stamp`]; always Applied. `t` must be between
//!   1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z (else Invalid).
//! - An `Op` with no operation set is Invalid.
//! - Every enum value an operation carries (a message's type, a tool call's,
//!   sub-agent's or todo's status, in any operation) must be known, as
//!   `update_status` requires of a whole status: else Invalid.
//! - A missing message field (`add_message.message`, `put_todo.item`, ...)
//!   is its default value, as in protobuf.
//!
//! [`apply_all`] applies a list in order and stops at the first error,
//! prefixing its message with the operation's position (`ops[2]: ...`).

#![warn(clippy::all)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use crate::agentexecution::{
    AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType, SubAgentExecution,
    SubAgentStatus, TodoItem, TodoStatus, ToolCall, ToolCallStatus,
};
use crate::apiresource::{ApiResourceAudit, ApiResourceAuditInfo};
use crate::daemon::{
    op, AddMessage, AppendText, AppendToolResult, Messages, Op, PutTodo, ReplaceMessage, SubAgents,
    ToolCalls,
};
use crate::wkt::Timestamp;

/// What applying one op did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The status changed.
    Applied,
    /// The status already held what the op makes; nothing changed.
    AlreadyApplied,
}

/// Why an op was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// The op does not fit the state (a stale offset or index, an unknown tool
    /// call id): the daemon answers ABORTED. The message names what the state
    /// holds (e.g. "message 3 is 120 bytes long") so a client can retry.
    Conflict(String),
    /// The op itself is malformed (no op set, set_phase UNSPECIFIED, an offset
    /// an unknown enum value...):
    /// INVALID_ARGUMENT.
    Invalid(String),
}

impl ApplyError {
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            ApplyError::Conflict(m) | ApplyError::Invalid(m) => m,
        }
    }

    fn prefixed(self, prefix: &str) -> Self {
        match self {
            ApplyError::Conflict(m) => ApplyError::Conflict(format!("{prefix}{m}")),
            ApplyError::Invalid(m) => ApplyError::Invalid(format!("{prefix}{m}")),
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Conflict(m) => write!(f, "conflict: {m}"),
            ApplyError::Invalid(m) => write!(f, "invalid operation: {m}"),
        }
    }
}

impl std::error::Error for ApplyError {}

fn conflict(message: String) -> ApplyError {
    ApplyError::Conflict(message)
}

fn invalid(message: String) -> ApplyError {
    ApplyError::Invalid(message)
}

/// The last second humantime formats (9999-12-31T23:59:59Z).
const MAX_SECONDS: i64 = 253_402_300_799;

/// Applies one op to `status` (the rules are in the module documentation).
/// On error the status is unchanged (every check runs before any change).
pub fn apply(status: &mut AgentExecutionStatus, op: &Op) -> Result<Outcome, ApplyError> {
    let Some(op) = op.op.as_ref() else {
        return Err(invalid("the operation is empty (no op set)".into()));
    };
    match op {
        op::Op::AppendText(a) => append_text(status, a),
        op::Op::AddMessage(a) => add_message(status, a),
        op::Op::PutToolCall(call) => {
            check_tool_call("put_tool_call", call)?;
            if call.id.is_empty() {
                return Err(invalid("put_tool_call: the tool call's id is empty".into()));
            }
            Ok(put_by_id(&mut status.tool_calls, call, |c| &c.id))
        }
        op::Op::AppendToolResult(a) => append_tool_result(status, a),
        op::Op::PutTodo(p) => put_todo(status, p),
        op::Op::RemoveTodo(key) => Ok(if status.todos.remove(key).is_some() {
            Outcome::Applied
        } else {
            Outcome::AlreadyApplied
        }),
        op::Op::PutSubAgent(sub) => {
            check_sub_agent("put_sub_agent", sub)?;
            if sub.id.is_empty() {
                return Err(invalid("put_sub_agent: the sub-agent's id is empty".into()));
            }
            Ok(put_by_id(&mut status.sub_agent_executions, sub, |s| &s.id))
        }
        op::Op::SetPhase(phase) => {
            known::<ExecutionPhase>(*phase, || "set_phase".into())?;
            if *phase == ExecutionPhase::Unspecified as i32 {
                return Err(invalid(
                    "set_phase: EXECUTION_PHASE_UNSPECIFIED is not a phase to set".into(),
                ));
            }
            Ok(set(&mut status.phase, phase))
        }
        op::Op::SetError(error) => Ok(set(&mut status.error, error)),
        op::Op::ReplaceMessage(r) => replace_message(status, r),
        op::Op::ReplaceMessages(Messages { messages }) => {
            for (i, m) in messages.iter().enumerate() {
                check_message(|| format!("replace_messages.messages[{i}]"), m)?;
            }
            Ok(set(&mut status.messages, messages))
        }
        op::Op::ReplaceToolCalls(ToolCalls { tool_calls }) => {
            for (i, c) in tool_calls.iter().enumerate() {
                check_tool_call(&format!("replace_tool_calls.tool_calls[{i}]"), c)?;
            }
            Ok(set(&mut status.tool_calls, tool_calls))
        }
        op::Op::ReplaceSubAgents(SubAgents {
            sub_agent_executions,
        }) => {
            for (i, s) in sub_agent_executions.iter().enumerate() {
                check_sub_agent(&format!("replace_sub_agents.sub_agent_executions[{i}]"), s)?;
            }
            Ok(set(&mut status.sub_agent_executions, sub_agent_executions))
        }
        op::Op::SetStartedAt(t) => Ok(set(&mut status.started_at, t)),
        op::Op::SetCompletedAt(t) => Ok(set(&mut status.completed_at, t)),
        op::Op::Stamp(now) => {
            if !(0..=MAX_SECONDS).contains(&now.seconds) || !(0..1_000_000_000).contains(&now.nanos)
            {
                return Err(invalid(format!(
                    "stamp: {}s {}ns is not a time between 1970 and 9999",
                    now.seconds, now.nanos
                )));
            }
            stamp(status, now);
            Ok(Outcome::Applied)
        }
    }
}

/// Applies `ops` in order; returns whether any was Applied (false: all were
/// already applied). On error the status may be partly changed: callers
/// discard it. The error's message starts with the op's position
/// (`ops[2]: `).
pub fn apply_all(status: &mut AgentExecutionStatus, ops: &[Op]) -> Result<bool, ApplyError> {
    let mut changed = false;
    for (i, op) in ops.iter().enumerate() {
        match apply(status, op) {
            Ok(Outcome::Applied) => changed = true,
            Ok(Outcome::AlreadyApplied) => {}
            Err(e) => return Err(e.prefixed(&format!("ops[{i}]: "))),
        }
    }
    Ok(changed)
}

/// Sets `field` to `value`: AlreadyApplied when equal.
fn set<T: PartialEq + Clone>(field: &mut T, value: &T) -> Outcome {
    if field == value {
        Outcome::AlreadyApplied
    } else {
        field.clone_from(value);
        Outcome::Applied
    }
}

/// Replaces the first element of `list` with `item`'s id, else appends it.
fn put_by_id<T: PartialEq + Clone>(list: &mut Vec<T>, item: &T, id: fn(&T) -> &str) -> Outcome {
    let key = id(item);
    match list.iter_mut().find(|x| id(x) == key) {
        Some(existing) => set(existing, item),
        None => {
            list.push(item.clone());
            Outcome::Applied
        }
    }
}

/// The offset rule shared by `append_text` and `append_tool_result`:
/// `what` names the text in a refusal ("message 3").
fn append_at(
    target: &mut String,
    offset: u64,
    text: &str,
    what: impl Fn() -> String,
) -> Result<Outcome, ApplyError> {
    let len = target.len();
    let at = match usize::try_from(offset) {
        Ok(at) if at <= len => at,
        _ => {
            return Err(conflict(format!(
                "{} is {len} bytes long; offset {offset} is past its end",
                what()
            )))
        }
    };
    if !target.is_char_boundary(at) {
        // A stale offset, as any other that does not match: the content
        // changed since the client read it (a multi-byte character another
        // writer appended now spans it).
        return Err(conflict(format!(
            "offset {offset} falls inside a UTF-8 character of {} ({len} bytes long)",
            what()
        )));
    }
    if at == len {
        if text.is_empty() {
            return Ok(Outcome::AlreadyApplied);
        }
        target.push_str(text);
        return Ok(Outcome::Applied);
    }
    let held = at
        .checked_add(text.len())
        .and_then(|end| target.as_bytes().get(at..end))
        .is_some_and(|held| held == text.as_bytes());
    if held {
        Ok(Outcome::AlreadyApplied)
    } else {
        Err(conflict(format!(
            "{} is {len} bytes long and does not hold this text at offset {offset}",
            what()
        )))
    }
}

fn append_text(status: &mut AgentExecutionStatus, a: &AppendText) -> Result<Outcome, ApplyError> {
    known::<MessageType>(a.r#type, || "append_text.type".into())?;
    let count = status.messages.len();
    let index = a.message_index as usize;
    let mut created = false;
    if index > count {
        return Err(conflict(format!(
            "there are {count} messages: message {index} does not exist (index {count} creates the next one)"
        )));
    }
    if index == count {
        if a.offset != 0 {
            return Err(conflict(format!(
                "there are {count} messages: creating message {index} takes offset 0, not {}",
                a.offset
            )));
        }
        let r#type = if a.r#type == MessageType::Unspecified as i32 {
            MessageType::MessageAi as i32
        } else {
            a.r#type
        };
        status.messages.push(AgentMessage {
            r#type,
            ..Default::default()
        });
        created = true;
    }
    let Some(message) = status.messages.get_mut(index) else {
        return Err(conflict(format!(
            "there are {count} messages: message {index} does not exist"
        )));
    };
    let outcome = append_at(&mut message.content, a.offset, &a.text, || {
        format!("message {index}")
    })?;
    Ok(if created { Outcome::Applied } else { outcome })
}

fn add_message(status: &mut AgentExecutionStatus, a: &AddMessage) -> Result<Outcome, ApplyError> {
    let message = a.message.clone().unwrap_or_default();
    check_message(|| "add_message.message".into(), &message)?;
    let count = status.messages.len();
    let index = a.index as usize;
    if index == count {
        status.messages.push(message);
        return Ok(Outcome::Applied);
    }
    if status.messages.get(index) == Some(&message) {
        return Ok(Outcome::AlreadyApplied);
    }
    Err(conflict(if index < count {
        format!("there are {count} messages and message {index} differs from this one")
    } else {
        format!("there are {count} messages: a message added now takes index {count}, not {index}")
    }))
}

fn append_tool_result(
    status: &mut AgentExecutionStatus,
    a: &AppendToolResult,
) -> Result<Outcome, ApplyError> {
    if a.tool_call_id.is_empty() {
        return Err(invalid("append_tool_result: tool_call_id is empty".into()));
    }
    let count = status.tool_calls.len();
    let Some(call) = status
        .tool_calls
        .iter_mut()
        .find(|c| c.id == a.tool_call_id)
    else {
        return Err(conflict(format!(
            "no tool call has id {:?} (there are {count} tool calls)",
            a.tool_call_id
        )));
    };
    append_at(&mut call.result, a.offset, &a.text, || {
        format!("the result of tool call {:?}", a.tool_call_id)
    })
}

fn put_todo(status: &mut AgentExecutionStatus, p: &PutTodo) -> Result<Outcome, ApplyError> {
    let item = p.item.clone().unwrap_or_default();
    check_todo(&p.key, &item)?;
    if status.todos.get(&p.key) == Some(&item) {
        return Ok(Outcome::AlreadyApplied);
    }
    status.todos.insert(p.key.clone(), item);
    Ok(Outcome::Applied)
}

fn replace_message(
    status: &mut AgentExecutionStatus,
    r: &ReplaceMessage,
) -> Result<Outcome, ApplyError> {
    let message = r.message.clone().unwrap_or_default();
    check_message(|| "replace_message.message".into(), &message)?;
    let count = status.messages.len();
    match status.messages.get_mut(r.index as usize) {
        Some(existing) => Ok(set(existing, &message)),
        None => Err(conflict(format!(
            "there are {count} messages: message {} does not exist",
            r.index
        ))),
    }
}

/// Checks one enum value; `field` names it in the error.
fn known<E: TryFrom<i32>>(value: i32, field: impl FnOnce() -> String) -> Result<(), ApplyError> {
    E::try_from(value)
        .map(|_| ())
        .map_err(|_| invalid(format!("{}: unknown enum value {value}", field())))
}

fn check_tool_call(field: &str, call: &ToolCall) -> Result<(), ApplyError> {
    known::<ToolCallStatus>(call.status, || format!("{field}.status"))
}

fn check_sub_agent(field: &str, sub: &SubAgentExecution) -> Result<(), ApplyError> {
    known::<SubAgentStatus>(sub.status, || format!("{field}.status"))
}

fn check_todo(key: &str, item: &TodoItem) -> Result<(), ApplyError> {
    known::<TodoStatus>(item.status, || format!("put_todo[{key:?}].status"))
}

fn check_message(field: impl Fn() -> String, m: &AgentMessage) -> Result<(), ApplyError> {
    known::<MessageType>(m.r#type, || format!("{}.type", field()))?;
    for (i, call) in m.tool_calls.iter().enumerate() {
        check_tool_call(&format!("{}.tool_calls[{i}]", field()), call)?;
    }
    Ok(())
}

/// True for the four terminal phases (COMPLETED, FAILED, CANCELLED,
/// TERMINATED).
pub fn is_terminal_phase(phase: i32) -> bool {
    matches!(
        ExecutionPhase::try_from(phase),
        Ok(ExecutionPhase::ExecutionCompleted
            | ExecutionPhase::ExecutionFailed
            | ExecutionPhase::ExecutionCancelled
            | ExecutionPhase::ExecutionTerminated)
    )
}

/// `t` in RFC 3339 with microseconds, as the daemon has always written
/// started_at / completed_at (`humantime::format_rfc3339_micros`, e.g.
/// "2023-11-14T22:13:20.000000Z"). A time outside 1970..=9999 (which the
/// `stamp` op refuses) is clamped into it.
pub fn rfc3339(t: &Timestamp) -> String {
    let seconds = u64::try_from(t.seconds.clamp(0, MAX_SECONDS)).unwrap_or(0);
    let nanos = u32::try_from(t.nanos.clamp(0, 999_999_999)).unwrap_or(0);
    let time = UNIX_EPOCH
        .checked_add(Duration::new(seconds, nanos))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_micros(time).to_string()
}

/// The daemon's commit stamp (the same rule and strings the daemon used
/// before deltas): started_at = rfc3339 micros of `now` when the phase is not
/// UNSPECIFIED/PENDING and started_at is empty; completed_at likewise at a
/// terminal phase; audit.status_audit: created_at = now when missing,
/// updated_at = now, event = "status_updated".
pub fn stamp(status: &mut AgentExecutionStatus, now: &Timestamp) {
    let phase = status.phase;
    let started = phase != ExecutionPhase::Unspecified as i32
        && phase != ExecutionPhase::ExecutionPending as i32;
    if started && status.started_at.is_empty() {
        status.started_at = rfc3339(now);
    }
    if is_terminal_phase(phase) && status.completed_at.is_empty() {
        status.completed_at = rfc3339(now);
    }
    let audit = status.audit.get_or_insert_with(ApiResourceAudit::default);
    let info = audit
        .status_audit
        .get_or_insert_with(ApiResourceAuditInfo::default);
    if info.created_at.is_none() {
        info.created_at = Some(*now);
    }
    info.updated_at = Some(*now);
    info.event = "status_updated".to_string();
}

fn op(op: op::Op) -> Op {
    Op { op: Some(op) }
}

/// The ops that turn `old` into `new`, for every field but `audit` and
/// `callback_token` (taken to be equal: the daemon never takes them from
/// input).
///
/// Minimal where `new` extends `old`: text appended to a message's content →
/// `append_text` at the old length; new messages → `add_message`; a tool
/// call whose result grew (nothing else changed) → `append_tool_result`;
/// changed or new tool calls / sub-agents in the same order (each with a
/// non-empty id, the first with that id) → `put_tool_call` /
/// `put_sub_agent`; todos → `put_todo` / `remove_todo`; phase, error,
/// started_at, completed_at → their setters. Where a list is not an
/// extension: a message changed otherwise → `replace_message`; fewer
/// messages → `replace_messages`; tool calls or sub-agents removed,
/// reordered, or with empty or repeated ids → `replace_tool_calls` /
/// `replace_sub_agents`. Never emits `stamp`.
///
/// The ops apply cleanly when `new` is a status `update_status` accepts
/// (every enum value known) and its phase is not UNSPECIFIED unless `old`'s
/// is too (`set_phase` refuses UNSPECIFIED; the daemon's merge never goes
/// back to it). Ops come in the order: messages, tool calls, sub-agents,
/// todos, phase, error, started_at, completed_at, so a phase change follows
/// the text it ends.
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

/// What `n`'s content adds to `o`'s when nothing else of the message
/// changed.
fn content_suffix<'a>(o: &AgentMessage, n: &'a AgentMessage) -> Option<&'a str> {
    let same_rest = o.r#type == n.r#type
        && o.timestamp == n.timestamp
        && o.tool_calls == n.tool_calls
        && o.metadata == n.metadata;
    if same_rest && n.content.len() > o.content.len() && n.content.starts_with(&o.content) {
        n.content.get(o.content.len()..)
    } else {
        None
    }
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
        ops.push(op(match content_suffix(o, n) {
            Some(text) => op::Op::AppendText(AppendText {
                message_index: index,
                offset: o.content.len() as u64,
                text: text.to_string(),
                r#type: n.r#type,
            }),
            None => op::Op::ReplaceMessage(ReplaceMessage {
                index,
                message: Some(n.clone()),
            }),
        }));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

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

    fn append(index: u32, offset: u64, text: &str) -> Op {
        wrap(op::Op::AppendText(AppendText {
            message_index: index,
            offset,
            text: text.into(),
            r#type: 0,
        }))
    }

    fn call(id: &str, result: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "read".into(),
            result: result.into(),
            ..Default::default()
        }
    }

    fn is_conflict(r: Result<Outcome, ApplyError>) -> bool {
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

    // ---- property tests ----

    fn text() -> impl Strategy<Value = String> {
        "[a-cé€😀 ]{0,6}"
    }

    fn message() -> impl Strategy<Value = AgentMessage> {
        (0i32..5, text(), "[0-9]{0,2}", 0usize..2).prop_map(|(t, content, ts, calls)| {
            AgentMessage {
                r#type: t,
                content,
                timestamp: ts,
                tool_calls: (0..calls).map(|i| call(&i.to_string(), "")).collect(),
                metadata: None,
            }
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
            proptest::collection::vec(sub_agent(), 0..2),
            proptest::collection::btree_map("[a-d]{0,1}", proptest::option::of(todo()), 0..3),
            proptest::option::of(1i32..9),
            proptest::option::of("[a-z]{0,2}"),
        )
            .prop_map(
                |(appends, added, results, calls, edit_call, subs, todos, phase, error)| Growth {
                    appends,
                    added,
                    results,
                    calls,
                    edit_call,
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
    fn normalized(
        old: &AgentExecutionStatus,
        mut new: AgentExecutionStatus,
    ) -> AgentExecutionStatus {
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
}
