//! stigmer's protobuf messages and framing constants, shared by the daemon and
//! its Rust client.
//!
//! - [`agentexecution`], [`apiresource`], [`executioncontext`]: upstream
//!   Stigmer's data model, wire-identical (same packages, names, field numbers
//!   and enum values), so bytes encoded by an upstream program decode here.
//! - [`daemon`]: the daemon's envelopes (`Request`, `Response`, `Event`, ...).
//! - [`delta`]: applying, diffing and stamping the operations of a delta.
//! - [`frame`]: the length-delimited framing of docs/PROTOCOL.md.
//!
//! Every message also implements serde with the canonical proto3 JSON mapping
//! (via pbjson), which the CLI's `-o json` prints.

#![allow(clippy::all, missing_docs)]

pub mod delta;
pub mod frame;

/// Generated code, laid out by protobuf package.
pub mod ai {
    pub mod stigmer {
        pub mod commons {
            pub mod apiresource {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/ai.stigmer.commons.apiresource.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/ai.stigmer.commons.apiresource.serde.rs"
                ));
            }
        }
        pub mod agentic {
            pub mod executioncontext {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/ai.stigmer.agentic.executioncontext.v1.rs"
                    ));
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/ai.stigmer.agentic.executioncontext.v1.serde.rs"
                    ));
                }
            }
            pub mod agentexecution {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/ai.stigmer.agentic.agentexecution.v1.rs"
                    ));
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/ai.stigmer.agentic.agentexecution.v1.serde.rs"
                    ));
                }
            }
        }
    }
}

/// The daemon's envelope messages (package `stigmer.daemon.v1`).
pub mod stigmer {
    pub mod daemon {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/stigmer.daemon.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/stigmer.daemon.v1.serde.rs"));
        }
    }
}

pub use ai::stigmer::agentic::agentexecution::v1 as agentexecution;
pub use ai::stigmer::agentic::executioncontext::v1 as executioncontext;
pub use ai::stigmer::commons::apiresource;
pub use stigmer::daemon::v1 as daemon;

/// The protobuf well-known types used by the data model (Struct, Timestamp).
pub use pbjson_types as wkt;
pub use prost;
pub use prost::Message;
