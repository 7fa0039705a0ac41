//! The reconnecting half of every stream, shared by the one-execution
//! [`crate::Subscription`] and the many-execution [`crate::Watch`].
//!
//! A [`Link`] owns the live stream on one connection and knows how to get
//! it back: when the connection drops, the daemon ends the stream to be
//! resumed (the owner says so with [`Link::broke`]), or this client's own
//! per-stream buffer overflows, it reconnects with jittered exponential
//! backoff ([`crate::Reconnect`]) and sends the `subscribe` its owner builds
//! from what it has delivered so far, reporting each break and each
//! resumption as a [`Notice`]. What the events mean (revisions, states,
//! caches) stays with the owner, which polls the link through
//! [`LinkPoll::poll_recv`] and keeps its own state outside the future, so
//! the owner can be read between polls.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::conn::{Conn, StreamHandle};
use crate::proto::daemon::{self as wire, Code, SubscribeRequest};
use crate::{Client, Error, Result};

/// What a resuming stream reports about its connection, for programs that
/// tell their user (see [`crate::Subscription::on_notice`] and
/// [`crate::Watch::on_notice`]). Each break is reported once, and so is
/// each successful resumption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The stream broke (the connection dropped, or the daemon is shutting
    /// down); it is reconnecting with backoff.
    Reconnecting {
        /// Why it broke, for a person.
        reason: String,
        /// The last revision delivered, where the stream will resume.
        last_revision: Option<u64>,
    },
    /// The stream is back: the daemon accepted the connection and the
    /// stream resumes after `from_revision`, so nothing is missed.
    Resumed {
        /// The revision it resumes after (`None`: it starts over, with the
        /// current state).
        from_revision: Option<u64>,
        /// How long it was disconnected.
        after: Duration,
    },
}

/// A callback for [`Notice`]s.
pub(crate) type Notify = Arc<dyn Fn(&Notice) + Send + Sync>;

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

/// What [`Link::recv`] hands its owner.
// Short-lived, returned once per event.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Received {
    /// The daemon's next event on the stream.
    Event(wire::Event),
    /// The stream was opened again after a break, with the request the
    /// owner built; its events follow.
    Reopened,
    /// The stream cannot go on (a permanent error, or reconnecting gave
    /// up); nothing follows.
    Failed(Error),
}

/// One stream and its reconnection state; see the module docs.
pub(crate) struct Link {
    client: Client,
    active: Option<Active>,
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
}

impl Link {
    /// A link on the stream just opened as `handle` on `conn`.
    pub(crate) fn new(client: Client, conn: Arc<Conn>, handle: StreamHandle) -> Self {
        Link {
            client,
            active: Some(Active {
                conn,
                handle,
                opened_at: Instant::now(),
                ended: false,
            }),
            attempt: 0,
            broken_since: None,
            last_error: None,
            notify: None,
            announced: None,
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn set_notify(&mut self, notify: Notify) {
        self.notify = Some(notify);
    }

    /// The daemon ended the stream for good (an END the owner will not
    /// resume from): nothing to cancel, nothing to reopen.
    pub(crate) fn ended(&mut self) {
        if let Some(a) = self.active.as_mut() {
            a.ended = true;
        }
        self.active = None;
    }

    /// Waits for the stream's next event, reopening it with `request`
    /// (backoff between attempts) whenever it is down.
    pub(crate) async fn recv(&mut self, request: &SubscribeRequest) -> Received {
        loop {
            let Some(active) = self.active.as_mut() else {
                return match self.reopen(request).await {
                    Ok(()) => Received::Reopened,
                    Err(e) => Received::Failed(e),
                };
            };
            // Waits for the daemon's next event on this stream; None when
            // the connection died or the reader dropped an overflowing
            // stream.
            match active.handle.rx.recv().await {
                Some(Ok(ev)) => {
                    // Any event proves the daemon is back: reset the backoff.
                    self.attempt = 0;
                    self.broken_since = None;
                    self.last_error = None;
                    return Received::Event(ev);
                }
                Some(Err(e)) => {
                    active.ended = true;
                    if self.client.config().resume && e.is_transient() {
                        self.broke(e, request.from_revision);
                    } else {
                        self.active = None;
                        return Received::Failed(e);
                    }
                }
                None => {
                    let overflowed = active.handle.overflowed.load(Ordering::Acquire);
                    active.ended = true;
                    if overflowed {
                        // Our own buffer overflowed: the daemon is fine, so
                        // resubscribe at once.
                        tracing::debug!("stream buffer overflowed; resubscribing");
                        self.active = None;
                    } else if self.client.config().resume {
                        self.broke(Error::Closed, request.from_revision);
                    } else {
                        self.active = None;
                        return Received::Failed(Error::Closed);
                    }
                }
            }
        }
    }

    /// The stream broke (connection lost, daemon shutting down): drop it and
    /// schedule a reconnection with backoff. `last` is where it will resume,
    /// for the notice.
    pub(crate) fn broke(&mut self, why: Error, last: Option<u64>) {
        let long_lived = self
            .active
            .as_ref()
            .is_some_and(|a| a.opened_at.elapsed() >= self.client.config().reconnect.max_backoff);
        if long_lived {
            self.attempt = 0;
            self.broken_since = None;
        }
        tracing::debug!(error = %why, "stream broke; will resume");
        self.active = None;
        self.attempt = self.attempt.saturating_add(1);
        self.broken_since.get_or_insert_with(Instant::now);
        if self.announced.is_none() {
            self.announced = Some(Instant::now());
            if let Some(notify) = &self.notify {
                notify(&Notice::Reconnecting {
                    reason: why.to_string(),
                    last_revision: last,
                });
            }
        }
        self.last_error = Some(why);
    }

    /// Resubscribes with `request`, waiting with backoff between attempts;
    /// fails on a permanent error or after `give_up_after`.
    async fn reopen(&mut self, request: &SubscribeRequest) -> Result<()> {
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
            match self.client.open_subscribe(request.clone()).await {
                Ok((conn, handle)) => {
                    tracing::debug!(from_revision = ?request.from_revision, "resubscribed");
                    self.active = Some(Active {
                        conn,
                        handle,
                        opened_at: Instant::now(),
                        ended: false,
                    });
                    if let Some(since) = self.announced.take() {
                        if let Some(notify) = &self.notify {
                            notify(&Notice::Resumed {
                                from_revision: request.from_revision,
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

    /// Ends the stream: asks the daemon to cancel it and waits for the
    /// acknowledgement. A stream that had already ended is fine.
    pub(crate) async fn cancel(mut self) -> Result<()> {
        let Some(active) = self.active.as_mut() else {
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

type RecvFuture = Pin<Box<dyn Future<Output = (Box<Link>, Received)> + Send>>;

/// A [`Link`] polled from a `Stream::poll_next`: while a receive is in
/// progress the link lives inside its future; between receives it is here,
/// for the owner to act on.
pub(crate) struct LinkPoll {
    link: Option<Box<Link>>,
    pending: Option<RecvFuture>,
}

impl LinkPoll {
    pub(crate) fn new(link: Link) -> Self {
        LinkPoll {
            link: Some(Box::new(link)),
            pending: None,
        }
    }

    /// No link yet (set one before polling).
    pub(crate) fn empty() -> Self {
        LinkPoll {
            link: None,
            pending: None,
        }
    }

    /// The link, unless a receive is in progress (or it was taken).
    pub(crate) fn link(&mut self) -> Option<&mut Link> {
        self.link.as_deref_mut()
    }

    /// Takes the link out (for `cancel`), dropping a receive in progress.
    pub(crate) fn take(&mut self) -> Option<Box<Link>> {
        self.pending = None;
        self.link.take()
    }

    /// Polls for the next event; `request` builds the `subscribe` to reopen
    /// the stream with, should it be down (called once per receive).
    /// `None` once the link was taken.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        request: impl FnOnce() -> SubscribeRequest,
    ) -> Poll<Option<Received>> {
        if self.pending.is_none() {
            let Some(mut link) = self.link.take() else {
                return Poll::Ready(None);
            };
            let request = request();
            self.pending = Some(Box::pin(async move {
                let received = link.recv(&request).await;
                (link, received)
            }));
        }
        let Some(fut) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((link, received)) => {
                self.pending = None;
                self.link = Some(link);
                Poll::Ready(Some(received))
            }
        }
    }
}
