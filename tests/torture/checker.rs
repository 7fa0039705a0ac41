//! The checker checks: a correct stream, whole or delta, passes, and each
//! broken guarantee is caught, with a trace that shows the history.

use crate::torture_support::*;

fn st(hash: u64, terminal: bool) -> Entry {
    Entry::State(State {
        hash,
        terminal,
        summary: format!("s{hash}"),
    })
}

fn ev(kind: i32, revision: u64, state: Option<(u64, bool)>, reason: i32) -> Ev {
    Ev {
        kind,
        revision,
        state: state.map(|(hash, terminal)| State {
            hash,
            terminal,
            summary: format!("s{hash}"),
        }),
        reason,
        prev_revision: 0,
        problem: None,
    }
}

fn delta(revision: u64, prev_revision: u64, state: (u64, bool)) -> Ev {
    Ev {
        prev_revision,
        ..ev(DELTA, revision, Some(state), 0)
    }
}

fn seg(from: Option<u64>, events: Vec<Ev>) -> Segment {
    Segment {
        execution: "aex-x".into(),
        from,
        events,
        outcome: Outcome::Ended,
        cancelled: false,
        resumed: false,
        deltas: false,
        skip: false,
        base: None,
    }
}

fn dseg(from: Option<u64>, skip: Option<u64>, events: Vec<Ev>) -> Segment {
    Segment {
        deltas: true,
        skip: skip.is_some(),
        base: skip,
        ..seg(from, events)
    }
}

fn check(h: &[(u64, Entry)], s: &Segment) -> Result<(), String> {
    let mut cursor = s.from;
    check_segment(h, s, &mut cursor, false).map_err(|v| v.to_string())
}

#[test]
fn checker_accepts_a_correct_stream_and_catches_each_broken_guarantee() {
    use stigmer_proto::daemon::EndReason;
    let terminal = EndReason::Terminal as i32;
    let h = vec![(3, st(1, false)), (7, st(2, false)), (9, st(3, true))];
    // Correct: snapshot, updates, terminal, END.
    let good = seg(
        None,
        vec![
            ev(SNAPSHOT, 3, Some((1, false)), 0),
            ev(UPDATE, 7, Some((2, false)), 0),
            ev(UPDATE, 9, Some((3, true)), 0),
            ev(END, 9, None, terminal),
        ],
    );
    check(&h, &good).expect("a correct stream passes");
    // Resume from 3 starts exactly at 7.
    let resumed = seg(
        Some(3),
        vec![
            ev(UPDATE, 7, Some((2, false)), 0),
            ev(UPDATE, 9, Some((3, true)), 0),
            ev(END, 9, None, terminal),
        ],
    );
    check(&h, &resumed).expect("a correct resume passes");
    let cases: Vec<(&str, Segment)> = vec![
        (
            "gap",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 3, Some((1, false)), 0),
                    ev(UPDATE, 9, Some((3, true)), 0),
                ],
            ),
        ),
        (
            "not after",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 7, Some((2, false)), 0),
                    ev(UPDATE, 7, Some((2, false)), 0),
                ],
            ),
        ),
        (
            "not the committed one",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 3, Some((1, false)), 0),
                    ev(UPDATE, 7, Some((99, false)), 0),
                ],
            ),
        ),
        (
            "gap",
            seg(
                Some(3),
                vec![
                    ev(UPDATE, 9, Some((3, true)), 0),
                    ev(END, 9, None, terminal),
                ],
            ),
        ),
        (
            "before the terminal state",
            seg(
                None,
                vec![
                    ev(SNAPSHOT, 7, Some((2, false)), 0),
                    ev(END, 7, None, terminal),
                ],
            ),
        ),
        (
            "after the terminal state",
            seg(
                Some(7),
                vec![
                    ev(UPDATE, 9, Some((3, true)), 0),
                    ev(UPDATE, 10, Some((4, false)), 0),
                ],
            ),
        ),
        (
            "RESYNC",
            seg(Some(0), vec![ev(RESYNC, 7, Some((2, false)), 0)]),
        ),
    ];
    for (want, s) in cases {
        let err = check(&h, &s).expect_err(want);
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            err.contains("committed rev"),
            "the trace shows the history: {err}"
        );
    }
    // A resume that does not start from the last revision delivered.
    let log = SubLog {
        subscriber: 0,
        mode: Mode::Disconnector,
        segments: vec![
            seg(None, vec![ev(SNAPSHOT, 3, Some((1, false)), 0)]),
            Segment {
                resumed: true,
                ..seg(Some(7), vec![ev(UPDATE, 9, Some((3, true)), 0)])
            },
        ],
    };
    let mut h2 = History::new();
    h2.insert("aex-x".into(), h.clone());
    let v = check_subscribers(&[log], &h2, false, &mut Checked::default());
    assert!(v.iter().any(|v| v.what.contains("resumed from")), "{v:?}");
}

#[test]
fn checker_accepts_correct_delta_streams_and_catches_each_broken_one() {
    use stigmer_proto::daemon::EndReason;
    let terminal = EndReason::Terminal as i32;
    let h = vec![(3, st(1, false)), (7, st(2, false)), (9, st(3, true))];
    let end = ev(END, 9, None, terminal);
    // From the start: the snapshot, then each change as operations whose
    // rebuilt state is the committed one.
    let good = dseg(
        None,
        None,
        vec![
            ev(SNAPSHOT, 3, Some((1, false)), 0),
            delta(7, 3, (2, false)),
            delta(9, 7, (3, true)),
            end.clone(),
        ],
    );
    check(&h, &good).expect("a correct delta stream passes");
    // Resumed from 8 with the initial state: the state at 7 (the last
    // change at or before 8), then the change after 8.
    let resumed = dseg(
        Some(8),
        None,
        vec![
            ev(SNAPSHOT, 7, Some((2, false)), 0),
            delta(9, 7, (3, true)),
            end.clone(),
        ],
    );
    check(&h, &resumed).expect("a resume with the initial state passes");
    // Resumed from 8 holding the state at 7: the change after 8 at once.
    let skipped = dseg(Some(8), Some(7), vec![delta(9, 7, (3, true)), end.clone()]);
    check(&h, &skipped).expect("a resume skipping the initial state passes");
    let snapshot = ev(SNAPSHOT, 3, Some((1, false)), 0);
    let broken = Ev {
        problem: Some("the DELTA's operations do not apply to the state at 3".into()),
        ..delta(7, 3, (2, false))
    };
    let cases: Vec<(&str, Segment)> = vec![
        (
            "the stream's last state is at",
            dseg(None, None, vec![snapshot.clone(), delta(7, 2, (2, false))]),
        ),
        (
            "not the committed one (as rebuilt from the DELTA)",
            dseg(None, None, vec![snapshot.clone(), delta(7, 3, (99, false))]),
        ),
        (
            "do not apply",
            dseg(None, None, vec![snapshot.clone(), broken]),
        ),
        (
            "did not ask for deltas",
            seg(None, vec![snapshot.clone(), delta(7, 3, (2, false))]),
        ),
        (
            "did not start with the state at 8",
            dseg(Some(8), None, vec![delta(9, 7, (3, true))]),
        ),
        (
            "last change at or before 8 is Some(7)",
            dseg(
                Some(8),
                None,
                vec![snapshot.clone(), delta(9, 7, (3, true))],
            ),
        ),
        (
            "a SNAPSHOT that is not the first event",
            dseg(Some(8), Some(7), vec![ev(SNAPSHOT, 7, Some((2, false)), 0)]),
        ),
        (
            "the stream's last state is at Some(3)",
            dseg(Some(8), Some(3), vec![delta(9, 7, (3, true))]),
        ),
        (
            "the execution's change before 9 is Some(7)",
            dseg(Some(8), Some(3), vec![delta(9, 3, (3, true))]),
        ),
        (
            "a whole state (UPDATE) on a delta stream",
            dseg(
                None,
                None,
                vec![snapshot.clone(), ev(UPDATE, 7, Some((2, false)), 0)],
            ),
        ),
        (
            "gap",
            dseg(None, None, vec![snapshot.clone(), delta(9, 3, (3, true))]),
        ),
    ];
    for (want, s) in cases {
        let err = check(&h, &s).expect_err(want);
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            err.contains("committed rev"),
            "the trace shows the history: {err}"
        );
    }
}

#[test]
fn appended_texts_are_checked_in_every_state() {
    use stigmer_proto::agentexecution::{AgentExecution, AgentExecutionStatus, AgentMessage};
    let state = |contents: &[&str]| AgentExecution {
        status: Some(AgentExecutionStatus {
            messages: contents
                .iter()
                .map(|c| AgentMessage {
                    content: c.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let fact = |message_index, offset, text: &str| Fact {
        execution: "aex-x".into(),
        message_index,
        offset,
        text: text.into(),
    };
    let e = state(&["w0 n1 x", "<a1.1:é><a1.2:>", "<a2.1:🦀>"]);
    assert_eq!(check_texts(&e, &[fact(1, 9, "<a1.2:>")]), None);
    assert!(check_texts(&e, &[fact(1, 0, "<a1.2:>")])
        .expect("misplaced")
        .contains("is not there"));
    assert!(check_texts(&e, &[fact(3, 0, "<a1.2:>")])
        .expect("no such message")
        .contains("is not there"));
    let twice = state(&["<a1.1:é><a1.2:>", "<a1.1:é>"]);
    assert!(check_texts(&twice, &[])
        .expect("twice")
        .contains("<a1.1:…> is there twice"));
}
