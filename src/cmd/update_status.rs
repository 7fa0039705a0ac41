//! `update_status`: runs `pipeline::update_status` (validate here, the rest
//! on the writer thread; see that file for the steps).

use stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput;
use tokio::sync::OwnedSemaphorePermit;

use crate::pipeline::update_status;
use crate::server::connection::Conn;

pub async fn apply(
    conn: &Conn,
    permit: OwnedSemaphorePermit,
    id: u64,
    mut input: AgentExecutionUpdateStatusInput,
    reply: super::ReplyFn,
) {
    if let Err(status) = update_status::BEFORE_QUEUE.run(&mut input) {
        return conn.reply_result(permit, id, Err(status));
    }
    super::submit_write(conn, permit, id, update_status::job(input), reply).await;
}
