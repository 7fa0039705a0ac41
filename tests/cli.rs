//! The `stigmer executions ...` commands against a real daemon: each command
//! with `-o json`, error reporting, and `subscribe`'s exit statuses.
//!
//! Waits are on events (the daemon's "listening" line, a process exiting, a
//! line printed), never on the clock.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_stigmer");

/// The daemon under test (the shared harness: temporary socket and
/// database, ready once it logs "listening"), with CLI helpers.
struct Daemon {
    inner: common::Daemon,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon {
            inner: common::Daemon::start(&[]),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--socket").arg(&self.inner.socket);
        c
    }

    /// Runs `stigmer --socket S <args>` to completion.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run stigmer")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "stigmer {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    fn create(&self, agent: &str) -> String {
        self.ok(&[
            "executions",
            "create",
            "--agent",
            agent,
            "--message",
            "hello",
        ])
        .trim()
        .to_string()
    }
}

/// A running `subscribe -o json`, read line by line.
struct Watcher {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Watcher {
    fn start(d: &Daemon, id: &str, extra: &[&str]) -> Watcher {
        let mut child = d
            .cmd()
            .args(["executions", "subscribe", id, "-o", "json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn subscribe");
        let stdout = child.stdout.take().expect("stdout");
        Watcher {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next event line (blocks until the CLI prints it).
    fn next(&mut self) -> Value {
        let line = self
            .lines
            .next()
            .expect("subscribe ended early")
            .expect("read line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Reads the remaining lines and the exit status.
    fn finish(mut self) -> (Vec<Value>, Option<i32>, String) {
        let rest: Vec<Value> = self
            .lines
            .by_ref()
            .map(|l| serde_json::from_str(&l.expect("line")).expect("json line"))
            .collect();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = self.child.wait().expect("wait subscribe");
        (rest, status.code(), stderr)
    }
}

#[test]
fn create_get_update_list_delete_with_json() {
    let d = Daemon::start();

    let created = d.json(&[
        "executions",
        "create",
        "--agent",
        "agent-1",
        "--session",
        "s-1",
        "--message",
        "Summarise",
        "-o",
        "json",
    ]);
    let id = created["metadata"]["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("aex-"), "{id}");
    assert_eq!(created["spec"]["agentId"], "agent-1");
    assert_eq!(created["spec"]["sessionId"], "s-1");
    assert_eq!(created["status"]["phase"], "EXECUTION_PENDING");

    // Text mode prints only the new id.
    let id2 = d.create("agent-2");
    assert!(
        id2.starts_with("aex-") && !id2.contains(char::is_whitespace),
        "{id2:?}"
    );

    let updated = d.json(&[
        "executions",
        "update",
        &id,
        "--phase",
        "in-progress",
        "--message",
        "human:Hi there",
        "--message",
        "ai:Hello: how can I help?",
        "-o",
        "json",
    ]);
    assert_eq!(updated["status"]["phase"], "EXECUTION_IN_PROGRESS");
    let messages = updated["status"]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["type"], "MESSAGE_HUMAN");
    assert_eq!(messages[0]["content"], "Hi there");
    assert_eq!(messages[1]["type"], "MESSAGE_AI");
    assert_eq!(messages[1]["content"], "Hello: how can I help?");

    let got = d.json(&["executions", "get", &id, "-o", "json"]);
    assert_eq!(got, updated);
    let text = d.ok(&["executions", "get", &id]);
    assert!(text.contains(&id) && text.contains("in-progress"), "{text}");

    let all = d.json(&["executions", "list", "-o", "json"]);
    let ids: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["metadata"]["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str(), id2.as_str()]);
    let by_phase = d.json(&["executions", "list", "--phase", "in-progress", "-o", "json"]);
    assert_eq!(by_phase.as_array().map(Vec::len), Some(1));
    let by_session = d.json(&["executions", "list", "--session", "s-1", "-o", "json"]);
    assert_eq!(by_session[0]["metadata"]["id"], id.as_str());
    let none = d.json(&["executions", "list", "--session", "nobody", "-o", "json"]);
    assert_eq!(none, Value::Array(vec![]));

    d.ok(&[
        "executions",
        "update",
        &id,
        "--error",
        "boom",
        "--phase",
        "failed",
    ]);
    let failed = d.json(&["executions", "get", &id, "-o", "json"]);
    assert_eq!(failed["status"]["phase"], "EXECUTION_FAILED");
    assert_eq!(failed["status"]["error"], "boom");

    let deleted = d.json(&["executions", "delete", &id, "-o", "json"]);
    assert!(deleted["revision"].as_u64().is_some(), "{deleted}");
    let out = d.run(&["executions", "get", &id]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: NOT_FOUND: ") && stderr.contains(&id),
        "{stderr}"
    );
}

#[test]
fn errors_and_usage() {
    let d = Daemon::start();
    let id = d.create("a");
    d.ok(&["executions", "update", &id, "--phase", "completed"]);
    let out = d.run(&["executions", "update", &id, "--phase", "in-progress"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: FAILED_PRECONDITION: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = d.run(&["executions", "create", "--agent", "", "--message", "m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: INVALID_ARGUMENT: "));

    // Usage errors are clap's: status 2.
    let out = d.run(&["executions", "update", &id, "--message", "robot:hi"]);
    assert_eq!(out.status.code(), Some(2));
    let out = d.run(&["executions", "update", &id, "--phase", "sideways"]);
    assert_eq!(out.status.code(), Some(2));

    // No daemon on the socket: a connection error, status 1.
    let out = Command::new(BIN)
        .args([
            "--socket",
            "/nonexistent/stigmer.sock",
            "executions",
            "get",
            "x",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    let out = Command::new(BIN)
        .args([
            "--socket",
            "/nonexistent/stigmer.sock",
            "executions",
            "subscribe",
            "x",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn subscribe_json_lines_and_exit_completed() {
    let d = Daemon::start();
    let id = d.create("a");
    let mut w = Watcher::start(&d, &id, &[]);
    let snap = w.next();
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["execution"]["metadata"]["id"], id.as_str());
    let first = snap["revision"].as_u64().expect("revision");

    d.ok(&[
        "executions",
        "update",
        &id,
        "--phase",
        "in-progress",
        "--message",
        "ai:Hel",
    ]);
    d.ok(&["executions", "update", &id, "--message", "ai:Hello"]);
    d.ok(&["executions", "update", &id, "--phase", "completed"]);
    let (rest, code, stderr) = w.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let kinds: Vec<&str> = rest.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, vec!["update", "update", "update", "end"]);
    let revs: Vec<u64> = rest.iter().filter_map(|e| e["revision"].as_u64()).collect();
    assert!(
        revs[0] > first && revs[0] < revs[1] && revs[1] < revs[2],
        "{revs:?}"
    );
    assert_eq!(
        rest[1]["execution"]["status"]["messages"][0]["content"],
        "Hello"
    );
    let end = &rest[3];
    assert_eq!(end["reason"], "terminal");
    assert_eq!(end["revision"].as_u64(), Some(revs[2]));
    assert!(end.get("execution").is_none(), "{end}");
}

#[test]
fn subscribe_exit_codes() {
    let d = Daemon::start();
    for (phase, code) in [("failed", 3), ("cancelled", 4), ("completed", 0)] {
        let id = d.create("a");
        let mut w = Watcher::start(&d, &id, &[]);
        assert_eq!(w.next()["type"], "snapshot");
        d.ok(&["executions", "update", &id, "--phase", phase]);
        let (rest, status, stderr) = w.finish();
        assert_eq!(status, Some(code), "{phase}: {stderr}");
        assert_eq!(
            rest.last().map(|e| e["reason"].clone()),
            Some("terminal".into())
        );
    }

    // Already terminal: snapshot, end, and the phase's status at once; with
    // --from-revision at the last revision: just the end.
    let id = d.create("a");
    let done = d.json(&[
        "executions",
        "update",
        &id,
        "--phase",
        "failed",
        "-o",
        "json",
    ]);
    assert_eq!(done["status"]["phase"], "EXECUTION_FAILED");
    let out = d.run(&["executions", "subscribe", &id, "-o", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], "snapshot");
    assert_eq!(lines[1]["type"], "end");
    let last = lines[0]["revision"].as_u64().expect("revision").to_string();
    let out = d.run(&[
        "executions",
        "subscribe",
        &id,
        "--from-revision",
        &last,
        "-o",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Unknown execution: error, status 1.
    let out = d.run(&["executions", "subscribe", "aex-01jf8zq3k4m5n6p7q8r9s0t1v2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: NOT_FOUND: "));
}

#[test]
fn subscribe_text_transcript() {
    let d = Daemon::start();
    let id = d.create("a");
    let mut child = d
        .cmd()
        .args(["executions", "subscribe", &id])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Wait for the snapshot's phase line before updating.
    loop {
        let line = lines.next().expect("line").expect("read");
        if line.starts_with("[phase]") {
            break;
        }
    }
    d.ok(&[
        "executions",
        "update",
        &id,
        "--phase",
        "in-progress",
        "--message",
        "ai:Hel",
    ]);
    d.ok(&["executions", "update", &id, "--message", "ai:Hello world"]);
    d.ok(&["executions", "update", &id, "--phase", "cancelled"]);
    let rest: Vec<String> = lines.map(|l| l.expect("line")).collect();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(4));
    let text = rest.join("\n");
    // The growing message is printed once, its new suffix appended in place.
    assert!(text.contains("ai: Hello world\n"), "{text}");
    assert_eq!(text.matches("Hel").count(), 1, "{text}");
    assert!(text.contains("[phase] cancelled"), "{text}");
    assert!(text.contains("-- end: terminal"), "{text}");
}

/// `stigmer demo` against a running daemon: the simulated runner streams
/// its transcript (sending minimal-reply updates) and the watcher prints it
/// to the terminal phase; the execution is left completed in the daemon.
#[test]
fn demo_streams_a_transcript_to_completion() {
    let d = Daemon::start();
    let out = d.ok(&["demo"]);
    assert!(out.contains("[phase] completed"), "{out}");
    assert!(out.contains("end: terminal"), "{out}");
    assert!(out.contains("take an umbrella"), "the whole answer: {out}");
    let listed = d.json(&["executions", "list", "-o", "json"]);
    assert!(
        listed.to_string().contains("EXECUTION_COMPLETED"),
        "{listed}"
    );
}
