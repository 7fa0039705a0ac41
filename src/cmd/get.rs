//! `get`: the latest state of one execution, read on the read pool (in
//! the cluster mode, once the replica caught up with it: `cmd::caught_up`).

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
        // The cluster mode: the replica first catches up with etcd's copy
        // of the execution (bounded; on failure the replica answers as it
        // stands). Then waits for a read connection and the query.
        let result = match super::caught_up(&ctx, Some(&execution_id), None).await {
            Ok(()) => ctx.reader.run(move |c| reader::get(c, &lookup)).await,
            Err(err) => Err(err),
        };
        let result = result
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
