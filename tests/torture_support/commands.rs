//! Builders of the requests the workload sends (and the tests reuse):
//! client-chosen ids, creates, whole statuses and append operations.

use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
    AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_proto::apiresource::ApiResourceMetadata;
use stigmer_proto::daemon::{op, request::Command as Cmd, AppendText, Op};

pub fn new_id() -> String {
    format!("aex-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A new execution `id` of `agent` in `session` (none when empty).
pub fn new_execution(id: &str, agent: &str, session: &str) -> AgentExecution {
    AgentExecution {
        metadata: Some(ApiResourceMetadata {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            agent_id: agent.into(),
            message: "torture".into(),
            session_id: session.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn update_cmd(id: &str, status: AgentExecutionStatus) -> Cmd {
    Cmd::UpdateStatus(AgentExecutionUpdateStatusInput {
        execution_id: id.into(),
        status: Some(status),
    })
}

pub fn message_status(text: String) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: text,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn phase_status(p: ExecutionPhase) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: p as i32,
        ..Default::default()
    }
}

pub fn text_op(message_index: u32, offset: u64, text: &str, r#type: i32) -> Op {
    Op {
        op: Some(op::Op::AppendText(AppendText {
            message_index,
            offset,
            text: text.into(),
            r#type,
        })),
    }
}
