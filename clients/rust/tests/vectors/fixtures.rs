//! The vocabulary of the golden frames: a vector (`Vector`, a `Msg` before
//! encoding) and the builders of the requests, replies, executions and
//! statuses the catalogue (`catalogue.rs`) is written with.

use std::collections::{BTreeMap, HashMap};

use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionStatus, AgentMessage, ExecutionPhase,
    MessageType, TodoItem, TodoStatus, ToolCall, ToolCallStatus,
};
use stigmer_client::proto::apiresource::{
    ApiResourceAudit, ApiResourceAuditInfo, ApiResourceMetadata,
};
use stigmer_client::proto::daemon::{
    request::Command, response::Result as Reply, EndReason, Event, EventType, Request, Response,
};
use stigmer_client::proto::wkt::{value::Kind, Struct, Timestamp, Value};

/// One golden frame before encoding.
pub enum Msg {
    Request(Request),
    Response(Response),
}

pub struct Vector {
    pub name: &'static str,
    pub description: &'static str,
    pub msg: Msg,
}

pub fn req(id: u64, command: Command) -> Msg {
    Msg::Request(Request {
        protocol_version: 1,
        id,
        minimal_reply: false,
        command: Some(command),
    })
}

pub fn resp(id: u64, result: Reply) -> Msg {
    Msg::Response(Response {
        id,
        result: Some(result),
    })
}

fn string_struct(key: &str, value: &str) -> Struct {
    // One field only: Struct is a HashMap, whose iteration (and so encoding)
    // order is unspecified with more than one entry.
    let mut fields = HashMap::new();
    fields.insert(
        key.to_string(),
        Value {
            kind: Some(Kind::StringValue(value.to_string())),
        },
    );
    Struct { fields }
}

pub const EXEC_ID: &str = "aex-01jf8zq3k4m5n6p7q8r9s0t1v2";
pub const EXEC_ID_2: &str = "aex-01jf8zq9a0b1c2d3e4f5g6h7j8";
const T0: &str = "2025-01-02T03:04:05Z";
const T1: &str = "2025-01-02T03:04:09Z";

fn audit(seconds: i64) -> ApiResourceAudit {
    let info = |event: &str| ApiResourceAuditInfo {
        created_by: None,
        created_at: Some(Timestamp {
            seconds: 1_735_787_045,
            nanos: 0,
        }),
        updated_by: None,
        updated_at: Some(Timestamp {
            seconds,
            nanos: 500_000_000,
        }),
        event: event.to_string(),
    };
    ApiResourceAudit {
        spec_audit: Some(info("")),
        status_audit: Some(info("status_updated")),
    }
}

fn tool_call(status: ToolCallStatus) -> ToolCall {
    ToolCall {
        id: "call-1".into(),
        name: "read_file".into(),
        args: Some(string_struct("path", "README.md")),
        result: if status == ToolCallStatus::ToolCallCompleted {
            "# stigmer\n".into()
        } else {
            String::new()
        },
        status: status as i32,
        component_metadata: None,
        started_at: T0.into(),
        completed_at: if status == ToolCallStatus::ToolCallCompleted {
            T1.into()
        } else {
            String::new()
        },
        error: String::new(),
    }
}

/// A status as a runner sends it: messages, tool calls and one todo.
pub fn rich_status(phase: ExecutionPhase, tool: ToolCallStatus) -> AgentExecutionStatus {
    let mut todos = BTreeMap::new();
    todos.insert(
        "todo-1".to_string(),
        TodoItem {
            id: "todo-1".into(),
            content: "Read the README".into(),
            status: TodoStatus::TodoInProgress as i32,
            created_at: T0.into(),
            updated_at: T0.into(),
        },
    );
    AgentExecutionStatus {
        messages: vec![
            AgentMessage {
                r#type: MessageType::MessageHuman as i32,
                content: "Summarise the README".into(),
                timestamp: T0.into(),
                tool_calls: vec![],
                metadata: None,
            },
            AgentMessage {
                r#type: MessageType::MessageAi as i32,
                content: "Let me read it. ✓".into(),
                timestamp: T0.into(),
                tool_calls: vec![tool_call(tool)],
                metadata: Some(string_struct("model", "demo-1")),
            },
        ],
        phase: phase as i32,
        tool_calls: vec![tool_call(tool)],
        sub_agent_executions: vec![],
        error: String::new(),
        started_at: T0.into(),
        completed_at: String::new(),
        todos,
        callback_token: Default::default(),
        audit: None,
    }
}

/// An execution as the daemon stores and returns it.
pub fn stored(id: &str, phase: ExecutionPhase, tool: ToolCallStatus) -> AgentExecution {
    let mut status = rich_status(phase, tool);
    status.audit = Some(audit(1_735_787_049));
    if phase == ExecutionPhase::ExecutionCompleted {
        status.completed_at = T1.into();
    }
    AgentExecution {
        api_version: "agentic.stigmer.ai/v1".into(),
        kind: "AgentExecution".into(),
        metadata: Some(ApiResourceMetadata {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            session_id: "ses-1".into(),
            agent_id: "agent-1".into(),
            message: "Summarise the README".into(),
            ..Default::default()
        }),
        status: Some(status),
    }
}

pub fn pending(id: &str) -> AgentExecution {
    AgentExecution {
        api_version: "agentic.stigmer.ai/v1".into(),
        kind: "AgentExecution".into(),
        metadata: Some(ApiResourceMetadata {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            session_id: "ses-1".into(),
            agent_id: "agent-1".into(),
            message: "Summarise the README".into(),
            ..Default::default()
        }),
        status: Some(AgentExecutionStatus {
            phase: ExecutionPhase::ExecutionPending as i32,
            audit: Some(audit(1_735_787_045)),
            ..Default::default()
        }),
    }
}

pub fn event(
    kind: EventType,
    revision: u64,
    execution: Option<AgentExecution>,
    reason: EndReason,
    message: &str,
) -> Reply {
    Reply::Event(Event {
        r#type: kind as i32,
        revision,
        execution_id: EXEC_ID.into(),
        execution,
        reason: reason as i32,
        message: message.into(),
        ..Default::default()
    })
}

pub fn end(revision: u64, reason: EndReason, message: &str) -> Reply {
    event(EventType::EventEnd, revision, None, reason, message)
}
