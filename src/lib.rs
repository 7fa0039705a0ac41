//! stigmer: the local hub through which AI agent executions report progress
//! and are watched live.
//!
//! Module map, in the direction data flows:
//!
//! - [`config`]: flags, paths and every bound with its reasoning.
//! - [`protocol`]: frames and the error type every answer uses
//!   ([`protocol::Status`], gRPC canonical codes).
//! - [`server`]: the listener, the accept loop and each connection (a reader
//!   loop, and an outbox of outgoing frames that any thread writes to the
//!   socket directly).
//! - [`cmd`]: one file per command: parse, apply, encode the reply.
//! - [`pipeline`]: the UpdateStatus steps validate -> load -> build ->
//!   persist -> broadcast, in one file a reader can follow.
//! - [`store`]: SQLite: the writer thread (group commit, revisions, an
//!   adaptive poll of its queue before it sleeps), read connections, schema
//!   and migrations.
//! - [`poll`]: the adaptive poll window both the writer thread and the
//!   connection workers use to stay awake while work comes close together
//!   (a thread still awake takes it without a wake-up).
//! - [`broker`]: fans each committed change out, in commit order, never
//!   blocking the writer: straight into a caught-up stream's outbox, else
//!   into its bounded queue.
//! - [`service`]: socket activation (systemd, launchd) and sd_notify.
//! - [`metrics`]: latency histograms and the Prometheus exposition.
//! - [`daemon`]: wires it all together and runs until a signal.
//! - [`cli`]: the `stigmer` command line, built on the `stigmer-client` crate.

pub mod broker;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod metrics;
pub mod pipeline;
pub mod poll;
pub mod protocol;
pub mod server;
pub mod service;
pub mod store;
