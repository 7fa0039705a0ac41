//! `delete`: runs `pipeline::delete`; open streams then end with DELETED.

use super::{Context, Session};
use crate::pipeline::{delete, Write};
use crate::wire::Reply;
use crate::writer::ReplyForm;

pub(super) async fn apply(ctx: &Context, session: &Session, reply: Reply, execution_id: String) {
    match delete::validate(&execution_id) {
        Err(err) => reply.error(err),
        Ok(()) => {
            let write = Write::Delete(execution_id);
            super::submit(ctx, session, reply, write, ReplyForm::Deleted).await;
        }
    }
}
