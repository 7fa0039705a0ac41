//! `create`: runs `pipeline::create` (validate here, the rest on the writer).

use stigmer_proto::agentexecution::AgentExecution;
use tokio::sync::OwnedSemaphorePermit;

use crate::pipeline::create;
use crate::server::connection::Conn;

pub async fn apply(
    conn: &Conn,
    permit: OwnedSemaphorePermit,
    id: u64,
    mut execution: AgentExecution,
    reply: super::ReplyFn,
) {
    if let Err(status) = create::BEFORE_QUEUE.run(&mut execution) {
        return conn.reply_result(permit, id, Err(status));
    }
    super::submit_write(conn, permit, id, create::job(execution), reply).await;
}
