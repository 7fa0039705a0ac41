//! One client connection: a reader loop and an outbox.
//!
//! - The **reader loop** ([`read_loop`]) decodes each frame and dispatches
//!   it (`cmd::dispatch`) with a [`Reply`](crate::wire::Reply) handle for
//!   its answer. It never waits for the socket to be writable: replies go
//!   into the outbox without blocking, and anything that must wait (a
//!   commit, a read, a stream) runs elsewhere. Requests are dispatched in
//!   arrival order, which is what makes one connection's writes commit in
//!   order.
//! - The **outbox** (`crate::wire::outbox`) takes frames from any thread
//!   (this task, the writer thread's acknowledgements, the broker's live
//!   events, stream tasks) and writes them on that thread when nothing is
//!   queued ahead; its flusher task ([`flush_loop`]) writes the rest when
//!   the peer reads slowly.
//!
//! At most `--connection-queue` requests of one connection may be waiting
//! for their reply to be written; beyond that the reader stops reading that
//! connection (back-pressure on a peer that does not read its replies). Only
//! that peer is slowed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use stigmer_proto::daemon::response;
use stigmer_proto::frame;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tracing::Instrument;

use super::admission::{self, OpenGuard};
use super::{peer, Shared};
use crate::cmd::Session;
use crate::protocol::{decode_request, encode_response, ApiError, DecodeError};
use crate::wire::socket::ReadHalf;
use crate::wire::{Flushed, Frame, Outbox, Producer};

/// Initial read buffer of a connection, in bytes: enough for the small
/// requests of watchers; grows on demand up to the largest frame read.
const READ_BUFFER_INITIAL: usize = 512;

/// A served connection, as its reader loop sees it.
struct Conn {
    /// Numbers connections in logs.
    id: u64,
    /// The connection shard it runs on (`server::shards`).
    shard: usize,
    /// What all connections share.
    shared: Arc<Shared>,
    /// The outgoing frames; finished when the last producer is dropped.
    out: Producer,
    /// Bounds requests waiting for their reply to be written.
    inflight: Arc<Semaphore>,
    /// Its streams and lifecycle, as commands see them.
    session: Arc<Session>,
}

/// [`serve`] for a connection accepted on another runtime (another shard):
/// registers its socket with this runtime's I/O driver first.
pub(crate) async fn serve_moved(
    id: u64,
    shard: usize,
    stream: std::os::unix::net::UnixStream,
    shared: Arc<Shared>,
) {
    match UnixStream::from_std(stream) {
        Ok(stream) => serve(id, shard, stream, shared).await,
        Err(err) => {
            tracing::warn!(id, %err, "cannot register the connection on its shard; closing");
            admission::closed_before_serving(shared);
        }
    }
}

/// Serves one accepted connection until the peer leaves or the daemon stops.
/// The caller has counted it in `connections_open`.
pub(crate) async fn serve(id: u64, shard: usize, stream: UnixStream, shared: Arc<Shared>) {
    let mut guard = OpenGuard::on_shard(shared.clone(), shard);
    let cred = match peer::peer_cred(&stream) {
        Ok(cred) => cred,
        Err(err) => {
            tracing::warn!(id, %err, "cannot read the peer's credentials; closing");
            return;
        }
    };
    let span = tracing::info_span!("conn", id, uid = cred.uid, pid = cred.pid);
    async move {
        // Waits only to write a refusal to a peer that is not admitted.
        let Some(stream) = admission::admit(stream, cred, &shared, &mut guard).await else {
            return;
        };
        tracing::debug!("connected");
        let (rd, wr) = match crate::wire::socket::split(stream) {
            Ok(halves) => halves,
            Err(err) => {
                tracing::warn!(%err, "cannot set up the connection's socket; closing");
                return;
            }
        };
        let outbox = Arc::new(Outbox::new(wr, shared.limits.connection_queue));
        let session = Arc::new(Session::new(
            shared.shutdown.child_token(),
            outbox.gone.clone(),
        ));
        let conn = Conn {
            id,
            shard,
            inflight: Arc::new(Semaphore::new(shared.limits.connection_queue.max(1))),
            out: Producer::new(outbox.clone()),
            session: session.clone(),
            shared,
        };
        let flusher = tokio::spawn(flush_loop(outbox, conn.shared.clone()).in_current_span());
        let linger = read_loop(&conn, rd).await;
        if !conn.shared.shutdown.is_cancelled() {
            session.gone.cancel();
        }
        // Ends every stream: with END_REASON_SHUTDOWN when the daemon is
        // stopping, silently when the peer left.
        session.closing.cancel();
        drop(conn);
        // Waits until every frame still queued (the streams' END events,
        // replies to writes that were in flight) is written, or the peer is gone.
        let _ = flusher.await;
        if let Some(rd) = linger {
            admission::drain_then_close(rd).await;
        }
        tracing::debug!("disconnected");
        drop(guard);
    }
    .instrument(span)
    .await
}

/// Reads and dispatches requests until the peer leaves, the daemon stops or
/// a connection error. After a connection error it returns the read half, so
/// the caller can linger (see [`admission::drain_then_close`]).
async fn read_loop(conn: &Conn, rd: ReadHalf) -> Option<ReadHalf> {
    let shared = &conn.shared;
    // Starts small: most connections are idle watchers holding one
    // subscription, and the buffer grows to the largest frame actually read.
    let mut frames = FramedRead::with_capacity(
        rd,
        frame::codec(shared.limits.max_frame_length),
        READ_BUFFER_INITIAL,
    );
    loop {
        let next = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return None,
            // The flusher gave up on this peer (slow consumer or dead socket).
            _ = conn.session.gone.cancelled() => return None,
            // Waits for the next whole frame; fails on an oversized length
            // prefix, a frame cut off by EOF, or a socket error.
            next = frames.next() => next,
        };
        let body = match next {
            None => return None,
            Some(Ok(body)) => {
                shared.read_poll.request(conn.id, conn.shard);
                make_room_for_next(frames.read_buffer_mut(), body.len());
                body
            }
            Some(Err(err)) if frame::is_frame_too_long(&err) => {
                let err = ApiError::resource_exhausted(format!(
                    "frame longer than the {}-byte limit; closing the connection",
                    shared.limits.max_frame_length
                ));
                tracing::warn!(%err, "connection error");
                connection_error(conn, err).await;
                return Some(frames.into_inner());
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "read ended");
                return None;
            }
        };
        let permit = tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            // Waits only while this peer has `--connection-queue` replies it
            // has not made room for: back-pressure on this peer alone.
            permit = conn.inflight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return None,
            },
        };
        match decode_request(&body) {
            Ok(request) => {
                let reply = conn.out.reply_to(request.id, permit);
                // Boxed: the dispatch state machine (every command's future)
                // would otherwise be inlined into this connection's future
                // and held for its whole life (~7 KiB per idle connection).
                // Waits only while the writer's queue is full.
                let dispatched = Box::pin(crate::cmd::dispatch(
                    &shared.context,
                    &conn.session,
                    reply,
                    request,
                ))
                .await;
                if let Err(err) = dispatched {
                    tracing::warn!(%err, "connection error");
                    connection_error(conn, err).await;
                    return Some(frames.into_inner());
                }
            }
            Err(DecodeError::Request { id, error }) => {
                conn.out.reply_to(id, permit).error(error);
            }
            Err(DecodeError::Connection(err)) => {
                tracing::warn!(%err, "connection error");
                connection_error(conn, err).await;
                return Some(frames.into_inner());
            }
        }
    }
}

/// Sends `Response { id: 0, error }`; the caller then closes the connection.
async fn connection_error(conn: &Conn, err: ApiError) {
    let body = encode_response(0, response::Result::Error(err.to_proto()));
    // Waits for room in the outbox; gives up if the peer is gone.
    let _ = conn.out.send(Frame::new(body)).await;
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

/// After a frame of `len` bytes, keeps room for two more like it (at most
/// 64 KiB) in the read buffer. A runner's next update then arrives in one
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
