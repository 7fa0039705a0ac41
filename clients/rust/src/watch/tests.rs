//! Unit tests of the watch's event handling (no daemon): how each event of
//! a many-execution stream changes the cache, which events are dropped, and
//! the `subscribe` a break resumes with.

use super::*;
use crate::proto::agentexecution::{AgentExecutionSpec, AgentExecutionStatus, ExecutionPhase};
use crate::proto::apiresource::ApiResourceMetadata;
use crate::proto::daemon::op;

fn detached(selector: Selector, options: WatchOptions) -> Watch {
    Watch {
        link: LinkPoll::empty(),
        selector,
        deltas: options.deltas,
        last: options.from_revision,
        following: options.from_revision.is_some(),
        cache: Cache::default(),
        finished: false,
    }
}

fn execution(id: &str, phase: ExecutionPhase) -> AgentExecution {
    AgentExecution {
        metadata: Some(ApiResourceMetadata {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(AgentExecutionSpec {
            agent_id: "a".into(),
            session_id: "s".into(),
            ..Default::default()
        }),
        status: Some(AgentExecutionStatus {
            phase: phase as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn whole(kind: EventType, revision: u64, id: &str, phase: ExecutionPhase) -> wire::Event {
    wire::Event {
        r#type: kind as i32,
        revision,
        execution_id: id.into(),
        execution: Some(execution(id, phase)),
        ..Default::default()
    }
}

fn bookmark(revision: u64, end: bool) -> wire::Event {
    wire::Event {
        r#type: EventType::EventBookmark as i32,
        revision,
        initial_events_end: end,
        ..Default::default()
    }
}

fn delta(revision: u64, prev: u64, id: &str, phase: ExecutionPhase) -> wire::Event {
    wire::Event {
        r#type: EventType::EventDelta as i32,
        revision,
        prev_revision: prev,
        execution_id: id.into(),
        ops: vec![Op {
            op: Some(op::Op::SetPhase(phase as i32)),
        }],
        ..Default::default()
    }
}

fn deleted(revision: u64, id: &str) -> wire::Event {
    wire::Event {
        r#type: EventType::EventDeleted as i32,
        revision,
        execution_id: id.into(),
        ..Default::default()
    }
}

fn yielded(w: &mut Watch, ev: wire::Event) -> Option<WatchEvent> {
    match w.on_event(ev) {
        Step::Yield(e) => Some(e),
        Step::Skip => None,
        Step::Resume => panic!("unexpected resume"),
        Step::End => panic!("unexpected end"),
        Step::Fail(e) => panic!("unexpected failure: {e}"),
    }
}

fn phase_of(w: &Watch, id: &str) -> ExecutionPhase {
    w.cache()
        .get(id)
        .and_then(|e| e.status.as_ref())
        .map(|s| s.phase())
        .unwrap_or(ExecutionPhase::Unspecified)
}

#[test]
fn list_then_changes_keep_the_cache() {
    let mut w = detached(Selector::session("s"), WatchOptions::default());
    use ExecutionPhase::*;
    let first = yielded(
        &mut w,
        whole(EventType::EventSnapshot, 3, "x", ExecutionPending),
    );
    assert_eq!(first.map(|e| e.kind()), Some("snapshot"));
    yielded(
        &mut w,
        whole(EventType::EventSnapshot, 5, "y", ExecutionPending),
    );
    assert!(!w.cache().is_complete());
    // Still listing: a break would start over, whole states.
    assert_eq!(w.request().from_revision, None);
    let end = yielded(&mut w, bookmark(5, true)).expect("end of list");
    assert_eq!(
        end,
        WatchEvent::Bookmark {
            revision: 5,
            initial_events_end: true
        }
    );
    assert!(w.cache().is_complete());
    assert_eq!(w.last_revision(), Some(5));

    let created = yielded(
        &mut w,
        whole(EventType::EventCreated, 6, "z", ExecutionPending),
    );
    assert_eq!(created.as_ref().map(|e| e.kind()), Some("created"));
    assert_eq!(created.as_ref().and_then(|e| e.execution_id()), Some("z"));
    let updated = yielded(&mut w, delta(7, 3, "x", ExecutionInProgress)).expect("delta");
    assert_eq!(updated.kind(), "delta");
    assert_eq!(updated.ops().len(), 1);
    assert_eq!(
        updated
            .execution()
            .map(|e| e.status.clone().unwrap_or_default().phase()),
        Some(ExecutionInProgress)
    );
    assert_eq!(phase_of(&w, "x"), ExecutionInProgress);
    assert_eq!(w.cache().entry("x").map(|c| c.revision), Some(7));

    let gone = yielded(&mut w, deleted(8, "y")).expect("deleted");
    assert_eq!(gone.kind(), "deleted");
    assert_eq!(gone.execution_id(), Some("y"));
    assert!(matches!(
        gone,
        WatchEvent::Deleted {
            last_state: Some(_),
            ..
        }
    ));
    assert!(w.cache().get("y").is_none());
    assert_eq!(w.cache().len(), 2);

    // A quiet-time bookmark moves the resume point.
    assert!(yielded(&mut w, bookmark(9, false)).is_some());
    let resume = w.request();
    assert_eq!(resume.from_revision, Some(9));
    assert!(resume.deltas, "the cache holds every execution");
    assert_eq!(resume.session_id, "s");
    assert!(!resume.all);
}

#[test]
fn revisions_at_or_below_the_last_are_dropped() {
    let mut w = detached(Selector::All, WatchOptions::default());
    use ExecutionPhase::*;
    yielded(
        &mut w,
        whole(EventType::EventSnapshot, 2, "x", ExecutionPending),
    );
    yielded(&mut w, bookmark(4, true));
    assert!(yielded(
        &mut w,
        whole(EventType::EventUpdate, 4, "x", ExecutionFailed)
    )
    .is_none());
    assert!(yielded(&mut w, bookmark(4, false)).is_none());
    assert!(yielded(&mut w, deleted(3, "x")).is_none());
    assert!(yielded(
        &mut w,
        whole(EventType::EventUpdate, 5, "x", ExecutionFailed)
    )
    .is_some());
    assert!(yielded(&mut w, delta(5, 2, "x", ExecutionCompleted)).is_none());
    assert_eq!(phase_of(&w, "x"), ExecutionFailed);
    assert!(w.request().all);
}

#[test]
fn a_delta_that_does_not_follow_the_held_state_fails() {
    let mut w = detached(Selector::All, WatchOptions::default());
    use ExecutionPhase::*;
    yielded(
        &mut w,
        whole(EventType::EventSnapshot, 2, "x", ExecutionPending),
    );
    yielded(&mut w, bookmark(2, true));
    assert!(matches!(
        w.on_event(delta(4, 3, "x", ExecutionInProgress)),
        Step::Fail(Error::Protocol(_))
    ));
    assert!(matches!(
        w.on_event(delta(5, 2, "unknown", ExecutionInProgress)),
        Step::Fail(Error::Protocol(_))
    ));
}

#[test]
fn resync_clears_and_takes_the_new_list() {
    let mut w = detached(Selector::All, WatchOptions::default());
    use ExecutionPhase::*;
    yielded(
        &mut w,
        whole(EventType::EventSnapshot, 2, "x", ExecutionPending),
    );
    yielded(&mut w, bookmark(10, true));
    let resync = wire::Event {
        r#type: EventType::EventResync as i32,
        revision: 10,
        ..Default::default()
    };
    assert_eq!(
        yielded(&mut w, resync),
        Some(WatchEvent::Resync { revision: 10 })
    );
    assert!(w.cache().is_empty() && !w.cache().is_complete());
    // The new list may hold revisions below the resync's: all taken.
    assert!(yielded(
        &mut w,
        whole(EventType::EventSnapshot, 7, "y", ExecutionPending)
    )
    .is_some());
    assert_eq!(w.request().from_revision, None, "a break starts over");
    yielded(&mut w, bookmark(12, true));
    assert_eq!(w.cache().len(), 1);
    assert_eq!(w.request().from_revision, Some(12));
}

#[test]
fn a_watch_from_a_revision_asks_for_whole_states() {
    let w = detached(
        Selector::session("s"),
        WatchOptions {
            from_revision: Some(40),
            deltas: true,
        },
    );
    let request = w.request();
    assert_eq!(request.from_revision, Some(40));
    assert!(
        !request.deltas,
        "the cache holds nothing a delta could apply to"
    );
    let fresh = detached(Selector::session("s"), WatchOptions::default()).request();
    assert!(fresh.deltas && fresh.from_revision.is_none());
}

#[test]
fn end_cancelled_ends_and_unknown_types_are_ignored() {
    let mut w = detached(Selector::All, WatchOptions::default());
    let unknown = wire::Event {
        r#type: 99,
        ..Default::default()
    };
    assert!(matches!(w.on_event(unknown), Step::Skip));
    let end = wire::Event {
        r#type: EventType::EventEnd as i32,
        reason: EndReason::Cancelled as i32,
        ..Default::default()
    };
    assert!(matches!(w.on_event(end), Step::End));
}

#[test]
fn a_list_broken_before_its_end_starts_over_with_a_resync() {
    let mut w = detached(Selector::All, WatchOptions::default());
    assert_eq!(w.on_reopened(), None, "nothing delivered: nothing to drop");
    yielded(
        &mut w,
        whole(
            EventType::EventSnapshot,
            2,
            "x",
            ExecutionPhase::ExecutionPending,
        ),
    );
    assert_eq!(w.on_reopened(), Some(WatchEvent::Resync { revision: 0 }));
    assert!(w.cache().is_empty());
    assert_eq!(w.request().from_revision, None);
    yielded(
        &mut w,
        whole(
            EventType::EventSnapshot,
            2,
            "x",
            ExecutionPhase::ExecutionPending,
        ),
    );
    yielded(&mut w, bookmark(3, true));
    assert_eq!(w.on_reopened(), None, "following: a resume, not a new list");
    assert_eq!(w.request().from_revision, Some(3));
}
