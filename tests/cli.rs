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
    assert_eq!(out.status.code(), Some(6), "not found");
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
    assert_eq!(out.status.code(), Some(7), "refused by a precondition");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: FAILED_PRECONDITION: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = d.run(&["executions", "create", "--agent", "", "--message", "m"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "INVALID_ARGUMENT is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: INVALID_ARGUMENT: "));

    // Usage errors are clap's: status 2.
    let out = d.run(&["executions", "update", &id, "--message", "robot:hi"]);
    assert_eq!(out.status.code(), Some(2));
    let out = d.run(&["executions", "update", &id, "--phase", "sideways"]);
    assert_eq!(out.status.code(), Some(2));

    // No daemon on the socket: unreachable, status 5, and how to start one.
    let out = Command::new(BIN)
        .args([
            "--socket",
            "/nonexistent/stigmer.sock",
            "executions",
            "get",
            "aex-01jf8zq3k4m5n6p7q8r9s0t1v2",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("stigmer daemon") && stderr.contains("stigmer.socket"),
        "the error says how to start a daemon: {stderr}"
    );
    let out = Command::new(BIN)
        .args([
            "--socket",
            "/nonexistent/stigmer.sock",
            "executions",
            "subscribe",
            "aex-01jf8zq3k4m5n6p7q8r9s0t1v2",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5));
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

    // Unknown execution: not found, status 6.
    let out = d.run(&["executions", "subscribe", "aex-01jf8zq3k4m5n6p7q8r9s0t1v2"]);
    assert_eq!(out.status.code(), Some(6));
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

/// A running command whose stdout and stderr lines arrive on channels, so a
/// test waits for a line (an event), never for the clock.
struct Lines {
    child: Child,
    out: std::sync::mpsc::Receiver<String>,
    err: std::sync::mpsc::Receiver<String>,
    seen_out: Vec<String>,
    seen_err: Vec<String>,
}

impl Lines {
    fn spawn(mut cmd: Command) -> Lines {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let forward = |r: Box<dyn Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = forward(Box::new(child.stdout.take().expect("stdout")));
        let err = forward(Box::new(child.stderr.take().expect("stderr")));
        Lines {
            child,
            out,
            err,
            seen_out: Vec::new(),
            seen_err: Vec::new(),
        }
    }

    fn wait(
        rx: &std::sync::mpsc::Receiver<String>,
        seen: &mut Vec<String>,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        loop {
            match rx.recv_timeout(common::STEP_TIMEOUT) {
                Ok(line) => {
                    seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no {what} line ({e}); saw {seen:?}"),
            }
        }
    }

    fn wait_out(&mut self, pred: impl Fn(&str) -> bool) -> String {
        Self::wait(&self.out, &mut self.seen_out, "stdout", pred)
    }

    fn wait_err(&mut self, pred: impl Fn(&str) -> bool) -> String {
        Self::wait(&self.err, &mut self.seen_err, "stderr", pred)
    }

    /// Waits for the exit; returns the status and every line of both.
    fn finish(mut self) -> (Option<i32>, Vec<String>, Vec<String>) {
        let status = self.child.wait().expect("wait");
        self.seen_out.extend(self.out.iter());
        self.seen_err.extend(self.err.iter());
        (status.code(), self.seen_out, self.seen_err)
    }
}

/// Creates `n` executions of `agent` over the raw protocol (fast); returns
/// their ids in creation order.
fn create_many(d: &Daemon, agent: &str, n: usize) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = d.inner.connect().await;
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(c.create(agent).await.0);
        }
        ids
    })
}

/// Issue 18, point 4: `subscribe` tells stderr when the daemon dies, and
/// resumes with no gap once it is back.
#[test]
fn subscribe_reports_a_lost_daemon_and_resumes_without_a_gap() {
    let mut d = Daemon::start();
    let id = d.create("a");
    let mut cmd = d.cmd();
    cmd.args(["executions", "subscribe", &id]);
    let mut w = Lines::spawn(cmd);
    w.wait_out(|l| l == "[phase] pending");
    d.ok(&["executions", "update", &id, "--phase", "in-progress"]);
    w.wait_out(|l| l == "[phase] in-progress");

    d.inner.kill();
    let notice = w.wait_err(|l| l.contains("reconnecting"));
    assert!(notice.contains("lost the daemon"), "{notice}");
    d.inner.restart();
    // Every one of these changes must reach the transcript, whether it is
    // replayed from the history (committed before the watcher is back) or
    // live: a gap would drop a phase line.
    let phases = [
        "paused",
        "in-progress",
        "waiting-for-approval",
        "in-progress",
        "completed",
    ];
    for phase in phases {
        d.ok(&["executions", "update", &id, "--phase", phase]);
    }
    let (code, out, err) = w.finish();
    assert_eq!(code, Some(0), "{out:?} {err:?}");
    let seen: Vec<&str> = out
        .iter()
        .filter_map(|l| l.strip_prefix("[phase] "))
        .collect();
    let mut expected = vec!["pending", "in-progress"];
    expected.extend(phases);
    assert_eq!(seen, expected, "{out:?}");
    assert!(
        out.last()
            .is_some_and(|l| l.starts_with("-- end: terminal")),
        "{out:?}"
    );
    assert!(err.iter().any(|l| l.contains("reconnected")), "{err:?}");
}

/// Point 4: with no daemon for `--reconnect-timeout`, subscribe gives up
/// with its own status (12); in JSON mode the notices go to stderr only.
#[test]
fn subscribe_gives_up_after_the_reconnect_timeout() {
    let mut d = Daemon::start();
    let id = d.create("a");
    let mut cmd = d.cmd();
    cmd.args([
        "executions",
        "subscribe",
        &id,
        "-o",
        "json",
        "--reconnect-timeout",
        "1s",
    ]);
    let mut w = Lines::spawn(cmd);
    w.wait_out(|l| l.contains("\"snapshot\""));
    d.inner.kill();
    let (code, out, err) = w.finish();
    assert_eq!(code, Some(12), "{err:?}");
    for line in &out {
        let _: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout holds JSON lines only: {e}: {line}"));
    }
    assert!(err.iter().any(|l| l.contains("reconnecting")), "{err:?}");
    assert!(err.iter().any(|l| l.contains("gave up")), "{err:?}");
}

/// Point 7: every phase of the enum, in `update --phase` and `list --phase`.
#[test]
fn every_phase_is_accepted_by_update_and_list() {
    let d = Daemon::start();
    for (flag, name) in [
        ("pending", "EXECUTION_PENDING"),
        ("in-progress", "EXECUTION_IN_PROGRESS"),
        ("waiting-for-approval", "EXECUTION_WAITING_FOR_APPROVAL"),
        ("paused", "EXECUTION_PAUSED"),
        ("completed", "EXECUTION_COMPLETED"),
        ("failed", "EXECUTION_FAILED"),
        ("cancelled", "EXECUTION_CANCELLED"),
        ("terminated", "EXECUTION_TERMINATED"),
    ] {
        let id = d.create("a");
        let v = d.json(&["executions", "update", &id, "--phase", flag, "-o", "json"]);
        assert_eq!(v["status"]["phase"], name);
        let listed = d.json(&["executions", "list", "--phase", flag, "-o", "json"]);
        let ids: Vec<&str> = listed
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|e| e["metadata"]["id"].as_str())
            .collect();
        assert_eq!(ids, vec![id.as_str()], "{flag}");
    }
}

/// Point 6: `update --from-file` sets what the flags cannot (tool calls,
/// todos, sub-agents) and a message far beyond the argument-list limit.
#[test]
fn update_from_file_sets_tool_calls_todos_sub_agents_and_a_large_message() {
    let d = Daemon::start();
    let id = d.create("a");
    let big = "x".repeat(200 * 1024);
    let status = serde_json::json!({
        "phase": "EXECUTION_IN_PROGRESS",
        "messages": [{"type": "MESSAGE_AI", "content": big}],
        "toolCalls": [{"id": "call-1", "name": "get_weather", "args": {"city": "Paris"},
                       "status": "TOOL_CALL_RUNNING"}],
        "subAgentExecutions": [{"id": "sub-1", "name": "researcher",
                                "status": "SUB_AGENT_IN_PROGRESS"}],
        "todos": {"t1": {"id": "t1", "content": "check the logs", "status": "TODO_IN_PROGRESS"}},
    });
    let file = d.inner.dir.join("status.json");
    std::fs::write(&file, status.to_string()).expect("write");
    let path = file.to_str().expect("utf-8 path");
    let v = d.json(&[
        "executions",
        "update",
        &id,
        "--from-file",
        path,
        "-o",
        "json",
    ]);
    let st = &v["status"];
    assert_eq!(st["phase"], "EXECUTION_IN_PROGRESS");
    assert_eq!(
        st["messages"][0]["content"].as_str().map(str::len),
        Some(big.len())
    );
    assert_eq!(st["toolCalls"][0]["name"], "get_weather");
    assert_eq!(st["toolCalls"][0]["args"]["city"], "Paris");
    assert_eq!(st["toolCalls"][0]["status"], "TOOL_CALL_RUNNING");
    assert_eq!(st["subAgentExecutions"][0]["name"], "researcher");
    assert_eq!(st["todos"]["t1"]["status"], "TODO_IN_PROGRESS");

    // From stdin, as a whole execution (`get -o json`'s output), with a
    // flag overriding the file's phase.
    let whole = d.ok(&["executions", "get", &id, "-o", "json"]);
    let mut child = d
        .cmd()
        .args([
            "executions",
            "update",
            &id,
            "-f",
            "-",
            "--phase",
            "completed",
            "-o",
            "json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(whole.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"]["phase"], "EXECUTION_COMPLETED");
    assert_eq!(v["status"]["todos"]["t1"]["content"], "check the logs");

    // A misspelt field is a usage error that names it.
    std::fs::write(&file, r#"{"phaze": "EXECUTION_FAILED"}"#).expect("write");
    let id2 = d.create("a");
    let out = d.run(&["executions", "update", &id2, "--from-file", path]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("phaze"), "{stderr}");
}

/// Point 8: the exit-status table, a malformed id, `--prometheus -o json`,
/// and a closed pipe.
#[test]
fn exit_statuses_and_a_closed_pipe() {
    let d = Daemon::start();
    let out = d.run(&["executions", "get", "not-an-id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an execution id"));

    let out = d.run(&["status", "--prometheus", "-o", "json"]);
    assert_eq!(out.status.code(), Some(2), "-o is not silently ignored");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));

    let help = d.ok(&["--help"]);
    assert!(help.contains("Exit status:"), "{help}");
    assert!(
        help.contains("12  subscribe/wait/executions watch: gave up reconnecting"),
        "{help}"
    );

    // `list -o json | head -c 400`, with more JSON than a pipe holds: the
    // CLI meets EPIPE and exits quietly.
    create_many(&d, "agent", 300);
    let mut child = d
        .cmd()
        .args(["executions", "list", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 400];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("400 bytes");
    // The read end is closed here (the stdout handle was dropped).
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing on stderr"
    );
}

/// Point 9: `cancel`, and the runner then being refused.
#[test]
fn cancel_ends_an_execution_and_its_runner_learns_it() {
    let d = Daemon::start();
    let id = d.create("a");
    d.ok(&["executions", "update", &id, "--phase", "in-progress"]);
    let out = d.ok(&[
        "executions",
        "cancel",
        &id,
        "--reason",
        "stopped by the operator",
    ]);
    assert!(out.contains("cancelled"), "{out}");
    let v = d.json(&["executions", "get", &id, "-o", "json"]);
    assert_eq!(v["status"]["phase"], "EXECUTION_CANCELLED");
    assert_eq!(v["status"]["error"], "stopped by the operator");
    // The runner's next update: FAILED_PRECONDITION, status 7.
    let out = d.run(&["executions", "update", &id, "--message", "ai:more"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED_PRECONDITION"));
    assert_eq!(d.run(&["executions", "cancel", &id]).status.code(), Some(7));
    let unknown = "aex-01jf8zq3k4m5n6p7q8r9s0t1v2";
    assert_eq!(
        d.run(&["executions", "cancel", unknown]).status.code(),
        Some(6)
    );
}

/// Point 9: `wait --for ... --timeout ...`, as kubectl wait.
#[test]
fn wait_for_conditions_and_timeouts() {
    let d = Daemon::start();
    let spawn_wait = |id: &str, cond: &str| {
        d.cmd()
            .args(["executions", "wait", id, "--for", cond, "--timeout", "60s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wait")
    };
    let id = d.create("a");
    let waiter = spawn_wait(&id, "completed");
    d.ok(&["executions", "update", &id, "--phase", "in-progress"]);
    d.ok(&["executions", "update", &id, "--phase", "completed"]);
    let out = waiter.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("completed (condition met)"));

    let id = d.create("a");
    let waiter = spawn_wait(&id, "phase=paused");
    d.ok(&["executions", "update", &id, "--phase", "paused"]);
    assert_eq!(
        waiter.wait_with_output().expect("wait").status.code(),
        Some(0)
    );

    // Timeout: status 11.
    let id = d.create("a");
    let out = d.run(&[
        "executions",
        "wait",
        &id,
        "--for",
        "completed",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(out.status.code(), Some(11));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));

    // Ended otherwise: failed 3, cancelled 4 for --for completed; any final
    // phase meets `terminal`; a phase that can no longer come is 7.
    for (phase, cond, code) in [
        ("failed", "completed", 3),
        ("cancelled", "completed", 4),
        ("cancelled", "terminal", 0),
        ("completed", "phase=paused", 7),
    ] {
        let id = d.create("a");
        d.ok(&["executions", "update", &id, "--phase", phase]);
        let out = d.run(&["executions", "wait", &id, "--for", cond, "--timeout", "60s"]);
        assert_eq!(out.status.code(), Some(code), "{phase} {cond}");
    }

    // Deleted while waited for: not found.
    let id = d.create("a");
    let waiter = spawn_wait(&id, "completed");
    d.ok(&["executions", "delete", &id]);
    assert_eq!(
        waiter.wait_with_output().expect("wait").status.code(),
        Some(6)
    );
}

/// Point 9: list's columns, --no-headers, -o wide, --agent and --limit.
#[test]
fn list_columns_filters_and_formats() {
    let d = Daemon::start();
    let alpha = create_many(&d, "alpha", 3);
    let beta = create_many(&d, "beta", 2);
    d.ok(&["executions", "update", &alpha[1], "--phase", "in-progress"]);
    let got = d.ok(&["executions", "get", &alpha[1]]);
    let revision = got
        .lines()
        .find_map(|l| l.strip_prefix("revision:"))
        .map(|r| r.trim().to_string())
        .expect("revision line");

    let text = d.ok(&["executions", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for col in [
        "ID", "PHASE", "AGENT", "REVISION", "AGE", "UPDATED", "PROMPT",
    ] {
        assert!(lines[0].contains(col), "{col}: {text}");
    }
    let row = lines
        .iter()
        .find(|l| l.starts_with(alpha[1].as_str()))
        .expect("row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "in-progress");
    assert_eq!(cols[3], revision, "{row}");
    assert!(!text.contains('\x1b'), "no colour into a pipe");

    let bare = d.ok(&["executions", "list", "--no-headers"]);
    assert_eq!(bare.lines().count(), 5);
    assert!(bare.lines().all(|l| l.starts_with("aex-")), "{bare}");

    let wide = d.ok(&["executions", "list", "-o", "wide"]);
    for col in ["SESSION", "STARTED", "COMPLETED", "MESSAGES"] {
        assert!(wide.lines().next().unwrap_or("").contains(col), "{wide}");
    }

    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .filter_map(|e| e["metadata"]["id"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        ids(d.json(&["executions", "list", "--agent", "beta", "-o", "json"])),
        beta
    );
    assert_eq!(
        ids(d.json(&["executions", "list", "--limit", "2", "-o", "json"])),
        alpha[..2].to_vec()
    );
    assert_eq!(
        ids(d.json(&[
            "executions",
            "list",
            "--agent",
            "beta",
            "--limit",
            "1",
            "-o",
            "json"
        ])),
        beta[..1].to_vec()
    );
}

/// Point 9: completions, the man page, and the packaging that installs them.
#[test]
fn completions_man_page_and_packaging() {
    let d = Daemon::start();
    for shell in ["bash", "zsh", "fish"] {
        let script = d.ok(&["completion", shell]);
        assert!(
            script.contains("stigmer") && script.contains("executions"),
            "{shell}: {script}"
        );
    }
    let man = d.ok(&["man"]);
    assert!(man.contains(".TH stigmer 1"), "{man}");
    let tmp = tempfile::tempdir().expect("tmp");
    let pages = tmp.path().join("pages");
    d.ok(&["man", "--dir", pages.to_str().expect("utf-8")]);
    assert!(pages.join("stigmer.1").exists());
    assert!(pages.join("stigmer-executions.1").exists());

    let root = tmp.path().join("root");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/install"))
        .env("DESTDIR", &root)
        .env("PREFIX", "/usr")
        .env("STIGMER_BIN", BIN)
        .output()
        .expect("run packaging/install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "usr/bin/stigmer",
        "usr/share/man/man1/stigmer.1",
        "usr/share/man/man1/stigmer-executions.1",
        "usr/share/bash-completion/completions/stigmer",
        "usr/share/zsh/site-functions/_stigmer",
        "usr/share/fish/vendor_completions.d/stigmer.fish",
    ] {
        assert!(root.join(file).exists(), "{file} installed");
    }
}

/// Point 10: an online backup while writers run, usable by a daemon, and
/// `admin export` as JSON Lines.
#[test]
fn admin_backup_while_writers_run_and_export() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let d = Daemon::start();
    let ids = create_many(&d, "a", 20);
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = std::sync::mpsc::channel();
    let writer = {
        let (stop, ids, socket) = (stop.clone(), ids.clone(), d.inner.socket.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = common::Raw::connect(&socket).await;
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let id = &ids[n % ids.len()];
                    common::expect_execution(
                        c.update(id, common::ai_status(&format!("token {n}"))).await,
                    );
                    n += 1;
                    if n == 1 {
                        let _ = started_tx.send(());
                    }
                }
                n
            })
        })
    };
    started
        .recv_timeout(common::STEP_TIMEOUT)
        .expect("the writer runs");
    let copy = d.inner.dir.join("copy.db");
    let copy_str = copy.to_str().expect("utf-8");
    let out = d.ok(&["admin", "backup", copy_str]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let updates = writer.join().expect("writer");
    assert!(updates > 0);
    assert!(out.contains("backed up"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Not replaced without --force.
    assert_eq!(d.run(&["admin", "backup", copy_str]).status.code(), Some(2));
    let db = d.inner.db.to_str().expect("utf-8").to_string();
    d.ok(&["admin", "backup", "--db", &db, "--force", copy_str]);

    // The copy is a whole database: a daemon serves it.
    let socket2 = d.inner.dir.join("copy.sock");
    let (mut child, _log) = common::spawn_daemon(&socket2, &copy, &[]);
    let listed = Command::new(BIN)
        .arg("--socket")
        .arg(&socket2)
        .args(["executions", "list", "-o", "json"])
        .output()
        .expect("list the copy");
    let _ = child.kill();
    let _ = child.wait();
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(ids.len()));

    let export = d.ok(&["admin", "export"]);
    let exported: Vec<String> = export
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            v["metadata"]["id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(exported, ids);
}

/// Point 11: colour on a terminal (or when asked), never into a pipe or
/// with NO_COLOR.
#[test]
fn colour_on_a_terminal_unless_no_color() {
    let d = Daemon::start();
    let id = d.create("a");
    d.ok(&["executions", "update", &id, "--phase", "completed"]);
    assert!(!d.ok(&["executions", "list"]).contains('\x1b'));
    assert!(d
        .ok(&["--color", "always", "executions", "list"])
        .contains("\x1b["));
    let sub = d.run(&["--color", "always", "executions", "subscribe", &id]);
    assert!(String::from_utf8_lossy(&sub.stdout).contains("\x1b["));

    // On a real terminal (script(1) gives the command a pty).
    let have_script = Command::new("script")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_script {
        println!("SKIPPED (terminal part): script(1) is not installed (util-linux)");
        return;
    }
    let socket = d.inner.socket.to_str().expect("utf-8").to_string();
    let on_tty = |no_color: bool| {
        let mut c = Command::new("script");
        c.args([
            "-qec",
            &format!("{BIN} --socket {socket} executions subscribe {id}"),
            "/dev/null",
        ]);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().expect("script");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let coloured = on_tty(false);
    assert!(
        coloured.contains("[phase]") && coloured.contains("\x1b["),
        "{coloured:?}"
    );
    let plain = on_tty(true);
    assert!(
        plain.contains("[phase]") && !plain.contains("\x1b["),
        "{plain:?}"
    );
}

/// Point 11: `--timestamps` prefixes each transcript line with the commit
/// time of the change it shows.
#[test]
fn subscribe_timestamps_are_commit_times() {
    let d = Daemon::start();
    let id = d.create("a");
    let mut cmd = d.cmd();
    cmd.args(["executions", "subscribe", &id, "--timestamps"]);
    let mut w = Lines::spawn(cmd);
    w.wait_out(|l| l.ends_with("[phase] pending"));
    let mut stamps = Vec::new();
    for phase in ["in-progress", "completed"] {
        let v = d.json(&["executions", "update", &id, "--phase", phase, "-o", "json"]);
        let at = v["status"]["audit"]["statusAudit"]["updatedAt"]
            .as_str()
            .expect("updatedAt")
            .to_string();
        stamps.push((phase, at));
    }
    let (code, out, _) = w.finish();
    assert_eq!(code, Some(0));
    for (phase, at) in stamps {
        let line = format!("{at} [phase] {phase}");
        assert!(out.contains(&line), "{line:?} in {out:?}");
    }
}

/// Point 12: the release profile ships without debug info; the profiling
/// profile keeps it.
#[test]
fn release_profile_is_stripped_and_profiling_keeps_debug_info() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("read");
    let section = |name: &str| -> String {
        let start = manifest
            .find(&format!("[{name}]"))
            .unwrap_or_else(|| panic!("no [{name}]"));
        let body = &manifest[start + name.len() + 2..];
        body[..body.find("\n[").unwrap_or(body.len())].to_string()
    };
    let release = section("profile.release");
    assert!(release.contains("debug = false"), "{release}");
    assert!(release.contains("strip = \"debuginfo\""), "{release}");
    let profiling = section("profile.profiling");
    assert!(profiling.contains("inherits = \"release\""), "{profiling}");
    assert!(profiling.contains("debug = true"), "{profiling}");

    // A release binary built since the manifest last changed carries no
    // DWARF: its section names hold no `.debug_info`.
    let target = std::path::Path::new(BIN)
        .parent()
        .and_then(|debug| debug.parent())
        .expect("target dir");
    let release = target.join("release").join("stigmer");
    let manifest_time = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .and_then(|m| m.modified())
        .expect("manifest time");
    match std::fs::metadata(&release).and_then(|m| m.modified()) {
        Ok(built) if built >= manifest_time => {
            let bytes = std::fs::read(&release).expect("read the release binary");
            match elf_section_names(&bytes) {
                Some(names) => assert!(
                    !names.iter().any(|n| n == ".debug_info"),
                    "{} carries debug info: {names:?}",
                    release.display()
                ),
                None => println!("SKIPPED (binary part): not a 64-bit little-endian ELF file"),
            }
        }
        _ => println!(
            "SKIPPED (binary part): no release build at {} newer than Cargo.toml",
            release.display()
        ),
    }
}

/// The section names of a 64-bit little-endian ELF file (None for anything
/// else), read from its section headers and their string table.
fn elf_section_names(elf: &[u8]) -> Option<Vec<String>> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)).ok();
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18)?;
    let mut names = Vec::new();
    for i in 0..shnum {
        let start = strtab + u32_at(header(i))?;
        let len = elf.get(start..)?.iter().position(|&b| b == 0)?;
        names.push(String::from_utf8_lossy(&elf[start..start + len]).into_owned());
    }
    Some(names)
}

/// `executions append` adds text at the end of a message (or at --offset,
/// where a retry is acknowledged without a second copy), and `subscribe
/// --deltas -o json` prints each change as its operations.
#[test]
fn append_and_delta_json() {
    let d = Daemon::start();
    let run = |args: &[&str]| d.run(args);
    let out = run(&["executions", "create", "--agent", "a", "--message", "m"]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let first = run(&["executions", "append", &id, "--text", "Hello"]);
    assert!(first.status.success(), "{first:?}");
    let second = run(&[
        "executions",
        "append",
        &id,
        "--text",
        ", world",
        "--message-index",
        "0",
    ]);
    assert!(second.status.success(), "{second:?}");
    // The same text at the same offset: acknowledged, not appended twice.
    let retry = run(&[
        "executions",
        "append",
        &id,
        "--text",
        ", world",
        "--message-index",
        "0",
        "--offset",
        "5",
    ]);
    assert!(retry.status.success(), "{retry:?}");
    assert_eq!(retry.stdout, second.stdout, "the same revision");
    let stale = run(&[
        "executions",
        "append",
        &id,
        "--text",
        "x",
        "--message-index",
        "0",
        "--offset",
        "1",
    ]);
    assert_eq!(
        stale.status.code(),
        Some(7),
        "ABORTED is a refused precondition: {stale:?}"
    );
    let done = run(&["executions", "update", &id, "--phase", "completed"]);
    assert!(done.status.success(), "{done:?}");
    let json = run(&[
        "executions",
        "subscribe",
        &id,
        "--from-revision",
        "0",
        "--deltas",
        "-o",
        "json",
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let deltas: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "delta").collect();
    assert_eq!(deltas.len(), 3, "{lines:?}");
    assert_eq!(
        deltas[1]["ops"][0]["appendText"]["text"], ", world",
        "{lines:?}"
    );
    assert!(
        deltas[0]["execution"].is_null(),
        "no whole state in a delta"
    );
    let got = run(&["executions", "get", &id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&got.stdout).expect("json");
    assert_eq!(v["status"]["messages"][0]["content"], "Hello, world");
}
