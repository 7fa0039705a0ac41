//! The floor server's executions, for the transcript scenario's append mode
//! (issue 16) and the latency scenario (issue 21): the least a server must
//! keep to take one `append` per token (or a whole status), commit it, and
//! only then hand its operations (or the status) to the execution's
//! subscriber, as the daemon does. It answers the requests that
//! `bench/src/transcript/daemon.rs` and the latency scenario send (create, a
//! one-execution `subscribe`, `append` of `AppendText` on message 0 and
//! `SetPhase`, `update_status`, `get`) and nothing more. A delta stream gets
//! the appends' operations; a whole-state stream gets each update's status
//! as received (no merge), and nothing of an append.
//!
//! What it keeps is an execution's AI message text, its phase, its revision
//! and its subscribers, in memory: the state a subscriber's first SNAPSHOT
//! and the final `get` need. An append is checked (its offset must be the
//! text's length) and applied to that state when it is read; its row, the
//! request as received, commits with the turn's other writes before any
//! reply or event of the turn is written (`main.rs`), so nothing leaves
//! before its commit. A failed commit ends the server, so the memory never
//! runs ahead of a live database.
//!
//! Left out, as the floor leaves out everything its scenario does not need:
//! the daemon's stamps, merging of whole statuses, history replay, resume
//! (`from_revision`), many-execution streams, cancel, back-pressure and
//! every limit. Not a product.

use std::collections::HashMap;

use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionStatus, AgentMessage, MessageType,
};
use stigmer_proto::daemon::{op, AppendRequest, Code, EndReason, Error, Event, EventType, Op};
use stigmer_proto::delta::is_terminal_phase as terminal;

/// One execution as the floor keeps it.
#[derive(Default)]
struct Execution {
    text: String,
    phase: i32,
    revision: u64,
    /// Open streams: (connection, the subscribe request's id, deltas).
    subscribers: Vec<(usize, u64, bool)>,
}

/// A stream frame to write to connection `peer`, under request id `id`.
pub struct Outgoing {
    pub peer: usize,
    pub id: u64,
    pub event: Event,
}

#[derive(Default)]
pub struct Executions {
    by_id: HashMap<String, Execution>,
}

/// Answers a refused request with.
fn error(code: Code, message: impl Into<String>) -> Error {
    Error {
        code: code as i32,
        message: message.into(),
    }
}

impl Executions {
    /// A created execution, committed at `revision`.
    pub fn created(&mut self, id: &str, revision: u64) {
        self.by_id.insert(
            id.to_owned(),
            Execution {
                revision,
                ..Default::default()
            },
        );
    }

    /// The whole execution as a `get` or a SNAPSHOT carries it.
    pub fn get(&self, id: &str) -> Option<(AgentExecution, u64)> {
        let e = self.by_id.get(id)?;
        let message = AgentMessage {
            r#type: MessageType::MessageAi as i32,
            content: e.text.clone(),
            ..Default::default()
        };
        let execution = AgentExecution {
            status: Some(AgentExecutionStatus {
                phase: e.phase,
                messages: if e.text.is_empty() {
                    Vec::new()
                } else {
                    vec![message]
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        Some((execution, e.revision))
    }

    /// Opens a stream of `id` for connection `peer`: its SNAPSHOT.
    pub fn subscribe(
        &mut self,
        peer: usize,
        sub: u64,
        id: &str,
        deltas: bool,
    ) -> Result<Event, Error> {
        let (execution, revision) = self
            .get(id)
            .ok_or_else(|| error(Code::NotFound, format!("no execution {id}")))?;
        if let Some(e) = self.by_id.get_mut(id) {
            e.subscribers.push((peer, sub, deltas));
        }
        Ok(Event {
            r#type: EventType::EventSnapshot as i32,
            revision,
            execution_id: id.to_owned(),
            execution: Some(execution),
            ..Default::default()
        })
    }

    /// Checks an append and applies it to the execution's state (see the
    /// file's comment for why on read).
    pub fn append(&mut self, req: &AppendRequest) -> Result<(), Error> {
        let e = self
            .by_id
            .get_mut(&req.execution_id)
            .ok_or_else(|| error(Code::NotFound, "no such execution"))?;
        if terminal(e.phase) {
            return Err(error(Code::FailedPrecondition, "the phase is final"));
        }
        let mut text_len = e.text.len() as u64;
        let mut phase = e.phase;
        for op in &req.ops {
            match &op.op {
                Some(op::Op::AppendText(t)) if t.message_index == 0 => {
                    if t.offset != text_len {
                        return Err(error(
                            Code::Aborted,
                            format!("offset {} but the text holds {text_len} bytes", t.offset),
                        ));
                    }
                    text_len += t.text.len() as u64;
                }
                Some(op::Op::SetPhase(p)) => phase = *p,
                _ => {
                    return Err(error(
                        Code::Unimplemented,
                        "the floor server applies append_text on message 0 and set_phase",
                    ))
                }
            }
        }
        for op in &req.ops {
            if let Some(op::Op::AppendText(t)) = &op.op {
                e.text.push_str(&t.text);
            }
        }
        e.phase = phase;
        Ok(())
    }

    /// After the commit: the append's DELTA (and, at a final phase, the END)
    /// for each subscriber of the execution, which is now at `revision`.
    pub fn committed(&mut self, id: &str, revision: u64, ops: Vec<Op>, out: &mut Vec<Outgoing>) {
        let Some(e) = self.by_id.get_mut(id) else {
            return;
        };
        let delta = Event {
            r#type: EventType::EventDelta as i32,
            revision,
            prev_revision: e.revision,
            execution_id: id.to_owned(),
            ops,
            ..Default::default()
        };
        e.revision = revision;
        let end = terminal(e.phase);
        for &(peer, sub, _) in e.subscribers.iter().filter(|s| s.2) {
            out.push(Outgoing {
                peer,
                id: sub,
                event: delta.clone(),
            });
            if end {
                out.push(Outgoing {
                    peer,
                    id: sub,
                    event: Event {
                        r#type: EventType::EventEnd as i32,
                        revision,
                        execution_id: id.to_owned(),
                        reason: EndReason::Terminal as i32,
                        ..Default::default()
                    },
                });
            }
        }
        if end {
            e.subscribers.clear();
        }
    }

    /// After the commit of an `update_status`: the status as received, for
    /// each whole-state stream of the execution, now at `revision`.
    pub fn updated(
        &mut self,
        id: &str,
        revision: u64,
        status: Option<AgentExecutionStatus>,
        out: &mut Vec<Outgoing>,
    ) {
        let Some(e) = self.by_id.get_mut(id) else {
            return;
        };
        e.revision = revision;
        let mut whole = e.subscribers.iter().filter(|s| !s.2).peekable();
        if whole.peek().is_none() {
            return;
        }
        let event = Event {
            r#type: EventType::EventUpdate as i32,
            revision,
            execution_id: id.to_owned(),
            execution: Some(AgentExecution {
                status,
                ..Default::default()
            }),
            ..Default::default()
        };
        for &(peer, sub, _) in whole {
            out.push(Outgoing {
                peer,
                id: sub,
                event: event.clone(),
            });
        }
    }

    /// Drops the streams of a connection that went away.
    pub fn forget_peer(&mut self, peer: usize) {
        for e in self.by_id.values_mut() {
            e.subscribers.retain(|(p, _, _)| *p != peer);
        }
    }
}
