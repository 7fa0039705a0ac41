//! How executions and subscription events look on a terminal (`-o text`) and
//! to programs (`-o json`). Shared by `get`, `list`, `subscribe` and `demo`,
//! so `demo` shows its transcript exactly as `subscribe` would.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, ExecutionPhase, MessageType, TodoStatus, ToolCall,
    ToolCallStatus,
};
use stigmer_client::{end_reason_name, Event, WatchEvent};

use super::style::{phase_style, Painter, Style};

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

pub(super) fn message_label(t: i32) -> &'static str {
    match MessageType::try_from(t) {
        Ok(MessageType::MessageHuman) => "human",
        Ok(MessageType::MessageAi) => "ai",
        Ok(MessageType::MessageTool) => "tool",
        Ok(MessageType::MessageSystem) => "system",
        _ => "message",
    }
}

pub(super) fn message_style(t: i32) -> Style {
    match MessageType::try_from(t) {
        Ok(MessageType::MessageHuman) => Style::Blue,
        Ok(MessageType::MessageAi) => Style::Green,
        Ok(MessageType::MessageTool) => Style::Yellow,
        _ => Style::Dim,
    }
}

pub(super) fn tool_status_name(s: i32) -> &'static str {
    match ToolCallStatus::try_from(s) {
        Ok(ToolCallStatus::ToolCallPending) => "pending",
        Ok(ToolCallStatus::ToolCallRunning) => "running",
        Ok(ToolCallStatus::ToolCallCompleted) => "completed",
        Ok(ToolCallStatus::ToolCallFailed) => "failed",
        _ => "unspecified",
    }
}

pub(super) fn todo_status_name(s: i32) -> &'static str {
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
        Event::Delta { ops, .. } => format!("{head},\"ops\":{}}}", serde_json::to_string(ops)?),
        other => format!(
            "{head},\"execution\":{}}}",
            match other.execution() {
                Some(e) => serde_json::to_string(e)?,
                None => "null".to_string(),
            }
        ),
    })
}

/// The last non-empty line of the execution's last message with text (or
/// its error), for one-line views (`executions watch`, `top`).
pub(super) use crate::model::latest_text;

/// One `executions watch -o json` line (without the newline): `type`,
/// `revision`, then as the event has them `executionId`,
/// `initialEventsEnd`, `execution` (canonical proto3 JSON) and `ops`.
/// `deltas`: print an update that came as operations as a `delta` with its
/// `ops`, else as an `update` with the whole execution.
pub(super) fn watch_event_json(ev: &WatchEvent, deltas: bool) -> Result<String, serde_json::Error> {
    let as_delta = deltas && !ev.ops().is_empty();
    let kind = match ev {
        WatchEvent::Updated { .. } if as_delta => "delta",
        WatchEvent::Updated { .. } => "update",
        other => other.kind(),
    };
    let mut line = format!(
        "{{\"type\":{},\"revision\":{}",
        serde_json::to_string(kind)?,
        ev.revision()
    );
    if let Some(id) = ev.execution_id() {
        line.push_str(&format!(",\"executionId\":{}", serde_json::to_string(id)?));
    }
    match ev {
        WatchEvent::Bookmark {
            initial_events_end: true,
            ..
        } => line.push_str(",\"initialEventsEnd\":true"),
        WatchEvent::Updated { ops: Some(ops), .. } if as_delta => {
            line.push_str(&format!(",\"ops\":{}", serde_json::to_string(ops)?))
        }
        other => {
            if let Some(e) = other.execution() {
                line.push_str(&format!(
                    ",\"execution\":{}",
                    serde_json::to_string(e.as_ref())?
                ));
            }
        }
    }
    line.push('}');
    Ok(line)
}

pub(super) fn args_text(tc: &ToolCall) -> String {
    match &tc.args {
        Some(args) if !args.fields.is_empty() => {
            // Sorted keys, so the same call always prints the same way.
            let sorted: BTreeMap<_, _> = args.fields.iter().collect();
            serde_json::to_string(&sorted).unwrap_or_default()
        }
        _ => String::new(),
    }
}

pub(super) fn one_line(s: &str, max: usize) -> String {
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

/// When the execution was created (`status.audit.spec_audit.created_at`).
pub(super) fn created_at(e: &AgentExecution) -> Option<SystemTime> {
    let audit = e.status.as_ref()?.audit.as_ref()?.spec_audit.as_ref()?;
    audit.created_at.as_ref().and_then(to_system_time)
}

/// The commit time of the execution's latest change
/// (`status.audit.status_audit.updated_at`).
pub(super) fn updated_at(e: &AgentExecution) -> Option<SystemTime> {
    let audit = e.status.as_ref()?.audit.as_ref()?.status_audit.as_ref()?;
    audit.updated_at.as_ref().and_then(to_system_time)
}

fn to_system_time(t: &pbjson_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The RFC 3339 form of `updated_at` (UTC, as stored), for `--timestamps`.
pub(super) fn updated_at_text(e: &AgentExecution) -> Option<String> {
    let audit = e.status.as_ref()?.audit.as_ref()?.status_audit.as_ref()?;
    let ts = audit.updated_at.as_ref()?;
    let json = serde_json::to_string(ts).ok()?;
    Some(json.trim_matches('"').to_string())
}

/// A short age, as kubectl prints it: `42s`, `5m12s`, `3h5m`, `12d`.
pub(super) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=599 => format!("{}m{}s", s / 60, s % 60),
        600..=3599 => format!("{}m", s / 60),
        3600..=35_999 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        36_000..=86_399 => format!("{}h", s / 3600),
        86_400..=863_999 => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn age_since(t: Option<SystemTime>, now: SystemTime) -> String {
    match t {
        Some(t) => age(now.duration_since(t).unwrap_or_default()),
        None => "-".into(),
    }
}

/// One row of `list`: the execution and its revision, when known.
pub(super) struct Row {
    /// The execution.
    pub execution: AgentExecution,
    /// Its revision (a `get` per row: list replies carry none).
    pub revision: Option<u64>,
}

/// How `list` prints its table.
#[derive(Clone, Copy, Debug)]
pub(super) struct TableStyle {
    /// `-o wide`: session, start and end times, counts, error.
    pub wide: bool,
    /// `--no-headers`.
    pub headers: bool,
    /// Colour.
    pub painter: Painter,
}

/// `list -o text|wide`: one line per execution.
pub(super) fn write_list(out: &mut impl Write, rows: &[Row], style: TableStyle) -> io::Result<()> {
    let now = SystemTime::now();
    let p = style.painter;
    let id_w = rows
        .iter()
        .map(|r| execution_id(&r.execution).len())
        .max()
        .unwrap_or(0)
        .max(2);
    let agent_w = rows
        .iter()
        .map(|r| {
            r.execution
                .spec
                .as_ref()
                .map_or(0, |s| s.agent_id.chars().count())
        })
        .max()
        .unwrap_or(0)
        .clamp(5, 24);
    let session_w = rows
        .iter()
        .map(|r| {
            r.execution
                .spec
                .as_ref()
                .map_or(0, |s| s.session_id.chars().count())
        })
        .max()
        .unwrap_or(0)
        .clamp(7, 24);
    if style.headers {
        let mut head = format!(
            "{:<id_w$}  {:<20}  {:<agent_w$}  {:>8}  {:>6}  {:>7}",
            "ID", "PHASE", "AGENT", "REVISION", "AGE", "UPDATED"
        );
        if style.wide {
            head.push_str(&format!(
                "  {:<session_w$}  {:<27}  {:<27}  {:>8}  {:>5}  ERROR",
                "SESSION", "STARTED", "COMPLETED", "MESSAGES", "TOOLS"
            ));
        }
        head.push_str("  PROMPT");
        writeln!(out, "{}", p.paint(Style::Bold, &head))?;
    }
    for row in rows {
        let e = &row.execution;
        let spec = e.spec.clone().unwrap_or_default();
        let status = e.status.clone().unwrap_or_default();
        let phase = execution_phase(e);
        let mut line = format!(
            "{:<id_w$}  {}  {:<agent_w$}  {:>8}  {:>6}  {:>7}",
            execution_id(e),
            p.paint_padded(phase_style(phase), phase_name(phase), 20),
            one_line(&spec.agent_id, agent_w),
            row.revision
                .map_or_else(|| "-".to_string(), |r| r.to_string()),
            age_since(created_at(e), now),
            age_since(updated_at(e), now),
        );
        if style.wide {
            line.push_str(&format!(
                "  {:<session_w$}  {:<27}  {:<27}  {:>8}  {:>5}  {}",
                or_dash(&one_line(&spec.session_id, session_w)),
                or_dash(&status.started_at),
                or_dash(&status.completed_at),
                status.messages.len(),
                all_tool_calls(&status).len(),
                p.paint(Style::Red, &or_dash(&one_line(&status.error, 40))),
            ));
        }
        let prompt_max = if style.wide { 200 } else { 50 };
        line.push_str(&format!("  {}", one_line(&spec.message, prompt_max)));
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// Tool calls of the status and of its messages, each id once, in order of
/// first appearance.
pub(super) fn all_tool_calls(status: &AgentExecutionStatus) -> Vec<&ToolCall> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::transcript::Transcript;
    use serde_json::json;
    use stigmer_client::proto::agentexecution::AgentExecutionSpec;
    use stigmer_client::proto::agentexecution::AgentMessage;

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
    fn ages_read_like_kubectl() {
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(312)), "5m12s");
        assert_eq!(age(Duration::from_secs(1800)), "30m");
        assert_eq!(age(Duration::from_secs(3 * 3600 + 300)), "3h5m");
        assert_eq!(age(Duration::from_secs(2 * 86_400 + 4 * 3600)), "2d4h");
        assert_eq!(age(Duration::from_secs(40 * 86_400)), "40d");
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
