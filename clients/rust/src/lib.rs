//! Rust client for the stigmer daemon (docs/PROTOCOL.md).
//!
//! AI agent runners report the progress of their executions to the daemon;
//! watchers subscribe to see each committed change live. This crate speaks
//! the daemon's protocol (length-delimited protobuf frames on a Unix socket)
//! behind a typed API.
//!
//! ```no_run
//! use futures::StreamExt;
//! use stigmer_client::{Client, Event, NewExecution};
//!
//! # async fn demo() -> stigmer_client::Result<()> {
//! let client = Client::connect_default().await?;
//! let (execution, _rev) = client.create(NewExecution::new("agent-1", "Summarise the README")).await?;
//! let id = execution.metadata.map(|m| m.id).unwrap_or_default();
//! let mut events = client.subscribe(&id, None).await?;
//! while let Some(event) = events.next().await {
//!     match event? {
//!         Event::End { reason, .. } => { println!("ended: {reason:?}"); break }
//!         e => println!("revision {}", e.revision()),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # One connection, many calls
//!
//! A [`Client`] is cheap to clone and every clone shares one connection. Any
//! number of calls and subscriptions may be in flight at once: each request
//! gets its own id (non-zero, counting up), one background task reads
//! replies and routes them by id, one writes requests in the order they were
//! made (so two `update_status` calls made one after the other from one task
//! are applied in that order). If the connection dies, the next call opens a
//! new one; a call in flight at that moment fails with [`Error::Closed`].
//!
//! # Subscriptions resume
//!
//! [`Client::subscribe`] returns a [`Subscription`], a `futures::Stream` of
//! [`Event`]s: a snapshot (or, with `from_revision`, the changes after it),
//! then every committed change. The stream survives the daemon restarting:
//!
//! - When the connection drops, or the daemon ends the stream with
//!   `END_REASON_SHUTDOWN` or `END_REASON_SLOW_CONSUMER`, the subscription
//!   reconnects with jittered exponential backoff ([`Reconnect`]: 50 ms
//!   doubling to at most 2 s by default, optionally giving up after a while
//!   with [`Error::GaveUp`]) and resubscribes with `from_revision` = the last
//!   revision it delivered.
//! - The daemon replays the changes after that revision from its durable
//!   history, so the consumer sees every revision exactly once and in order.
//!   If the history no longer reaches back, the consumer gets an explicit
//!   [`Event::Resync`] with the whole current state instead.
//! - As defence in depth, any event whose revision is at or below the last
//!   delivered one is dropped.
//! - A consumer that falls [`Config::stream_queue`] events behind does not
//!   stall the connection: its stream is dropped and resubscribed from the
//!   last delivered revision, losing nothing.
//!
//! [`Subscription::on_notice`] reports each break and each resumption, so a
//! program can tell its user it is reconnecting.
//!
//! The stream ends after an [`Event::End`] (terminal phase, deletion, or
//! cancel) or an error (e.g. `NOT_FOUND`). Turn resuming off with
//! [`Config::resume`].
//!
//! # Watching many executions
//!
//! [`Client::watch`] follows every execution of a session
//! ([`Selector::Session`]), or of the machine ([`Selector::All`]), as one
//! [`Watch`]: a `futures::Stream` of [`WatchEvent`]s (the initial list as
//! snapshots and an end-of-list bookmark, then created, updated, deleted,
//! and bookmarks) that resumes like a subscription, plus a local cache of
//! every execution at its revision ([`Watch::cache`]), kept by applying
//! each event (deltas included) as client-go's informer does. A dashboard
//! reads the cache; `stigmer top` is one.
//!
//! ```no_run
//! use futures::StreamExt;
//! use stigmer_client::{Client, Selector, WatchOptions};
//!
//! # async fn demo() -> stigmer_client::Result<()> {
//! let client = Client::connect_default().await?;
//! let mut watch = client.watch(Selector::session("s-1"), WatchOptions::default()).await?;
//! while let Some(event) = watch.next().await {
//!     let event = event?;
//!     println!("{} {:?}: {} cached", event.kind(), event.execution_id(), watch.cache().len());
//! }
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Every failure is an [`Error`]. Answers from the daemon are
//! [`Error::Status`] with the protocol's [`proto::daemon::Code`]
//! (`err.code()`); for example an update of a cancelled execution fails with
//! `FAILED_PRECONDITION`, which is how a runner learns it should stop.
//!
//! # Whom the client talks to
//!
//! Right after connecting, before sending anything, the client reads the
//! socket's peer credentials (`SO_PEERCRED` on Linux, `getpeereid` on macOS)
//! and refuses a daemon whose uid is neither root, nor the process's own,
//! nor [`Config::expected_uid`] ([`Error::UntrustedDaemon`]). When the socket
//! is in the fallback directory `/tmp/stigmer-<uid>/`, that directory must
//! be the user's own, mode 0700, not a symlink ([`Error::UnsafeDirectory`]).
//! Together they defeat another local user binding the socket path first
//! (docs/SECURITY.md).
//!
//! # Blocking
//!
//! [`blocking::Client`] offers the same API without async, and a blocking
//! iterator for subscriptions.

#![warn(missing_docs)]

pub mod blocking;
mod client;
mod config;
mod conn;
mod error;
pub mod paths;
mod resume;
mod subscription;
mod watch;

pub use client::{is_not_found, Client, ListFilter, NewExecution, Page};
pub use config::{Config, Reconnect};
pub use error::{Error, Result};
pub use resume::Notice;
/// The protocol's messages (re-exported `stigmer-proto`).
pub use stigmer_proto as proto;
/// The protocol's status codes, for matching on [`Error::code`].
pub use stigmer_proto::daemon::Code;
pub use subscription::{end_reason_name, Event, Subscription};
pub use watch::{Cache, Cached, Selector, Watch, WatchEvent, WatchOptions};
