//! The places where docs/PROTOCOL.md once left a client guessing, and the
//! daemon-side rules of issue 18, each settled and tested against the real
//! binary: no answer outgrows the frame limit, which rule wins for a
//! zero-length frame, what happens to requests before a fatal frame, END's
//! revision when a resume delivered nothing, a refused start leaves nothing
//! behind, the daemon's directories, and `--keep-finished`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use stigmer_proto::agentexecution::{AgentExecutionId, ExecutionPhase};
use stigmer_proto::daemon::{
    request::Command as Cmd, response, CancelSubscriptionRequest, Code, EndReason,
    ListExecutionsRequest, PingRequest, Request,
};
use tokio::io::AsyncWriteExt;

const LIMIT: usize = 64 * 1024;

/// An id (or any text) a peer sends is quoted in an error message only by
/// a bounded prefix, so the answer to a request just under the frame limit
/// stays under it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_never_outgrow_the_frame_limit() {
    let d = Daemon::start(&["--max-frame-length", &LIMIT.to_string()]);
    let mut c = d.connect().await;
    let huge = format!("aex-{}", "z".repeat(LIMIT - 64));
    for command in [
        Cmd::Get(AgentExecutionId {
            value: huge.clone(),
        }),
        Cmd::UpdateStatus(update_input(&huge, ai_status("x"))),
        Cmd::List(ListExecutionsRequest {
            session_id: "s".repeat(LIMIT - 64),
            ..Default::default()
        }),
    ] {
        let reply = c.call(command).await;
        assert!(
            reply.encoded_len() < 1024,
            "an error answer is small: {} bytes",
            reply.encoded_len()
        );
        expect_error(&reply, Code::InvalidArgument);
    }
    let sub = c.subscribe(&huge, None).await;
    let reply = c.recv(sub).await;
    assert!(reply.encoded_len() < 1024);
    expect_error(&reply, Code::InvalidArgument);
}

/// A `list` page stops before its states would overflow the reply frame,
/// and says there is more: every page fits, and together they hold every
/// execution once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_fit_in_a_frame() {
    let d = Daemon::start(&["--max-frame-length", &LIMIT.to_string()]);
    let mut c = d.connect().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (id, _) = c.create(&format!("big-{i}")).await;
        // Each state is 20 KiB: at most two fit in a 64 KiB reply.
        let r = c.update(&id, ai_status(&"t".repeat(20 * 1024))).await;
        expect_execution(r);
        ids.push(id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let reply = c
            .call(Cmd::List(ListExecutionsRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await;
        assert!(reply.encoded_len() + 4 <= LIMIT, "{}", reply.encoded_len());
        let Some(response::Result::List(page)) = reply.result else {
            panic!("expected a list page, got {reply:?}");
        };
        pages += 1;
        seen.extend(
            page.entries
                .iter()
                .filter_map(|e| e.metadata.as_ref().map(|m| m.id.clone())),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "every execution once, in order");
    assert!(pages >= 3, "the pages were cut by their bytes: {pages}");
}

/// A zero-length frame decodes as a Request with id 0 and version 0: the
/// id rule wins, a connection error (id 0) and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_length_frame_is_a_connection_error() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    c.send_bytes(Vec::new()).await;
    let message = c.expect_refused(Code::InvalidArgument).await;
    assert!(message.contains("id 0"), "{message}");
}

/// Requests read before a fatal frame on the same connection are answered
/// (a write's reply may come after the connection error), then the
/// connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_a_fatal_frame_are_answered() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("before-fatal").await;
    let mut bytes = Vec::new();
    for (req, command) in [
        (5, Cmd::Ping(PingRequest {})),
        (
            6,
            Cmd::UpdateStatus(update_input(&id, ai_status("answered"))),
        ),
    ] {
        let body = Request {
            protocol_version: 1,
            id: req,
            minimal_reply: false,
            command: Some(command),
        }
        .encode_to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
    }
    bytes.extend_from_slice(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    c.framed.get_mut().write_all(&bytes).await.expect("write");
    let mut answered = Vec::new();
    let mut connection_error = false;
    while let Some(reply) = c.recv_any().await {
        match reply.id {
            0 => {
                expect_error(&reply, Code::InvalidArgument);
                connection_error = true;
            }
            5 => answered.push(5),
            6 => {
                expect_execution(reply);
                answered.push(6);
            }
            other => panic!("unexpected reply id {other}"),
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, [5, 6]);
    assert!(connection_error);
    // The update was committed.
    let mut other = d.connect().await;
    let (execution, _) = expect_execution(
        other
            .call(Cmd::Get(AgentExecutionId { value: id.clone() }))
            .await,
    );
    let status = execution.status.expect("status");
    assert_eq!(status.messages[0].content, "answered");
}

/// A resume that delivered nothing ends with END at the revision it
/// resumed from: "resume from here" stays true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_revision_when_a_resume_delivered_nothing() {
    let d = Daemon::start(&[]);
    let mut c = d.connect().await;
    let (id, _) = c.create("quiet").await;
    let (_, revision) = expect_execution(c.update(&id, ai_status("one")).await);
    let sub = c.subscribe(&id, Some(revision)).await;
    let cancel = c
        .call(Cmd::Cancel(CancelSubscriptionRequest {
            subscription_id: sub,
        }))
        .await;
    assert!(matches!(
        cancel.result,
        Some(response::Result::Cancelled(_))
    ));
    let events = c.events_until_end(sub).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, EndReason::Cancelled as i32);
    assert_eq!(events[0].revision, revision);
}

/// A start refused because another daemon listens on the socket creates
/// nothing (no database, no directory), and says why once.
#[test]
fn a_refused_start_creates_nothing() {
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let db_dir = tmp.path().join("second");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("daemon")
        .arg("--db")
        .arg(db_dir.join("stigmer.db"))
        .env("RUST_LOG", "info")
        .output()
        .expect("run a second daemon");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("already listening").count(),
        1,
        "the error, once: {stderr}"
    );
    assert!(!db_dir.exists(), "nothing was created: {stderr}");
}

/// The directories the daemon creates are 0700; one that other users could
/// write to is refused before anything is created.
#[test]
fn daemon_directories_are_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("run/nested/s.sock");
    let db = tmp.path().join("state/nested/stigmer.db");
    let (mut child, _log) = spawn_daemon(&socket, &db, &[]);
    for dir in [
        tmp.path().join("run"),
        tmp.path().join("run/nested"),
        tmp.path().join("state"),
        tmp.path().join("state/nested"),
    ] {
        let mode = std::fs::metadata(&dir)
            .expect("created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    let _ = child.kill();
    let _ = child.wait();

    let open = tmp.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
        .arg("--socket")
        .arg(open.join("s.sock"))
        .arg("daemon")
        .arg("--db")
        .arg(tmp.path().join("other/stigmer.db"))
        .output()
        .expect("run the daemon");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing the socket directory"), "{stderr}");
    assert!(!tmp.path().join("other").exists(), "nothing was created");
}

/// `--keep-finished`: an execution that finished longer ago than the
/// retention is deleted; one still running is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_finished_deletes_old_finished_executions() {
    let d = Daemon::start(&["--keep-finished", "1s"]);
    let mut c = d.connect().await;
    let (done, _) = c.create("done").await;
    expect_execution(
        c.update(&done, phase(ExecutionPhase::ExecutionCompleted))
            .await,
    );
    let (running, _) = c.create("running").await;
    expect_execution(
        c.update(&running, phase(ExecutionPhase::ExecutionInProgress))
            .await,
    );
    // The sweep runs every second: the finished one goes within a few.
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let r = c
            .call(Cmd::Get(AgentExecutionId {
                value: done.clone(),
            }))
            .await;
        if let Some(response::Result::Error(e)) = &r.result {
            assert_eq!(e.code, Code::NotFound as i32, "{r:?}");
            break;
        }
        assert!(Instant::now() < deadline, "not deleted in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expect_execution(
        c.call(Cmd::Get(AgentExecutionId {
            value: running.clone(),
        }))
        .await,
    );
}

/// `stigmer admin prune --older-than`: deletes the finished executions
/// older than the cutoff, through the daemon; `--dry-run` only names them.
#[test]
fn admin_prune_deletes_finished_executions() {
    let d = Daemon::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (done, running) = rt.block_on(async {
        let mut c = d.connect().await;
        let (done, _) = c.create("done").await;
        expect_execution(
            c.update(&done, phase(ExecutionPhase::ExecutionFailed))
                .await,
        );
        let (running, _) = c.create("running").await;
        (done, running)
    });
    let stigmer = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stigmer"))
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .output()
            .expect("run stigmer")
    };
    let dry = stigmer(&["admin", "prune", "--older-than", "0s", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    assert_eq!(String::from_utf8_lossy(&dry.stdout).trim(), done);
    let out = stigmer(&["admin", "prune", "--older-than", "0s"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted 1 executions"));
    let after = stigmer(&["executions", "get", &done]);
    assert_eq!(after.status.code(), Some(6), "not found: {after:?}");
    let kept = stigmer(&["executions", "get", &running]);
    assert!(kept.status.success(), "{kept:?}");
    let long = stigmer(&["admin", "prune", "--older-than", "30d"]);
    assert!(String::from_utf8_lossy(&long.stdout).contains("deleted 0 executions"));
}
