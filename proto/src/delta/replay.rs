//! [`replay`]: an execution's state rebuilt from a state stored whole (a
//! *base*) and the encoded `Delta`s stored after it, oldest first.
//!
//! Why it exists: the daemon stores an execution's changes as a chain from
//! its last base in two places, its SQLite history (`src/store/reader.rs`
//! rebuilds the latest state, or one at a revision, from it) and, in the
//! cluster mode, etcd's records (`src/cluster/rebuild.rs` rebuilds a
//! replica from them after a compaction). Both must give the state every
//! other daemon and client gives, so they rebuild it with this one
//! function rather than each with its own loop.

use prost::bytes::Buf;
use prost::Message;

use super::apply::{apply_to, ApplyError};
use crate::agentexecution::AgentExecution;
use crate::daemon::Delta;

/// Why [`replay`] could not rebuild a state. Each stored piece was valid
/// when it was written, so to its caller any of these is damage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The base does not decode as an `AgentExecution`.
    Base(prost::DecodeError),
    /// A delta does not decode as a `Delta`.
    Delta(prost::DecodeError),
    /// A delta's operations do not apply to the state before it (the
    /// error's message names the operation's position, `ops[2]: ...`).
    Apply(ApplyError),
}

/// The state `base` (an encoded `AgentExecution`) with `deltas` (encoded
/// `Delta`s, oldest first) applied in order by [`apply_to`] (which creates
/// the status for the first delta when the base has none); with no delta
/// the base is returned as it decodes. Stops at the first piece that does
/// not decode or apply.
pub fn replay<B, D>(
    base: B,
    deltas: impl IntoIterator<Item = D>,
) -> Result<AgentExecution, ReplayError>
where
    B: Buf,
    D: Buf,
{
    let mut execution = AgentExecution::decode(base).map_err(ReplayError::Base)?;
    for encoded in deltas {
        let delta = Delta::decode(encoded).map_err(ReplayError::Delta)?;
        apply_to(&mut execution, &delta.ops).map_err(ReplayError::Apply)?;
    }
    Ok(execution)
}
