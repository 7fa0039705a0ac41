//! The watch check: each watcher's many-execution streams held against
//! the committed history of its selection (every change of its
//! executions, merged in revision order). The initial list is every
//! execution of the selection that exists at the list's revision, at its
//! state then, in increasing revision order, then the end-of-list
//! bookmark; after it each event is exactly the selection's next change:
//! CREATED for a create, DELETED for a delete, else UPDATE, or on a delta
//! stream a DELTA applying to the state the watcher holds (which is the
//! execution's previous change), each with the committed state; a bookmark
//! only where nothing of the selection is left undelivered; a resume
//! starts exactly after the last revision received; the cancel at the end
//! ends the stream at its last revision; and every watcher read up to its
//! selection's last change.

use std::collections::{BTreeSet, HashMap};

use stigmer_proto::daemon::EndReason;

use super::history::History;
use super::record::{
    kind_name, Outcome, Selection, WatchEv, WatchLog, WatchSegment, BOOKMARK, CREATED, DELETED,
    DELTA, END, RESYNC, SNAPSHOT, UPDATE,
};
use super::report::{Checked, Violation};
use super::state::{Entry, State};
use super::streams::received;

/// Every committed change of the executions `selection` covers (each
/// execution's session is in `sessions`), in revision order.
pub fn selection_history<'h>(
    history: &'h History,
    sessions: &HashMap<String, String>,
    selection: &Selection,
) -> Vec<(u64, &'h str, &'h Entry)> {
    let mut merged: Vec<(u64, &str, &Entry)> = history
        .iter()
        .filter(|(id, _)| selection.covers(sessions.get(*id).map(String::as_str)))
        .flat_map(|(id, entries)| entries.iter().map(move |(r, e)| (*r, id.as_str(), e)))
        .collect();
    merged.sort_by_key(|(r, _, _)| *r);
    merged
}

/// The revision of each selection's last change (0: none), which its
/// watchers read up to.
pub fn targets<'s>(
    history: &History,
    sessions: &HashMap<String, String>,
    selections: impl IntoIterator<Item = &'s Selection>,
) -> HashMap<Selection, u64> {
    selections
        .into_iter()
        .map(|s| {
            let last = selection_history(history, sessions, s)
                .last()
                .map(|(r, _, _)| *r)
                .unwrap_or(0);
            (s.clone(), last)
        })
        .collect()
}

/// Checks every watcher's segments against `history`.
pub fn check_watchers(
    logs: &[WatchLog],
    history: &History,
    sessions: &HashMap<String, String>,
    counts: &mut Checked,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for log in logs {
        let merged = selection_history(history, sessions, &log.selection);
        // The last revision received since the last list ended, and the
        // revision of each execution's state the watcher holds.
        let mut cursor: Option<u64> = None;
        let mut held: HashMap<String, u64> = HashMap::new();
        let mut broken = false;
        for (i, seg) in log.segments.iter().enumerate() {
            counts.watch_segments += 1;
            counts.watch_events += seg.events.len() as u64;
            counts.watch_lists += seg.from.is_none() as u64;
            counts.watch_resumes += seg.from.is_some() as u64;
            counts.watch_deltas += seg.events.iter().filter(|e| e.ev.kind == DELTA).count() as u64;
            counts.watch_bookmarks += seg
                .events
                .iter()
                .filter(|e| e.ev.kind == BOOKMARK && !e.list_end)
                .count() as u64;
            let header = format!(
                "watcher {} ({:?}) of {:?}, segment {i} on daemon {}: subscribe from {:?}{}",
                log.watcher,
                log.mode,
                log.selection,
                seg.daemon,
                seg.from,
                if seg.deltas { ", deltas" } else { "" }
            );
            if seg.from.is_none() {
                cursor = None;
                held.clear();
            } else if seg.from != cursor {
                out.push(Violation {
                    what: format!(
                        "watcher {} resumed from {:?} instead of its last revision {cursor:?}",
                        log.watcher, seg.from
                    ),
                    trace: vec![header],
                });
                broken = true;
                break;
            }
            let found = check_watch_segment(
                &merged,
                history,
                sessions,
                &log.selection,
                seg,
                &mut cursor,
                &mut held,
            );
            if let Err(mut v) = found {
                v.trace.insert(0, header);
                out.push(v);
                // Later segments build on a broken one.
                broken = true;
                break;
            }
        }
        let target = merged.last().map(|(r, _, _)| *r).unwrap_or(0);
        if !broken && cursor.is_none_or(|c| c < target) {
            out.push(Violation {
                what: format!(
                    "watcher {} of {:?} stopped at {cursor:?}, before its selection's last change {target}",
                    log.watcher, log.selection
                ),
                trace: vec![],
            });
        }
    }
    out
}

/// Whether `got` is the committed state of an execution (`entries`) at
/// `revision`.
fn committed(entries: &[(u64, Entry)], revision: u64, got: Option<&State>) -> bool {
    let want = entries.iter().find(|(r, _)| *r == revision).map(|(_, e)| e);
    match (want, got) {
        (Some(Entry::State(want)), Some(got)) => want == got,
        // An append no stream carried and no replay shows.
        (Some(Entry::Appended { terminal }), Some(got)) => *terminal == got.terminal,
        _ => false,
    }
}

/// Checks one watch segment; `cursor` (the last revision received since
/// the last list ended) and `held` (the revision of each execution's state
/// the watcher holds) carry over from the segment before.
pub fn check_watch_segment(
    merged: &[(u64, &str, &Entry)],
    history: &History,
    sessions: &HashMap<String, String>,
    selection: &Selection,
    seg: &WatchSegment,
    cursor: &mut Option<u64>,
    held: &mut HashMap<String, u64>,
) -> Result<(), Violation> {
    let fail = |what: String, upto: usize, cursor: Option<u64>| -> Violation {
        let mut trace = received(&seg.events, upto, 3, WatchEv::describe);
        let lo = cursor.unwrap_or(0);
        let window: Vec<_> = merged.iter().filter(|(r, _, _)| *r > lo).take(6).collect();
        trace.push(format!(
            "committed history of the selection after revision {lo} ({} changes in all):",
            merged.len()
        ));
        for (r, id, e) in &window {
            trace.push(format!("  committed rev {r} {id} {}", e.describe()));
        }
        if window.is_empty() {
            trace.push("  (none)".into());
        }
        Violation { what, trace }
    };
    let empty = Vec::new();
    let next_after = |c: u64| merged.iter().find(|(r, _, _)| *r > c);
    let mut listing = seg.from.is_none();
    let mut listed: Vec<(&str, u64)> = Vec::new();
    for (i, w) in seg.events.iter().enumerate() {
        let ev = &w.ev;
        let c = *cursor;
        if let Some(problem) = &ev.problem {
            return Err(fail(problem.clone(), i, c));
        }
        let id = w.execution.as_str();
        let entries = history.get(id).unwrap_or(&empty);
        match ev.kind {
            SNAPSHOT => {
                if !listing {
                    return Err(fail("a SNAPSHOT outside the initial list".into(), i, c));
                }
                if listed.last().is_some_and(|(_, r)| ev.revision <= *r) {
                    return Err(fail(
                        "the initial list is not in increasing revision order".into(),
                        i,
                        c,
                    ));
                }
                if listed.iter().any(|(l, _)| *l == id) {
                    return Err(fail(format!("{id} listed twice"), i, c));
                }
                if !selection.covers(sessions.get(id).map(String::as_str)) {
                    return Err(fail(format!("{id} is not in the selection"), i, c));
                }
                if !committed(entries, ev.revision, ev.state.as_ref()) {
                    return Err(fail(
                        format!(
                            "the state of {id} at revision {} is not the committed one",
                            ev.revision
                        ),
                        i,
                        c,
                    ));
                }
                listed.push((id, ev.revision));
                held.insert(id.to_string(), ev.revision);
            }
            BOOKMARK if w.list_end => {
                if !listing {
                    return Err(fail(
                        "an end-of-list bookmark outside an initial list".into(),
                        i,
                        c,
                    ));
                }
                // Every execution of the selection that existed at R, at
                // its last change at or before R.
                let at = ev.revision;
                let want: BTreeSet<(&str, u64)> = history
                    .iter()
                    .filter(|(id, _)| selection.covers(sessions.get(*id).map(String::as_str)))
                    .filter_map(|(id, entries)| {
                        let (r, e) = entries.iter().rev().find(|(r, _)| *r <= at)?;
                        (*e != Entry::Deleted).then_some((id.as_str(), *r))
                    })
                    .collect();
                let got: BTreeSet<(&str, u64)> = listed.iter().copied().collect();
                if want != got {
                    let missing: Vec<_> = want.difference(&got).collect();
                    let unexpected: Vec<_> = got.difference(&want).collect();
                    return Err(fail(
                        format!(
                            "the initial list at revision {at} is not the selection's executions then: \
                             missing {missing:?}, unexpected {unexpected:?}"
                        ),
                        i,
                        c,
                    ));
                }
                listing = false;
                *cursor = Some(at);
            }
            BOOKMARK => {
                let Some(c) = c.filter(|_| !listing) else {
                    return Err(fail(
                        "a progress bookmark inside the initial list".into(),
                        i,
                        c,
                    ));
                };
                if ev.revision < c {
                    return Err(fail(
                        format!("a bookmark at {} after revision {c}", ev.revision),
                        i,
                        Some(c),
                    ));
                }
                if let Some((r, id, _)) = next_after(c).filter(|(r, _, _)| *r <= ev.revision) {
                    return Err(fail(
                        format!(
                            "a bookmark at {}, but the change of {id} at {r} was not delivered",
                            ev.revision
                        ),
                        i,
                        Some(c),
                    ));
                }
                *cursor = Some(ev.revision);
            }
            CREATED | UPDATE | DELTA | DELETED => {
                let Some(c) = c.filter(|_| !listing) else {
                    return Err(fail(
                        "a change before the end of the initial list".into(),
                        i,
                        c,
                    ));
                };
                let Some((rev, want_id, entry)) = next_after(c) else {
                    return Err(fail(
                        format!(
                            "revision {} of {id}, but the selection has no change after {c}",
                            ev.revision
                        ),
                        i,
                        Some(c),
                    ));
                };
                if ev.revision != *rev || id != *want_id {
                    return Err(fail(
                        format!(
                            "gap or reorder: expected {want_id} at {rev} next, received {id} at {}",
                            ev.revision
                        ),
                        i,
                        Some(c),
                    ));
                }
                let first = entries.first().is_some_and(|(r, _)| r == rev);
                let prev = entries.iter().rev().find(|(r, _)| r < rev).map(|(r, _)| *r);
                let want_kind = match entry {
                    _ if first => CREATED,
                    Entry::Deleted => DELETED,
                    _ if seg.deltas => DELTA,
                    _ => UPDATE,
                };
                if ev.kind != want_kind {
                    return Err(fail(
                        format!(
                            "{} for a change the stream should send as {}",
                            kind_name(ev.kind),
                            kind_name(want_kind)
                        ),
                        i,
                        Some(c),
                    ));
                }
                if ev.kind != DELETED && !committed(entries, *rev, ev.state.as_ref()) {
                    return Err(fail(
                        format!(
                            "the state of {id} at revision {rev} is not the committed one{}",
                            if ev.kind == DELTA {
                                " (as rebuilt from the DELTA)"
                            } else {
                                ""
                            }
                        ),
                        i,
                        Some(c),
                    ));
                }
                let holding = held.get(id).copied();
                if holding != prev {
                    return Err(fail(
                        format!(
                            "the watcher holds {id} at {holding:?}, but its change before {rev} is {prev:?}"
                        ),
                        i,
                        Some(c),
                    ));
                }
                if ev.kind == DELTA && Some(ev.prev_revision) != prev {
                    return Err(fail(
                        format!(
                            "a DELTA applying to revision {}, but the change of {id} before {rev} is {prev:?}",
                            ev.prev_revision
                        ),
                        i,
                        Some(c),
                    ));
                }
                if ev.kind == DELETED {
                    held.remove(id);
                } else {
                    held.insert(id.to_string(), *rev);
                }
                *cursor = Some(*rev);
            }
            RESYNC => {
                return Err(fail(
                    "RESYNC although the history reaches back (retention larger than the run)"
                        .into(),
                    i,
                    c,
                ))
            }
            END => {
                if i + 1 != seg.events.len() {
                    return Err(fail("events after END".into(), i + 1, c));
                }
                if !seg.cancelled || ev.reason != EndReason::Cancelled as i32 {
                    return Err(fail(
                        format!(
                            "END {:?}{}",
                            EndReason::try_from(ev.reason).unwrap_or(EndReason::Unspecified),
                            if seg.cancelled {
                                ""
                            } else {
                                " without a cancel"
                            }
                        ),
                        i,
                        c,
                    ));
                }
                if Some(ev.revision) != c {
                    return Err(fail(
                        format!(
                            "END revision {} is not the last revision delivered {c:?}",
                            ev.revision
                        ),
                        i,
                        c,
                    ));
                }
            }
            other => return Err(fail(format!("an event of type {other}"), i, c)),
        }
    }
    let last = seg.events.len().saturating_sub(1);
    match &seg.outcome {
        Outcome::Ended | Outcome::Dropped | Outcome::Open => Ok(()),
        Outcome::Error(code, message) => Err(fail(
            format!("error reply {code} ({message})"),
            last,
            *cursor,
        )),
        Outcome::Broken(why) => Err(fail(why.clone(), last, *cursor)),
    }
}
