//! Subscriptions that survive disconnects and daemon restarts.
//!
//! The daemon promises that subscribing with `from_revision` = the last
//! revision received continues exactly after it (docs/PROTOCOL.md,
//! "subscribe", guarantee 5). This module keeps that promise on the client
//! side: it remembers the last revision it handed out, and whenever the
//! stream breaks — the connection drops, the daemon ends it with
//! `END_REASON_SHUTDOWN` or `END_REASON_SLOW_CONSUMER`, or this client's own
//! per-stream buffer overflows — it reconnects with jittered exponential
//! backoff and resubscribes from that revision. Events at or below the last
//! delivered revision are dropped (defence in depth), so the consumer sees
//! every revision once, in order, or an explicit [`Event::Resync`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;

use crate::conn::{Conn, StreamHandle};
use crate::proto::agentexecution::AgentExecution;
use crate::proto::daemon::{self as wire, Code, EndReason, EventType, Op};
use crate::{Client, Error, Result};

/// One event of a [`Subscription`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The current state; the first event of a stream opened without
    /// `from_revision`.
    Snapshot {
        /// The execution's revision.
        revision: u64,
        /// The whole execution.
        execution: AgentExecution,
    },
    /// One committed change: the whole execution after it.
    Update {
        /// The change's revision.
        revision: u64,
        /// The whole execution after the change.
        execution: AgentExecution,
    },
    /// The stream could not continue change by change (the daemon's history
    /// no longer reached back far enough): the whole current state. Changes
    /// between the previous event and this one were not delivered.
    Resync {
        /// The execution's revision.
        revision: u64,
        /// The whole execution.
        execution: AgentExecution,
    },
    /// One committed change as its operations (a delta stream, see
    /// [`crate::Config::deltas`]), with the whole execution after it, kept
    /// up to date here. The execution is shared: it is copied only when the
    /// next delta arrives while the consumer still holds this one.
    Delta {
        /// The change's revision.
        revision: u64,
        /// The operations, in order (the daemon's commit stamp last).
        ops: Vec<Op>,
        /// The whole execution after the change.
        execution: Arc<AgentExecution>,
    },
    /// The stream is over; nothing follows. `SHUTDOWN` and `SLOW_CONSUMER`
    /// ends are handled internally (the stream resumes) unless
    /// [`crate::Config::resume`] is off.
    End {
        /// The last revision delivered on the stream.
        revision: u64,
        /// Why it ended; a reason this client does not know is
        /// [`EndReason::Unspecified`] (still an end).
        reason: EndReason,
        /// The daemon's detail, for a person.
        message: String,
    },
}

impl Event {
    /// The event's revision (for `End`, the last revision delivered).
    pub fn revision(&self) -> u64 {
        match self {
            Event::Snapshot { revision, .. }
            | Event::Update { revision, .. }
            | Event::Resync { revision, .. }
            | Event::Delta { revision, .. }
            | Event::End { revision, .. } => *revision,
        }
    }

    /// The execution carried, absent on `End`.
    pub fn execution(&self) -> Option<&AgentExecution> {
        match self {
            Event::Snapshot { execution, .. }
            | Event::Update { execution, .. }
            | Event::Resync { execution, .. } => Some(execution),
            Event::Delta { execution, .. } => Some(execution),
            Event::End { .. } => None,
        }
    }

    /// The operations of a [`Event::Delta`]; empty for the others.
    pub fn ops(&self) -> &[Op] {
        match self {
            Event::Delta { ops, .. } => ops,
            _ => &[],
        }
    }

    /// `"snapshot"`, `"update"`, `"resync"`, `"delta"` or `"end"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Snapshot { .. } => "snapshot",
            Event::Update { .. } => "update",
            Event::Resync { .. } => "resync",
            Event::Delta { .. } => "delta",
            Event::End { .. } => "end",
        }
    }
}

/// The lowercase name of an end reason: `"terminal"`, `"deleted"`,
/// `"cancelled"`, `"shutdown"`, `"slow_consumer"` or `"unspecified"`.
pub fn end_reason_name(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Unspecified => "unspecified",
        EndReason::Terminal => "terminal",
        EndReason::Deleted => "deleted",
        EndReason::Cancelled => "cancelled",
        EndReason::Shutdown => "shutdown",
        EndReason::SlowConsumer => "slow_consumer",
    }
}

/// What a resuming subscription reports about its connection, for programs
/// that tell their user (see [`Subscription::on_notice`]). Each break is
/// reported once, and so is each successful resumption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The stream broke (the connection dropped, or the daemon is shutting
    /// down); the subscription is reconnecting with backoff.
    Reconnecting {
        /// Why it broke, for a person.
        reason: String,
        /// The last revision delivered, where the stream will resume.
        last_revision: Option<u64>,
    },
    /// The subscription is back: the daemon accepted the connection and the
    /// stream resumes after `from_revision`, so nothing is missed.
    Resumed {
        /// The revision it resumes after.
        from_revision: Option<u64>,
        /// How long it was disconnected.
        after: Duration,
    },
}

/// A callback for [`Notice`]s.
type Notify = Arc<dyn Fn(&Notice) + Send + Sync>;

type NextFuture = Pin<Box<dyn Future<Output = (Box<State>, Option<Result<Event>>)> + Send>>;

/// A resuming stream of one execution's changes; see the module docs.
/// Yields `Ok(event)` until an [`Event::End`] or an `Err`, then `None`.
///
/// Dropping it cancels the stream on the daemon (best effort).
pub struct Subscription {
    /// The state between polls; inside `next` while a poll is in progress.
    state: Option<Box<State>>,
    next: Option<NextFuture>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Subscription");
        if let Some(st) = &self.state {
            d.field("execution_id", &st.execution_id)
                .field("last_revision", &st.last);
        }
        d.finish_non_exhaustive()
    }
}

/// The live stream on one connection.
struct Active {
    conn: Arc<Conn>,
    handle: StreamHandle,
    /// When it was opened: a stream that lived longer than the backoff
    /// ceiling resets the backoff when it breaks.
    opened_at: Instant,
    /// The daemon ended the stream (END or error): nothing to cancel.
    ended: bool,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.conn.forget(self.handle.id);
        if !self.ended {
            self.conn.cancel_in_background(self.handle.id);
        }
    }
}

struct State {
    client: Client,
    execution_id: String,
    /// The last revision handed to the consumer (initially `from_revision`):
    /// where a resubscription resumes, and the floor below which events are
    /// dropped.
    last: Option<u64>,
    active: Option<Active>,
    finished: bool,
    /// Consecutive failed reconnection attempts (0: none in progress).
    attempt: u32,
    /// When the stream broke, for `give_up_after`.
    broken_since: Option<Instant>,
    last_error: Option<Error>,
    /// Who hears about breaks and resumptions.
    notify: Option<Notify>,
    /// When the current break was announced (a `Reconnecting` notice is
    /// pending its `Resumed`).
    announced: Option<Instant>,
    /// A delta stream: the whole state at `last`, which the next delta
    /// applies to.
    current: Option<Arc<AgentExecution>>,
}

/// What one event from the daemon means for the consumer.
// Short-lived, returned once per event.
#[allow(clippy::large_enum_variant)]
enum Step {
    Yield(Event),
    Skip,
    Resume,
    Fail(Error),
}

impl Subscription {
    pub(crate) fn new(
        client: Client,
        execution_id: String,
        from_revision: Option<u64>,
        conn: Arc<Conn>,
        handle: StreamHandle,
    ) -> Self {
        Subscription {
            state: Some(Box::new(State {
                client,
                execution_id,
                last: from_revision,
                active: Some(Active {
                    conn,
                    handle,
                    opened_at: Instant::now(),
                    ended: false,
                }),
                finished: false,
                attempt: 0,
                broken_since: None,
                last_error: None,
                notify: None,
                announced: None,
                current: None,
            })),
            next: None,
        }
    }

    /// Calls `f` with a [`Notice`] whenever the stream breaks and whenever it
    /// resumes (from the task polling the subscription), so a program can
    /// tell its user that it is reconnecting rather than silently waiting.
    pub fn on_notice(mut self, f: impl Fn(&Notice) + Send + Sync + 'static) -> Self {
        if let Some(state) = self.state.as_mut() {
            state.notify = Some(Arc::new(f));
        }
        self
    }

    /// The execution this subscription watches.
    pub fn execution_id(&self) -> Option<&str> {
        self.state.as_ref().map(|s| s.execution_id.as_str())
    }

    /// The last revision delivered (or the `from_revision` it started from);
    /// `None` before the first event, or while a poll is in progress.
    pub fn last_revision(&self) -> Option<u64> {
        self.state.as_ref().and_then(|s| s.last)
    }

    /// Ends the stream: asks the daemon to cancel it and waits for the
    /// acknowledgement. A stream that had already ended is fine.
    pub async fn cancel(mut self) -> Result<()> {
        // Dropping an in-progress poll drops its state, which cancels in the
        // background; nothing more to do then.
        self.next = None;
        let Some(mut state) = self.state.take() else {
            return Ok(());
        };
        let Some(active) = state.active.as_mut() else {
            return Ok(());
        };
        if active.ended || active.conn.is_closed() {
            return Ok(());
        }
        let command = wire::request::Command::Cancel(wire::CancelSubscriptionRequest {
            subscription_id: active.handle.id,
        });
        // Waits for the daemon's acknowledgement; the stream's own END
        // (CANCELLED) is discarded with the route.
        let result = active.conn.call(command, false).await;
        active.ended = true;
        match result {
            Ok(_) => Ok(()),
            Err(crate::conn::CallError::Failed(e)) if e.is(Code::NotFound) => Ok(()),
            Err(crate::conn::CallError::Failed(e)) if e.is_transient() => Ok(()),
            Err(crate::conn::CallError::Failed(e)) => Err(e),
            Err(crate::conn::CallError::NotSent(_)) => Ok(()),
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.next.is_none() {
            let Some(mut state) = this.state.take() else {
                return Poll::Ready(None);
            };
            this.next = Some(Box::pin(async move {
                let item = state.next().await;
                (state, item)
            }));
        }
        let Some(fut) = this.next.as_mut() else {
            return Poll::Ready(None);
        };
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((state, item)) => {
                this.next = None;
                this.state = Some(state);
                Poll::Ready(item)
            }
        }
    }
}

impl State {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if self.finished {
                return None;
            }
            let Some(active) = self.active.as_mut() else {
                if let Err(e) = self.reopen().await {
                    self.finished = true;
                    return Some(Err(e));
                }
                continue;
            };
            // Waits for the daemon's next event on this stream; None when
            // the connection died or the reader dropped an overflowing
            // stream.
            match active.handle.rx.recv().await {
                Some(Ok(ev)) => match self.on_event(ev) {
                    Step::Yield(e) => return Some(Ok(e)),
                    Step::Skip => {}
                    Step::Resume => self.broke(Error::Status {
                        code: Code::Unavailable,
                        message: "the daemon ended the stream (shutting down or slow consumer)"
                            .into(),
                    }),
                    Step::Fail(e) => {
                        self.finished = true;
                        return Some(Err(e));
                    }
                },
                Some(Err(e)) => {
                    active.ended = true;
                    if self.client.config().resume && e.is_transient() {
                        self.broke(e);
                    } else {
                        self.finished = true;
                        self.active = None;
                        return Some(Err(e));
                    }
                }
                None => {
                    let overflowed = active.handle.overflowed.load(Ordering::Acquire);
                    active.ended = true;
                    if overflowed {
                        // Our own buffer overflowed: the daemon is fine, so
                        // resubscribe at once.
                        tracing::debug!(execution_id = %self.execution_id, "stream buffer overflowed; resubscribing");
                        self.active = None;
                    } else if self.client.config().resume {
                        self.broke(Error::Closed);
                    } else {
                        self.finished = true;
                        self.active = None;
                        return Some(Err(Error::Closed));
                    }
                }
            }
        }
    }

    /// The stream broke (connection lost, daemon shutting down): schedule a
    /// reconnection with backoff.
    fn broke(&mut self, why: Error) {
        let long_lived = self
            .active
            .as_ref()
            .is_some_and(|a| a.opened_at.elapsed() >= self.client.config().reconnect.max_backoff);
        if long_lived {
            self.attempt = 0;
            self.broken_since = None;
        }
        tracing::debug!(execution_id = %self.execution_id, error = %why, "stream broke; will resume");
        self.active = None;
        self.attempt = self.attempt.saturating_add(1);
        self.broken_since.get_or_insert_with(Instant::now);
        if self.announced.is_none() {
            self.announced = Some(Instant::now());
            if let Some(notify) = &self.notify {
                notify(&Notice::Reconnecting {
                    reason: why.to_string(),
                    last_revision: self.last,
                });
            }
        }
        self.last_error = Some(why);
    }

    /// Resubscribes from the last delivered revision, waiting with backoff
    /// between attempts; fails on a permanent error or after `give_up_after`.
    async fn reopen(&mut self) -> Result<()> {
        let reconnect = self.client.config().reconnect.clone();
        loop {
            if self.attempt > 0 {
                let since = *self.broken_since.get_or_insert_with(Instant::now);
                if let Some(limit) = reconnect.give_up_after {
                    if since.elapsed() >= limit {
                        let last = self.last_error.take().unwrap_or(Error::Closed);
                        return Err(Error::GaveUp {
                            elapsed: since.elapsed(),
                            last: Box::new(last),
                        });
                    }
                }
                // Waits before trying again: the daemon is probably
                // restarting.
                tokio::time::sleep(reconnect.delay(self.attempt)).await;
            }
            // Reconnects if needed and sends the subscribe; fails while the
            // daemon is down.
            // A delta stream that holds the state at `last` resumes without
            // it being sent again.
            let holds_state = self.current.is_some();
            match self
                .client
                .open_stream(&self.execution_id, self.last, holds_state)
                .await
            {
                Ok((conn, handle)) => {
                    tracing::debug!(execution_id = %self.execution_id, from_revision = ?self.last, "resubscribed");
                    self.active = Some(Active {
                        conn,
                        handle,
                        opened_at: Instant::now(),
                        ended: false,
                    });
                    if let Some(since) = self.announced.take() {
                        if let Some(notify) = &self.notify {
                            notify(&Notice::Resumed {
                                from_revision: self.last,
                                after: since.elapsed(),
                            });
                        }
                    }
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    self.attempt = self.attempt.saturating_add(1);
                    self.last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn on_event(&mut self, ev: wire::Event) -> Step {
        // Any event proves the daemon is back: reset the backoff.
        self.attempt = 0;
        self.broken_since = None;
        self.last_error = None;
        let Ok(kind) = EventType::try_from(ev.r#type) else {
            // Unknown event types are ignored (docs/PROTOCOL.md, evolution).
            return Step::Skip;
        };
        match kind {
            // Many-execution events never come on a one-execution stream.
            EventType::Unspecified
            | EventType::EventCreated
            | EventType::EventDeleted
            | EventType::EventBookmark => Step::Skip,
            EventType::EventDelta => self.on_delta(ev),
            EventType::EventSnapshot | EventType::EventUpdate | EventType::EventResync => {
                let deltas = self.client.config().deltas;
                if kind == EventType::EventSnapshot
                    && deltas
                    && self.current.is_none()
                    && self.last.is_some_and(|last| ev.revision <= last)
                {
                    // A delta stream opened at `from_revision` starts with
                    // the state at it: what the next delta applies to, not
                    // a change to hand out.
                    return match ev.execution {
                        Some(execution) => {
                            self.current = Some(Arc::new(execution));
                            Step::Skip
                        }
                        None => {
                            Step::Fail(Error::Protocol("a snapshot carries no execution".into()))
                        }
                    };
                }
                if self.last.is_some_and(|last| ev.revision <= last) {
                    tracing::debug!(revision = ev.revision, last = ?self.last, "dropped an already delivered revision");
                    return Step::Skip;
                }
                let Some(execution) = ev.execution else {
                    return Step::Fail(Error::Protocol(format!(
                        "event at revision {} carries no execution",
                        ev.revision
                    )));
                };
                self.last = Some(ev.revision);
                let revision = ev.revision;
                if deltas {
                    self.current = Some(Arc::new(execution.clone()));
                }
                Step::Yield(match kind {
                    EventType::EventSnapshot => Event::Snapshot {
                        revision,
                        execution,
                    },
                    EventType::EventResync => Event::Resync {
                        revision,
                        execution,
                    },
                    _ => Event::Update {
                        revision,
                        execution,
                    },
                })
            }
            EventType::EventEnd => {
                if let Some(a) = self.active.as_mut() {
                    a.ended = true;
                }
                let reason = EndReason::try_from(ev.reason).unwrap_or(EndReason::Unspecified);
                let resumable = matches!(reason, EndReason::Shutdown | EndReason::SlowConsumer);
                if resumable && self.client.config().resume {
                    return Step::Resume;
                }
                self.finished = true;
                self.active = None;
                Step::Yield(Event::End {
                    revision: ev.revision,
                    reason,
                    message: ev.message,
                })
            }
        }
    }

    /// A DELTA: applied to the state this stream holds, which must be the
    /// one at its `prev_revision` (else a change was missed: a protocol
    /// error, never a silent gap).
    fn on_delta(&mut self, ev: wire::Event) -> Step {
        if self.last.is_some_and(|last| ev.revision <= last) {
            return Step::Skip;
        }
        let (Some(current), Some(last)) = (self.current.as_mut(), self.last) else {
            return Step::Fail(Error::Protocol(format!(
                "a delta at revision {} before any whole state",
                ev.revision
            )));
        };
        if ev.prev_revision != last {
            return Step::Fail(Error::Protocol(format!(
                "the delta at revision {} follows revision {}, but the last one received is {last}",
                ev.revision, ev.prev_revision
            )));
        }
        let status = Arc::make_mut(current)
            .status
            .get_or_insert_with(Default::default);
        if let Err(e) = crate::proto::delta::apply_all(status, &ev.ops) {
            return Step::Fail(Error::Protocol(format!(
                "the delta at revision {} does not apply: {e}",
                ev.revision
            )));
        }
        self.last = Some(ev.revision);
        Step::Yield(Event::Delta {
            revision: ev.revision,
            ops: ev.ops,
            execution: current.clone(),
        })
    }
}
