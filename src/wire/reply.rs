//! The handles commands, streams and the writer thread send through: a
//! [`Producer`] on a connection's outbox, and a [`Reply`] for one request.
//!
//! Why handles and not the connection itself: a command needs only to
//! answer, a stream only to send frames, and the writer thread only to queue
//! an acknowledgement after COMMIT. Giving each the narrow handle keeps the
//! connection (the server's business) out of their code.

use std::sync::Arc;

use bytes::Bytes;
use stigmer_proto::daemon::response;
use tokio::sync::OwnedSemaphorePermit;

use super::outbox::{Closed, Frame, Outbox};
use crate::protocol::{encode_response, ApiError};

/// A handle on a connection's outbox for anything that may still send on it
/// (the reader loop, its streams, writes waiting for their commit). Clones
/// share one finisher: when the last is dropped the outbox is finished, so
/// its flusher writes what is left and stops.
#[derive(Clone)]
pub(crate) struct Producer(Arc<Finisher>);

/// Finishes the outbox when the last [`Producer`] goes.
struct Finisher(Arc<Outbox>);

impl Drop for Finisher {
    fn drop(&mut self) {
        self.0.finish();
    }
}

impl Producer {
    /// The producers' handle on `outbox`.
    pub(crate) fn new(outbox: Arc<Outbox>) -> Self {
        Producer(Arc::new(Finisher(outbox)))
    }

    /// The outbox, for the broker's direct delivery of live events.
    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.0 .0
    }

    /// The handle for answering request `id`, which holds `permit` (one of
    /// the connection's `--connection-queue` in-flight slots) until its
    /// reply is written.
    pub(crate) fn reply_to(&self, id: u64, permit: OwnedSemaphorePermit) -> Reply {
        Reply {
            producer: self.clone(),
            permit,
            id,
        }
    }

    /// Queues a frame from a task other than the reader, waiting for room.
    /// Fails once the peer is gone.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), Closed> {
        // Waits while the peer is slow to read; only this task waits.
        self.outbox().send(frame).await
    }
}

/// The answer to one request: the connection it goes to, the request's id,
/// and the in-flight permit it holds until written (a peer that does not
/// read its replies stops being read).
pub struct Reply {
    producer: Producer,
    permit: OwnedSemaphorePermit,
    id: u64,
}

impl Reply {
    /// The request's id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The connection's producer handle (for a stream this request opens).
    pub(crate) fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Queues an encoded `Response` without waiting (from the reader loop,
    /// or from the writer thread right after a commit), written at once when
    /// nothing is queued ahead.
    pub(crate) fn send(self, body: Bytes) {
        // Fails only once the peer is gone: nobody would read the reply.
        let _ = self
            .producer
            .outbox()
            .push(Frame::new(body).with_permit(self.permit));
    }

    /// Queues a result or an error (see [`Reply::send`]).
    pub(crate) fn result(self, result: Result<response::Result, ApiError>) {
        let result = result.unwrap_or_else(|err| response::Result::Error(err.to_proto()));
        let body = encode_response(self.id, result);
        self.send(body);
    }

    /// Queues an error reply.
    pub(crate) fn error(self, err: ApiError) {
        self.result(Err(err));
    }

    /// Frees the in-flight permit without a reply: the request opened a
    /// stream, whose events (sent by the stream) are its answer.
    pub(crate) fn into_stream(self) -> Producer {
        self.producer
    }
}
