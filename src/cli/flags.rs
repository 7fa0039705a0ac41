//! The flag types several commands share: `-o` (`OutputArg`,
//! `ListOutputArg`), `--phase` (`PhaseArg`), `--session ID | --all`
//! (`SelectorArgs`) and what `wait --for` waits for (`Condition`). A leaf of
//! cli/: the command definitions (mod.rs, executions_args.rs) and the
//! commands that run them import these, and these import only exit.rs.

use clap::{Args, ValueEnum};
use stigmer_client::proto::agentexecution::ExecutionPhase;

use super::exit::CliError;

/// `--session S | --all`: which executions a many-execution stream follows
/// (exactly one).
#[derive(Clone, Debug, Args)]
pub struct SelectorArgs {
    /// Every execution of this session, present and future.
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub session: Option<String>,
    /// Every execution of the machine.
    #[arg(long)]
    pub all: bool,
}

impl SelectorArgs {
    /// The client's selector; a usage error when neither flag was given
    /// (clap refuses both; it would name only one of them as missing).
    pub fn selector(&self) -> Result<stigmer_client::Selector, CliError> {
        match (&self.session, self.all) {
            (Some(s), _) => Ok(stigmer_client::Selector::session(s.clone())),
            (None, true) => Ok(stigmer_client::Selector::All),
            (None, false) => Err(CliError::Usage(
                "say which executions to watch: --session ID or --all".into(),
            )),
        }
    }
}

/// `-o text|json`, shared by every query command.
#[derive(Clone, Copy, Debug, Args)]
pub struct OutputArg {
    /// Output format: `text` for people, `json` (canonical proto3 JSON) for
    /// programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `-o text|wide|json` for `list`.
#[derive(Clone, Copy, Debug, Args)]
pub struct ListOutputArg {
    /// Output format: `text` (a table), `wide` (more columns) or `json`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ListOutput::Text)]
    pub output: ListOutput,
}

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text.
    Text,
    /// The canonical proto3 JSON mapping.
    Json,
}

/// `list`'s output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    /// A table.
    Text,
    /// A table with more columns.
    Wide,
    /// A JSON array, canonical proto3 JSON.
    Json,
}

/// The phases as the CLI spells them: every phase of ExecutionPhase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    /// EXECUTION_PENDING.
    Pending,
    /// EXECUTION_IN_PROGRESS.
    InProgress,
    /// EXECUTION_WAITING_FOR_APPROVAL.
    WaitingForApproval,
    /// EXECUTION_PAUSED.
    Paused,
    /// EXECUTION_COMPLETED.
    Completed,
    /// EXECUTION_FAILED.
    Failed,
    /// EXECUTION_CANCELLED.
    Cancelled,
    /// EXECUTION_TERMINATED.
    Terminated,
}

impl From<PhaseArg> for ExecutionPhase {
    fn from(p: PhaseArg) -> Self {
        match p {
            PhaseArg::Pending => ExecutionPhase::ExecutionPending,
            PhaseArg::InProgress => ExecutionPhase::ExecutionInProgress,
            PhaseArg::WaitingForApproval => ExecutionPhase::ExecutionWaitingForApproval,
            PhaseArg::Paused => ExecutionPhase::ExecutionPaused,
            PhaseArg::Completed => ExecutionPhase::ExecutionCompleted,
            PhaseArg::Failed => ExecutionPhase::ExecutionFailed,
            PhaseArg::Cancelled => ExecutionPhase::ExecutionCancelled,
            PhaseArg::Terminated => ExecutionPhase::ExecutionTerminated,
        }
    }
}

/// What `wait --for` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Any final phase.
    Terminal,
    /// This phase.
    Phase(ExecutionPhase),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_a_flag_value() {
        use stigmer_client::proto::agentexecution::ExecutionPhase as P;
        let all: Vec<ExecutionPhase> = PhaseArg::value_variants()
            .iter()
            .map(|p| (*p).into())
            .collect();
        for p in [
            P::ExecutionPending,
            P::ExecutionInProgress,
            P::ExecutionCompleted,
            P::ExecutionFailed,
            P::ExecutionCancelled,
            P::ExecutionWaitingForApproval,
            P::ExecutionPaused,
            P::ExecutionTerminated,
        ] {
            assert!(all.contains(&p), "{p:?}");
        }
    }
}
