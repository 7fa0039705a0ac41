//! One client connection.
//!
//! Two halves joined by a bounded queue of encoded frames:
//!
//! - the **reader loop** (this task) decodes each frame and dispatches it
//!   (`cmd::dispatch`). It never waits for the socket to be writable: replies
//!   are queued without blocking, and anything that must wait (a commit, a
//!   read, a stream) runs in its own task. Requests are dispatched in arrival
//!   order, which is what makes one connection's writes commit in order.
//! - the **writer task** drains the queue to the socket, batching every frame
//!   already queued into one flush.
//!
//! At most `--connection-queue` requests of one connection may be waiting
//! for their reply to be queued; beyond that the reader stops reading that
//! connection (back-pressure on a peer that does not read its replies). Only
//! that peer is slowed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use stigmer_proto::daemon::response;
use stigmer_proto::frame;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Shared;
use crate::protocol::{decode_request, encode_response, DecodeError, Status};

/// How long a refused connection gets to receive its error before it is
/// closed: it is one small frame, so only a peer that never reads needs it.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection's shared handles; cheap to clone into the tasks it spawns.
#[derive(Clone)]
pub struct Conn {
    /// Numbers connections in logs.
    pub id: u64,
    /// What all connections share.
    pub shared: Arc<Shared>,
    /// The outgoing frame queue (to the writer task).
    out: mpsc::Sender<Bytes>,
    /// Bounds requests waiting for their reply to be queued.
    inflight: Arc<Semaphore>,
    /// Open streams by request id: their cancel tokens.
    pub subscriptions: Arc<Mutex<HashMap<u64, CancellationToken>>>,
    /// Cancelled when this connection ends for any reason (its streams stop).
    pub closing: CancellationToken,
    /// Cancelled when the peer is gone (EOF or a failed write): streams then
    /// stop without an END, since nobody would read it.
    pub gone: CancellationToken,
}

/// The peer is gone or the connection is closing; stop producing frames.
#[derive(Debug)]
pub struct Gone;

impl Conn {
    /// Locks the stream table (never held across an `.await`).
    pub fn subscriptions(&self) -> MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply from the reader loop without waiting. When the queue
    /// is full, a small task waits for room instead (holding `permit`, so the
    /// number of such tasks per connection is bounded).
    pub fn reply(&self, permit: OwnedSemaphorePermit, body: Bytes) {
        match self.out.try_send(body) {
            Ok(()) => drop(permit),
            Err(TrySendError::Full(body)) => {
                let out = self.out.clone();
                tokio::spawn(async move {
                    // Waits for queue room; fails only if the connection ended.
                    let _ = out.send(body).await;
                    drop(permit);
                });
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Queues a reply or an error for request `id` (see [`Conn::reply`]).
    pub fn reply_result(
        &self,
        permit: OwnedSemaphorePermit,
        id: u64,
        result: Result<response::Result, Status>,
    ) {
        let result = result.unwrap_or_else(|status| response::Result::Error(status.to_proto()));
        self.reply(permit, encode_response(id, result));
    }

    /// Queues a frame from a task other than the reader, waiting for room.
    /// Fails once the peer is gone.
    pub async fn send(&self, body: Bytes) -> Result<(), Gone> {
        tokio::select! {
            // Waits while the peer is slow to read; only this task waits.
            sent = self.out.send(body) => sent.map_err(|_| Gone),
            _ = self.gone.cancelled() => Err(Gone),
        }
    }
}

/// Decrements the open-connection count however the connection ends.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.stats.connections_open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one accepted connection until the peer leaves or the daemon stops.
pub async fn serve(id: u64, stream: UnixStream, shared: Arc<Shared>) {
    let guard = OpenGuard(shared.clone());
    let span = tracing::info_span!("conn", id);
    async move {
        tracing::debug!("connected");
        let (rd, wr) = stream.into_split();
        let (out, out_rx) = mpsc::channel(shared.limits.connection_queue.max(1));
        let conn = Conn {
            id,
            inflight: Arc::new(Semaphore::new(shared.limits.connection_queue.max(1))),
            closing: shared.shutdown.child_token(),
            gone: CancellationToken::new(),
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
            out,
            shared,
        };
        let writer = tokio::spawn(
            write_loop(wr, out_rx, conn.shared.limits.max_frame_length, conn.gone.clone())
                .in_current_span(),
        );
        read_loop(&conn, rd).await;
        if !conn.shared.shutdown.is_cancelled() {
            conn.gone.cancel();
        }
        // Ends every stream: with END_REASON_SHUTDOWN when the daemon is
        // stopping, silently when the peer left.
        conn.closing.cancel();
        drop(conn);
        // Waits until every frame still queued (the streams' END events,
        // replies to writes that were in flight) is written, or the peer is gone.
        let _ = writer.await;
        tracing::debug!("disconnected");
        drop(guard);
    }
    .instrument(span)
    .await
}

async fn read_loop(conn: &Conn, rd: tokio::net::unix::OwnedReadHalf) {
    let mut frames = FramedRead::new(rd, frame::codec(conn.shared.limits.max_frame_length));
    loop {
        let next = tokio::select! {
            biased;
            _ = conn.shared.shutdown.cancelled() => return,
            // Waits for the next whole frame; fails on an oversized length
            // prefix, a frame cut off by EOF, or a socket error.
            next = frames.next() => next,
        };
        let body = match next {
            None => return,
            Some(Ok(body)) => body,
            Some(Err(err)) if frame::is_frame_too_long(&err) => {
                let status = Status::resource_exhausted(format!(
                    "frame longer than the {}-byte limit; closing the connection",
                    conn.shared.limits.max_frame_length
                ));
                tracing::warn!(%status, "connection error");
                connection_error(conn, status).await;
                return;
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "read ended");
                return;
            }
        };
        let permit = tokio::select! {
            _ = conn.shared.shutdown.cancelled() => return,
            // Waits only while this peer has `--connection-queue` replies it
            // has not made room for: back-pressure on this peer alone.
            permit = conn.inflight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        match decode_request(&body) {
            Ok(request) => {
                if let Err(status) = crate::cmd::dispatch(conn, permit, request).await {
                    tracing::warn!(%status, "connection error");
                    connection_error(conn, status).await;
                    return;
                }
            }
            Err(DecodeError::Request { id, status }) => {
                conn.reply_result(permit, id, Err(status));
            }
            Err(DecodeError::Connection(status)) => {
                tracing::warn!(%status, "connection error");
                connection_error(conn, status).await;
                return;
            }
        }
    }
}

/// Sends `Response { id: 0, error }`; the caller then closes the connection.
async fn connection_error(conn: &Conn, status: Status) {
    let _ = conn.send(encode_response(0, response::Result::Error(status.to_proto()))).await;
}

async fn write_loop(
    wr: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Bytes>,
    max_frame_length: usize,
    gone: CancellationToken,
) {
    let mut frames = FramedWrite::new(wr, frame::codec(max_frame_length));
    // Waits for the next frame; None once every sender is gone (the reader
    // and every stream of this connection have finished).
    while let Some(body) = queue.recv().await {
        let mut result = frames.feed(body).await;
        while result.is_ok() {
            match queue.try_recv() {
                Ok(body) => result = frames.feed(body).await,
                Err(_) => break,
            }
        }
        // Writes everything fed so far in as few syscalls as the socket
        // allows; waits while the peer's receive buffer is full.
        if let Err(err) = match result {
            Ok(()) => SinkExt::<Bytes>::flush(&mut frames).await,
            Err(err) => Err(err),
        } {
            tracing::debug!(%err, "write failed; the peer is gone");
            gone.cancel();
            return;
        }
    }
}

/// Tells a connection beyond `--max-connections` why it is refused, then
/// closes it.
pub async fn reject(stream: UnixStream, limit: usize) {
    let status = Status::resource_exhausted(format!(
        "too many connections (limit {limit}); try again later"
    ));
    let body = encode_response(0, response::Result::Error(status.to_proto()));
    let mut frames = FramedWrite::new(stream, frame::codec(frame::DEFAULT_MAX_FRAME_LENGTH));
    // A peer that never reads cannot hold this task for long.
    let _ = tokio::time::timeout(REJECT_WRITE_TIMEOUT, frames.send(body)).await;
}
