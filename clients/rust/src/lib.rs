//! Rust client for the stigmer daemon (docs/PROTOCOL.md).
//!
//! (Being written: see clients/rust/README.md once it exists.)

pub mod paths;

pub use stigmer_proto as proto;
