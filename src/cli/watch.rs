//! Watching an execution: `subscribe` (and `demo`) print its live
//! transcript or JSON events until it ends, and `wait` blocks until a
//! condition holds; both on the client's resuming subscription, with
//! reconnect notices on stderr and the exit statuses of docs/OPERATIONS.md.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use stigmer_client::proto::agentexecution::ExecutionPhase;
use stigmer_client::proto::daemon::EndReason;
use stigmer_client::{Client, Event, Notice};

use super::executions::{connect_with, print_json, resuming_config};
use super::exit::{self, CliError};
use super::render;
use super::style::{Painter, Style};
use super::transcript::Transcript;
use super::{Condition, Ctx, Output};

/// How `watch` prints.
#[derive(Clone, Copy, Debug)]
pub(super) struct WatchOptions {
    /// Text transcript or JSON lines.
    pub output: Output,
    /// `--timestamps`.
    pub timestamps: bool,
    /// Colour for the transcript.
    pub painter: Painter,
    /// Tell stderr when the daemon goes away and comes back.
    pub notices: bool,
}

/// Prints a stream's reconnect notices on stderr (never stdout, so
/// `-o json` output stays pure JSON lines).
pub(super) fn print_notice(notice: &Notice, give_up_after: Option<Duration>, painter: Painter) {
    let text = notice_text(notice, give_up_after);
    // The notice is painted only when stdout is coloured (then stderr is
    // very likely the same terminal).
    eprintln!("{}", painter.paint(Style::Dim, &text));
}

/// A reconnect notice, for a person.
pub(super) fn notice_text(notice: &Notice, give_up_after: Option<Duration>) -> String {
    match notice {
        Notice::Reconnecting {
            reason,
            last_revision,
        } => {
            let after = last_revision.map_or(String::new(), |r| format!(" after revision {r}"));
            let limit = give_up_after.map_or(String::new(), |d| {
                format!(" (giving up after {})", humantime::format_duration(d))
            });
            format!("stigmer: lost the daemon ({reason}); reconnecting to resume{after}{limit}...")
        }
        Notice::Resumed {
            from_revision,
            after,
        } => {
            let from = from_revision.map_or(String::new(), |r| format!(" after revision {r}"));
            format!(
                "stigmer: reconnected after {}; resuming{from}",
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(after.as_millis()).unwrap_or(u64::MAX)
                ))
            )
        }
    }
}

/// Watches `id` until its stream ends, printing each event as text (a live
/// transcript) or JSON lines; the exit status follows the final phase: 0
/// completed, 3 failed, 4 cancelled or terminated.
pub(super) async fn watch(
    client: &Client,
    id: &str,
    from_revision: Option<u64>,
    options: WatchOptions,
) -> Result<ExitCode, CliError> {
    // Sends the subscribe; errors such as NOT_FOUND arrive as the first item.
    let mut events = client.subscribe(id, from_revision).await?;
    if options.notices {
        let give_up = client.config().reconnect.give_up_after;
        let painter = options.painter;
        events = events.on_notice(move |n| print_notice(n, give_up, painter));
    }
    let mut transcript = Transcript::new(std::io::stdout())
        .painted(options.painter)
        .with_timestamps(options.timestamps);
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
        match options.output {
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
        EndReason::Deleted => Err(CliError::Coded {
            code: exit::NOT_FOUND,
            message: format!("execution {id} was deleted"),
        }),
        EndReason::Cancelled => Ok(ExitCode::SUCCESS),
        other => Err(CliError::Other(format!(
            "the stream ended: {}",
            stigmer_client::end_reason_name(other)
        ))),
    }
}

/// `executions wait`: follows the execution's stream until `condition`
/// holds (status 0), it can no longer hold, or `timeout` passes (status 11).
pub(super) async fn wait(
    ctx: &Ctx,
    id: &str,
    condition: Condition,
    timeout: Option<Duration>,
    output: Output,
) -> Result<ExitCode, CliError> {
    // Keep resuming across daemon restarts for as long as the wait may last.
    let reconnect_limit = timeout.unwrap_or(Duration::from_secs(30));
    let client = connect_with(ctx, resuming_config(ctx, reconnect_limit)).await?;
    let outcome = match timeout {
        Some(limit) => match tokio::time::timeout(limit, wait_for(&client, id, condition)).await {
            Ok(outcome) => outcome?,
            Err(_) => {
                return Err(CliError::Coded {
                    code: exit::TIMEOUT,
                    message: format!(
                        "timed out after {} waiting for {id} to be {}",
                        humantime::format_duration(limit),
                        condition_text(condition)
                    ),
                })
            }
        },
        None => wait_for(&client, id, condition).await?,
    };
    let (execution, met) = outcome;
    let phase = render::execution_phase(&execution);
    let mut out = std::io::stdout().lock();
    match output {
        Output::Text => writeln!(
            out,
            "{id} {} ({})",
            render::phase_name(phase),
            if met {
                "condition met"
            } else {
                "condition can no longer be met"
            }
        )?,
        Output::Json => print_json(&mut out, &render::execution_json(&execution)?)?,
    }
    out.flush()?;
    if met {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(match (condition, phase) {
        // Waiting for completion: say how it ended instead, as `subscribe`.
        (Condition::Phase(ExecutionPhase::ExecutionCompleted), _)
            if matches!(
                phase,
                ExecutionPhase::ExecutionFailed
                    | ExecutionPhase::ExecutionCancelled
                    | ExecutionPhase::ExecutionTerminated
            ) =>
        {
            exit_for_phase(phase)
        }
        _ => ExitCode::from(exit::PRECONDITION),
    })
}

fn condition_text(c: Condition) -> String {
    match c {
        Condition::Terminal => "in a terminal phase".into(),
        Condition::Phase(p) => render::phase_name(p).into(),
    }
}

/// Follows the stream until the condition holds (true) or the execution is
/// terminal without it (false); returns the execution's last state.
async fn wait_for(
    client: &Client,
    id: &str,
    condition: Condition,
) -> Result<(stigmer_client::proto::agentexecution::AgentExecution, bool), CliError> {
    let reached = |phase: ExecutionPhase| match condition {
        Condition::Terminal => is_terminal(phase),
        Condition::Phase(p) => phase == p,
    };
    let notices_painter = Painter { on: false };
    let give_up = client.config().reconnect.give_up_after;
    // Sends the subscribe; NOT_FOUND arrives as the first item.
    let mut events = client
        .subscribe(id, None)
        .await?
        .on_notice(move |n| print_notice(n, give_up, notices_painter));
    let mut last = None;
    // Waits for each change of the execution.
    while let Some(event) = events.next().await {
        match event? {
            Event::End { reason, .. } => {
                return match (reason, last) {
                    (EndReason::Deleted, _) => Err(CliError::Coded {
                        code: exit::NOT_FOUND,
                        message: format!("execution {id} was deleted"),
                    }),
                    (_, Some(execution)) => Ok((execution, false)),
                    (_, None) => {
                        // Waits for the daemon's read of the final state.
                        let (execution, _) = client.get(id).await?;
                        let met = reached(render::execution_phase(&execution));
                        Ok((execution, met))
                    }
                };
            }
            other => {
                if let Some(execution) = other.execution() {
                    if reached(render::execution_phase(execution)) {
                        return Ok((execution.clone(), true));
                    }
                    last = Some(execution.clone());
                }
            }
        }
    }
    Err(CliError::Other(
        "the stream ended without an END event".into(),
    ))
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
        ExecutionPhase::ExecutionCompleted => ExitCode::from(exit::OK),
        ExecutionPhase::ExecutionFailed => ExitCode::from(exit::FAILED),
        ExecutionPhase::ExecutionCancelled | ExecutionPhase::ExecutionTerminated => {
            ExitCode::from(exit::CANCELLED)
        }
        _ => ExitCode::from(exit::ERROR),
    }
}
