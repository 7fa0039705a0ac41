//! The protocol layer: decoding request frames, encoding replies and events,
//! and the one error type every answer uses. Nothing here does I/O; the
//! server reads and writes frames with `stigmer_proto::frame::codec`.
//!
//! - [`decode`]: a frame body to a `Request` (recovering the id of a
//!   malformed one).
//! - [`encode`]: replies, and events encoded once per change and shared.
//! - [`error`]: [`ApiError`], a canonical code and a message.

pub(crate) mod decode;
pub(crate) mod encode;
mod error;

pub(crate) use decode::{decode_request, DecodeError};
pub(crate) use encode::{
    encode_delta_event, encode_execution_reply, encode_response, encode_state_event,
    encode_update_event, put_event_head, EVENT_HEAD_MAX,
};
pub(crate) use error::{quote, ApiError, Code};
