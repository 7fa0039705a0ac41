//! `subscribe` by session or for every execution: one stream over many
//! executions, present and future (docs/PROTOCOL.md, "Many-execution
//! streams"). Kubernetes' list-then-watch and etcd's prefix watch are the
//! models.
//!
//! The rules of a one-execution stream (`subscribe.rs`) hold, per stream:
//!
//! 1. **Register before reading.** The stream registers its selection with
//!    the broker, then lists: in one read at revision R, the ids and
//!    revisions of the matching executions; then their states, a page at a
//!    time, each sent as a SNAPSHOT; then a BOOKMARK at R ending the list.
//!    Changes committed after the registration are queued, and those at or
//!    below R dropped, so the list and the live changes meet with no gap
//!    and no duplicate.
//! 2. **Overflow means catch up, never skip.** The history of the
//!    selection after the last revision sent: for a session, the chains of
//!    its executions; for all, the history by revision range.
//! 3. **Explicit resync.** Where the history no longer reaches back, a
//!    RESYNC (clear what you hold), then a new list and its bookmark.
//!
//! Unlike a one-execution stream it never ends by itself: a terminal phase
//! or a delete is just another event. While nothing else happens it sends a
//! BOOKMARK every `--bookmark-interval`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::{Event, EventType};

use super::stream::{Outlet, Stop};
use crate::broker::{Received, Selector, Subscriber};
use crate::model::{Change, ChangeKind};
use crate::protocol::ApiError;
use crate::store::reader::{self, HistoryRow, StateAt};
use crate::store::selection::{self, Scope};

/// Executions whose states one list page reads: a page is one read
/// transaction, so it stays short beside the writer.
const LIST_PAGE_EXECUTIONS: usize = 64;
/// Stop a list page once this many bytes of state are in memory.
const LIST_PAGE_BYTES: usize = 1024 * 1024;
/// Revisions an "all" catch-up looks up per history walk (its rows are
/// then read a page at a time, `Outlet::next_page`).
const ALL_WALK_REVISIONS: usize = 1024;
/// Whole states a whole-state stream keeps while it catches up over
/// deltas of many executions (the state each next delta applies to);
/// beyond it the cache starts over and states are rebuilt from the history.
const CATCH_UP_STATES: usize = 64;
/// Times a list starts over because a state it named was pruned before it
/// was read (only under a very short `--history-retention`).
const LIST_ATTEMPTS: usize = 3;

/// Opens a many-execution stream: the checks already ran; registers it
/// and spawns its task.
pub(super) fn open(
    outlet: Outlet,
    scope: Scope,
    from: Option<u64>,
    deltas: bool,
) -> Result<(), ApiError> {
    let selector = match &scope {
        Scope::Session(session) => Selector::Session(Arc::from(session.as_str())),
        Scope::All => Selector::All,
    };
    // Rule 1: registered before anything is read.
    let subscriber = outlet.ctx.broker.watch(selector);
    let stream = Watch {
        outlet,
        scope,
        subscriber,
        last_sent: 0,
        deltas,
        states: HashMap::new(),
    };
    tokio::spawn(stream.run(from));
    Ok(())
}

struct Watch {
    /// Its connection, request id and lifecycle.
    outlet: Outlet,
    /// Which executions it covers.
    scope: Scope,
    subscriber: Subscriber,
    /// The last revision sent (an event's or a bookmark's): later ones
    /// only, each once.
    last_sent: u64,
    /// Changes made by operations go as DELTA events.
    deltas: bool,
    /// While a whole-state stream catches up over deltas: the states the
    /// next deltas apply to (at most [`CATCH_UP_STATES`]).
    states: HashMap<String, Box<AgentExecution>>,
}

impl Watch {
    async fn run(mut self, from: Option<u64>) {
        let stop = match self.stream(from).await {
            Ok(never) => match never {},
            Err(stop) => stop,
        };
        let end = Event {
            revision: self.last_sent,
            ..Default::default()
        };
        self.outlet.finish(stop, end).await;
    }

    async fn stream(&mut self, from: Option<u64>) -> Result<Infallible, Stop> {
        match from {
            // Boxed: these state machines are large and live briefly;
            // inlined, every idle stream task would carry them.
            None => Box::pin(self.list()).await?,
            Some(revision) => {
                self.last_sent = revision;
                Box::pin(self.catch_up()).await?;
            }
        }
        let mut batch: Vec<Arc<Change>> = Vec::new();
        loop {
            self.states = HashMap::new();
            // Caught up: the broker writes live events to the connection
            // itself until something needs this task.
            self.subscriber.arm(
                self.outlet.out.outbox(),
                self.outlet.id,
                self.last_sent,
                self.deltas,
            );
            let received = tokio::select! {
                // Waits for a change the broker could not deliver directly
                // (the connection's queue at its bound, or an overflow).
                received = self.subscriber.recv(&mut batch, &mut self.last_sent) => received,
                // Waits for the bookmark interval, if there is one.
                () = idle(self.outlet.ctx.bookmark_interval) => {
                    match self.bookmark(&mut batch).await? {
                        Some(received) => received,
                        None => continue,
                    }
                }
                _ = self.outlet.token.cancelled() => {
                    // No direct delivery may follow the END sent below.
                    self.last_sent = self.last_sent.max(self.subscriber.disarm());
                    return Err(self.outlet.interrupted(self.last_sent));
                }
            };
            if received == Received::Overflowed {
                // Rule 2: what the queue dropped is in the history.
                Box::pin(self.catch_up()).await?;
            }
            for change in std::mem::take(&mut batch) {
                self.send_change(&change).await?;
            }
        }
    }

    /// The bookmark interval passed with the stream armed. When nothing was
    /// delivered meanwhile and nothing waits, sends a BOOKMARK at the newest
    /// revision fully published; returns what was queued meanwhile instead,
    /// if anything was.
    async fn bookmark(&mut self, batch: &mut Vec<Arc<Change>>) -> Result<Option<Received>, Stop> {
        // Read before disarming: every change at or below it has reached
        // this stream's queue or its connection.
        let published = self.outlet.ctx.broker.published();
        let delivered = self.subscriber.disarm();
        if delivered > self.last_sent {
            // Events went out directly during the interval: not idle.
            self.last_sent = delivered;
            return Ok(None);
        }
        if let Some(received) = self.subscriber.try_recv(batch, &mut self.last_sent) {
            return Ok(Some(received));
        }
        let revision = self.last_sent.max(published);
        self.send_bookmark(revision, false).await?;
        Ok(None)
    }

    async fn send_bookmark(&mut self, revision: u64, end_of_list: bool) -> Result<(), Stop> {
        let event = Event {
            r#type: EventType::EventBookmark as i32,
            revision,
            initial_events_end: end_of_list,
            ..Default::default()
        };
        self.outlet.send_event(event, self.last_sent).await?;
        self.last_sent = revision;
        Ok(())
    }

    /// Sends one live change (its event bytes are shared by all streams).
    async fn send_change(&mut self, change: &Change) -> Result<(), Stop> {
        if change.revision <= self.last_sent {
            return Ok(());
        }
        let event = change.many_event_bytes(self.deltas);
        self.outlet
            .send_change(change, event, self.last_sent)
            .await?;
        self.last_sent = change.revision;
        Ok(())
    }

    /// The initial list (rule 1): a SNAPSHOT of every matching execution as
    /// of one revision R, in revision order, then the end-of-list BOOKMARK
    /// at R. A state pruned before its page was read (possible only when
    /// the execution changed since R and the history was pruned past it)
    /// makes the list start over, after a RESYNC telling the client to drop
    /// the snapshots it got.
    async fn list(&mut self) -> Result<(), Stop> {
        for _ in 0..LIST_ATTEMPTS {
            let scope = self.scope.clone();
            let listed = self
                .outlet
                .read(move |c| selection::list_at(c, &scope))
                .await?;
            let mut rest = listed.entries.as_slice();
            let mut complete = true;
            while !rest.is_empty() {
                let page = rest[..rest.len().min(LIST_PAGE_EXECUTIONS)].to_vec();
                let states = self
                    .outlet
                    .read(move |c| selection::states(c, &page, LIST_PAGE_BYTES))
                    .await?;
                let Some(states) = states else {
                    complete = false;
                    break;
                };
                rest = &rest[states.len()..];
                for (execution_id, revision, execution) in states {
                    let event = Event {
                        r#type: EventType::EventSnapshot as i32,
                        revision,
                        execution_id,
                        execution: Some(execution),
                        ..Default::default()
                    };
                    self.outlet.send_event(event, self.last_sent).await?;
                }
            }
            if complete {
                return self.send_bookmark(listed.revision, true).await;
            }
            self.send_resync().await?;
        }
        Err(Stop::Failed(ApiError::unavailable(
            "the history was pruned under the initial list again and again; \
             subscribe again, or raise --history-retention",
        )))
    }

    /// A RESYNC: the client drops what it holds; a new list follows.
    async fn send_resync(&mut self) -> Result<(), Stop> {
        self.outlet
            .ctx
            .stream_stats
            .resyncs
            .fetch_add(1, Ordering::Relaxed);
        let event = Event {
            r#type: EventType::EventResync as i32,
            revision: self.last_sent,
            ..Default::default()
        };
        self.outlet.send_event(event, self.last_sent).await
    }

    /// Sends every matching change after `last_sent` from the history, a
    /// page at a time, until the history has nothing newer (rule 2); or,
    /// when it no longer reaches back, a RESYNC and a new list (rule 3).
    async fn catch_up(&mut self) -> Result<(), Stop> {
        self.states = HashMap::new();
        loop {
            let after = self.last_sent;
            let scope = self.scope.clone();
            let (floor, walk) = self
                .outlet
                .read(move |c| {
                    // One read, so the floor and the walk agree.
                    let mut floor = reader::compacted_revision(c)?;
                    if let Scope::Session(_) = scope {
                        floor = floor.max(selection::sessions_since(c)?);
                    }
                    if after < floor {
                        return Ok((floor, Vec::new()));
                    }
                    let walk = match &scope {
                        Scope::Session(session) => selection::session_revisions(c, session, after)?,
                        Scope::All => selection::all_revisions(c, after, ALL_WALK_REVISIONS)?,
                    };
                    Ok((floor, walk))
                })
                .await?;
            if after < floor {
                self.send_resync().await?;
                return Box::pin(self.list()).await;
            }
            // Only an empty walk means the history has nothing newer.
            if walk.is_empty() {
                return Ok(());
            }
            let mut rest = walk.as_slice();
            while let Some(rows) = self.outlet.next_page(&mut rest).await? {
                for row in rows {
                    self.send_history(row).await?;
                }
            }
        }
    }

    /// Sends one history row as the event a live change would have been.
    async fn send_history(&mut self, row: HistoryRow) -> Result<(), Stop> {
        if row.revision <= self.last_sent {
            return Ok(());
        }
        let event = match (row.kind, row.execution, row.ops) {
            (ChangeKind::Deleted, _, _) => {
                self.states.remove(&row.execution_id);
                Event {
                    r#type: EventType::EventDeleted as i32,
                    revision: row.revision,
                    execution_id: row.execution_id,
                    ..Default::default()
                }
            }
            (ChangeKind::StatusUpdated, _, Some(ops)) if self.deltas => Event {
                r#type: EventType::EventDelta as i32,
                revision: row.revision,
                execution_id: row.execution_id,
                ops,
                prev_revision: row.prev.unwrap_or(0),
                ..Default::default()
            },
            (kind, Some(execution), _) => {
                if !self.deltas {
                    self.keep_state(&row.execution_id, &execution);
                }
                let kind = match kind {
                    ChangeKind::Created => EventType::EventCreated,
                    _ => EventType::EventUpdate,
                };
                Event {
                    r#type: kind as i32,
                    revision: row.revision,
                    execution_id: row.execution_id,
                    execution: Some(execution),
                    ..Default::default()
                }
            }
            // A whole-state stream over a delta: the state at the row's
            // previous change, with its operations applied.
            (_, None, Some(ops)) => {
                let execution = self
                    .state_before(&row.execution_id, row.prev.unwrap_or(0), row.revision)
                    .await?;
                let Some(mut execution) = execution else {
                    // The base before it was pruned: say so.
                    self.send_resync().await?;
                    return Box::pin(self.list()).await;
                };
                stigmer_proto::delta::apply_to(&mut execution, &ops).map_err(|e| {
                    Stop::Failed(ApiError::internal(format!(
                        "history row {}: stored operations do not apply: {e}",
                        row.revision
                    )))
                })?;
                self.keep_state(&row.execution_id, &execution);
                Event {
                    r#type: EventType::EventUpdate as i32,
                    revision: row.revision,
                    execution_id: row.execution_id,
                    execution: Some(*execution),
                    ..Default::default()
                }
            }
            (_, None, None) => {
                return Err(Stop::Failed(ApiError::internal(format!(
                    "history row {} has no state",
                    row.revision
                ))))
            }
        };
        let revision = event.revision;
        self.outlet.send_event(event, self.last_sent).await?;
        self.last_sent = revision;
        Ok(())
    }

    /// Keeps a state a later delta of the same catch-up may apply to.
    fn keep_state(&mut self, execution_id: &str, execution: &AgentExecution) {
        if self.states.len() >= CATCH_UP_STATES && !self.states.contains_key(execution_id) {
            self.states = HashMap::new();
        }
        self.states
            .insert(execution_id.to_string(), Box::new(execution.clone()));
    }

    /// The state of `execution_id` at `prev` (its change before
    /// `revision`): kept from this catch-up, else rebuilt from the history.
    /// `None` when it can no longer be rebuilt.
    async fn state_before(
        &mut self,
        execution_id: &str,
        prev: u64,
        revision: u64,
    ) -> Result<Option<Box<AgentExecution>>, Stop> {
        if let Some(state) = self.states.remove(execution_id) {
            return Ok(Some(state));
        }
        let id = execution_id.to_string();
        match self
            .outlet
            .read(move |c| reader::state_at(c, &id, prev))
            .await?
        {
            StateAt::State(state, _) => Ok(Some(state)),
            StateAt::Pruned => Ok(None),
            StateAt::None => Err(Stop::Failed(ApiError::internal(format!(
                "history row {revision} of {execution_id}: no state before it at {prev}"
            )))),
        }
    }
}

/// Completes after `interval`, or never.
async fn idle(interval: Option<std::time::Duration>) {
    match interval {
        // A timer on the runtime; never fails.
        Some(interval) => tokio::time::sleep(interval).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::subscribe::tests::assert_small_task;

    /// As for one-execution streams (`subscribe::tests`): a many-execution
    /// stream's task took 3,080 bytes when `send_event`, awaited in its
    /// idle loop, and `Outlet::finish` held a whole `Event`.
    #[test]
    fn an_idle_watch_task_stays_small() {
        assert_small_task("a watch", Watch::run);
    }
}
