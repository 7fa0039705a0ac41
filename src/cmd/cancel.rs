//! `cancel`: ends one open stream of this connection; the stream itself
//! sends its END_REASON_CANCELLED event.

use stigmer_proto::daemon::{response, CancelSubscriptionResponse};
use tokio::sync::OwnedSemaphorePermit;

use crate::protocol::Status;
use crate::server::connection::Conn;

pub fn apply(conn: &Conn, permit: OwnedSemaphorePermit, id: u64, subscription_id: u64) {
    let token = conn.subscriptions().get(&subscription_id).cloned();
    let result = match token {
        Some(token) => {
            token.cancel();
            Ok(response::Result::Cancelled(CancelSubscriptionResponse {}))
        }
        None => Err(Status::not_found(format!(
            "no open subscription with id {subscription_id} on this connection"
        ))),
    };
    conn.reply_result(permit, id, result);
}
