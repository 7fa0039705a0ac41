//! The `stigmer` command line: clap definitions and dispatch. `stigmer
//! daemon` runs the daemon; every other command is a client of it, built on
//! the `stigmer-client` crate (executions.rs, admin.rs, demo.rs), with
//! output shaped by render.rs and style.rs, and every failure mapped to a
//! documented exit status by exit.rs.

mod admin;
mod demo;
mod executions;
mod exit;
mod generate;
mod render;
mod status;
mod style;
mod top;
mod top_view;
mod transcript;
mod watch;
mod watch_list;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stigmer_client::proto::agentexecution::{ExecutionPhase, MessageType};

use crate::config::DaemonArgs;

pub use exit::CliError;

/// stigmer: the local hub through which AI agent executions report progress
/// and are watched live.
#[derive(Debug, Parser)]
#[command(
    name = "stigmer",
    version,
    about,
    propagate_version = true,
    after_long_help = exit::EXIT_STATUS_HELP
)]
pub struct Cli {
    /// The daemon's socket [default: $STIGMER_SOCKET, else /run/stigmer.sock
    /// as root, else $XDG_RUNTIME_DIR/stigmer.sock, else
    /// /tmp/stigmer-$UID/stigmer.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Also trust a daemon running as this uid. By default the CLI talks
    /// only to a daemon running as root or as yourself, and refuses any
    /// other before sending anything (another user may have taken the
    /// socket's path).
    #[arg(long, global = true, value_name = "UID", env = "STIGMER_EXPECTED_UID")]
    pub expected_uid: Option<u32>,

    /// When to colour the output: `auto` (on a terminal, unless NO_COLOR is
    /// set), `always` or `never`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal unless NO_COLOR is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (until SIGTERM or SIGINT).
    Daemon(DaemonArgs),
    /// Create, update, inspect, cancel, wait for, delete and watch
    /// executions.
    #[command(subcommand, visible_alias = "exec")]
    Executions(ExecutionsCommand),
    /// Show a simulated agent streaming into a live transcript (starts a
    /// temporary daemon when none answers on the socket).
    Demo,
    /// A live full-screen table of executions (like `top`): every execution
    /// of the machine, or of one session, updated as they change. Keys:
    /// arrows/j/k move, Enter opens the live transcript (Esc or q goes
    /// back), s cycles the sort column, r reverses it, f cycles the phase
    /// filter, / filters by session, q quits.
    Top {
        /// Only the executions of this session.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
    },
    /// Serve a live web dashboard of the executions (a client of the
    /// daemon, with your credentials) on loopback, print its URL (which
    /// carries a one-time token) and open it in a browser. Runs until
    /// interrupted.
    Ui {
        /// Where to serve: a loopback HOST:PORT (port 0 picks a free one),
        /// or unix:PATH for a reverse proxy in front.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0", value_parser = check_listen)]
        listen: String,
        /// Print the URL only; do not open a browser.
        #[arg(long)]
        no_browser: bool,
        /// Also accept requests whose Host (and Origin) is this name, e.g.
        /// a reverse proxy's public host[:port]. Repeatable.
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
    },
    /// Show the daemon's version, paths, load, counters and latencies.
    Status {
        /// Print the Prometheus text exposition instead (it has one format,
        /// so `-o` cannot be combined with it).
        #[arg(long, conflicts_with = "output")]
        prometheus: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Back up and export the daemon's data.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish or
    /// powershell) to standard output.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to standard output, or write one page
    /// per command into a directory.
    Man {
        /// Write stigmer.1 and a page per subcommand (stigmer-executions.1,
        /// ...) into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `stigmer admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Copy the database, consistently, while the daemon runs and writes
    /// (SQLite's online backup API, from a separate read-only connection).
    Backup {
        /// Where to write the copy (refused if it exists, unless --force).
        path: PathBuf,
        /// The database to copy [default: the one the daemon on the socket
        /// reports in `status`].
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print every execution as JSON Lines (one canonical proto3 JSON
    /// object per line), read page by page through the daemon.
    Export {
        /// Only executions in this phase.
        #[arg(long, value_enum)]
        phase: Option<PhaseArg>,
        /// Only executions of this session.
        #[arg(long, value_name = "ID")]
        session: Option<String>,
    },
    /// Delete, once, the executions that finished (completed, failed,
    /// cancelled or terminated) longer ago than --older-than; the daemon's
    /// --keep-finished does the same continuously.
    Prune {
        /// How long ago they finished, e.g. 30d, 12h, 90s.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Print the ids that would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
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

/// Checks `ui --listen` (parsed again where it is used).
fn check_listen(s: &str) -> Result<String, String> {
    crate::ui::Listen::parse(s).map(|_| s.to_string())
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

/// What every client command needs: where the daemon is, whom to trust,
/// and whether to colour.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The socket.
    pub socket: PathBuf,
    /// The uid trusted besides root and our own.
    pub expected_uid: Option<u32>,
    /// Whether standard output gets colour.
    pub color: bool,
}

/// The largest frame the CLI accepts from the daemon. The client's default
/// (4 MiB) is the daemon's default `--max-frame-length`, but a daemon run
/// with a larger one stores and sends whole states that large, and `get`,
/// `subscribe` or an `append` that reads the message first must still work
/// against it. The CLI talks only to a daemon whose uid it verified; 64 MiB
/// still bounds what a broken one could make it hold.
const MAX_FRAME_FROM_DAEMON: usize = 64 << 20;

impl Ctx {
    /// The client settings for this invocation.
    pub fn client_config(&self) -> stigmer_client::Config {
        stigmer_client::Config {
            expected_uid: self.expected_uid,
            max_frame_length: MAX_FRAME_FROM_DAEMON,
            ..Default::default()
        }
    }
}

/// The `stigmer` binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(stigmer_client::paths::default_socket_path);
    let ctx = Ctx {
        socket: socket.clone(),
        expected_uid: cli.expected_uid,
        color: style::enabled(cli.color),
    };
    match cli.command {
        Command::Daemon(args) => {
            if let Err(code) = prepare_fallback_dir(&socket) {
                return code;
            }
            crate::daemon::run(socket, args)
        }
        Command::Executions(cmd) => with_runtime(|| executions::run(ctx, cmd)),
        Command::Demo => with_runtime(|| demo::run(ctx)),
        Command::Top { session } => with_runtime(|| top::run(ctx, session)),
        Command::Ui {
            listen,
            no_browser,
            allow_hosts,
        } => with_runtime(|| ui(ctx, listen, !no_browser, allow_hosts)),
        Command::Status { prometheus, output } => {
            with_runtime(|| status::run(ctx, prometheus, output.output))
        }
        Command::Admin(cmd) => with_runtime(|| admin::run(ctx, cmd)),
        Command::Completion { shell } => exit::report(generate::completion(shell)),
        Command::Man { dir } => exit::report(generate::man(dir.as_deref())),
    }
}

/// Before the daemon starts on a socket in the user's fallback directory
/// (`/tmp/stigmer-<uid>/`), refuses it with the "not trusted" exit status
/// when it exists and is not private to this user (someone may be squatting
/// on it). A missing one is created 0700 by the daemon itself, once every
/// start-up check has passed (`crate::dirs`).
fn prepare_fallback_dir(socket: &std::path::Path) -> Result<(), ExitCode> {
    if !stigmer_client::paths::in_fallback_dir(socket) {
        return Ok(());
    }
    let Some(dir) = socket.parent() else {
        return Ok(());
    };
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    stigmer_client::paths::check_private_dir(dir).map_err(|why| {
        eprintln!(
            "stigmer daemon: refusing the socket directory {}: {why}",
            dir.display()
        );
        ExitCode::from(exit::UNTRUSTED)
    })
}

/// `stigmer ui`: connects (so a missing daemon fails at once, with the
/// usual exit status), then serves until interrupted.
async fn ui(
    ctx: Ctx,
    listen: String,
    open_browser: bool,
    allow_hosts: Vec<String>,
) -> Result<ExitCode, CliError> {
    // The dashboard's streams buffer less than the default: a stalled tab
    // is resubscribed rather than holding many events.
    let config = stigmer_client::Config {
        stream_queue: 64,
        ..ctx.client_config()
    };
    let client = executions::connect_with(&ctx, config).await?;
    let listen = crate::ui::Listen::parse(&listen).map_err(CliError::Usage)?;
    let options = crate::ui::Options {
        listen,
        open_browser,
        allow_hosts,
        socket: ctx.socket.clone(),
    };
    crate::ui::serve(client, options, |url| {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "stigmer ui: serving the dashboard at {url}");
        let _ = out.flush();
    })
    .await
    .map_err(CliError::Other)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a client command on a current-thread runtime (one connection needs
/// no more).
fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode, CliError>>,
{
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => exit::report(rt.block_on(f())),
        Err(e) => exit::report(Err(CliError::Other(format!(
            "cannot start the async runtime: {e}"
        )))),
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
