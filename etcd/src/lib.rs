//! An etcd v3 client for stigmer's multi-host mode (issue 20: daemons on
//! many hosts share executions through an etcd cluster). It speaks etcd's
//! gRPC API through tonic, with code generated at build time from this
//! crate's own subset of etcd's protobuf files (`proto/`) by a pure-Rust
//! compiler, so building needs no `protoc` (the `etcd-client` crate needs
//! one). See README.md for the design.
//!
//! Module map:
//! - [`options`]: [`Options`], every bound (timeouts, keepalive, the largest
//!   response) and its default, with the reasoning.
//! - [`error`]: [`Error`], and how etcd's and the transport's gRPC statuses
//!   map to it (`Unavailable`, `Compacted`, `FutureRevision`,
//!   `RequestTooLarge`, `Grpc`); which failures may be retried on another
//!   member.
//! - [`kv`]: the key-value requests ([`Range`], [`Put`], [`Delete`]), their
//!   responses, [`KeyValue`], [`prefix_end`].
//! - [`txn`]: transactions: [`Compare`]s, [`Op`]s, [`Txn`], [`TxnResponse`].
//! - [`cluster`]: a member's [`Status`] and the [`Member`] list.
//! - [`client`]: [`Client`]: the connections to the members, failover, and
//!   the unary calls.
//! - [`watch`]: [`Client::watch`], the [`Watch`] stream of [`WatchEvent`]s.
//! - [`proto`]: the generated messages and gRPC clients.

pub mod client;
pub mod cluster;
pub mod error;
pub mod kv;
pub mod options;
pub mod txn;
pub mod watch;

/// Generated from `proto/` by build.rs: etcd's messages and gRPC clients,
/// under etcd's package names.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    /// etcd's `mvccpb` package: `KeyValue`, `Event`.
    pub mod mvccpb {
        include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    }
    /// etcd's `etcdserverpb` package: the KV, Watch, Cluster and
    /// Maintenance services.
    pub mod etcdserverpb {
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    }
}

pub use client::Client;
pub use cluster::{Member, Status};
pub use error::{Code, Error, Result};
pub use kv::{
    prefix_end, Delete, DeleteResponse, Header, KeyValue, Put, PutResponse, Range, RangeResponse,
};
pub use options::Options;
pub use txn::{Compare, CompareOp, Op, OpResponse, Txn, TxnResponse};
pub use watch::{Event, EventKind, Watch, WatchEvent, WatchOptions};
