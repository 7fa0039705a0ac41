//! What the benchmarks share: the "1 KiB status" every scenario sends.

use stigmer_proto::agentexecution::{
    AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType,
};

/// The benchmark's "1 KiB status": one AI message padded to ~1 KiB.
pub fn status() -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: "x".repeat(1000),
            ..Default::default()
        }],
        ..Default::default()
    }
}
