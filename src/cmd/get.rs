//! `get`: the latest state of one execution, read on the read pool.

use std::sync::Arc;

use stigmer_proto::daemon::{response, ExecutionReply};

use super::Context;
use crate::protocol::ApiError;
use crate::store::reader;
use crate::wire::Reply;

pub(super) fn apply(ctx: &Arc<Context>, reply: Reply, execution_id: String) {
    if let Err(err) =
        crate::pipeline::validate::execution_id("value (the execution id)", &execution_id)
    {
        return reply.error(err);
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let lookup = execution_id.clone();
        // Waits for a read connection and the query.
        let result = ctx
            .reader
            .run(move |c| reader::get(c, &lookup))
            .await
            .and_then(|stored| {
                stored.ok_or_else(|| {
                    ApiError::not_found(format!("execution {execution_id} not found"))
                })
            })
            .map(|stored| {
                response::Result::Execution(ExecutionReply {
                    execution: Some(stored.execution),
                    revision: stored.revision,
                    execution_id,
                })
            });
        reply.result(result);
    });
}
