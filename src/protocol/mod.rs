//! The protocol layer: decoding request frames and encoding replies and
//! events, and the one error type every answer uses. Nothing here does I/O;
//! the server reads and writes frames with `stigmer_proto::frame::codec`.

mod encode;
mod status;

pub use encode::{
    decode_request, encode_event_frame, encode_execution_reply, encode_response,
    encode_update_event, put_event_head, DecodeError, EVENT_HEAD_MAX,
};
pub use status::{Code, Status};
