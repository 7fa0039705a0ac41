//! The floor server (`src/bin/stigmer-floor.rs`) answers what the
//! throughput scenario sends, and acknowledges each update only with the
//! revision it committed to SQLite.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
};
use stigmer_proto::daemon::{request, response, Code, PingRequest, Request, Response};

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

    // Anything the throughput scenario does not send is refused, not dropped.
    match call(&mut stream, 14, request::Command::Get(Default::default())) {
        response::Result::Error(e) => assert_eq!(e.code, Code::Unimplemented as i32),
        other => panic!("unexpected reply {other:?}"),
    }
}
