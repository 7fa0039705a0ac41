//! The writers: whole statuses and appends to random live executions,
//! shared with the other writers, or now and then to one of their own (the
//! appending side is `appender.rs`), every acknowledgement recorded; the
//! ender, which ends executions mid-stream; and `finish_all`, which ends
//! the rest so that every stream ends.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use stigmer_proto::agentexecution::ExecutionPhase;
use stigmer_proto::apiresource::ApiResourceId;
use stigmer_proto::daemon::{op, request::Command as Cmd, response, AppendRequest, Code, Op};

use super::appender::Appender;
use super::commands::{message_status, new_execution, new_id, phase_status, update_cmd};
use super::record::session_name;
use super::rng::Rng;
use super::shared::Shared;
use super::state::{Entry, State};
use super::wire::{Closed, Wire};

/// A write's fate.
pub enum Wrote {
    Acked,
    /// Refused: the execution is over (terminal or deleted).
    Over,
    /// The connection broke: unknown whether it committed.
    Lost,
    /// An append refused with ABORTED (a stale offset or revision).
    Aborted,
}

/// What a writer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterKind {
    /// Whole statuses, upstream's way (the daemon diffs them into deltas).
    Whole,
    /// Appends: text tokens, sometimes with a todo, a tool call, its result
    /// or the phase, sometimes compare-and-set.
    Appender,
    /// Either, at random.
    Mixed,
}

impl WriterKind {
    pub fn of(w: usize) -> WriterKind {
        [WriterKind::Whole, WriterKind::Appender, WriterKind::Mixed][w % 3]
    }
}

/// The operations an append ends its execution with, if any.
fn ends(ops: &[Op]) -> bool {
    ops.iter().any(
        |o| matches!(o.op, Some(op::Op::SetPhase(p)) if stigmer_proto::delta::is_terminal_phase(p)),
    )
}

/// Sends one write and records its acknowledgement.
async fn write(shared: &Shared, wire: &mut Wire, last: &mut u64, id: &str, cmd: Cmd) -> Wrote {
    let is_delete = matches!(cmd, Cmd::Delete(_));
    let appended = match &cmd {
        Cmd::Append(a) => Some(Entry::Appended {
            terminal: ends(&a.ops),
        }),
        _ => None,
    };
    let replaces = matches!(&cmd, Cmd::UpdateStatus(u)
        if u.status.as_ref().is_some_and(|s| !s.messages.is_empty()));
    let resp = match wire.call(cmd).await {
        Ok(resp) => resp,
        Err(Closed) => {
            shared.lost_replies.fetch_add(1, Ordering::Relaxed);
            return Wrote::Lost;
        }
    };
    let (revision, entry) = match resp.result {
        Some(response::Result::Execution(reply)) => match (reply.execution, appended) {
            (Some(e), None) => (reply.revision, Entry::State(State::of(&e))),
            (None, Some(entry)) => (reply.revision, entry),
            (e, _) => panic!("unexpected reply to a write on {id}: {e:?}"),
        },
        Some(response::Result::Deleted(d)) if is_delete => (d.revision, Entry::Deleted),
        Some(response::Result::Error(e))
            if e.code == Code::FailedPrecondition as i32 || e.code == Code::NotFound as i32 =>
        {
            return Wrote::Over
        }
        Some(response::Result::Error(e)) if e.code == Code::Unavailable as i32 => {
            shared.unavailable.fetch_add(1, Ordering::Relaxed);
            return Wrote::Lost;
        }
        other => panic!("unexpected reply to a write on {id}: {other:?}"),
    };
    if revision <= *last {
        let msg = format!("a writer's revision went from {last} to {revision}");
        shared.record().writer_order.push(msg);
    }
    *last = revision;
    if replaces {
        let mut r = shared.record();
        r.replaced.entry(id.to_string()).or_default().push(revision);
    }
    shared.ack(wire.daemon, id, revision, entry);
    Wrote::Acked
}

/// Creates an execution in a random session (client-chosen id, so a lost
/// reply is still known); `private`: one only its creator writes.
async fn create(
    shared: &Shared,
    wire: &mut Wire,
    last: &mut u64,
    agent: &str,
    rng: &mut Rng,
    private: bool,
) -> (Wrote, String) {
    let id = new_id();
    let session = session_name(rng.below(shared.sessions as u64) as usize);
    {
        let mut r = shared.record();
        r.unconfirmed.push(id.clone());
        r.sessions.insert(id.clone(), session.clone());
    }
    let wrote = write(
        shared,
        wire,
        last,
        &id,
        Cmd::Create(new_execution(&id, agent, &session)),
    )
    .await;
    if let Wrote::Acked = wrote {
        // Only now may subscribers pick it (before, NOT_FOUND is right).
        let mut r = shared.record();
        r.ids.push(id.clone());
        r.live.push(id.clone());
        if private {
            r.private.insert(id.clone());
        }
    }
    (wrote, id)
}

/// A random live execution; `shared_only`: not one of a writer's own.
fn pick_live(shared: &Shared, rng: &mut Rng, shared_only: bool) -> Option<String> {
    let r = shared.record();
    let pool: Vec<&String> = r
        .live
        .iter()
        .filter(|id| !shared_only || !r.private.contains(*id))
        .collect();
    if pool.is_empty() {
        return None;
    }
    Some(pool[rng.below(pool.len() as u64) as usize].clone())
}

fn retire(shared: &Shared, id: &str) {
    shared.record().live.retain(|l| l != id);
}

/// A writer's connection: reconnects after a crash.
pub(super) struct Conn {
    pub(super) wire: Wire,
    generation: u64,
    /// The last revision acknowledged on this connection.
    pub(super) last: u64,
}

impl Conn {
    async fn open(shared: &Shared) -> Conn {
        let (wire, generation) = shared.connect().await;
        Conn {
            wire,
            generation,
            last: 0,
        }
    }

    /// After a broken connection or UNAVAILABLE: connects again, once the
    /// daemon is back (or at once to another one).
    pub(super) async fn reconnect(&mut self, shared: &Shared) {
        shared.lost(self.generation).await;
        *self = Conn::open(shared).await;
    }

    /// With several daemons, one time in fifty: a new connection, to the
    /// next daemon in turn, so that writers spread over the daemons again
    /// after a crash moved them, and a writer's next write lands on a
    /// daemon whose replica may not have its last one yet.
    async fn move_now_and_then(&mut self, shared: &Shared, rng: &mut Rng) {
        if shared.sockets.len() > 1 && rng.percent(2) {
            *self = Conn::open(shared).await;
        }
    }
}

/// A writer: writes of random sizes to random live executions (whole
/// statuses, appends or both, by its kind) until told to stop; a quarter
/// of them to an execution of its own, which no other writer writes (so
/// in the cluster runs, written through one daemon at a time); reconnects
/// after a crash.
pub async fn writer(shared: Arc<Shared>, w: usize, mut rng: Rng) {
    let kind = WriterKind::of(w);
    let mut conn = Conn::open(&shared).await;
    let mut appender = Appender {
        w,
        n: 0,
        cursors: HashMap::new(),
        run: None,
    };
    let mut n = 0u64;
    let mut own: Option<String> = None;
    while !shared.stop_writing.load(Ordering::Acquire) {
        conn.move_now_and_then(&shared, &mut rng).await;
        let private = rng.percent(25);
        let picked = if private {
            own.clone().filter(|id| shared.record().live.contains(id))
        } else {
            pick_live(&shared, &mut rng, true)
        };
        let Some(id) = picked else {
            // Its own execution is over (or not made yet); or the ender
            // has not made any live yet: create one.
            let (wrote, id) = create(
                &shared,
                &mut conn.wire,
                &mut conn.last,
                "writer",
                &mut rng,
                private,
            )
            .await;
            match wrote {
                Wrote::Lost => conn.reconnect(&shared).await,
                Wrote::Acked if private => own = Some(id),
                _ => {}
            }
            continue;
        };
        let append = match kind {
            WriterKind::Whole => false,
            WriterKind::Appender => true,
            WriterKind::Mixed => rng.percent(50),
        };
        // A runner streams a run of tokens into one (shared) execution.
        let id = if !append || private {
            id
        } else {
            match appender.run.take() {
                Some((run_id, left)) if left > 0 && shared.record().live.contains(&run_id) => {
                    appender.run = Some((run_id.clone(), left - 1));
                    run_id
                }
                _ => {
                    appender.run = Some((id.clone(), rng.below(12)));
                    id
                }
            }
        };
        let wrote = if append {
            // After an ABORTED (a stale offset), again from where the
            // execution is now (a few times).
            let mut wrote = Wrote::Aborted;
            for _ in 0..3 {
                wrote = appender.append(&shared, &mut conn, &id, &mut rng).await;
                if !matches!(wrote, Wrote::Aborted) {
                    break;
                }
            }
            wrote
        } else {
            n += 1;
            let pad = match rng.below(10) {
                0 => 4000,
                1..=3 => 400,
                _ => 10,
            };
            let text = format!("w{w} n{n} {}", "x".repeat(rng.below(pad) as usize));
            let cmd = update_cmd(&id, message_status(text));
            write(&shared, &mut conn.wire, &mut conn.last, &id, cmd).await
        };
        match wrote {
            Wrote::Acked | Wrote::Aborted => {}
            Wrote::Over => retire(&shared, &id),
            Wrote::Lost => conn.reconnect(&shared).await,
        }
    }
}

/// The ender: keeps `executions` live, and every so many acknowledged
/// writes ends one of them mid-stream: completed or cancelled (by a whole
/// status), completed or failed (by an append), or deleted.
pub async fn ender(shared: Arc<Shared>, executions: usize, every: u64, mut rng: Rng) {
    let mut conn = Conn::open(&shared).await;
    let mut acked = shared.acked.subscribe();
    loop {
        // Top up the live set.
        while shared.record().live.len() < executions {
            let (wrote, _) = create(
                &shared,
                &mut conn.wire,
                &mut conn.last,
                "ender",
                &mut rng,
                false,
            )
            .await;
            if let Wrote::Lost = wrote {
                conn.reconnect(&shared).await;
            }
        }
        conn.move_now_and_then(&shared, &mut rng).await;
        let target = *acked.borrow() + 1 + rng.below(every * 2);
        let _ = acked
            .wait_for(|n| *n >= target || shared.stop_writing.load(Ordering::Acquire))
            .await;
        if shared.stop_writing.load(Ordering::Acquire) {
            return;
        }
        let Some(id) = pick_live(&shared, &mut rng, false) else {
            continue;
        };
        retire(&shared, &id);
        let phase = |p: ExecutionPhase| Op {
            op: Some(op::Op::SetPhase(p as i32)),
        };
        let cmd = match rng.below(5) {
            0 => update_cmd(&id, phase_status(ExecutionPhase::ExecutionCompleted)),
            1 => update_cmd(&id, phase_status(ExecutionPhase::ExecutionCancelled)),
            2 => Cmd::Append(AppendRequest {
                execution_id: id.clone(),
                expected_revision: None,
                ops: vec![phase(ExecutionPhase::ExecutionCompleted)],
            }),
            3 => Cmd::Append(AppendRequest {
                execution_id: id.clone(),
                expected_revision: None,
                ops: vec![
                    Op {
                        op: Some(op::Op::SetError("gave up".into())),
                    },
                    phase(ExecutionPhase::ExecutionFailed),
                ],
            }),
            _ => Cmd::Delete(ApiResourceId { value: id.clone() }),
        };
        if let Wrote::Lost = write(&shared, &mut conn.wire, &mut conn.last, &id, cmd).await {
            conn.reconnect(&shared).await;
        }
    }
}

/// Ends every execution still live (COMPLETED), so that every stream ends.
pub async fn finish_all(shared: &Shared) {
    let (mut wire, _) = shared.connect().await;
    let mut last = 0;
    let ids: Vec<String> = std::mem::take(&mut shared.record().live);
    for id in ids {
        let cmd = update_cmd(&id, phase_status(ExecutionPhase::ExecutionCompleted));
        match write(shared, &mut wire, &mut last, &id, cmd).await {
            Wrote::Acked | Wrote::Over => {}
            Wrote::Lost | Wrote::Aborted => panic!("the daemon went away while finishing {id}"),
        }
    }
}
