//! `append`: runs `pipeline::append`: validate here, then queues the write;
//! the writer thread applies the operations and answers with the revision
//! (a minimal reply: the caller holds what it sent).

use stigmer_proto::daemon::AppendRequest;

use super::{Context, Session};
use crate::pipeline::{append, Write};
use crate::wire::Reply;
use crate::writer::ReplyForm;

pub(super) async fn apply(ctx: &Context, session: &Session, reply: Reply, req: AppendRequest) {
    match append::validate(&req) {
        Err(err) => reply.error(err),
        Ok(()) => {
            super::submit(
                ctx,
                session,
                reply,
                Write::Append(Box::new(req)),
                ReplyForm::Minimal,
            )
            .await
        }
    }
}
