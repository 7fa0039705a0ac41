//! `stigmer executions ...`: one function per subcommand, each a thin layer
//! over `stigmer_client::Client` plus rendering. `watch` is shared with
//! `demo`, which shows its transcript exactly as `subscribe` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures::StreamExt;
use serde_json::json;
use stigmer_client::proto::agentexecution::{AgentExecutionStatus, AgentMessage, ExecutionPhase};
use stigmer_client::proto::daemon::EndReason;
use stigmer_client::{Client, Event, ListFilter, NewExecution};

use super::render::{self, Transcript};
use super::{ExecutionsCommand, Output, EXIT_ERROR};

/// Exit status of `subscribe` when the execution FAILED.
pub(super) const EXIT_FAILED: u8 = 3;
/// Exit status of `subscribe` when the execution was CANCELLED or TERMINATED.
pub(super) const EXIT_CANCELLED: u8 = 4;

/// Everything a client command can fail with; printed as `error: ...`.
#[derive(Debug, thiserror::Error)]
pub(super) enum CliError {
    /// No daemon answered on the socket.
    #[error("cannot connect to the daemon at {}: {source}", path.display())]
    Connect {
        /// The socket tried.
        path: PathBuf,
        /// Why it failed.
        source: stigmer_client::Error,
    },
    /// The daemon refused the request, or the connection failed.
    #[error(transparent)]
    Client(#[from] stigmer_client::Error),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// An execution could not be rendered as JSON.
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Anything else, already worded for a person.
    #[error("{0}")]
    Other(String),
}

/// Connects to the daemon at `socket`.
pub(super) async fn connect(socket: &Path) -> Result<Client, CliError> {
    // Fails at once when no daemon listens on the socket.
    Client::connect(socket)
        .await
        .map_err(|source| CliError::Connect {
            path: socket.to_path_buf(),
            source,
        })
}

/// Runs one `executions` subcommand; errors go to stderr with exit status 1.
pub(super) async fn run(socket: PathBuf, cmd: ExecutionsCommand) -> ExitCode {
    match dispatch(&socket, cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn dispatch(socket: &Path, cmd: ExecutionsCommand) -> Result<ExitCode, CliError> {
    // Every subcommand talks to the daemon; fails when it is not running.
    let client = connect(socket).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        ExecutionsCommand::Create {
            agent,
            session,
            message,
            output,
        } => {
            let mut new = NewExecution::new(agent, message);
            new.session_id = session;
            // Waits until the creation is committed.
            let (execution, _revision) = client.create(new).await?;
            match output.output {
                Output::Text => writeln!(out, "{}", render::execution_id(&execution))?,
                Output::Json => print_json(&mut out, &render::execution_json(&execution)?)?,
            }
        }
        ExecutionsCommand::Update {
            id,
            phase,
            messages,
            error,
            output,
        } => {
            let status = AgentExecutionStatus {
                phase: phase.map_or(ExecutionPhase::Unspecified, Into::into) as i32,
                messages: messages
                    .into_iter()
                    .map(|(kind, content)| AgentMessage {
                        r#type: kind as i32,
                        content,
                        ..Default::default()
                    })
                    .collect(),
                error: error.unwrap_or_default(),
                ..Default::default()
            };
            // Waits until the update is committed; fails e.g. with
            // FAILED_PRECONDITION when the execution's phase is final.
            let (execution, revision) = client.update_status(id, status).await?;
            match output.output {
                Output::Text => writeln!(
                    out,
                    "{} revision {} {}",
                    render::execution_id(&execution),
                    revision,
                    render::phase_name(render::execution_phase(&execution))
                )?,
                Output::Json => print_json(&mut out, &render::execution_json(&execution)?)?,
            }
        }
        ExecutionsCommand::Get { id, output } => {
            // Waits for the daemon's read; NOT_FOUND for an unknown id.
            let (execution, revision) = client.get(id).await?;
            match output.output {
                Output::Text => render::write_execution(&mut out, &execution, revision)?,
                Output::Json => print_json(&mut out, &render::execution_json(&execution)?)?,
            }
        }
        ExecutionsCommand::List {
            phase,
            session,
            output,
        } => {
            let filter = ListFilter {
                phase: phase.map(Into::into),
                session_id: session,
                ..Default::default()
            };
            // Waits for every page.
            let executions = client.list_all(&filter).await?;
            match output.output {
                Output::Text => render::write_list(&mut out, &executions)?,
                Output::Json => {
                    let all = executions
                        .iter()
                        .map(render::execution_json)
                        .collect::<Result<Vec<_>, _>>()?;
                    print_json(&mut out, &serde_json::Value::Array(all))?
                }
            }
        }
        ExecutionsCommand::Delete { id, output } => {
            // Waits until the deletion is committed.
            let revision = client.delete(&id).await?;
            match output.output {
                Output::Text => writeln!(out, "deleted {id} at revision {revision}")?,
                Output::Json => {
                    print_json(&mut out, &json!({"executionId": id, "revision": revision}))?
                }
            }
        }
        ExecutionsCommand::Subscribe {
            id,
            from_revision,
            output,
        } => {
            drop(out);
            return watch(&client, &id, from_revision, output.output).await;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn print_json(out: &mut impl Write, value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// Watches `id` until its stream ends, printing each event as text (a live
/// transcript) or JSON lines; the exit status follows the final phase: 0
/// completed, 3 failed, 4 cancelled or terminated, 1 otherwise.
pub(super) async fn watch(
    client: &Client,
    id: &str,
    from_revision: Option<u64>,
    output: Output,
) -> Result<ExitCode, CliError> {
    // Sends the subscribe; errors such as NOT_FOUND arrive as the first item.
    let mut events = client.subscribe(id, from_revision).await?;
    let mut transcript = Transcript::new(std::io::stdout());
    let mut phase = ExecutionPhase::Unspecified;
    // Waits for each event; the stream resumes by itself if the daemon
    // restarts, and ends after END or an error.
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                transcript.finish()?;
                return Err(e.into());
            }
        };
        if let Some(e) = event.execution() {
            phase = render::execution_phase(e);
        }
        match output {
            Output::Text => transcript.event(&event)?,
            Output::Json => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", render::event_json(&event)?)?;
                out.flush()?;
            }
        }
        if let Event::End { reason, .. } = event {
            transcript.finish()?;
            return end_status(client, id, reason, phase).await;
        }
    }
    transcript.finish()?;
    Err(CliError::Other(
        "the stream ended without an END event".into(),
    ))
}

async fn end_status(
    client: &Client,
    id: &str,
    reason: EndReason,
    mut phase: ExecutionPhase,
) -> Result<ExitCode, CliError> {
    match reason {
        EndReason::Terminal => {
            if !is_terminal(phase) {
                // Resumed after the last change: no state was delivered, so
                // ask for the final phase. Waits for the daemon's read.
                let (execution, _) = client.get(id).await?;
                phase = render::execution_phase(&execution);
            }
            Ok(exit_for_phase(phase))
        }
        EndReason::Deleted => Err(CliError::Other(format!("execution {id} was deleted"))),
        EndReason::Cancelled => Ok(ExitCode::SUCCESS),
        other => Err(CliError::Other(format!(
            "the stream ended: {}",
            stigmer_client::end_reason_name(other)
        ))),
    }
}

fn is_terminal(phase: ExecutionPhase) -> bool {
    matches!(
        phase,
        ExecutionPhase::ExecutionCompleted
            | ExecutionPhase::ExecutionFailed
            | ExecutionPhase::ExecutionCancelled
            | ExecutionPhase::ExecutionTerminated
    )
}

/// `subscribe`'s exit status for a final phase.
pub(super) fn exit_for_phase(phase: ExecutionPhase) -> ExitCode {
    match phase {
        ExecutionPhase::ExecutionCompleted => ExitCode::SUCCESS,
        ExecutionPhase::ExecutionFailed => ExitCode::from(EXIT_FAILED),
        ExecutionPhase::ExecutionCancelled | ExecutionPhase::ExecutionTerminated => {
            ExitCode::from(EXIT_CANCELLED)
        }
        _ => ExitCode::from(EXIT_ERROR),
    }
}
