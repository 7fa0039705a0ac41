//! The daemon as a system service: socket activation, sd_notify, peer
//! credentials and access control, per-uid and slow-consumer limits, status
//! and metrics, and SIGTERM under load. Tests that need root (creating users)
//! or a system tool print why they skip when either is missing.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use stigmer_proto::agentexecution::{AgentExecutionId, ExecutionPhase};
use stigmer_proto::daemon::{request::Command as Cmd, response, Code, PingRequest, StatusRequest};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stigmer")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_and_prometheus_exposition() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("status").await;
    let sub = c.subscribe(&id, None).await;
    c.event(sub).await;
    expect_execution(c.update(&id, ai_status("x")).await);
    c.event(sub).await;
    let status = match c
        .call(Cmd::Status(StatusRequest { prometheus: true }))
        .await
        .result
    {
        Some(response::Result::Status(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(status.protocol_version, 1);
    assert_eq!(status.connections, 1);
    assert_eq!(status.subscriptions, 1);
    assert_eq!(status.subscriptions_by_execution.get(&id), Some(&1));
    assert_eq!(status.committed_changes, 2);
    assert!(status.commit_batches >= 1 && status.commit_batches <= 2);
    assert!(status.commit_latency_p50_us > 0.0);
    assert!(status.broadcast_latency_p50_us > 0.0);
    assert_eq!(status.durability, "normal");
    assert!(status.database.ends_with("stigmer.db"));
    for metric in [
        "stigmer_changes_committed_total 2",
        "# TYPE stigmer_commit_latency_seconds histogram",
        "stigmer_broadcast_latency_seconds_count 1",
        "stigmer_subscribers 1",
        "stigmer_connections_rejected_total{reason=\"permission\"} 0",
    ] {
        assert!(
            status.prometheus.contains(metric),
            "missing {metric:?} in\n{}",
            status.prometheus
        );
    }
    // The CLI shows the same, as text and JSON.
    let out = Command::new(bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["status", "-o", "json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["committedChanges"], "2");
    // `stigmer status --prometheus`.
    assert_eq!(d.metric("stigmer_revision"), 2.0);
}

/// `stigmer_shard_connections{shard}`: connections spread over the shards
/// by accept order, and each shard's gauge follows its connections in and
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_connections_gauge_follows_connections() {
    let d = Daemon::start(&["--worker-threads", "2"]);
    let mut conns = Vec::new();
    for _ in 0..4 {
        let mut c = d.connect().await;
        // Answered, so it is being served on its shard.
        c.expect_pong().await;
        conns.push(c);
    }
    // Both shards' gauges from one exposition, read over one of the four.
    async fn per_shard(c: &mut Raw) -> (f64, f64) {
        let text = match c
            .call(Cmd::Status(StatusRequest { prometheus: true }))
            .await
            .result
        {
            Some(response::Result::Status(s)) => s.prometheus,
            other => panic!("{other:?}"),
        };
        let gauge = |n: usize| -> f64 {
            let name = format!("stigmer_shard_connections{{shard=\"{n}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(name.as_str()))
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
                .parse()
                .expect("a number")
        };
        (gauge(0), gauge(1))
    }
    let (zero, one) = per_shard(&mut conns[0]).await;
    assert_eq!((zero, one), (2.0, 2.0), "round-robin by accept order");
    let mut last = conns.remove(0);
    drop(conns);
    // Each close is counted out once its shard's task sees it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (zero, one) = per_shard(&mut last).await;
        if zero + one == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still counted: shard 0 {zero}, shard 1 {one}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn metrics_endpoint_on_loopback_only() {
    let addr = free_loopback_addr();
    let d = Daemon::start(&["--metrics-listen", &addr]);
    let mut http = std::net::TcpStream::connect(&addr).expect("connect");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    http.read_to_string(&mut body).expect("read");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("stigmer_uptime_seconds"), "{body}");
    drop(d);
    // Any other address is refused at start-up.
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(bin())
        .arg("--socket")
        .arg(tmp.path().join("s"))
        .args(["daemon", "--db"])
        .arg(tmp.path().join("db"))
        .args(["--metrics-listen", "0.0.0.0:9464"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only loopback"));
}

/// A daemon started with NOTIFY_SOCKET (and a 200 ms watchdog) pointing at a
/// datagram socket the test reads.
struct Notified {
    _tmp: tempfile::TempDir,
    notify: UnixDatagram,
    child: std::process::Child,
}

impl Notified {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let notify_path = tmp.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify");
        // A failure guard: a healthy daemon notifies within milliseconds.
        notify
            .set_read_timeout(Some(STEP_TIMEOUT))
            .expect("timeout");
        let child = Command::new(bin())
            .arg("--socket")
            .arg(tmp.path().join("s.sock"))
            .args(["daemon", "--db"])
            .arg(tmp.path().join("db"))
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "200000")
            .env_remove("WATCHDOG_PID")
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        Self {
            _tmp: tmp,
            notify,
            child,
        }
    }

    fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn recv_until(&self, what: &str) -> bool {
        (0..10).any(|_| self.recv().contains(what))
    }

    fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
    }
}

#[test]
fn ready_status_watchdog_and_stopping_on_notify_socket() {
    let mut d = Notified::start();
    let first = d.recv();
    assert!(first.starts_with("READY=1"), "{first}");
    assert!(first.contains("STATUS=serving"), "{first}");
    // The watchdog is fed at half of WATCHDOG_USEC.
    assert!(d.recv_until("WATCHDOG=1"));
    d.sigterm();
    assert!(d.recv_until("STOPPING=1"));
    assert_eq!(d.child.wait().expect("wait").code(), Some(0));
}

/// Regression (a CI failure): the SIGTERM handler used to be installed after
/// READY=1, so a stop request arriving right after READY killed the daemon
/// with the default action instead of shutting it down gracefully.
#[test]
fn sigterm_right_after_ready_shuts_down_gracefully() {
    for _ in 0..5 {
        let mut d = Notified::start();
        assert!(d.recv().starts_with("READY=1"));
        d.sigterm();
        assert!(d.recv_until("STOPPING=1"));
        assert_eq!(d.child.wait().expect("wait").code(), Some(0));
    }
}

/// `systemd-socket-activate` listening on `socket`, to start the daemon
/// (told `--socket daemon_socket`, `--idle-exit 1`) on the first connection;
/// returns once the socket exists ("Listening on", an event, not a sleep),
/// with the rest of the activator's stderr (the daemon's log).
fn activate(
    socket: &std::path::Path,
    daemon_socket: &std::path::Path,
    db: &std::path::Path,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(socket)
        .arg("--fdname=stigmer")
        .arg(bin())
        .arg("--socket")
        .arg(daemon_socket)
        .args(["daemon", "--db"])
        .arg(db)
        .args(["--idle-exit", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    let stderr = activator.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.expect("line").contains("Listening on") {
            break;
        }
    }
    (activator, lines)
}

#[test]
fn socket_activation_with_systemd_socket_activate_and_idle_exit() {
    if !have("systemd-socket-activate") {
        return skip("systemd-socket-activate is not installed (Debian package systemd)");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("act.sock");
    let db = tmp.path().join("db");
    let (mut activator, lines) = activate(&socket, &socket, &db);
    std::thread::spawn(move || for _ in lines {});
    // The first connection starts the daemon, which takes the passed socket.
    let run = |args: &[&str]| {
        Command::new(bin())
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("run cli")
    };
    let out = run(&["executions", "create", "--agent", "a", "--message", "m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = run(&["executions", "update", &id, "--phase", "completed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Idle for a second: the daemon exits 0 by itself (the socket file is the
    // activator's and stays).
    let status = activator.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "idle exit is a clean exit");
    assert!(
        socket.exists(),
        "an activated daemon leaves the socket file alone"
    );
    // Nothing was lost: a fresh daemon on the same database has it.
    std::fs::remove_file(&socket).expect("rm");
    let (mut child, _log) = spawn_daemon(&socket, &db, &[]);
    let out = run(&["executions", "get", &id, "-o", "json"]);
    let _ = child.kill();
    let _ = child.wait();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["status"]["phase"], "EXECUTION_COMPLETED");
}

/// Under socket activation the daemon reports (in `status` and its log) the
/// socket the service manager passed, not its `--socket` flag or default.
#[test]
fn socket_activation_reports_the_socket_in_use() {
    if !have("systemd-socket-activate") {
        return skip("systemd-socket-activate is not installed (Debian package systemd)");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("act.sock");
    let elsewhere = tmp.path().join("not-this-one.sock");
    let (mut activator, lines) = activate(&socket, &elsewhere, &tmp.path().join("db"));
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let out = Command::new(bin())
        .arg("--socket")
        .arg(&socket)
        .args(["status", "-o", "json"])
        .output()
        .expect("run stigmer status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["socket"], socket.display().to_string(), "{json}");
    assert_eq!(activator.wait().expect("wait").code(), Some(0));
    let log = log.join().expect("log").join("\n");
    let listening = log
        .lines()
        .find(|l| l.contains("listening"))
        .unwrap_or_default();
    assert!(
        listening.contains(&socket.display().to_string()),
        "the log names the socket in use: {log}"
    );
    assert!(!elsewhere.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_uid_connection_limit() {
    let d = Daemon::start(&["--max-connections-per-uid", "2"]);
    let mut a = d.connect().await;
    let mut b = d.connect().await;
    a.expect_pong().await;
    b.expect_pong().await;
    let mut c = d.connect().await;
    let msg = c.expect_refused(Code::ResourceExhausted).await;
    assert!(msg.contains("per-uid limit"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_and_can_resume() {
    let d = Daemon::start(&["--slow-consumer-timeout", "1", "--connection-queue", "8"]);
    let mut w = d.connect().await;
    let (id, _) = w.create("slow").await;
    // A subscriber that never reads.
    let mut stalled = d.connect().await;
    let s = stalled.subscribe(&id, None).await;
    let payload = "z".repeat(64 * 1024);
    let mut last = 0;
    for n in 0..200 {
        last = expect_execution(w.update(&id, ai_status(&format!("{n}{payload}"))).await).1;
    }
    // Wait (on the daemon's own counter) for the disconnect.
    let mut disconnects = 0;
    for _ in 0..200 {
        match w
            .call(Cmd::Status(StatusRequest { prometheus: false }))
            .await
            .result
        {
            Some(response::Result::Status(st)) => disconnects = st.slow_consumer_disconnects,
            other => panic!("{other:?}"),
        }
        if disconnects > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        disconnects, 1,
        "the stalled connection was disconnected and counted"
    );
    // The stalled client finds its connection closed after what was sent...
    let mut got_last = 0;
    while let Some(resp) = stalled.recv_any().await {
        if let Some(response::Result::Event(e)) = resp.result {
            assert_eq!(resp.id, s);
            got_last = e.revision;
        }
    }
    // ...and resumes from its last revision with no gap.
    let mut again = d.connect().await;
    let s2 = again.subscribe(&id, Some(got_last)).await;
    let mut expect = got_last;
    while expect < last {
        let e = again.event(s2).await;
        assert!(e.revision > expect);
        expect = e.revision;
    }
    assert_eq!(expect, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_writes_loses_no_acknowledged_update() {
    let mut d = Daemon::start(&[]);
    let mut ids = Vec::new();
    {
        let mut c = d.connect().await;
        for i in 0..4 {
            ids.push(c.create(&format!("w{i}")).await.0);
        }
    }
    let mut writers = Vec::new();
    for id in ids.clone() {
        let socket = d.socket.clone();
        writers.push(tokio::spawn(async move {
            let mut c = Raw::connect(&socket).await;
            let mut acked = Vec::new();
            for n in 0..100_000u32 {
                let req = stigmer_proto::daemon::Request {
                    protocol_version: 1,
                    id: c.next_id(),
                    minimal_reply: false,
                    command: Some(Cmd::UpdateStatus(
                        stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput {
                            execution_id: id.clone(),
                            status: Some(ai_status(&format!("{n}"))),
                        },
                    )),
                };
                // The daemon stops mid-run: a failed send ends this writer.
                let body = bytes::Bytes::from(prost::Message::encode_to_vec(&req));
                if futures::SinkExt::send(&mut c.framed, body).await.is_err() {
                    break;
                }
                match c.recv_any().await.and_then(|r| r.result) {
                    Some(response::Result::Execution(e)) => acked.push(e.revision),
                    _ => break,
                }
            }
            (id, acked)
        }));
    }
    // Wait until some writes are acknowledged, then SIGTERM mid-stream.
    let mut probe = d.connect().await;
    loop {
        match probe.call(Cmd::Ping(PingRequest {})).await.result {
            Some(response::Result::Pong(p)) if p.revision > 200 => break,
            _ => tokio::task::yield_now().await,
        }
    }
    drop(probe);
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
    let mut acked_all = Vec::new();
    for w in writers {
        acked_all.push(w.await.expect("writer"));
    }
    d.restart();
    let mut c = d.connect().await;
    for (id, acked) in acked_all {
        assert!(!acked.is_empty());
        let (_, rev) = expect_execution(
            c.call(Cmd::Get(AgentExecutionId { value: id.clone() }))
                .await,
        );
        assert!(
            rev >= *acked.last().unwrap_or(&0),
            "latest state covers every ack of {id}"
        );
        // Every acknowledged revision is in the history.
        let sub = c.subscribe(&id, Some(0)).await;
        let mut seen = std::collections::HashSet::new();
        while seen.len() < acked.len() + 1 {
            let e = c.event(sub).await;
            if e.revision >= rev {
                seen.insert(e.revision);
                break;
            }
            seen.insert(e.revision);
        }
        for r in &acked {
            assert!(
                seen.contains(r),
                "acknowledged revision {r} of {id} survived"
            );
        }
        c.call(Cmd::Cancel(
            stigmer_proto::daemon::CancelSubscriptionRequest {
                subscription_id: sub,
            },
        ))
        .await;
    }
    let _ = ExecutionPhase::ExecutionCompleted;
}

/// Creates (idempotently) a system group and two users: one in the group,
/// one not. Needs root.
fn ensure_users() -> Result<(), String> {
    let run = |args: &[&str]| {
        let status = Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        status.map(|s| s.success()).unwrap_or(false)
    };
    let exists = |kind: &str, name: &str| run(&["getent", kind, name]);
    if !exists("group", "stigmertest") && !run(&["groupadd", "--system", "stigmertest"]) {
        return Err("groupadd failed".into());
    }
    if !exists("passwd", "stigmer-member")
        && !run(&[
            "useradd",
            "--system",
            "--no-create-home",
            "-G",
            "stigmertest",
            "stigmer-member",
        ])
    {
        return Err("useradd stigmer-member failed".into());
    }
    if !exists("passwd", "stigmer-other")
        && !run(&["useradd", "--system", "--no-create-home", "stigmer-other"])
    {
        return Err("useradd stigmer-other failed".into());
    }
    Ok(())
}

/// A directory every user can traverse, holding a copy of the binary (the
/// build tree may not be readable by others).
fn shared_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("stigmer-acl")
        .tempdir_in("/tmp")
        .expect("tmp");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = tmp.path().join("stigmer");
    std::fs::copy(bin(), &exe).expect("copy binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (tmp, exe)
}

fn run_as(user: &str, exe: &Path, socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(exe)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("runuser")
}

#[test]
fn other_users_are_denied_and_the_allowed_group_admitted() {
    if !is_root() {
        return skip("needs root to create test users");
    }
    if !have("runuser") {
        return skip("runuser is not installed (Debian package util-linux)");
    }
    if let Err(err) = ensure_users() {
        return skip(&format!("cannot create test users: {err}"));
    }
    let (tmp, exe) = shared_dir();
    let socket = tmp.path().join("s.sock");
    // Mode 0666 lets anyone connect at the file level, so the daemon's own
    // policy is what decides.
    let (mut child, _log) = spawn_daemon(
        &socket,
        &tmp.path().join("db").join("stigmer.db"),
        &["--socket-mode", "0666", "--allow-group", "stigmertest"],
    );
    let denied = run_as("stigmer-other", &exe, &socket, &["executions", "list"]);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success());
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    let allowed = run_as("stigmer-member", &exe, &socket, &["executions", "list"]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let status = Command::new(&exe)
        .arg("--socket")
        .arg(&socket)
        .args(["status", "-o", "json"])
        .output()
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(json["rejectedConnections"]["permission"], "1");
    let _ = child.kill();
    let _ = child.wait();
    // Without an explicit mode, --allow-group gives the socket the group and 0660.
    let socket2 = tmp.path().join("g.sock");
    let (mut child, _log) = spawn_daemon(
        &socket2,
        &tmp.path().join("db2").join("s.db"),
        &["--allow-group", "stigmertest"],
    );
    let meta = std::fs::metadata(&socket2).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let gid = nix::unistd::Group::from_name("stigmertest")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw());
    assert_eq!(Some(std::os::unix::fs::MetadataExt::gid(&meta)), gid);
    let member = run_as("stigmer-member", &exe, &socket2, &["executions", "list"]);
    assert!(
        member.status.success(),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    let _ = child.kill();
    let _ = child.wait();
}
