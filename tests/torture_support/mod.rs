//! The watch checker behind the torture suite (`tests/torture/`): a
//! workload of writers (whole statuses and appends), subscribers of every
//! kind (each stream whole-state or delta), watchers of sessions (many-
//! execution streams) and (optionally) a killer, a record of every
//! acknowledged write and every event received (for a delta stream, the
//! state it rebuilds), and a checker that holds each subscriber's and
//! watcher's events against the committed history.
//!
//! Everything random comes from one seed (printed, and settable with
//! `TORTURE_SEED`), so a failing run can be replayed with the same choices
//! (the interleavings still vary: the daemon runs on real threads).
//!
//! The modules, each re-exported here so that a test names any item as
//! `torture_support::Item`:
//!
//! - the run: `rng` (the seeded choices), `config` (its sizes),
//!   `wire` (a client that survives a crash), `commands` (request builders);
//! - the workload: `shared` (what its tasks share), `writer` (writers, the
//!   ender, `finish_all`), `appender` (the appending side of a writer),
//!   `subscriber` (the six kinds of subscriber), `watcher` (the watchers
//!   of sessions, or of every execution);
//! - the record: `state` (states and committed changes), `record` (events
//!   received, writes acknowledged);
//! - the checker, one property each: `streams` (every subscriber's
//!   streams), `watches` (every watcher's streams), `history` (the
//!   committed history against the acknowledgements), `replay` (the
//!   daemon's replay, whole and as deltas), `texts` (appended texts in one
//!   state), `final_state` (`get` after the run); and `report` (violations
//!   and counts).

#![allow(dead_code)]

mod appender;
mod commands;
mod config;
mod final_state;
mod history;
mod record;
mod replay;
mod report;
mod rng;
mod shared;
mod state;
mod streams;
mod subscriber;
mod texts;
mod watcher;
mod watches;
mod wire;
mod writer;

pub use commands::*;
pub use config::*;
pub use final_state::*;
pub use history::*;
pub use record::*;
pub use replay::*;
pub use report::*;
pub use rng::*;
pub use shared::*;
pub use state::*;
pub use streams::*;
pub use subscriber::*;
pub use texts::*;
pub use watcher::*;
pub use watches::*;
pub use wire::*;
pub use writer::*;
