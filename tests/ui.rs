//! `stigmer ui`'s HTTP layer against the real binaries: a daemon on a
//! temporary socket and `stigmer ui` in front of it, spoken to with plain
//! HTTP/1.1 over TCP (so what is tested is what a browser, or an attacker's
//! page, would send): the token-for-cookie exchange, refusals (no token, a
//! wrong one, a foreign Host or Origin, a cross-site fetch), the security
//! headers, SSE resume by `Last-Event-ID` on both streams, cancel, and
//! the daemon's status with its backend (the cluster mode's against a real
//! etcd, skipped without `etcd`). The same flows in a real browser:
//! tests/browser/test_ui.py.

mod common;
#[path = "../etcd/tests/common/mod.rs"]
mod etcd_cluster;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, STEP_TIMEOUT};
use stigmer_client::proto::agentexecution::ExecutionPhase;
use stigmer_client::{Client, NewExecution};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running `stigmer ui`.
struct Ui {
    child: Child,
    addr: SocketAddr,
    token: String,
}

impl Ui {
    fn start(daemon: &Daemon) -> Ui {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stigmer"))
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["ui", "--no-browser", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn stigmer ui");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the URL");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        let rest = url.trim_start_matches("http://");
        let (host, query) = rest.split_once("/?token=").expect("token in the URL");
        Ui {
            child,
            addr: host.parse().expect("address"),
            token: query.to_string(),
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Signs in: the token for the cookie (`name=value`).
    async fn sign_in(&self) -> String {
        let r = self.get(&format!("/?token={}", self.token), &[]).await;
        assert_eq!(r.status, 303, "{}", r.text);
        let set = r.header("set-cookie").expect("a cookie");
        set.split(';').next().expect("name=value").to_string()
    }

    async fn get(&self, path: &str, extra: &[(&str, &str)]) -> Reply {
        self.send("GET", path, &[("Host", &self.host())], extra)
            .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        base: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
        for (k, v) in base.iter().chain(extra) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        tokio::time::timeout(STEP_TIMEOUT, s.read_to_end(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        Reply::parse(&String::from_utf8_lossy(&buf))
    }

    /// Opens an SSE stream and returns its socket after the headers.
    async fn sse(&self, path: &str, cookie: &str, last_event_id: Option<u64>) -> Sse {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n",
            self.host()
        );
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut sse = Sse {
            stream: s,
            buf: String::new(),
        };
        let head = sse.until("\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        sse
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Reply {
    fn parse(raw: &str) -> Reply {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            text: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An SSE connection (chunked transfer encoding is read as is: the event
/// lines are whole inside the chunks this server writes).
struct Sse {
    stream: TcpStream,
    buf: String,
}

/// One SSE event.
#[derive(Debug)]
struct SseEvent {
    kind: String,
    id: Option<u64>,
    data: serde_json::Value,
}

impl Sse {
    async fn until(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(at) = self.buf.find(marker) {
                let out = self.buf[..at + marker.len()].to_string();
                self.buf.drain(..at + marker.len());
                return out;
            }
            let mut chunk = [0u8; 65536];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stream.read(&mut chunk))
                .await
                .expect("an event in time")
                .expect("read");
            assert!(n > 0, "the stream closed; had {:?}", self.buf);
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The next event (keep-alive comments skipped).
    async fn next(&mut self) -> SseEvent {
        loop {
            let block = self.until("\n\n").await;
            let mut kind = String::from("message");
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_string();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if data.is_empty() {
                continue;
            }
            return SseEvent {
                kind,
                id,
                data: serde_json::from_str(&data).expect("JSON data"),
            };
        }
    }

    /// Asserts nothing more arrives for a while (keep-alives aside).
    async fn quiet(&mut self, for_: Duration) {
        let mut chunk = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(for_, self.stream.read(&mut chunk)).await {
            let text = String::from_utf8_lossy(&chunk[..n]);
            assert!(!text.contains("data:"), "unexpected event: {text}");
        }
    }
}

/// Appends `text` to the first message at `*offset` (as a runner does).
async fn append(c: &Client, id: &str, offset: &mut u64, text: &str) {
    c.append_text(id, 0, *offset, text).await.expect("append");
    *offset += text.len() as u64;
}

async fn client(daemon: &Daemon) -> Client {
    Client::connect(&daemon.socket).await.expect("connect")
}

/// Creates `new` and returns its id.
async fn create(c: &Client, new: NewExecution) -> String {
    let (e, _) = c.create(new).await.expect("create");
    e.metadata.map(|m| m.id).unwrap_or_default()
}

#[tokio::test]
async fn the_token_buys_an_httponly_strict_cookie_and_pages_carry_a_strict_csp() {
    let daemon = Daemon::start(&[]);
    let ui = Ui::start(&daemon);
    let r = ui.get(&format!("/?token={}", ui.token), &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/"),
        "the token leaves the address bar"
    );
    let set = r.header("set-cookie").expect("cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(
        !set.contains(&ui.token),
        "the cookie is not the URL token: {set}"
    );
    let cookie = set.split(';').next().unwrap_or_default().to_string();

    let page = ui.get("/", &[("Cookie", &cookie)]).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("/assets/list.js"));
    let csp = page.header("content-security-policy").expect("CSP");
    for needed in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(needed), "{needed} missing from {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    // No inline script in any page: everything is an ES module from /assets.
    for path in ["/", "/executions/x", "/daemon"] {
        let p = ui.get(path, &[("Cookie", &cookie)]).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(!p.text.contains("<script>"), "{path} has an inline script");
        assert!(!p.text.contains("style="), "{path} has an inline style");
    }
    let js = ui.get("/assets/markdown.js", &[("Cookie", &cookie)]).await;
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/javascript"));
    assert!(
        !js.text.contains("innerHTML"),
        "the renderer never parses HTML"
    );
}

#[tokio::test]
async fn requests_without_the_token_or_cookie_are_refused() {
    let daemon = Daemon::start(&[]);
    let ui = Ui::start(&daemon);
    for path in ["/", "/api/watch", "/api/status", "/assets/list.js", "/nope"] {
        let r = ui.get(path, &[]).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
    }
    let r = ui.get("/?token=0123", &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    let r = ui
        .get(
            "/api/watch",
            &[("Cookie", &format!("stigmer_ui_{}=forged", ui.addr.port()))],
        )
        .await;
    assert_eq!(r.status, 401);
    // The URL token itself is not a cookie value.
    let r = ui
        .get(
            "/api/status",
            &[(
                "Cookie",
                &format!("stigmer_ui_{}={}", ui.addr.port(), ui.token),
            )],
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let daemon = Daemon::start(&[]);
    let ui = Ui::start(&daemon);
    let cookie = ui.sign_in().await;
    let port = ui.addr.port();
    // DNS rebinding: the attacker's name resolves to 127.0.0.1, so the
    // request arrives with its Host (even with the token or the cookie).
    let evil_host = format!("evil.example:{port}");
    for path in [format!("/?token={}", ui.token), "/api/status".to_string()] {
        let r = ui
            .send(
                "GET",
                &path,
                &[("Host", &evil_host)],
                &[("Cookie", &cookie)],
            )
            .await;
        assert_eq!(r.status, 421, "{path}: {}", r.text);
    }
    let r = ui
        .send("GET", "/api/status", &[], &[("Cookie", &cookie)])
        .await;
    assert_eq!(r.status, 421, "no Host at all");
    // Another site's page: a foreign Origin, or a cross-site fetch.
    let r = ui
        .get(
            "/api/status",
            &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    for site in ["cross-site", "same-site"] {
        let r = ui
            .get(
                "/api/status",
                &[("Cookie", &cookie), ("Sec-Fetch-Site", site)],
            )
            .await;
        assert_eq!(r.status, 403, "{site}");
    }
    let r = ui
        .get(
            "/api/status",
            &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A write needs an Origin, and it must be this server's.
    let c = client(&daemon).await;
    let id = create(&c, NewExecution::new("agent", "hi")).await;
    let path = format!("/api/executions/{id}/cancel");
    let host = ui.host();
    let r = ui
        .send("POST", &path, &[("Host", &host)], &[("Cookie", &cookie)])
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = ui
        .send(
            "POST",
            &path,
            &[("Host", &host)],
            &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    let (e, _) = c.get(&id).await.expect("get");
    assert_eq!(
        e.status.map(|s| s.phase()),
        Some(ExecutionPhase::ExecutionPending),
        "nothing was cancelled"
    );
    // The same request from the dashboard's own page works.
    let origin = format!("http://{host}");
    let r = ui
        .send(
            "POST",
            &path,
            &[("Host", &host)],
            &[("Cookie", &cookie), ("Origin", &origin)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (e, _) = c.get(&id).await.expect("get");
    assert_eq!(
        e.status.map(|s| s.phase()),
        Some(ExecutionPhase::ExecutionCancelled)
    );
}

#[tokio::test]
async fn an_execution_stream_resumes_from_last_event_id_without_gap_or_duplicate() {
    let daemon = Daemon::start(&[]);
    let ui = Ui::start(&daemon);
    let cookie = ui.sign_in().await;
    let c = client(&daemon).await;
    let id = create(&c, NewExecution::new("agent", "hi")).await;
    let mut off = 0;
    append(&c, &id, &mut off, "one ").await;
    let path = format!("/api/executions/{id}/events");

    let mut first = ui.sse(&path, &cookie, None).await;
    let state = first.next().await;
    assert_eq!(state.kind, "state");
    let at = state.id.expect("an id");
    assert_eq!(state.data["status"]["messages"][0]["content"], "one ");
    append(&c, &id, &mut off, "two ").await;
    let live = first.next().await;
    assert_eq!(live.kind, "patch");
    assert_eq!(live.data["ops"][0]["append"]["text"], "two ");
    drop(first);

    // The tab reconnects (a blip) while the runner goes on.
    append(&c, &id, &mut off, "three ").await;
    append(&c, &id, &mut off, "four").await;
    let mut resumed = ui.sse(&path, &cookie, Some(at)).await;
    let mut texts = Vec::new();
    let mut last = at;
    while texts.len() < 3 {
        let ev = resumed.next().await;
        assert_eq!(
            ev.kind, "patch",
            "resumed with changes, not a whole state: {ev:?}"
        );
        let rev = ev.id.expect("an id");
        assert!(rev > last, "revisions go up: {rev} after {last}");
        last = rev;
        texts.push(
            ev.data["ops"][0]["append"]["text"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert_eq!(texts, ["two ", "three ", "four"]);
    resumed.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_executions_stream_resumes_from_last_event_id_and_shows_new_executions() {
    let daemon = Daemon::start(&[]);
    let ui = Ui::start(&daemon);
    let cookie = ui.sign_in().await;
    let c = client(&daemon).await;
    let first_id = create(&c, NewExecution::new("agent-a", "hi").session_id("s1")).await;

    let mut tab = ui.sse("/api/watch", &cookie, None).await;
    // The hub may list before or after the create; either way the row comes.
    let has_first = |ev: &SseEvent| match ev.kind.as_str() {
        "reset" => ev.data["rows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|row| row["id"] == first_id.as_str())),
        "row" => ev.data["id"] == first_id.as_str(),
        _ => false,
    };
    let mut seen = tab.next().await;
    while !has_first(&seen) {
        seen = tab.next().await;
    }
    let at = seen.id.expect("an id");

    let second = create(&c, NewExecution::new("agent-b", "hello").session_id("s2")).await;
    let ev = tab.next().await;
    assert_eq!(ev.kind, "row");
    assert_eq!(ev.data["id"], second.as_str());
    assert_eq!(ev.data["agent"], "agent-b");
    assert_eq!(ev.data["phase"], "EXECUTION_PENDING");
    drop(tab);

    let mut off = 0;
    append(&c, &second, &mut off, "a line of text").await;
    let mut resumed = ui.sse("/api/watch", &cookie, Some(at)).await;
    let mut kinds = Vec::new();
    loop {
        let ev = resumed.next().await;
        assert_ne!(ev.kind, "reset", "the ring reaches back: no relist");
        assert!(ev.id.expect("an id") > at);
        kinds.push(ev.data["id"].as_str().unwrap_or("").to_string());
        if ev.data["text"] == "a line of text" {
            break;
        }
    }
    assert_eq!(kinds, [second.clone(), second]);
    // Too old a revision for the ring: the whole table again.
    let mut old = ui.sse("/api/watch", &cookie, Some(u64::MAX)).await;
    let ev = old.next().await;
    assert_eq!(ev.kind, "reset");
    assert_eq!(ev.data["rows"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn an_unknown_execution_fails_its_stream_plainly() {
    let daemon = Daemon::start(&[]);
    let ui = Ui::start(&daemon);
    let cookie = ui.sign_in().await;
    let c = client(&daemon).await;
    let id = create(&c, NewExecution::new("agent", "hi")).await;
    c.delete(&id).await.expect("delete");
    let mut s = ui
        .sse(&format!("/api/executions/{id}/events"), &cookie, None)
        .await;
    let ev = s.next().await;
    assert_eq!(ev.kind, "failure");
    assert_eq!(ev.data["code"], "NOT_FOUND");
}

#[tokio::test]
async fn sigterm_ends_open_event_streams_and_exits() {
    let daemon = Daemon::start(&[]);
    let mut ui = Ui::start(&daemon);
    let cookie = ui.sign_in().await;
    let c = client(&daemon).await;
    let id = create(&c, NewExecution::new("agent", "hi")).await;
    let mut list = ui.sse("/api/watch", &cookie, None).await;
    let mut one = ui
        .sse(&format!("/api/executions/{id}/events"), &cookie, None)
        .await;
    assert_eq!(one.next().await.kind, "state");
    let _ = list.next().await;
    let pid = nix::unistd::Pid::from_raw(ui.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = ui.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "stigmer ui still runs 5 s after SIGTERM with streams open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// Tabs that stop reading do not grow the UI process: each tab's stream
/// is bounded (the client's stream queue, then a resubscription from the
/// last revision the tab took). Four stalled tabs are sent ~48 MB of
/// changes (4,000 whole-status updates of 3 KiB each per execution; the
/// states themselves stay ~3 KiB, so what could grow is only what waits
/// for the tabs); the process grows by a third of that at most (measured:
/// 6.8 MB with 1 KiB updates, 7.6 MB with 3 KiB ones: fixed costs such as
/// the executions table's resume ring, not a queue following the data). A stalled tab that reads
/// again ends on the last state.
#[tokio::test]
async fn stalled_tabs_do_not_grow_the_ui_process() {
    use stigmer_client::proto::agentexecution::{AgentExecutionStatus, AgentMessage, MessageType};
    let daemon = Daemon::start(&[]);
    let ui = Ui::start(&daemon);
    let cookie = ui.sign_in().await;
    let c = client(&daemon).await;
    let says = |i: usize| AgentExecutionStatus {
        phase: ExecutionPhase::ExecutionInProgress as i32,
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: format!("{i:08} {}", "z".repeat(3 * 1024)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut tabs = Vec::new();
    for _ in 0..4 {
        let id = create(&c, NewExecution::new("agent", "hi")).await;
        c.update_status(&id, says(0)).await.expect("update");
        let mut tab = ui
            .sse(&format!("/api/executions/{id}/events"), &cookie, None)
            .await;
        assert_eq!(tab.next().await.kind, "state");
        tabs.push((id, tab));
    }
    let before = common::rss_bytes(ui.child.id());
    const UPDATES: usize = 4000;
    for (id, _) in &tabs {
        for i in 1..=UPDATES {
            c.update_status(id, says(i)).await.expect("update");
        }
    }
    let after = common::rss_bytes(ui.child.id());
    let grown = after.saturating_sub(before);
    assert!(
        grown < 16 * 1024 * 1024,
        "the UI grew by {grown} bytes for ~48 MB of changes sent to stalled tabs"
    );
    // A stalled tab reads again and ends on the last state.
    let last = format!("{UPDATES:08} ");
    let (_, mut tab) = tabs.remove(0);
    loop {
        let ev = tab.next().await;
        let text = match ev.kind.as_str() {
            "state" => ev.data["status"]["messages"][0]["content"].to_string(),
            _ => ev.data.to_string(),
        };
        if text.contains(&last) {
            break;
        }
    }
}

/// `GET /api/status` as JSON (the daemon page's source).
async fn status_json(ui: &Ui, cookie: &str) -> serde_json::Value {
    let r = ui.get("/api/status", &[("Cookie", cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    serde_json::from_str(&r.text).expect("the status as JSON")
}

/// A uint64 of the status JSON (canonical proto3 JSON: a decimal string;
/// absent when 0).
fn uint(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Null => 0,
        serde_json::Value::String(s) => s.parse().expect("a decimal uint64"),
        other => other.as_u64().expect("a uint64"),
    }
}

/// The daemon page's status names the backend: `sqlite` on a daemon
/// alone; in the cluster mode `etcd`, with the replica's applied revision
/// and the newest etcd revision, from which the page shows the lag (its
/// rows are in daemon.js; tests/browser checks them on the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_names_the_backend_and_in_the_cluster_mode_the_replicas_place() {
    let alone = Daemon::start(&[]);
    let ui = Ui::start(&alone);
    let cookie = ui.sign_in().await;
    let s = status_json(&ui, &cookie).await;
    assert_eq!(s["backend"], "sqlite", "{s}");
    assert_eq!(uint(&s["replicaAppliedRevision"]), 0, "{s}");
    let js = ui.get("/assets/daemon.js", &[("Cookie", &cookie)]).await;
    for label in [
        "replica applied revision",
        "etcd revision",
        "replica lag (revisions)",
    ] {
        assert!(js.text.contains(label), "daemon.js lacks {label}");
    }
    let Some(etcd) = etcd_cluster::Cluster::start().await else {
        return;
    };
    let replica = Daemon::start(&["--etcd", &etcd.endpoints().join(",")]);
    let ui = Ui::start(&replica);
    let cookie = ui.sign_in().await;
    let c = client(&replica).await;
    let (_, created) = c
        .create(NewExecution::new("agent", "hi"))
        .await
        .expect("create");
    // Acknowledged once applied here: the status has it.
    let s = status_json(&ui, &cookie).await;
    assert_eq!(s["backend"], "etcd", "{s}");
    assert_eq!(uint(&s["replicaAppliedRevision"]), created, "{s}");
    assert!(uint(&s["etcdRevision"]) >= created, "{s}");
}
