//! The `stigmer` command line: clap definitions and dispatch. `stigmer
//! daemon` runs the daemon; every other command is a client of it, built on
//! the `stigmer-client` crate (executions.rs, demo.rs), with output shaped
//! by render.rs.

mod demo;
mod executions;
mod render;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stigmer_client::proto::agentexecution::{ExecutionPhase, MessageType};

use crate::config::DaemonArgs;

/// stigmer: the local hub through which AI agent executions report progress
/// and are watched live.
#[derive(Debug, Parser)]
#[command(name = "stigmer", version, about, propagate_version = true)]
pub struct Cli {
    /// The daemon's socket [default: $STIGMER_SOCKET, else /run/stigmer.sock
    /// as root, else $XDG_RUNTIME_DIR/stigmer.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (until SIGTERM or SIGINT).
    Daemon(DaemonArgs),
    /// Create, update, inspect, delete and watch executions.
    #[command(subcommand, visible_alias = "exec")]
    Executions(ExecutionsCommand),
    /// Show a simulated agent streaming into a live transcript (starts a
    /// temporary daemon when none answers on the socket).
    Demo,
    /// Show the daemon's version, paths, load, counters and latencies.
    Status {
        /// Print the Prometheus text exposition instead.
        #[arg(long)]
        prometheus: bool,
        #[command(flatten)]
        output: OutputArg,
    },
}

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
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete an execution.
    Delete {
        /// The execution id.
        id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Watch an execution live until it ends. Exit status: 0 completed,
    /// 3 failed, 4 cancelled or terminated, 1 on errors.
    Subscribe {
        /// The execution id.
        id: String,
        /// Resume after this revision instead of starting with a snapshot.
        #[arg(long, value_name = "N")]
        from_revision: Option<u64>,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// `-o text|json`, shared by every query command.
#[derive(Clone, Copy, Debug, Args)]
pub struct OutputArg {
    /// Output format: `text` for people, `json` (canonical proto3 JSON) for
    /// programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text.
    Text,
    /// The canonical proto3 JSON mapping.
    Json,
}

/// The phases as the CLI spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    /// EXECUTION_PENDING.
    Pending,
    /// EXECUTION_IN_PROGRESS.
    InProgress,
    /// EXECUTION_COMPLETED.
    Completed,
    /// EXECUTION_FAILED.
    Failed,
    /// EXECUTION_CANCELLED.
    Cancelled,
}

impl From<PhaseArg> for ExecutionPhase {
    fn from(p: PhaseArg) -> Self {
        match p {
            PhaseArg::Pending => ExecutionPhase::ExecutionPending,
            PhaseArg::InProgress => ExecutionPhase::ExecutionInProgress,
            PhaseArg::Completed => ExecutionPhase::ExecutionCompleted,
            PhaseArg::Failed => ExecutionPhase::ExecutionFailed,
            PhaseArg::Cancelled => ExecutionPhase::ExecutionCancelled,
        }
    }
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

/// Exit status for errors talking to the daemon (usage errors are 2, as
/// clap makes them).
pub(crate) const EXIT_ERROR: u8 = 1;

/// The `stigmer` binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(stigmer_client::paths::default_socket_path);
    match cli.command {
        Command::Daemon(args) => crate::daemon::run(socket, args),
        Command::Executions(cmd) => with_runtime(|| executions::run(socket, cmd)),
        Command::Demo => with_runtime(|| demo::run(socket)),
        Command::Status { prometheus, output } => {
            with_runtime(|| status::run(socket, prometheus, output.output))
        }
    }
}

/// Runs a client command on a current-thread runtime (one connection needs
/// no more).
fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn message_flag_parses_type_and_text() {
        assert_eq!(
            parse_message("ai:hello: world").unwrap(),
            (MessageType::MessageAi, "hello: world".to_string())
        );
        assert!(parse_message("robot:hi").is_err());
        assert!(parse_message("no colon").is_err());
    }
}
