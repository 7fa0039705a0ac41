//! How executions and subscription events look on a terminal (`-o text`) and
//! to programs (`-o json`). Shared by `get`, `list`, `subscribe` and `demo`,
//! so `demo` shows its transcript exactly as `subscribe` would.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::Value;
use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType, TodoStatus,
    ToolCall, ToolCallStatus,
};
use stigmer_client::{end_reason_name, Event};

/// The CLI's short name for a phase (the `--phase` values).
pub(super) fn phase_name(phase: ExecutionPhase) -> &'static str {
    match phase {
        ExecutionPhase::Unspecified => "unspecified",
        ExecutionPhase::ExecutionPending => "pending",
        ExecutionPhase::ExecutionInProgress => "in-progress",
        ExecutionPhase::ExecutionCompleted => "completed",
        ExecutionPhase::ExecutionFailed => "failed",
        ExecutionPhase::ExecutionCancelled => "cancelled",
        ExecutionPhase::ExecutionWaitingForApproval => "waiting-for-approval",
        ExecutionPhase::ExecutionPaused => "paused",
        ExecutionPhase::ExecutionTerminated => "terminated",
    }
}

fn message_label(t: i32) -> &'static str {
    match MessageType::try_from(t) {
        Ok(MessageType::MessageHuman) => "human",
        Ok(MessageType::MessageAi) => "ai",
        Ok(MessageType::MessageTool) => "tool",
        Ok(MessageType::MessageSystem) => "system",
        _ => "message",
    }
}

fn tool_status_name(s: i32) -> &'static str {
    match ToolCallStatus::try_from(s) {
        Ok(ToolCallStatus::ToolCallPending) => "pending",
        Ok(ToolCallStatus::ToolCallRunning) => "running",
        Ok(ToolCallStatus::ToolCallCompleted) => "completed",
        Ok(ToolCallStatus::ToolCallFailed) => "failed",
        _ => "unspecified",
    }
}

fn todo_status_name(s: i32) -> &'static str {
    match TodoStatus::try_from(s) {
        Ok(TodoStatus::TodoPending) => "pending",
        Ok(TodoStatus::TodoInProgress) => "in-progress",
        Ok(TodoStatus::TodoCompleted) => "completed",
        Ok(TodoStatus::TodoCancelled) => "cancelled",
        _ => "unspecified",
    }
}

/// The execution's id (empty when the daemon sent none).
pub(super) fn execution_id(e: &AgentExecution) -> &str {
    e.metadata.as_ref().map(|m| m.id.as_str()).unwrap_or("")
}

/// The execution's phase (UNSPECIFIED when it has no status).
pub(super) fn execution_phase(e: &AgentExecution) -> ExecutionPhase {
    e.status
        .as_ref()
        .map(|s| s.phase())
        .unwrap_or(ExecutionPhase::Unspecified)
}

/// An execution in the canonical proto3 JSON mapping.
pub(super) fn execution_json(e: &AgentExecution) -> Result<Value, serde_json::Error> {
    serde_json::to_value(e)
}

/// One `subscribe -o json` line (without the newline): `type`, `revision`,
/// and `execution` or (on `end`) `reason`. Written by hand so the keys come
/// in that order, which reads better than serde_json's sorted maps.
pub(super) fn event_json(ev: &Event) -> Result<String, serde_json::Error> {
    let head = format!(
        "{{\"type\":{},\"revision\":{}",
        serde_json::to_string(ev.kind())?,
        ev.revision()
    );
    Ok(match ev {
        Event::End { reason, .. } => format!(
            "{head},\"reason\":{}}}",
            serde_json::to_string(end_reason_name(*reason))?
        ),
        other => format!(
            "{head},\"execution\":{}}}",
            match other.execution() {
                Some(e) => serde_json::to_string(e)?,
                None => "null".to_string(),
            }
        ),
    })
}

fn args_text(tc: &ToolCall) -> String {
    match &tc.args {
        Some(args) if !args.fields.is_empty() => {
            // Sorted keys, so the same call always prints the same way.
            let sorted: BTreeMap<_, _> = args.fields.iter().collect();
            serde_json::to_string(&sorted).unwrap_or_default()
        }
        _ => String::new(),
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// `get -o text`: the execution, readable.
pub(super) fn write_execution(
    out: &mut impl Write,
    e: &AgentExecution,
    revision: u64,
) -> io::Result<()> {
    let spec = e.spec.clone().unwrap_or_default();
    let status = e.status.clone().unwrap_or_default();
    writeln!(out, "id:        {}", execution_id(e))?;
    writeln!(out, "revision:  {revision}")?;
    writeln!(out, "phase:     {}", phase_name(status.phase()))?;
    writeln!(out, "agent:     {}", spec.agent_id)?;
    if !spec.session_id.is_empty() {
        writeln!(out, "session:   {}", spec.session_id)?;
    }
    writeln!(out, "prompt:    {}", spec.message)?;
    if !status.started_at.is_empty() {
        writeln!(out, "started:   {}", status.started_at)?;
    }
    if !status.completed_at.is_empty() {
        writeln!(out, "completed: {}", status.completed_at)?;
    }
    if !status.error.is_empty() {
        writeln!(out, "error:     {}", status.error)?;
    }
    if !status.messages.is_empty() {
        writeln!(out, "messages:")?;
        for m in &status.messages {
            writeln!(out, "  {}: {}", message_label(m.r#type), m.content)?;
        }
    }
    let tools = all_tool_calls(&status);
    if !tools.is_empty() {
        writeln!(out, "tool calls:")?;
        for tc in tools {
            writeln!(
                out,
                "  {} {} [{}]{}",
                tc.name,
                args_text(tc),
                tool_status_name(tc.status),
                if tc.result.is_empty() {
                    String::new()
                } else {
                    format!(" -> {}", one_line(&tc.result, 80))
                }
            )?;
        }
    }
    if !status.todos.is_empty() {
        writeln!(out, "todos:")?;
        for t in status.todos.values() {
            writeln!(out, "  [{}] {}", todo_status_name(t.status), t.content)?;
        }
    }
    Ok(())
}

/// `list -o text`: one line per execution.
pub(super) fn write_list(out: &mut impl Write, executions: &[AgentExecution]) -> io::Result<()> {
    writeln!(
        out,
        "{:<30}  {:<12}  {:<16}  {:<16}  PROMPT",
        "ID", "PHASE", "AGENT", "SESSION"
    )?;
    for e in executions {
        let spec = e.spec.clone().unwrap_or_default();
        writeln!(
            out,
            "{:<30}  {:<12}  {:<16}  {:<16}  {}",
            execution_id(e),
            phase_name(execution_phase(e)),
            spec.agent_id,
            spec.session_id,
            one_line(&spec.message, 50)
        )?;
    }
    Ok(())
}

/// Tool calls of the status and of its messages, each id once, in order of
/// first appearance.
fn all_tool_calls(status: &AgentExecutionStatus) -> Vec<&ToolCall> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let from_messages = status.messages.iter().flat_map(|m| m.tool_calls.iter());
    for tc in status.tool_calls.iter().chain(from_messages) {
        let key = if tc.id.is_empty() { &tc.name } else { &tc.id };
        if seen.insert(key.clone()) {
            out.push(tc);
        }
    }
    out
}

/// The live transcript of `subscribe -o text` (and `demo`): prints, for each
/// event, only what changed since the previous one: phase changes, new
/// messages, the new suffix of a growing message (streamed tokens, on the
/// same line), tool calls as they appear or change status, errors, todos.
pub(super) struct Transcript<W: Write> {
    out: W,
    prev: AgentExecutionStatus,
    /// The index of the message whose text is on the open (unterminated)
    /// line, so its next tokens continue it.
    open_message: Option<usize>,
    started: bool,
}

impl<W: Write> Transcript<W> {
    /// A transcript written to `out`.
    pub(super) fn new(out: W) -> Self {
        Transcript {
            out,
            prev: AgentExecutionStatus::default(),
            open_message: None,
            started: false,
        }
    }

    /// Ends the open line, if any, so the next output starts on its own.
    fn close_line(&mut self) -> io::Result<()> {
        if self.open_message.take().is_some() {
            writeln!(self.out)?;
        }
        Ok(())
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        self.close_line()?;
        writeln!(self.out, "{text}")
    }

    /// Prints what `ev` changes and flushes.
    pub(super) fn event(&mut self, ev: &Event) -> io::Result<()> {
        match ev {
            Event::Snapshot {
                revision,
                execution,
            }
            | Event::Update {
                revision,
                execution,
            } => {
                if !self.started {
                    self.header(execution, *revision)?;
                }
                self.diff(execution)?;
            }
            Event::Resync {
                revision,
                execution,
            } => {
                if !self.started {
                    self.header(execution, *revision)?;
                } else {
                    self.line(&format!(
                        "-- resync at revision {revision}: some changes were skipped"
                    ))?;
                }
                self.diff(execution)?;
            }
            Event::End {
                revision,
                reason,
                message,
            } => {
                let detail = if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                };
                self.line(&format!(
                    "-- end: {} at revision {revision}{detail}",
                    end_reason_name(*reason)
                ))?;
            }
        }
        self.out.flush()
    }

    fn header(&mut self, e: &AgentExecution, revision: u64) -> io::Result<()> {
        self.started = true;
        let spec = e.spec.clone().unwrap_or_default();
        let session = if spec.session_id.is_empty() {
            String::new()
        } else {
            format!(", session {}", spec.session_id)
        };
        self.line(&format!(
            "-- {} (agent {}{session}) at revision {revision}",
            execution_id(e),
            spec.agent_id
        ))?;
        self.line(&format!("prompt: {}", spec.message))
    }

    fn diff(&mut self, e: &AgentExecution) -> io::Result<()> {
        let new = e.status.clone().unwrap_or_default();
        let old = std::mem::take(&mut self.prev);

        if new.phase != old.phase {
            self.line(&format!("[phase] {}", phase_name(new.phase())))?;
        }

        for (i, msg) in new.messages.iter().enumerate() {
            match old.messages.get(i) {
                None => self.new_message(i, msg)?,
                Some(before) if before == msg => {}
                Some(before)
                    if before.r#type == msg.r#type && msg.content.starts_with(&before.content) =>
                {
                    let suffix = &msg.content[before.content.len()..];
                    if !suffix.is_empty() {
                        if self.open_message == Some(i) {
                            write!(self.out, "{suffix}")?;
                        } else {
                            self.close_line()?;
                            write!(self.out, "{} (cont.): {suffix}", message_label(msg.r#type))?;
                            self.open_message = Some(i);
                        }
                    }
                }
                Some(before) if before.content != msg.content || before.r#type != msg.r#type => {
                    self.close_line()?;
                    write!(
                        self.out,
                        "{} (edited): {}",
                        message_label(msg.r#type),
                        msg.content
                    )?;
                    self.open_message = Some(i);
                }
                Some(_) => {}
            }
        }

        let old_tools: std::collections::HashMap<&str, &ToolCall> = all_tool_calls(&old)
            .into_iter()
            .map(|t| {
                (
                    if t.id.is_empty() {
                        t.name.as_str()
                    } else {
                        t.id.as_str()
                    },
                    t,
                )
            })
            .collect();
        for tc in all_tool_calls(&new) {
            let key = if tc.id.is_empty() {
                tc.name.as_str()
            } else {
                tc.id.as_str()
            };
            let changed = match old_tools.get(key) {
                None => true,
                Some(before) => before.status != tc.status || before.error != tc.error,
            };
            if changed {
                let mut text = format!(
                    "[tool] {}{} {}",
                    tc.name,
                    match args_text(tc) {
                        a if a.is_empty() => String::new(),
                        a => format!(" {a}"),
                    },
                    tool_status_name(tc.status)
                );
                if !tc.result.is_empty() {
                    text.push_str(&format!(": {}", one_line(&tc.result, 100)));
                }
                if !tc.error.is_empty() {
                    text.push_str(&format!(" (error: {})", tc.error));
                }
                self.line(&text)?;
            }
        }

        for (key, todo) in &new.todos {
            let changed = match old.todos.get(key) {
                None => true,
                Some(before) => before.status != todo.status || before.content != todo.content,
            };
            if changed {
                self.line(&format!(
                    "[todo] {}: {}",
                    todo.content,
                    todo_status_name(todo.status)
                ))?;
            }
        }

        if !new.error.is_empty() && new.error != old.error {
            self.line(&format!("[error] {}", new.error))?;
        }

        self.prev = new;
        Ok(())
    }

    fn new_message(&mut self, i: usize, msg: &AgentMessage) -> io::Result<()> {
        self.close_line()?;
        write!(self.out, "{}: {}", message_label(msg.r#type), msg.content)?;
        self.open_message = Some(i);
        Ok(())
    }

    /// Terminates the open line (at the end of the stream).
    pub(super) fn finish(&mut self) -> io::Result<()> {
        self.close_line()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stigmer_client::proto::agentexecution::AgentExecutionSpec;

    fn exec(phase: ExecutionPhase, messages: &[(MessageType, &str)]) -> AgentExecution {
        AgentExecution {
            spec: Some(AgentExecutionSpec {
                agent_id: "a".into(),
                message: "hi".into(),
                ..Default::default()
            }),
            status: Some(AgentExecutionStatus {
                phase: phase as i32,
                messages: messages
                    .iter()
                    .map(|(t, c)| AgentMessage {
                        r#type: *t as i32,
                        content: c.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn growing_message_prints_only_the_suffix() {
        let mut buf = Vec::new();
        {
            let mut t = Transcript::new(&mut buf);
            let events = [
                Event::Snapshot {
                    revision: 1,
                    execution: exec(ExecutionPhase::ExecutionPending, &[]),
                },
                Event::Update {
                    revision: 2,
                    execution: exec(
                        ExecutionPhase::ExecutionInProgress,
                        &[(MessageType::MessageAi, "Hel")],
                    ),
                },
                Event::Update {
                    revision: 3,
                    execution: exec(
                        ExecutionPhase::ExecutionInProgress,
                        &[(MessageType::MessageAi, "Hello world")],
                    ),
                },
                Event::Update {
                    revision: 4,
                    execution: exec(
                        ExecutionPhase::ExecutionCompleted,
                        &[(MessageType::MessageAi, "Hello world")],
                    ),
                },
            ];
            for e in &events {
                t.event(e).unwrap();
            }
            t.finish().unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("ai: Hello world\n[phase] completed\n"),
            "{text}"
        );
        assert!(
            text.contains("[phase] pending\n[phase] in-progress\n"),
            "{text}"
        );
    }

    #[test]
    fn end_event_json_has_lowercase_reason_and_no_execution() {
        let v = event_json(&Event::End {
            revision: 7,
            reason: stigmer_client::proto::daemon::EndReason::Terminal,
            message: String::new(),
        })
        .unwrap();
        assert_eq!(v, r#"{"type":"end","revision":7,"reason":"terminal"}"#);
        let parsed: Value = serde_json::from_str(&v).unwrap();
        assert_eq!(
            parsed,
            json!({"type": "end", "revision": 7, "reason": "terminal"})
        );
    }
}
