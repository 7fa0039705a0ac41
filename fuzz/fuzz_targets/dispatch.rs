//! Request dispatch in process: one daemon (`Daemon::start` on a temporary
//! database) serves each input over one end of a `UnixStream::pair()`.
//!
//! Input: records `[u16 little-endian length][body]`, each sent as one
//! frame; a record longer than what is left is sent cut off (then EOF). The
//! client then closes its write side and reads every reply until the daemon
//! closes the connection.
//!
//! Invariants: no panic in the daemon (a panicking connection task is
//! caught by tokio, so the daemon's liveness is checked instead: after each
//! input a fresh connection must still get a pong); every reply decodes as a
//! `Response`; the connection ends (no hang: bounded by a timeout).

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use stigmer::daemon::{Activation, Daemon};
use stigmer_proto::daemon::{request::Command, response, PingRequest, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A hang longer than this is a bug (every input ends within milliseconds).
const HANG: Duration = Duration::from_secs(10);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: stigmer::daemon::DaemonArgs,
}

struct World {
    runtime: tokio::runtime::Runtime,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("fuzz.db");
        let socket = dir.path().join("fuzz.sock");
        let cli = Cli::parse_from([
            "fuzz".as_ref(),
            "--db".as_ref(),
            db.as_os_str(),
            "--max-frame-length".as_ref(),
            "65536".as_ref(),
            "--max-subscriptions-per-connection".as_ref(),
            "64".as_ref(),
            "--log-level".as_ref(),
            "off".as_ref(),
        ]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let daemon = runtime
            .block_on(Daemon::start(&socket, &cli.args, Activation::None))
            .expect("daemon starts");
        World {
            runtime,
            daemon,
            _dir: dir,
        }
    })
}

fn frames(mut data: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    while data.len() >= 2 {
        let len = u16::from_le_bytes([data[0], data[1]]) as usize;
        data = &data[2..];
        wire.extend_from_slice(&(len as u32).to_be_bytes());
        let take = len.min(data.len());
        wire.extend_from_slice(&data[..take]);
        data = &data[take..];
    }
    wire
}

async fn exchange(daemon: &Daemon, wire: Vec<u8>) -> Vec<u8> {
    let (mut client, server) = UnixStream::pair().expect("socketpair");
    daemon.serve_stream(server);
    // Written from a task, so a daemon that stops reading cannot deadlock
    // the test against a reply buffer nobody drains.
    let (mut rd, mut wr) = client.split();
    let write = async {
        let _ = wr.write_all(&wire).await;
        let _ = wr.shutdown().await;
    };
    let mut out = Vec::new();
    let read = rd.read_to_end(&mut out);
    let (_, read) = tokio::join!(write, read);
    let _ = read;
    drop(client);
    out
}

fn check_replies(mut out: &[u8]) {
    while out.len() >= 4 {
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert!(out.len() >= 4 + len, "a reply frame cut off");
        Response::decode(&out[4..4 + len]).expect("every reply decodes as a Response");
        out = &out[4 + len..];
    }
    assert!(out.is_empty(), "trailing bytes after the last reply");
}

async fn alive(daemon: &Daemon) {
    let ping = Request {
        protocol_version: 1,
        id: 1,
        minimal_reply: false,
        command: Some(Command::Ping(PingRequest {})),
    }
    .encode_to_vec();
    let mut wire = (ping.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&ping);
    let out = exchange(daemon, wire).await;
    assert!(out.len() > 4, "the daemon answers a ping after the input");
    let resp = Response::decode(&out[4..]).expect("pong decodes");
    assert!(matches!(resp.result, Some(response::Result::Pong(_))));
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let wire = frames(data);
    w.runtime.block_on(async {
        let out = tokio::time::timeout(HANG, exchange(&w.daemon, wire))
            .await
            .expect("the connection ends after EOF (no hang)");
        check_replies(&out);
        tokio::time::timeout(HANG, alive(&w.daemon))
            .await
            .expect("the daemon still answers");
    });
});
