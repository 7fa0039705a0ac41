//! Streams stalled on purpose until they overflow: each kind of stream must
//! catch up from history (or RESYNC past a short one) and lose nothing.

use crate::common;
use crate::torture_support::*;
use crate::ALL_HISTORY;

/// Lossless under back-pressure, for both kinds of stream, made certain:
/// the random stalls of the scenarios (`scenarios.rs`) overflow a queue only now and
/// then (a Unix socket buffers a few hundred small frames), so here each
/// kind of stream is stalled in turn while its execution takes a burst of
/// appends and whole statuses, and must overflow (the daemon's counter
/// says so), catch up from history and deliver every change; with a short
/// history, RESYNC where the history no longer reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_of_both_kinds_overflow_and_catch_up() {
    for (retention, allow_resync) in [(ALL_HISTORY, false), ("32", true)] {
        let d = common::Daemon::start(&[
            "--history-retention",
            retention,
            "--subscriber-queue",
            "2",
            "--connection-queue",
            "4",
        ]);
        // (deltas, from the create's revision, skip_initial_state)
        for (deltas, from, skip) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (true, true, true),
        ] {
            let what = format!(
                "retention {retention}, deltas {deltas}, from_revision {from}, skip {skip}"
            );
            let v = stall_once(&d.socket, deltas, from, skip, allow_resync).await;
            assert!(v.is_ok(), "{what}: {}", v.err().unwrap_or_default());
        }
    }
}

/// One stalled stream on a fresh execution; Err describes what broke.
async fn stall_once(
    socket: &std::path::Path,
    deltas: bool,
    from: bool,
    skip: bool,
    allow_resync: bool,
) -> Result<(), String> {
    use stigmer_proto::agentexecution::{AgentExecutionId, ExecutionPhase};
    use stigmer_proto::daemon::{
        request::Command as Cmd, response, AppendRequest, StatusRequest, SubscribeRequest,
    };
    let mut w = Wire::connect(socket).await.expect("connect");
    let overflows = |resp: stigmer_proto::daemon::Response| match resp.result {
        Some(response::Result::Status(s)) => s.subscriber_overflows,
        other => panic!("status answered {other:?}"),
    };
    let status = Cmd::Status(StatusRequest { prometheus: false });
    let before = overflows(w.call(status.clone()).await.expect("status"));
    // The committed history, exactly: one writer, whose every write is
    // followed by a get (append replies carry no state).
    let id = new_id();
    let mut h: Vec<(u64, Entry)> = Vec::new();
    let (created, created_rev) = match w
        .call(Cmd::Create(new_execution(&id, "stall", "")))
        .await
        .expect("create")
        .result
    {
        Some(response::Result::Execution(r)) => (r.execution.expect("execution"), r.revision),
        other => panic!("create answered {other:?}"),
    };
    h.push((created_rev, Entry::State(State::of(&created))));
    let mut r = Wire::connect(socket).await.expect("connect");
    let sub = r.id();
    r.send(
        sub,
        Cmd::Subscribe(SubscribeRequest {
            execution_id: id.clone(),
            from_revision: from.then_some(created_rev),
            deltas,
            skip_initial_state: skip,
            ..Default::default()
        }),
    )
    .await
    .expect("subscribe");
    // The subscriber reads nothing while 400 changes are committed.
    let mut offset = 0u64;
    let mut rng = Rng::new(created_rev);
    for n in 0..400 {
        let cmd = if n % 40 == 39 {
            let text = format!("whole {n}");
            offset = text.len() as u64;
            update_cmd(&id, message_status(text))
        } else {
            let text = format!("<a0.{n}:{}>", "é".repeat(rng.below(8) as usize));
            let op = text_op(0, offset, &text, 0);
            offset += text.len() as u64;
            Cmd::Append(AppendRequest {
                execution_id: id.clone(),
                expected_revision: None,
                ops: vec![op],
            })
        };
        let revision = match w.call(cmd).await.expect("write").result {
            Some(response::Result::Execution(r)) => r.revision,
            other => panic!("write {n} answered {other:?}"),
        };
        let state = match w
            .call(Cmd::Get(AgentExecutionId { value: id.clone() }))
            .await
            .expect("get")
            .result
        {
            Some(response::Result::Execution(r)) if r.revision == revision => {
                r.execution.expect("execution")
            }
            other => panic!("get after write {n} answered {other:?}"),
        };
        h.push((revision, Entry::State(State::of(&state))));
    }
    let last = match w
        .call(update_cmd(
            &id,
            phase_status(ExecutionPhase::ExecutionCompleted),
        ))
        .await
        .expect("complete")
        .result
    {
        Some(response::Result::Execution(r)) => {
            (r.revision, State::of(&r.execution.expect("execution")))
        }
        other => panic!("complete answered {other:?}"),
    };
    h.push((last.0, Entry::State(last.1)));
    // Now the stream, to its END.
    let mut seg = Segment {
        execution: id.clone(),
        from: from.then_some(created_rev),
        events: Vec::new(),
        outcome: Outcome::Open,
        cancelled: false,
        resumed: false,
        deltas,
        skip,
        base: skip.then_some(created_rev),
    };
    let mut held = skip.then(|| (created.clone(), created_rev));
    loop {
        let resp = tokio::time::timeout(STUCK, r.recv())
            .await
            .map_err(|_| "the stream went silent".to_string())?
            .map_err(|_| "the stream's connection closed".to_string())?;
        match resp.result {
            Some(response::Result::Event(e)) => {
                seg.events.push(receive(&e, &mut held, &[]));
                if e.r#type == END {
                    seg.outcome = Outcome::Ended;
                    break;
                }
            }
            other => return Err(format!("the stream answered {other:?}")),
        }
    }
    let mut cursor = seg.from;
    check_segment(&h, &seg, &mut cursor, allow_resync).map_err(|v| v.to_string())?;
    let after = overflows(w.call(status).await.expect("status"));
    if after <= before {
        return Err(format!(
            "the stalled stream never overflowed its queue ({before} overflows before, {after} after)"
        ));
    }
    let resyncs = seg.events.iter().filter(|e| e.kind == RESYNC).count();
    let delivered = seg.events.iter().filter(|e| e.kind != END).count();
    if allow_resync && resyncs == 0 {
        return Err(format!(
            "400 changes past a 32-revision history, yet no RESYNC ({delivered} events)"
        ));
    }
    Ok(())
}
