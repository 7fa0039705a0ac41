//! A connection's bytes on the socket: its two halves, the outbox its
//! outgoing frames queue in, and the handles that send on it. Below both the
//! server (which reads requests and owns connections) and the broker (which
//! writes live events straight into outboxes), so neither imports the other.
//!
//! - [`socket`]: a connection's read half (registered for reading only)
//!   and write half (plain non-blocking writes from any thread).
//! - [`outbox`]: a bounded, ordered frame queue any thread appends to; a
//!   frame with nothing queued ahead is written on the appending thread (no
//!   task wake-up), the rest by the outbox's flusher task when the peer
//!   reads slowly.
//! - [`reply`]: [`Producer`], a handle that keeps the outbox open while
//!   anything may still send on it, and [`Reply`], the answer to one
//!   request (its id and its in-flight permit).

pub(crate) mod outbox;
pub(crate) mod reply;
pub(crate) mod socket;

pub(crate) use outbox::{Flushed, Frame, Outbox, TrySend};
pub(crate) use reply::{Producer, Reply};
