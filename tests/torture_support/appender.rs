//! The appending side of a writer: runs of `append` requests, each with
//! text tokens unique in the run (and sometimes a todo, a tool call, its
//! result or the phase) at the offset it last saw, compare-and-set now and
//! then; sent again after a lost reply, and looked up again after ABORTED.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionId, ExecutionPhase, MessageType, TodoItem, ToolCall,
    ToolCallStatus,
};
use stigmer_proto::daemon::{
    op, request::Command as Cmd, response, AppendRequest, AppendToolResult, Code, Op, PutTodo,
};

use super::commands::text_op;
use super::record::Fact;
use super::rng::Rng;
use super::shared::Shared;
use super::texts::tokens;
use super::wire::Closed;
use super::writer::{Conn, Wrote};

/// Where a writer appends next in one execution, as far as it knows.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor {
    message_index: u32,
    offset: u64,
    /// The execution's revision when this was learnt (for compare-and-set).
    revision: u64,
    /// The length of the result of this writer's tool call, once put.
    tool_result: Option<u64>,
}

/// The appending side of a writer.
pub(super) struct Appender {
    pub(super) w: usize,
    pub(super) n: u64,
    pub(super) cursors: HashMap<String, Cursor>,
    /// The execution it is streaming into, and how many appends are left.
    pub(super) run: Option<(String, u64)>,
}

impl Appender {
    /// A new token: unique in the run, recognisable in any state, with
    /// multi-byte characters (offsets are in bytes).
    fn token(&mut self, rng: &mut Rng) -> String {
        self.n += 1;
        let pad = match rng.below(20) {
            0 => 400,
            1..=4 => 40,
            _ => 4,
        };
        let pad: String = (0..rng.below(pad))
            .map(|_| ['x', 'é', '🦀', ' '][rng.below(4) as usize])
            .collect();
        format!("<a{}.{}:{pad}>", self.w, self.n)
    }

    /// Reads the execution and picks where to append: at the end of its
    /// last message, or a new message.
    async fn locate(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        id: &str,
        rng: &mut Rng,
    ) -> Result<(Cursor, AgentExecution), Wrote> {
        let resp = match conn
            .wire
            .call(Cmd::Get(AgentExecutionId { value: id.into() }))
            .await
        {
            Ok(resp) => resp,
            Err(Closed) => return Err(Wrote::Lost),
        };
        let (e, revision) = match resp.result {
            Some(response::Result::Execution(r)) => (r.execution.expect("execution"), r.revision),
            Some(response::Result::Error(e)) if e.code == Code::NotFound as i32 => {
                return Err(Wrote::Over)
            }
            Some(response::Result::Error(e)) if e.code == Code::Unavailable as i32 => {
                return Err(Wrote::Lost)
            }
            // A broken promise, reported with the others rather than a
            // panic, so that the run ends and shows the rest.
            Some(response::Result::Error(e)) => {
                shared
                    .record()
                    .problems
                    .push(format!("get of {id} answered {e:?}"));
                return Err(Wrote::Aborted);
            }
            other => panic!("unexpected reply to a get of {id}: {other:?}"),
        };
        let status = e.status.clone().unwrap_or_default();
        let tool = format!("t{}", self.w);
        let tool_result = status
            .tool_calls
            .iter()
            .find(|c| c.id == tool)
            .map(|c| c.result.len() as u64);
        let cursor = match status.messages.last() {
            Some(m) if rng.percent(80) => Cursor {
                message_index: status.messages.len() as u32 - 1,
                offset: m.content.len() as u64,
                revision,
                tool_result,
            },
            _ => Cursor {
                message_index: status.messages.len() as u32,
                offset: 0,
                revision,
                tool_result,
            },
        };
        Ok((cursor, e))
    }

    /// One append of one or two tokens (and sometimes more operations),
    /// retried after a lost reply until it is answered; sometimes sent
    /// twice on purpose, as a client whose reply was lost would.
    pub(super) async fn append(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        id: &str,
        rng: &mut Rng,
    ) -> Wrote {
        let cursor = match self.cursors.get(id) {
            Some(c) => *c,
            None => match self.locate(shared, conn, id, rng).await {
                Ok((c, _)) => c,
                Err(wrote) => return wrote,
            },
        };
        let new_message_type = if rng.percent(10) {
            MessageType::MessageHuman as i32
        } else {
            0
        };
        let mut ops = Vec::new();
        let mut facts = Vec::new();
        let mut offset = cursor.offset;
        for _ in 0..1 + rng.percent(15) as usize {
            let text = self.token(rng);
            ops.push(text_op(
                cursor.message_index,
                offset,
                &text,
                new_message_type,
            ));
            facts.push(Fact {
                execution: id.into(),
                message_index: cursor.message_index,
                offset,
                text: text.clone(),
            });
            offset += text.len() as u64;
        }
        let mut tool_result = cursor.tool_result;
        let tool = format!("t{}", self.w);
        match rng.below(20) {
            0 | 1 => ops.push(Op {
                op: Some(op::Op::PutTodo(PutTodo {
                    key: format!("w{}", self.w),
                    item: Some(TodoItem {
                        id: format!("w{}", self.w),
                        content: format!("n{}", self.n),
                        ..Default::default()
                    }),
                })),
            }),
            2 => {
                ops.push(Op {
                    op: Some(op::Op::PutToolCall(ToolCall {
                        id: tool.clone(),
                        name: format!("grep{}", self.n),
                        status: ToolCallStatus::ToolCallRunning as i32,
                        ..Default::default()
                    })),
                });
                tool_result = Some(0);
            }
            3..=5 if tool_result.is_some() => {
                let text = format!("r{};", self.n);
                let at = tool_result.unwrap_or(0);
                ops.push(Op {
                    op: Some(op::Op::AppendToolResult(AppendToolResult {
                        tool_call_id: tool.clone(),
                        offset: at,
                        text: text.clone(),
                    })),
                });
                tool_result = Some(at + text.len() as u64);
            }
            6 => ops.push(Op {
                op: Some(op::Op::SetPhase(ExecutionPhase::ExecutionInProgress as i32)),
            }),
            _ => {}
        }
        // Compare-and-set against the revision this writer last learnt.
        let expected = (rng.percent(10) && cursor.revision > 0).then_some(cursor.revision);
        let cmd = Cmd::Append(AppendRequest {
            execution_id: id.into(),
            expected_revision: expected,
            ops,
        });
        // None: the first send. Some(None): a retry after a lost reply.
        // Some(Some(r)): a deliberate resend of an append acknowledged at r.
        let mut retry: Option<Option<u64>> = None;
        loop {
            let resp = match conn.wire.call(cmd.clone()).await {
                Ok(resp) => resp,
                Err(Closed) => {
                    shared.lost_replies.fetch_add(1, Ordering::Relaxed);
                    conn.reconnect(shared).await;
                    retry = Some(None);
                    continue;
                }
            };
            match resp.result {
                Some(response::Result::Execution(reply)) => {
                    let revision = reply.revision;
                    if reply.execution.is_some() {
                        shared
                            .record()
                            .problems
                            .push(format!("an append to {id} was not answered minimally"));
                    }
                    self.cursors.insert(
                        id.to_string(),
                        Cursor {
                            message_index: cursor.message_index,
                            offset,
                            revision,
                            tool_result,
                        },
                    );
                    match retry {
                        None => {
                            if revision <= conn.last {
                                let msg = format!(
                                    "a writer's revision went from {} to {revision}",
                                    conn.last
                                );
                                shared.record().writer_order.push(msg);
                            }
                            conn.last = revision;
                            shared.ack_append(conn.wire.daemon, id, revision, facts.clone(), false);
                            // Sometimes the same append again, as after a
                            // reply lost to a reconnect.
                            if rng.percent(5) {
                                retry = Some(Some(revision));
                                continue;
                            }
                        }
                        Some(original) => {
                            if original.is_none() {
                                shared.retries_after_crash.fetch_add(1, Ordering::Relaxed);
                            }
                            if original.is_some_and(|o| revision < o) {
                                shared.record().problems.push(format!(
                                    "a resent append to {id} was acknowledged at revision {revision}, before the original's {original:?}"
                                ));
                            }
                            shared.ack_append(conn.wire.daemon, id, revision, facts.clone(), true);
                        }
                    }
                    return Wrote::Acked;
                }
                // A stale offset that falls inside a character of the
                // text appended since is INVALID_ARGUMENT, not ABORTED
                // (proto/src/delta/mod.rs: "not on a character boundary:
                // Invalid"); both mean "not applied, look again".
                Some(response::Result::Error(e))
                    if e.code == Code::Aborted as i32
                        || (e.code == Code::InvalidArgument as i32
                            && e.message.contains("inside a UTF-8 character")) =>
                {
                    if e.code == Code::Aborted as i32 {
                        shared.aborted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.inside_character.fetch_add(1, Ordering::Relaxed);
                    }
                    self.cursors.remove(id);
                    // Only this writer ever sends these texts: refused,
                    // they are nowhere (a retry of one already applied is
                    // acknowledged, not refused).
                    match self.locate(shared, conn, id, rng).await {
                        Ok((c, state)) => {
                            let ids: HashSet<&str> =
                                tokens(&state).into_iter().map(|(t, _, _)| t).collect();
                            for f in &facts {
                                let t = &f.text[1..f.text.find(':').unwrap_or(1)];
                                if ids.contains(t) {
                                    shared.record().problems.push(format!(
                                        "an append to {id} ({} send) was refused ({}), but its text {:?} is in the state (revision {})",
                                        match retry {
                                            None => "first",
                                            Some(None) => "a retried",
                                            Some(Some(_)) => "a resent",
                                        },
                                        e.message,
                                        f.text,
                                        c.revision
                                    ));
                                }
                            }
                            self.cursors.insert(id.to_string(), c);
                            return Wrote::Aborted;
                        }
                        Err(wrote) => return wrote,
                    }
                }
                Some(response::Result::Error(e))
                    if e.code == Code::FailedPrecondition as i32
                        || e.code == Code::NotFound as i32 =>
                {
                    self.cursors.remove(id);
                    return Wrote::Over;
                }
                Some(response::Result::Error(e)) if e.code == Code::Unavailable as i32 => {
                    shared.unavailable.fetch_add(1, Ordering::Relaxed);
                    conn.reconnect(shared).await;
                    retry = Some(None);
                }
                other => panic!("unexpected reply to an append to {id}: {other:?}"),
            }
        }
    }
}
