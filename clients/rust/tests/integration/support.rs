//! The helpers every client integration test shares: reading an
//! execution (`id_of`, `phase_of`, `last_message`), a status to send
//! (`says`), creating and connecting (`create`, `connect`), writing a run
//! of messages (`say_each`, `say_done`), and reading a subscription to its
//! END with the checks on its order (`is_change`, `collect_until_end`,
//! `state_revisions`, `assert_ordered_unique`).

use futures::StreamExt;
use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_client::proto::daemon::EndReason;
use stigmer_client::{Client, Config, Event, NewExecution, Subscription};

use crate::common::Daemon;

pub fn id_of(e: &AgentExecution) -> String {
    e.metadata
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_default()
}

pub fn phase_of(e: &AgentExecution) -> ExecutionPhase {
    e.status.as_ref().map(|s| s.phase()).unwrap_or_default()
}

/// A status whose single AI message says `text`.
pub fn says(text: &str, phase: ExecutionPhase) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: phase as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: text.to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn last_message(e: &AgentExecution) -> String {
    e.status
        .as_ref()
        .and_then(|s| s.messages.last())
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

pub async fn create(client: &Client, agent: &str) -> (String, u64) {
    let (e, rev) = client
        .create(NewExecution::new(agent, "do the thing"))
        .await
        .expect("create");
    (id_of(&e), rev)
}

/// Updates `id` once for each of `messages`, in progress and saying it;
/// the revisions committed. `what` names the updates in a failure.
pub async fn say_each(
    client: &Client,
    id: &str,
    messages: impl IntoIterator<Item = String>,
    what: &str,
) -> Vec<u64> {
    let mut revisions = Vec::new();
    for text in messages {
        let (_, r) = client
            .update_status(id, says(&text, ExecutionPhase::ExecutionInProgress))
            .await
            .expect(what);
        revisions.push(r);
    }
    revisions
}

/// Completes `id`, saying `text`; the revision committed. `what` names
/// the update in a failure.
pub async fn say_done(client: &Client, id: &str, text: &str, what: &str) -> u64 {
    let (_, r) = client
        .update_status(id, says(text, ExecutionPhase::ExecutionCompleted))
        .await
        .expect(what);
    r
}

/// A client whose subscriptions ask for deltas or whole states.
pub async fn connect(daemon: &Daemon, deltas: bool) -> Client {
    let config = Config {
        deltas,
        ..Config::default()
    };
    Client::connect_with(&daemon.socket, config)
        .await
        .expect("connect")
}

/// A change event of the stream's kind: whole states (`Update`), or
/// operations with the state rebuilt locally (`Delta`).
pub fn is_change(e: &Event, deltas: bool) -> bool {
    if deltas {
        matches!(e, Event::Delta { .. })
    } else {
        matches!(e, Event::Update { .. })
    }
}

/// Reads events until END (or an error, which fails the test).
pub async fn collect_until_end(sub: &mut Subscription) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(ev) = sub.next().await {
        let ev = ev.expect("stream error");
        let end = matches!(ev, Event::End { .. });
        events.push(ev);
        if end {
            return events;
        }
    }
    panic!("stream ended without END after {events:?}");
}

/// The revisions of the events that carry a state.
pub fn state_revisions(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.execution().is_some())
        .map(Event::revision)
        .collect()
}

/// Every revision strictly increases, and the last event is END `reason`.
pub fn assert_ordered_unique(events: &[Event], reason: EndReason) {
    let revisions = state_revisions(events);
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions not strictly increasing: {revisions:?}"
    );
    match events.last() {
        Some(Event::End { reason: r, .. }) => assert_eq!(*r, reason),
        other => panic!("last event is not END: {other:?}"),
    }
}
