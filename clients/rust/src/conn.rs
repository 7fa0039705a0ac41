//! One connection to the daemon, shared by every call of a [`crate::Client`].
//!
//! Many requests are in flight at once on one socket (docs/PROTOCOL.md,
//! "Envelopes"): each gets a fresh request id; a single reader task routes
//! each `Response` by id to the waiting call (a oneshot) or to the
//! subscription it belongs to (a bounded channel); a single writer task owns
//! the write half, so frames never interleave and requests go out in the
//! order they were queued (which is the order the daemon applies them).
//!
//! Delivery is tracked so that a dead connection costs no request: a frame
//! the writer never wrote completely cannot have been applied (the daemon
//! only acts on whole frames), so its call is retried on a new connection;
//! only a call whose frame went out whole and then lost its reply fails with
//! [`Error::Closed`] (it may or may not have been applied).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::proto::daemon::{
    request::Command, response::Result as Reply, CancelSubscriptionRequest, Event, EventType,
    Request, Response,
};
use crate::proto::frame;
use crate::{Config, Error, Result};

/// Frames queued for the writer task. Bounded so a burst of requests waits
/// for the socket instead of growing memory without limit.
const WRITE_QUEUE: usize = 1024;

/// Most bytes the writer gathers into one write.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What a stream's channel carries: an event, or the error that ended it.
pub(crate) type StreamItem = Result<Event>;

/// What a waiting call learns.
// Moved once per call through a oneshot; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    /// The reply (or the error that ended the connection after the request
    /// was written).
    Reply(Result<Reply>),
    /// The request was never written whole: safe to send again elsewhere.
    NotDelivered,
}

/// One frame for the writer: length prefix and body, and its request id.
struct Outgoing {
    id: u64,
    bytes: Bytes,
}

/// Where the reply to a request id goes.
enum Route {
    /// A call waiting for its single reply.
    Unary(oneshot::Sender<Outcome>),
    /// An open subscription.
    Stream(StreamRoute),
}

struct StreamRoute {
    tx: mpsc::Sender<StreamItem>,
    /// Set when the consumer fell `stream_queue` events behind and the
    /// reader dropped the route; the subscription then resubscribes from its
    /// last delivered revision rather than treating it as a disconnect.
    overflowed: Arc<AtomicBool>,
}

/// The routing table and the connection's fate, shared by the reader, the
/// writer and the callers.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    routes: HashMap<u64, Route>,
    /// Ids of queued requests the writer has not started writing.
    unsent: HashSet<u64>,
    /// Why the connection ended, once it has; no new routes after that.
    closed: Option<Error>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (each operation is a single insert/remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection dead and fails everyone waiting on it: unary
    /// calls whose request was never written are told so (and retry);
    /// the others get `reason`; streams see their channel close (and
    /// resubscribe).
    fn close(&self, reason: Error) {
        let (routes, unsent) = {
            let mut st = self.lock();
            if st.closed.is_none() {
                tracing::debug!(%reason, "stigmer connection closed");
                st.closed = Some(reason.duplicate());
            }
            (
                std::mem::take(&mut st.routes),
                std::mem::take(&mut st.unsent),
            )
        };
        // A connection error the daemon stated (id 0: PERMISSION_DENIED,
        // too many connections, ...) is the answer for every call on this
        // connection, sent or not: retrying elsewhere would only be refused
        // again. Otherwise calls whose request never left may retry.
        let daemon_refused = matches!(reason, Error::Status { .. });
        for (id, route) in routes {
            match route {
                Route::Unary(tx) => {
                    let outcome = if unsent.contains(&id) && !daemon_refused {
                        Outcome::NotDelivered
                    } else {
                        Outcome::Reply(Err(reason.duplicate()))
                    };
                    let _ = tx.send(outcome);
                }
                // A stream learns the stated reason (and, unless it is
                // transient, ends with it); otherwise its channel just
                // closes and the subscription resumes elsewhere.
                Route::Stream(stream) if daemon_refused => {
                    let _ = stream.tx.try_send(Err(reason.duplicate()));
                }
                Route::Stream(_) => {}
            }
        }
    }

    /// The writer could not write these requests whole: their calls may
    /// retry elsewhere.
    fn not_delivered(&self, ids: &[u64]) {
        // The reader settles these calls when it sees the connection end
        // (a failed write means the daemon closed its side, so the reader
        // reaches EOF next): first it reads any connection error the daemon
        // sent, which then answers them instead of a retry.
        let mut st = self.lock();
        if st.closed.is_none() {
            st.unsent.extend(ids.iter().copied());
        }
    }
}

/// A request that could not be sent because the connection is gone; the
/// command comes back so the caller can retry it on a new connection.
pub(crate) struct NotSent(pub(crate) Command);

/// The result of [`Conn::call`].
// Returned once per call; the command is kept inline so a retry needs no copy.
#[allow(clippy::large_enum_variant)]
pub(crate) enum CallError {
    /// Nothing reached the daemon: safe to retry elsewhere.
    NotSent(NotSent),
    /// The request was sent (or refused locally, e.g. too large): final.
    Failed(Error),
}

/// An open stream as seen by the subscription that owns it.
pub(crate) struct StreamHandle {
    pub(crate) id: u64,
    pub(crate) rx: mpsc::Receiver<StreamItem>,
    pub(crate) overflowed: Arc<AtomicBool>,
}

/// A live connection: the writer queue, the routing table, the id counter.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Outgoing>,
    next_id: Arc<AtomicU64>,
    max_frame_length: usize,
    stream_queue: usize,
    reader: AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The writer ends by itself once `writer` (the only strong sender) is
        // gone, shutting the write half so the daemon sees EOF; the reader
        // would wait for the daemon, so it is stopped here.
        self.reader.abort();
    }
}

impl Conn {
    /// Opens the socket and starts the reader and writer tasks (on the
    /// current tokio runtime).
    pub(crate) async fn connect(path: &Path, config: &Config) -> Result<Arc<Conn>> {
        if let Some(dir) = path
            .parent()
            .filter(|_| crate::paths::in_fallback_dir(path))
        {
            // A missing directory means no daemon: the connect below fails
            // with ENOENT. One that exists must be private to this user.
            if std::fs::symlink_metadata(dir).is_ok() {
                crate::paths::check_private_dir(dir).map_err(|why| Error::UnsafeDirectory {
                    path: dir.display().to_string(),
                    why,
                })?;
            }
        }
        // Fails at once when no daemon listens (ENOENT / ECONNREFUSED).
        let stream = UnixStream::connect(path).await?;
        // Before a single byte is written: is the listener someone we trust?
        check_peer(&stream, path, config.expected_uid)?;
        let (rd, wr) = stream.into_split();
        let codec = frame::codec(config.max_frame_length);
        let shared = Arc::new(Shared::default());
        let next_id = Arc::new(AtomicU64::new(1));
        let (writer, write_rx) = mpsc::channel(WRITE_QUEUE);

        tokio::spawn(write_loop(wr, write_rx, shared.clone()));
        let reader = tokio::spawn(read_loop(
            FramedRead::new(rd, codec),
            shared.clone(),
            writer.downgrade(),
            next_id.clone(),
            config.max_frame_length,
        ))
        .abort_handle();

        Ok(Arc::new(Conn {
            shared,
            writer,
            next_id,
            max_frame_length: config.max_frame_length,
            stream_queue: config.stream_queue.max(1),
            reader,
        }))
    }

    /// True once the connection has failed or been closed by the daemon.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some() || self.writer.is_closed()
    }

    /// Sends one request and waits for its single reply. A reply that is an
    /// `error` becomes [`Error::Status`].
    ///
    /// Up to the point where the frame is queued there is no await on the
    /// fast path, so calls queue their frames in the order they are first
    /// polled, whatever the executor does later.
    ///
    /// `minimal_reply` sets `Request.minimal_reply` (create and
    /// update_status then answer with the revision and id only).
    pub(crate) async fn call(
        &self,
        command: Command,
        minimal_reply: bool,
    ) -> Result<Reply, CallError> {
        let (tx, rx) = oneshot::channel();
        let (_, command) = self.start(command, Route::Unary(tx), minimal_reply).await?;
        // Waits for the reader to route the reply, or for the connection to
        // fail (then: retry if the frame never went out, else Closed).
        match rx.await {
            Ok(Outcome::Reply(Ok(Reply::Error(e)))) => Err(CallError::Failed(Error::from_wire(e))),
            Ok(Outcome::Reply(Ok(reply))) => Ok(reply),
            Ok(Outcome::Reply(Err(e))) => Err(CallError::Failed(e)),
            Ok(Outcome::NotDelivered) => Err(CallError::NotSent(NotSent(command))),
            Err(_) => Err(CallError::Failed(Error::Closed)),
        }
    }

    /// Hands a frame to the writer: at once when there is room, else waits
    /// for room (back-pressure from a slow socket). False when the writer
    /// has ended (the connection is gone).
    async fn queue(&self, out: Outgoing) -> bool {
        match self.writer.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            // Waits for the writer to drain some frames.
            Err(mpsc::error::TrySendError::Full(out)) => self.writer.send(out).await.is_ok(),
        }
    }

    /// Sends a `subscribe` and returns the channel its events arrive on.
    /// Errors the daemon answers with (NOT_FOUND, ...) arrive on the channel;
    /// if the connection dies, the channel closes (whether or not the
    /// request went out) and the subscription resubscribes.
    pub(crate) async fn open_stream(&self, command: Command) -> Result<StreamHandle, CallError> {
        let (tx, rx) = mpsc::channel(self.stream_queue);
        let overflowed = Arc::new(AtomicBool::new(false));
        let route = Route::Stream(StreamRoute {
            tx,
            overflowed: overflowed.clone(),
        });
        let (id, _) = self.start(command, route, false).await?;
        Ok(StreamHandle { id, rx, overflowed })
    }

    /// The start of every call and stream: a new id, the encoded frame, the
    /// route registered BEFORE the frame is queued (so no reply can arrive
    /// before anyone waits for it), then the frame queued. Returns the id and
    /// the command back (a call retries it elsewhere if it is never
    /// delivered).
    async fn start(
        &self,
        command: Command,
        route: Route,
        minimal_reply: bool,
    ) -> Result<(u64, Command), CallError> {
        let id = take_id(&self.next_id);
        let frame = encode(id, command, minimal_reply, self.max_frame_length)?;
        let frame = match self.register(id, route, frame) {
            Ok(frame) => frame,
            Err(frame) => return Err(not_sent(frame)),
        };
        let Frame { bytes, command } = frame;
        // Queues the request; fails only when the writer has ended.
        if !self.queue(Outgoing { id, bytes }).await {
            self.forget(id);
            return Err(CallError::NotSent(NotSent(command)));
        }
        Ok((id, command))
    }

    /// Stops routing replies for `id` (later frames for it are ignored).
    pub(crate) fn forget(&self, id: u64) {
        let mut st = self.shared.lock();
        st.routes.remove(&id);
        st.unsent.remove(&id);
    }

    /// Asks the daemon to end stream `id` without waiting for the answer
    /// (used from `Drop`, where nothing can be awaited). Best effort: when
    /// the writer queue is full the request is skipped, and the daemon ends
    /// the stream when the connection closes anyway.
    pub(crate) fn cancel_in_background(&self, id: u64) {
        if self.is_closed() {
            return;
        }
        send_cancel(&self.writer, &self.next_id, id, self.max_frame_length);
    }
}

/// Refuses a daemon whose uid is neither root, nor ours, nor `expected`.
///
/// The uid comes from the connected socket's peer credentials (tokio reads
/// `SO_PEERCRED` on Linux and `getpeereid` on macOS and the BSDs): the
/// credentials of whoever called `listen` on the socket, which the
/// listener cannot forge. Under socket activation that is the service
/// manager (root), which is trusted.
fn check_peer(stream: &UnixStream, path: &Path, expected: Option<u32>) -> Result<()> {
    let cred = stream.peer_cred()?;
    let found = cred.uid();
    let own = nix::unistd::geteuid().as_raw();
    if found == 0 || found == own || Some(found) == expected {
        return Ok(());
    }
    Err(Error::UntrustedDaemon {
        path: path.display().to_string(),
        found,
        own,
    })
}

/// A request encoded and ready to write, with its command kept for a retry.
struct Frame {
    bytes: Bytes,
    command: Command,
}

impl Conn {
    /// Adds a route unless the connection is already closed (then the
    /// frame comes back for a retry elsewhere).
    #[allow(clippy::result_large_err)]
    fn register(&self, id: u64, route: Route, frame: Frame) -> Result<Frame, Frame> {
        let mut st = self.shared.lock();
        if st.closed.is_some() {
            return Err(frame);
        }
        st.routes.insert(id, route);
        st.unsent.insert(id);
        Ok(frame)
    }
}

fn not_sent(frame: Frame) -> CallError {
    CallError::NotSent(NotSent(frame.command))
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Failed(e)
    }
}

/// The next request id: non-zero, counting up from 1 on each connection.
fn take_id(counter: &AtomicU64) -> u64 {
    loop {
        let id = counter.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

/// Encodes `Request { protocol_version: 1, id, minimal_reply, command }`,
/// refusing bodies over the frame limit.
fn encode(id: u64, command: Command, minimal_reply: bool, max: usize) -> Result<Frame> {
    let request = Request {
        protocol_version: frame::PROTOCOL_VERSION,
        id,
        minimal_reply,
        command: Some(command),
    };
    let len = request.encoded_len();
    let prefix = match u32::try_from(len) {
        Ok(prefix) if len <= max => prefix,
        _ => return Err(Error::FrameTooLarge { len, max }),
    };
    let mut bytes = Vec::with_capacity(frame::LENGTH_PREFIX_BYTES + len);
    bytes.extend_from_slice(&prefix.to_be_bytes());
    request
        .encode(&mut bytes)
        .map_err(|e| Error::Protocol(format!("cannot encode a request: {e}")))?;
    let command = request
        .command
        .ok_or_else(|| Error::Protocol("request lost its command".into()))?;
    Ok(Frame {
        bytes: Bytes::from(bytes),
        command,
    })
}

fn send_cancel(
    writer: &mpsc::Sender<Outgoing>,
    next_id: &AtomicU64,
    subscription_id: u64,
    max: usize,
) {
    let id = take_id(next_id);
    let command = Command::Cancel(CancelSubscriptionRequest { subscription_id });
    if let Ok(frame) = encode(id, command, false, max) {
        // No route: the `cancelled` (or NOT_FOUND) reply is ignored.
        let _ = writer.try_send(Outgoing {
            id,
            bytes: frame.bytes,
        });
    }
}

/// Owns the write half: gathers whatever frames are queued into one buffer
/// and writes it, until every sender is gone or a write fails. Knows which
/// frames went out whole, so the calls of the others can be retried.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Outgoing>, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    // (request id, end offset of its frame in `buf`)
    let mut batch: Vec<(u64, usize)> = Vec::new();
    // Waits for the next frame; None once the connection object is dropped.
    while let Some(first) = rx.recv().await {
        buf.clear();
        batch.clear();
        let mut next = Some(first);
        while let Some(out) = next.take() {
            buf.extend_from_slice(&out.bytes);
            batch.push((out.id, buf.len()));
            if buf.len() < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        {
            let mut st = shared.lock();
            if st.closed.is_some() {
                // close() already settled every waiting call.
                return;
            }
            // From here on these frames count as (possibly) sent.
            for (id, _) in &batch {
                st.unsent.remove(id);
            }
        }
        let mut written = 0;
        while written < buf.len() {
            // Writes to the socket; waits while the daemon's receive buffer
            // is full; fails when the daemon has gone away.
            match wr.write(&buf[written..]).await {
                Ok(0) => {
                    fail_batch(
                        &shared,
                        &batch,
                        written,
                        std::io::ErrorKind::WriteZero.into(),
                    );
                    return;
                }
                Ok(n) => written += n,
                Err(e) => {
                    fail_batch(&shared, &batch, written, e);
                    return;
                }
            }
        }
    }
    // Shuts the write direction so the daemon sees EOF and closes its side.
    let _ = wr.shutdown().await;
}

/// A write failed after `written` bytes of the batch: frames not written
/// whole were never acted on by the daemon, so their calls may retry.
fn fail_batch(shared: &Shared, batch: &[(u64, usize)], written: usize, err: std::io::Error) {
    let undelivered: Vec<u64> = batch
        .iter()
        .filter(|(_, end)| *end > written)
        .map(|(id, _)| *id)
        .collect();
    shared.not_delivered(&undelivered);
    shared.close(Error::Io(err));
}

/// Owns the read half: decodes each frame and routes it by request id until
/// the daemon closes the connection or sends something undecodable.
async fn read_loop(
    mut frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    shared: Arc<Shared>,
    writer: mpsc::WeakSender<Outgoing>,
    next_id: Arc<AtomicU64>,
    max_frame_length: usize,
) {
    let reason = loop {
        // Waits for the daemon's next frame; fails on a broken socket or a
        // length prefix over the limit.
        let frame = match frames.next().await {
            None => break Error::Closed,
            Some(Err(e)) if frame::is_frame_too_long(&e) => {
                break Error::Protocol(format!(
                    "the daemon sent a frame over the limit of {max_frame_length} bytes"
                ))
            }
            Some(Err(e)) => break Error::Io(e),
            Some(Ok(frame)) => frame,
        };
        let response = match Response::decode(frame) {
            Ok(r) => r,
            Err(e) => break Error::Protocol(format!("undecodable response: {e}")),
        };
        if response.id == 0 {
            // A connection error: the daemon closes the connection next.
            break match response.result {
                Some(Reply::Error(e)) => Error::from_wire(e),
                _ => Error::Protocol("a response with id 0 that is not an error".into()),
            };
        }
        let Some(result) = response.result else {
            tracing::debug!(id = response.id, "response without a result; ignored");
            continue;
        };
        route(
            &shared,
            &writer,
            &next_id,
            max_frame_length,
            response.id,
            result,
        );
    };
    shared.close(reason);
}

/// Delivers one reply or event to whoever waits for request `id`.
fn route(
    shared: &Shared,
    writer: &mpsc::WeakSender<Outgoing>,
    next_id: &AtomicU64,
    max_frame_length: usize,
    id: u64,
    result: Reply,
) {
    let mut st = shared.lock();
    let Some(entry) = st.routes.get(&id) else {
        // A reply to a fire-and-forget cancel, or a late event of a stream
        // the consumer dropped.
        tracing::debug!(id, "reply for an id nobody waits for; ignored");
        return;
    };
    match entry {
        Route::Unary(_) => {
            if let Some(Route::Unary(tx)) = st.routes.remove(&id) {
                // The caller may have given up (dropped its future): fine.
                let _ = tx.send(Outcome::Reply(Ok(result)));
            }
        }
        Route::Stream(stream) => {
            let (item, last) = match result {
                Reply::Event(ev) => {
                    let end = ev.r#type == EventType::EventEnd as i32;
                    (Ok(ev), end)
                }
                Reply::Error(e) => (Err(Error::from_wire(e)), true),
                _ => (
                    Err(Error::Protocol(format!(
                        "stream {id} got a reply that is not an event"
                    ))),
                    true,
                ),
            };
            let outcome = stream.tx.try_send(item);
            let keep = match outcome {
                Ok(()) => !last,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The consumer is `stream_queue` events behind. Rather
                    // than stall every other call on this connection, drop
                    // the stream; the subscription resubscribes from its
                    // last delivered revision once it drains its queue.
                    stream.overflowed.store(true, Ordering::Release);
                    if !last {
                        if let Some(w) = writer.upgrade() {
                            send_cancel(&w, next_id, id, max_frame_length);
                        }
                    }
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    if !last {
                        if let Some(w) = writer.upgrade() {
                            send_cancel(&w, next_id, id, max_frame_length);
                        }
                    }
                    false
                }
            };
            if !keep {
                st.routes.remove(&id);
            }
        }
    }
}
