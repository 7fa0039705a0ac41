//! Reply and event encoding.
//!
//! Events are the hot path of fan-out: one committed change goes to every
//! subscriber, each under its own request id. The `Event` message is encoded
//! once per change ([`crate::model::Change::update_event_bytes`]) and each
//! subscriber's `Response` is built by prefixing that subscriber's `id` field
//! to the shared bytes ([`encode_event_frame`]): protobuf fields may appear
//! in any order, so this is exactly the encoding of `Response { id, event }`.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use stigmer_proto::daemon::{response, Event, EventType, Op, Response};

/// Encodes a whole `Response` body.
pub fn encode_response(id: u64, result: response::Result) -> Bytes {
    let resp = Response {
        id,
        result: Some(result),
    };
    Bytes::from(resp.encode_to_vec())
}

/// Writes a varint field (key, then value).
fn put_varint(buf: &mut impl BufMut, tag: u32, value: u64) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(tag, WireType::Varint, buf);
    encode_varint(value, buf);
}

/// Writes the key and length of a length-delimited field; its `len` bytes
/// follow.
fn put_len(buf: &mut impl BufMut, tag: u32, len: usize) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Writes a length-delimited field whose bytes are already encoded.
fn put_bytes(buf: &mut BytesMut, tag: u32, bytes: &[u8]) {
    put_len(buf, tag, bytes.len());
    buf.put_slice(bytes);
}

/// Field tags of `Response` used by [`encode_event_frame`] (see
/// daemon.proto): `id = 1` (varint) and `event = 16` (length-delimited).
const RESPONSE_ID_TAG: u32 = 1;
const RESPONSE_EVENT_TAG: u32 = 16;

/// The body of `Response { id, event }` where `event` is already encoded.
pub fn encode_event_frame(id: u64, event: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(event.len() + EVENT_HEAD_MAX);
    put_event_head(&mut buf, id, event.len());
    buf.put_slice(event);
    buf.freeze()
}

/// The longest head [`put_event_head`] writes: the id's key and a 10-byte
/// varint, the event's 2-byte key and a 5-byte length.
pub(crate) const EVENT_HEAD_MAX: usize = 1 + 10 + 2 + 5;

/// Writes the head of `Response { id, event }`, the `event_len` bytes of the
/// encoded event to follow: lets a frame carry an event shared by every
/// subscriber without copying it (`server::outbox::Frame::event`).
pub(crate) fn put_event_head(buf: &mut impl BufMut, id: u64, event_len: usize) {
    put_varint(buf, RESPONSE_ID_TAG, id);
    put_len(buf, RESPONSE_EVENT_TAG, event_len);
}

/// Field tags of `Event` (see daemon.proto) used by [`encode_update_event`].
const EVENT_TYPE_TAG: u32 = 1;
const EVENT_REVISION_TAG: u32 = 2;
const EVENT_EXECUTION_ID_TAG: u32 = 3;
const EVENT_EXECUTION_TAG: u32 = 4;

/// The body of `Event { type: UPDATE, revision, execution_id, execution }`
/// where `execution` is the state already encoded (the bytes the writer
/// stored): the same bytes prost would produce, without encoding the
/// execution a second time. Fields are written in tag order and defaults
/// omitted, as prost does.
pub fn encode_update_event(revision: u64, execution_id: &str, execution: &[u8]) -> Bytes {
    encode_state_event(
        EventType::EventUpdate,
        revision,
        execution_id,
        Some(execution),
    )
}

/// The body of `Event { type, revision, execution_id, execution }` with the
/// execution already encoded (absent for a DELETED), as
/// [`encode_update_event`] writes it.
pub(crate) fn encode_state_event(
    kind: EventType,
    revision: u64,
    execution_id: &str,
    execution: Option<&[u8]>,
) -> Bytes {
    let size = execution.map_or(0, <[u8]>::len) + execution_id.len() + 32;
    let mut buf = BytesMut::with_capacity(size);
    put_varint(&mut buf, EVENT_TYPE_TAG, kind as u64);
    if revision != 0 {
        put_varint(&mut buf, EVENT_REVISION_TAG, revision);
    }
    if !execution_id.is_empty() {
        put_bytes(&mut buf, EVENT_EXECUTION_ID_TAG, execution_id.as_bytes());
    }
    if let Some(execution) = execution {
        put_bytes(&mut buf, EVENT_EXECUTION_TAG, execution);
    }
    buf.freeze()
}

/// The body of `Event { type: DELTA, revision, execution_id, ops,
/// prev_revision }`: a change as its operations, for delta streams.
/// `execution_id` is left out on a one-execution stream (`None`): the
/// stream names its execution, and the id (30 bytes) would be most of a
/// one-token event's envelope. A many-execution stream needs it.
pub(crate) fn encode_delta_event(
    revision: u64,
    prev_revision: u64,
    ops: &[Op],
    execution_id: Option<&str>,
) -> Bytes {
    let event = Event {
        r#type: EventType::EventDelta as i32,
        revision,
        execution_id: execution_id.unwrap_or_default().to_string(),
        ops: ops.to_vec(),
        prev_revision,
        ..Default::default()
    };
    Bytes::from(event.encode_to_vec())
}

/// Field tags of `Response.execution` (11) and `ExecutionReply` (see
/// daemon.proto), used by [`encode_execution_reply`].
const RESPONSE_EXECUTION_TAG: u32 = 11;
const REPLY_EXECUTION_TAG: u32 = 1;
const REPLY_REVISION_TAG: u32 = 2;
const REPLY_EXECUTION_ID_TAG: u32 = 3;

/// The body of `Response { id, execution: ExecutionReply { execution,
/// revision, execution_id } }` from an already encoded execution: the reply
/// to create and update_status without cloning and re-encoding the state the
/// writer has just encoded (`store::State::encoded`). `execution` is `None`
/// for a minimal reply (`Request.minimal_reply`). Fields in tag order,
/// defaults omitted, as prost writes them.
pub fn encode_execution_reply(
    id: u64,
    revision: u64,
    execution_id: &str,
    execution: Option<&[u8]>,
) -> Bytes {
    use prost::encoding::{encoded_len_varint, key_len};
    let bytes_len = |tag: u32, len: usize| key_len(tag) + encoded_len_varint(len as u64) + len;
    let mut inner_len = execution.map_or(0, |e| bytes_len(REPLY_EXECUTION_TAG, e.len()));
    if revision != 0 {
        inner_len += key_len(REPLY_REVISION_TAG) + encoded_len_varint(revision);
    }
    if !execution_id.is_empty() {
        inner_len += bytes_len(REPLY_EXECUTION_ID_TAG, execution_id.len());
    }
    let mut buf = BytesMut::with_capacity(inner_len + 24);
    if id != 0 {
        put_varint(&mut buf, RESPONSE_ID_TAG, id);
    }
    put_len(&mut buf, RESPONSE_EXECUTION_TAG, inner_len);
    if let Some(execution) = execution {
        put_bytes(&mut buf, REPLY_EXECUTION_TAG, execution);
    }
    if revision != 0 {
        put_varint(&mut buf, REPLY_REVISION_TAG, revision);
    }
    if !execution_id.is_empty() {
        put_bytes(&mut buf, REPLY_EXECUTION_ID_TAG, execution_id.as_bytes());
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_proto::daemon::{Event, EventType};

    #[test]
    fn event_frame_matches_prost_encoding() {
        let event = Event {
            r#type: EventType::EventUpdate as i32,
            revision: 42,
            execution_id: "aex-x".into(),
            ..Default::default()
        };
        let ours = encode_event_frame(7, &event.encode_to_vec());
        let theirs = encode_response(7, response::Result::Event(event));
        assert_eq!(ours, theirs);
    }

    fn sample_execution() -> stigmer_proto::agentexecution::AgentExecution {
        use stigmer_proto::agentexecution::{
            AgentExecution, AgentExecutionStatus, AgentMessage, ExecutionPhase,
        };
        AgentExecution {
            kind: "AgentExecution".into(),
            status: Some(AgentExecutionStatus {
                phase: ExecutionPhase::ExecutionInProgress as i32,
                messages: vec![AgentMessage {
                    content: "x".repeat(300),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn update_event_matches_prost_encoding() {
        for (revision, id, execution) in [
            (42, "aex-x", sample_execution()),
            (1, "", Default::default()),
            (u64::MAX, "aex-y", sample_execution()),
        ] {
            let bytes = execution.encode_to_vec();
            let theirs = Event {
                r#type: EventType::EventUpdate as i32,
                revision,
                execution_id: id.into(),
                execution: Some(execution),
                ..Default::default()
            }
            .encode_to_vec();
            assert_eq!(encode_update_event(revision, id, &bytes), theirs);
        }
    }

    #[test]
    fn execution_reply_matches_prost_encoding() {
        use stigmer_proto::daemon::ExecutionReply;
        for (id, revision, execution_id, execution) in [
            (7, 42, "aex-x", Some(sample_execution())),
            (1, 0, "", Some(Default::default())),
            (u64::MAX, 300, "aex-y", Some(sample_execution())),
            // Minimal replies.
            (7, 42, "aex-x", None),
            (2, 0, "", None),
        ] {
            let bytes = execution.as_ref().map(Message::encode_to_vec);
            let theirs = encode_response(
                id,
                response::Result::Execution(ExecutionReply {
                    execution,
                    revision,
                    execution_id: execution_id.into(),
                }),
            );
            let ours = encode_execution_reply(id, revision, execution_id, bytes.as_deref());
            assert_eq!(ours, theirs);
        }
    }
}
