//! `create`: runs `pipeline::create`: validate here, then queues the write;
//! the writer thread runs the rest and answers.

use stigmer_proto::agentexecution::AgentExecution;

use super::Context;
use crate::pipeline::{create, Write};
use crate::wire::Reply;
use crate::writer::{Answer, Job, ReplyForm};

pub(super) async fn apply(ctx: &Context, reply: Reply, execution: AgentExecution, form: ReplyForm) {
    if let Err(err) = create::validate(&execution) {
        return reply.error(err);
    }
    let job = Job {
        write: Write::Create(Box::new(execution)),
        answer: Answer::Client { reply, form },
    };
    // Waits only while the writer queue is full (back-pressure from the disk).
    ctx.writer.submit(job).await;
}
