//! `cancel`: ends one open stream of this connection; the stream itself
//! sends its END_REASON_CANCELLED event.

use stigmer_proto::daemon::{response, CancelSubscriptionResponse};

use super::Session;
use crate::protocol::ApiError;
use crate::wire::Reply;

pub(super) fn apply(session: &Session, reply: Reply, subscription_id: u64) {
    let token = session.streams().get(&subscription_id).cloned();
    let result = match token {
        Some(token) => {
            token.cancel();
            Ok(response::Result::Cancelled(CancelSubscriptionResponse {}))
        }
        None => Err(ApiError::not_found(format!(
            "no open subscription with id {subscription_id} on this connection"
        ))),
    };
    reply.result(result);
}
