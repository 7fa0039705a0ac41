//! The clap definition of `stigmer executions ...` (alias `exec`): every
//! subcommand's arguments and the parsers of their values (`--for`,
//! durations, `--message TYPE:TEXT`). Apart from mod.rs's command tree so
//! that the largest command group's flags read in one place; executions.rs
//! runs what is parsed here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use stigmer_client::proto::agentexecution::MessageType;

use super::flags::{Condition, ListOutputArg, OutputArg, PhaseArg, SelectorArgs};

/// `stigmer executions ...`.
#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// Create an execution and print its id.
    Create {
        /// The agent to run.
        #[arg(long, value_name = "ID")]
        agent: String,
        /// The session the execution belongs to.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// The user's prompt.
        #[arg(long, value_name = "TEXT")]
        message: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Send a status update (as a runner would).
    Update {
        /// The execution id.
        id: String,
        /// A status in canonical proto3 JSON (an AgentExecutionStatus, or
        /// any object with a `status` field holding one, such as the output
        /// of `get -o json`); `-` reads standard input. Flags given as well
        /// override its fields.
        #[arg(short = 'f', long, value_name = "PATH|-")]
        from_file: Option<PathBuf>,
        /// The new phase.
        #[arg(long, value_enum)]
        phase: Option<PhaseArg>,
        /// A message, `TYPE:TEXT` with TYPE one of human, ai, tool, system.
        /// Repeat it to give the whole messages list, in order (it replaces
        /// the stored list).
        #[arg(long = "message", value_name = "TYPE:TEXT", value_parser = parse_message)]
        messages: Vec<(MessageType, String)>,
        /// The execution's error text.
        #[arg(long, value_name = "TEXT")]
        error: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Cancel an execution: its phase becomes cancelled (final), and its
    /// runner's next update is refused with FAILED_PRECONDITION.
    Cancel {
        /// The execution id.
        id: String,
        /// The error text to record with the cancellation.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Wait until an execution meets a condition (like `kubectl wait`).
    /// Exit status: 0 when it is met, 3 or 4 when the execution failed or
    /// was cancelled before `--for completed` could hold, 7 when it ended
    /// in a phase that can no longer meet the condition, 11 on timeout, 12
    /// when the daemon stayed unreachable (for --timeout, else 30 s).
    Wait {
        /// The execution id.
        id: String,
        /// The condition: `terminal` (any final phase), `completed`, or
        /// `phase=P` (P as in --phase).
        #[arg(long = "for", value_name = "CONDITION", default_value = "terminal", value_parser = parse_condition)]
        condition: Condition,
        /// Give up after this long (e.g. 30s, 5m) with exit status 11
        /// [default: wait forever].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one execution.
    Get {
        /// The execution id.
        id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// List executions, in creation order.
    List {
        /// Only executions in this phase.
        #[arg(long, value_enum)]
        phase: Option<PhaseArg>,
        /// Only executions of this session.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Only executions of this agent (filtered by the CLI: the protocol
        /// has no agent filter).
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// At most this many executions (the first, in creation order).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Leave out the header line.
        #[arg(long)]
        no_headers: bool,
        #[command(flatten)]
        output: ListOutputArg,
    },
    /// Delete an execution.
    Delete {
        /// The execution id.
        id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Watch an execution live until it ends. Exit status: 0 completed,
    /// 3 failed, 4 cancelled or terminated, 12 when the daemon stayed
    /// unreachable for --reconnect-timeout (see `stigmer --help`).
    Subscribe {
        /// The execution id.
        id: String,
        /// Resume after this revision instead of starting with a snapshot.
        #[arg(long, value_name = "N")]
        from_revision: Option<u64>,
        /// When the daemon goes away, keep reconnecting this long (e.g.
        /// 30s, 2m) before giving up with exit status 12; the stream
        /// resumes where it left off, losing nothing.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        reconnect_timeout: Duration,
        /// Prefix each line of the transcript with the commit time of the
        /// change that produced it.
        #[arg(long)]
        timestamps: bool,
        /// With -o json: print each change as its operations (`"type":
        /// "delta"`, `"ops"` in canonical proto3 JSON) instead of the whole
        /// execution. (The text transcript always streams deltas.)
        #[arg(long)]
        deltas: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Watch many executions live, one line per change (like `kubectl get
    /// -w`): every execution of a session (--session) or of the machine
    /// (--all), first as they are, then each change as it commits. Runs
    /// until interrupted; resumes by itself when the daemon restarts.
    /// Exit status: 12 when the daemon stayed unreachable for
    /// --reconnect-timeout, 2 for bad flags.
    Watch {
        #[command(flatten)]
        selector: SelectorArgs,
        /// Start after this revision: only the changes after it, no initial
        /// list.
        #[arg(long, value_name = "N")]
        from_revision: Option<u64>,
        /// When the daemon goes away, keep reconnecting this long (e.g.
        /// 30s, 2m) before giving up with exit status 12; the stream
        /// resumes where it left off, losing nothing.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        reconnect_timeout: Duration,
        /// With -o json: print each change that came as operations as
        /// `"type": "delta"` with its `"ops"` instead of the whole
        /// execution.
        #[arg(long)]
        deltas: bool,
        /// Leave out the header line (-o text).
        #[arg(long)]
        no_headers: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Append text to a message of an execution, at the end of what it holds
    /// (or at --offset, which makes a retry safe: text already there is not
    /// appended twice), and print the revision.
    Append {
        /// The execution id.
        id: String,
        /// The text to append.
        #[arg(
            long,
            value_name = "TEXT",
            conflicts_with = "text_file",
            required_unless_present = "text_file"
        )]
        text: Option<String>,
        /// Read the text from a file, or `-` for standard input.
        #[arg(long, value_name = "PATH|-")]
        text_file: Option<PathBuf>,
        /// The message to append to (0 is the first; default: the last, or a
        /// new first AI message when there is none; the number of messages
        /// starts a new AI message).
        #[arg(long, value_name = "N")]
        message_index: Option<u32>,
        /// The UTF-8 byte offset where the text starts [default: the
        /// message's length now].
        #[arg(long, value_name = "N")]
        offset: Option<u64>,
        /// Only if the execution is still at this revision (else exit 7).
        #[arg(long, value_name = "R")]
        expected_revision: Option<u64>,
    },
}

/// Parses `--for terminal|completed|phase=P`.
fn parse_condition(s: &str) -> Result<Condition, String> {
    let s = s.trim();
    if s == "terminal" {
        return Ok(Condition::Terminal);
    }
    let phase = s.strip_prefix("phase=").unwrap_or(s);
    match PhaseArg::from_str(phase, true) {
        Ok(p) => Ok(Condition::Phase(p.into())),
        Err(_) => Err(format!(
            "unknown condition {s:?} (expected terminal, completed or phase=P with P one of {})",
            PhaseArg::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value())
                .map(|v| v.get_name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Parses a duration such as `30s`, `5m`, `1h 30m` or `250ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e})"))
}

/// Parses `--message TYPE:TEXT`.
fn parse_message(s: &str) -> Result<(MessageType, String), String> {
    let Some((kind, text)) = s.split_once(':') else {
        return Err("expected TYPE:TEXT (TYPE: human, ai, tool or system)".into());
    };
    let kind = match kind.trim().to_ascii_lowercase().as_str() {
        "human" => MessageType::MessageHuman,
        "ai" => MessageType::MessageAi,
        "tool" => MessageType::MessageTool,
        "system" => MessageType::MessageSystem,
        other => {
            return Err(format!(
                "unknown message type {other:?} (expected human, ai, tool or system)"
            ))
        }
    };
    Ok((kind, text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_client::proto::agentexecution::ExecutionPhase;

    #[test]
    fn message_flag_parses_type_and_text() {
        assert_eq!(
            parse_message("ai:hello: world").unwrap(),
            (MessageType::MessageAi, "hello: world".to_string())
        );
        assert!(parse_message("robot:hi").is_err());
        assert!(parse_message("no colon").is_err());
    }

    #[test]
    fn conditions_parse() {
        assert_eq!(parse_condition("terminal"), Ok(Condition::Terminal));
        assert_eq!(
            parse_condition("completed"),
            Ok(Condition::Phase(ExecutionPhase::ExecutionCompleted))
        );
        assert_eq!(
            parse_condition("phase=waiting-for-approval"),
            Ok(Condition::Phase(
                ExecutionPhase::ExecutionWaitingForApproval
            ))
        );
        assert!(parse_condition("phase=sideways").is_err());
    }
}
