//! The steps `update_status` and `append` share: every status change is
//! made by operations (`stigmer_proto::delta`), so that the history, the
//! replies and delta streams cost what changed, not the whole transcript.
//!
//! - [`load`]: the stored execution; NOT_FOUND; FAILED_PRECONDITION once
//!   terminal.
//! - [`stamp`]: the commit stamp, the last operation of every change.
//! - [`persist`]: takes a revision and stores the change as a *delta* (its
//!   operations) or as a *base* (the whole state, with its operations),
//!   then points the execution at it.
//!
//! The base rule: a whole state is written when the operations stored since
//! the last one would outgrow it, at a terminal phase, and after an
//! operation that replaces a whole part (a list, a message). The bytes
//! stored for an execution thus stay within a small multiple of its
//! length, and rebuilding its state reads at most about its size in
//! operations.

use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use stigmer_proto::agentexecution::{AgentExecution, ExecutionPhase};
use stigmer_proto::daemon::{op, Delta as StoredDelta, Op};

use super::timestamp;
use crate::model::{is_terminal_phase, Change, Delta, State};
use crate::protocol::ApiError;
use crate::store::txn::{Chain, Record};
use crate::store::Txn;

/// An execution as `load` found it: its state, and the phase, revision and
/// chain `persist` moves on from.
pub(crate) struct Loaded {
    pub(crate) execution: AgentExecution,
    /// The stored phase, so `persist` rewrites the phase index only when it
    /// changed.
    pub(crate) phase: i32,
    /// The stored revision: the head of its history chain.
    pub(crate) revision: u64,
    /// Where its chain of deltas stands.
    pub(crate) chain: Chain,
}

/// Step "load": reads the stored execution (from the writer's cache of the
/// states it wrote, else SQLite); NOT_FOUND; FAILED_PRECONDITION once
/// terminal.
pub(crate) fn load(txn: &mut Txn<'_>, id: &str) -> Result<Loaded, ApiError> {
    let stored = txn
        .load(id)?
        .ok_or_else(|| ApiError::not_found(format!("execution {id} not found")))?;
    let loaded = Loaded::from_stored(stored);
    let phase = loaded.phase;
    if is_terminal_phase(phase) {
        let name = ExecutionPhase::try_from(phase)
            .map(|p| p.as_str_name())
            .unwrap_or("a terminal phase");
        return Err(ApiError::failed_precondition(format!(
            "execution {id} is {name}; its phase is final and it takes no more updates"
        )));
    }
    Ok(loaded)
}

impl Loaded {
    /// An execution as the store holds it, with its stored phase.
    pub(crate) fn from_stored(stored: crate::store::txn::Stored) -> Loaded {
        let phase = stored
            .execution
            .status
            .as_ref()
            .map(|s| s.phase)
            .unwrap_or(0);
        Loaded {
            execution: stored.execution,
            phase,
            revision: stored.revision,
            chain: stored.chain,
        }
    }
}

/// The commit stamp as an operation: started_at, completed_at and the
/// status audit at `now` (`stigmer_proto::delta::stamp`).
pub(crate) fn stamp(now: SystemTime) -> Op {
    Op {
        op: Some(op::Op::Stamp(timestamp(now))),
    }
}

/// True for an operation that replaces a whole part: the next base is
/// written with it, so the history never holds a long chain of copies.
/// `put_message_tool_call` is not one: it carries one tool call, not the
/// message.
fn replaces(op: &Op) -> bool {
    matches!(
        op.op,
        Some(
            op::Op::ReplaceMessage(_)
                | op::Op::ReplaceMessages(_)
                | op::Op::ReplaceToolCalls(_)
                | op::Op::ReplaceSubAgents(_)
        )
    )
}

/// Step "persist": takes a revision and stores the change `ops` made to
/// `loaded` (already applied to `loaded.execution`) as a delta or a base
/// (see the module docs), and points the execution at it.
pub(crate) fn persist(
    txn: &mut Txn<'_>,
    id: &str,
    loaded: Loaded,
    ops: Vec<Op>,
) -> Result<Change, ApiError> {
    let execution = Arc::new(loaded.execution);
    let phase = execution.status.as_ref().map(|s| s.phase).unwrap_or(0);
    let replacing = ops.iter().any(replaces);
    let stored = StoredDelta { ops };
    let encoded_ops = stored.encode_to_vec();
    let chain = loaded.chain;
    let base = replacing
        || is_terminal_phase(phase)
        || chain.delta_bytes + encoded_ops.len() as u64 > chain.base_bytes;
    let encoded = if base {
        // Encoded once: the same bytes go to the history row and, via the
        // change, to replies and whole-state events.
        Some(txn.encode(&execution)?)
    } else {
        let estimate = chain.base_bytes + chain.delta_bytes + encoded_ops.len() as u64;
        txn.check_size(&execution, estimate as usize)?;
        None
    };
    let revision = txn.allocate_revision();
    let record = match &encoded {
        Some(data) => Record::Base {
            data,
            ops: Some(&encoded_ops),
        },
        None => Record::Delta { ops: &encoded_ops },
    };
    let phase_changed = (phase != loaded.phase).then_some(phase);
    if !txn.update(
        id,
        &execution,
        phase_changed,
        (loaded.revision, chain),
        revision,
        record,
    )? {
        // `load` found the row at that revision in this same transaction.
        return Err(ApiError::internal(format!(
            "execution {id} vanished or moved inside its transaction"
        )));
    }
    Ok(Change::by_ops(
        revision,
        Arc::from(id),
        State::new(execution, encoded),
        Delta {
            ops: stored.ops,
            prev_revision: loaded.revision,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_proto::daemon::{PutMessageToolCall, ReplaceMessage};

    /// A message's tool call changes without a base: it carries one small
    /// tool call, where replace_message carries the whole message.
    #[test]
    fn a_message_tool_call_does_not_replace() {
        let put = Op {
            op: Some(op::Op::PutMessageToolCall(PutMessageToolCall::default())),
        };
        assert!(!replaces(&put));
        let replace = Op {
            op: Some(op::Op::ReplaceMessage(ReplaceMessage::default())),
        };
        assert!(replaces(&replace));
    }
}
