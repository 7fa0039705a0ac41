//! `ping`: liveness, and the facts a client needs before anything else
//! (protocol version, daemon version, last revision, frame limit).

use stigmer_proto::daemon::{response, PingResponse};
use stigmer_proto::frame::PROTOCOL_VERSION;

use super::Context;
use crate::wire::Reply;

/// Answers at once from the reader loop.
pub(super) fn apply(ctx: &Context, reply: Reply) {
    let pong = PingResponse {
        protocol_version: PROTOCOL_VERSION,
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        revision: ctx.revisions.last(),
        max_frame_length: ctx.max_frame_length as u32,
    };
    reply.result(Ok(response::Result::Pong(pong)));
}
