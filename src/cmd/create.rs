//! `create`: runs `pipeline::create`: validate here, then queues the write;
//! the writer thread runs the rest and answers.

use stigmer_proto::agentexecution::AgentExecution;

use super::{Context, Session};
use crate::pipeline::{create, Write};
use crate::wire::Reply;
use crate::writer::ReplyForm;

pub(super) async fn apply(
    ctx: &Context,
    session: &Session,
    reply: Reply,
    execution: AgentExecution,
    form: ReplyForm,
) {
    match create::validate(&execution) {
        Err(err) => reply.error(err),
        Ok(()) => {
            super::submit(
                ctx,
                session,
                reply,
                Write::Create(Box::new(execution)),
                form,
            )
            .await
        }
    }
}
