//! The stigmer side: frames (docs/PROTOCOL.md: u32 big-endian length, then a
//! protobuf body), the requests the scenarios send, and checks on replies.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
    AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_proto::daemon::{request, response, EventType, Request, Response, SubscribeRequest};

use crate::wire::{invalid, Parse};

/// Largest frame the bench accepts (the daemon's default limit).
const MAX_FRAME: usize = stigmer_proto::frame::DEFAULT_MAX_FRAME_LENGTH;

/// One frame body.
pub struct Frame;

impl Parse for Frame {
    type Out = Bytes;
    fn parse(buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!("frame of {len} bytes")));
        }
        if buf.len() < 4 + len {
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// A framed request.
pub fn frame(id: u64, command: request::Command) -> Vec<u8> {
    let req = Request {
        protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
        id,
        command: Some(command),
    };
    let len = req.encoded_len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    req.encode(&mut out).expect("a Vec grows as needed");
    out
}

/// A status whose encoding is exactly `bytes` long (an AI message padded to
/// size, phase IN_PROGRESS): the "1 KiB status" of every scenario.
pub fn status_of_size(bytes: usize) -> AgentExecutionStatus {
    let mut content_len = bytes.saturating_sub(16);
    loop {
        let status = AgentExecutionStatus {
            phase: ExecutionPhase::ExecutionInProgress as i32,
            messages: vec![AgentMessage {
                r#type: MessageType::MessageAi as i32,
                content: "x".repeat(content_len),
                ..Default::default()
            }],
            ..Default::default()
        };
        let len = status.encoded_len();
        if len == bytes || content_len == 0 {
            return status;
        }
        if len > bytes {
            content_len -= 1;
        } else {
            content_len += 1;
        }
    }
}

pub fn create(id: u64) -> Vec<u8> {
    frame(
        id,
        request::Command::Create(AgentExecution {
            spec: Some(AgentExecutionSpec {
                agent_id: "bench-agent".into(),
                message: "benchmark".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
}

pub fn update(id: u64, execution_id: &str, status: &AgentExecutionStatus) -> Vec<u8> {
    frame(
        id,
        request::Command::UpdateStatus(AgentExecutionUpdateStatusInput {
            execution_id: execution_id.to_string(),
            status: Some(status.clone()),
        }),
    )
}

pub fn subscribe(id: u64, execution_id: &str) -> Vec<u8> {
    frame(
        id,
        request::Command::Subscribe(SubscribeRequest {
            execution_id: execution_id.to_string(),
            from_revision: None,
        }),
    )
}

pub fn ping(id: u64) -> Vec<u8> {
    frame(id, request::Command::Ping(Default::default()))
}

fn decode(body: &[u8]) -> io::Result<Response> {
    Response::decode(body).map_err(|e| invalid(format!("reply does not decode: {e}")))
}

fn result(body: &[u8], want_id: u64) -> io::Result<response::Result> {
    let resp = decode(body)?;
    if resp.id != want_id {
        return Err(invalid(format!(
            "reply for id {} while waiting for {want_id}",
            resp.id
        )));
    }
    match resp.result {
        Some(response::Result::Error(e)) => {
            Err(invalid(format!("daemon error {}: {}", e.code, e.message)))
        }
        Some(r) => Ok(r),
        None => Err(invalid("empty reply")),
    }
}

/// The committed revision of a create/update reply.
pub fn execution_reply(body: &[u8], want_id: u64) -> io::Result<(String, u64)> {
    match result(body, want_id)? {
        response::Result::Execution(reply) => {
            let id = reply
                .execution
                .and_then(|e| e.metadata)
                .map(|m| m.id)
                .unwrap_or_default();
            Ok((id, reply.revision))
        }
        _ => Err(invalid("expected an execution reply")),
    }
}

/// The revision of a stream event (snapshot or update).
pub fn event_revision(body: &[u8], want_id: u64) -> io::Result<(EventType, u64)> {
    match result(body, want_id)? {
        response::Result::Event(event) => Ok((
            EventType::try_from(event.r#type).unwrap_or(EventType::Unspecified),
            event.revision,
        )),
        _ => Err(invalid("expected an event")),
    }
}

/// The last committed revision, from a ping reply.
pub fn ping_revision(body: &[u8], want_id: u64) -> io::Result<u64> {
    match result(body, want_id)? {
        response::Result::Pong(p) => Ok(p.revision),
        _ => Err(invalid("expected a pong")),
    }
}
