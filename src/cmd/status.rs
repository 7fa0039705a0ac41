//! `status`: the daemon's identity, load and counters (`stigmer status`),
//! with the Prometheus exposition when asked; both built by
//! [`crate::report`].

use stigmer_proto::daemon::response;

use super::Context;
use crate::wire::Reply;

/// Answers at once from the reader loop (everything read is in memory).
pub(super) fn apply(ctx: &Context, reply: Reply, prometheus: bool) {
    let status = crate::report::daemon_status(&ctx.report, prometheus);
    reply.result(Ok(response::Result::Status(status)));
}
