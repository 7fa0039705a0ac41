//! The watch checker checks: a watcher's correct session streams (a list,
//! live changes, a resume, bookmarks, a delete, the cancel at the end),
//! whole or delta, pass, and each broken guarantee of a many-execution
//! stream is caught, with a trace that shows the selection's history.

use std::collections::HashMap;

use stigmer_proto::daemon::EndReason;

use crate::torture_support::*;

fn st(hash: u64, terminal: bool) -> State {
    State {
        hash,
        terminal,
        summary: format!("s{hash}"),
    }
}

fn wev(kind: i32, revision: u64, execution: &str, state: Option<(u64, bool)>) -> WatchEv {
    WatchEv {
        execution: execution.into(),
        list_end: false,
        ev: Ev {
            kind,
            revision,
            state: state.map(|(h, t)| st(h, t)),
            reason: 0,
            prev_revision: 0,
            problem: None,
        },
    }
}

fn delta(revision: u64, prev: u64, execution: &str, state: (u64, bool)) -> WatchEv {
    let mut w = wev(DELTA, revision, execution, Some(state));
    w.ev.prev_revision = prev;
    w
}

fn bookmark(revision: u64, list_end: bool) -> WatchEv {
    WatchEv {
        list_end,
        ..wev(BOOKMARK, revision, "", None)
    }
}

fn end(revision: u64) -> WatchEv {
    let mut w = wev(END, revision, "", None);
    w.ev.reason = EndReason::Cancelled as i32;
    w
}

fn wseg(from: Option<u64>, deltas: bool, events: Vec<WatchEv>) -> WatchSegment {
    let cancelled = events.last().is_some_and(|e| e.ev.kind == END);
    WatchSegment {
        from,
        deltas,
        outcome: if cancelled {
            Outcome::Ended
        } else {
            Outcome::Dropped
        },
        events,
        cancelled,
        daemon: 0,
    }
}

/// Session s0 holds x (created at 2, changed at 5, completed at 9) and y
/// (created at 3, deleted at 6); z, of session s1, changes at 4 and 7.
fn history() -> (History, HashMap<String, String>) {
    let mut h = History::new();
    h.insert(
        "x".into(),
        vec![
            (2, Entry::State(st(1, false))),
            (5, Entry::State(st(2, false))),
            (9, Entry::State(st(3, true))),
        ],
    );
    h.insert(
        "y".into(),
        vec![(3, Entry::State(st(10, false))), (6, Entry::Deleted)],
    );
    h.insert(
        "z".into(),
        vec![
            (4, Entry::State(st(20, false))),
            (7, Entry::State(st(21, false))),
        ],
    );
    let sessions = [("x", "s0"), ("y", "s0"), ("z", "s1")]
        .into_iter()
        .map(|(e, s)| (e.to_string(), s.to_string()))
        .collect();
    (h, sessions)
}

fn check(segments: Vec<WatchSegment>) -> Result<(), String> {
    let (h, sessions) = history();
    let log = WatchLog {
        watcher: 0,
        mode: Mode::Fast,
        selection: Selection::Session("s0".into()),
        segments,
    };
    let found = check_watchers(&[log], &h, &sessions, &mut Checked::default());
    match found.first() {
        None => Ok(()),
        Some(v) => Err(v.to_string()),
    }
}

/// A list at 4 (x at 2, y at 3), the change at 5, a drop.
fn listed(deltas: bool) -> WatchSegment {
    let change = if deltas {
        delta(5, 2, "x", (2, false))
    } else {
        wev(UPDATE, 5, "x", Some((2, false)))
    };
    wseg(
        None,
        deltas,
        vec![
            wev(SNAPSHOT, 2, "x", Some((1, false))),
            wev(SNAPSHOT, 3, "y", Some((10, false))),
            bookmark(4, true),
            change,
        ],
    )
}

/// The resume from 5: y's delete, a bookmark at 8, x's end, the cancel.
fn resumed(deltas: bool) -> WatchSegment {
    let change = if deltas {
        delta(9, 5, "x", (3, true))
    } else {
        wev(UPDATE, 9, "x", Some((3, true)))
    };
    wseg(
        Some(5),
        deltas,
        vec![
            wev(DELETED, 6, "y", None),
            bookmark(8, false),
            change,
            end(9),
        ],
    )
}

#[test]
fn watch_checker_accepts_correct_session_streams_and_catches_each_broken_one() {
    for (a, b) in [(false, false), (true, true), (false, true), (true, false)] {
        check(vec![listed(a), resumed(b)]).expect("a correct watch passes");
    }
    // Listed later (after y's delete): x alone, at 5.
    let late = wseg(
        None,
        false,
        vec![
            wev(SNAPSHOT, 5, "x", Some((2, false))),
            bookmark(7, true),
            wev(UPDATE, 9, "x", Some((3, true))),
            end(9),
        ],
    );
    check(vec![late]).expect("a list after a delete passes");

    let with = |mut s: WatchSegment, i: usize, w: WatchEv| {
        s.events[i] = w;
        s
    };
    let without = |mut s: WatchSegment, i: usize| {
        s.events.remove(i);
        s
    };
    let cases: Vec<(&str, Vec<WatchSegment>)> = vec![
        (
            "missing [(\"y\", 3)]",
            vec![without(listed(false), 1), resumed(false)],
        ),
        (
            "the state of x at revision 2 is not the committed one",
            vec![
                with(listed(false), 0, wev(SNAPSHOT, 2, "x", Some((9, false)))),
                resumed(false),
            ],
        ),
        (
            "not in increasing revision order",
            vec![wseg(
                None,
                false,
                vec![
                    wev(SNAPSHOT, 3, "y", Some((10, false))),
                    wev(SNAPSHOT, 2, "x", Some((1, false))),
                ],
            )],
        ),
        (
            "z is not in the selection",
            vec![with(
                listed(false),
                1,
                wev(SNAPSHOT, 4, "z", Some((20, false))),
            )],
        ),
        (
            "gap or reorder: expected y at 6 next, received x at 9",
            vec![listed(false), without(without(resumed(false), 0), 0)],
        ),
        (
            "the state of x at revision 5 is not the committed one (as rebuilt from the DELTA)",
            vec![with(listed(true), 3, delta(5, 2, "x", (7, false)))],
        ),
        (
            "a DELTA applying to revision 3",
            vec![with(listed(true), 3, delta(5, 3, "x", (2, false)))],
        ),
        (
            "UPDATE for a change the stream should send as DELTA",
            vec![with(listed(true), 3, wev(UPDATE, 5, "x", Some((2, false))))],
        ),
        (
            "DELTA for a change the stream should send as UPDATE",
            vec![with(listed(false), 3, delta(5, 2, "x", (2, false)))],
        ),
        (
            "the change of y at 6 was not delivered",
            vec![listed(false), with(resumed(false), 0, bookmark(6, false))],
        ),
        (
            "resumed from Some(4) instead of its last revision Some(5)",
            vec![
                listed(false),
                WatchSegment {
                    from: Some(4),
                    ..resumed(false)
                },
            ],
        ),
        (
            "stopped at Some(5), before its selection's last change 9",
            vec![listed(false)],
        ),
        (
            "END revision 8 is not the last revision delivered Some(9)",
            vec![listed(false), with(resumed(false), 3, end(8))],
        ),
        (
            "a change before the end of the initial list",
            vec![without(listed(false), 2)],
        ),
        (
            "RESYNC although the history reaches back",
            vec![
                listed(false),
                with(resumed(false), 1, wev(RESYNC, 8, "", None)),
            ],
        ),
    ];
    for (want, segments) in cases {
        let err = check(segments).expect_err(want);
        assert!(err.contains(want), "{want}: {err}");
    }
}
