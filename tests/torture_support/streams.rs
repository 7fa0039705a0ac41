//! The stream check: each subscriber's segments held against the committed
//! history: in order, no gap, no duplicate, the committed states, a resume
//! exactly after its last revision, END for the right reason at the right
//! revision; delta streams by the same rules on the states they rebuild,
//! each DELTA applying to the stream's previous state.

use stigmer_proto::daemon::{Code, EndReason};

use super::history::History;
use super::record::{Ev, Outcome, Segment, SubLog, DELTA, END, RESYNC, SNAPSHOT, UPDATE};
use super::report::{Checked, Violation};
use super::state::Entry;

/// Checks every subscriber's segments against `history`.
pub fn check_subscribers(
    logs: &[SubLog],
    history: &History,
    allow_resync: bool,
    counts: &mut Checked,
) -> Vec<Violation> {
    let empty = Vec::new();
    let mut out = Vec::new();
    for log in logs {
        let mut cursor: Option<u64> = None;
        for (i, seg) in log.segments.iter().enumerate() {
            let h = history.get(&seg.execution).unwrap_or(&empty);
            if !seg.resumed {
                cursor = seg.from;
            } else if seg.from != cursor {
                out.push(Violation {
                    what: format!(
                        "subscriber {} resumed from {:?} instead of its last revision {cursor:?}",
                        log.subscriber, seg.from
                    ),
                    trace: vec![],
                });
            }
            counts.segments += 1;
            counts.events += seg.events.len() as u64;
            counts.resumed += seg.resumed as u64;
            counts.resyncs += seg.events.iter().filter(|e| e.kind == RESYNC).count() as u64;
            counts.ends += seg.events.iter().filter(|e| e.kind == END).count() as u64;
            if seg.deltas {
                counts.delta_segments += 1;
                counts.deltas += seg.events.iter().filter(|e| e.kind == DELTA).count() as u64;
                counts.skipped += seg.skip as u64;
                counts.initial_states += (seg.from.is_some()
                    && seg.events.first().is_some_and(|e| e.kind == SNAPSHOT))
                    as u64;
            }
            if let Err(mut v) = check_segment(h, seg, &mut cursor, allow_resync) {
                v.trace.insert(
                    0,
                    format!(
                        "subscriber {} ({:?}), segment {i}: subscribe {} from {:?}{}{}",
                        log.subscriber,
                        log.mode,
                        seg.execution,
                        seg.from,
                        match (seg.deltas, seg.skip) {
                            (false, _) => String::new(),
                            (true, false) => ", deltas".into(),
                            (true, true) => format!(
                                ", deltas, skip_initial_state (holding revision {:?})",
                                seg.base
                            ),
                        },
                        if seg.resumed { " (a resume)" } else { "" }
                    ),
                );
                out.push(v);
                // Later segments of this subscriber build on a broken one.
                break;
            }
        }
    }
    out
}

/// The start of a violation's trace: the events received up to the one
/// at `upto`, `before` of those before it at most (a watcher's too).
pub(super) fn received<E>(
    events: &[E],
    upto: usize,
    before: usize,
    describe: impl Fn(&E) -> String,
) -> Vec<String> {
    let mut trace = Vec::new();
    let first = upto.saturating_sub(before);
    if first > 0 {
        trace.push(format!("  ... {first} earlier events"));
    }
    if events.is_empty() {
        trace.push("  received  nothing".into());
    } else {
        for e in &events[first..=upto.min(events.len() - 1)] {
            trace.push(format!("  received  {}", describe(e)));
        }
    }
    trace
}

/// Checks one segment; `cursor` is the last revision delivered before it
/// (None: nothing yet) and becomes the last delivered by it.
///
/// A delta segment is checked as the stream of states it describes (the
/// subscriber rebuilt each DELTA's state), under the same rules as a
/// whole-state one, and also: each DELTA applies to the revision of the
/// stream's previous state (`prev_revision`), which is the execution's
/// previous change; its operations applied cleanly; only a create comes
/// whole (UPDATE); a resume without `skip_initial_state` starts with the
/// state at its `from_revision` (a SNAPSHOT at the execution's last change
/// at or before it), one with it starts with the next change.
pub fn check_segment(
    h: &[(u64, Entry)],
    seg: &Segment,
    cursor: &mut Option<u64>,
    allow_resync: bool,
) -> Result<(), Violation> {
    let fail = |what: String, seg: &Segment, upto: usize, cursor: Option<u64>| -> Violation {
        let mut trace = received(&seg.events, upto, 2, Ev::describe);
        let lo = cursor.unwrap_or(0);
        let hi = seg.events.get(upto).map(|e| e.revision).unwrap_or(u64::MAX);
        let window: Vec<&(u64, Entry)> = h
            .iter()
            .filter(|(r, _)| *r > lo.saturating_sub(1) && (*r <= hi || hi < lo))
            .collect();
        trace.push(format!(
            "committed history of {} after revision {lo} ({} changes in all, last {:?}):",
            seg.execution,
            h.len(),
            h.last().map(|(r, e)| format!("rev {r} {}", e.describe()))
        ));
        let shown = window.len().min(6);
        for (r, e) in &window[..shown] {
            trace.push(format!("  committed rev {r} {}", e.describe()));
        }
        if window.len() > shown {
            trace.push(format!("  ... and {} more", window.len() - shown));
        }
        if window.is_empty() {
            trace.push("  (none)".into());
        }
        Violation { what, trace }
    };
    let state_at = |rev: u64| h.iter().find(|(r, _)| *r == rev).map(|(_, e)| e);
    let next_after = |c: Option<u64>| h.iter().find(|(r, _)| c.is_none_or(|c| *r > c));
    let before = |rev: u64| h.iter().rev().find(|(r, _)| *r < rev).map(|(r, _)| *r);
    let at_or_before = |rev: u64| h.iter().rev().find(|(r, _)| *r <= rev);
    let deleted_at = h
        .iter()
        .find(|(_, e)| *e == Entry::Deleted)
        .map(|(r, _)| *r);
    let mut terminal_delivered = false;
    let mut delivered_any = false;
    // The revision of the state a delta stream holds (a DELTA applies to it).
    let mut held = if seg.skip { seg.base } else { None };
    // A delta stream resumed without skip_initial_state starts with the
    // state at its from_revision, if the execution had one then (with
    // pruned history the daemon may not be able to rebuild it: a RESYNC).
    if let (true, false, Some(from), Some(first)) =
        (seg.deltas, seg.skip, seg.from, seg.events.first())
    {
        let had_state = at_or_before(from).is_some_and(|(_, e)| *e != Entry::Deleted);
        if had_state && first.kind != SNAPSHOT && !allow_resync {
            return Err(fail(
                format!(
                    "a delta stream from revision {from} without skip_initial_state did not start with the state at {from}"
                ),
                seg,
                0,
                *cursor,
            ));
        }
    }
    for (i, ev) in seg.events.iter().enumerate() {
        let c = *cursor;
        if let Some(problem) = &ev.problem {
            return Err(fail(problem.clone(), seg, i, c));
        }
        if terminal_delivered && ev.kind != END {
            return Err(fail(
                "an event after the terminal state (the stream should have ended)".into(),
                seg,
                i,
                c,
            ));
        }
        match ev.kind {
            SNAPSHOT | UPDATE | RESYNC | DELTA => {
                // The whole state at from_revision a resumed delta stream
                // starts with (not after its from_revision).
                let initial = ev.kind == SNAPSHOT && i == 0 && seg.deltas && !seg.skip;
                let initial = initial.then_some(seg.from).flatten();
                if ev.kind == SNAPSHOT && initial.is_none() && (i != 0 || seg.from.is_some()) {
                    return Err(fail(
                        "a SNAPSHOT that is not the first event of a stream without from_revision \
                         (nor the initial state of a delta stream resumed without skip_initial_state)"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                if ev.kind == DELTA && !seg.deltas {
                    return Err(fail(
                        "a DELTA on a stream that did not ask for deltas".into(),
                        seg,
                        i,
                        c,
                    ));
                }
                if let Some(from) = initial {
                    let want = at_or_before(from).map(|(r, _)| *r);
                    if want != Some(ev.revision) {
                        return Err(fail(
                            format!(
                                "the initial state of a delta stream from revision {from} is at {}, but the execution's last change at or before {from} is {want:?}",
                                ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                } else if let Some(c) = c {
                    if ev.revision <= c {
                        return Err(fail(
                            format!(
                                "revision {} is not after {c} (out of order or duplicate)",
                                ev.revision
                            ),
                            seg,
                            i,
                            Some(c),
                        ));
                    }
                }
                let Some(got) = &ev.state else {
                    return Err(fail("a state event without a state".into(), seg, i, c));
                };
                match state_at(ev.revision) {
                    Some(Entry::State(want)) if want == got => {}
                    // An append whose state no whole-state stream carried
                    // and no replay shows: nothing to compare with.
                    Some(Entry::Appended { terminal }) if *terminal == got.terminal => {}
                    Some(Entry::State(_)) | Some(Entry::Appended { .. }) => {
                        return Err(fail(
                            format!(
                                "the state at revision {} is not the committed one{}",
                                ev.revision,
                                if ev.kind == DELTA {
                                    " (as rebuilt from the DELTA)"
                                } else {
                                    ""
                                }
                            ),
                            seg,
                            i,
                            c,
                        ))
                    }
                    _ => {
                        return Err(fail(
                            format!(
                                "revision {} is not a committed change of this execution",
                                ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ))
                    }
                }
                if (ev.kind == UPDATE || ev.kind == DELTA)
                    && (c.is_some() || seg.from.is_some())
                    && initial.is_none()
                {
                    let want = next_after(c).map(|(r, _)| *r);
                    if want != Some(ev.revision) {
                        return Err(fail(
                            format!(
                                "gap: expected revision {want:?} next, received {}",
                                ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                }
                if ev.kind == DELTA {
                    if held != Some(ev.prev_revision) {
                        return Err(fail(
                            format!(
                                "a DELTA applying to revision {}, but the stream's last state is at {held:?}",
                                ev.prev_revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                    let committed = before(ev.revision);
                    if committed != Some(ev.prev_revision) {
                        return Err(fail(
                            format!(
                                "a DELTA applying to revision {}, but the execution's change before {} is {committed:?}",
                                ev.prev_revision, ev.revision
                            ),
                            seg,
                            i,
                            c,
                        ));
                    }
                }
                if ev.kind == UPDATE
                    && seg.deltas
                    && h.first().is_some_and(|(r, _)| *r != ev.revision)
                {
                    return Err(fail(
                        "a whole state (UPDATE) on a delta stream for a change made by operations"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                if ev.kind == RESYNC && !allow_resync {
                    return Err(fail(
                        "RESYNC although the history reaches back (retention larger than the run)"
                            .into(),
                        seg,
                        i,
                        c,
                    ));
                }
                *cursor = Some(ev.revision).max(initial);
                held = Some(ev.revision);
                delivered_any = true;
                terminal_delivered = got.terminal;
            }
            END => {
                if i + 1 != seg.events.len() {
                    return Err(fail("events after END".into(), seg, i + 1, c));
                }
                let reason = EndReason::try_from(ev.reason).unwrap_or(EndReason::Unspecified);
                match reason {
                    EndReason::Terminal => {
                        // The terminal state was delivered in this stream,
                        // or (a resume) at or before the cursor.
                        let last = h.last();
                        let ok = terminal_delivered
                            || (!delivered_any
                                && matches!(last, Some((r, e))
                                    if e.terminal_state() && c.is_some_and(|c| *r <= c)));
                        if !ok {
                            return Err(fail(
                                "END_REASON_TERMINAL before the terminal state was delivered"
                                    .into(),
                                seg,
                                i,
                                c,
                            ));
                        }
                        if Some(ev.revision) != c && !(c.is_none() && ev.revision == 0) {
                            return Err(fail(
                                format!(
                                    "END revision {} is not the last delivered {c:?}",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                    }
                    EndReason::Deleted => {
                        let want = next_after(c).map(|(r, _)| *r);
                        // With pruned history, the changes before the delete
                        // may be skipped (the END says it is gone).
                        let skipped = want != deleted_at && c.is_some() && !allow_resync;
                        if deleted_at.is_none() || skipped {
                            return Err(fail(
                                format!(
                                    "END_REASON_DELETED at {} but the next committed change is {want:?} (delete at {deleted_at:?})",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                        // A stream that had to resync once the delete
                        // itself was pruned (its tombstone goes with the
                        // history) cannot know the delete's revision: it
                        // ends at the last revision it delivered.
                        let forgotten = allow_resync && Some(ev.revision) == c;
                        if Some(ev.revision) != deleted_at && !forgotten {
                            return Err(fail(
                                format!(
                                    "END_REASON_DELETED revision {} is not the delete's {deleted_at:?}",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                        *cursor = Some(ev.revision);
                    }
                    EndReason::Cancelled if seg.cancelled => {
                        if Some(ev.revision) != c && !(c.is_none() && ev.revision == 0) {
                            return Err(fail(
                                format!(
                                    "END revision {} is not the last delivered {c:?}",
                                    ev.revision
                                ),
                                seg,
                                i,
                                c,
                            ));
                        }
                    }
                    other => {
                        return Err(fail(format!("unexpected END reason {other:?}"), seg, i, c));
                    }
                }
            }
            other => return Err(fail(format!("unknown event type {other}"), seg, i, c)),
        }
    }
    let last_i = seg.events.len().saturating_sub(1);
    match &seg.outcome {
        Outcome::Ended => Ok(()),
        Outcome::Dropped | Outcome::Open => Ok(()),
        Outcome::Error(code, message) => {
            let not_found = *code == Code::NotFound as i32;
            let allowed = not_found
                && seg.events.is_empty()
                && match (seg.from, deleted_at) {
                    // Never created (a create whose reply was lost, or none).
                    _ if h.is_empty() => true,
                    // Snapshot of a deleted execution.
                    (None, Some(_)) => true,
                    // Resume after the delete, or (history pruned) from
                    // before a delete the daemon no longer remembers.
                    (Some(r), Some(d)) => d <= r || allow_resync,
                    _ => false,
                };
            if allowed {
                Ok(())
            } else {
                Err(fail(
                    format!("error reply {code} ({message})"),
                    seg,
                    last_i,
                    *cursor,
                ))
            }
        }
        Outcome::Broken(why) => Err(fail(why.clone(), seg, last_i, *cursor)),
    }
}
