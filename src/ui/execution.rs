//! The execution page's stream: per tab, one resuming subscription to the
//! execution (deltas on), relayed as Server-Sent Events:
//!
//! - `state` (id = revision): the whole execution (first event, or after
//!   the daemon's history could not reach back: a resync);
//! - `patch` (id = revision): one change, as text appends and message
//!   changes in order (the page appends only the new text), plus the rest
//!   of the state when more than text changed;
//! - `end`: the execution ended (terminal phase, deleted); nothing follows;
//! - `failure`: the stream could not go on (e.g. no such execution).
//!
//! A tab reconnecting with `Last-Event-ID: R` gets a subscription from `R`:
//! the daemon replays the changes after `R` from its history, so the page,
//! which holds the state at `R`, continues with no gap and no duplicate.
//! When the history no longer reaches back, the first event is a `state`.
//! Across a daemon restart the subscription itself resumes (the client
//! library's job), so the tab's connection does not even break.
//!
//! Bounds: the subscription's queue is the client's `stream_queue`; when
//! the tab stalls, the SSE body is not polled, the queue fills and the
//! client drops the daemon's stream, to resubscribe from the last revision
//! relayed once the tab reads again. Nothing grows with a stalled tab.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use stigmer_client::proto::agentexecution::{AgentExecutionStatus, ExecutionPhase};
use stigmer_client::{end_reason_name, Event, Subscription};

use super::json::{patch, state};
use super::list::last_event_id;
use super::App;

fn failure(message: String, code: Option<&str>) -> SseEvent {
    SseEvent::default()
        .event("failure")
        .data(json!({ "message": message, "code": code }).to_string())
}

/// One subscription event as an SSE event, and whether the stream is over.
fn relay(event: stigmer_client::Result<Event>) -> (SseEvent, bool) {
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            let code = e.code().map(|c| c.as_str_name());
            return (failure(e.to_string(), code), true);
        }
    };
    let revision = event.revision().to_string();
    let data = match &event {
        Event::Snapshot { execution, .. }
        | Event::Update { execution, .. }
        | Event::Resync { execution, .. } => state(execution).map(|s| ("state", s)),
        Event::Delta { ops, execution, .. } => patch(ops, execution).map(|p| ("patch", p)),
        Event::End {
            reason, message, ..
        } => {
            let data = json!({ "reason": end_reason_name(*reason), "message": message });
            return (
                SseEvent::default().event("end").data(data.to_string()),
                true,
            );
        }
    };
    match data {
        Ok((kind, value)) => (
            SseEvent::default()
                .event(kind)
                .id(revision)
                .data(value.to_string()),
            false,
        ),
        Err(e) => (
            failure(format!("cannot encode the change: {e}"), None),
            true,
        ),
    }
}

/// `GET /api/executions/{id}/events`: the execution as SSE.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let from = last_event_id(&headers);
    let subscription: Subscription = match app.client.subscribe(id, from).await {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("cannot subscribe: {e}\n"),
            )
                .into_response()
        }
    };
    let stream = subscription
        .map(relay)
        .scan(false, |over, (event, last)| {
            let item = if *over { None } else { Some(event) };
            *over = last;
            futures::future::ready(item)
        })
        .map(Ok::<_, Infallible>)
        .take_until(app.shutdown.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `POST /api/executions/{id}/cancel`: what `stigmer executions cancel`
/// does (the phase becomes cancelled; the runner's next update is refused).
pub(crate) async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let status = AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionCancelled as i32,
        error: "cancelled from the web dashboard".into(),
        ..Default::default()
    };
    // Waits until the cancellation is committed; FAILED_PRECONDITION when
    // the execution had already ended.
    match app.client.update_status(id, status).await {
        Ok((_, revision)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "revision": revision }).to_string(),
        )
            .into_response(),
        Err(e) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "error": e.to_string(), "code": e.code().map(|c| c.as_str_name()) })
                .to_string(),
        )
            .into_response(),
    }
}
