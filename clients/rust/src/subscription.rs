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

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::conn::{Conn, StreamHandle};
use crate::proto::agentexecution::AgentExecution;
use crate::proto::daemon::{self as wire, Code, EndReason, EventType, Op};
use crate::resume::{Link, LinkPoll, Notice, Received};
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

/// What one event from the daemon means for the consumer.
// Short-lived, returned once per event.
#[allow(clippy::large_enum_variant)]
enum Step {
    Yield(Event),
    Skip,
    Resume,
    Fail(Error),
}

/// A resuming stream of one execution's changes; see the module docs.
/// Yields `Ok(event)` until an [`Event::End`] or an `Err`, then `None`.
///
/// Dropping it cancels the stream on the daemon (best effort).
pub struct Subscription {
    link: LinkPoll,
    execution_id: String,
    /// Whether the stream asks for deltas (the client's setting).
    deltas: bool,
    /// The last revision handed to the consumer (initially `from_revision`):
    /// where a resubscription resumes, and the floor below which events are
    /// dropped.
    last: Option<u64>,
    finished: bool,
    /// A delta stream: the whole state at `last`, which the next delta
    /// applies to.
    current: Option<Arc<AgentExecution>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("execution_id", &self.execution_id)
            .field("last_revision", &self.last)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        client: Client,
        execution_id: String,
        from_revision: Option<u64>,
        conn: Arc<Conn>,
        handle: StreamHandle,
    ) -> Self {
        let deltas = client.config().deltas;
        Subscription {
            link: LinkPoll::new(Link::new(client, conn, handle)),
            execution_id,
            deltas,
            last: from_revision,
            finished: false,
            current: None,
        }
    }

    /// Calls `f` with a [`Notice`] whenever the stream breaks and whenever it
    /// resumes (from the task polling the subscription), so a program can
    /// tell its user that it is reconnecting rather than silently waiting.
    pub fn on_notice(mut self, f: impl Fn(&Notice) + Send + Sync + 'static) -> Self {
        if let Some(link) = self.link.link() {
            link.set_notify(Arc::new(f));
        }
        self
    }

    /// The execution this subscription watches.
    pub fn execution_id(&self) -> Option<&str> {
        Some(self.execution_id.as_str())
    }

    /// The last revision delivered (or the `from_revision` it started
    /// from); `None` before the first event.
    pub fn last_revision(&self) -> Option<u64> {
        self.last
    }

    /// Ends the stream: asks the daemon to cancel it and waits for the
    /// acknowledgement. A stream that had already ended is fine.
    pub async fn cancel(mut self) -> Result<()> {
        // Dropping an in-progress receive drops its link, which cancels in
        // the background; nothing more to do then.
        match self.link.take() {
            Some(link) => link.cancel().await,
            None => Ok(()),
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            let (id, last, deltas) = (&this.execution_id, this.last, this.deltas);
            let holds_state = this.current.is_some();
            // A delta stream that holds the state at `last` resumes without
            // it being sent again.
            let request = move || Client::subscribe_request(id, last, deltas, holds_state);
            let received = match this.link.poll_recv(cx, request) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(r)) => r,
            };
            match received {
                Received::Reopened => {}
                Received::Failed(e) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Received::Event(ev) => match this.on_event(ev) {
                    Step::Yield(e) => return Poll::Ready(Some(Ok(e))),
                    Step::Skip => {}
                    Step::Resume => {
                        let last = this.last;
                        if let Some(link) = this.link.link() {
                            link.broke(
                                Error::Status {
                                    code: Code::Unavailable,
                                    message: "the daemon ended the stream (shutting down or slow consumer)"
                                        .into(),
                                },
                                last,
                            );
                        }
                    }
                    Step::Fail(e) => {
                        this.finished = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
            }
        }
    }
}

impl Subscription {
    fn on_event(&mut self, ev: wire::Event) -> Step {
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
                let deltas = self.deltas;
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
                let reason = EndReason::try_from(ev.reason).unwrap_or(EndReason::Unspecified);
                let resumable = matches!(reason, EndReason::Shutdown | EndReason::SlowConsumer);
                if resumable && self.link.link().is_some_and(|l| l.client().config().resume) {
                    return Step::Resume;
                }
                if let Some(link) = self.link.link() {
                    link.ended();
                }
                self.finished = true;
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
        if let Err(e) = crate::proto::delta::apply_to(Arc::make_mut(current), &ev.ops) {
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
