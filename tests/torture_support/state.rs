//! What the checker compares: an execution's state reduced to a hash and a
//! summary (`State`), and one committed change of an execution (`Entry`).

use std::hash::{Hash, Hasher};

use prost::Message;
use stigmer_proto::agentexecution::{AgentExecution, ExecutionPhase};

/// An execution state reduced to what the checker compares: a hash of its
/// whole encoding (equal states encode equally) and a summary for traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub hash: u64,
    pub terminal: bool,
    pub summary: String,
}

impl State {
    pub fn of(e: &AgentExecution) -> State {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.encode_to_vec().hash(&mut h);
        let status = e.status.clone().unwrap_or_default();
        let phase = ExecutionPhase::try_from(status.phase)
            .map(|p| p.as_str_name().trim_start_matches("EXECUTION_").to_string())
            .unwrap_or_else(|_| format!("phase{}", status.phase));
        let last: String = status
            .messages
            .last()
            .map(|m| m.content.chars().take(20).collect())
            .unwrap_or_default();
        State {
            hash: h.finish(),
            terminal: stigmer::internals::is_terminal(e),
            summary: format!("{phase} {last:?} #{:08x}", h.finish() as u32),
        }
    }
}

/// One committed change of an execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    State(State),
    /// An append's acknowledgement: its revision but not its state (append
    /// replies are minimal), and whether it ended the execution. The state
    /// comes from the daemon's replay, or from what the streams carried at
    /// that revision (`resolve_appended`).
    Appended {
        terminal: bool,
    },
    Deleted,
}

impl Entry {
    pub(super) fn describe(&self) -> String {
        match self {
            Entry::State(s) => s.summary.clone(),
            Entry::Appended { terminal } => {
                format!("(an append, state not acknowledged, terminal: {terminal})")
            }
            Entry::Deleted => "DELETED".into(),
        }
    }

    /// The execution is over after this change (nothing may follow).
    pub fn over(&self) -> bool {
        match self {
            Entry::State(s) => s.terminal,
            Entry::Appended { terminal } => *terminal,
            Entry::Deleted => true,
        }
    }

    pub fn terminal_state(&self) -> bool {
        !matches!(self, Entry::Deleted) && self.over()
    }

    /// Whether a replayed entry is the one acknowledged (`self`).
    pub(super) fn acknowledged_as(&self, replayed: &Entry) -> bool {
        match (self, replayed) {
            (Entry::Appended { terminal }, Entry::State(s)) => s.terminal == *terminal,
            (a, b) => a == b,
        }
    }
}
