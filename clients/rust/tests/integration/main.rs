//! The client against the real daemon: multiplexing, ordered and unique
//! subscription events, resuming across a daemon restart, typed errors, the
//! blocking API. Build the daemon first (`cargo build -p stigmer`); see
//! tests/common/mod.rs for how it is found.
//!
//! No test waits on a clock: each waits for the event it needs (a ping, an
//! END, the exit of a process).
//!
//! One test binary: `requests.rs` (calls and their replies, the blocking
//! API), `subscriptions.rs` (streams: order, resumption, overflow, END),
//! and `support.rs`, the helpers both share; `tests/common/` starts the
//! daemon.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod requests;
mod subscriptions;
