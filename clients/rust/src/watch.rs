//! Many-execution streams: [`Client::watch`] follows every execution of a
//! session, or of the machine, as one resuming stream, and keeps a local
//! cache of them, like client-go's informer (docs/PROTOCOL.md,
//! "Many-execution streams (watch)").
//!
//! The daemon lists the matching executions (`SNAPSHOT`s, then an
//! end-of-list `BOOKMARK`), then sends every change: `CREATED`, `UPDATE` or
//! `DELTA`, `DELETED`, and quiet-time `BOOKMARK`s. This module applies each
//! to its cache (`DELTA` operations with `stigmer_proto::delta`, on its copy
//! of that execution), so every event hands the consumer the whole state at
//! its revision. It resumes on the [`Link`] machinery shared with
//! [`crate::Subscription`]: after a break it resubscribes from the revision
//! of the last event or bookmark it delivered (a delta stream resuming so
//! builds on the states the cache holds). A stream lost before its
//! end-of-list bookmark starts over: the consumer gets a
//! [`WatchEvent::Resync`] and the list again.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::conn::{Conn, StreamHandle};
use crate::proto::agentexecution::AgentExecution;
use crate::proto::daemon::{self as wire, Code, EndReason, EventType, Op, SubscribeRequest};
use crate::resume::{Link, LinkPoll, Notice, Received};
use crate::{Client, Error, Result};

/// Which executions a [`Watch`] follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every execution whose `spec.session_id` is this one, present and
    /// future.
    Session(String),
    /// Every execution of the machine.
    All,
}

impl Selector {
    /// Every execution of session `session_id`.
    pub fn session(session_id: impl Into<String>) -> Self {
        Selector::Session(session_id.into())
    }
}

/// How a [`Watch`] starts; `WatchOptions::default()` lists every matching
/// execution, then follows them with deltas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// Start after this revision: every matching change after it, and no
    /// initial list (the cache then holds only the executions that change).
    /// `None` (the default) starts with the list.
    pub from_revision: Option<u64>,
    /// Ask for changes as their operations, applied here to the cached
    /// state (the consumer still gets the whole state, and the ops, in
    /// [`WatchEvent::Updated`]). Default on. Deltas build on states the
    /// cache holds, so a watch started `from_revision` (which holds none)
    /// gets whole states until a [`WatchEvent::Resync`] brings a full list.
    pub deltas: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            from_revision: None,
            deltas: true,
        }
    }
}

/// One event of a [`Watch`]. Events for an execution carry its whole
/// state at the event's revision (shared with the cache: it is copied only
/// when a later delta arrives while the consumer still holds this one).
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// One execution of the initial list (its own revision).
    Snapshot {
        /// The execution's revision.
        revision: u64,
        /// The whole execution.
        execution: Arc<AgentExecution>,
    },
    /// An execution was created.
    Created {
        /// The create's revision.
        revision: u64,
        /// The whole execution.
        execution: Arc<AgentExecution>,
    },
    /// An execution changed: its whole state after the change, and the
    /// change's operations when it came as a delta.
    Updated {
        /// The change's revision.
        revision: u64,
        /// The whole execution after the change.
        execution: Arc<AgentExecution>,
        /// The operations, in order, when the change came as a DELTA.
        ops: Option<Vec<Op>>,
    },
    /// An execution was deleted; it has left the cache.
    Deleted {
        /// The delete's revision.
        revision: u64,
        /// The deleted execution's id.
        execution_id: String,
        /// Its last state, when the cache held it.
        last_state: Option<Arc<AgentExecution>>,
    },
    /// Progress: every matching change up to `revision` was delivered.
    Bookmark {
        /// A global revision.
        revision: u64,
        /// This bookmark ends the initial list: the cache now holds every
        /// matching execution.
        initial_events_end: bool,
    },
    /// The watch could not go on change by change (the daemon's history no
    /// longer reached back, or the stream broke during its list): the cache
    /// was cleared, and a new list of [`WatchEvent::Snapshot`]s and an
    /// end-of-list bookmark follow.
    Resync {
        /// The revision the watch had reached (0 when it had none).
        revision: u64,
    },
}

impl WatchEvent {
    /// The event's revision.
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Snapshot { revision, .. }
            | WatchEvent::Created { revision, .. }
            | WatchEvent::Updated { revision, .. }
            | WatchEvent::Deleted { revision, .. }
            | WatchEvent::Bookmark { revision, .. }
            | WatchEvent::Resync { revision } => *revision,
        }
    }

    /// The execution's state, on snapshot, created and updated.
    pub fn execution(&self) -> Option<&Arc<AgentExecution>> {
        match self {
            WatchEvent::Snapshot { execution, .. }
            | WatchEvent::Created { execution, .. }
            | WatchEvent::Updated { execution, .. } => Some(execution),
            _ => None,
        }
    }

    /// The id of the execution the event is about (none on bookmark and
    /// resync).
    pub fn execution_id(&self) -> Option<&str> {
        match self {
            WatchEvent::Deleted { execution_id, .. } => Some(execution_id),
            other => other
                .execution()
                .and_then(|e| e.metadata.as_ref())
                .map(|m| m.id.as_str()),
        }
    }

    /// The operations of an update that came as a delta; empty otherwise.
    pub fn ops(&self) -> &[Op] {
        match self {
            WatchEvent::Updated { ops: Some(ops), .. } => ops,
            _ => &[],
        }
    }

    /// `"snapshot"`, `"created"`, `"update"`, `"delta"` (an update that came
    /// as operations), `"deleted"`, `"bookmark"` or `"resync"`.
    pub fn kind(&self) -> &'static str {
        match self {
            WatchEvent::Snapshot { .. } => "snapshot",
            WatchEvent::Created { .. } => "created",
            WatchEvent::Updated { ops: None, .. } => "update",
            WatchEvent::Updated { ops: Some(_), .. } => "delta",
            WatchEvent::Deleted { .. } => "deleted",
            WatchEvent::Bookmark { .. } => "bookmark",
            WatchEvent::Resync { .. } => "resync",
        }
    }
}

/// One cached execution: its state and the revision of that state.
#[derive(Clone, Debug, PartialEq)]
pub struct Cached {
    /// The revision of `execution`.
    pub revision: u64,
    /// The whole execution at `revision`.
    pub execution: Arc<AgentExecution>,
}

/// A [`Watch`]'s local copy of the executions it follows, by id, each at
/// the revision of the last event delivered for it. Read it between polls
/// with [`Watch::cache`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cache {
    entries: HashMap<String, Cached>,
    /// The initial list (or the one after a resync) was received whole:
    /// the cache holds every matching execution.
    complete: bool,
}

impl Cache {
    /// The execution `id`, when held.
    pub fn get(&self, id: &str) -> Option<&Arc<AgentExecution>> {
        self.entries.get(id).map(|c| &c.execution)
    }

    /// The execution `id` with its revision, when held.
    pub fn entry(&self, id: &str) -> Option<&Cached> {
        self.entries.get(id)
    }

    /// Every held execution, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Cached)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many executions are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True once an initial list was received whole (and no resync has
    /// cleared it since): the cache holds every matching execution. A
    /// watch started `from_revision` holds only what changed after it.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.complete = false;
    }
}

/// What one event from the daemon means for the consumer.
// Short-lived, returned once per event.
#[allow(clippy::large_enum_variant)]
enum Step {
    Yield(WatchEvent),
    Skip,
    Resume,
    End,
    Fail(Error),
}

/// A resuming stream over many executions, with its cache; see the module
/// docs. Yields `Ok(event)` until an `Err` (then `None`); it never ends on
/// its own while the daemon is reachable (or can be reached again).
///
/// Dropping it cancels the stream on the daemon (best effort).
pub struct Watch {
    link: LinkPoll,
    selector: Selector,
    deltas: bool,
    /// The revision of the last change or bookmark delivered after the
    /// list (initially `from_revision`): where a resubscription resumes,
    /// and the floor below which events are dropped.
    last: Option<u64>,
    /// No list is under way: changes come, and a break resumes from
    /// `last`. False from the start of a list to its end-of-list bookmark,
    /// during which a break starts over.
    following: bool,
    cache: Cache,
    finished: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("selector", &self.selector)
            .field("last_revision", &self.last)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Watches every execution of a session, or every execution
    /// (`selector`), as one resuming stream with a local cache; see
    /// [`Watch`].
    ///
    /// Errors at the start (INVALID_ARGUMENT, OUT_OF_RANGE) arrive as the
    /// stream's first item; an unreachable daemon fails here.
    pub async fn watch(&self, selector: Selector, options: WatchOptions) -> Result<Watch> {
        let mut watch = Watch {
            link: LinkPoll::empty(),
            selector,
            deltas: options.deltas,
            last: options.from_revision,
            following: options.from_revision.is_some(),
            cache: Cache::default(),
            finished: false,
        };
        // Sends the subscribe; fails when the daemon is unreachable.
        let (conn, handle): (Arc<Conn>, StreamHandle) =
            self.open_subscribe(watch.request()).await?;
        watch.link = LinkPoll::new(Link::new(self.clone(), conn, handle));
        Ok(watch)
    }
}

impl Watch {
    /// Calls `f` with a [`Notice`] whenever the stream breaks and whenever
    /// it resumes (from the task polling the watch).
    pub fn on_notice(mut self, f: impl Fn(&Notice) + Send + Sync + 'static) -> Self {
        if let Some(link) = self.link.link() {
            link.set_notify(Arc::new(f));
        }
        self
    }

    /// The executions held, each at the revision of the last event
    /// delivered for it. Always readable, also while a poll is pending.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// What the watch follows.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// The revision of the last change or bookmark delivered (or the
    /// `from_revision` it started from): where it would resume.
    pub fn last_revision(&self) -> Option<u64> {
        self.last
    }

    /// Ends the stream: asks the daemon to cancel it and waits for the
    /// acknowledgement.
    pub async fn cancel(mut self) -> Result<()> {
        match self.link.take() {
            Some(link) => link.cancel().await,
            None => Ok(()),
        }
    }

    /// The `subscribe` that (re)opens this watch: from `last` when it
    /// follows changes, else from the start (a new list). Deltas only when
    /// the cache holds every execution a delta could apply to.
    fn request(&self) -> SubscribeRequest {
        let (session_id, all) = match &self.selector {
            Selector::Session(s) => (s.clone(), false),
            Selector::All => (String::new(), true),
        };
        let from_revision = if self.following { self.last } else { None };
        let deltas = self.deltas && (from_revision.is_none() || self.cache.complete);
        SubscribeRequest {
            session_id,
            all,
            from_revision,
            deltas,
            ..Default::default()
        }
    }

    /// Applies one event of the daemon's to the cache.
    fn on_event(&mut self, ev: wire::Event) -> Step {
        let Ok(kind) = EventType::try_from(ev.r#type) else {
            // Unknown event types are ignored (docs/PROTOCOL.md, evolution).
            return Step::Skip;
        };
        let revision = ev.revision;
        let stale = self.last.is_some_and(|last| revision <= last);
        match kind {
            EventType::Unspecified => Step::Skip,
            EventType::EventBookmark => {
                if ev.initial_events_end {
                    self.following = true;
                    self.cache.complete = true;
                    self.last = Some(self.last.map_or(revision, |l| l.max(revision)));
                    return Step::Yield(WatchEvent::Bookmark {
                        revision,
                        initial_events_end: true,
                    });
                }
                if stale || !self.following {
                    return Step::Skip;
                }
                self.last = Some(revision);
                Step::Yield(WatchEvent::Bookmark {
                    revision,
                    initial_events_end: false,
                })
            }
            EventType::EventSnapshot | EventType::EventCreated | EventType::EventUpdate => {
                // The list's snapshots may be at or below the revision a
                // resync started from; changes never are.
                let listing = kind == EventType::EventSnapshot && !self.following;
                if stale && !listing {
                    tracing::debug!(revision, last = ?self.last, "dropped an already delivered revision");
                    return Step::Skip;
                }
                let Some(execution) = ev.execution else {
                    return Step::Fail(Error::Protocol(format!(
                        "a {} at revision {revision} carries no execution",
                        kind.as_str_name()
                    )));
                };
                let id = match (&execution.metadata, ev.execution_id.is_empty()) {
                    (_, false) => ev.execution_id,
                    (Some(m), true) => m.id.clone(),
                    (None, true) => {
                        return Step::Fail(Error::Protocol(format!(
                            "the event at revision {revision} names no execution"
                        )))
                    }
                };
                if self
                    .cache
                    .entry(&id)
                    .is_some_and(|c| c.revision >= revision)
                {
                    return Step::Skip;
                }
                let execution = Arc::new(execution);
                self.cache.entries.insert(
                    id,
                    Cached {
                        revision,
                        execution: execution.clone(),
                    },
                );
                if self.following {
                    self.last = Some(revision);
                }
                Step::Yield(match kind {
                    EventType::EventSnapshot => WatchEvent::Snapshot {
                        revision,
                        execution,
                    },
                    EventType::EventCreated => WatchEvent::Created {
                        revision,
                        execution,
                    },
                    _ => WatchEvent::Updated {
                        revision,
                        execution,
                        ops: None,
                    },
                })
            }
            EventType::EventDelta => {
                if stale {
                    return Step::Skip;
                }
                self.on_delta(ev)
            }
            EventType::EventDeleted => {
                if stale {
                    return Step::Skip;
                }
                let last_state = self
                    .cache
                    .entries
                    .remove(&ev.execution_id)
                    .map(|c| c.execution);
                if self.following {
                    self.last = Some(revision);
                }
                Step::Yield(WatchEvent::Deleted {
                    revision,
                    execution_id: ev.execution_id,
                    last_state,
                })
            }
            EventType::EventResync => {
                self.cache.clear();
                self.following = false;
                self.last = Some(self.last.map_or(revision, |l| l.max(revision)));
                Step::Yield(WatchEvent::Resync { revision })
            }
            EventType::EventEnd => {
                let reason = EndReason::try_from(ev.reason).unwrap_or(EndReason::Unspecified);
                let resume = self.link.link().is_some_and(|l| l.client().config().resume);
                match reason {
                    EndReason::Shutdown | EndReason::SlowConsumer if resume => Step::Resume,
                    EndReason::Shutdown | EndReason::SlowConsumer => Step::Fail(Error::Status {
                        code: Code::Unavailable,
                        message: format!(
                            "the daemon ended the watch: {}",
                            crate::end_reason_name(reason)
                        ),
                    }),
                    _ => Step::End,
                }
            }
        }
    }

    /// A DELTA: the operations of one change of a cached execution, which
    /// must be at the delta's `prev_revision` (else a change was missed: a
    /// protocol error, never a silent gap).
    fn on_delta(&mut self, ev: wire::Event) -> Step {
        let revision = ev.revision;
        let Some(cached) = self.cache.entries.get_mut(&ev.execution_id) else {
            return Step::Fail(Error::Protocol(format!(
                "a delta at revision {revision} for {:?}, which this watch does not hold",
                ev.execution_id
            )));
        };
        if cached.revision >= revision {
            return Step::Skip;
        }
        if ev.prev_revision != cached.revision {
            return Step::Fail(Error::Protocol(format!(
                "the delta at revision {revision} for {} follows revision {}, but the one held is {}",
                ev.execution_id, ev.prev_revision, cached.revision
            )));
        }
        if let Err(e) = crate::proto::delta::apply_to(Arc::make_mut(&mut cached.execution), &ev.ops)
        {
            return Step::Fail(Error::Protocol(format!(
                "the delta at revision {revision} for {} does not apply: {e}",
                ev.execution_id
            )));
        }
        cached.revision = revision;
        let execution = cached.execution.clone();
        if self.following {
            self.last = Some(revision);
        }
        Step::Yield(WatchEvent::Updated {
            revision,
            execution,
            ops: Some(ev.ops),
        })
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            let request = this.request_fn();
            let received = match this.link.poll_recv(cx, request) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(r)) => r,
            };
            match received {
                Received::Reopened => {
                    if let Some(resync) = this.on_reopened() {
                        return Poll::Ready(Some(Ok(resync)));
                    }
                }
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
                                    message: "the daemon ended the watch (shutting down)".into(),
                                },
                                last,
                            );
                        }
                    }
                    Step::End => {
                        if let Some(link) = this.link.link() {
                            link.ended();
                        }
                        this.finished = true;
                        return Poll::Ready(None);
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

impl Watch {
    /// The stream was opened again. Reopened during a list, it starts
    /// over, so what the consumer got of the old list is dropped,
    /// explicitly: a resync.
    fn on_reopened(&mut self) -> Option<WatchEvent> {
        if self.following || self.cache.is_empty() {
            return None;
        }
        self.cache.clear();
        Some(WatchEvent::Resync {
            revision: self.last.unwrap_or(0),
        })
    }

    /// The request to reopen with, built when a receive starts (the watch's
    /// position cannot change while one is in progress).
    fn request_fn(&self) -> impl FnOnce() -> SubscribeRequest {
        let request = self.request();
        move || request
    }
}

#[cfg(test)]
mod tests;
