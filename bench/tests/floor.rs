//! The floor server (`src/bin/stigmer-floor/`) answers what the throughput,
//! latency and transcript scenarios send, acknowledges each write only with
//! the revision it committed to SQLite, and hands a subscriber each change
//! in commit order.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionId, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
    ExecutionPhase,
};
use stigmer_proto::daemon::{
    op, request, response, AppendRequest, AppendText, Code, Event, EventType, Op, PingRequest,
    Request, Response, SubscribeRequest,
};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> (Server, UnixStream) {
    let socket = dir.join("floor.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_stigmer-floor"))
        .arg("--socket")
        .arg(&socket)
        .arg("daemon")
        .arg("--db")
        .arg(dir.join("db").join("floor.db"))
        .args(["--durability", "normal"])
        .spawn()
        .expect("the floor server starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(stream) = UnixStream::connect(&socket) {
            return (server, stream);
        }
        assert!(Instant::now() < deadline, "the floor server never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn call(stream: &mut UnixStream, id: u64, command: request::Command) -> response::Result {
    send(stream, id, command);
    recv(stream, id)
}

fn send(stream: &mut UnixStream, id: u64, command: request::Command) {
    let req = Request {
        protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
        id,
        minimal_reply: true,
        command: Some(command),
    };
    let body = req.encode_to_vec();
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
}

/// The next frame, which must answer (or stream for) request `id`.
fn recv(stream: &mut UnixStream, id: u64) -> response::Result {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    let resp = Response::decode(body.as_slice()).unwrap();
    assert_eq!(resp.id, id);
    resp.result.expect("a result")
}

fn revision(result: response::Result) -> u64 {
    match result {
        response::Result::Execution(reply) => reply.revision,
        response::Result::Pong(pong) => pong.revision,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn acknowledges_each_write_with_its_committed_revision() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut stream) = start(dir.path());
    assert_eq!(
        revision(call(&mut stream, 1, request::Command::Ping(PingRequest {}))),
        0
    );

    let created = match call(
        &mut stream,
        2,
        request::Command::Create(AgentExecution::default()),
    ) {
        response::Result::Execution(reply) => reply,
        other => panic!("unexpected reply {other:?}"),
    };
    assert_eq!(created.revision, 1);
    assert!(!created.execution_id.is_empty());
    for (id, want) in (3..13).zip(2..) {
        let update = AgentExecutionUpdateStatusInput {
            execution_id: created.execution_id.clone(),
            status: Some(AgentExecutionStatus::default()),
        };
        assert_eq!(
            revision(call(
                &mut stream,
                id,
                request::Command::UpdateStatus(update)
            )),
            want
        );
    }
    assert_eq!(
        revision(call(
            &mut stream,
            13,
            request::Command::Ping(PingRequest {})
        )),
        11
    );

    // Every acknowledged write is a row in the database.
    let db = rusqlite::Connection::open(dir.path().join("db").join("floor.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM updates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 11);

    // Anything the scenarios do not send is refused, not dropped.
    match call(&mut stream, 14, request::Command::List(Default::default())) {
        response::Result::Error(e) => assert_eq!(e.code, Code::Unimplemented as i32),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn event(result: response::Result) -> Event {
    match result {
        response::Result::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn append(execution_id: &str, ops: Vec<op::Op>) -> request::Command {
    request::Command::Append(AppendRequest {
        execution_id: execution_id.to_string(),
        expected_revision: None,
        ops: ops.into_iter().map(|op| Op { op: Some(op) }).collect(),
    })
}

fn text(offset: u64, text: &str) -> op::Op {
    op::Op::AppendText(AppendText {
        message_index: 0,
        offset,
        text: text.to_string(),
        r#type: 0,
    })
}

/// A floor server in `dir`, a runner's connection that created an
/// execution, and a watcher's that subscribed to it (request id 7, with
/// `deltas` or whole states); the SNAPSHOT is left to read.
fn watched(dir: &Path, deltas: bool) -> (Server, UnixStream, UnixStream, String) {
    let (server, mut runner) = start(dir);
    let mut watcher = UnixStream::connect(dir.join("floor.sock")).unwrap();
    let id = match call(
        &mut runner,
        1,
        request::Command::Create(AgentExecution::default()),
    ) {
        response::Result::Execution(reply) => reply.execution_id,
        other => panic!("unexpected reply {other:?}"),
    };
    let subscribe = SubscribeRequest {
        execution_id: id.clone(),
        deltas,
        ..Default::default()
    };
    send(&mut watcher, 7, request::Command::Subscribe(subscribe));
    (server, runner, watcher, id)
}

#[test]
fn streams_each_committed_append_to_a_delta_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut runner, mut watcher, id) = watched(dir.path(), true);
    let snapshot = event(recv(&mut watcher, 7));
    assert_eq!(
        (snapshot.r#type, snapshot.revision),
        (EventType::EventSnapshot as i32, 1)
    );

    let first = vec![
        op::Op::SetPhase(ExecutionPhase::ExecutionInProgress as i32),
        text(0, "the "),
    ];
    assert_eq!(revision(call(&mut runner, 2, append(&id, first))), 2);
    assert_eq!(
        revision(call(&mut runner, 3, append(&id, vec![text(4, "end")]))),
        3
    );
    // An offset that is not the text's length is refused, and nothing of it
    // reaches the subscriber.
    match call(&mut runner, 4, append(&id, vec![text(2, "x")])) {
        response::Result::Error(e) => assert_eq!(e.code, Code::Aborted as i32),
        other => panic!("unexpected reply {other:?}"),
    }
    let done = vec![op::Op::SetPhase(ExecutionPhase::ExecutionCompleted as i32)];
    assert_eq!(revision(call(&mut runner, 5, append(&id, done))), 4);

    let mut prev = 1;
    for want in 2..=4 {
        let delta = event(recv(&mut watcher, 7));
        assert_eq!(delta.r#type, EventType::EventDelta as i32);
        assert_eq!((delta.prev_revision, delta.revision), (prev, want));
        prev = want;
    }
    let end = event(recv(&mut watcher, 7));
    assert_eq!((end.r#type, end.revision), (EventType::EventEnd as i32, 4));

    match call(
        &mut runner,
        6,
        request::Command::Get(AgentExecutionId { value: id }),
    ) {
        response::Result::Execution(reply) => {
            let status = reply.execution.unwrap().status.unwrap();
            assert_eq!(status.messages[0].content, "the end");
            assert_eq!(status.phase, ExecutionPhase::ExecutionCompleted as i32);
            assert_eq!(reply.revision, 4);
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn streams_each_committed_status_to_a_whole_state_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut runner, mut watcher, id) = watched(dir.path(), false);
    assert_eq!(
        event(recv(&mut watcher, 7)).r#type,
        EventType::EventSnapshot as i32
    );
    let status = AgentExecutionStatus {
        error: "as sent".into(),
        ..Default::default()
    };
    let update = AgentExecutionUpdateStatusInput {
        execution_id: id,
        status: Some(status.clone()),
    };
    assert_eq!(
        revision(call(&mut runner, 2, request::Command::UpdateStatus(update))),
        2
    );
    let got = event(recv(&mut watcher, 7));
    assert_eq!(
        (got.r#type, got.revision),
        (EventType::EventUpdate as i32, 2)
    );
    assert_eq!(got.execution.unwrap().status, Some(status));
}
