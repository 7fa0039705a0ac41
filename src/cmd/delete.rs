//! `delete`: runs `pipeline::delete`; open streams then end with DELETED.

use super::Context;
use crate::pipeline::{delete, Write};
use crate::wire::Reply;
use crate::writer::{Answer, Job, ReplyForm};

pub(super) async fn apply(ctx: &Context, reply: Reply, execution_id: String) {
    if let Err(err) = delete::validate(&execution_id) {
        return reply.error(err);
    }
    let job = Job {
        write: Write::Delete(execution_id),
        answer: Answer::Client {
            reply,
            form: ReplyForm::Deleted,
        },
    };
    // Waits only while the writer queue is full (back-pressure from the disk).
    ctx.writer.submit(job).await;
}
