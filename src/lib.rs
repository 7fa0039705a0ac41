//! stigmer: the local hub through which AI agent executions report progress
//! and are watched live.
//!
//! Module map, from the leaves (which import nothing else of the crate) to
//! the top (which wires everything). Each module imports only modules above
//! it in this list; `tests/module_cycles.rs` fails the test command on any
//! cycle between them.
//!
//! - [`config`](crate::config): flags, paths and every bound with its
//!   reasoning.
//! - `dirs`: which directories the daemon accepts to bind and store in, and
//!   creating the missing ones 0700.
//! - `protocol`: decoding request frames, encoding replies and events, and
//!   `ApiError`, the one error type every answer uses (gRPC canonical
//!   codes).
//! - `model`: the domain types shared by the store, the pipeline and the
//!   broker: a committed `Change`, its `State`, the phase rules, the
//!   revision counters.
//! - `poll`: the adaptive polls that keep the writer thread and the
//!   connection workers awake while work comes close together.
//! - `metrics`: latency histograms, the Prometheus text format, and the
//!   connection and stream counters.
//! - `wire`: a connection's socket halves, its outbox of outgoing frames,
//!   and the `Producer` and `Reply` handles that send on it.
//! - `store`: SQLite: the transaction operations, the writer's cache,
//!   pruning, the checkpoint thread, the read pool, schema and migrations,
//!   the database lock. Synchronous; nothing here knows about tasks.
//! - `broker`: fans each committed change out, in commit order, never
//!   blocking the writer: straight into a caught-up stream's outbox, else
//!   into its bounded queue.
//! - `pipeline`: the steps of each write (validate → load → build →
//!   persist → broadcast), one file per command, and `Write`, the value a
//!   write travels to the writer thread as.
//! - `writer`: the writer thread (group commit, revisions, broadcast, then
//!   the answers) and the `Writer` handle jobs are submitted through.
//! - `cluster`: the cluster mode (issue 20, in progress): etcd as the log,
//!   proposals as compare-and-swap transactions, the replica's watch.
//! - `retention`: `--keep-finished`, deleting long-finished executions.
//! - `report`: the daemon's report on itself (`status`, STATUS=,
//!   Prometheus, the loopback metrics endpoint).
//! - `cmd`: one file per command: parse, apply, reply, with a narrow
//!   context (a `Reply`, the writer, the read pool, the broker).
//! - `server`: the listener, the accept loop, admission, each connection's
//!   reader loop, the connection shards.
//! - `service`: socket activation (systemd, launchd) and sd_notify.
//! - [`daemon`]: wires it all together and runs until a signal.
//! - `ui`: `stigmer ui`, the web dashboard: an HTTP server in a client
//!   process, relaying the daemon's streams to browsers (imports nothing
//!   of the crate; it talks to the daemon through `stigmer-client`).
//! - [`cli`]: the `stigmer` command line, built on the `stigmer-client`
//!   crate (a client of the daemon like any other).
//!
//! Public: [`cli`] (the binary's entry point), [`daemon`] (a daemon inside
//! another program: tests, fuzzers) and [`internals`] (what the benchmarks,
//! fuzz targets and tests reach inside; not a stable API). Everything else
//! is crate-private.

// Crate-private by default: a `pub` item must be reachable from the three
// public modules, or it is a warning (an error under `clippy -D warnings`).
#![warn(unreachable_pub)]

pub mod cli;
pub(crate) mod config;
pub mod daemon;
pub(crate) mod dirs;
pub mod internals;

pub(crate) mod broker;
pub(crate) mod cluster;
pub(crate) mod cmd;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod pipeline;
pub(crate) mod poll;
pub(crate) mod protocol;
pub(crate) mod report;
pub(crate) mod retention;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod store;
pub(crate) mod ui;
pub(crate) mod wire;
pub(crate) mod writer;
