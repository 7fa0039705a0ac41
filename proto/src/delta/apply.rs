//! [`apply`], [`apply_all`] and [`apply_to`]: one op, or a list of them,
//! applied to a status (or an execution's) by the rules in the module documentation (`delta/mod.rs`), with
//! what they answer ([`Outcome`], [`ApplyError`]). Shared by the daemon
//! (a runner's `append`, the ops of an `update_status`) and the Rust client
//! (rebuilding the state from a delta stream).

use std::fmt;

use super::stamp::{stamp, MAX_SECONDS};
use crate::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType,
    SubAgentExecution, SubAgentStatus, TodoItem, TodoStatus, ToolCall, ToolCallStatus,
};
use crate::daemon::{
    op, AddMessage, AppendText, AppendToolResult, Messages, Op, PutMessageToolCall, PutTodo,
    ReplaceMessage, SubAgents, ToolCalls,
};

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
        op::Op::PutMessageToolCall(p) => put_message_tool_call(status, p),
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

/// Applies `ops` in order to `execution`'s status, created empty when the
/// execution has none (as a state stored or sent without a status is
/// read): the one rule by which the daemon's history, its replica, its
/// streams and the clients apply a delta to a whole execution. Returns what
/// [`apply_all`] returns.
pub fn apply_to(execution: &mut AgentExecution, ops: &[Op]) -> Result<bool, ApplyError> {
    apply_all(execution.status.get_or_insert_with(Default::default), ops)
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

/// `put_tool_call`'s rules on one message's own tool calls; the checks of
/// the op alone (enum values, the id) come before the message index.
fn put_message_tool_call(
    status: &mut AgentExecutionStatus,
    p: &PutMessageToolCall,
) -> Result<Outcome, ApplyError> {
    let call = p.tool_call.clone().unwrap_or_default();
    check_tool_call("put_message_tool_call.tool_call", &call)?;
    if call.id.is_empty() {
        return Err(invalid(
            "put_message_tool_call: the tool call's id is empty".into(),
        ));
    }
    let count = status.messages.len();
    match status.messages.get_mut(p.message_index as usize) {
        Some(message) => Ok(put_by_id(&mut message.tool_calls, &call, |c| &c.id)),
        None => Err(conflict(format!(
            "there are {count} messages: message {} does not exist",
            p.message_index
        ))),
    }
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
