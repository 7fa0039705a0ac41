//! UpdateStatus: upstream's `updateStatus`, made atomic and final.
//!
//! | step        | runs on                                   | does |
//! |-------------|-------------------------------------------|------|
//! | `validate`  | the connection's task, before queuing     | id present and well-formed, status present, enum values known |
//! | `load`      | the writer thread, in the transaction     | reads the stored execution; NOT_FOUND; FAILED_PRECONDITION once terminal ([`super::ops::load`]) |
//! | `build`     | the writer thread                         | upstream's merge rules, into a copy of the stored status |
//! | `diff`      | the writer thread                         | the operations from the stored status to the merged one, then the commit stamp (started_at / completed_at / status audit); applied to the stored state |
//! | `persist`   | the writer thread                         | takes the next revision; stores the operations (a delta) or the whole state (a base) and points the execution at it ([`super::ops::persist`]) |
//! | *(commit)*  | the writer thread                         | group commit of the whole batch |
//! | `broadcast` | the writer thread, after COMMIT           | [`super::broadcast`]: hands the change to the broker |
//!
//! The caller is answered after broadcast, so an acknowledged update is
//! committed and already queued to every subscriber. Because the change is
//! stored and streamed as operations, a runner that resends its whole
//! cumulative status (upstream's pattern) costs what changed, not the whole
//! transcript, on disk and to delta subscribers.

use std::time::SystemTime;

use stigmer_proto::agentexecution::{
    AgentExecutionStatus, AgentExecutionUpdateStatusInput, ExecutionPhase,
};
use stigmer_proto::daemon::Op;
use stigmer_proto::delta;

use super::ops::{self, Loaded};
use super::{timestamp, validate as check};
use crate::model::Change;
use crate::protocol::ApiError;
use crate::store::Txn;

/// Step 1, on the connection's task before the write is queued: checks the
/// input.
pub(crate) fn validate(input: &AgentExecutionUpdateStatusInput) -> Result<(), ApiError> {
    check::execution_id("execution_id", &input.execution_id)?;
    let status = input.status.as_ref().ok_or_else(|| {
        ApiError::invalid_argument("status is required (an empty status changes nothing)")
    })?;
    check::status(status)
}

/// Steps 2-5, on the writer thread inside its transaction. Each step takes
/// what the one before returned, so they can only run in this order.
pub(crate) fn in_transaction(
    txn: &mut Txn<'_>,
    input: AgentExecutionUpdateStatusInput,
    now: SystemTime,
) -> Result<Change, ApiError> {
    let id = input.execution_id;
    let loaded = ops::load(txn, &id)?;
    let merged = build(&loaded, input.status.unwrap_or_default());
    let (loaded, ops) = diff(loaded, &merged, now)?;
    ops::persist(txn, &id, loaded, ops)
}

/// Step "build": upstream's merge rules, applied to a copy of the stored
/// status.
fn build(loaded: &Loaded, incoming: AgentExecutionStatus) -> AgentExecutionStatus {
    let mut merged = loaded.execution.status.clone().unwrap_or_default();
    merge(&mut merged, incoming);
    merged
}

/// Step "diff": the operations that lead from the stored status to the
/// merged one, then the commit stamp; applied to the stored state, which
/// therefore is exactly what a delta subscriber rebuilds.
fn diff(
    mut loaded: Loaded,
    merged: &AgentExecutionStatus,
    now: SystemTime,
) -> Result<(Loaded, Vec<Op>), ApiError> {
    let status = loaded.execution.status.get_or_insert_with(Default::default);
    let mut ops = delta::diff(status, merged);
    ops.push(ops::stamp(now));
    delta::apply_all(status, &ops).map_err(|e| {
        ApiError::internal(format!(
            "the operations of a merged status do not apply: {e}"
        ))
    })?;
    Ok((loaded, ops))
}

/// Upstream's updateStatus merge: lists and maps are replaced whole when the
/// incoming one is non-empty; phase unless UNSPECIFIED; strings when
/// non-empty; audit and callback_token are never taken from the input.
pub fn merge(stored: &mut AgentExecutionStatus, incoming: AgentExecutionStatus) {
    if !incoming.messages.is_empty() {
        stored.messages = incoming.messages;
    }
    if !incoming.tool_calls.is_empty() {
        stored.tool_calls = incoming.tool_calls;
    }
    if !incoming.sub_agent_executions.is_empty() {
        stored.sub_agent_executions = incoming.sub_agent_executions;
    }
    if !incoming.todos.is_empty() {
        stored.todos = incoming.todos;
    }
    if incoming.phase != ExecutionPhase::Unspecified as i32 {
        stored.phase = incoming.phase;
    }
    if !incoming.error.is_empty() {
        stored.error = incoming.error;
    }
    if !incoming.started_at.is_empty() {
        stored.started_at = incoming.started_at;
    }
    if !incoming.completed_at.is_empty() {
        stored.completed_at = incoming.completed_at;
    }
}

/// started_at when the execution has left PENDING, completed_at once
/// terminal (each only when missing), and the status audit: the commit
/// stamp, shared with the clients (`stigmer_proto::delta::stamp`).
pub fn stamp(status: &mut AgentExecutionStatus, now: SystemTime) {
    delta::stamp(status, &timestamp(now));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use stigmer_proto::agentexecution::{AgentMessage, MessageType, ToolCall};

    fn msg(text: &str) -> AgentMessage {
        AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn empty_lists_keep_the_stored_ones() {
        let mut stored = AgentExecutionStatus {
            messages: vec![msg("a")],
            phase: ExecutionPhase::ExecutionInProgress as i32,
            error: "old".into(),
            ..Default::default()
        };
        merge(&mut stored, AgentExecutionStatus::default());
        assert_eq!(stored.messages, vec![msg("a")]);
        assert_eq!(stored.phase, ExecutionPhase::ExecutionInProgress as i32);
        assert_eq!(stored.error, "old");
    }

    #[test]
    fn stamps_started_and_completed_once() {
        let mut s = AgentExecutionStatus {
            phase: ExecutionPhase::ExecutionCompleted as i32,
            ..Default::default()
        };
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        stamp(&mut s, t);
        assert_eq!(s.started_at, "2023-11-14T22:13:20.000000Z");
        assert_eq!(s.completed_at, s.started_at);
        let later = t + std::time::Duration::from_secs(5);
        stamp(&mut s, later);
        assert_eq!(
            s.completed_at, "2023-11-14T22:13:20.000000Z",
            "never overwritten"
        );
        let audit = s.audit.and_then(|a| a.status_audit).map(|i| i.event);
        assert_eq!(audit.as_deref(), Some("status_updated"));
    }

    fn status_strategy() -> impl Strategy<Value = AgentExecutionStatus> {
        (
            proptest::collection::vec("[a-z]{0,4}", 0..3),
            0i32..9,
            proptest::collection::vec("[a-z]{0,3}", 0..3),
            "[a-z]{0,3}",
            "[a-z]{0,3}",
        )
            .prop_map(
                |(messages, phase, calls, error, started)| AgentExecutionStatus {
                    messages: messages.iter().map(|m| msg(m)).collect(),
                    phase,
                    tool_calls: calls
                        .into_iter()
                        .map(|id| ToolCall {
                            id,
                            ..Default::default()
                        })
                        .collect(),
                    error,
                    started_at: started,
                    ..Default::default()
                },
            )
    }

    proptest! {
        /// Each field ends up as the incoming value when that is "set", else
        /// as the stored one: upstream's rule, field by field.
        #[test]
        fn merge_follows_upstream_rules(stored in status_strategy(), incoming in status_strategy()) {
            let mut merged = stored.clone();
            merge(&mut merged, incoming.clone());
            let pick = |set: bool| if set { &incoming } else { &stored };
            prop_assert_eq!(&merged.messages, &pick(!incoming.messages.is_empty()).messages);
            prop_assert_eq!(&merged.tool_calls, &pick(!incoming.tool_calls.is_empty()).tool_calls);
            prop_assert_eq!(merged.phase, pick(incoming.phase != 0).phase);
            prop_assert_eq!(&merged.error, &pick(!incoming.error.is_empty()).error);
            prop_assert_eq!(&merged.started_at, &pick(!incoming.started_at.is_empty()).started_at);
            prop_assert_eq!(&merged.audit, &stored.audit);
        }

        /// Merging the same input twice changes nothing more (runners resend
        /// their cumulative status).
        #[test]
        fn merge_is_idempotent(stored in status_strategy(), incoming in status_strategy()) {
            let mut once = stored.clone();
            merge(&mut once, incoming.clone());
            let mut twice = once.clone();
            merge(&mut twice, incoming);
            prop_assert_eq!(once, twice);
        }
    }
}
