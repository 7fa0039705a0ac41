//! The torture suite: the stream guarantees of docs/PROTOCOL.md checked
//! under load, slow and stalling readers, disconnects and resumes, streams
//! from past revisions, executions cancelled and deleted mid-stream, and
//! SIGKILL of the daemon at random moments; for whole-state streams and
//! delta streams (`deltas: true`) side by side, one-execution streams and
//! watchers of sessions, with writers that send whole statuses, appends,
//! or both; and across two daemons sharing etcd, with kills of etcd's
//! leader and of a daemon. See docs/RELIABILITY.md.
//!
//! The CI form runs by default (a few minutes on two cores). Long runs set
//! `TORTURE_*` variables (see `torture_support::Config::from_env`) and
//! `--nocapture` to see the figures, e.g.
//!
//! ```text
//! TORTURE_UPDATES=200000 TORTURE_KILLS=500 TORTURE_SUBSCRIBERS=48 \
//!   cargo test --release --test torture -- --nocapture --test-threads 1
//! ```
//!
//! The modules: `scenarios` (the four runs of the whole workload and
//! checker), `crash` (the killer of the crash runs), `cluster` (the runs
//! across two daemons sharing etcd, and their killer), `stalls` (streams
//! stalled until they overflow), `checker` and `watch_checker` (the
//! checker's own tests: each broken guarantee is caught) and `regressions`
//! (bugs the runs found).
//! The workload and checker themselves are `tests/torture_support/`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../torture_support/mod.rs"]
mod torture_support;

#[path = "../../etcd/tests/common/mod.rs"]
mod etcd_cluster;

mod checker;
mod cluster;
mod crash;
mod regressions;
mod scenarios;
mod stalls;
mod watch_checker;

/// History retention far beyond any run: every revision stays replayable.
const ALL_HISTORY: &str = "1000000000";
