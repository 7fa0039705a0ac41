//! The daemon's life: after a restart a resume continues exactly (and
//! RESYNCs once past the history), SIGTERM ends streams and keeps every
//! acknowledged write, its files are private and its database and socket
//! its own, and a stale socket file is replaced.

use std::os::unix::fs::PermissionsExt;

use stigmer_proto::agentexecution::AgentExecutionId;
use stigmer_proto::daemon::{request::Command as Cmd, Code, EndReason};

use crate::common::*;
use crate::{END, RESYNC, SNAPSHOT, UPDATE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_restart_and_resync_beyond_retention() {
    let mut d = Daemon::start(&["--history-retention", "50"]);
    let (id, revs) = {
        let mut c = d.connect().await;
        let (id, r0) = c.create("resumer").await;
        let mut revs = vec![r0];
        for n in 0..10 {
            revs.push(expect_execution(c.update(&id, ai_status(&format!("{n}"))).await).1);
        }
        (id, revs)
    };
    assert_eq!(d.stop().code(), Some(0));
    d.restart();
    let mut c = d.connect().await;
    // State survived; resume from the 5th revision replays the rest exactly.
    let from = revs[4];
    let s = c.subscribe(&id, Some(from)).await;
    let mut got = Vec::new();
    for _ in 0..(revs.len() - 5) {
        let e = c.event(s).await;
        assert_eq!(e.r#type, UPDATE);
        got.push(e.revision);
    }
    assert_eq!(got, revs[5..].to_vec());
    // New revisions continue above the old ones.
    let (_, next) = expect_execution(c.update(&id, ai_status("after restart")).await);
    assert!(next > *revs.last().unwrap_or(&0));
    assert_eq!(c.event(s).await.revision, next);
    // Push the history past the retention window: a resume from the start
    // now gets an explicit RESYNC with the current state.
    let mut last = next;
    for n in 0..120 {
        last = expect_execution(c.update(&id, ai_status(&format!("r{n}"))).await).1;
    }
    let s2 = c.subscribe(&id, Some(revs[0])).await;
    let e = c.event(s2).await;
    assert_eq!(e.r#type, RESYNC);
    assert_eq!(e.revision, last);
    // A revision from the future is refused.
    let s3 = c.subscribe(&id, Some(last + 1000)).await;
    expect_error(&c.recv(s3).await, Code::OutOfRange);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_with_shutdown_and_keeps_acknowledged_writes() {
    let mut d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("stopper").await;
    let mut acked = 0;
    for n in 0..50 {
        acked = expect_execution(c.update(&id, ai_status(&format!("{n}"))).await).1;
    }
    let s = c.subscribe(&id, None).await;
    assert_eq!(c.event(s).await.r#type, SNAPSHOT);
    let child = d.child.take().expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let end = c.event(s).await;
    assert_eq!(end.r#type, END);
    assert_eq!(end.reason, EndReason::Shutdown as i32);
    assert_eq!(end.revision, acked);
    let mut child = child;
    assert_eq!(child.wait().expect("wait").code(), Some(0), "exit 0");
    assert!(!d.socket.exists(), "socket file removed on exit");
    d.restart();
    let mut c = d.connect().await;
    let (_, rev) = expect_execution(c.call(Cmd::Get(AgentExecutionId { value: id })).await);
    assert_eq!(rev, acked, "every acknowledged update survived");
}

#[test]
fn files_are_private_and_one_daemon_per_database_and_socket() {
    let d = Daemon::start(&[]);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&d.db), 0o600, "database readable by its owner only");
    assert_eq!(mode(&d.socket), 0o600, "socket usable by its owner only");
    // A second daemon on the same database refuses to start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(d.dir.join("other.sock"))
        .args(["daemon", "--db"])
        .arg(&d.db)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another stigmer daemon"));
    // A second daemon on the same live socket refuses too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["daemon", "--db"])
        .arg(d.dir.join("other.db"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
}

#[test]
fn stale_socket_file_is_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("s.sock");
    // A socket file with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    let (mut child, _log) = spawn_daemon(&socket, &tmp.path().join("db"), &[]);
    let _ = child.kill();
    let _ = child.wait();
    // A regular file is never deleted.
    let file = tmp.path().join("f.sock");
    std::fs::write(&file, b"data").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(&file)
        .args(["daemon", "--db"])
        .arg(tmp.path().join("db2"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&file).expect("read"), b"data");
}
