//! The stigmer side: frames (docs/PROTOCOL.md: u32 big-endian length, then a
//! protobuf body), the requests the scenarios send, and checks on replies.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use stigmer_proto::agentexecution::AgentExecutionId;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
    AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_proto::daemon::{
    op, request, response, AppendRequest, AppendText, Event, EventType, Op, Request, Response,
    SubscribeRequest,
};

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
        minimal_reply: false,
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
    create_in_session(id, "")
}

/// A create whose `spec.session_id` is `session` (the watch_all scenario's
/// session watchers follow one session each).
pub fn create_in_session(id: u64, session: &str) -> Vec<u8> {
    frame(
        id,
        request::Command::Create(AgentExecution {
            spec: Some(AgentExecutionSpec {
                agent_id: "bench-agent".into(),
                message: "benchmark".into(),
                session_id: session.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
}

/// A writer's `update_status` requests: the command (execution id and
/// status) encoded once, each request only its envelope (version, a new id,
/// `minimal_reply`) in front of those bytes. The Redis side likewise sends
/// one pre-built XADD, and a runner holds its status encoded anyway. The
/// requests ask for minimal replies (revision and id, as XADD answers with
/// the entry id) rather than the whole execution echoed back.
pub struct Updates {
    /// `update_status` (field 12) with its key and length.
    command: Vec<u8>,
    frame: Vec<u8>,
}

impl Updates {
    pub fn new(execution_id: &str, status: &AgentExecutionStatus) -> Updates {
        let command = request::Command::UpdateStatus(AgentExecutionUpdateStatusInput {
            execution_id: execution_id.to_string(),
            status: Some(status.clone()),
        });
        let mut encoded = Vec::new();
        command.encode(&mut encoded);
        Updates {
            command: encoded,
            frame: Vec::new(),
        }
    }

    /// The encoded command, for a caller that rewrites bytes of the status
    /// in place between requests (the watch_all scenario's send stamp).
    pub fn command_mut(&mut self) -> &mut [u8] {
        &mut self.command
    }

    /// The framed request with this id: the same bytes prost writes for the
    /// whole `Request` (fields in tag order; the command's tag is the largest).
    pub fn frame(&mut self, id: u64) -> &[u8] {
        let head = Request {
            protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
            id,
            minimal_reply: true,
            command: None,
        };
        let len = head.encoded_len() + self.command.len();
        self.frame.clear();
        self.frame.extend_from_slice(&(len as u32).to_be_bytes());
        head.encode(&mut self.frame).expect("a Vec grows as needed");
        self.frame.extend_from_slice(&self.command);
        &self.frame
    }
}

/// A many-execution stream (docs/PROTOCOL.md, "Many-execution streams"):
/// every execution of `session`, or of the machine when `session` is `None`;
/// whole states.
pub fn watch(id: u64, session: Option<&str>) -> Vec<u8> {
    frame(
        id,
        request::Command::Subscribe(SubscribeRequest {
            session_id: session.unwrap_or_default().to_string(),
            all: session.is_none(),
            ..Default::default()
        }),
    )
}

pub fn subscribe(id: u64, execution_id: &str) -> Vec<u8> {
    frame(
        id,
        request::Command::Subscribe(SubscribeRequest {
            execution_id: execution_id.to_string(),
            from_revision: None,
            ..Default::default()
        }),
    )
}

/// A subscription that opts in to DELTA events (`SubscribeRequest.deltas`):
/// a SNAPSHOT, then each change as its operations.
pub fn subscribe_deltas(id: u64, execution_id: &str) -> Vec<u8> {
    frame(
        id,
        request::Command::Subscribe(SubscribeRequest {
            execution_id: execution_id.to_string(),
            deltas: true,
            ..Default::default()
        }),
    )
}

pub fn get(id: u64, execution_id: &str) -> Vec<u8> {
    frame(
        id,
        request::Command::Get(AgentExecutionId {
            value: execution_id.to_string(),
        }),
    )
}

/// A runner that reports upstream's way (the transcript scenario's
/// "upstream" mode): the whole cumulative status with every update, one AI
/// message growing. The status is kept in its input and encoded straight
/// into the frame (`Request` field 12), with `minimal_reply` set, as
/// `Updates` frames do.
pub struct StatusUpdates {
    input: AgentExecutionUpdateStatusInput,
    frame: Vec<u8>,
}

/// `Request.update_status`'s field number.
const UPDATE_STATUS_FIELD: u32 = 12;

impl StatusUpdates {
    pub fn new(execution_id: &str) -> StatusUpdates {
        StatusUpdates {
            input: AgentExecutionUpdateStatusInput {
                execution_id: execution_id.to_string(),
                status: Some(transcript_status()),
            },
            frame: Vec::new(),
        }
    }

    /// The status as it stands.
    #[cfg(test)]
    pub fn status(&self) -> &AgentExecutionStatus {
        self.input.status.as_ref().expect("set in new")
    }

    fn status_mut(&mut self) -> &mut AgentExecutionStatus {
        self.input.status.as_mut().expect("set in new")
    }

    /// A token: appended to the AI message's content.
    pub fn push(&mut self, token: &str) {
        self.status_mut().messages[0].content.push_str(token);
    }

    pub fn set_phase(&mut self, phase: ExecutionPhase) {
        self.status_mut().phase = phase as i32;
    }

    /// The framed request with this id: what prost writes for the whole
    /// `Request` (the command's tag is the largest, so it comes last).
    pub fn frame(&mut self, id: u64) -> &[u8] {
        let head = Request {
            protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
            id,
            minimal_reply: true,
            command: None,
        };
        let len = head.encoded_len()
            + prost::encoding::message::encoded_len(UPDATE_STATUS_FIELD, &self.input);
        self.frame.clear();
        self.frame.reserve(4 + len);
        self.frame.extend_from_slice(&(len as u32).to_be_bytes());
        head.encode(&mut self.frame).expect("a Vec grows as needed");
        prost::encoding::message::encode(UPDATE_STATUS_FIELD, &self.input, &mut self.frame);
        &self.frame
    }
}

/// The transcript scenario's status before its first token: in progress,
/// one AI message (empty). Both modes and the Redis side have this shape.
pub fn transcript_status() -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A runner that reports with `append` (the transcript scenario's
/// "append" mode): one `AppendText` per token at the offset it tracks (the
/// UTF-8 length of the AI message so far). The first append also sets the
/// phase, so the state has the same shape as in upstream's mode.
pub struct Appends {
    execution_id: String,
    offset: u64,
    frame: Vec<u8>,
}

impl Appends {
    pub fn new(execution_id: &str) -> Appends {
        Appends {
            execution_id: execution_id.to_string(),
            offset: 0,
            frame: Vec::new(),
        }
    }

    /// The framed `append` of one token (message 0, at the tracked offset).
    pub fn token(&mut self, id: u64, text: &str) -> &[u8] {
        let mut ops = Vec::with_capacity(2);
        if self.offset == 0 {
            ops.push(Op {
                op: Some(op::Op::SetPhase(ExecutionPhase::ExecutionInProgress as i32)),
            });
        }
        ops.push(Op {
            op: Some(op::Op::AppendText(AppendText {
                message_index: 0,
                offset: self.offset,
                text: text.to_string(),
                r#type: MessageType::MessageAi as i32,
            })),
        });
        self.offset += text.len() as u64;
        self.ops(id, ops)
    }

    /// The framed `append` that ends the run.
    pub fn finish(&mut self, id: u64, phase: ExecutionPhase) -> &[u8] {
        let ops = vec![Op {
            op: Some(op::Op::SetPhase(phase as i32)),
        }];
        self.ops(id, ops)
    }

    fn ops(&mut self, id: u64, ops: Vec<Op>) -> &[u8] {
        let req = Request {
            protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
            id,
            minimal_reply: false,
            command: Some(request::Command::Append(AppendRequest {
                execution_id: self.execution_id.clone(),
                expected_revision: None,
                ops,
            })),
        };
        self.frame.clear();
        self.frame
            .extend_from_slice(&(req.encoded_len() as u32).to_be_bytes());
        req.encode(&mut self.frame).expect("a Vec grows as needed");
        &self.frame
    }
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
        response::Result::Execution(reply) => Ok((reply.execution_id, reply.revision)),
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

/// One event of a stream, whole (the transcript's delta subscribers read
/// the operations).
pub fn event(body: &[u8], want_id: u64) -> io::Result<Event> {
    match result(body, want_id)? {
        response::Result::Event(event) => Ok(event),
        _ => Err(invalid("expected an event")),
    }
}

/// The whole execution of a `get` reply.
pub fn execution(body: &[u8], want_id: u64) -> io::Result<AgentExecution> {
    match result(body, want_id)? {
        response::Result::Execution(reply) => reply
            .execution
            .ok_or_else(|| invalid("a get reply without the execution")),
        _ => Err(invalid("expected an execution reply")),
    }
}

/// The last committed revision, from a ping reply.
pub fn ping_revision(body: &[u8], want_id: u64) -> io::Result<u64> {
    match result(body, want_id)? {
        response::Result::Pong(p) => Ok(p.revision),
        _ => Err(invalid("expected a pong")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_frames_are_what_prost_writes() {
        let status = status_of_size(1024);
        let mut updates = Updates::new("aex-1", &status);
        for id in [1, 300, u64::MAX] {
            let whole = Request {
                protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
                id,
                minimal_reply: true,
                command: Some(request::Command::UpdateStatus(
                    AgentExecutionUpdateStatusInput {
                        execution_id: "aex-1".into(),
                        status: Some(status.clone()),
                    },
                )),
            };
            let mut want = (whole.encoded_len() as u32).to_be_bytes().to_vec();
            want.extend_from_slice(&whole.encode_to_vec());
            assert_eq!(updates.frame(id), &want[..]);
        }
    }

    #[test]
    fn status_update_frames_are_what_prost_writes() {
        let mut updates = StatusUpdates::new("aex-1");
        for (id, token) in [(1, "the "), (300, "model "), (u64::MAX, "é ")] {
            updates.push(token);
            let whole = Request {
                protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
                id,
                minimal_reply: true,
                command: Some(request::Command::UpdateStatus(
                    AgentExecutionUpdateStatusInput {
                        execution_id: "aex-1".into(),
                        status: Some(updates.status().clone()),
                    },
                )),
            };
            let mut want = (whole.encoded_len() as u32).to_be_bytes().to_vec();
            want.extend_from_slice(&whole.encode_to_vec());
            assert_eq!(updates.frame(id), &want[..]);
        }
        assert_eq!(updates.status().messages[0].content, "the model é ");
    }

    /// Offsets are the UTF-8 byte length so far; the first append sets the
    /// phase too.
    #[test]
    fn appends_track_the_offset() {
        let mut appends = Appends::new("aex-1");
        let mut offsets = Vec::new();
        for (id, token) in [(1, "é "), (2, "run "), (3, "x")] {
            let frame = appends.token(id, token).to_vec();
            let req = Request::decode(&frame[4..]).unwrap();
            assert_eq!(req.id, id);
            let Some(request::Command::Append(a)) = req.command else {
                panic!("not an append");
            };
            assert_eq!(a.execution_id, "aex-1");
            assert_eq!(a.ops.len(), if id == 1 { 2 } else { 1 });
            let Some(op::Op::AppendText(t)) = &a.ops.last().unwrap().op else {
                panic!("not an append_text");
            };
            assert_eq!(t.text, token);
            offsets.push(t.offset);
        }
        assert_eq!(offsets, [0, 3, 7]);
    }
}
