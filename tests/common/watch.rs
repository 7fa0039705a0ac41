//! Helpers for many-execution stream tests (tests/watch*.rs): opening a
//! session or all-executions watch on the raw protocol, the writes whose
//! revisions the tests predict, reading a watch up to a revision, and a
//! watcher's cache rebuilt from events as a client keeps it.

use std::collections::BTreeMap;

use super::*;
use stigmer_proto::agentexecution::{AgentExecution, AgentExecutionId};
use stigmer_proto::daemon::{
    op, request::Command as Cmd, AppendRequest, AppendText, Event, EventType, Op, SubscribeRequest,
};

pub const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
pub const UPDATE: i32 = EventType::EventUpdate as i32;
pub const RESYNC: i32 = EventType::EventResync as i32;
pub const END: i32 = EventType::EventEnd as i32;
pub const DELTA: i32 = EventType::EventDelta as i32;
pub const CREATED: i32 = EventType::EventCreated as i32;
pub const DELETED: i32 = EventType::EventDeleted as i32;
pub const BOOKMARK: i32 = EventType::EventBookmark as i32;

/// What a watch selects.
#[derive(Clone, Copy)]
pub enum Sel<'a> {
    Session(&'a str),
    All,
}

pub async fn watch(c: &mut Raw, sel: Sel<'_>, from: Option<u64>, deltas: bool) -> u64 {
    let req = c.next_id();
    let (session_id, all) = match sel {
        Sel::Session(s) => (s.to_string(), false),
        Sel::All => (String::new(), true),
    };
    c.send(
        req,
        Cmd::Subscribe(SubscribeRequest {
            session_id,
            all,
            from_revision: from,
            deltas,
            ..Default::default()
        }),
    )
    .await;
    req
}

pub async fn create_in(c: &mut Raw, session: &str) -> (String, u64) {
    let resp = c
        .call(Cmd::Create(new_execution("agent", Some(session))))
        .await;
    let (e, rev) = expect_execution(resp);
    (e.metadata.expect("metadata").id, rev)
}

pub async fn update(c: &mut Raw, id: &str, text: &str) -> u64 {
    expect_execution(c.update(id, ai_status(text)).await).1
}

pub async fn delete(c: &mut Raw, id: &str) -> u64 {
    let resp = c
        .call(Cmd::Delete(stigmer_proto::apiresource::ApiResourceId {
            value: id.into(),
        }))
        .await;
    match resp.result {
        Some(stigmer_proto::daemon::response::Result::Deleted(d)) => d.revision,
        other => panic!("expected a delete reply, got {other:?}"),
    }
}

/// An append of `text` at byte `offset` of message 0.
pub fn append_cmd(id: &str, offset: u64, text: &str) -> Cmd {
    Cmd::Append(AppendRequest {
        execution_id: id.into(),
        expected_revision: None,
        ops: vec![Op {
            op: Some(op::Op::AppendText(AppendText {
                message_index: 0,
                offset,
                text: text.into(),
                r#type: 0,
            })),
        }],
    })
}

pub async fn append_text(c: &mut Raw, id: &str, offset: u64, text: &str) -> u64 {
    let resp = c.call(append_cmd(id, offset, text)).await;
    match resp.result {
        Some(stigmer_proto::daemon::response::Result::Execution(r)) => r.revision,
        other => panic!("expected an acknowledgement, got {other:?}"),
    }
}

pub async fn get(c: &mut Raw, id: &str) -> Option<(AgentExecution, u64)> {
    let resp = c
        .call(Cmd::Get(AgentExecutionId { value: id.into() }))
        .await;
    match resp.result {
        Some(stigmer_proto::daemon::response::Result::Execution(r)) => {
            Some((r.execution.expect("execution"), r.revision))
        }
        _ => None,
    }
}

/// Message 0's text of execution `id` on `c`'s daemon, with its revision
/// (`None`: no such execution there).
pub async fn text_of(c: &mut Raw, id: &str) -> Option<(String, u64)> {
    let (execution, revision) = get(c, id).await?;
    let text = execution
        .status
        .and_then(|s| s.messages.into_iter().next())
        .map(|m| m.content)
        .unwrap_or_default();
    Some((text, revision))
}

/// Events of `sub` up to and including the first at or past `revision`
/// (a bookmark included).
pub async fn events_until(c: &mut Raw, sub: u64, revision: u64) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let e = c.event(sub).await;
        assert_ne!(e.r#type, END, "the stream ended: {e:?}");
        let done = e.revision >= revision && e.r#type != SNAPSHOT;
        out.push(e);
        if done {
            return out;
        }
    }
}

/// The events up to the end-of-list bookmark (inclusive).
pub async fn initial_list(c: &mut Raw, sub: u64) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let e = c.event(sub).await;
        let end = e.r#type == BOOKMARK && e.initial_events_end;
        assert!(
            e.r#type == SNAPSHOT || end || e.r#type == RESYNC,
            "the list holds snapshots only: {e:?}"
        );
        out.push(e);
        if end {
            return out;
        }
    }
}

/// A watcher's view: execution id → (revision, state), kept from events
/// as a client cache does.
#[derive(Default)]
pub struct Cache {
    pub states: BTreeMap<String, (u64, AgentExecution)>,
}

impl Cache {
    pub fn apply(&mut self, e: &Event) {
        match e.r#type {
            SNAPSHOT | CREATED | UPDATE => {
                let execution = e.execution.clone().expect("a whole state");
                self.states
                    .insert(e.execution_id.clone(), (e.revision, execution));
            }
            DELTA => {
                let (rev, state) = self
                    .states
                    .get_mut(&e.execution_id)
                    .unwrap_or_else(|| panic!("a delta for an unknown execution: {e:?}"));
                assert_eq!(
                    *rev, e.prev_revision,
                    "prev_revision proves nothing was missed"
                );
                let status = state.status.get_or_insert_with(Default::default);
                stigmer_proto::delta::apply_all(status, &e.ops).expect("ops apply");
                *rev = e.revision;
            }
            DELETED => {
                assert!(self.states.remove(&e.execution_id).is_some());
            }
            RESYNC => self.states.clear(),
            BOOKMARK => {}
            other => panic!("unexpected event type {other}: {e:?}"),
        }
    }
}

/// Revisions never go back and no change comes twice (bookmarks may repeat
/// the revision before them; a RESYNC starts a new list).
pub fn assert_ordered(events: &[Event]) {
    let mut last = 0;
    let mut listing = true;
    for e in events {
        match e.r#type {
            RESYNC => {
                listing = true;
                last = 0;
            }
            BOOKMARK => {
                assert!(e.revision >= last, "bookmark went back: {e:?} after {last}");
                listing &= !e.initial_events_end;
                last = e.revision;
            }
            _ => {
                assert!(
                    e.revision > last || (listing && e.revision >= last && e.r#type == SNAPSHOT),
                    "revision {} after {last}: {e:?}",
                    e.revision
                );
                last = e.revision;
            }
        }
    }
}

pub async fn get_revision(c: &mut Raw) -> u64 {
    let resp = c
        .call(Cmd::Status(stigmer_proto::daemon::StatusRequest {
            prometheus: false,
        }))
        .await;
    match resp.result {
        Some(stigmer_proto::daemon::response::Result::Status(s)) => s.revision,
        other => panic!("expected status, got {other:?}"),
    }
}

/// Cancels stream `sub` and reads its END and the cancel's reply.
pub async fn cancel(c: &mut Raw, sub: u64) {
    let id = c.next_id();
    c.send(
        id,
        Cmd::Cancel(stigmer_proto::daemon::CancelSubscriptionRequest {
            subscription_id: sub,
        }),
    )
    .await;
    loop {
        if c.event(sub).await.r#type == END {
            break;
        }
    }
    c.recv(id).await;
}
