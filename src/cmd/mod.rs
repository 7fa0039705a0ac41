//! Commands: one file per command, each parsing its body, applying it and
//! encoding its reply (as mini-redis's `cmd/`).
//!
//! [`dispatch`] runs on the connection's reader loop. It does the cheap,
//! ordered part inline (checks, `validate` steps, queuing a write, registering
//! a stream) and moves every wait (a commit, a read, a stream) into a task,
//! so the reader goes straight back to reading.

mod cancel;
mod create;
mod delete;
mod get;
mod list;
mod ping;
pub mod status;
mod subscribe;
mod update_status;

use bytes::Bytes;

use stigmer_proto::daemon::request::Command;
use stigmer_proto::daemon::{response, Request};
use stigmer_proto::frame::PROTOCOL_VERSION;
use tokio::sync::OwnedSemaphorePermit;

use crate::protocol::Status;
use crate::server::connection::Conn;
use crate::store::writer::Job;
use crate::store::Change;

/// Dispatches one decoded request. An `Err` is a connection error: the
/// reader sends it with id 0 and closes the connection.
pub async fn dispatch(
    conn: &Conn,
    permit: OwnedSemaphorePermit,
    request: Request,
) -> Result<(), Status> {
    let id = request.id;
    if id == 0 {
        return Err(Status::invalid_argument(
            "request id 0 is reserved (ids are chosen by the client and non-zero)",
        ));
    }
    if request.protocol_version != PROTOCOL_VERSION {
        let status = Status::failed_precondition(format!(
            "protocol version {} is not supported; this daemon speaks version {PROTOCOL_VERSION}",
            request.protocol_version
        ));
        conn.reply_result(permit, id, Err(status));
        return Ok(());
    }
    if conn.subscriptions().contains_key(&id) {
        let status = Status::invalid_argument(format!(
            "request id {id} is already used by an open subscription on this connection; \
             ids must not be reused until the stream ends"
        ));
        conn.reply_result(permit, id, Err(status));
        return Ok(());
    }
    let minimal_reply = request.minimal_reply;
    let Some(command) = request.command else {
        let status = Status::unimplemented(
            "unknown or missing command; protocol 1 has ping, create, update_status, get, \
             list, delete, subscribe, cancel and status",
        );
        conn.reply_result(permit, id, Err(status));
        return Ok(());
    };
    match command {
        Command::Ping(_) => ping::apply(conn, permit, id),
        Command::Create(execution) => {
            create::apply(conn, permit, id, execution, reply_of(minimal_reply)).await
        }
        Command::UpdateStatus(input) => {
            update_status::apply(conn, permit, id, input, reply_of(minimal_reply)).await
        }
        Command::Get(get) => get::apply(conn, permit, id, get.value),
        Command::List(list) => list::apply(conn, permit, id, list),
        Command::Delete(delete) => delete::apply(conn, permit, id, delete.value).await,
        Command::Subscribe(sub) => subscribe::apply(conn, permit, id, sub),
        Command::Cancel(cancel) => cancel::apply(conn, permit, id, cancel.subscription_id),
        Command::Status(req) => status::apply(conn, permit, id, req.prometheus),
    }
    Ok(())
}

/// Encodes a write's reply (request id, committed change); for create and
/// update_status it is chosen by `Request.minimal_reply`.
type ReplyFn = fn(u64, &Change) -> Bytes;

/// Queues a write job in arrival order. Its reply is queued on the
/// connection by the writer thread itself right after COMMIT (or the
/// refusal), with no task in between. Shared by create, update_status and
/// delete.
async fn submit_write(
    conn: &Conn,
    permit: OwnedSemaphorePermit,
    id: u64,
    job: Job,
    reply: ReplyFn,
) {
    let answer = conn.clone();
    let done: crate::store::writer::Done = Box::new(move |result| {
        let body = match result {
            Ok(change) => reply(id, &change),
            Err(status) => {
                crate::protocol::encode_response(id, response::Result::Error(status.to_proto()))
            }
        };
        // Never waits: a full queue hands the frame to a small task.
        answer.reply(permit, body);
    });
    // Waits only while the writer queue is full (back-pressure from the disk).
    conn.shared.writer.submit(job, done).await;
}

fn reply_of(minimal: bool) -> ReplyFn {
    if minimal {
        minimal_execution_reply
    } else {
        execution_reply
    }
}

/// The reply to create and update_status: the execution as committed,
/// wrapping the bytes the writer encoded.
fn execution_reply(id: u64, change: &Change) -> Bytes {
    match &change.state {
        Some(state) => crate::protocol::encode_execution_reply(
            id,
            change.revision,
            &change.execution_id,
            Some(&state.encoded),
        ),
        None => crate::protocol::encode_response(
            id,
            response::Result::Error(
                Status::internal("a create or update committed no state").to_proto(),
            ),
        ),
    }
}

/// The minimal reply to create and update_status: the revision committed
/// and the execution's id, without the state.
fn minimal_execution_reply(id: u64, change: &Change) -> Bytes {
    crate::protocol::encode_execution_reply(id, change.revision, &change.execution_id, None)
}
