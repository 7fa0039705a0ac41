//! `stigmer executions watch`: many executions as one live list, one line
//! per change in the style of `kubectl get -w` (or one JSON object per
//! event), on the client's resuming [`stigmer_client::Watch`], until
//! interrupted.

use std::io::Write;
use std::process::ExitCode;

use futures::StreamExt;
use stigmer_client::proto::agentexecution::AgentExecution;
use stigmer_client::{Client, Selector, WatchEvent, WatchOptions};

use super::exit::CliError;
use super::render;
use super::style::{phase_style, Painter, Style};
use super::watch::print_notice;
use super::Output;

/// Widths of the text columns (a stream cannot measure its rows first).
const AGENT_WIDTH: usize = 16;
const SESSION_WIDTH: usize = 16;
const PHASE_WIDTH: usize = 20;
const TEXT_WIDTH: usize = 60;

/// How `executions watch` prints.
#[derive(Clone, Copy, Debug)]
pub(super) struct ListOptions {
    /// Text lines or JSON lines.
    pub output: Output,
    /// `--deltas`: JSON updates as their operations.
    pub deltas: bool,
    /// Print the header line (text).
    pub headers: bool,
    /// Colour for the text.
    pub painter: Painter,
}

/// Follows `selector` from `from_revision` (or from a list of the current
/// executions), printing every event, until interrupted or an error.
pub(super) async fn run(
    client: &Client,
    selector: Selector,
    from_revision: Option<u64>,
    options: ListOptions,
) -> Result<ExitCode, CliError> {
    let watch_options = WatchOptions {
        from_revision,
        // The client rebuilds whole states from deltas: cheaper on the wire
        // whatever is printed.
        deltas: true,
    };
    // Sends the subscribe; INVALID_ARGUMENT, OUT_OF_RANGE arrive as the
    // first item.
    let give_up = client.config().reconnect.give_up_after;
    let painter = options.painter;
    let mut events = client
        .watch(selector, watch_options)
        .await?
        .on_notice(move |n| print_notice(n, give_up, painter));
    let mut headers = options.headers && options.output == Output::Text;
    // Waits for each event; the watch resumes by itself if the daemon
    // restarts, and yields an error when it cannot.
    while let Some(event) = events.next().await {
        let event = event?;
        let mut out = std::io::stdout().lock();
        match options.output {
            Output::Json => writeln!(out, "{}", render::watch_event_json(&event, options.deltas)?)?,
            Output::Text => {
                if std::mem::take(&mut headers) {
                    writeln!(out, "{}", painter.paint(Style::Bold, &header()))?;
                }
                if let Some(line) = text_line(&event, painter) {
                    writeln!(out, "{line}")?;
                }
            }
        }
        out.flush()?;
    }
    Err(CliError::Other("the daemon ended the watch".into()))
}

fn header() -> String {
    format!(
        "{:>8}  {:<8}  {:<30}  {:<AGENT_WIDTH$}  {:<SESSION_WIDTH$}  {:<PHASE_WIDTH$}  TEXT",
        "REVISION", "TYPE", "ID", "AGENT", "SESSION", "PHASE"
    )
}

/// One line of `-o text`; `None` for what a person need not see (quiet
/// time bookmarks).
fn text_line(event: &WatchEvent, p: Painter) -> Option<String> {
    let revision = event.revision();
    match event {
        WatchEvent::Bookmark {
            initial_events_end: true,
            ..
        } => Some(p.paint(
            Style::Dim,
            &format!("-- end of the list at revision {revision}; following changes"),
        )),
        WatchEvent::Bookmark { .. } => None,
        WatchEvent::Resync { .. } => Some(p.paint(
            Style::Yellow,
            &format!("-- resync at revision {revision}: some changes were skipped; the list follows again"),
        )),
        WatchEvent::Deleted {
            execution_id,
            last_state,
            ..
        } => Some(row(
            revision,
            "deleted",
            execution_id,
            last_state.as_deref(),
            p,
        )),
        other => {
            let execution = other.execution().map(|e| e.as_ref());
            let id = other.execution_id().unwrap_or("");
            let kind = match other {
                WatchEvent::Updated { .. } => "update",
                o => o.kind(),
            };
            Some(row(revision, kind, id, execution, p))
        }
    }
}

fn row(revision: u64, kind: &str, id: &str, e: Option<&AgentExecution>, p: Painter) -> String {
    let spec = e.and_then(|e| e.spec.clone()).unwrap_or_default();
    let (phase, text) = match e {
        Some(e) => {
            let phase = render::execution_phase(e);
            (
                p.paint_padded(phase_style(phase), render::phase_name(phase), PHASE_WIDTH),
                render::one_line(render::latest_text(e), TEXT_WIDTH),
            )
        }
        None => (format!("{:<PHASE_WIDTH$}", "-"), String::new()),
    };
    let or_dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    format!(
        "{revision:>8}  {kind:<8}  {id:<30}  {:<AGENT_WIDTH$}  {:<SESSION_WIDTH$}  {phase}  {text}",
        or_dash(render::one_line(&spec.agent_id, AGENT_WIDTH - 1)),
        or_dash(render::one_line(&spec.session_id, SESSION_WIDTH - 1)),
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use stigmer_client::proto::agentexecution::{
        AgentExecutionSpec, AgentExecutionStatus, AgentMessage, ExecutionPhase,
    };
    use stigmer_client::proto::apiresource::ApiResourceMetadata;

    fn execution() -> Arc<AgentExecution> {
        Arc::new(AgentExecution {
            metadata: Some(ApiResourceMetadata {
                id: "aex-01".into(),
                ..Default::default()
            }),
            spec: Some(AgentExecutionSpec {
                agent_id: "writer".into(),
                session_id: "s-1".into(),
                ..Default::default()
            }),
            status: Some(AgentExecutionStatus {
                phase: ExecutionPhase::ExecutionInProgress as i32,
                messages: vec![AgentMessage {
                    content: "first line\nsecond line\n".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn text_rows_show_the_latest_line_and_skip_quiet_bookmarks() {
        let p = Painter { on: false };
        let line = text_line(
            &WatchEvent::Updated {
                revision: 12,
                execution: execution(),
                ops: Some(vec![]),
            },
            p,
        )
        .expect("a row");
        assert!(line.starts_with("      12  update    aex-01"), "{line}");
        assert!(line.contains("writer") && line.contains("s-1"), "{line}");
        assert!(
            line.contains("in-progress") && line.ends_with("second line"),
            "{line}"
        );
        let quiet = WatchEvent::Bookmark {
            revision: 13,
            initial_events_end: false,
        };
        assert_eq!(text_line(&quiet, p), None);
    }

    #[test]
    fn json_lines_name_types_and_fields_as_documented() {
        let update = WatchEvent::Updated {
            revision: 12,
            execution: execution(),
            ops: Some(vec![]),
        };
        let whole: serde_json::Value =
            serde_json::from_str(&render::watch_event_json(&update, false).unwrap()).unwrap();
        assert_eq!(whole["type"], "update");
        assert_eq!(whole["executionId"], "aex-01");
        assert_eq!(whole["execution"]["spec"]["agentId"], "writer");
        let end = WatchEvent::Bookmark {
            revision: 12,
            initial_events_end: true,
        };
        assert_eq!(
            render::watch_event_json(&end, false).unwrap(),
            r#"{"type":"bookmark","revision":12,"initialEventsEnd":true}"#
        );
        let gone = WatchEvent::Deleted {
            revision: 14,
            execution_id: "aex-01".into(),
            last_state: Some(execution()),
        };
        assert_eq!(
            render::watch_event_json(&gone, true).unwrap(),
            r#"{"type":"deleted","revision":14,"executionId":"aex-01"}"#
        );
    }
}
