//! A connection's outgoing frames: one ordered, bounded queue that any
//! thread may append to, and that writes to the socket *on the appending
//! thread* whenever nothing is queued ahead.
//!
//! Why not a channel to a task that writes: every frame would then cost a
//! cross-thread wake-up of that task before it reaches the socket, and on a
//! small VM a wake-up of an idle vCPU costs ~45 µs (docs/PERFORMANCE.md).
//! Here the writer thread writes an acknowledgement, and the broker a live
//! event, straight into the socket right after COMMIT; the flusher task is
//! woken only when the socket did not take a frame at once (a peer reading
//! slower than we write).
//!
//! Order: every write happens under the queue's lock, and a frame is written
//! directly only when nothing is queued ahead of it, so bytes leave in the
//! order frames were appended, whichever thread appends them.
//!
//! Bounds: [`Outbox::send`] waits while `capacity` frames are queued;
//! [`Outbox::try_send`] refuses instead; [`Outbox::push`] (replies) appends
//! regardless, because replies are bounded by the connection's in-flight
//! permits, which each queued reply holds until it is written.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::socket::WriteHalf;

/// Frames written per `writev`: enough to empty a burst in one call,
/// well under IOV_MAX (1024) at two slices per frame.
const WRITE_FRAMES: usize = 64;

/// Longest frame head: the 4-byte length prefix, plus for an event frame
/// the envelope around the event.
const HEAD_MAX: usize = 4 + crate::protocol::EVENT_HEAD_MAX;

/// One outgoing frame: a small head (the length prefix, and for an event
/// the envelope around it) and a body that may be shared by every
/// subscriber of a change.
pub(crate) struct Frame {
    head: [u8; HEAD_MAX],
    head_len: u8,
    body: Bytes,
    /// A reply holds its request's in-flight permit until it is written:
    /// a peer that does not read its replies stops being read.
    permit: Option<OwnedSemaphorePermit>,
}

impl Frame {
    /// A frame carrying an encoded `Response`.
    pub(crate) fn new(body: Bytes) -> Self {
        let mut head = [0u8; HEAD_MAX];
        head[..4].copy_from_slice(&(body.len() as u32).to_be_bytes());
        Frame {
            head,
            head_len: 4,
            body,
            permit: None,
        }
    }

    /// `Response { id, event }` around an already encoded `Event`, without
    /// copying it: byte for byte what `protocol::encode_event_frame` builds.
    pub(crate) fn event(id: u64, event: Bytes) -> Self {
        let mut head = [0u8; HEAD_MAX];
        let mut envelope = &mut head[4..];
        crate::protocol::put_event_head(&mut envelope, id, event.len());
        let n = HEAD_MAX - 4 - envelope.len();
        head[..4].copy_from_slice(&((n + event.len()) as u32).to_be_bytes());
        Frame {
            head,
            head_len: (4 + n) as u8,
            body: event,
            permit: None,
        }
    }

    /// Keeps `permit` until the frame is written.
    pub(crate) fn with_permit(mut self, permit: OwnedSemaphorePermit) -> Self {
        self.permit = Some(permit);
        self
    }

    fn head(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    fn len(&self) -> usize {
        self.head_len as usize + self.body.len()
    }

    /// The unwritten part, from `offset`, as at most two slices.
    fn slices(&self, offset: usize) -> [&[u8]; 2] {
        let head = self.head();
        if offset < head.len() {
            [&head[offset..], &self.body[..]]
        } else {
            [&[], &self.body[offset - head.len()..]]
        }
    }
}

/// The connection can take no more frames: the peer is gone or too slow, or
/// the connection finished.
#[derive(Debug)]
pub(crate) struct Closed;

/// Why [`Outbox::try_send`] did not take a frame.
pub(crate) enum TrySend {
    /// `capacity` frames are queued; here is the frame back.
    Full(Frame),
    Closed,
}

/// How the flusher task ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Every producer finished and everything queued was written.
    Done,
    /// The socket failed (the peer is gone).
    Failed,
    /// The socket took nothing for the slow-consumer timeout.
    TooSlow,
}

/// See the module docs.
pub struct Outbox {
    socket: WriteHalf,
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the flusher: frames wait behind a write the socket did not
    /// take at once, or the connection finished.
    flush: Notify,
    /// Wakes producers waiting in [`Outbox::send`] for room.
    room: Notify,
    /// Producers in [`Outbox::send`] that may wait for room: a write that
    /// frees frames notifies `room` only when there are some (notifying
    /// takes a lock, and writes happen once per delivery under fan-out).
    room_waiters: AtomicUsize,
    /// Cancelled once the peer is gone (a failed write, or too slow).
    pub(crate) gone: CancellationToken,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Bytes of `frames[0]` already written.
    offset: usize,
    /// The peer is gone: frames are dropped.
    closed: bool,
    /// No producer is left: flush what is queued, then stop.
    finished: bool,
    /// Frames were deferred ([`Outbox::try_defer`]) and not yet flushed.
    deferred: bool,
}

/// Counts a producer in [`Outbox::send`] for as long as it lives.
struct RoomWaiter<'a>(&'a AtomicUsize);

impl<'a> RoomWaiter<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        RoomWaiter(count)
    }
}

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one attempt to write the queue found.
enum Wrote {
    /// The queue is empty.
    All,
    /// The socket is full; frames wait.
    Blocked,
}

impl Outbox {
    /// An outbox writing to `socket`, holding up to `capacity` frames for
    /// [`Outbox::send`].
    pub fn new(socket: WriteHalf, capacity: usize) -> Self {
        Outbox {
            socket,
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            flush: Notify::new(),
            room: Notify::new(),
            room_waiters: AtomicUsize::new(0),
            gone: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves the queue consistent (push, pop, a
        // counter), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a frame whatever the queue length (a reply, bounded by the
    /// in-flight permit it carries); writes it at once when nothing is
    /// queued ahead.
    pub(crate) fn push(&self, frame: Frame) -> Result<(), Closed> {
        let mut state = self.lock();
        self.append(&mut state, frame)
    }

    /// Appends a frame without writing it, while fewer than `capacity` are
    /// queued; the caller then calls [`Outbox::flush_deferred`] once after
    /// all its appends, which writes them in one `writev`. Returns true for
    /// the first deferral since the last flush (the caller must flush).
    pub(crate) fn try_defer(&self, frame: Frame) -> Result<bool, TrySend> {
        let mut state = self.lock();
        let frame = self.room_for(&state, frame)?;
        state.frames.push_back(frame);
        Ok(!std::mem::replace(&mut state.deferred, true))
    }

    /// Writes what [`Outbox::try_defer`] appended (and anything queued
    /// ahead); the flusher takes over if the socket does not take it all.
    pub(crate) fn flush_deferred(&self) {
        let mut state = self.lock();
        state.deferred = false;
        if state.closed {
            return;
        }
        match self.write_locked(&mut state) {
            Ok(Wrote::All) => {}
            Ok(Wrote::Blocked) => self.flush.notify_one(),
            Err(()) => self.close_locked(&mut state),
        }
    }

    /// Appends a frame only while fewer than `capacity` are queued.
    pub(crate) fn try_send(&self, frame: Frame) -> Result<(), TrySend> {
        let mut state = self.lock();
        let frame = self.room_for(&state, frame)?;
        self.append(&mut state, frame)
            .map_err(|Closed| TrySend::Closed)
    }

    /// The bounded producers' check: gives the frame back when it may be
    /// appended.
    fn room_for(&self, state: &State, frame: Frame) -> Result<Frame, TrySend> {
        if state.closed || state.finished {
            Err(TrySend::Closed)
        } else if state.frames.len() >= self.capacity {
            Err(TrySend::Full(frame))
        } else {
            Ok(frame)
        }
    }

    /// Appends a frame, waiting while `capacity` frames are queued (a
    /// stream's back-pressure: only the caller waits).
    pub(crate) async fn send(&self, mut frame: Frame) -> Result<(), Closed> {
        // Counted before the first look at the queue (and until this
        // returns or is dropped): a write that frees room after that look
        // sees the count and notifies.
        let _waiting = RoomWaiter::new(&self.room_waiters);
        loop {
            let room = self.room.notified();
            let mut room = std::pin::pin!(room);
            // Registered before looking, so a wake-up in between is kept.
            room.as_mut().enable();
            match self.try_send(frame) {
                Ok(()) => return Ok(()),
                Err(TrySend::Closed) => return Err(Closed),
                Err(TrySend::Full(back)) => frame = back,
            }
            // Waits for the flusher to write some frames, or for the close.
            tokio::select! {
                _ = room => {}
                _ = self.gone.cancelled() => return Err(Closed),
            }
        }
    }

    fn append(&self, state: &mut State, frame: Frame) -> Result<(), Closed> {
        if state.closed || state.finished {
            return Err(Closed);
        }
        let direct = state.frames.is_empty();
        state.frames.push_back(frame);
        if direct {
            // Nothing ahead: write on this thread, now (non-blocking).
            match self.write_locked(state) {
                Ok(Wrote::All) => return Ok(()),
                Ok(Wrote::Blocked) => {}
                Err(()) => {
                    self.close_locked(state);
                    return Err(Closed);
                }
            }
        }
        // The flusher writes it once the socket has room.
        self.flush.notify_one();
        Ok(())
    }

    /// Writes queued frames until the queue is empty or the socket is full.
    /// Called with the lock held, which is what keeps writes in order.
    fn write_locked(&self, state: &mut State) -> Result<Wrote, ()> {
        let mut freed = false;
        let result = loop {
            if state.frames.is_empty() {
                break Ok(Wrote::All);
            }
            // On the stack: this runs once per delivery under fan-out, where
            // one frame (head and body) is the usual case.
            let mut one = [IoSlice::new(&[]); 2];
            let mut many;
            let slices: &mut [IoSlice<'_>] = if state.frames.len() == 1 {
                &mut one
            } else {
                many = [IoSlice::new(&[]); 2 * WRITE_FRAMES];
                &mut many
            };
            let mut used = 0;
            for (i, frame) in state.frames.iter().take(WRITE_FRAMES).enumerate() {
                let offset = if i == 0 { state.offset } else { 0 };
                for part in frame.slices(offset) {
                    if !part.is_empty() {
                        slices[used] = IoSlice::new(part);
                        used += 1;
                    }
                }
            }
            // Never blocks: the socket is non-blocking (WouldBlock when full).
            match self.socket.try_write_vectored(&slices[..used]) {
                Ok(0) => break Err(()),
                Ok(mut written) => {
                    while written > 0 {
                        let Some(first) = state.frames.front() else {
                            break;
                        };
                        let left = first.len() - state.offset;
                        if written >= left {
                            written -= left;
                            state.offset = 0;
                            // Drops the frame, and with it a reply's permit.
                            state.frames.pop_front();
                            freed = true;
                        } else {
                            state.offset += written;
                            written = 0;
                        }
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    break Ok(Wrote::Blocked)
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::debug!(%err, "write failed; the peer is gone");
                    break Err(());
                }
            }
        };
        // The count is read after the frames were freed under the lock
        // that every producer's look at the queue also takes (see `send`).
        if freed && self.room_waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
        result
    }

    fn close_locked(&self, state: &mut State) {
        state.closed = true;
        state.frames.clear();
        state.offset = 0;
        self.gone.cancel();
        self.room.notify_waiters();
    }

    /// No more frames will be appended (every producer is gone): the
    /// flusher writes what is queued and stops.
    pub(crate) fn finish(&self) {
        self.lock().finished = true;
        self.flush.notify_one();
    }

    /// Frames queued and not yet written.
    pub fn queued(&self) -> usize {
        self.lock().frames.len()
    }

    /// The flusher: writes what the producers could not, waiting for the
    /// socket to have room; stops once finished and empty, or when the peer
    /// fails or takes nothing for `slow_consumer_timeout`.
    pub(crate) async fn flush(&self, slow_consumer_timeout: Option<Duration>) -> Flushed {
        loop {
            let wrote = {
                let mut state = self.lock();
                if state.closed {
                    return Flushed::Failed;
                }
                match self.write_locked(&mut state) {
                    Ok(Wrote::All) if state.finished => return Flushed::Done,
                    Ok(wrote) => wrote,
                    Err(()) => {
                        self.close_locked(&mut state);
                        return Flushed::Failed;
                    }
                }
            };
            match wrote {
                // Waits for a producer to queue behind a blocked write, or
                // for the connection to finish.
                Wrote::All => self.flush.notified().await,
                Wrote::Blocked => {
                    // Waits for the peer to read; a peer that takes nothing
                    // for the timeout while frames wait is cut off.
                    let writable = self.socket.writable();
                    let ready = match slow_consumer_timeout {
                        None => writable.await.map_err(|_| ()),
                        Some(limit) => match tokio::time::timeout(limit, writable).await {
                            Ok(ready) => ready.map_err(|_| ()),
                            Err(_) => {
                                self.close_locked(&mut self.lock());
                                return Flushed::TooSlow;
                            }
                        },
                    };
                    if ready.is_err() {
                        self.close_locked(&mut self.lock());
                        return Flushed::Failed;
                    }
                }
            }
        }
    }

    /// Shuts the write side (the peer reads EOF after the last frame).
    pub(crate) fn shutdown(&self) {
        self.socket.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    /// An outbox on one end of a socket pair, and the peer's end.
    fn pair(capacity: usize) -> (std::sync::Arc<Outbox>, UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let outbox = Outbox::new(WriteHalf::from_std(a), capacity);
        (
            std::sync::Arc::new(outbox),
            UnixStream::from_std(b).unwrap(),
        )
    }

    /// Reads frames (length prefix + body) until `n` bodies are read.
    async fn read_frames(peer: &mut UnixStream, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < n {
            let len = peer.read_u32().await.unwrap() as usize;
            let mut body = vec![0u8; len];
            peer.read_exact(&mut body).await.unwrap();
            out.push(body);
        }
        out
    }

    fn body(i: u32, len: usize) -> Bytes {
        let mut v = i.to_be_bytes().to_vec();
        v.resize(len, (i % 251) as u8);
        Bytes::from(v)
    }

    #[tokio::test]
    async fn frames_keep_their_order_across_direct_and_queued_writes() {
        let (outbox, mut peer) = pair(1_000_000);
        let flusher = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.flush(None).await }
        });
        // 64 KiB frames overflow the socket buffer quickly, so later frames
        // queue behind partial writes the flusher completes.
        let n = 200u32;
        for i in 0..n {
            outbox.push(Frame::new(body(i, 64 * 1024))).unwrap();
        }
        let frames = read_frames(&mut peer, n as usize).await;
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(frame[..], body(i as u32, 64 * 1024)[..], "frame {i}");
        }
        outbox.finish();
        assert_eq!(flusher.await.unwrap(), Flushed::Done);
    }

    #[tokio::test]
    async fn try_send_refuses_at_the_bound_and_send_waits_for_room() {
        let capacity = 4;
        let (outbox, mut peer) = pair(capacity);
        let flusher = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.flush(None).await }
        });
        // Nobody reads: fill the socket, then the queue up to its bound.
        let mut sent = 0u32;
        while outbox.queued() < capacity {
            assert!(outbox.try_send(Frame::new(body(sent, 64 * 1024))).is_ok());
            sent += 1;
        }
        assert!(matches!(
            outbox.try_send(Frame::new(body(sent, 16))),
            Err(TrySend::Full(_))
        ));
        // `send` waits until the peer reads...
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(Frame::new(body(sent, 16))).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...and gets in once it does, after every earlier frame.
        let frames = read_frames(&mut peer, sent as usize + 1).await;
        assert!(waiting.await.unwrap());
        assert_eq!(frames.last().unwrap()[..], body(sent, 16)[..]);
        outbox.finish();
        assert_eq!(flusher.await.unwrap(), Flushed::Done);
    }

    #[tokio::test]
    async fn a_peer_that_reads_nothing_is_cut_off_after_the_timeout() {
        let (outbox, _peer) = pair(1024);
        let flusher = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.flush(Some(Duration::from_millis(50))).await }
        });
        while outbox.queued() == 0 {
            outbox.push(Frame::new(body(0, 64 * 1024))).unwrap();
        }
        assert_eq!(flusher.await.unwrap(), Flushed::TooSlow);
        assert!(outbox.gone.is_cancelled());
        assert!(outbox.push(Frame::new(body(1, 16))).is_err());
    }

    #[tokio::test]
    async fn a_closed_peer_closes_the_outbox() {
        let (outbox, peer) = pair(16);
        drop(peer);
        // The first write finds the peer gone (EPIPE; Rust ignores SIGPIPE).
        assert!(outbox.push(Frame::new(body(0, 16))).is_err());
        assert!(outbox.gone.is_cancelled());
        assert_eq!(outbox.flush(None).await, Flushed::Failed);
    }

    #[test]
    fn event_frame_matches_the_encoder() {
        for id in [0u64, 1, 127, 128, 300, u64::MAX] {
            for len in [0usize, 1, 127, 128, 1024, 70_000] {
                let event = Bytes::from(vec![7u8; len]);
                let frame = Frame::event(id, event.clone());
                let body = crate::protocol::encode::encode_event_frame(id, &event);
                let mut expected = (body.len() as u32).to_be_bytes().to_vec();
                expected.extend_from_slice(&body);
                let mut got = frame.head().to_vec();
                got.extend_from_slice(&frame.body);
                assert_eq!(got, expected, "id {id} len {len}");
            }
        }
    }
}
