//! The per-execution commands of `stigmer executions`: create, get, update
//! (flags and `--from-file`), list (filters, columns, formats), delete,
//! append, cancel and wait, with their JSON output and exit statuses.

use std::process::Stdio;

use serde_json::Value;

use crate::support::{create_many, Daemon};

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
