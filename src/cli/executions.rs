//! `stigmer executions ...`: one function per subcommand, each a thin layer
//! over `stigmer_client::Client` plus rendering; `subscribe` and `wait` are
//! in `watch.rs`, shared with `demo`; `watch` is in `watch_list.rs`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use stigmer_client::proto::agentexecution::{AgentExecutionStatus, AgentMessage, ExecutionPhase};
use stigmer_client::{Client, ListFilter, NewExecution, Reconnect};

use super::exit::CliError;
use super::render::{self, Row, TableStyle};
use super::style::Painter;
use super::watch::{wait, watch, WatchOptions};
use super::{Ctx, ExecutionsCommand, ListOutput, Output};

/// Rows whose revision `list` asks for at once (one `get` each, multiplexed
/// on one connection).
const REVISION_LOOKUPS_IN_FLIGHT: usize = 64;

/// Connects to the daemon on `ctx.socket`, checking whom it talks to
/// (the peer's uid, the fallback directory) before sending anything.
pub(super) async fn connect(ctx: &Ctx) -> Result<Client, CliError> {
    connect_with(ctx, ctx.client_config()).await
}

/// [`connect`] with explicit client settings.
pub(super) async fn connect_with(
    ctx: &Ctx,
    config: stigmer_client::Config,
) -> Result<Client, CliError> {
    // Fails at once when no daemon listens on the socket, or when the one
    // listening is not trusted.
    Client::connect_with(&ctx.socket, config)
        .await
        .map_err(|source| CliError::Connect {
            path: ctx.socket.clone(),
            source,
        })
}

/// Refuses an id that is not `aex-` and a lowercase ULID before asking the
/// daemon (status 2, as the daemon's INVALID_ARGUMENT would be).
fn check_id(id: &str) -> Result<(), CliError> {
    if crate::model::is_execution_id(id) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{id:?} is not an execution id (\"aex-\" followed by a lowercase ULID, as `create` prints)"
        )))
    }
}

/// Runs one `executions` subcommand.
pub(super) async fn run(ctx: Ctx, cmd: ExecutionsCommand) -> Result<ExitCode, CliError> {
    match &cmd {
        ExecutionsCommand::Update { id, .. }
        | ExecutionsCommand::Cancel { id, .. }
        | ExecutionsCommand::Wait { id, .. }
        | ExecutionsCommand::Get { id, .. }
        | ExecutionsCommand::Delete { id, .. }
        | ExecutionsCommand::Subscribe { id, .. }
        | ExecutionsCommand::Append { id, .. } => check_id(id)?,
        ExecutionsCommand::Create { .. }
        | ExecutionsCommand::List { .. }
        | ExecutionsCommand::Watch { .. } => {}
    }
    let painter = Painter { on: ctx.color };
    let mut out = std::io::stdout().lock();
    match cmd {
        ExecutionsCommand::Create {
            agent,
            session,
            message,
            output,
        } => {
            let client = connect(&ctx).await?;
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
            from_file,
            phase,
            messages,
            error,
            output,
        } => {
            let mut status = match from_file {
                Some(path) => read_status(&path)?,
                None => AgentExecutionStatus::default(),
            };
            if let Some(phase) = phase {
                status.phase = ExecutionPhase::from(phase) as i32;
            }
            if !messages.is_empty() {
                status.messages = messages
                    .into_iter()
                    .map(|(kind, content)| AgentMessage {
                        r#type: kind as i32,
                        content,
                        ..Default::default()
                    })
                    .collect();
            }
            if let Some(error) = error {
                status.error = error;
            }
            let client = connect(&ctx).await?;
            // Waits until the update is committed; fails e.g. with
            // FAILED_PRECONDITION when the execution's phase is final.
            let (execution, revision) = client.update_status(id, status).await?;
            write_change(&mut out, &execution, revision, output.output, painter)?;
        }
        ExecutionsCommand::Cancel { id, reason, output } => {
            let client = connect(&ctx).await?;
            let status = AgentExecutionStatus {
                phase: ExecutionPhase::ExecutionCancelled as i32,
                error: reason.unwrap_or_default(),
                ..Default::default()
            };
            // Waits until the cancellation is committed; FAILED_PRECONDITION
            // when the execution had already ended.
            let (execution, revision) = client.update_status(id, status).await?;
            write_change(&mut out, &execution, revision, output.output, painter)?;
        }
        ExecutionsCommand::Wait {
            id,
            condition,
            timeout,
            output,
        } => {
            drop(out);
            return wait(&ctx, &id, condition, timeout, output.output).await;
        }
        ExecutionsCommand::Get { id, output } => {
            let client = connect(&ctx).await?;
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
            agent,
            limit,
            no_headers,
            output,
        } => {
            let client = connect(&ctx).await?;
            let filter = ListFilter {
                phase: phase.map(Into::into),
                session_id: session,
                ..Default::default()
            };
            // Waits for as many pages as the filters need.
            let executions = list_filtered(&client, filter, agent.as_deref(), limit).await?;
            match output.output {
                ListOutput::Text | ListOutput::Wide => {
                    // Waits for one `get` per row (list replies carry no
                    // revisions).
                    let rows = with_revisions(&client, executions).await;
                    let style = TableStyle {
                        wide: output.output == ListOutput::Wide,
                        headers: !no_headers,
                        painter,
                    };
                    render::write_list(&mut out, &rows, style)?;
                }
                ListOutput::Json => {
                    let all = executions
                        .iter()
                        .map(render::execution_json)
                        .collect::<Result<Vec<_>, _>>()?;
                    print_json(&mut out, &serde_json::Value::Array(all))?
                }
            }
        }
        ExecutionsCommand::Delete { id, output } => {
            let client = connect(&ctx).await?;
            // Waits until the deletion is committed.
            let revision = client.delete(&id).await?;
            match output.output {
                Output::Text => writeln!(out, "deleted {id} at revision {revision}")?,
                Output::Json => {
                    print_json(&mut out, &json!({"executionId": id, "revision": revision}))?
                }
            }
        }
        ExecutionsCommand::Watch {
            selector,
            from_revision,
            reconnect_timeout,
            deltas,
            no_headers,
            output,
        } => {
            drop(out);
            let selector = selector.selector()?;
            let client = connect_with(&ctx, resuming_config(&ctx, reconnect_timeout)).await?;
            let options = super::watch_list::ListOptions {
                output: output.output,
                deltas,
                headers: !no_headers,
                painter,
            };
            return super::watch_list::run(&client, selector, from_revision, options).await;
        }
        ExecutionsCommand::Append {
            id,
            text,
            text_file,
            message_index,
            offset,
            expected_revision,
        } => {
            let text = match (text, text_file) {
                (Some(text), _) => text,
                (None, Some(path)) => read_text(&path)?,
                (None, None) => return Err(CliError::Usage("--text or --text-file".into())),
            };
            let client = connect(&ctx).await?;
            let revision =
                append(&client, &id, text, message_index, offset, expected_revision).await?;
            writeln!(out, "{revision}")?;
        }
        ExecutionsCommand::Subscribe {
            id,
            from_revision,
            reconnect_timeout,
            timestamps,
            deltas,
            output,
        } => {
            drop(out);
            // The transcript streams deltas (it prints what each change
            // added); JSON prints them only when asked.
            let config = stigmer_client::Config {
                deltas: deltas || output.output == Output::Text,
                ..resuming_config(&ctx, reconnect_timeout)
            };
            let client = connect_with(&ctx, config).await?;
            let options = WatchOptions {
                output: output.output,
                timestamps,
                painter,
                notices: true,
            };
            return watch(&client, &id, from_revision, options).await;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Client settings for a stream that resumes across daemon restarts but
/// gives up after `timeout` without a daemon.
/// `append`: one `append_text` operation, at `offset` or at the end of
/// the message now (read with `get`).
async fn append(
    client: &stigmer_client::Client,
    id: &str,
    text: String,
    message_index: Option<u32>,
    offset: Option<u64>,
    expected_revision: Option<u64>,
) -> Result<u64, CliError> {
    use stigmer_client::proto::daemon::{op, AppendText, Op};
    let (index, offset) = match (message_index, offset) {
        (Some(index), Some(offset)) => (index, offset),
        _ => {
            // Waits for the daemon's read of the execution.
            let (execution, _) = client.get(id).await?;
            let messages = execution.status.map(|s| s.messages).unwrap_or_default();
            let last = messages.len().saturating_sub(1) as u32;
            let index = message_index.unwrap_or(last);
            let length = messages
                .get(index as usize)
                .map_or(0, |m| m.content.len() as u64);
            (index, offset.unwrap_or(length))
        }
    };
    let op = Op {
        op: Some(op::Op::AppendText(AppendText {
            message_index: index,
            offset,
            text,
            r#type: 0,
        })),
    };
    // Waits until the append is committed (retried across reconnects).
    Ok(client.append(id, vec![op], expected_revision).await?)
}

/// The text of `--text-file`: a file, or standard input for `-`.
fn read_text(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read;
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    }
    Ok(text)
}

pub(super) fn resuming_config(ctx: &Ctx, timeout: Duration) -> stigmer_client::Config {
    stigmer_client::Config {
        reconnect: Reconnect {
            give_up_after: Some(timeout),
            ..Default::default()
        },
        ..ctx.client_config()
    }
}

/// The one-line (or JSON) answer of `update` and `cancel`.
fn write_change(
    out: &mut impl Write,
    execution: &stigmer_client::proto::agentexecution::AgentExecution,
    revision: u64,
    output: Output,
    painter: Painter,
) -> Result<(), CliError> {
    match output {
        Output::Text => {
            let phase = render::execution_phase(execution);
            writeln!(
                out,
                "{} revision {} {}",
                render::execution_id(execution),
                revision,
                painter.paint(super::style::phase_style(phase), render::phase_name(phase))
            )?
        }
        Output::Json => print_json(out, &render::execution_json(execution)?)?,
    }
    Ok(())
}

/// Reads `update --from-file`: an `AgentExecutionStatus` in canonical proto3
/// JSON, or any object whose `status` field holds one (an `AgentExecution`
/// as `get -o json` prints it, an `AgentExecutionUpdateStatusInput`).
fn read_status(path: &Path) -> Result<AgentExecutionStatus, CliError> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Other(format!("cannot read the status from stdin: {e}")))?;
        ("standard input".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Other(format!(
                "cannot read the status from {}: {e}",
                path.display()
            ))
        })?;
        (path.display().to_string(), text)
    };
    let bad = |e: serde_json::Error| {
        CliError::Usage(format!(
            "{name} is not a status in canonical proto3 JSON (an AgentExecutionStatus, e.g. \
             {{\"phase\": \"EXECUTION_IN_PROGRESS\", \"todos\": {{...}}}}): {e}"
        ))
    };
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
    if let Some(inner) = value.get_mut("status").filter(|v| v.is_object()) {
        value = inner.take();
    }
    serde_json::from_value(value).map_err(bad)
}

/// The executions matching `filter` and `agent` (checked here: the protocol
/// has no agent filter), at most `limit`, fetching no more pages than needed.
async fn list_filtered(
    client: &Client,
    mut filter: ListFilter,
    agent: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<stigmer_client::proto::agentexecution::AgentExecution>, CliError> {
    let mut all = Vec::new();
    if limit == Some(0) {
        return Ok(all);
    }
    if agent.is_none() {
        if let Some(n) = limit {
            filter.page_size = u32::try_from(n.min(1000)).unwrap_or(1000);
        }
    }
    loop {
        // Waits for one page.
        let page = client.list(&filter).await?;
        for e in page.executions {
            let matches = agent.is_none_or(|a| e.spec.as_ref().is_some_and(|s| s.agent_id == a));
            if matches {
                all.push(e);
                if limit.is_some_and(|n| all.len() >= n) {
                    return Ok(all);
                }
            }
        }
        match page.next_page_token {
            None => return Ok(all),
            Some(token) if Some(&token) == filter.page_token.as_ref() => {
                return Err(CliError::Other(
                    "the daemon returned the same page token twice".into(),
                ))
            }
            Some(token) => filter.page_token = Some(token),
        }
    }
}

/// Each execution with its revision, looked up with concurrent `get`s on
/// the one connection; an execution deleted meanwhile shows no revision.
async fn with_revisions(
    client: &Client,
    executions: Vec<stigmer_client::proto::agentexecution::AgentExecution>,
) -> Vec<Row> {
    futures::stream::iter(executions)
        .map(|execution| async move {
            let id = render::execution_id(&execution).to_string();
            // Waits for the daemon's read.
            let revision = client.get(id).await.ok().map(|(_, r)| r);
            Row {
                execution,
                revision,
            }
        })
        .buffered(REVISION_LOOKUPS_IN_FLIGHT)
        .collect()
        .await
}

pub(super) fn print_json(out: &mut impl Write, value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)?;
    writeln!(out, "{text}")?;
    Ok(())
}
