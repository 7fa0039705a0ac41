//! Integration tests of the daemon's guarantees, against the real binary on
//! a temporary socket and database, over the raw protocol.
//!
//! The modules, by theme: `requests` (each request's answer, and list),
//! `streams` (every revision once, in order, to every subscriber, and how
//! streams end), `lifecycle` (restart, SIGTERM, the files on disk),
//! `errors` (bad requests, broken connections, the connection limit) and
//! `polling` (the writer's and the readers' polling, the connection
//! shards). The helpers they share are here; `tests/common/` starts
//! daemons and speaks the raw protocol.

#[path = "../common/mod.rs"]
mod common;

mod errors;
mod lifecycle;
mod polling;
mod requests;
mod streams;

use common::*;
use stigmer_proto::agentexecution::{AgentExecutionStatus, ExecutionPhase};
use stigmer_proto::daemon::EventType;

const UPDATE: i32 = EventType::EventUpdate as i32;
const SNAPSHOT: i32 = EventType::EventSnapshot as i32;
const RESYNC: i32 = EventType::EventResync as i32;
const END: i32 = EventType::EventEnd as i32;

fn completed() -> AgentExecutionStatus {
    phase(ExecutionPhase::ExecutionCompleted)
}

/// Checks a stream's events: revisions strictly increasing, ending in END.
fn assert_ordered(events: &[stigmer_proto::daemon::Event]) {
    let mut last = 0;
    for e in events.iter().filter(|e| e.r#type != END) {
        assert!(e.revision > last, "revision {} after {last}", e.revision);
        last = e.revision;
    }
}
