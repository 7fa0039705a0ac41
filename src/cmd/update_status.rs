//! `update_status`: runs `pipeline::update_status`: validate here, then
//! queues the write; the writer thread runs load, build, persist and
//! broadcast, and answers (see that file for the steps).

use stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput;

use super::Context;
use crate::pipeline::{update_status, Write};
use crate::wire::Reply;
use crate::writer::{Answer, Job, ReplyForm};

pub(super) async fn apply(
    ctx: &Context,
    reply: Reply,
    input: AgentExecutionUpdateStatusInput,
    form: ReplyForm,
) {
    if let Err(err) = update_status::validate(&input) {
        return reply.error(err);
    }
    let job = Job {
        write: Write::UpdateStatus(Box::new(input)),
        answer: Answer::Client { reply, form },
    };
    // Waits only while the writer queue is full (back-pressure from the disk).
    ctx.writer.submit(job).await;
}
