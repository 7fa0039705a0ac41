//! What the browser receives, as JSON: a row of the executions table, an
//! execution's whole state, and a patch (one committed change as the
//! browser applies it: text appends and message changes in order, then the
//! rest of the state when anything else changed). Callback tokens are
//! taken out of everything: the page has no use for them.

use pbjson_types::Timestamp;
use serde_json::{json, Value};
use stigmer_client::proto::agentexecution::{AgentExecution, AgentExecutionStatus};
use stigmer_client::proto::daemon::{op, Op};

/// Longest latest-line shown in the table, in characters.
const LINE_CHARS: usize = 200;

/// The execution's id.
pub(crate) fn id_of(e: &AgentExecution) -> &str {
    e.metadata.as_ref().map_or("", |m| m.id.as_str())
}

fn millis(t: Option<&Timestamp>) -> Value {
    match t {
        Some(t) => json!(t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000)),
        None => Value::Null,
    }
}

fn created(e: &AgentExecution) -> Option<&Timestamp> {
    e.status
        .as_ref()?
        .audit
        .as_ref()?
        .spec_audit
        .as_ref()?
        .created_at
        .as_ref()
}

fn updated(e: &AgentExecution) -> Option<&Timestamp> {
    e.status
        .as_ref()?
        .audit
        .as_ref()?
        .status_audit
        .as_ref()?
        .updated_at
        .as_ref()
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// One row of the executions table.
pub(crate) fn row(e: &AgentExecution) -> Value {
    let spec = e.spec.as_ref();
    let status = e.status.as_ref();
    let latest = crate::model::latest_text(e);
    json!({
        "id": id_of(e),
        "agent": spec.map_or("", |s| s.agent_id.as_str()),
        "session": spec.map_or("", |s| s.session_id.as_str()),
        "phase": status.map_or("EXECUTION_PHASE_UNSPECIFIED", |s| s.phase().as_str_name()),
        "created": millis(created(e)),
        "updated": millis(updated(e)),
        "messages": status.map_or(0, |s| s.messages.len()),
        "text": clip(latest, LINE_CHARS),
    })
}

/// The execution without its callback tokens.
pub(crate) fn state(e: &AgentExecution) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(e)?;
    scrub(&mut value);
    Ok(value)
}

/// Removes `callbackToken` from the spec and the status of an execution's
/// JSON.
fn scrub(value: &mut Value) {
    for part in ["spec", "status"] {
        if let Some(Value::Object(o)) = value.get_mut(part) {
            o.remove("callbackToken");
        }
    }
}

/// The execution without its messages (what a patch sends when something
/// other than text changed).
fn meta(e: &AgentExecution) -> Result<Value, serde_json::Error> {
    let status = e.status.as_ref().map(|s| AgentExecutionStatus {
        messages: Vec::new(),
        phase: s.phase,
        tool_calls: s.tool_calls.clone(),
        sub_agent_executions: s.sub_agent_executions.clone(),
        error: s.error.clone(),
        started_at: s.started_at.clone(),
        completed_at: s.completed_at.clone(),
        todos: s.todos.clone(),
        callback_token: Default::default(),
        audit: s.audit.clone(),
    });
    let lean = AgentExecution {
        api_version: e.api_version.clone(),
        kind: e.kind.clone(),
        metadata: e.metadata.clone(),
        spec: e.spec.clone(),
        status,
    };
    state(&lean)
}

/// One delta as the browser applies it: `ops` (appends and message
/// changes, in order: `append`, `message`, `messages`, and `toolCall`, one
/// tool call put into a message's own list), `meta` (the state without
/// messages) when anything else changed, and `updated` (the commit stamp)
/// always.
pub(crate) fn patch(ops: &[Op], after: &AgentExecution) -> Result<Value, serde_json::Error> {
    let mut out = Vec::new();
    let mut other = false;
    for o in ops {
        match &o.op {
            Some(op::Op::AppendText(a)) => out.push(json!({"append": {
                "index": a.message_index,
                "offset": a.offset,
                "text": a.text,
                "type": a.r#type().as_str_name(),
            }})),
            Some(op::Op::AddMessage(a)) => out.push(json!({"message": {
                "index": a.index,
                "message": serde_json::to_value(&a.message)?,
            }})),
            Some(op::Op::ReplaceMessage(r)) => out.push(json!({"message": {
                "index": r.index,
                "message": serde_json::to_value(&r.message)?,
            }})),
            Some(op::Op::ReplaceMessages(m)) => {
                out.push(json!({"messages": serde_json::to_value(&m.messages)?}))
            }
            Some(op::Op::PutMessageToolCall(p)) => out.push(json!({"toolCall": {
                "index": p.message_index,
                "toolCall": serde_json::to_value(&p.tool_call)?,
            }})),
            Some(op::Op::Stamp(_)) => {}
            // Tool calls, todos, sub-agents, phase, error, times, or an
            // operation this build does not know: send the rest whole.
            _ => other = true,
        }
    }
    let mut value = json!({ "ops": out, "updated": millis(updated(after)) });
    if other {
        value["meta"] = meta(after)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_client::proto::agentexecution::AgentMessage;
    use stigmer_client::proto::daemon::AppendText;

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
    }

    #[test]
    fn tokens_never_leave() {
        let mut e = AgentExecution::default();
        e.spec.get_or_insert_with(Default::default).callback_token = vec![1, 2, 3].into();
        let status = e.status.get_or_insert_with(Default::default);
        status.callback_token = vec![4].into();
        status.messages.push(AgentMessage {
            content: "hi".into(),
            ..Default::default()
        });
        let text = state(&e).unwrap().to_string();
        assert!(!text.contains("callbackToken"), "{text}");
        assert!(text.contains("hi"));
        let text = meta(&e).unwrap().to_string();
        assert!(
            !text.contains("callbackToken") && !text.contains("hi"),
            "{text}"
        );
    }

    #[test]
    fn a_message_tool_call_patch_carries_only_the_tool_call() {
        use stigmer_client::proto::agentexecution::ToolCall;
        use stigmer_client::proto::daemon::PutMessageToolCall;
        let e = AgentExecution::default();
        let ops = vec![Op {
            op: Some(op::Op::PutMessageToolCall(PutMessageToolCall {
                message_index: 1,
                tool_call: Some(ToolCall {
                    id: "call-1".into(),
                    name: "search_logs".into(),
                    ..Default::default()
                }),
            })),
        }];
        let p = patch(&ops, &e).unwrap();
        assert_eq!(p["ops"][0]["toolCall"]["index"], 1);
        assert_eq!(p["ops"][0]["toolCall"]["toolCall"]["id"], "call-1");
        assert_eq!(p["ops"][0]["toolCall"]["toolCall"]["name"], "search_logs");
        assert!(p.get("meta").is_none(), "the rest did not change");
    }

    #[test]
    fn a_text_append_patch_carries_only_the_text() {
        let e = AgentExecution::default();
        let ops = vec![Op {
            op: Some(op::Op::AppendText(AppendText {
                message_index: 0,
                offset: 5,
                text: "<b>x</b>".into(),
                r#type: 0,
            })),
        }];
        let p = patch(&ops, &e).unwrap();
        assert_eq!(p["ops"][0]["append"]["text"], "<b>x</b>");
        assert_eq!(p["ops"][0]["append"]["offset"], 5);
        assert!(p.get("meta").is_none());
    }
}
