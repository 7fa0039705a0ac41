//! The `stigmer` command line: clap definitions and dispatch. `stigmer
//! daemon` runs the daemon; every other command is a client of it, built on
//! the `stigmer-client` crate (executions.rs, admin.rs, demo.rs), with
//! output shaped by render.rs and style.rs, and every failure mapped to a
//! documented exit status by exit.rs. This file holds the top-level
//! definitions (the global flags, the command tree, `stigmer admin`'s
//! subcommands) and `main`; `stigmer executions`' subcommands are in
//! executions_args.rs, and the flag types several commands share (`-o`,
//! `--phase`, `--session|--all`) in flags.rs.

mod admin;
mod demo;
mod executions;
mod executions_args;
mod exit;
mod flags;
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

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::DaemonArgs;

pub use executions_args::ExecutionsCommand;
pub use exit::CliError;
pub use flags::{Condition, ListOutput, ListOutputArg, Output, OutputArg, PhaseArg, SelectorArgs};

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
    // Boxed: the daemon's flags outweigh every other command's.
    Daemon(Box<DaemonArgs>),
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

/// Checks `ui --listen` (parsed again where it is used).
fn check_listen(s: &str) -> Result<String, String> {
    crate::ui::Listen::parse(s).map(|_| s.to_string())
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
            crate::daemon::run(socket, *args)
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
}
