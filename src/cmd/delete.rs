//! `delete`: runs `pipeline::delete`; open streams then end with DELETED.

use stigmer_proto::daemon::{response, DeleteExecutionResponse};
use tokio::sync::OwnedSemaphorePermit;

use crate::pipeline::delete;
use crate::server::connection::Conn;

pub async fn apply(conn: &Conn, permit: OwnedSemaphorePermit, id: u64, mut execution_id: String) {
    if let Err(status) = delete::BEFORE_QUEUE.run(&mut execution_id) {
        return conn.reply_result(permit, id, Err(status));
    }
    super::submit_write(conn, permit, id, delete::job(execution_id), |id, change| {
        crate::protocol::encode_response(
            id,
            response::Result::Deleted(DeleteExecutionResponse {
                revision: change.revision,
            }),
        )
    })
    .await;
}
