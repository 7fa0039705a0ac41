//! The committed history of each execution: built from the
//! acknowledgements (appends' states filled in from the streams when the
//! daemon's own history is pruned) and checked against the daemon's replay:
//! every acknowledged write there, revisions unique, nothing after the end.

use std::collections::HashMap;

use super::record::{Record, SubLog, DELTA};
use super::report::Violation;
use super::state::Entry;

/// Every committed change of every execution, in revision order.
pub type History = HashMap<String, Vec<(u64, Entry)>>;

/// The committed history from the acknowledgements alone (complete when no
/// write lost its reply). Appends are there without their states
/// (`Entry::Appended`) until `resolve_appended` fills them in.
pub fn history_from_acks(record: &Record) -> History {
    let mut h = History::new();
    for (rev, (id, entry)) in &record.acks {
        h.entry(id.clone()).or_default().push((*rev, entry.clone()));
    }
    // A resent append applied anew (its message replaced meanwhile) is a
    // change only its retry acknowledged.
    for (rev, id) in &record.retry_acks {
        if !record.acks.contains_key(rev) {
            h.entry(id.clone())
                .or_default()
                .push((*rev, Entry::Appended { terminal: false }));
        }
    }
    for entries in h.values_mut() {
        entries.sort_by_key(|(r, _)| *r);
    }
    h
}

/// Fills in the state of each append the acknowledgements know only by
/// revision (no replay from the daemon: its history was pruned) with what
/// the streams carried at that revision: a whole state if any stream
/// carried one, else a state a delta stream rebuilt. The checker then holds
/// every stream, whole and delta, to that one state. Answers how many stay
/// unknown (no stream delivered that revision).
pub fn resolve_appended(history: &mut History, logs: &[SubLog]) -> (Vec<Violation>, u64) {
    let mut out = Vec::new();
    for whole in [true, false] {
        for log in logs {
            for seg in &log.segments {
                let Some(entries) = history.get_mut(&seg.execution) else {
                    continue;
                };
                for ev in &seg.events {
                    let Some(state) = &ev.state else { continue };
                    if (ev.kind != DELTA) != whole {
                        continue;
                    }
                    let Ok(i) = entries.binary_search_by_key(&ev.revision, |(r, _)| *r) else {
                        continue;
                    };
                    if let Entry::Appended { terminal } = entries[i].1 {
                        if terminal != state.terminal {
                            out.push(Violation {
                                what: format!(
                                    "the append acknowledged at revision {} of {} was {}terminal, the state streamed there is {}",
                                    ev.revision,
                                    seg.execution,
                                    if terminal { "" } else { "not " },
                                    state.summary
                                ),
                                trace: vec![],
                            });
                        }
                        entries[i].1 = Entry::State(state.clone());
                    }
                }
            }
        }
    }
    let unknown = history
        .values()
        .flatten()
        .filter(|(_, e)| matches!(e, Entry::Appended { .. }))
        .count() as u64;
    (out, unknown)
}

/// Checks the replayed history against the acknowledgements: every
/// acknowledged write is there with the acknowledged state (an append: at
/// its revision, terminal or not as it said; its texts were checked by the
/// replay); revisions are unique across executions; nothing follows a
/// terminal state or a delete. With `exact`, the replay holds nothing that
/// was not acknowledged. The writers' own findings are reported here too.
pub fn check_history(record: &Record, replayed: &History, exact: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    for msg in record
        .duplicate_acks
        .iter()
        .chain(&record.writer_order)
        .chain(&record.problems)
    {
        out.push(Violation {
            what: msg.clone(),
            trace: vec![],
        });
    }
    let mut owner: HashMap<u64, &str> = HashMap::new();
    for (id, entries) in replayed {
        let mut last = 0;
        let mut over = false;
        for (rev, entry) in entries {
            if *rev <= last {
                out.push(Violation {
                    what: format!("replay of {id}: revision {rev} after {last}"),
                    trace: vec![],
                });
            }
            if over {
                out.push(Violation {
                    what: format!("replay of {id}: revision {rev} after the execution was over"),
                    trace: vec![],
                });
            }
            over = entry.over();
            last = *rev;
            if let Some(other) = owner.insert(*rev, id) {
                out.push(Violation {
                    what: format!("revision {rev} belongs to both {other} and {id}"),
                    trace: vec![],
                });
            }
            if exact && !record.acks.contains_key(rev) && !record.retry_acks.contains_key(rev) {
                out.push(Violation {
                    what: format!("replay of {id} has revision {rev}, never acknowledged"),
                    trace: vec![],
                });
            }
        }
    }
    for (rev, (id, entry)) in &record.acks {
        let found = replayed
            .get(id)
            .and_then(|h| h.iter().find(|(r, _)| r == rev));
        match found {
            None => out.push(Violation {
                what: format!("acknowledged revision {rev} of {id} is missing"),
                trace: vec![format!("acknowledged: {}", entry.describe())],
            }),
            Some((_, got)) if !entry.acknowledged_as(got) => out.push(Violation {
                what: format!("revision {rev} of {id} differs from its acknowledgement"),
                trace: vec![
                    format!("acknowledged: {}", entry.describe()),
                    format!("replayed:     {}", got.describe()),
                ],
            }),
            Some(_) => {}
        }
    }
    for (rev, id) in &record.retry_acks {
        let found = replayed.get(id).is_some_and(|h| {
            h.iter()
                .any(|(r, e)| r == rev && !matches!(e, Entry::Deleted))
        });
        if !found {
            out.push(Violation {
                what: format!(
                    "a retried append to {id} was acknowledged at revision {rev}, which is not a state of {id}"
                ),
                trace: vec![],
            });
        }
    }
    out
}
