//! The catalogue of golden frames (`all_vectors`): every command, reply,
//! event type and end reason of the protocol, in the order
//! tests/vectors/vectors.json lists them.

use stigmer_client::proto::agentexecution::{
    AgentExecution, AgentExecutionId, AgentExecutionSpec, AgentExecutionStatus,
    AgentExecutionUpdateStatusInput, ExecutionConfig, ExecutionPhase, ToolCallStatus,
};
use stigmer_client::proto::apiresource::{ApiResourceId, ApiResourceMetadata};
use stigmer_client::proto::daemon::{op as delta_op, AppendRequest, AppendText, Op as DeltaOp};
use stigmer_client::proto::daemon::{
    request::Command, response::Result as Reply, CancelSubscriptionRequest,
    CancelSubscriptionResponse, Code, DaemonStatus, DeleteExecutionResponse, EndReason, Error,
    Event, EventType, ExecutionReply, ListExecutionsRequest, ListExecutionsResponse, PingRequest,
    PingResponse, Request, StatusRequest, SubscribeRequest,
};
use stigmer_client::proto::wkt::Timestamp;

use crate::fixtures::{
    end, event, pending, req, resp, rich_status, stored, Msg, Vector, EXEC_ID, EXEC_ID_2,
};

pub fn all_vectors() -> Vec<Vector> {
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
                    backend: "etcd".into(),
                    replica_applied_revision: 42,
                    etcd_revision: 43,
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
