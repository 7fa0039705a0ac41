//! The daemon's measurements: plain atomics owned by the part that counts,
//! so a hot path pays one relaxed add.
//!
//! - [`histogram`]: a lock-free latency histogram.
//! - [`exposition`]: the Prometheus text format.
//! - [`counters`]: the connection and stream counters (the writer and the
//!   broker keep theirs beside their code).

pub(crate) mod counters;
pub(crate) mod exposition;
pub(crate) mod histogram;

pub(crate) use counters::{ConnectionStats, StreamStats};
pub(crate) use exposition::{Exposition, Kind};
pub(crate) use histogram::Histogram;
