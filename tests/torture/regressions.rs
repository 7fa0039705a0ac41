//! Regressions found by the torture runs, each reduced to the smallest
//! sequence of requests that showed the bug.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common;
use crate::torture_support::*;

/// Found by `watch_guarantees_with_resync_beyond_retention`: a resume from
/// before a delete, once the history before the delete was pruned, answered
/// NOT_FOUND instead of END_REASON_DELETED at the delete's revision (and a
/// stream that had to resync onto a deleted execution ended DELETED at its
/// old revision instead of the delete's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_a_deleted_execution_beyond_retention_ends_deleted() {
    use stigmer_proto::apiresource::ApiResourceId;
    use stigmer_proto::daemon::{request::Command as Cmd, response, Code, EndReason};
    let d = common::Daemon::start(&["--history-retention", "4"]);
    let mut c = d.connect().await;
    let (x, _) = c.create("x").await;
    for n in 0..3 {
        common::expect_execution(c.update(&x, common::ai_status(&format!("{n}"))).await);
    }
    let (y, _) = c.create("y").await;
    let deleted = match c
        .call(Cmd::Delete(ApiResourceId { value: x.clone() }))
        .await
        .result
    {
        Some(response::Result::Deleted(d)) => d.revision,
        other => panic!("{other:?}"),
    };
    // One more write prunes x's creation but keeps its delete.
    common::expect_execution(c.update(&y, common::ai_status("y")).await);
    let s = c.subscribe(&x, Some(0)).await;
    let end = c.event(s).await;
    assert_eq!(
        (end.r#type, end.reason, end.revision),
        (END, EndReason::Deleted as i32, deleted)
    );
    // Once the delete itself is pruned the daemon has no trace of x.
    for n in 0..10 {
        common::expect_execution(c.update(&y, common::ai_status(&format!("{n}"))).await);
    }
    let s = c.subscribe(&x, Some(0)).await;
    common::expect_error(&c.recv(s).await, Code::NotFound);
}

/// Found by `watch_guarantees_with_resync_beyond_retention`: a stream from
/// revision R whose history read found nothing after R, racing with the
/// commit of the execution's terminal update (or of an update and a
/// delete), re-read the current state, saw it terminal (or gone) and ended
/// with END_REASON_TERMINAL without the terminal update (or NOT_FOUND /
/// END_REASON_DELETED without the update before the delete). Each
/// iteration races a resume against those commits; the stream must deliver
/// every change after R, then END.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_racing_with_the_final_commits_delivers_them_before_end() {
    use stigmer_proto::agentexecution::ExecutionPhase;
    use stigmer_proto::apiresource::ApiResourceId;
    use stigmer_proto::daemon::{request::Command as Cmd, response, EndReason, SubscribeRequest};
    let d = common::Daemon::start(&[]);
    let mut writer = d.connect().await;
    let mut reader = d.connect().await;
    for n in 0..150u64 {
        let (id, created) = writer.create("race").await;
        let delete = n % 2 == 1;
        // Both sides are sent before either reply is read.
        let sub = reader.next_id();
        reader
            .send(
                sub,
                Cmd::Subscribe(SubscribeRequest {
                    execution_id: id.clone(),
                    from_revision: Some(created),
                    ..Default::default()
                }),
            )
            .await;
        let u = writer.next_id();
        let last = if delete {
            writer
                .send(
                    u,
                    Cmd::UpdateStatus(
                        stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput {
                            execution_id: id.clone(),
                            status: Some(common::ai_status("last words")),
                        },
                    ),
                )
                .await;
            let del = writer.next_id();
            writer
                .send(del, Cmd::Delete(ApiResourceId { value: id.clone() }))
                .await;
            common::expect_execution(writer.recv(u).await);
            match writer.recv(del).await.result {
                Some(response::Result::Deleted(d)) => d.revision,
                other => panic!("{other:?}"),
            }
        } else {
            writer
                .send(
                    u,
                    Cmd::UpdateStatus(
                        stigmer_proto::agentexecution::AgentExecutionUpdateStatusInput {
                            execution_id: id.clone(),
                            status: Some(common::phase(ExecutionPhase::ExecutionCompleted)),
                        },
                    ),
                )
                .await;
            common::expect_execution(writer.recv(u).await).1
        };
        let events = reader.events_until_end(sub).await;
        let end = events.last().expect("END");
        if delete {
            assert_eq!(events.len(), 2, "iteration {n}: {events:?}");
            assert_eq!(events[0].r#type, UPDATE, "iteration {n}: {events:?}");
            assert_eq!(
                (end.reason, end.revision),
                (EndReason::Deleted as i32, last)
            );
        } else {
            assert_eq!(events.len(), 2, "iteration {n}: {events:?}");
            assert_eq!(events[0].revision, last, "iteration {n}: {events:?}");
            assert_eq!(
                (end.reason, end.revision),
                (EndReason::Terminal as i32, last)
            );
        }
    }
}

/// Found by `watch_guarantees_with_resync_beyond_retention` (seed
/// 1796522701380580945): a delta stream resumed from revision R without
/// `skip_initial_state`, where the state at R can no longer be rebuilt
/// (the base it was built on was pruned after a newer base replaced it)
/// but R is still above the compaction floor, got no initial state and
/// no RESYNC: its first event was a DELTA on R, which the client, holding
/// nothing, cannot apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_resume_whose_base_was_pruned_starts_with_a_whole_state() {
    use stigmer_proto::daemon::{request::Command as Cmd, SubscribeRequest};
    // Pruning starts once 9 revisions are past the floor: revision 9
    // prunes revision 1.
    let d = common::Daemon::start(&["--history-retention", "8"]);
    let mut c = d.connect().await;
    // Revision 1: x is created (its first base).
    let (x, _) = c.create("x").await;
    // Revisions 2-6: appends, stored as deltas on that base.
    let mut offset = 0;
    let mut r = 0;
    for n in 0..5 {
        let text = format!("t{n} ");
        r = common::watch::append_text(&mut c, &x, offset, &text).await;
        offset += text.len() as u64;
    }
    // Revision 7: a whole status that replaces the message: a new base,
    // which releases the old chain (revisions 1-6) to pruning.
    common::expect_execution(c.update(&x, common::ai_status("replaced")).await);
    // Revisions 8-9 on another execution: the floor passes revision 1
    // (x's old base) but not R = 6.
    let (y, _) = c.create("y").await;
    common::expect_execution(c.update(&y, common::ai_status("y")).await);
    // A delta stream from R, asking for the state at R.
    let s = c.next_id();
    c.send(
        s,
        Cmd::Subscribe(SubscribeRequest {
            execution_id: x.clone(),
            from_revision: Some(r),
            deltas: true,
            skip_initial_state: false,
            ..Default::default()
        }),
    )
    .await;
    let first = c.event(s).await;
    assert!(
        [SNAPSHOT, UPDATE, RESYNC].contains(&first.r#type),
        "a delta stream from {r} without skip_initial_state must start with a whole state \
         (the state at {r}, or a RESYNC if it cannot be rebuilt); got {first:?}"
    );
}

/// Found by a long run of `watch_guarantees_with_resync_beyond_retention`
/// (30,000 writes, 8 writers, 36 subscribers, 16 executions, seed
/// 1796523275933464956): an appender's `get` answered INTERNAL "a history
/// row between its base and its head is missing". `reader::get` reads the
/// execution's row and then the chain of history rows in separate
/// statements, outside a transaction: a write committed between them that
/// gives the execution a new base deletes the old chain's rows below the
/// compaction floor, which the read then misses. Here a writer keeps
/// building chains (appends) and replacing them (a whole status: a new
/// base), with a history of 4 revisions so that every chain is below the
/// floor, while a reader gets the execution as fast as it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_racing_with_a_new_base_never_misses_the_chain() {
    use stigmer_proto::agentexecution::AgentExecutionId;
    use stigmer_proto::daemon::{request::Command as Cmd, response};
    let d = common::Daemon::start(&["--history-retention", "4"]);
    let mut w = d.connect().await;
    let (x, _) = w.create("x").await;
    let socket = d.socket.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let x = x.clone();
        tokio::spawn(async move {
            let mut r = common::Raw::connect(&socket).await;
            let mut gets = 0u64;
            while !stop.load(Ordering::Acquire) {
                let resp = r
                    .call(Cmd::Get(AgentExecutionId { value: x.clone() }))
                    .await;
                gets += 1;
                if let Some(response::Result::Error(e)) = resp.result {
                    return Err(format!("get {gets} answered {e:?}"));
                }
            }
            Ok(gets)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut rounds = 0;
    while Instant::now() < deadline && !reader.is_finished() {
        rounds += 1;
        // A chain: a base (the whole status), then appends on it.
        let text = format!("round {rounds} ");
        common::expect_execution(w.update(&x, common::ai_status(&text)).await);
        let mut offset = text.len() as u64;
        for n in 0..8 {
            let t = format!("t{n} ");
            let resp = w.call(common::watch::append_cmd(&x, offset, &t)).await;
            assert!(
                matches!(resp.result, Some(response::Result::Execution(_))),
                "{resp:?}"
            );
            offset += t.len() as u64;
        }
    }
    stop.store(true, Ordering::Release);
    let gets = reader.await.expect("reader");
    assert!(gets.is_ok(), "after {rounds} rounds: {}", gets.unwrap_err());
}
