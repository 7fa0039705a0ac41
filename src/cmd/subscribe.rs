//! `subscribe`: one stream of an execution's committed changes.
//!
//! The guarantees of docs/PROTOCOL.md (ordered, unique, reliable, atomic,
//! resumable) come from three rules:
//!
//! 1. **Register before reading.** The stream registers with the broker
//!    before it reads the snapshot or the history, so every change committed
//!    after the read is in its queue; changes at or below the last revision
//!    sent are dropped (`last_sent`), so nothing is sent twice.
//! 2. **Overflow means catch up, never skip.** When the broker reports that
//!    the queue overflowed, the stream re-reads the durable history after
//!    `last_sent` (a page at a time, bounded in rows and bytes) and then
//!    goes on with the queue.
//! 3. **Explicit resync.** When the history no longer reaches back to
//!    `last_sent` (pruned by `--history-retention`), the stream sends the
//!    whole current state as RESYNC instead of pretending continuity.
//!
//! The stream ends with exactly one END event (terminal phase delivered,
//! deleted, cancelled, shutdown) or one error reply.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::daemon::{EndReason, Event, EventType, SubscribeRequest};

use super::stream::{Outlet, Stop};
use super::{Context, Session};
use crate::broker::{Received, Subscriber};
use crate::model::{is_terminal, Change, ChangeKind};
use crate::protocol::ApiError;
use crate::store::reader::{self, HistoryRow, StateAt};
use crate::store::selection::Scope;
use crate::wire::{Frame, Producer, Reply};

/// True when `ops` leave the execution in a terminal phase (only
/// `set_phase` changes the phase).
fn ends_terminal(ops: &[stigmer_proto::daemon::Op]) -> bool {
    use stigmer_proto::daemon::op;
    ops.iter()
        .rev()
        .find_map(|o| match o.op {
            Some(op::Op::SetPhase(phase)) => Some(phase),
            _ => None,
        })
        .is_some_and(crate::model::is_terminal_phase)
}

/// Opens the stream: checks run inline (so errors come back at once), then
/// the stream runs in its own task.
pub(super) fn apply(
    ctx: &Arc<Context>,
    session: &Arc<Session>,
    reply: Reply,
    req: SubscribeRequest,
) {
    if ctx.cluster.is_some() {
        return catch_up_then_open(ctx, session, reply, req);
    }
    answer(ctx, session, reply, req);
}

/// Opens the stream and answers the request: the stream answers from now
/// on, or the refusal.
fn answer(ctx: &Arc<Context>, session: &Arc<Session>, reply: Reply, req: SubscribeRequest) {
    match open(ctx, session, reply.producer(), reply.id(), req) {
        // The stream answers from now on; the request's permit is freed.
        Ok(()) => drop(reply.into_stream()),
        Err(err) => reply.error(err),
    }
}

/// The cluster mode: what the client names (an execution, a revision) may
/// come from another daemon, ahead of this replica, which catches up first
/// (`cmd::caught_up`, bounded) on a task of its own. The checks and the
/// stream's registration run here, on the connection's reader, before
/// that: a malformed request is refused at once with nothing read, and a
/// `cancel` sent after this request always finds the stream (had the task
/// registered it, such a cancel could overtake it and be lost). A cancel, the connection's end
/// or the daemon's shutdown during the catch-up ends the stream as it ends
/// an open one (its END, or nothing when the peer is gone).
fn catch_up_then_open(
    ctx: &Arc<Context>,
    session: &Arc<Session>,
    reply: Reply,
    req: SubscribeRequest,
) {
    let registered = check(&req).and_then(|scope| {
        let outlet = Outlet::open(ctx, session, reply.producer(), reply.id())?;
        Ok((scope, outlet))
    });
    let (scope, outlet) = match registered {
        Ok(registered) => registered,
        Err(err) => return reply.error(err),
    };
    // The request keeps its permit until the stream starts or is refused.
    tokio::spawn(async move {
        let named = (!req.execution_id.is_empty()).then_some(req.execution_id.as_str());
        let caught_up = tokio::select! {
            // One etcd read and a wait, bounded (`cmd::caught_up`).
            caught_up = super::caught_up(&outlet.ctx, named, req.from_revision) => caught_up,
            // Cancelled, the connection ending, or shutdown, meanwhile.
            () = outlet.token.cancelled() => {
                let from = req.from_revision.unwrap_or(0);
                let stop = outlet.interrupted(from);
                drop(reply.into_stream());
                let end = Event {
                    revision: from,
                    execution_id: req.execution_id.clone(),
                    ..Default::default()
                };
                // Waits for room in the connection's queue (not when the
                // peer is gone).
                return outlet.finish(stop, end).await;
            }
        };
        let opened = match caught_up.and_then(|()| in_range(&outlet.ctx, req.from_revision)) {
            Ok(()) => start(outlet, scope, req),
            Err(err) => {
                // Refused: the id is free again before the error is sent.
                outlet.release();
                Err(err)
            }
        };
        match opened {
            Ok(()) => drop(reply.into_stream()),
            Err(err) => reply.error(err),
        }
    });
}

/// What a subscribe selects beside one execution: `None` for a
/// one-execution stream, else the many-execution scope. Exactly one of
/// `execution_id`, `session_id` and `all` may be set.
fn scope(req: &SubscribeRequest) -> Result<Option<Scope>, ApiError> {
    let set = [
        !req.execution_id.is_empty(),
        !req.session_id.is_empty(),
        req.all,
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(ApiError::invalid_argument(
            "set exactly one of execution_id, session_id and all",
        ));
    }
    if req.session_id.len() > super::list::MAX_SESSION_FILTER {
        return Err(ApiError::invalid_argument(format!(
            "session_id is {} bytes, over the {}-byte limit",
            req.session_id.len(),
            super::list::MAX_SESSION_FILTER
        )));
    }
    Ok(if req.all {
        Some(Scope::All)
    } else if !req.session_id.is_empty() {
        Some(Scope::Session(req.session_id.clone()))
    } else {
        None
    })
}

/// The request's own checks (its selector, the execution id): what it
/// selects beside one execution, as [`scope`].
fn check(req: &SubscribeRequest) -> Result<Option<Scope>, ApiError> {
    let scope = scope(req)?;
    if scope.is_none() {
        crate::pipeline::validate::execution_id("execution_id", &req.execution_id)?;
    }
    Ok(scope)
}

fn open(
    ctx: &Arc<Context>,
    session: &Arc<Session>,
    out: &Producer,
    id: u64,
    req: SubscribeRequest,
) -> Result<(), ApiError> {
    let scope = check(&req)?;
    in_range(ctx, req.from_revision)?;
    let outlet = Outlet::open(ctx, session, out, id)?;
    start(outlet, scope, req)
}

/// `OUT_OF_RANGE` for a `from_revision` past the last committed revision.
fn in_range(ctx: &Context, from: Option<u64>) -> Result<(), ApiError> {
    let last = ctx.revisions.last();
    match from {
        Some(from) if from > last => Err(ApiError::out_of_range(format!(
            "from_revision {from} is ahead of the last committed revision {last}"
        ))),
        _ => Ok(()),
    }
}

/// Starts the registered stream `outlet` on its task.
fn start(outlet: Outlet, scope: Option<Scope>, req: SubscribeRequest) -> Result<(), ApiError> {
    if let Some(scope) = scope {
        return super::watch::open(outlet, scope, req.from_revision, req.deltas);
    }
    // Rule 1: registered before anything is read.
    let subscriber = outlet.ctx.broker.subscribe(&req.execution_id);
    let stream = Stream {
        outlet,
        execution_id: req.execution_id,
        subscriber,
        last_sent: 0,
        sent_any: false,
        deltas: req.deltas,
        skip_initial_state: req.deltas && req.skip_initial_state,
        current: None,
    };
    tokio::spawn(stream.run(req.from_revision));
    Ok(())
}

struct Stream {
    /// Its connection, request id and lifecycle.
    outlet: Outlet,
    execution_id: String,
    subscriber: Subscriber,
    /// The last revision sent: later ones only, each once.
    last_sent: u64,
    /// Whether any state event has been sent.
    sent_any: bool,
    /// A delta stream (`SubscribeRequest.deltas`): changes made by
    /// operations go as DELTA events.
    deltas: bool,
    /// A delta stream resumed by a client that holds the state at its
    /// `from_revision`: no initial whole state.
    skip_initial_state: bool,
    /// While a whole-state stream catches up over deltas: the state at
    /// `last_sent`, which the next delta applies to. Boxed: inline it
    /// would add ~1 KB to every idle stream task (10 MB per 10,000).
    current: Option<Box<AgentExecution>>,
}

impl Stream {
    async fn run(mut self, from: Option<u64>) {
        let stop = match self.stream(from).await {
            Ok(never) => match never {},
            Err(stop) => stop,
        };
        let end = Event {
            revision: self.last_sent,
            execution_id: self.execution_id.clone(),
            ..Default::default()
        };
        self.outlet.finish(stop, end).await;
    }

    async fn stream(&mut self, from: Option<u64>) -> Result<Infallible, Stop> {
        match from {
            // Boxed, like the catch-ups below: these state machines are
            // large and only live briefly; inlined, every idle stream task
            // would carry them (~6 KiB each).
            None => Box::pin(self.snapshot()).await?,
            Some(revision) => {
                self.last_sent = revision;
                if self.deltas && !self.skip_initial_state {
                    Box::pin(self.initial_state(revision)).await?;
                }
                Box::pin(self.catch_up(true)).await?;
            }
        }
        let mut batch: Vec<Arc<Change>> = Vec::new();
        loop {
            // A state kept while catching up is not kept while idle.
            self.current = None;
            // Caught up: until something needs this task, the broker writes
            // live events to the connection itself (no wake-up of this task).
            self.subscriber.arm(
                self.outlet.out.outbox(),
                self.outlet.id,
                self.last_sent,
                self.deltas,
            );
            let received = tokio::select! {
                // Waits for the broker to queue a change this task must send
                // (one it could not deliver directly, a terminal one, a delete).
                received = self.subscriber.recv(&mut batch, &mut self.last_sent) => received,
                _ = self.outlet.token.cancelled() => {
                    // No direct delivery may follow the END sent below.
                    self.last_sent = self.last_sent.max(self.subscriber.disarm());
                    return Err(self.outlet.interrupted(self.last_sent));
                }
            };
            if received == Received::Overflowed {
                // Rule 2: what the queue dropped is in the history.
                Box::pin(self.catch_up(false)).await?;
            }
            for change in std::mem::take(&mut batch) {
                if change.revision > self.last_sent {
                    self.send_change(&change).await?;
                }
            }
        }
    }

    /// Sends a whole state; ends the stream after a terminal one.
    async fn send_state(
        &mut self,
        kind: EventType,
        execution: AgentExecution,
        revision: u64,
    ) -> Result<(), Stop> {
        let terminal = is_terminal(&execution);
        let event = Event {
            r#type: kind as i32,
            revision,
            execution_id: self.execution_id.clone(),
            execution: Some(execution),
            ..Default::default()
        };
        self.outlet.send_event(event, self.last_sent).await?;
        self.note_sent(revision, terminal)
    }

    fn note_sent(&mut self, revision: u64, terminal: bool) -> Result<(), Stop> {
        self.last_sent = revision;
        self.sent_any = true;
        if terminal {
            return Err(self.terminal_end());
        }
        Ok(())
    }

    fn terminal_end(&self) -> Stop {
        Stop::End(
            EndReason::Terminal,
            "the execution reached a terminal phase".into(),
        )
    }

    fn deleted_end(&self) -> Stop {
        Stop::End(EndReason::Deleted, "the execution was deleted".into())
    }

    /// Sends one live change (its event bytes are shared by all streams).
    async fn send_change(&mut self, change: &Change) -> Result<(), Stop> {
        let Some(event) = change.event_bytes(self.deltas) else {
            self.last_sent = change.revision;
            return Err(self.deleted_end());
        };
        self.outlet
            .send_change(change, event, self.last_sent)
            .await?;
        self.note_sent(change.revision, change.is_terminal())
    }

    async fn current(&self) -> Result<Option<reader::Stored>, Stop> {
        let id = self.execution_id.clone();
        self.outlet.read(move |c| reader::get(c, &id)).await
    }

    fn not_found(&self) -> Stop {
        Stop::Failed(ApiError::not_found(format!(
            "execution {} not found",
            self.execution_id
        )))
    }

    /// A stream without from_revision starts with the current state.
    async fn snapshot(&mut self) -> Result<(), Stop> {
        let stored = self.current().await?.ok_or_else(|| self.not_found())?;
        self.send_state(EventType::EventSnapshot, stored.execution, stored.revision)
            .await
    }

    /// Sends every change after `last_sent` from the history, a page at a
    /// time, until the history has nothing newer (rule 2), or a RESYNC when
    /// it no longer reaches back (rule 3).
    async fn catch_up(&mut self, initial: bool) -> Result<(), Stop> {
        // Rebuilt on the first delta, if one comes.
        self.current = None;
        loop {
            let after = self.last_sent;
            let id = self.execution_id.clone();
            let (compacted, chain) = self
                .outlet
                .read(move |c| {
                    // One read (one snapshot), so the floor and the chain agree.
                    let compacted = reader::compacted_revision(c)?;
                    let chain = if after < compacted {
                        Vec::new()
                    } else {
                        reader::chain(c, &id, after)?
                    };
                    Ok((compacted, chain))
                })
                .await?;
            if after < compacted {
                return self.resync(initial).await;
            }
            // Only an empty chain means the history has nothing newer;
            // changes committed meanwhile are found by the next walk.
            if chain.is_empty() {
                break;
            }
            // The chain is walked once; its rows are read a page at a time.
            let mut rest = chain.as_slice();
            while let Some(rows) = self.outlet.next_page(&mut rest).await? {
                for row in rows {
                    self.send_history(row).await?;
                }
            }
        }
        if initial && !self.sent_any {
            // Nothing after from_revision in the history as read. A change
            // committed since then is in the queue (registered first), and
            // the live loop sends it, terminal state and delete included.
            // Otherwise the execution must exist, and a terminal one ends
            // the stream at once.
            match self.current().await? {
                Some(stored) if stored.revision > self.last_sent => {}
                Some(stored) if is_terminal(&stored.execution) => {
                    return Err(self.terminal_end());
                }
                Some(_) => {}
                None => {
                    let id = self.execution_id.clone();
                    let deleted = self
                        .outlet
                        .read(move |c| reader::deleted_revision(c, &id))
                        .await?;
                    if deleted.is_none_or(|d| d <= self.last_sent) {
                        return Err(self.not_found());
                    }
                }
            }
        }
        Ok(())
    }

    /// A resync found the execution gone. When its delete is still in the
    /// history and newer than `last_sent`, the stream ends with
    /// END_REASON_DELETED at the delete's revision (docs/PROTOCOL.md: a
    /// resume on an execution deleted after R ends DELETED, even when the
    /// history before the delete was pruned); otherwise NOT_FOUND for a
    /// stream that has not started, END_REASON_DELETED for one that has.
    async fn gone(&mut self, initial: bool) -> Stop {
        let id = self.execution_id.clone();
        let deleted = match self
            .outlet
            .read(move |c| reader::deleted_revision(c, &id))
            .await
        {
            Ok(deleted) => deleted,
            Err(stop) => return stop,
        };
        match deleted {
            Some(revision) if revision > self.last_sent => {
                self.last_sent = revision;
                self.deleted_end()
            }
            _ if initial => self.not_found(),
            _ => self.deleted_end(),
        }
    }

    async fn send_history(&mut self, row: HistoryRow) -> Result<(), Stop> {
        if row.revision <= self.last_sent {
            return Ok(());
        }
        match (row.kind, row.execution, row.ops) {
            (ChangeKind::Deleted, _, _) => {
                self.last_sent = row.revision;
                Err(self.deleted_end())
            }
            // A delta stream: a change made by operations goes as them.
            (_, _, Some(ops)) if self.deltas => {
                let terminal = ends_terminal(&ops);
                let prev = row.prev.unwrap_or(0);
                let event = crate::protocol::encode_delta_event(row.revision, prev, &ops, None);
                self.outlet
                    .send(Frame::event(self.outlet.id, event), self.last_sent)
                    .await?;
                self.note_sent(row.revision, terminal)
            }
            // A whole state (a create, a base, a row from before deltas).
            (_, Some(execution), _) => {
                self.current = (!self.deltas).then(|| Box::new(execution.clone()));
                self.send_state(EventType::EventUpdate, execution, row.revision)
                    .await
            }
            // A whole-state stream over a delta: the state at the row's
            // previous change, with its operations applied.
            (_, None, Some(ops)) => {
                let Some(mut execution) = self.current.take() else {
                    let prev = row.prev.unwrap_or(0);
                    let id = self.execution_id.clone();
                    match self
                        .outlet
                        .read(move |c| reader::state_at(c, &id, prev))
                        .await?
                    {
                        StateAt::State(state, _) => self.current = Some(state),
                        StateAt::None | StateAt::Pruned => {
                            // The base before it was pruned: say so.
                            return self.resync(false).await;
                        }
                    }
                    return Box::pin(self.send_history(HistoryRow {
                        revision: row.revision,
                        execution_id: row.execution_id,
                        kind: row.kind,
                        execution: None,
                        ops: Some(ops),
                        prev: row.prev,
                    }))
                    .await;
                };
                stigmer_proto::delta::apply_to(&mut execution, &ops).map_err(|e| {
                    Stop::Failed(ApiError::internal(format!(
                        "history row {}: stored operations do not apply: {e}",
                        row.revision
                    )))
                })?;
                self.current = Some(execution.clone());
                self.send_state(EventType::EventUpdate, *execution, row.revision)
                    .await
            }
            (_, None, None) => Err(Stop::Failed(ApiError::internal(format!(
                "history row {} has no state",
                row.revision
            )))),
        }
    }

    /// A delta stream resumed from `revision` starts with the whole state
    /// at it (rebuilt from the history: its last change at or before it),
    /// so that any client can start there. The execution created after
    /// `revision` needs none (its create comes whole). A state that can no
    /// longer be rebuilt (its base was pruned, though `revision` is above
    /// the floor) means a RESYNC: the current state, from which the deltas
    /// go on.
    async fn initial_state(&mut self, revision: u64) -> Result<(), Stop> {
        let id = self.execution_id.clone();
        let found = self
            .outlet
            .read(move |c| reader::state_at(c, &id, revision))
            .await?;
        if let StateAt::Pruned = found {
            return self.resync(true).await;
        }
        if let StateAt::State(execution, at) = found {
            let terminal = is_terminal(&execution);
            let event = Event {
                r#type: EventType::EventSnapshot as i32,
                revision: at,
                execution_id: self.execution_id.clone(),
                execution: Some(*execution),
                ..Default::default()
            };
            self.outlet.send_event(event, self.last_sent).await?;
            self.sent_any = true;
            if terminal {
                return Err(self.terminal_end());
            }
        }
        Ok(())
    }

    /// The history no longer reaches back to `last_sent`: send the whole
    /// current state, flagged RESYNC.
    async fn resync(&mut self, initial: bool) -> Result<(), Stop> {
        match self.current().await? {
            Some(stored) if stored.revision > self.last_sent => {
                self.outlet
                    .ctx
                    .stream_stats
                    .resyncs
                    .fetch_add(1, Ordering::Relaxed);
                self.send_state(EventType::EventResync, stored.execution, stored.revision)
                    .await
            }
            Some(stored) if is_terminal(&stored.execution) => Err(self.terminal_end()),
            Some(_) => Ok(()),
            None => Err(self.gone(initial).await),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The most an idle one-execution stream task's future may take. Every
    /// open subscription holds one (10,000 idle subscriptions are the
    /// benchmark's idle scenario), so what any await point keeps inline
    /// costs that much per subscription: 1,104 bytes (1,184 for a watch)
    /// since session 10, 3,000 (3,080) when `Outlet::finish` held a whole
    /// `Event`; test and release builds measured the same. The bound
    /// leaves room for a few fields, not for another inline state.
    pub(crate) const MAX_STREAM_FUTURE_BYTES: usize = 1536;

    /// Fails unless what `run` returns (sized without calling it) is at
    /// most [`MAX_STREAM_FUTURE_BYTES`]; `what` names the stream.
    pub(crate) fn assert_small_task<S, A, F>(what: &str, _run: impl FnOnce(S, A) -> F) {
        let size = std::mem::size_of::<F>();
        assert!(
            size <= MAX_STREAM_FUTURE_BYTES,
            "{what}'s task future is {size} bytes (at most {MAX_STREAM_FUTURE_BYTES})"
        );
    }

    #[test]
    fn an_idle_stream_task_stays_small() {
        assert_small_task("a subscription", Stream::run);
    }
}
