//! `get`: the latest state of one execution, read on the read pool.

use stigmer_proto::daemon::{response, ExecutionReply};
use tokio::sync::OwnedSemaphorePermit;

use crate::protocol::Status;
use crate::server::connection::Conn;
use crate::store::reader;

pub fn apply(conn: &Conn, permit: OwnedSemaphorePermit, id: u64, execution_id: String) {
    if execution_id.is_empty() {
        let status = Status::invalid_argument("value (the execution id) is required");
        return conn.reply_result(permit, id, Err(status));
    }
    let conn = conn.clone();
    tokio::spawn(async move {
        let lookup = execution_id.clone();
        // Waits for a read connection and the query.
        let result = conn
            .shared
            .reader
            .run(move |c| reader::get(c, &lookup))
            .await
            .and_then(|stored| {
                stored
                    .ok_or_else(|| Status::not_found(format!("execution {execution_id} not found")))
            })
            .map(|stored| {
                response::Result::Execution(ExecutionReply {
                    execution: Some(stored.execution),
                    revision: stored.revision,
                    execution_id,
                })
            });
        conn.reply_result(permit, id, result);
    });
}
