//! `update_status`: runs `pipeline::update_status`: validate here, then
//! queues the write; the writer thread runs load, build, persist and
//! broadcast, and answers (see that file for the steps).

use stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput;

use super::{Context, Session};
use crate::pipeline::{update_status, Write};
use crate::wire::Reply;
use crate::writer::ReplyForm;

pub(super) async fn apply(
    ctx: &Context,
    session: &Session,
    reply: Reply,
    input: AgentExecutionUpdateStatusInput,
    form: ReplyForm,
) {
    match update_status::validate(&input) {
        Err(err) => reply.error(err),
        Ok(()) => {
            super::submit(
                ctx,
                session,
                reply,
                Write::UpdateStatus(Box::new(input)),
                form,
            )
            .await
        }
    }
}
