//! `ping`: liveness, and the facts a client needs before anything else
//! (protocol version, daemon version, last revision, frame limit).

use stigmer_proto::daemon::{response, PingResponse};
use stigmer_proto::frame::PROTOCOL_VERSION;
use tokio::sync::OwnedSemaphorePermit;

use crate::server::connection::Conn;

/// Answers at once from the reader loop.
pub fn apply(conn: &Conn, permit: OwnedSemaphorePermit, id: u64) {
    let pong = PingResponse {
        protocol_version: PROTOCOL_VERSION,
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        revision: conn.shared.revisions.last(),
        max_frame_length: conn.shared.limits.max_frame_length as u32,
    };
    conn.reply_result(permit, id, Ok(response::Result::Pong(pong)));
}
