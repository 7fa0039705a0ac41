//! Golden frames shared by every client (tests/vectors/vectors.json).
//!
//! The file is generated from the Rust types below, so it is the encoding
//! prost produces; other clients (the Python one) decode each vector and
//! re-encode it to prove they speak the same bytes. This test checks that the
//! committed file still matches the generator, that every vector's length
//! prefix is right, and that decoding then re-encoding gives the same bytes.
//!
//! Regenerate after a deliberate change:
//! `STIGMER_REGEN_VECTORS=1 cargo test -p stigmer-client --test vectors`.

mod golden;

use std::collections::{BTreeMap, HashMap};

use golden::{from_hex, to_hex};
use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionId, AgentExecutionSpec, AgentExecutionStatus,
    AgentExecutionUpdateStatusInput, AgentMessage, ExecutionConfig, ExecutionPhase, MessageType,
    TodoItem, TodoStatus, ToolCall, ToolCallStatus,
};
use stigmer_client::proto::apiresource::{
    ApiResourceAudit, ApiResourceAuditInfo, ApiResourceId, ApiResourceMetadata,
};
use stigmer_client::proto::daemon::{op as delta_op, AppendRequest, AppendText, Op as DeltaOp};
use stigmer_client::proto::daemon::{
    request::Command, response::Result as Reply, CancelSubscriptionRequest,
    CancelSubscriptionResponse, Code, DaemonStatus, DeleteExecutionResponse, EndReason, Error,
    Event, EventType, ExecutionReply, ListExecutionsRequest, ListExecutionsResponse, PingRequest,
    PingResponse, Request, Response, StatusRequest, SubscribeRequest,
};
use stigmer_client::proto::wkt::{value::Kind, Struct, Timestamp, Value};
use stigmer_client::proto::Message;

/// The file's shape version (the `version` key). Never changes the shape.
const FILE_VERSION: u64 = 1;

/// One golden frame before encoding.
enum Msg {
    Request(Request),
    Response(Response),
}

struct Vector {
    name: &'static str,
    description: &'static str,
    msg: Msg,
}

fn req(id: u64, command: Command) -> Msg {
    Msg::Request(Request {
        protocol_version: 1,
        id,
        minimal_reply: false,
        command: Some(command),
    })
}

fn resp(id: u64, result: Reply) -> Msg {
    Msg::Response(Response {
        id,
        result: Some(result),
    })
}

fn string_struct(key: &str, value: &str) -> Struct {
    // One field only: Struct is a HashMap, whose iteration (and so encoding)
    // order is unspecified with more than one entry.
    let mut fields = HashMap::new();
    fields.insert(
        key.to_string(),
        Value {
            kind: Some(Kind::StringValue(value.to_string())),
        },
    );
    Struct { fields }
}

const EXEC_ID: &str = "aex-01jf8zq3k4m5n6p7q8r9s0t1v2";
const EXEC_ID_2: &str = "aex-01jf8zq9a0b1c2d3e4f5g6h7j8";
const T0: &str = "2025-01-02T03:04:05Z";
const T1: &str = "2025-01-02T03:04:09Z";

fn audit(seconds: i64) -> ApiResourceAudit {
    let info = |event: &str| ApiResourceAuditInfo {
        created_by: None,
        created_at: Some(Timestamp {
            seconds: 1_735_787_045,
            nanos: 0,
        }),
        updated_by: None,
        updated_at: Some(Timestamp {
            seconds,
            nanos: 500_000_000,
        }),
        event: event.to_string(),
    };
    ApiResourceAudit {
        spec_audit: Some(info("")),
        status_audit: Some(info("status_updated")),
    }
}

fn tool_call(status: ToolCallStatus) -> ToolCall {
    ToolCall {
        id: "call-1".into(),
        name: "read_file".into(),
        args: Some(string_struct("path", "README.md")),
        result: if status == ToolCallStatus::ToolCallCompleted {
            "# stigmer\n".into()
        } else {
            String::new()
        },
        status: status as i32,
        component_metadata: None,
        started_at: T0.into(),
        completed_at: if status == ToolCallStatus::ToolCallCompleted {
            T1.into()
        } else {
            String::new()
        },
        error: String::new(),
    }
}

/// A status as a runner sends it: messages, tool calls and one todo.
fn rich_status(phase: ExecutionPhase, tool: ToolCallStatus) -> AgentExecutionStatus {
    let mut todos = BTreeMap::new();
    todos.insert(
        "todo-1".to_string(),
        TodoItem {
            id: "todo-1".into(),
            content: "Read the README".into(),
            status: TodoStatus::TodoInProgress as i32,
            created_at: T0.into(),
            updated_at: T0.into(),
        },
    );
    AgentExecutionStatus {
        messages: vec![
            AgentMessage {
                r#type: MessageType::MessageHuman as i32,
                content: "Summarise the README".into(),
                timestamp: T0.into(),
                tool_calls: vec![],
                metadata: None,
            },
            AgentMessage {
                r#type: MessageType::MessageAi as i32,
                content: "Let me read it. ✓".into(),
                timestamp: T0.into(),
                tool_calls: vec![tool_call(tool)],
                metadata: Some(string_struct("model", "demo-1")),
            },
        ],
        phase: phase as i32,
        tool_calls: vec![tool_call(tool)],
        sub_agent_executions: vec![],
        error: String::new(),
        started_at: T0.into(),
        completed_at: String::new(),
        todos,
        callback_token: Default::default(),
        audit: None,
    }
}

/// An execution as the daemon stores and returns it.
fn stored(id: &str, phase: ExecutionPhase, tool: ToolCallStatus) -> AgentExecution {
    let mut status = rich_status(phase, tool);
    status.audit = Some(audit(1_735_787_049));
    if phase == ExecutionPhase::ExecutionCompleted {
        status.completed_at = T1.into();
    }
    AgentExecution {
        api_version: "agentic.stigmer.ai/v1".into(),
        kind: "AgentExecution".into(),
        metadata: Some(ApiResourceMetadata {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            session_id: "ses-1".into(),
            agent_id: "agent-1".into(),
            message: "Summarise the README".into(),
            ..Default::default()
        }),
        status: Some(status),
    }
}

fn pending(id: &str) -> AgentExecution {
    AgentExecution {
        api_version: "agentic.stigmer.ai/v1".into(),
        kind: "AgentExecution".into(),
        metadata: Some(ApiResourceMetadata {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            session_id: "ses-1".into(),
            agent_id: "agent-1".into(),
            message: "Summarise the README".into(),
            ..Default::default()
        }),
        status: Some(AgentExecutionStatus {
            phase: ExecutionPhase::ExecutionPending as i32,
            audit: Some(audit(1_735_787_045)),
            ..Default::default()
        }),
    }
}

fn event(
    kind: EventType,
    revision: u64,
    execution: Option<AgentExecution>,
    reason: EndReason,
    message: &str,
) -> Reply {
    Reply::Event(Event {
        r#type: kind as i32,
        revision,
        execution_id: EXEC_ID.into(),
        execution,
        reason: reason as i32,
        message: message.into(),
        ..Default::default()
    })
}

fn end(revision: u64, reason: EndReason, message: &str) -> Reply {
    event(EventType::EventEnd, revision, None, reason, message)
}

fn all_vectors() -> Vec<Vector> {
    use ExecutionPhase::*;
    use ToolCallStatus::*;
    let v = |name, description, msg| Vector {
        name,
        description,
        msg,
    };
    vec![
        // ---- requests, one per command ----
        v(
            "request_ping",
            "Ping on id 1 (the example frame of docs/PROTOCOL.md: 00000006 0801 1001 5200).",
            req(1, Command::Ping(PingRequest {})),
        ),
        v(
            "request_create",
            "Create with only the required spec fields and a session; the daemon assigns the id.",
            req(
                2,
                Command::Create(AgentExecution {
                    spec: Some(AgentExecutionSpec {
                        session_id: "ses-1".into(),
                        agent_id: "agent-1".into(),
                        message: "Summarise the README".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ),
        ),
        v(
            "request_create_with_id",
            "Create with a caller-chosen id and an execution config.",
            req(
                3,
                Command::Create(AgentExecution {
                    metadata: Some(ApiResourceMetadata {
                        id: EXEC_ID.into(),
                        ..Default::default()
                    }),
                    spec: Some(AgentExecutionSpec {
                        agent_id: "agent-1".into(),
                        message: "Summarise the README".into(),
                        execution_config: Some(ExecutionConfig {
                            model_name: "demo-1".into(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ),
        ),
        v(
            "request_update_status",
            "UpdateStatus with two messages (the AI one holding a tool call and metadata), a \
             top-level tool call, one todo, phase IN_PROGRESS and started_at.",
            req(
                4,
                Command::UpdateStatus(AgentExecutionUpdateStatusInput {
                    execution_id: EXEC_ID.into(),
                    status: Some(rich_status(ExecutionInProgress, ToolCallRunning)),
                }),
            ),
        ),
        v(
            "request_update_status_minimal",
            "UpdateStatus asking for a minimal reply (Request.minimal_reply = true).",
            Msg::Request(Request {
                protocol_version: 1,
                id: 5,
                minimal_reply: true,
                command: Some(Command::UpdateStatus(AgentExecutionUpdateStatusInput {
                    execution_id: EXEC_ID.into(),
                    status: Some(AgentExecutionStatus {
                        phase: ExecutionInProgress as i32,
                        ..Default::default()
                    }),
                })),
            }),
        ),
        v(
            "request_update_status_phase_only",
            "UpdateStatus that only sets the phase (FAILED) and an error.",
            req(
                5,
                Command::UpdateStatus(AgentExecutionUpdateStatusInput {
                    execution_id: EXEC_ID.into(),
                    status: Some(AgentExecutionStatus {
                        phase: ExecutionFailed as i32,
                        error: "model quota exceeded".into(),
                        ..Default::default()
                    }),
                }),
            ),
        ),
        v(
            "request_get",
            "Get an execution by id.",
            req(
                6,
                Command::Get(AgentExecutionId {
                    value: EXEC_ID.into(),
                }),
            ),
        ),
        v(
            "request_list",
            "List with every field: page size, a page token, a phase and a session filter.",
            req(
                7,
                Command::List(ListExecutionsRequest {
                    page_size: 50,
                    page_token: "b64-opaque-token".into(),
                    phase: ExecutionInProgress as i32,
                    session_id: "ses-1".into(),
                }),
            ),
        ),
        v(
            "request_list_default",
            "List with every field at its default (an empty body): the first page of 100.",
            req(8, Command::List(ListExecutionsRequest::default())),
        ),
        v(
            "request_delete",
            "Delete an execution by id.",
            req(
                9,
                Command::Delete(ApiResourceId {
                    value: EXEC_ID.into(),
                }),
            ),
        ),
        v(
            "request_subscribe",
            "Subscribe without from_revision: a snapshot, then updates.",
            req(
                10,
                Command::Subscribe(SubscribeRequest {
                    execution_id: EXEC_ID.into(),
                    from_revision: None,
                    ..Default::default()
                }),
            ),
        ),
        v(
            "request_subscribe_from_revision",
            "Subscribe resuming after revision 41.",
            req(
                11,
                Command::Subscribe(SubscribeRequest {
                    execution_id: EXEC_ID.into(),
                    from_revision: Some(41),
                    ..Default::default()
                }),
            ),
        ),
        v(
            "request_subscribe_from_revision_zero",
            "Subscribe with from_revision present and 0: an explicit-presence field, so the \
             zero is on the wire (every change, no snapshot).",
            req(
                12,
                Command::Subscribe(SubscribeRequest {
                    execution_id: EXEC_ID.into(),
                    from_revision: Some(0),
                    ..Default::default()
                }),
            ),
        ),
        v(
            "request_subscribe_deltas",
            "Subscribe with deltas, resuming after revision 41 from a state the client \
             holds: no initial state, then EVENT_DELTA events.",
            req(
                20,
                Command::Subscribe(SubscribeRequest {
                    execution_id: EXEC_ID.into(),
                    from_revision: Some(41),
                    deltas: true,
                    skip_initial_state: true,
                    ..Default::default()
                }),
            ),
        ),
        v(
            "request_append",
            "Append a token to message 0 at byte 5 (unicode text), then set the phase, \
             only if the execution is still at revision 41.",
            req(
                21,
                Command::Append(AppendRequest {
                    execution_id: EXEC_ID.into(),
                    expected_revision: Some(41),
                    ops: vec![
                        DeltaOp {
                            op: Some(delta_op::Op::AppendText(AppendText {
                                message_index: 0,
                                offset: 5,
                                text: ", wörld".into(),
                                r#type: 0,
                            })),
                        },
                        DeltaOp {
                            op: Some(delta_op::Op::SetPhase(ExecutionInProgress as i32)),
                        },
                    ],
                }),
            ),
        ),
        v(
            "request_cancel",
            "Cancel the stream opened by request 10.",
            req(
                13,
                Command::Cancel(CancelSubscriptionRequest {
                    subscription_id: 10,
                }),
            ),
        ),
        v(
            "request_status",
            "Status with the Prometheus exposition.",
            req(19, Command::Status(StatusRequest { prometheus: true })),
        ),
        // ---- replies ----
        v(
            "response_status",
            "DaemonStatus (one entry per map, so every encoder orders it alike).",
            resp(
                19,
                Reply::Status(DaemonStatus {
                    daemon_version: "0.1.0".into(),
                    protocol_version: 1,
                    uptime_seconds: 12.5,
                    socket: "/run/stigmer.sock".into(),
                    database: "/var/lib/stigmer/stigmer.db".into(),
                    durability: "normal".into(),
                    revision: 42,
                    connections: 3,
                    subscriptions: 2,
                    subscriptions_by_execution: [("aex-01jdx3k5m8q9r2s3t4v5w6x7y8".to_string(), 2)]
                        .into_iter()
                        .collect(),
                    committed_changes: 40,
                    commit_batches: 31,
                    commit_latency_p50_us: 21.5,
                    commit_latency_p99_us: 90.0,
                    broadcast_latency_p50_us: 7.25,
                    broadcast_latency_p99_us: 30.0,
                    resyncs: 1,
                    subscriber_overflows: 2,
                    slow_consumer_disconnects: 0,
                    rejected_connections: [("permission".to_string(), 1)].into_iter().collect(),
                    refused_writes: 4,
                    prometheus: "stigmer_revision 42\n".into(),
                    session_watches: 1,
                    all_watches: 1,
                    watches_by_session: [("sess-1".to_string(), 1)].into_iter().collect(),
                }),
            ),
        ),
        v(
            "response_pong",
            "Pong: protocol 1, daemon 0.1.0, last revision 42, 4 MiB frames.",
            resp(
                1,
                Reply::Pong(PingResponse {
                    protocol_version: 1,
                    daemon_version: "0.1.0".into(),
                    revision: 42,
                    max_frame_length: 4_194_304,
                }),
            ),
        ),
        v(
            "response_execution_created",
            "Reply to create: the stored execution (PENDING, audit stamps) at revision 1.",
            resp(
                2,
                Reply::Execution(ExecutionReply {
                    execution: Some(pending(EXEC_ID)),
                    revision: 1,
                    execution_id: EXEC_ID.into(),
                }),
            ),
        ),
        v(
            "response_execution_updated",
            "Reply to update_status: the merged execution at revision 2.",
            resp(
                4,
                Reply::Execution(ExecutionReply {
                    execution: Some(stored(EXEC_ID, ExecutionInProgress, ToolCallRunning)),
                    revision: 2,
                    execution_id: EXEC_ID.into(),
                }),
            ),
        ),
        v(
            "response_execution_minimal",
            "Minimal reply to update_status (Request.minimal_reply): the revision and the \
             execution id, no execution.",
            resp(
                5,
                Reply::Execution(ExecutionReply {
                    execution: None,
                    revision: 3,
                    execution_id: EXEC_ID.into(),
                }),
            ),
        ),
        v(
            "response_list",
            "A list page with two executions and a next page token.",
            resp(
                7,
                Reply::List(ListExecutionsResponse {
                    entries: vec![
                        stored(EXEC_ID, ExecutionInProgress, ToolCallRunning),
                        pending(EXEC_ID_2),
                    ],
                    next_page_token: "b64-next-token".into(),
                }),
            ),
        ),
        v(
            "response_list_last_page",
            "The last (here: empty) list page: no entries, no token (an empty body).",
            resp(8, Reply::List(ListExecutionsResponse::default())),
        ),
        v(
            "response_deleted",
            "Reply to delete: the deletion's revision.",
            resp(9, Reply::Deleted(DeleteExecutionResponse { revision: 43 })),
        ),
        v(
            "response_cancelled",
            "Reply to cancel (an empty body).",
            resp(13, Reply::Cancelled(CancelSubscriptionResponse {})),
        ),
        v(
            "response_error_not_found",
            "A request error: NOT_FOUND on request 6.",
            resp(
                6,
                Reply::Error(Error {
                    code: Code::NotFound as i32,
                    message: format!("execution {EXEC_ID} not found"),
                }),
            ),
        ),
        v(
            "response_error_failed_precondition",
            "A request error: an update of an execution whose phase is final.",
            resp(
                5,
                Reply::Error(Error {
                    code: Code::FailedPrecondition as i32,
                    message: format!(
                        "execution {EXEC_ID} is EXECUTION_COMPLETED; its phase is final"
                    ),
                }),
            ),
        ),
        v(
            "response_connection_error",
            "A connection error (id 0): frame too long, sent just before the daemon closes.",
            resp(
                0,
                Reply::Error(Error {
                    code: Code::ResourceExhausted as i32,
                    message: "frame of 5000000 bytes exceeds the limit of 4194304".into(),
                }),
            ),
        ),
        // ---- events ----
        v(
            "response_event_snapshot",
            "First event of a stream without from_revision: the whole state at revision 1.",
            resp(
                10,
                event(
                    EventType::EventSnapshot,
                    1,
                    Some(pending(EXEC_ID)),
                    EndReason::Unspecified,
                    "",
                ),
            ),
        ),
        v(
            "response_event_update",
            "One committed change: the whole execution at revision 2.",
            resp(
                10,
                event(
                    EventType::EventUpdate,
                    2,
                    Some(stored(EXEC_ID, ExecutionInProgress, ToolCallRunning)),
                    EndReason::Unspecified,
                    "",
                ),
            ),
        ),
        v(
            "response_event_delta",
            "A change as its operations on a deltas stream: text appended and the commit \
             stamp, at revision 42 on top of revision 41; no execution and no execution id.",
            resp(
                20,
                Reply::Event(Event {
                    r#type: EventType::EventDelta as i32,
                    revision: 42,
                    ops: vec![
                        DeltaOp {
                            op: Some(delta_op::Op::AppendText(AppendText {
                                message_index: 0,
                                offset: 5,
                                text: ", wörld".into(),
                                r#type: 0,
                            })),
                        },
                        DeltaOp {
                            op: Some(delta_op::Op::Stamp(Timestamp {
                                seconds: 1_700_000_000,
                                nanos: 5000,
                            })),
                        },
                    ],
                    prev_revision: 41,
                    ..Default::default()
                }),
            ),
        ),
        v(
            "response_event_update_completed",
            "The terminal update (COMPLETED, tool call completed) at revision 3.",
            resp(
                10,
                event(
                    EventType::EventUpdate,
                    3,
                    Some(stored(EXEC_ID, ExecutionCompleted, ToolCallCompleted)),
                    EndReason::Unspecified,
                    "",
                ),
            ),
        ),
        v(
            "response_event_resync",
            "The history no longer reached back: the whole current state at revision 40.",
            resp(
                11,
                event(
                    EventType::EventResync,
                    40,
                    Some(stored(EXEC_ID, ExecutionInProgress, ToolCallRunning)),
                    EndReason::Unspecified,
                    "",
                ),
            ),
        ),
        v(
            "response_event_end_terminal",
            "End: the execution reached a terminal phase (its update, revision 3, came first).",
            resp(
                10,
                end(
                    3,
                    EndReason::Terminal,
                    "execution reached EXECUTION_COMPLETED",
                ),
            ),
        ),
        v(
            "response_event_end_deleted",
            "End: the execution was deleted at revision 43.",
            resp(10, end(43, EndReason::Deleted, "execution deleted")),
        ),
        v(
            "response_event_end_cancelled",
            "End: the client cancelled the stream.",
            resp(10, end(2, EndReason::Cancelled, "")),
        ),
        v(
            "response_event_end_shutdown",
            "End: the daemon is stopping; resume from revision 2.",
            resp(10, end(2, EndReason::Shutdown, "daemon shutting down")),
        ),
        v(
            "response_event_end_slow_consumer",
            "End: the subscriber did not read for too long; resume from revision 2.",
            resp(10, end(2, EndReason::SlowConsumer, "")),
        ),
    ]
}

fn encode(msg: &Msg) -> Vec<u8> {
    let body = match msg {
        Msg::Request(r) => r.encode_to_vec(),
        Msg::Response(r) => r.encode_to_vec(),
    };
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The file's text, with keys in a reader-friendly order
/// (name, message, description, frame_hex).
fn render_file(vectors: &[Vector]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut out = format!("{{\n  \"version\": {FILE_VERSION},\n  \"vectors\": [\n");
    for (i, v) in vectors.iter().enumerate() {
        let message = match v.msg {
            Msg::Request(_) => "Request",
            Msg::Response(_) => "Response",
        };
        out.push_str(&format!(
            "    {{\n      \"name\": {},\n      \"message\": {},\n      \"description\": {},\n      \"frame_hex\": {}\n    }}{}\n",
            q(v.name),
            q(message),
            q(v.description),
            q(&to_hex(&encode(&v.msg))),
            if i + 1 < vectors.len() { "," } else { "" }
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[test]
fn vectors_file_matches_generator_and_round_trips() {
    let generated = render_file(&all_vectors());
    let (text, file) = golden::load("vectors.json", &generated);
    assert_eq!(file["version"], FILE_VERSION);
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    let mut names = std::collections::HashSet::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        assert!(names.insert(name.to_string()), "duplicate vector {name}");
        assert!(!v["description"].as_str().unwrap().is_empty());
        let hex = v["frame_hex"].as_str().unwrap();
        assert_eq!(hex, hex.to_lowercase(), "{name}: hex must be lowercase");
        let frame = from_hex(hex);
        assert!(frame.len() >= 4, "{name}: no length prefix");
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let body = &frame[4..];
        assert_eq!(len, body.len(), "{name}: length prefix");
        let reencoded = match v["message"].as_str().unwrap() {
            "Request" => {
                let m = Request::decode(body).unwrap();
                assert_eq!(m.protocol_version, 1, "{name}");
                assert_ne!(m.id, 0, "{name}: request ids are non-zero");
                assert!(m.command.is_some(), "{name}");
                m.encode_to_vec()
            }
            "Response" => {
                let m = Response::decode(body).unwrap();
                assert!(m.result.is_some(), "{name}");
                m.encode_to_vec()
            }
            other => panic!("{name}: unknown message {other}"),
        };
        assert_eq!(reencoded, body, "{name}: re-encoding differs");
    }
    assert_eq!(
        text, generated,
        "tests/vectors/vectors.json is stale: regenerate with STIGMER_REGEN_VECTORS=1"
    );
}

#[test]
fn ping_vector_is_the_documented_example() {
    let frame = encode(&req(1, Command::Ping(PingRequest {})));
    assert_eq!(to_hex(&frame), "00000006080110015200");
}

#[test]
fn vectors_cover_every_command_reply_and_event() {
    let vectors = all_vectors();
    let mut commands = std::collections::HashSet::new();
    let mut replies = std::collections::HashSet::new();
    let mut events = std::collections::HashSet::new();
    let mut reasons = std::collections::HashSet::new();
    for v in &vectors {
        match &v.msg {
            Msg::Request(r) => {
                let c = r.command.as_ref().unwrap();
                commands.insert(std::mem::discriminant(c));
            }
            Msg::Response(r) => {
                let res = r.result.as_ref().unwrap();
                replies.insert(std::mem::discriminant(res));
                if let Reply::Event(e) = res {
                    events.insert(e.r#type);
                    if e.r#type == EventType::EventEnd as i32 {
                        reasons.insert(e.reason);
                    }
                }
            }
        }
    }
    assert_eq!(commands.len(), 10, "every Request command");
    assert_eq!(replies.len(), 8, "every Response result");
    assert_eq!(events.len(), 5, "every event type");
    assert_eq!(reasons.len(), 5, "every end reason");
}
