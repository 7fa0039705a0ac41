//! `stigmer executions subscribe` (and `stigmer demo`, which streams through
//! it): JSON lines and the text transcript, exit statuses by final phase,
//! `--timestamps`, and what it does when the daemon goes away (notices,
//! resuming without a gap, giving up after `--reconnect-timeout`).

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;

use crate::support::{Daemon, Lines, Watcher};

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
