//! Test harness: runs the real `stigmer` binary on a temporary socket and
//! database, and speaks the raw protocol to it (no client-side resume or
//! de-duplication, so the daemon's own guarantees are what is tested); and
//! the small helpers several test files share (`have`, `skip`,
//! `free_loopback_addr`).

#![allow(dead_code)]

pub mod watch;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionStatus, AgentExecutionUpdateStatusInput,
    AgentMessage, ExecutionPhase, MessageType,
};
use stigmer_proto::daemon::{request::Command as Cmd, response, Code, Event, Request, Response};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Says why a test skips (on stdout and stderr, so either capture shows
/// it); the test then returns.
pub fn skip(why: &str) {
    println!("SKIPPED: {why}");
    eprintln!("SKIPPED: {why}");
}

/// `127.0.0.1:PORT` of a port free just now, for a daemon to listen on.
pub fn free_loopback_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("127.0.0.1:{port}")
}

/// A failure guard, not a timing assertion: no healthy step takes this long.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A daemon process.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub db: PathBuf,
    args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    /// Lines the daemon logged (stderr), for failure messages.
    pub log: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts a daemon in a new temporary directory.
    pub fn start(args: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut d = Self::spawn(&dir, args);
        d._tmp = Some(tmp);
        d
    }

    fn spawn(dir: &Path, args: &[&str]) -> Daemon {
        let socket = dir.join("s.sock");
        let db = dir.join("db").join("stigmer.db");
        let (child, log) = spawn_daemon(&socket, &db, args);
        Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            socket,
            db,
            args: args.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
            log,
        }
    }

    /// Stops with SIGTERM and returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        child.wait().expect("wait")
    }

    /// Kills with SIGKILL (a crash).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        signal(&child, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }

    /// Starts again on the same socket and database.
    pub fn restart(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (child, log) = spawn_daemon(&self.socket, &self.db, &args);
        self.child = Some(child);
        self.log = log;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// One unlabelled metric, as `stigmer status --prometheus` shows it.
    #[allow(dead_code)] // not every test binary reads metrics
    pub fn metric(&self, name: &str) -> f64 {
        let out = Command::new(env!("CARGO_BIN_EXE_stigmer"))
            .arg("--socket")
            .arg(&self.socket)
            .args(["status", "--prometheus"])
            .output()
            .expect("run stigmer status");
        assert!(out.status.success(), "status failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .parse()
            .expect("a number")
    }

    pub async fn connect(&self) -> Raw {
        Raw::connect(&self.socket).await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, sig);
}

/// Spawns the daemon and waits for its "listening" log line (an event, not
/// a sleep). Panics with the daemon's output if it exits first.
pub fn spawn_daemon(socket: &Path, db: &Path, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    spawn_daemon_with(socket, db, args, |_| {})
}

/// [`spawn_daemon`], with `adjust` changing the command first (another
/// user, environment variables, ...).
pub fn spawn_daemon_with(
    socket: &Path,
    db: &Path,
    args: &[&str],
    adjust: impl FnOnce(&mut Command),
) -> (Child, mpsc::Receiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stigmer"));
    command
        .arg("--socket")
        .arg(socket)
        .arg("daemon")
        .arg("--db")
        .arg(db)
        .args(args)
        .args(cluster_args(db, args))
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    adjust(&mut command);
    let mut child = command.spawn().expect("spawn stigmer daemon");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(STEP_TIMEOUT) {
            Ok(line) => {
                let ready = line.contains("listening");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not start; its output:\n{}", seen.join("\n"));
            }
        }
    }
    (child, rx)
}

/// With `STIGMER_TEST_ETCD=URLS` set, every daemon a test starts runs in
/// the cluster mode on that etcd, each database under its own prefix
/// (stable across a restart): the same tests then check that the cluster
/// mode keeps every command and guarantee (docs/design/cluster.md). Unset,
/// nothing is added.
fn cluster_args(db: &Path, args: &[&str]) -> Vec<String> {
    match std::env::var("STIGMER_TEST_ETCD") {
        Ok(urls) if !urls.is_empty() && !args.contains(&"--etcd") => {
            let prefix: String = db
                .to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            vec![
                "--etcd".into(),
                urls,
                "--etcd-prefix".into(),
                format!("/test/{prefix}"),
            ]
        }
        _ => Vec::new(),
    }
}

/// A raw protocol connection.
pub struct Raw {
    pub framed: Framed<UnixStream, LengthDelimitedCodec>,
    next_id: u64,
    /// Responses received while waiting for another id.
    pending: Vec<Response>,
}

impl Raw {
    pub async fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).await.expect("connect");
        Raw {
            framed: Framed::new(stream, stigmer_proto::frame::codec(64 * 1024 * 1024)),
            next_id: 1,
            pending: Vec::new(),
        }
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub async fn send_bytes(&mut self, body: Vec<u8>) {
        self.framed.send(Bytes::from(body)).await.expect("send");
    }

    pub async fn send(&mut self, id: u64, command: Cmd) {
        self.send_with(id, command, false).await;
    }

    /// Sends a command with `Request.minimal_reply` set as given.
    pub async fn send_with(&mut self, id: u64, command: Cmd, minimal_reply: bool) {
        let req = Request {
            protocol_version: 1,
            id,
            minimal_reply,
            command: Some(command),
        };
        self.send_bytes(req.encode_to_vec()).await;
    }

    /// The next response from the daemon (None at EOF).
    pub async fn recv_any(&mut self) -> Option<Response> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        let frame = tokio::time::timeout(STEP_TIMEOUT, self.framed.next())
            .await
            .expect("timed out waiting for a frame");
        match frame {
            None => None,
            Some(Ok(body)) => Some(Response::decode(body).expect("response decodes")),
            Some(Err(_)) => None,
        }
    }

    /// The next response for request `id` (others are kept for later).
    pub async fn recv(&mut self, id: u64) -> Response {
        if let Some(pos) = self.pending.iter().position(|r| r.id == id) {
            return self.pending.remove(pos);
        }
        loop {
            let frame = tokio::time::timeout(STEP_TIMEOUT, self.framed.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for a reply to {id}"));
            let body = match frame {
                Some(Ok(body)) => body,
                other => panic!("connection ended waiting for {id}: {other:?}"),
            };
            let resp = Response::decode(body).expect("response decodes");
            if resp.id == id {
                return resp;
            }
            self.pending.push(resp);
        }
    }

    /// Responses received while waiting for other ids, not yet taken.
    pub fn pending(&self) -> &[Response] {
        &self.pending
    }

    /// Sends a command and returns its reply.
    pub async fn call(&mut self, command: Cmd) -> Response {
        let id = self.next_id();
        self.send(id, command).await;
        self.recv(id).await
    }

    /// True once the daemon has closed the connection.
    pub async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(STEP_TIMEOUT, self.framed.next()).await,
            Ok(None) | Ok(Some(Err(_)))
        )
    }

    /// Pings and asserts the pong: the connection is alive and usable.
    pub async fn expect_pong(&mut self) {
        let reply = self
            .call(Cmd::Ping(stigmer_proto::daemon::PingRequest {}))
            .await;
        assert!(
            matches!(reply.result, Some(response::Result::Pong(_))),
            "expected a pong, got {reply:?}"
        );
    }

    /// Asserts the daemon refused this connection with `code` (an error
    /// frame with id 0, then close); returns the message.
    pub async fn expect_refused(&mut self, code: Code) -> String {
        let reply = self.recv_any().await.expect("an error frame");
        assert_eq!(reply.id, 0, "a connection error has id 0");
        let message = expect_error(&reply, code);
        assert!(
            self.closed().await,
            "the daemon closes a refused connection"
        );
        message
    }

    pub async fn create(&mut self, agent: &str) -> (String, u64) {
        let resp = self.call(Cmd::Create(new_execution(agent, None))).await;
        let reply = expect_execution(resp);
        (reply.0.metadata.expect("metadata").id, reply.1)
    }

    pub async fn update(&mut self, id: &str, status: AgentExecutionStatus) -> Response {
        self.call(Cmd::UpdateStatus(update_input(id, status))).await
    }

    /// Opens a subscription; returns its request id.
    pub async fn subscribe(&mut self, id: &str, from: Option<u64>) -> u64 {
        let req = self.next_id();
        self.send(
            req,
            Cmd::Subscribe(stigmer_proto::daemon::SubscribeRequest {
                execution_id: id.into(),
                from_revision: from,
                ..Default::default()
            }),
        )
        .await;
        req
    }

    /// The next event of stream `sub` (panics on an error reply).
    pub async fn event(&mut self, sub: u64) -> Event {
        match self.recv(sub).await.result {
            Some(response::Result::Event(e)) => e,
            other => panic!("expected an event on {sub}, got {other:?}"),
        }
    }

    /// Events of `sub` until END (inclusive).
    pub async fn events_until_end(&mut self, sub: u64) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let e = self.event(sub).await;
            let end = e.r#type == stigmer_proto::daemon::EventType::EventEnd as i32;
            out.push(e);
            if end {
                return out;
            }
        }
    }
}

pub fn new_execution(agent: &str, session: Option<&str>) -> AgentExecution {
    AgentExecution {
        spec: Some(AgentExecutionSpec {
            agent_id: agent.into(),
            message: "hello".into(),
            session_id: session.unwrap_or("").into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn ai_status(text: &str) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: text.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn phase(p: ExecutionPhase) -> AgentExecutionStatus {
    AgentExecutionStatus {
        phase: p as i32,
        ..Default::default()
    }
}

pub fn update_input(id: &str, status: AgentExecutionStatus) -> AgentExecutionUpdateStatusInput {
    AgentExecutionUpdateStatusInput {
        execution_id: id.into(),
        status: Some(status),
    }
}

pub fn expect_execution(resp: Response) -> (AgentExecution, u64) {
    match resp.result {
        Some(response::Result::Execution(r)) => (r.execution.expect("execution"), r.revision),
        other => panic!("expected an execution reply, got {other:?}"),
    }
}

pub fn expect_error(resp: &Response, code: Code) -> String {
    match &resp.result {
        Some(response::Result::Error(e)) if e.code == code as i32 => e.message.clone(),
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Runs `stigmer --socket <d's> ARGS`, asserts it succeeded and returns its
/// trimmed stdout (the CLI tests' one-shot commands).
pub fn stigmer_ok(d: &Daemon, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .output()
        .expect("run stigmer");
    assert!(
        out.status.success(),
        "stigmer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// `stigmer executions create` of `agent` in `session`; returns its output
/// (the new id).
pub fn cli_create(d: &Daemon, agent: &str, session: &str) -> String {
    let args = [
        "executions",
        "create",
        "--agent",
        agent,
        "--session",
        session,
        "--message",
        "hi",
    ];
    stigmer_ok(d, &args)
}
