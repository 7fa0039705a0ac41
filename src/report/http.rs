//! `--metrics-listen ADDR`: the Prometheus exposition over HTTP, on loopback
//! only (the metrics name executions and reveal load; the Unix socket's
//! access policy does not cover TCP, so the endpoint never leaves the host).
//!
//! The HTTP handled here is a request head and one response, then close: a
//! hyper server would be most of the daemon's dependency tree for one GET.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Sources;

/// Scrapes served at once; more wait (a scraper makes one at a time).
const MAX_CONCURRENT: usize = 8;
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// A client that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (loopback only).
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--metrics-listen {addr}: only loopback addresses are allowed"
        ));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: cannot bind: {e}"))
}

/// Serves scrapes until `shutdown` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    sources: Arc<Sources>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            // Waits for a scraper.
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        // Waits while MAX_CONCURRENT scrapes are in progress.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(HEAD_TIMEOUT, answer(stream, &sources)).await;
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, sources: &Sources) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        // Waits for more of the request head.
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, kind, body) = if method == "GET" && (path == "/metrics" || path == "/") {
        (
            "200 OK",
            "text/plain; version=0.0.4",
            super::prometheus::render(sources),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "only GET /metrics is served here\n".to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Writes the response; fails if the scraper left.
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
