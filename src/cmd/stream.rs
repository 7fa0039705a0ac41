//! What every stream task shares, whether it follows one execution
//! (`subscribe`) or many (`watch`): where its frames go, how it learns that
//! it must stop and why, and how it reads the store. Kept apart so that the
//! two stream kinds differ only in what they send.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::Connection;
use stigmer_proto::daemon::{response, EndReason, Event, EventType};
use tokio_util::sync::CancellationToken;

use super::{Context, Session};
use crate::model::Change;
use crate::protocol::{encode_response, ApiError};
use crate::store::reader::{self, HistoryRow};
use crate::wire::{Frame, Producer};

/// History rows read per catch-up query.
const HISTORY_PAGE_ROWS: usize = 64;
/// Stop a catch-up page once this many bytes of history are in memory.
const HISTORY_PAGE_BYTES: usize = 1024 * 1024;

/// Why a stream stopped.
pub(super) enum Stop {
    /// Send END with this reason.
    End(EndReason, String),
    /// Send this error reply.
    Failed(ApiError),
    /// The peer is gone: send nothing.
    Gone,
}

impl From<ApiError> for Stop {
    fn from(status: ApiError) -> Self {
        Stop::Failed(status)
    }
}

/// A stream's way out: its connection, its request id and its lifecycle.
pub(super) struct Outlet {
    /// The daemon's handles (reads, the broker, counters).
    pub(super) ctx: Arc<Context>,
    /// The connection's stream table and lifecycle.
    pub(super) session: Arc<Session>,
    /// Where this stream's frames go.
    pub(super) out: Producer,
    /// The subscribe request's id, on every event.
    pub(super) id: u64,
    /// Cancelled by `cancel`, by the connection closing, or by shutdown.
    pub(super) token: CancellationToken,
}

impl Outlet {
    /// Registers stream `id` in the connection's table, within
    /// `--max-subscriptions-per-connection`, and counts it open.
    pub(super) fn open(
        ctx: &Arc<Context>,
        session: &Arc<Session>,
        out: &Producer,
        id: u64,
    ) -> Result<Self, ApiError> {
        let token = {
            // `cmd::dispatch` already refused an id of an open stream, and
            // only this connection's reader (this call) adds entries.
            let mut subs = session.streams();
            let limit = ctx.max_subscriptions_per_connection;
            if subs.len() >= limit {
                return Err(ApiError::resource_exhausted(format!(
                    "this connection already has {limit} open subscriptions (the limit)"
                )));
            }
            let token = session.closing.child_token();
            subs.insert(id, token.clone());
            token
        };
        ctx.stream_stats
            .subscriptions_open
            .fetch_add(1, Ordering::Relaxed);
        Ok(Outlet {
            ctx: ctx.clone(),
            session: session.clone(),
            out: out.clone(),
            id,
            token,
        })
    }

    /// Ends the stream: frees its id, then sends its last frame (an END
    /// built from `end`, or the error), unless the peer is gone.
    ///
    /// The frame is encoded when this is called and only the encoded bytes
    /// are awaited on: as an `async fn` holding `end` (an `Event`, ~1.3 KB
    /// with its inline execution) and the response built from it, this
    /// future made every stream task ~2 KB larger, idle or not (idle 10,000
    /// subscriptions: 102.5 against 87.0 MiB, docs/PERFORMANCE.md).
    pub(super) fn finish(&self, stop: Stop, end: Event) -> impl Future<Output = ()> + '_ {
        let frame = self.last_frame(stop, end);
        async move {
            if let Some(frame) = frame {
                // Waits for room in the connection's queue; gives up if the peer left.
                let _ = self.out.send(frame).await;
            }
        }
    }

    /// `finish`'s synchronous part: frees the id and counts the stream
    /// closed, then encodes the last frame (`None` when the peer is gone).
    fn last_frame(&self, stop: Stop, end: Event) -> Option<Frame> {
        // Free the id before the last frame, so a client may reuse it as
        // soon as it sees END.
        self.session.streams().remove(&self.id);
        self.ctx
            .stream_stats
            .subscriptions_open
            .fetch_sub(1, Ordering::Relaxed);
        let bytes = match stop {
            Stop::Gone => return None,
            Stop::Failed(status) => {
                encode_response(self.id, response::Result::Error(status.to_proto()))
            }
            Stop::End(reason, message) => {
                let event = Event {
                    r#type: EventType::EventEnd as i32,
                    reason: reason as i32,
                    message,
                    ..end
                };
                encode_response(self.id, response::Result::Event(event))
            }
        };
        Some(Frame::new(bytes))
    }

    /// Frees the id of a stream that never started: its request is
    /// answered with an error instead (sent by the caller, after this).
    pub(super) fn release(&self) {
        // The peer sees only the error reply: no last frame of its own.
        let _ = self.last_frame(Stop::Gone, Event::default());
    }

    /// Why the token fired; `last_sent` is where to resume.
    pub(super) fn interrupted(&self, last_sent: u64) -> Stop {
        if self.session.gone.is_cancelled() {
            Stop::Gone
        } else if self.ctx.shutdown.is_cancelled() {
            Stop::End(
                EndReason::Shutdown,
                format!("the daemon is shutting down; resume from revision {last_sent}"),
            )
        } else {
            Stop::End(EndReason::Cancelled, "cancelled by the client".into())
        }
    }

    /// Queues one frame, unless the stream is interrupted meanwhile.
    pub(super) async fn send(&self, frame: Frame, last_sent: u64) -> Result<(), Stop> {
        let sent = tokio::select! {
            // Waits while the peer reads slowly; only this stream waits.
            sent = self.out.send(frame) => Some(sent),
            _ = self.token.cancelled() => None,
        };
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(Stop::Gone),
            None => Err(self.interrupted(last_sent)),
        }
    }

    /// Sends one event built here (not a shared change's bytes). Encoded
    /// when called, so the future holds the frame, not the `Event` (see
    /// `finish`): the many-execution stream awaits this in its idle loop.
    pub(super) fn send_event(
        &self,
        event: Event,
        last_sent: u64,
    ) -> impl Future<Output = Result<(), Stop>> + '_ {
        let frame = Frame::new(encode_response(self.id, response::Result::Event(event)));
        self.send(frame, last_sent)
    }

    /// Sends a committed change's shared event bytes (the same the broker
    /// writes on a direct delivery), observing its broadcast latency as the
    /// event is handed to the connection (which may write it at once,
    /// before the stream's task runs again).
    pub(super) async fn send_change(
        &self,
        change: &Change,
        event: &bytes::Bytes,
        last_sent: u64,
    ) -> Result<(), Stop> {
        if let Some(latency) = change.since_published() {
            self.ctx.broker.stats.broadcast_latency.observe(latency);
        }
        self.send(Frame::event(self.id, event.clone()), last_sent)
            .await
    }

    /// The history rows at the next revisions of `walk` (from a chain or a
    /// selection's walk), a page bounded in rows and bytes, and moves
    /// `walk` past them; `None` when the walk is done, or when a row was
    /// pruned since the walk was read (the caller walks again, and then
    /// sees the floor).
    pub(super) async fn next_page(
        &self,
        walk: &mut &[u64],
    ) -> Result<Option<Vec<HistoryRow>>, Stop> {
        if walk.is_empty() {
            return Ok(None);
        }
        let page = walk[..walk.len().min(HISTORY_PAGE_ROWS)].to_vec();
        let rows = self
            .read(move |c| reader::rows(c, &page, HISTORY_PAGE_BYTES))
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        *walk = &walk[rows.len()..];
        Ok(Some(rows))
    }

    /// Runs `f` on the read pool, in one read transaction.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, Stop>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        // Waits for a read connection and the query.
        Ok(self.ctx.reader.run(f).await?)
    }
}
