//! Input checks shared by the write pipelines: required fields and enum
//! values. prost keeps unknown enum numbers as plain integers, so each one is
//! checked here; a value this daemon does not know is INVALID_ARGUMENT rather
//! than something stored and later misread.

use stigmer_proto::agentexecution::{
    AgentExecutionStatus, ExecutionPhase, MessageType, SubAgentStatus, TodoStatus, ToolCall,
    ToolCallStatus,
};

use crate::protocol::ApiError;

/// Checks an execution id's form: `aex-` and a lowercase ULID.
pub(crate) fn execution_id_form(id: &str) -> Result<(), ApiError> {
    if crate::model::is_execution_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "execution id {} is not \"aex-\" followed by a lowercase ULID",
            crate::protocol::quote(id)
        )))
    }
}

/// Checks a reference to an execution (`field` names it): present and of
/// the form every id has. An id of another form can name no execution, so
/// it is INVALID_ARGUMENT, not NOT_FOUND.
pub(crate) fn execution_id(field: &str, id: &str) -> Result<(), ApiError> {
    required(field, id)?;
    execution_id_form(id)
}

/// Checks that a required string is present.
pub(crate) fn required(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        Err(ApiError::invalid_argument(format!("{field} is required")))
    } else {
        Ok(())
    }
}

/// Checks one enum value; `field` names it in the error, and is only built
/// for one (a valid status with many messages formats nothing).
fn known<E: TryFrom<i32>>(value: i32, field: impl FnOnce() -> String) -> Result<(), ApiError> {
    E::try_from(value)
        .map(|_| ())
        .map_err(|_| ApiError::invalid_argument(format!("{}: unknown enum value {value}", field())))
}

fn tool_calls(prefix: impl Fn() -> String, calls: &[ToolCall]) -> Result<(), ApiError> {
    for (i, call) in calls.iter().enumerate() {
        known::<ToolCallStatus>(call.status, || format!("{}[{i}].status", prefix()))?;
    }
    Ok(())
}

/// Checks every enum value in a status.
pub(crate) fn status(status: &AgentExecutionStatus) -> Result<(), ApiError> {
    known::<ExecutionPhase>(status.phase, || "status.phase".into())?;
    for (i, m) in status.messages.iter().enumerate() {
        known::<MessageType>(m.r#type, || format!("status.messages[{i}].type"))?;
        tool_calls(|| format!("status.messages[{i}].tool_calls"), &m.tool_calls)?;
    }
    tool_calls(|| "status.tool_calls".into(), &status.tool_calls)?;
    for (i, s) in status.sub_agent_executions.iter().enumerate() {
        known::<SubAgentStatus>(s.status, || {
            format!("status.sub_agent_executions[{i}].status")
        })?;
    }
    for (key, todo) in &status.todos {
        known::<TodoStatus>(todo.status, || format!("status.todos[{key:?}].status"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_form() {
        assert!(execution_id_form("aex-01jdx3k5m8q9r2s3t4v5w6x7y8").is_ok());
        assert!(execution_id_form("aex-01JDX3K5M8Q9R2S3T4V5W6X7Y8").is_err());
        assert!(execution_id_form("aex-short").is_err());
        assert!(execution_id_form("xyz-01jdx3k5m8q9r2s3t4v5w6x7y8").is_err());
        assert!(execution_id_form("aex-").is_err());
        assert!(execution_id_form("").is_err());
    }

    #[test]
    fn unknown_enum_refused() {
        let s = AgentExecutionStatus {
            phase: 42,
            ..Default::default()
        };
        assert_eq!(
            status(&s).unwrap_err().code,
            crate::protocol::Code::InvalidArgument
        );
    }

    #[test]
    fn unknown_enum_names_its_field() {
        use stigmer_proto::agentexecution::AgentMessage;
        let call = |status| ToolCall {
            status,
            ..Default::default()
        };
        let s = AgentExecutionStatus {
            messages: vec![
                AgentMessage::default(),
                AgentMessage {
                    tool_calls: vec![call(1), call(99)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let err = status(&s).unwrap_err();
        assert_eq!(err.code, crate::protocol::Code::InvalidArgument);
        assert!(
            err.message
                .contains("status.messages[1].tool_calls[1].status: unknown enum value 99"),
            "{}",
            err.message
        );
    }
}
