//! One client connection.
//!
//! A reader loop and an outbox:
//!
//! - the **reader loop** (this task) decodes each frame and dispatches it
//!   (`cmd::dispatch`). It never waits for the socket to be writable: replies
//!   go into the outbox without blocking, and anything that must wait (a
//!   commit, a read, a stream) runs elsewhere. Requests are dispatched in
//!   arrival order, which is what makes one connection's writes commit in
//!   order.
//! - the **outbox** ([`super::outbox`]) takes frames from any thread (this
//!   task, the writer thread's acknowledgements, the broker's live events,
//!   stream tasks) and writes them on that thread when nothing is queued
//!   ahead; its flusher task writes the rest when the peer reads slowly.
//!
//! At most `--connection-queue` requests of one connection may be waiting
//! for their reply to be written; beyond that the reader stops reading that
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
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::outbox::{Flushed, Frame, Outbox};
use super::socket::ReadHalf;
use super::{peer, Shared};
use crate::protocol::{decode_request, encode_response, DecodeError, Status};

/// How long a refused connection gets to receive its error before it is
/// closed: it is one small frame, so only a peer that never reads needs it.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection's shared handles; cheap to clone into the tasks it spawns.
#[derive(Clone)]
pub struct Conn {
    /// Numbers connections in logs.
    pub id: u64,
    /// The connection shard it runs on (`server::shards`).
    pub shard: usize,
    /// What all connections share.
    pub shared: Arc<Shared>,
    /// The outgoing frames; finished when the last `Conn` clone is dropped.
    out: Arc<Producer>,
    /// Bounds requests waiting for their reply to be written.
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

    /// Queues a reply without waiting (from the reader loop, or from the
    /// writer thread right after a commit), writing it at once when nothing
    /// is queued ahead. The reply keeps `permit` until it is written.
    pub fn reply(&self, permit: OwnedSemaphorePermit, body: Bytes) {
        // Fails only once the peer is gone: nobody would read the reply.
        let _ = self.out.0.push(Frame::new(body).with_permit(permit));
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
        self.send_frame(Frame::new(body)).await
    }

    /// [`Conn::send`] for a frame already built (an event around shared
    /// bytes).
    pub async fn send_frame(&self, frame: Frame) -> Result<(), Gone> {
        // Waits while the peer is slow to read; only this task waits.
        self.out.0.send(frame).await.map_err(|_| Gone)
    }

    /// The outbox, for the broker's direct delivery of live events.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.out.0
    }
}

/// The producers' handle on the outbox: when the last `Conn` clone (the
/// reader, a stream, a write waiting for its commit) is gone, the outbox
/// is finished, so its flusher writes what is left and stops.
struct Producer(Arc<Outbox>);

impl Drop for Producer {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Decrements the open-connection counts however the connection ends.
struct OpenGuard {
    shared: Arc<Shared>,
    uid: Option<u32>,
    /// The shard whose count this connection is in, once it is served.
    shard: Option<usize>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(uid) = self.uid {
            self.shared.stats.leave_uid(uid);
        }
        if let Some(count) = self
            .shard
            .and_then(|shard| self.shared.stats.shard_connections.get(shard))
        {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        if self
            .shared
            .stats
            .connections_open
            .fetch_sub(1, Ordering::AcqRel)
            == 1
        {
            self.shared.stats.mark_idle_now();
        }
    }
}

/// Un-counts a connection that closed before [`serve`] could run it.
pub fn closed_before_serving(shared: Arc<Shared>) {
    drop(OpenGuard {
        shared,
        uid: None,
        shard: None,
    });
}

/// [`serve`] for a connection accepted on another runtime (another shard):
/// registers its socket with this runtime's I/O driver first.
pub async fn serve_moved(
    id: u64,
    shard: usize,
    stream: std::os::unix::net::UnixStream,
    shared: Arc<Shared>,
) {
    match UnixStream::from_std(stream) {
        Ok(stream) => serve(id, shard, stream, shared).await,
        Err(err) => {
            tracing::warn!(id, %err, "cannot register the connection on its shard; closing");
            closed_before_serving(shared);
        }
    }
}

/// Serves one accepted connection until the peer leaves or the daemon stops.
/// The caller has counted it in `connections_open`.
pub async fn serve(id: u64, shard: usize, stream: UnixStream, shared: Arc<Shared>) {
    let mut guard = OpenGuard {
        shared: shared.clone(),
        uid: None,
        shard: None,
    };
    if let Some(count) = shared.stats.shard_connections.get(shard) {
        count.fetch_add(1, Ordering::AcqRel);
        guard.shard = Some(shard);
    }
    let cred = match peer::peer_cred(&stream) {
        Ok(cred) => cred,
        Err(err) => {
            tracing::warn!(id, %err, "cannot read the peer's credentials; closing");
            return;
        }
    };
    let span = tracing::info_span!("conn", id, uid = cred.uid, pid = cred.pid);
    async move {
        if !shared.policy.admits(cred).await {
            shared
                .stats
                .rejected_permission
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("connection refused: uid {} is not admitted", cred.uid);
            let status = Status::new(
                crate::protocol::Code::PermissionDenied,
                format!(
                    "uid {} may not use this daemon (admitted: {})",
                    cred.uid,
                    shared.policy.describe()
                ),
            );
            return reject(stream, status).await;
        }
        if !shared
            .stats
            .enter_uid(cred.uid, shared.limits.max_connections_per_uid)
        {
            shared
                .stats
                .rejected_per_uid
                .fetch_add(1, Ordering::Relaxed);
            let limit = shared.limits.max_connections_per_uid;
            tracing::warn!(
                limit,
                "connection refused: too many connections from this uid"
            );
            let status = Status::resource_exhausted(format!(
                "uid {} already has {limit} connections (the per-uid limit)",
                cred.uid
            ));
            return reject(stream, status).await;
        }
        guard.uid = Some(cred.uid);
        tracing::debug!("connected");
        let (rd, wr) = match super::socket::split(stream) {
            Ok(halves) => halves,
            Err(err) => {
                tracing::warn!(%err, "cannot set up the connection's socket; closing");
                return;
            }
        };
        let outbox = Arc::new(Outbox::new(wr, shared.limits.connection_queue));
        let conn = Conn {
            id,
            shard,
            inflight: Arc::new(Semaphore::new(shared.limits.connection_queue.max(1))),
            closing: shared.shutdown.child_token(),
            gone: outbox.gone.clone(),
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
            out: Arc::new(Producer(outbox.clone())),
            shared,
        };
        let writer = tokio::spawn(flush_loop(outbox, conn.shared.clone()).in_current_span());
        let linger = read_loop(&conn, rd).await;
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
        if let Some(rd) = linger {
            drain_then_close(rd).await;
        }
        tracing::debug!("disconnected");
        drop(guard);
    }
    .instrument(span)
    .await
}

/// Reads and dispatches requests until the peer leaves, the daemon stops or
/// a connection error. After a connection error it returns the read half, so
/// the caller can linger (see [`drain_then_close`]).
async fn read_loop(conn: &Conn, rd: ReadHalf) -> Option<ReadHalf> {
    // Starts small: most connections are idle watchers holding one
    // subscription, and the buffer grows to the largest frame actually read.
    let mut frames = FramedRead::with_capacity(
        rd,
        frame::codec(conn.shared.limits.max_frame_length),
        READ_BUFFER_INITIAL,
    );
    loop {
        let next = tokio::select! {
            biased;
            _ = conn.shared.shutdown.cancelled() => return None,
            // The writer gave up on this peer (slow consumer or dead socket).
            _ = conn.gone.cancelled() => return None,
            // Waits for the next whole frame; fails on an oversized length
            // prefix, a frame cut off by EOF, or a socket error.
            next = frames.next() => next,
        };
        let body = match next {
            None => return None,
            Some(Ok(body)) => {
                conn.shared.read_poll.request(conn.id, conn.shard);
                make_room_for_next(frames.read_buffer_mut(), body.len());
                body
            }
            Some(Err(err)) if frame::is_frame_too_long(&err) => {
                let status = Status::resource_exhausted(format!(
                    "frame longer than the {}-byte limit; closing the connection",
                    conn.shared.limits.max_frame_length
                ));
                tracing::warn!(%status, "connection error");
                connection_error(conn, status).await;
                return Some(frames.into_inner());
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "read ended");
                return None;
            }
        };
        let permit = tokio::select! {
            _ = conn.shared.shutdown.cancelled() => return None,
            // Waits only while this peer has `--connection-queue` replies it
            // has not made room for: back-pressure on this peer alone.
            permit = conn.inflight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return None,
            },
        };
        match decode_request(&body) {
            Ok(request) => {
                // Boxed: the dispatch state machine (every command's future)
                // would otherwise be inlined into this connection's future
                // and held for its whole life (~7 KiB per idle connection).
                let dispatched = Box::pin(crate::cmd::dispatch(conn, permit, request)).await;
                if let Err(status) = dispatched {
                    tracing::warn!(%status, "connection error");
                    connection_error(conn, status).await;
                    return Some(frames.into_inner());
                }
            }
            Err(DecodeError::Request { id, status }) => {
                conn.reply_result(permit, id, Err(status));
            }
            Err(DecodeError::Connection(status)) => {
                tracing::warn!(%status, "connection error");
                connection_error(conn, status).await;
                return Some(frames.into_inner());
            }
        }
    }
}

/// Sends `Response { id: 0, error }`; the caller then closes the connection.
async fn connection_error(conn: &Conn, status: Status) {
    let _ = conn
        .send(encode_response(
            0,
            response::Result::Error(status.to_proto()),
        ))
        .await;
}

/// Runs the outbox's flusher until the connection is finished and written,
/// or the peer is gone; counts and logs a slow consumer.
async fn flush_loop(outbox: Arc<Outbox>, shared: Arc<Shared>) {
    let limit = shared.limits.slow_consumer_timeout;
    // Waits while frames wait for a slow peer; ends once every producer is
    // gone and everything is written, or the peer fails.
    let flushed = outbox.flush(limit).await;
    if flushed == Flushed::TooSlow {
        shared
            .stats
            .slow_consumer_disconnects
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            timeout_s = limit.map(|l| l.as_secs_f64()).unwrap_or_default(),
            "disconnecting a slow consumer: its socket took nothing for the timeout \
             while frames waited (it can reconnect and resume)"
        );
    }
    // The peer reads EOF after the last frame.
    outbox.shutdown();
}

/// Tells a refused connection why (a connection error, id 0), then closes it.
pub async fn reject(stream: UnixStream, status: Status) {
    let body = encode_response(0, response::Result::Error(status.to_proto()));
    let mut frames = FramedWrite::new(stream, frame::codec(frame::DEFAULT_MAX_FRAME_LENGTH));
    // A peer that never reads cannot hold this task for long.
    let sent = tokio::time::timeout(REJECT_WRITE_TIMEOUT, frames.send(body)).await;
    if matches!(sent, Ok(Ok(()))) {
        let (rd, mut wr) = frames.into_inner().into_split();
        // EOF after the error frame, then linger.
        let _ = wr.shutdown().await;
        drain_then_close(rd).await;
    }
}

/// Initial read buffer of a connection, in bytes: enough for the small
/// requests of watchers; grows on demand up to the largest frame read.
const READ_BUFFER_INITIAL: usize = 512;

/// After a frame of `len` bytes, keeps room for two more like it (at most
/// 64 KiB) in the read buffer. A writer's next update then arrives in one
/// `recv`, and tokio skips the `recv` that would only say EAGAIN when a
/// read comes back short of the room offered; with a buffer only as large
/// as the frame the profile showed three `recv` calls per update. Watchers,
/// whose requests are small, keep the small buffer.
fn make_room_for_next(buffer: &mut bytes::BytesMut, len: usize) {
    const SMALL: usize = READ_BUFFER_INITIAL / 2;
    const MOST: usize = 64 * 1024;
    if len > SMALL {
        buffer.reserve((2 * (len + 4)).min(MOST));
    }
}

/// How long a closing connection may linger to drain its peer's input.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// The most input read and thrown away while lingering.
const LINGER_BYTES: usize = 1024 * 1024;

/// A lingering close. Closing a Unix socket whose receive queue still holds
/// the peer's unread requests resets the peer (ECONNRESET), which can make it
/// lose the error frame just sent. So, with the write side already shut, read
/// and discard what the peer sends until it closes, for at most
/// [`LINGER_TIMEOUT`] and [`LINGER_BYTES`].
async fn drain_then_close(mut rd: impl tokio::io::AsyncRead + Unpin) {
    use tokio::io::AsyncReadExt;
    let drain = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        // Waits for the peer's next bytes or its close.
        while let Ok(n) = rd.read(&mut buf).await {
            total += n;
            if n == 0 || total >= LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}
