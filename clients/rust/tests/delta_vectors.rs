//! Golden delta cases shared by every client (tests/vectors/deltas.json).
//!
//! Each case is a status, a `Delta` (a list of ops) applied to it with
//! `stigmer_proto::delta::apply_all`, the outcome, and the status after. The
//! daemon and the Rust client apply deltas with that code; the Python client
//! has its own implementation (`stigmer_client._delta`) and runs every case
//! to prove it reaches the same bytes. This test writes the file from the
//! cases below, checks each case's outcome is the one intended, that the
//! committed file is what it would write, and replays the file.
//!
//! Regenerate after a deliberate change:
//! `STIGMER_REGEN_VECTORS=1 cargo test -p stigmer-client --test delta_vectors`.

mod golden;

use std::collections::{BTreeMap, HashMap};

use golden::{from_hex, to_hex};
use stigmer_client::proto::agentexecution::{
    AgentExecutionStatus, AgentMessage, ExecutionPhase, MessageType, SubAgentExecution,
    SubAgentStatus, TodoItem, TodoStatus, ToolCall, ToolCallStatus,
};
use stigmer_client::proto::apiresource::{ApiResourceAudit, ApiResourceAuditInfo};
use stigmer_client::proto::daemon::{
    op, AddMessage, AppendText, AppendToolResult, Delta, Messages, Op, PutMessageToolCall, PutTodo,
    ReplaceMessage, SubAgents, ToolCalls,
};
use stigmer_client::proto::delta::{apply_all, diff, ApplyError};
use stigmer_client::proto::wkt::{value::Kind, Struct, Timestamp, Value};
use stigmer_client::proto::Message;

/// The file's shape version (the `version` key).
const FILE_VERSION: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Expect {
    Applied,
    AlreadyApplied,
    Conflict,
    Invalid,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Applied => "applied",
            Expect::AlreadyApplied => "already_applied",
            Expect::Conflict => "conflict",
            Expect::Invalid => "invalid",
        }
    }

    fn of(result: &Result<bool, ApplyError>) -> Self {
        match result {
            Ok(true) => Expect::Applied,
            Ok(false) => Expect::AlreadyApplied,
            Err(ApplyError::Conflict(_)) => Expect::Conflict,
            Err(ApplyError::Invalid(_)) => Expect::Invalid,
        }
    }
}

struct Case {
    name: &'static str,
    description: &'static str,
    before: AgentExecutionStatus,
    ops: Vec<Op>,
    expect: Expect,
}

/// A case's outcome and the status after it: `before` itself when refused
/// (a caller discards a partly changed status).
fn run(
    before: &AgentExecutionStatus,
    ops: &[Op],
) -> (Result<bool, ApplyError>, AgentExecutionStatus) {
    let mut status = before.clone();
    let result = apply_all(&mut status, ops);
    if result.is_err() {
        status = before.clone();
    }
    (result, status)
}

const T0: &str = "2025-01-02T03:04:05.000000Z";

fn o(op: op::Op) -> Op {
    Op { op: Some(op) }
}

fn msg(r#type: MessageType, content: &str) -> AgentMessage {
    AgentMessage {
        r#type: r#type as i32,
        content: content.into(),
        ..Default::default()
    }
}

fn append(message_index: u32, offset: u64, text: &str) -> Op {
    typed_append(message_index, offset, text, MessageType::Unspecified as i32)
}

fn typed_append(message_index: u32, offset: u64, text: &str, r#type: i32) -> Op {
    o(op::Op::AppendText(AppendText {
        message_index,
        offset,
        text: text.into(),
        r#type,
    }))
}

fn add(index: u32, message: AgentMessage) -> Op {
    o(op::Op::AddMessage(AddMessage {
        index,
        message: Some(message),
    }))
}

fn result(id: &str, offset: u64, text: &str) -> Op {
    o(op::Op::AppendToolResult(AppendToolResult {
        tool_call_id: id.into(),
        offset,
        text: text.into(),
    }))
}

fn one_field_struct(key: &str, value: &str) -> Struct {
    // One field only: Struct is a HashMap, whose encoding order is
    // unspecified with more than one entry.
    let mut fields = HashMap::new();
    fields.insert(
        key.to_string(),
        Value {
            kind: Some(Kind::StringValue(value.to_string())),
        },
    );
    Struct { fields }
}

fn tool_call(id: &str, result: &str, status: ToolCallStatus) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "read_file".into(),
        args: Some(one_field_struct("path", "README.md")),
        result: result.into(),
        status: status as i32,
        component_metadata: None,
        started_at: T0.into(),
        completed_at: String::new(),
        error: String::new(),
    }
}

fn sub_agent(id: &str, output: &str, status: SubAgentStatus) -> SubAgentExecution {
    SubAgentExecution {
        id: id.into(),
        name: "researcher".into(),
        input: "find the bug".into(),
        output: output.into(),
        status: status as i32,
        started_at: T0.into(),
        ..Default::default()
    }
}

fn todo(content: &str, status: TodoStatus) -> TodoItem {
    TodoItem {
        id: "todo-1".into(),
        content: content.into(),
        status: status as i32,
        created_at: T0.into(),
        updated_at: T0.into(),
    }
}

/// A status in progress: a human prompt, a partial AI answer with unicode,
/// a tool call, a sub-agent, two todos, and the audit of a commit.
fn running() -> AgentExecutionStatus {
    let mut todos = BTreeMap::new();
    todos.insert(
        "todo-1".to_string(),
        todo("Read the README", TodoStatus::TodoInProgress),
    );
    todos.insert(
        "todo-2".to_string(),
        todo("Fix the build", TodoStatus::TodoPending),
    );
    AgentExecutionStatus {
        messages: vec![
            msg(
                MessageType::MessageHuman,
                "Résumé the README, s'il te plaît",
            ),
            msg(MessageType::MessageAi, "Voilà: «stigmer» 😀"),
        ],
        phase: ExecutionPhase::ExecutionInProgress as i32,
        tool_calls: vec![tool_call(
            "call-1",
            "# stig",
            ToolCallStatus::ToolCallRunning,
        )],
        sub_agent_executions: vec![sub_agent("sub-1", "", SubAgentStatus::SubAgentInProgress)],
        error: String::new(),
        started_at: T0.into(),
        completed_at: String::new(),
        todos,
        callback_token: b"token".to_vec().into(),
        audit: Some(ApiResourceAudit {
            spec_audit: None,
            status_audit: Some(ApiResourceAuditInfo {
                created_by: None,
                created_at: Some(Timestamp {
                    seconds: 1_735_787_045,
                    nanos: 0,
                }),
                updated_by: None,
                updated_at: Some(Timestamp {
                    seconds: 1_735_787_049,
                    nanos: 500_000_000,
                }),
                event: "status_updated".into(),
            }),
        }),
    }
}

/// `running()` whose AI message holds its own copy of the tool call, as
/// upstream's runner keeps it.
fn calling() -> AgentExecutionStatus {
    let mut s = running();
    s.messages[1].tool_calls = s.tool_calls.clone();
    s
}

fn put_in_message(message_index: u32, call: ToolCall) -> Op {
    o(op::Op::PutMessageToolCall(PutMessageToolCall {
        message_index,
        tool_call: Some(call),
    }))
}

fn empty() -> AgentExecutionStatus {
    AgentExecutionStatus::default()
}

fn pending() -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionPending as i32,
        ..Default::default()
    }
}

/// Byte length of the AI message of `running()`.
fn ai_len() -> u64 {
    running().messages[1].content.len() as u64
}

fn case(
    name: &'static str,
    description: &'static str,
    before: AgentExecutionStatus,
    ops: Vec<Op>,
    expect: Expect,
) -> Case {
    Case {
        name,
        description,
        before,
        ops,
        expect,
    }
}

fn all_cases() -> Vec<Case> {
    use Expect::*;
    let stamp_at = Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_456_789,
    };
    let mut finished = running();
    finished.messages[1].content.push_str(" — done.");
    finished
        .messages
        .push(msg(MessageType::MessageAi, "Anything else?"));
    finished.tool_calls[0].result.push_str("mer\n");
    finished.tool_calls[0].status = ToolCallStatus::ToolCallCompleted as i32;
    finished
        .tool_calls
        .push(tool_call("call-2", "", ToolCallStatus::ToolCallPending));
    finished.todos.remove("todo-2");
    finished.phase = ExecutionPhase::ExecutionCompleted as i32;
    // Upstream's runner, one whole status later: more text, call-1
    // completed and call-2 started, in the status's list and the message's.
    let mut called = calling();
    called.messages[1].content.push_str(" — je cherche…");
    called.tool_calls[0].result.push_str("mer\n");
    called.tool_calls[0].status = ToolCallStatus::ToolCallCompleted as i32;
    called
        .tool_calls
        .push(tool_call("call-2", "", ToolCallStatus::ToolCallRunning));
    called.messages[1].tool_calls = called.tool_calls.clone();
    let mut reordered = running();
    reordered.messages.reverse();
    reordered.tool_calls.clear();
    reordered.sub_agent_executions.clear();
    reordered.error = "interrupted".into();
    vec![
        // append_text
        case("append_text_creates_message", "index = count, offset 0, type UNSPECIFIED: creates an AI message", empty(), vec![append(0, 0, "Hello")], Applied),
        case("append_text_creates_typed_message", "creates a message of the given type", empty(), vec![typed_append(0, 0, "Hi", MessageType::MessageHuman as i32)], Applied),
        case("append_text_creates_empty_message", "creating a message with empty text is a change", empty(), vec![append(0, 0, "")], Applied),
        case("append_text_appends_unicode", "offset = length in UTF-8 bytes of a content with multi-byte chars", running(), vec![append(1, ai_len(), " — ça marche ✓")], Applied),
        case("append_text_retry_already_applied", "the content already holds the text at that offset", running(), vec![append(1, 8, "«stigmer»")], AlreadyApplied),
        case("append_text_retry_whole_prefix", "a retry of the very first append", running(), vec![append(1, 0, "Voilà")], AlreadyApplied),
        case("append_text_empty_at_end", "empty text at the end changes nothing", running(), vec![append(1, ai_len(), "")], AlreadyApplied),
        case("append_text_stale_offset_conflict", "different text at an earlier offset", running(), vec![append(1, 8, "«stigmar»")], Conflict),
        case("append_text_partial_overlap_conflict", "text that runs past the end from an earlier offset", running(), vec![append(1, ai_len() - 4, "😀!")], Conflict),
        case("append_text_past_end_conflict", "offset beyond the content's length", running(), vec![append(1, ai_len() + 1, "x")], Conflict),
        case("append_text_index_gap_conflict", "message index beyond the count", running(), vec![append(3, 0, "x")], Conflict),
        case("append_text_create_nonzero_offset_conflict", "creating a message takes offset 0", running(), vec![append(2, 5, "x")], Conflict),
        case("append_text_mid_char_conflict", "offset inside a multi-byte char (é is 2 bytes at offset 1): a stale offset", running(), vec![append(0, 2, "x")], Conflict),
        case("append_text_unknown_type_invalid", "an unknown message type", empty(), vec![typed_append(0, 0, "x", 99)], Invalid),
        // add_message
        case("add_message_applied", "index = count", running(), vec![add(2, msg(MessageType::MessageSystem, "Be brief"))], Applied),
        case("add_message_already_applied", "the message at that index is equal", running(), vec![add(0, running().messages[0].clone())], AlreadyApplied),
        case("add_message_differs_conflict", "another message at that index", running(), vec![add(0, msg(MessageType::MessageHuman, "other"))], Conflict),
        case("add_message_gap_conflict", "index beyond the count", running(), vec![add(5, msg(MessageType::MessageAi, "x"))], Conflict),
        case("add_message_unknown_type_invalid", "an unknown message type", running(), vec![add(2, AgentMessage { r#type: 42, ..Default::default() })], Invalid),
        case("add_message_missing_is_default", "an unset message is the default message", empty(), vec![o(op::Op::AddMessage(AddMessage { index: 0, message: None }))], Applied),
        // put_tool_call, append_tool_result
        case("put_tool_call_inserts", "a new id is appended", running(), vec![o(op::Op::PutToolCall(tool_call("call-2", "", ToolCallStatus::ToolCallPending)))], Applied),
        case("put_tool_call_replaces", "the same id is replaced in place", running(), vec![o(op::Op::PutToolCall(tool_call("call-1", "# stigmer\n", ToolCallStatus::ToolCallCompleted)))], Applied),
        case("put_tool_call_already_applied", "equal to the stored one", running(), vec![o(op::Op::PutToolCall(running().tool_calls[0].clone()))], AlreadyApplied),
        case("put_tool_call_empty_id_invalid", "a tool call needs an id", running(), vec![o(op::Op::PutToolCall(tool_call("", "", ToolCallStatus::ToolCallPending)))], Invalid),
        case("put_tool_call_unknown_status_invalid", "an unknown tool call status", running(), vec![o(op::Op::PutToolCall(ToolCall { id: "call-9".into(), status: 77, ..Default::default() }))], Invalid),
        // put_message_tool_call
        case("put_message_tool_call_inserts", "a new id is appended to the message's own tool calls", running(), vec![put_in_message(1, tool_call("call-2", "", ToolCallStatus::ToolCallRunning))], Applied),
        case("put_message_tool_call_replaces", "the same id in that message is replaced in place", calling(), vec![put_in_message(1, tool_call("call-1", "# stigmer\n", ToolCallStatus::ToolCallCompleted))], Applied),
        case("put_message_tool_call_already_applied", "equal to the one the message holds", calling(), vec![put_in_message(1, calling().messages[1].tool_calls[0].clone())], AlreadyApplied),
        case("put_message_tool_call_missing_message_conflict", "no message at that index (it never creates one)", running(), vec![put_in_message(2, tool_call("call-2", "", ToolCallStatus::ToolCallRunning))], Conflict),
        case("put_message_tool_call_empty_id_invalid", "a tool call needs an id (checked before the index)", running(), vec![put_in_message(7, tool_call("", "", ToolCallStatus::ToolCallRunning))], Invalid),
        case("put_message_tool_call_unknown_status_invalid", "an unknown tool call status", running(), vec![put_in_message(1, ToolCall { id: "call-9".into(), status: 77, ..Default::default() })], Invalid),
        case("append_tool_result_applied", "appends to the result at its length", running(), vec![result("call-1", 6, "mer — ✓\n")], Applied),
        case("append_tool_result_already_applied", "the result already holds it", running(), vec![result("call-1", 2, "stig")], AlreadyApplied),
        case("append_tool_result_stale_conflict", "other text at an earlier offset", running(), vec![result("call-1", 2, "STIG")], Conflict),
        case("append_tool_result_unknown_id_conflict", "no tool call with that id", running(), vec![result("call-9", 0, "x")], Conflict),
        case("append_tool_result_empty_id_invalid", "the id is required", running(), vec![result("", 0, "x")], Invalid),
        // todos
        case("put_todo_inserts", "a new key", running(), vec![o(op::Op::PutTodo(PutTodo { key: "todo-3".into(), item: Some(todo("Ship it", TodoStatus::TodoPending)) }))], Applied),
        case("put_todo_replaces", "an existing key", running(), vec![o(op::Op::PutTodo(PutTodo { key: "todo-1".into(), item: Some(todo("Read the README", TodoStatus::TodoCompleted)) }))], Applied),
        case("put_todo_already_applied", "equal to the stored item", running(), vec![o(op::Op::PutTodo(PutTodo { key: "todo-2".into(), item: Some(todo("Fix the build", TodoStatus::TodoPending)) }))], AlreadyApplied),
        case("put_todo_empty_key", "the empty key is a key like any other", running(), vec![o(op::Op::PutTodo(PutTodo { key: String::new(), item: Some(todo("∅", TodoStatus::TodoPending)) }))], Applied),
        case("put_todo_unknown_status_invalid", "an unknown todo status", running(), vec![o(op::Op::PutTodo(PutTodo { key: "todo-3".into(), item: Some(TodoItem { status: 12, ..Default::default() }) }))], Invalid),
        case("remove_todo_applied", "removes the key", running(), vec![o(op::Op::RemoveTodo("todo-1".into()))], Applied),
        case("remove_todo_absent_already_applied", "an absent key", running(), vec![o(op::Op::RemoveTodo("todo-9".into()))], AlreadyApplied),
        // sub-agents
        case("put_sub_agent_inserts", "a new id is appended", running(), vec![o(op::Op::PutSubAgent(sub_agent("sub-2", "", SubAgentStatus::SubAgentPending)))], Applied),
        case("put_sub_agent_replaces", "the same id is replaced in place", running(), vec![o(op::Op::PutSubAgent(sub_agent("sub-1", "found it", SubAgentStatus::SubAgentCompleted)))], Applied),
        case("put_sub_agent_already_applied", "equal to the stored one", running(), vec![o(op::Op::PutSubAgent(running().sub_agent_executions[0].clone()))], AlreadyApplied),
        case("put_sub_agent_empty_id_invalid", "a sub-agent needs an id", running(), vec![o(op::Op::PutSubAgent(sub_agent("", "", SubAgentStatus::SubAgentPending)))], Invalid),
        // scalars
        case("set_phase_applied", "a new phase", running(), vec![o(op::Op::SetPhase(ExecutionPhase::ExecutionPaused as i32))], Applied),
        case("set_phase_already_applied", "the same phase", running(), vec![o(op::Op::SetPhase(ExecutionPhase::ExecutionInProgress as i32))], AlreadyApplied),
        case("set_phase_unspecified_invalid", "UNSPECIFIED is refused", running(), vec![o(op::Op::SetPhase(0))], Invalid),
        case("set_phase_unknown_invalid", "an unknown phase", running(), vec![o(op::Op::SetPhase(99))], Invalid),
        case("set_error_applied", "a new error text", running(), vec![o(op::Op::SetError("tool failed: ENOENT".into()))], Applied),
        case("set_error_already_applied", "the same error text", running(), vec![o(op::Op::SetError(String::new()))], AlreadyApplied),
        case("set_started_at_applied", "sets started_at as given", running(), vec![o(op::Op::SetStartedAt("2025-01-02T03:04:06Z".into()))], Applied),
        case("set_completed_at_applied", "sets completed_at as given", running(), vec![o(op::Op::SetCompletedAt("2025-01-02T03:09:00Z".into()))], Applied),
        case("set_completed_at_already_applied", "the same value", running(), vec![o(op::Op::SetCompletedAt(String::new()))], AlreadyApplied),
        // replacements
        case("replace_message_applied", "replaces message 0", running(), vec![o(op::Op::ReplaceMessage(ReplaceMessage { index: 0, message: Some(msg(MessageType::MessageHuman, "Summarise it")) }))], Applied),
        case("replace_message_already_applied", "equal to the stored message", running(), vec![o(op::Op::ReplaceMessage(ReplaceMessage { index: 1, message: Some(running().messages[1].clone()) }))], AlreadyApplied),
        case("replace_message_missing_conflict", "no message at that index", running(), vec![o(op::Op::ReplaceMessage(ReplaceMessage { index: 2, message: Some(msg(MessageType::MessageAi, "x")) }))], Conflict),
        case("replace_messages_applied", "replaces the list", running(), vec![o(op::Op::ReplaceMessages(Messages { messages: vec![msg(MessageType::MessageAi, "only")] }))], Applied),
        case("replace_messages_already_applied", "the same list", running(), vec![o(op::Op::ReplaceMessages(Messages { messages: running().messages }))], AlreadyApplied),
        case("replace_tool_calls_applied", "empties the list", running(), vec![o(op::Op::ReplaceToolCalls(ToolCalls { tool_calls: vec![] }))], Applied),
        case("replace_sub_agents_applied", "replaces the list", running(), vec![o(op::Op::ReplaceSubAgents(SubAgents { sub_agent_executions: vec![sub_agent("sub-9", "", SubAgentStatus::SubAgentPending), sub_agent("sub-1", "", SubAgentStatus::SubAgentPending)] }))], Applied),
        case("replace_sub_agents_unknown_status_invalid", "an unknown sub-agent status", running(), vec![o(op::Op::ReplaceSubAgents(SubAgents { sub_agent_executions: vec![SubAgentExecution { status: 50, ..Default::default() }] }))], Invalid),
        // stamp
        case("stamp_pending", "PENDING: only the audit (created_at, updated_at, event)", pending(), vec![o(op::Op::Stamp(stamp_at))], Applied),
        case("stamp_in_progress_sets_started_at", "started_at in RFC 3339 micros (truncated), audit created", AgentExecutionStatus { phase: ExecutionPhase::ExecutionInProgress as i32, ..Default::default() }, vec![o(op::Op::Stamp(stamp_at))], Applied),
        case("stamp_completed_keeps_started_and_created", "completed_at set, started_at and audit.created_at kept, updated_at moved", AgentExecutionStatus { phase: ExecutionPhase::ExecutionCompleted as i32, ..running() }, vec![o(op::Op::Stamp(stamp_at))], Applied),
        case("stamp_out_of_range_invalid", "a time before 1970", running(), vec![o(op::Op::Stamp(Timestamp { seconds: -1, nanos: 0 }))], Invalid),
        case("empty_op_invalid", "an Op with nothing set", running(), vec![Op { op: None }], Invalid),
        // sequences
        case("sequence_runner_turn", "create a message, stream three tokens, a tool call and its result, a phase, then the commit stamp", pending(), vec![
            typed_append(0, 0, "Lis le fichier", MessageType::MessageHuman as i32),
            append(1, 0, "Je "),
            append(1, 3, "lis… "),
            append(1, 10, "😀"),
            o(op::Op::PutToolCall(tool_call("call-1", "", ToolCallStatus::ToolCallRunning))),
            result("call-1", 0, "# stigmer"),
            o(op::Op::SetPhase(ExecutionPhase::ExecutionInProgress as i32)),
            o(op::Op::Stamp(stamp_at)),
        ], Applied),
        case("sequence_retry_all_already_applied", "a whole delta resent after a lost reply", running(), vec![
            append(1, 0, "Voilà"),
            o(op::Op::PutToolCall(running().tool_calls[0].clone())),
            o(op::Op::SetPhase(ExecutionPhase::ExecutionInProgress as i32)),
            o(op::Op::RemoveTodo("todo-9".into())),
        ], AlreadyApplied),
        case("sequence_partly_new", "a retry that overlaps, then new text", running(), vec![
            append(1, 0, "Voilà"),
            append(1, ai_len(), "!"),
        ], Applied),
        case("sequence_fails_midway", "the second op conflicts: the whole delta is refused", running(), vec![
            append(1, ai_len(), "!"),
            append(1, 0, "Nope"),
            o(op::Op::SetPhase(ExecutionPhase::ExecutionCompleted as i32)),
        ], Conflict),
        case("diff_extension", "diff of a finished status from a running one: appends, add, tool result, put, remove, phase", running(), diff(&running(), &finished), Applied),
        case("diff_message_tool_calls", "diff of upstream's runner one whole status later (text appended, the message's tool call completed and a new one, in its list and the status's): append_text, put_message_tool_call, put_tool_call, no replace_message", calling(), diff(&calling(), &called), Applied),
        case("diff_not_an_extension", "diff to a reordered status: replace ops", running(), diff(&running(), &reordered), Applied),
    ]
}

fn delta_bytes(ops: &[Op]) -> Vec<u8> {
    Delta { ops: ops.to_vec() }.encode_to_vec()
}

/// The file's text, keys in a reader-friendly order.
fn render_file(cases: &[Case]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut out = format!("{{\n  \"version\": {FILE_VERSION},\n  \"cases\": [\n");
    for (i, c) in cases.iter().enumerate() {
        let (result, after) = run(&c.before, &c.ops);
        out.push_str(&format!(
            "    {{\n      \"name\": {},\n      \"description\": {},\n      \"state_before_hex\": {},\n      \"ops_hex\": {},\n      \"result\": {},\n      \"state_after_hex\": {}\n    }}{}\n",
            q(c.name),
            q(c.description),
            q(&to_hex(&c.before.encode_to_vec())),
            q(&to_hex(&delta_bytes(&c.ops))),
            q(Expect::of(&result).as_str()),
            q(&to_hex(&after.encode_to_vec())),
            if i + 1 < cases.len() { "," } else { "" }
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[test]
fn every_case_has_its_intended_outcome() {
    for c in all_cases() {
        let (result, after) = run(&c.before, &c.ops);
        assert_eq!(Expect::of(&result), c.expect, "{}: {result:?}", c.name);
        if c.expect == Expect::AlreadyApplied {
            assert_eq!(
                after, c.before,
                "{}: already applied changes nothing",
                c.name
            );
        }
    }
}

#[test]
fn cases_cover_every_op_and_outcome() {
    let cases = all_cases();
    let mut kinds = std::collections::HashSet::new();
    let mut outcomes = std::collections::HashSet::new();
    for c in &cases {
        outcomes.insert(c.expect);
        for op in &c.ops {
            if let Some(op) = &op.op {
                kinds.insert(std::mem::discriminant(op));
            }
        }
    }
    assert_eq!(kinds.len(), 17, "every Op kind");
    assert_eq!(outcomes.len(), 4, "every outcome");
    let mut names = std::collections::HashSet::new();
    assert!(cases.iter().all(|c| names.insert(c.name)), "unique names");
}

/// The diff case of upstream's runner pattern keeps the message: its text
/// and tool calls change by operation, never by replace_message.
#[test]
fn runner_diff_case_replaces_no_message() {
    let cases = all_cases();
    let case = cases
        .iter()
        .find(|c| c.name == "diff_message_tool_calls")
        .expect("the case");
    let kinds: Vec<&str> = case
        .ops
        .iter()
        .map(|o| match &o.op {
            Some(op::Op::AppendText(_)) => "append_text",
            Some(op::Op::PutMessageToolCall(_)) => "put_message_tool_call",
            Some(op::Op::AppendToolResult(_)) => "append_tool_result",
            Some(op::Op::PutToolCall(_)) => "put_tool_call",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "append_text",
            "put_message_tool_call",
            "put_message_tool_call",
            "put_tool_call",
            "put_tool_call"
        ]
    );
}

#[test]
fn deltas_file_matches_generator_and_replays() {
    let generated = render_file(&all_cases());
    let (text, file) = golden::load("deltas.json", &generated);
    assert_eq!(file["version"], FILE_VERSION);
    let cases = file["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let hex = |key: &str| from_hex(c[key].as_str().unwrap());
        let before = AgentExecutionStatus::decode(hex("state_before_hex").as_slice()).unwrap();
        let delta = Delta::decode(hex("ops_hex").as_slice()).unwrap();
        let (result, after) = run(&before, &delta.ops);
        assert_eq!(
            Expect::of(&result).as_str(),
            c["result"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(after.encode_to_vec(), hex("state_after_hex"), "{name}");
    }
    assert_eq!(
        text, generated,
        "tests/vectors/deltas.json is stale: regenerate with STIGMER_REGEN_VECTORS=1"
    );
}
