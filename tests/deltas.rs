//! Deltas (issue 16) against the real binary: `append` and its retry rules,
//! compare-and-set, concurrent appenders, `update_status` stored and
//! streamed as operations, and delta streams (from the start, resumed with
//! and without the initial state, across a restart) that rebuild exactly
//! the states whole-state streams carry.

mod common;

use common::*;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionId, AgentExecutionStatus, AgentMessage, ExecutionPhase,
    MessageType, TodoItem, ToolCall,
};
use stigmer_proto::daemon::{
    op, request::Command as Cmd, response, AppendRequest, AppendText, Code, EndReason, Event,
    EventType, Op, PutTodo, SubscribeRequest,
};

const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
const UPDATE: i32 = EventType::EventUpdate as i32;
const DELTA: i32 = EventType::EventDelta as i32;
const END: i32 = EventType::EventEnd as i32;

fn text(index: u32, offset: u64, text: &str) -> Op {
    Op {
        op: Some(op::Op::AppendText(AppendText {
            message_index: index,
            offset,
            text: text.into(),
            r#type: 0,
        })),
    }
}

fn set_phase(p: ExecutionPhase) -> Op {
    Op {
        op: Some(op::Op::SetPhase(p as i32)),
    }
}

fn append(id: &str, ops: Vec<Op>, expected: Option<u64>) -> Cmd {
    Cmd::Append(AppendRequest {
        execution_id: id.into(),
        expected_revision: expected,
        ops,
    })
}

/// The revision a (minimal) append reply acknowledges.
fn acked(resp: Response) -> u64 {
    match resp.result {
        Some(response::Result::Execution(r)) => {
            assert!(r.execution.is_none(), "append replies are minimal");
            r.revision
        }
        other => panic!("expected an acknowledgement, got {other:?}"),
    }
}

use stigmer_proto::daemon::Response;

async fn get(c: &mut Raw, id: &str) -> (AgentExecution, u64) {
    expect_execution(
        c.call(Cmd::Get(AgentExecutionId { value: id.into() }))
            .await,
    )
}

fn content(e: &AgentExecution, i: usize) -> String {
    e.status.as_ref().expect("status").messages[i]
        .content
        .clone()
}

async fn subscribe(c: &mut Raw, id: &str, from: Option<u64>, deltas: bool, skip: bool) -> u64 {
    let req = c.next_id();
    c.send(
        req,
        Cmd::Subscribe(SubscribeRequest {
            execution_id: id.into(),
            from_revision: from,
            deltas,
            skip_initial_state: skip,
            ..Default::default()
        }),
    )
    .await;
    req
}

/// Rebuilds the states a delta stream describes, checking its chain of
/// revisions: each DELTA applies to the state at its `prev_revision`.
fn replay(
    events: &[Event],
    mut state: Option<(AgentExecution, u64)>,
) -> Vec<(AgentExecution, u64)> {
    let mut out = Vec::new();
    for e in events {
        match EventType::try_from(e.r#type).expect("type") {
            EventType::EventSnapshot | EventType::EventUpdate | EventType::EventResync => {
                let s = (e.execution.clone().expect("a whole state"), e.revision);
                out.push(s.clone());
                state = Some(s);
            }
            EventType::EventDelta => {
                let (mut execution, revision) = state.take().expect("a state to apply to");
                assert_eq!(e.prev_revision, revision, "no change was missed");
                assert!(e.execution.is_none(), "a delta carries no whole state");
                let status = execution.status.get_or_insert_with(Default::default);
                stigmer_proto::delta::apply_all(status, &e.ops).expect("applies");
                out.push((execution.clone(), e.revision));
                state = Some((execution, e.revision));
            }
            _ => {}
        }
    }
    out
}

/// Appends build text, a retried append leaves one copy, and a stale offset
/// is ABORTED naming the current length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_text_is_safe_to_retry() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("runner").await;
    // A new message at index 0 (there are none yet).
    let r1 = acked(c.call(append(&id, vec![text(0, 0, "Hello")], None)).await);
    let r2 = acked(c.call(append(&id, vec![text(0, 5, ", wörld")], None)).await);
    assert!(r2 > r1);
    // The same append again (a reply lost to a reconnect): acknowledged at
    // the current revision, nothing written twice.
    assert_eq!(
        acked(c.call(append(&id, vec![text(0, 5, ", wörld")], None)).await),
        r2
    );
    let (e, revision) = get(&mut c, &id).await;
    assert_eq!(revision, r2);
    assert_eq!(content(&e, 0), "Hello, wörld");
    let status = e.status.as_ref().expect("status");
    assert_eq!(status.messages[0].r#type, MessageType::MessageAi as i32);
    assert!(
        status
            .audit
            .as_ref()
            .and_then(|a| a.status_audit.as_ref())
            .is_some(),
        "stamped"
    );
    // A stale offset, a gap, a partial overlap, a missing message index.
    for op in [
        text(0, 3, "xyz"),
        text(0, 99, "x"),
        text(0, 10, "ldX"),
        text(2, 0, "x"),
    ] {
        let msg = expect_error(&c.call(append(&id, vec![op], None)).await, Code::Aborted);
        assert!(msg.contains(&format!("revision {r2}")), "{msg}");
    }
    let msg = expect_error(
        &c.call(append(&id, vec![text(0, 3, "xyz")], None)).await,
        Code::Aborted,
    );
    assert!(msg.contains("13"), "the current length (13 bytes): {msg}");
    // An offset inside a character is stale too (another writer's
    // character now spans it): ABORTED, as any other.
    expect_error(
        &c.call(append(&id, vec![text(0, 9, "x")], None)).await,
        Code::Aborted,
    );
    let (e, _) = get(&mut c, &id).await;
    assert_eq!(content(&e, 0), "Hello, wörld");
}

/// Malformed appends are refused before anything is written; the usual
/// rules hold (NOT_FOUND, a terminal phase is final).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_refusals() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("runner").await;
    expect_error(
        &c.call(append(&id, vec![], None)).await,
        Code::InvalidArgument,
    );
    expect_error(
        &c.call(append(&id, vec![Op { op: None }], None)).await,
        Code::InvalidArgument,
    );
    let stamp = Op {
        op: Some(op::Op::Stamp(Default::default())),
    };
    expect_error(
        &c.call(append(&id, vec![stamp], None)).await,
        Code::InvalidArgument,
    );
    expect_error(
        &c.call(append(
            &id,
            vec![Op {
                op: Some(op::Op::SetPhase(0)),
            }],
            None,
        ))
        .await,
        Code::InvalidArgument,
    );
    expect_error(
        &c.call(append("aex-nope", vec![text(0, 0, "x")], None))
            .await,
        Code::InvalidArgument,
    );
    expect_error(
        &c.call(append(
            "aex-01jzzzzzzzzzzzzzzzzzzzzzzz",
            vec![text(0, 0, "x")],
            None,
        ))
        .await,
        Code::NotFound,
    );
    // Everything a runner changes, in one atomic append.
    let ops = vec![
        text(0, 0, "thinking"),
        Op {
            op: Some(op::Op::PutToolCall(ToolCall {
                id: "t1".into(),
                name: "grep".into(),
                ..Default::default()
            })),
        },
        Op {
            op: Some(op::Op::PutTodo(PutTodo {
                key: "k".into(),
                item: Some(TodoItem {
                    id: "k".into(),
                    content: "write tests".into(),
                    ..Default::default()
                }),
            })),
        },
        set_phase(ExecutionPhase::ExecutionInProgress),
    ];
    acked(c.call(append(&id, ops, None)).await);
    let (e, _) = get(&mut c, &id).await;
    let status = e.status.expect("status");
    assert_eq!(status.tool_calls[0].name, "grep");
    assert_eq!(status.todos["k"].content, "write tests");
    assert_eq!(status.phase, ExecutionPhase::ExecutionInProgress as i32);
    assert!(
        !status.started_at.is_empty(),
        "stamped when it left PENDING"
    );
    // A failed operation fails the whole append: the text before it is not
    // applied either.
    expect_error(
        &c.call(append(&id, vec![text(0, 8, "!"), text(5, 0, "x")], None))
            .await,
        Code::Aborted,
    );
    let (e, _) = get(&mut c, &id).await;
    assert_eq!(content(&e, 0), "thinking");
    acked(
        c.call(append(
            &id,
            vec![set_phase(ExecutionPhase::ExecutionCompleted)],
            None,
        ))
        .await,
    );
    expect_error(
        &c.call(append(&id, vec![text(0, 8, "!")], None)).await,
        Code::FailedPrecondition,
    );
}

/// Compare-and-set: a stale expected_revision is ABORTED with the current
/// one, unless the append was already applied (a retry), which is
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_revision() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, created) = c.create("runner").await;
    let r1 = acked(
        c.call(append(&id, vec![text(0, 0, "a")], Some(created)))
            .await,
    );
    // A retry with the same expected revision: already applied.
    assert_eq!(
        acked(
            c.call(append(&id, vec![text(0, 0, "a")], Some(created)))
                .await
        ),
        r1
    );
    // Something new against a stale revision.
    let msg = expect_error(
        &c.call(append(&id, vec![text(0, 1, "b")], Some(created)))
            .await,
        Code::Aborted,
    );
    assert!(msg.contains(&format!("at revision {r1}")), "{msg}");
    let r2 = acked(c.call(append(&id, vec![text(0, 1, "b")], Some(r1))).await);
    assert!(r2 > r1);
}

/// Concurrent appenders to one message, each naming the offset it saw: one
/// wins, the other is ABORTED, and no text interleaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_never_interleave() {
    let d = Daemon::start(&[]);
    let mut a = d.connect().await;
    let mut b = d.connect().await;
    let (id, _) = a.create("runner").await;
    acked(a.call(append(&id, vec![text(0, 0, "start.")], None)).await);
    let mut expected = String::from("start.");
    for round in 0..50 {
        let offset = expected.len() as u64;
        let ta = format!("[a{round}]");
        let tb = format!("[b{round}]");
        let (ra, rb) = tokio::join!(
            a.call(append(&id, vec![text(0, offset, &ta)], None)),
            b.call(append(&id, vec![text(0, offset, &tb)], None)),
        );
        match (&ra.result, &rb.result) {
            (Some(response::Result::Execution(_)), Some(response::Result::Error(e))) => {
                assert_eq!(e.code, Code::Aborted as i32);
                expected.push_str(&ta);
            }
            (Some(response::Result::Error(e)), Some(response::Result::Execution(_))) => {
                assert_eq!(e.code, Code::Aborted as i32);
                expected.push_str(&tb);
            }
            other => panic!("exactly one of two appenders at one offset wins: {other:?}"),
        }
    }
    let (e, _) = get(&mut a, &id).await;
    assert_eq!(content(&e, 0), expected);
}

/// A delta stream and a whole-state stream of the same execution carry the
/// same states at the same revisions: the delta stream as its snapshot and
/// then operations, under appends and upstream-style whole statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_streams_rebuild_the_whole_states() {
    let d = Daemon::start(&[]);
    let mut w = d.connect().await;
    let mut c = d.connect().await;
    let (id, _) = w.create("runner").await;
    let whole = subscribe(&mut c, &id, None, false, false).await;
    let deltas = subscribe(&mut c, &id, None, true, false).await;
    let whole_snapshot = c.event(whole).await;
    let delta_snapshot = c.event(deltas).await;
    assert_eq!(whole_snapshot.r#type, SNAPSHOT);
    assert_eq!(delta_snapshot.r#type, SNAPSHOT);
    // Tokens appended one by one, then upstream's pattern: the whole
    // cumulative status, twice with more text, then a new message.
    let mut said = String::new();
    for token in ["Look", "ing ", "at ", "the ", "logs"] {
        acked(
            w.call(append(&id, vec![text(0, said.len() as u64, token)], None))
                .await,
        );
        said.push_str(token);
    }
    let mut status = ai_status(&format!("{said}. Found it"));
    expect_execution(w.update(&id, status.clone()).await);
    status.messages.push(AgentMessage {
        r#type: MessageType::MessageHuman as i32,
        content: "thanks".into(),
        ..Default::default()
    });
    expect_execution(w.update(&id, status).await);
    expect_execution(
        w.update(&id, phase(ExecutionPhase::ExecutionCompleted))
            .await,
    );
    let mut whole_events = vec![whole_snapshot];
    whole_events.extend(c.events_until_end(whole).await);
    let mut delta_events = vec![delta_snapshot];
    delta_events.extend(c.events_until_end(deltas).await);
    assert_eq!(
        whole_events.last().map(|e| e.reason),
        Some(EndReason::Terminal as i32)
    );
    assert_eq!(
        delta_events.last().map(|e| e.reason),
        Some(EndReason::Terminal as i32)
    );
    assert!(delta_events[1..delta_events.len() - 1]
        .iter()
        .all(|e| e.r#type == DELTA));
    // The whole status sent again after appends extends the text: its diff
    // is an append, not a replacement.
    let revs: Vec<(i32, u64)> = delta_events
        .iter()
        .map(|e| (e.r#type, e.revision))
        .collect();
    let upstream = &delta_events[6];
    assert_eq!(upstream.r#type, DELTA, "{revs:?}");
    assert!(
        upstream
            .ops
            .iter()
            .any(|o| matches!(&o.op, Some(op::Op::AppendText(t)) if t.text == ". Found it")),
        "{upstream:?} in {revs:?}"
    );
    let from_deltas = replay(&delta_events, None);
    let from_whole: Vec<(AgentExecution, u64)> = whole_events
        .iter()
        .filter(|e| e.r#type != END)
        .map(|e| (e.execution.clone().expect("state"), e.revision))
        .collect();
    assert_eq!(from_deltas, from_whole);
    let (latest, revision) = get(&mut w, &id).await;
    assert_eq!(from_deltas.last(), Some(&(latest, revision)));
}

/// Resuming a delta stream from a revision: with the initial state (the
/// state at that revision, rebuilt from the history), or without it for a
/// client that holds it; a whole-state stream resumed over deltas gets
/// whole states. Across a daemon restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_streams_resume_across_a_restart() {
    let mut d = Daemon::start(&[]);
    let mut w = d.connect().await;
    let (id, _) = w.create("runner").await;
    let mut said = String::new();
    let mut revisions = Vec::new();
    for i in 0..40 {
        let token = format!("t{i} ");
        revisions.push(acked(
            w.call(append(&id, vec![text(0, said.len() as u64, &token)], None))
                .await,
        ));
        said.push_str(&token);
    }
    // The state at revision R, for reference, from a whole-state replay.
    let mut c = d.connect().await;
    let whole = subscribe(&mut c, &id, Some(0), false, false).await;
    let mut states = Vec::new();
    while states.len() < 41 {
        let e = c.event(whole).await;
        assert_eq!(e.r#type, UPDATE, "{e:?}");
        states.push((e.execution.expect("whole state"), e.revision));
    }
    d.stop();
    d.restart();
    // A retried append after the restart is still recognised.
    let mut w = d.connect().await;
    let last = *revisions.last().expect("appended");
    let t39 = "t39 ";
    assert_eq!(
        acked(
            w.call(append(
                &id,
                vec![text(0, (said.len() - t39.len()) as u64, t39)],
                None
            ))
            .await
        ),
        last
    );
    let mut c = d.connect().await;
    let r = revisions[20];
    // With the initial state: a SNAPSHOT at R, then a delta per change.
    let s = subscribe(&mut c, &id, Some(r), true, false).await;
    let first = c.event(s).await;
    assert_eq!((first.r#type, first.revision), (SNAPSHOT, r));
    let mut events = vec![first];
    for _ in 21..40 {
        events.push(c.event(s).await);
    }
    let rebuilt = replay(&events, None);
    let expected: Vec<_> = states
        .iter()
        .filter(|(_, rev)| *rev >= r)
        .cloned()
        .collect();
    assert_eq!(rebuilt, expected);
    // Without it: the first event is the delta after R.
    let s2 = subscribe(&mut c, &id, Some(r), true, true).await;
    let first = c.event(s2).await;
    assert_eq!((first.r#type, first.prev_revision), (DELTA, r));
    // A whole-state stream resumed at R gets whole states.
    let s3 = subscribe(&mut c, &id, Some(r), false, false).await;
    let e = c.event(s3).await;
    assert_eq!(e.r#type, UPDATE);
    // states[0] is the create, states[i + 1] the state after revisions[i].
    assert_eq!(
        (e.execution.expect("whole"), e.revision),
        states[22].clone()
    );
    let (latest, _) = get(&mut c, &id).await;
    assert_eq!(content(&latest, 0), said);
}

/// An upstream-style runner that resends its whole cumulative status costs
/// the history what changed: a long transcript's database stays within a
/// small multiple of its final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_statuses_are_stored_as_deltas() {
    let d = Daemon::start(&[]);
    let mut w = d.connect().await;
    let (id, _) = w.create("runner").await;
    let mut text = String::new();
    // Upstream's pattern: the whole status every 10 tokens.
    for i in 0..400 {
        for t in 0..10 {
            text.push_str(&format!("tok{i}.{t} "));
        }
        let status = AgentExecutionStatus {
            phase: ExecutionPhase::ExecutionInProgress as i32,
            messages: vec![AgentMessage {
                r#type: MessageType::MessageAi as i32,
                content: text.clone(),
                ..Default::default()
            }],
            ..Default::default()
        };
        w.send_with(1, Cmd::UpdateStatus(update_input(&id, status)), true)
            .await;
        w.recv(1).await;
    }
    let (latest, _) = get(&mut w, &id).await;
    assert_eq!(content(&latest, 0), text);
    let state = prost::Message::encoded_len(&latest) as u64;
    let conn = rusqlite::Connection::open(&d.db).expect("open the database");
    let stored: i64 = conn
        .query_row(
            "SELECT SUM(COALESCE(length(data), 0) + COALESCE(length(ops), 0)) FROM history",
            [],
            |r| r.get(0),
        )
        .expect("sum");
    // Whole states every update would be ~200 times the final state.
    assert!(
        (stored as u64) < 8 * state,
        "stored {stored} bytes of history for a {state}-byte state"
    );
}

/// Issue 16's measured case, shortened: upstream's runner
/// (clients/python/examples/agent_runner.py --mode full) resends its whole
/// status every 10 tokens while its AI message makes a tool call every 40,
/// so the message's own tool calls change as its content grows. The
/// history holds operations (`append_text`, `put_message_tool_call`), never
/// a `replace_message` of the whole message, and few bases: its bytes stay
/// within a small multiple of the final state (replacing the message at
/// every tool call stored a base each time: ~200 times it for 8,000 tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_statuses_with_message_tool_calls_are_stored_as_deltas() {
    use stigmer_proto::agentexecution::ToolCallStatus;
    let d = Daemon::start(&[]);
    let mut w = d.connect().await;
    let (id, _) = w.create("runner").await;
    let mut messages = vec![
        AgentMessage {
            r#type: MessageType::MessageHuman as i32,
            content: "summarize the logs".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        },
        AgentMessage {
            r#type: MessageType::MessageAi as i32,
            timestamp: "2026-01-01T00:00:01Z".into(),
            ..Default::default()
        },
    ];
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut updates = 0u64;
    let send = |messages: &[AgentMessage], calls: &[ToolCall], phase: ExecutionPhase| {
        Cmd::UpdateStatus(update_input(
            &id,
            AgentExecutionStatus {
                phase: phase as i32,
                messages: messages.to_vec(),
                tool_calls: calls.to_vec(),
                ..Default::default()
            },
        ))
    };
    let finish = |calls: &mut Vec<ToolCall>| {
        for c in calls.iter_mut() {
            if c.status == ToolCallStatus::ToolCallRunning as i32 {
                c.status = ToolCallStatus::ToolCallCompleted as i32;
                c.result = "3 matches".into();
                c.completed_at = "2026-01-01T00:00:03Z".into();
            }
        }
    };
    for i in 1..=2000u32 {
        messages[1].content.push_str(&format!("tok{i} "));
        if i % 40 == 0 {
            finish(&mut calls);
            finish(&mut messages[1].tool_calls);
            let call = ToolCall {
                id: format!("call-{}", i / 40),
                name: "search_logs".into(),
                status: ToolCallStatus::ToolCallRunning as i32,
                started_at: "2026-01-01T00:00:02Z".into(),
                ..Default::default()
            };
            calls.push(call.clone());
            messages[1].tool_calls.push(call);
        }
        if i % 10 == 0 {
            w.send_with(
                1,
                send(&messages, &calls, ExecutionPhase::ExecutionInProgress),
                true,
            )
            .await;
            acked(w.recv(1).await);
            updates += 1;
        }
    }
    finish(&mut calls);
    finish(&mut messages[1].tool_calls);
    w.send_with(
        1,
        send(&messages, &calls, ExecutionPhase::ExecutionCompleted),
        true,
    )
    .await;
    acked(w.recv(1).await);
    updates += 1;

    let (latest, _) = get(&mut w, &id).await;
    let status = latest.status.as_ref().expect("status");
    assert_eq!(status.messages, messages, "the messages as sent");
    assert_eq!(status.messages[1].tool_calls.len(), 50);
    assert_eq!(status.tool_calls, calls);
    let state = prost::Message::encoded_len(&latest) as u64;

    let conn = rusqlite::Connection::open(&d.db).expect("open the database");
    let mut rows = conn
        .prepare("SELECT data IS NOT NULL, ops FROM history WHERE execution_id = ?1")
        .expect("prepare");
    let rows: Vec<(bool, Option<Vec<u8>>)> = rows
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(
        rows.len() as u64 > updates,
        "one row per update, and the create"
    );
    let (mut puts, mut bases) = (0, 0);
    for (base, ops) in &rows {
        bases += u64::from(*base);
        let Some(ops) = ops else { continue };
        let delta = <stigmer_proto::daemon::Delta as prost::Message>::decode(ops.as_slice())
            .expect("a stored delta");
        for o in &delta.ops {
            match &o.op {
                Some(op::Op::PutMessageToolCall(_)) => puts += 1,
                Some(
                    op::Op::ReplaceMessage(_)
                    | op::Op::ReplaceMessages(_)
                    | op::Op::ReplaceToolCalls(_),
                ) => panic!("a replacing op stored: {o:?}"),
                _ => {}
            }
        }
    }
    // Each tool call started, then completed: two puts each.
    assert_eq!(puts, 100, "put_message_tool_call ops stored");
    let stored: i64 = conn
        .query_row(
            "SELECT SUM(COALESCE(length(data), 0) + COALESCE(length(ops), 0)) FROM history WHERE execution_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .expect("sum");
    // A base whenever the ops since the last outgrow it (and the terminal
    // one): about log2 of the growth, not one per tool call (50 here).
    assert!(
        bases <= 16,
        "{bases} bases in {} rows of history",
        rows.len()
    );
    assert!(
        (stored as u64) < 8 * state,
        "stored {stored} bytes of history for a {state}-byte state"
    );
}

/// `put_message_tool_call` through the daemon: inserted and replaced by id
/// in the message's own tool calls, acknowledged when already applied, an
/// empty id INVALID_ARGUMENT, a message that does not exist ABORTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_puts_a_message_tool_call() {
    use stigmer_proto::daemon::PutMessageToolCall;
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("runner").await;
    let put = |index: u32, call_id: &str, result: &str| Op {
        op: Some(op::Op::PutMessageToolCall(PutMessageToolCall {
            message_index: index,
            tool_call: Some(ToolCall {
                id: call_id.into(),
                name: "grep".into(),
                result: result.into(),
                ..Default::default()
            }),
        })),
    };
    let first = acked(
        c.call(append(
            &id,
            vec![text(0, 0, "looking"), put(0, "t1", "")],
            None,
        ))
        .await,
    );
    let second = acked(
        c.call(append(&id, vec![put(0, "t1", "2 hits")], None))
            .await,
    );
    assert!(second > first);
    let again = acked(
        c.call(append(&id, vec![put(0, "t1", "2 hits")], None))
            .await,
    );
    assert_eq!(again, second, "already applied: nothing written");
    acked(c.call(append(&id, vec![put(0, "t2", "")], None)).await);
    expect_error(
        &c.call(append(&id, vec![put(0, "", "x")], None)).await,
        Code::InvalidArgument,
    );
    let why = expect_error(
        &c.call(append(&id, vec![put(1, "t3", "")], None)).await,
        Code::Aborted,
    );
    assert!(why.contains("message 1 does not exist"), "{why}");
    let (e, _) = get(&mut c, &id).await;
    let status = e.status.expect("status");
    let calls: Vec<(&str, &str)> = status.messages[0]
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.result.as_str()))
        .collect();
    assert_eq!(calls, [("t1", "2 hits"), ("t2", "")]);
    assert!(
        status.tool_calls.is_empty(),
        "the status's own list is another"
    );
    assert_eq!(status.messages[0].content, "looking");
}
