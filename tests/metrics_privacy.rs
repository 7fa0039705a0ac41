//! What the loopback metrics endpoint shows every local user
//! (docs/SECURITY.md): aggregates only. With executions, sessions, agents,
//! prompts, an open subscription and an open watch of the session in the
//! daemon, the exposition names none of them: no execution id, no session,
//! no content, and no label but `reason`, `shard`, `scope` (one of two
//! fixed names) and the histograms' `le`.

mod common;

use std::io::{Read, Write};

use stigmer_proto::agentexecution::{AgentExecutionStatus, AgentMessage, MessageType};
use stigmer_proto::daemon::request::Command as Cmd;

#[tokio::test]
async fn metrics_carry_aggregates_only() {
    let addr = common::free_loopback_addr();
    let d = common::Daemon::start(&["--metrics-listen", &addr]);
    let mut c = d.connect().await;
    let mut execution = common::new_execution("secret-agent", Some("secret-session"));
    if let Some(spec) = execution.spec.as_mut() {
        spec.message = "my secret prompt".into();
    }
    let (created, _) = common::expect_execution(c.call(Cmd::Create(execution)).await);
    let id = created.metadata.expect("metadata").id;
    let status = AgentExecutionStatus {
        messages: vec![AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: "a secret answer".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    common::expect_execution(c.update(&id, status).await);
    // An open subscription on the execution while the metrics are read.
    let mut watcher = d.connect().await;
    let sub = watcher.subscribe(&id, None).await;
    watcher.event(sub).await;
    // And a watch of the session, its list read.
    let session = common::watch::watch(
        &mut watcher,
        common::watch::Sel::Session("secret-session"),
        None,
        false,
    )
    .await;
    common::watch::initial_list(&mut watcher, session).await;

    let body = tokio::task::spawn_blocking(move || {
        let mut http = std::net::TcpStream::connect(&addr).expect("connect");
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut body = String::new();
        http.read_to_string(&mut body).expect("read");
        body
    })
    .await
    .expect("fetch");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("stigmer_subscribers 2"),
        "the subscription and the watch count: {body}"
    );
    assert!(
        body.contains("stigmer_watches{scope=\"session\"} 1"),
        "the watch counts by scope only: {body}"
    );
    for secret in [id.as_str(), "aex-", "secret"] {
        assert!(!body.contains(secret), "{secret:?} in the metrics:\n{body}");
    }
    for line in body.lines().filter(|l| l.starts_with("stigmer_")) {
        let Some(labels) = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
        else {
            continue;
        };
        for pair in labels.0.split(',') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            assert!(
                ["reason", "shard", "le", "scope"].contains(&name),
                "unexpected label {name:?} in {line}"
            );
            if name == "scope" {
                assert!(
                    ["\"session\"", "\"all\""].contains(&value),
                    "scope is one of two fixed names: {line}"
                );
            }
        }
    }
}
