//! The `stigmer` command line against a real daemon: each command with
//! `-o json`, error reporting, and `subscribe`'s exit statuses.
//!
//! Waits are on events (the daemon's "listening" line, a process exiting, a
//! line printed), never on the clock.
//!
//! One test binary, one file per theme: `executions.rs` (the per-execution
//! commands), `subscribe.rs` (live streams and reconnection), `admin.rs`
//! (backup and export), `program.rs` (exit statuses, colour, completions,
//! man pages, packaging, the release profile); `support.rs` holds the
//! helpers they share, on top of the daemon harness in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod admin;
mod executions;
mod program;
mod subscribe;
