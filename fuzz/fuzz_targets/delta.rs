//! Delta operations (`stigmer_proto::delta`): arbitrary ops applied to
//! arbitrary statuses, and arbitrary whole statuses diffed, as the daemon
//! does with a runner's `append` and an upstream-style `update_status`.
//!
//! Input: a 2-byte big-endian length `n`, then `n` bytes decoded as the old
//! `AgentExecutionStatus`, then the rest, decoded both as a `Delta` and as a
//! new `AgentExecutionStatus`.
//!
//! Invariants: `apply_all` never panics, and its refusals leave a status
//! that still encodes; for a new status the daemon would accept (every enum
//! value known; its phase not UNSPECIFIED unless the old one is, as the
//! daemon's merge guarantees; audit and callback token the old ones, which
//! the daemon never takes from input), `apply_all(old, diff(old, new))`
//! succeeds and gives exactly `new`, and applying the same ops again
//! changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecutionStatus, ExecutionPhase, MessageType, SubAgentStatus, TodoStatus, ToolCall,
    ToolCallStatus,
};
use stigmer_proto::daemon::Delta;
use stigmer_proto::delta::{apply_all, diff};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_be_bytes(*head)).min(rest.len());
    let (old_bytes, tail) = rest.split_at(n);
    let Ok(old) = AgentExecutionStatus::decode(old_bytes) else {
        return;
    };

    if let Ok(delta) = Delta::decode(tail) {
        let mut status = old.clone();
        let _ = apply_all(&mut status, &delta.ops);
        let _ = status.encode_to_vec();
    }

    if let Ok(mut new) = AgentExecutionStatus::decode(tail) {
        new.audit = old.audit.clone();
        new.callback_token = old.callback_token.clone();
        if new.phase == ExecutionPhase::Unspecified as i32 {
            new.phase = old.phase;
        }
        if !accepted(&new) {
            return;
        }
        let ops = diff(&old, &new);
        let mut rebuilt = old.clone();
        let changed = apply_all(&mut rebuilt, &ops);
        assert_eq!(changed, Ok(!ops.is_empty()), "diff's ops apply");
        assert_eq!(rebuilt, new, "diff rebuilds the new status");
        assert_eq!(apply_all(&mut rebuilt, &ops), Ok(false), "ops apply once");
        assert_eq!(rebuilt, new);
    }
});

fn known<E: TryFrom<i32>>(value: i32) -> bool {
    E::try_from(value).is_ok()
}

fn calls_known(calls: &[ToolCall]) -> bool {
    calls.iter().all(|c| known::<ToolCallStatus>(c.status))
}

/// Every enum value known: what the daemon's validation accepts.
fn accepted(s: &AgentExecutionStatus) -> bool {
    known::<ExecutionPhase>(s.phase)
        && s
            .messages
            .iter()
            .all(|m| known::<MessageType>(m.r#type) && calls_known(&m.tool_calls))
        && calls_known(&s.tool_calls)
        && s
            .sub_agent_executions
            .iter()
            .all(|x| known::<SubAgentStatus>(x.status))
        && s.todos.values().all(|t| known::<TodoStatus>(t.status))
}
