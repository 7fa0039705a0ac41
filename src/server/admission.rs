//! Admission: who may stay connected, and the counts every connection is in
//! until it closes.
//!
//! A connection is counted in `connections_open` when accepted (by the
//! accept loop) and on its shard when served; [`OpenGuard`] counts it out
//! however it ends. Before any request is read, the peer's credentials go
//! through the access policy and the per-uid limit; a refused peer gets one
//! error frame (id 0) and a lingering close.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use stigmer_proto::daemon::response;
use stigmer_proto::frame;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::FramedWrite;

use super::peer::PeerCred;
use super::Shared;
use crate::protocol::{encode_response, ApiError, Code};

/// How long a refused connection gets to receive its error before it is
/// closed: it is one small frame, so only a peer that never reads needs it.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a closing connection may linger to drain its peer's input.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// The most input read and thrown away while lingering.
const LINGER_BYTES: usize = 1024 * 1024;

/// Decrements the open-connection counts however the connection ends.
pub(super) struct OpenGuard {
    shared: Arc<Shared>,
    uid: Option<u32>,
    /// The shard whose count this connection is in, once it is served.
    shard: Option<usize>,
}

impl OpenGuard {
    /// Counts an accepted connection (already in `connections_open`) on the
    /// shard that serves it.
    pub(super) fn on_shard(shared: Arc<Shared>, shard: usize) -> Self {
        let mut guard = OpenGuard {
            shared,
            uid: None,
            shard: None,
        };
        if let Some(count) = guard.shared.stats.shard_connections.get(shard) {
            count.fetch_add(1, Ordering::AcqRel);
            guard.shard = Some(shard);
        }
        guard
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let stats = &self.shared.stats;
        if let Some(uid) = self.uid {
            stats.leave_uid(uid);
        }
        if let Some(count) = self
            .shard
            .and_then(|shard| stats.shard_connections.get(shard))
        {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        if stats.connections_open.fetch_sub(1, Ordering::AcqRel) == 1 {
            stats.mark_idle_now();
        }
    }
}

/// Un-counts a connection that closed before it could be served.
pub(super) fn closed_before_serving(shared: Arc<Shared>) {
    drop(OpenGuard {
        shared,
        uid: None,
        shard: None,
    });
}

/// Applies the access policy and the per-uid limit to the peer `cred`.
/// Returns the stream when admitted (counted against its uid in `guard`);
/// otherwise tells the peer why, closes, and returns `None`.
pub(super) async fn admit(
    stream: UnixStream,
    cred: PeerCred,
    shared: &Shared,
    guard: &mut OpenGuard,
) -> Option<UnixStream> {
    // May look up the peer's groups (a blocking NSS call, off the worker).
    if !shared.policy.admits(cred).await {
        shared
            .stats
            .rejected_permission
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("connection refused: uid {} is not admitted", cred.uid);
        let err = ApiError::new(
            Code::PermissionDenied,
            format!(
                "uid {} may not use this daemon (admitted: {})",
                cred.uid,
                shared.policy.describe()
            ),
        );
        reject(stream, err).await;
        return None;
    }
    let limit = shared.limits.max_connections_per_uid;
    if !shared.stats.enter_uid(cred.uid, limit) {
        shared
            .stats
            .rejected_per_uid
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            limit,
            "connection refused: too many connections from this uid"
        );
        let err = ApiError::resource_exhausted(format!(
            "uid {} already has {limit} connections (the per-uid limit)",
            cred.uid
        ));
        reject(stream, err).await;
        return None;
    }
    guard.uid = Some(cred.uid);
    Some(stream)
}

/// Tells a refused connection why (a connection error, id 0), then closes it.
pub(super) async fn reject(stream: UnixStream, err: ApiError) {
    let body = encode_response(0, response::Result::Error(err.to_proto()));
    let mut frames = FramedWrite::new(stream, frame::codec(frame::DEFAULT_MAX_FRAME_LENGTH));
    // A peer that never reads cannot hold this task for long.
    let sent = tokio::time::timeout(REJECT_WRITE_TIMEOUT, frames.send(body)).await;
    if matches!(sent, Ok(Ok(()))) {
        let (rd, mut wr) = frames.into_inner().into_split();
        // EOF after the error frame, then linger.
        let _ = wr.shutdown().await;
        drain_then_close(rd).await;
    }
}

/// A lingering close. Closing a Unix socket whose receive queue still holds
/// the peer's unread requests resets the peer (ECONNRESET), which can make it
/// lose the error frame just sent. So, with the write side already shut, read
/// and discard what the peer sends until it closes, for at most
/// [`LINGER_TIMEOUT`] and [`LINGER_BYTES`].
pub(super) async fn drain_then_close(mut rd: impl tokio::io::AsyncRead + Unpin) {
    use tokio::io::AsyncReadExt;
    let drain = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        // Waits for the peer's next bytes or its close.
        while let Ok(n) = rd.read(&mut buf).await {
            total += n;
            if n == 0 || total >= LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}
