//! `stigmer executions watch` against a real daemon: its JSON lines (event
//! types and canonical field names), `--session` against `--all`, the text
//! lines, flags that exit with the usage status, and giving up when the
//! daemon stays away.
//!
//! Waits are on events (a line printed, a process exiting), never on the
//! clock; the timeout of each read is a failure guard.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{cli_create, stigmer_ok, Daemon, STEP_TIMEOUT};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_stigmer");

fn stigmer(d: &Daemon) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--socket").arg(&d.socket);
    c
}

/// A running `executions watch`, its stdout read line by line on a thread.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Watcher {
    fn start(d: &Daemon, args: &[&str]) -> Watcher {
        let mut child = stigmer(d)
            .args(["executions", "watch"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watch");
        let lines = pipe_lines(child.stdout.take().expect("stdout"));
        let stderr = pipe_lines(child.stderr.take().expect("stderr"));
        Watcher {
            child,
            lines,
            stderr,
        }
    }

    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(STEP_TIMEOUT)
            .expect("watch printed a line in time")
    }

    fn json(&mut self) -> Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// JSON events until the one about `id` (inclusive).
    fn json_until(&mut self, id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v = self.json();
            let done = v["executionId"] == id;
            out.push(v);
            if done {
                return out;
            }
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe_lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// (type, executionId) of each event, `-` where it has none.
fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap_or("?").to_string(),
                v["executionId"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn pair(kind: &str, id: &str) -> (String, String) {
    (kind.to_string(), id.to_string())
}

#[test]
fn json_lines_for_a_session_and_for_all() {
    let d = Daemon::start(&[]);
    let a = cli_create(&d, "agent-a", "s1");
    let b = cli_create(&d, "agent-b", "s2");
    let mut session = Watcher::start(&d, &["--session", "s1", "-o", "json"]);
    let mut all = Watcher::start(&d, &["--all", "-o", "json"]);
    let mut deltas = Watcher::start(&d, &["--session", "s1", "-o", "json", "--deltas"]);

    // The lists, each ended by its bookmark.
    let first = session.json();
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["executionId"], a.as_str());
    assert_eq!(first["execution"]["spec"]["agentId"], "agent-a");
    assert!(first["revision"].as_u64().is_some());
    let end = session.json();
    assert_eq!(end["type"], "bookmark");
    assert_eq!(end["initialEventsEnd"], true);
    assert!(end.get("executionId").is_none() && end.get("execution").is_none());
    let listed: Vec<Value> = (0..3).map(|_| all.json()).collect();
    assert_eq!(
        kinds(&listed),
        [
            pair("snapshot", &a),
            pair("snapshot", &b),
            pair("bookmark", "-")
        ]
    );
    assert_eq!(deltas.json()["type"], "snapshot");
    assert_eq!(deltas.json()["initialEventsEnd"], true);

    // Changes: an update, an append, one in the other session, a delete.
    stigmer_ok(
        &d,
        &[
            "executions",
            "update",
            &a,
            "--phase",
            "in-progress",
            "--message",
            "ai:hello",
        ],
    );
    stigmer_ok(&d, &["executions", "append", &a, "--text", " world"]);
    stigmer_ok(&d, &["executions", "update", &b, "--phase", "completed"]);
    stigmer_ok(&d, &["executions", "delete", &a]);
    let sentinel = cli_create(&d, "sentinel", "s1");

    let seen = session.json_until(&sentinel);
    assert_eq!(
        kinds(&seen),
        [
            pair("update", &a),
            pair("update", &a),
            pair("deleted", &a),
            pair("created", &sentinel),
        ],
        "the session's changes only: {seen:?}"
    );
    assert_eq!(
        seen[1]["execution"]["status"]["messages"][0]["content"], "hello world",
        "an update carries the whole execution"
    );
    assert!(seen[2].get("execution").is_none());
    let revisions: Vec<u64> = seen.iter().filter_map(|v| v["revision"].as_u64()).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");

    let everything = all.json_until(&sentinel);
    assert_eq!(
        kinds(&everything),
        [
            pair("update", &a),
            pair("update", &a),
            pair("update", &b),
            pair("deleted", &a),
            pair("created", &sentinel),
        ]
    );

    let as_ops = deltas.json_until(&sentinel);
    assert_eq!(
        kinds(&as_ops),
        [
            pair("delta", &a),
            pair("delta", &a),
            pair("deleted", &a),
            pair("created", &sentinel),
        ]
    );
    assert!(as_ops[1]["ops"]
        .as_array()
        .is_some_and(|ops| !ops.is_empty()));
    assert!(as_ops[1].get("execution").is_none());
    assert_eq!(as_ops[1]["ops"][0]["appendText"]["text"], " world");
    for w in [session, all, deltas] {
        w.stop();
    }
}

#[test]
fn text_lines_read_like_kubectl_get_watch() {
    let d = Daemon::start(&[]);
    let a = cli_create(&d, "agent-a", "s1");
    let mut w = Watcher::start(&d, &["--session", "s1", "--color", "never"]);
    let header = w.line();
    assert!(
        header.starts_with("REVISION  TYPE") && header.contains("PHASE"),
        "{header}"
    );
    let row = w.line();
    assert!(row.contains("snapshot") && row.contains(&a), "{row}");
    assert!(row.contains("agent-a") && row.contains("s1") && row.contains("pending"));
    assert!(w.line().starts_with("-- end of the list at revision"));
    stigmer_ok(
        &d,
        &[
            "executions",
            "update",
            &a,
            "--phase",
            "failed",
            "--message",
            "ai:first\nlast words",
        ],
    );
    let row = w.line();
    assert!(row.contains("update") && row.contains("failed"), "{row}");
    assert!(
        row.ends_with("last words"),
        "the latest line of text: {row}"
    );
    w.stop();
}

#[test]
fn bad_flags_exit_with_the_usage_status() {
    let d = Daemon::start(&[]);
    for args in [
        vec!["executions", "watch"],
        vec!["executions", "watch", "--all", "--session", "s"],
        vec!["executions", "watch", "--all", "-o", "yaml"],
        vec!["executions", "watch", "--all", "--from-revision", "x"],
    ] {
        let out = stigmer(&d).args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    // A revision beyond the last committed one: the daemon's OUT_OF_RANGE.
    let out = stigmer(&d)
        .args(["executions", "watch", "--all", "--from-revision", "999999"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_lost_daemon_is_reported_then_resumed_or_given_up() {
    let mut d = Daemon::start(&[]);
    let a = cli_create(&d, "agent-a", "s1");
    let mut w = Watcher::start(&d, &["--all", "-o", "json", "--reconnect-timeout", "60s"]);
    assert_eq!(w.json()["type"], "snapshot");
    assert_eq!(w.json()["type"], "bookmark");
    d.stop();
    let notice = w
        .stderr
        .recv_timeout(STEP_TIMEOUT)
        .expect("a notice on stderr");
    assert!(notice.contains("reconnecting"), "{notice}");
    d.restart();
    let resumed = w
        .stderr
        .recv_timeout(STEP_TIMEOUT)
        .expect("a notice on stderr");
    assert!(resumed.contains("resuming after revision"), "{resumed}");
    stigmer_ok(&d, &["executions", "update", &a, "--phase", "completed"]);
    let update = w.json();
    assert_eq!(update["type"], "update");
    assert_eq!(update["executionId"], a.as_str());
    w.stop();

    // With a short timeout and no daemon coming back: status 12.
    let mut short = Watcher::start(&d, &["--all", "-o", "json", "--reconnect-timeout", "1s"]);
    assert_eq!(short.json()["type"], "snapshot");
    d.stop();
    let status = short.child.wait().expect("wait");
    assert_eq!(status.code(), Some(12));
}
