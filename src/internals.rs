//! What the benchmarks (`benches/`, the `bench` crate), the fuzz targets and
//! the integration tests reach inside the daemon. Not a stable API: it
//! exists so that they measure and exercise the daemon's own code and
//! constants instead of copies.

pub use crate::broker::Broker;
pub use crate::config::{Durability, DEFAULT_HISTORY_RETENTION};
pub use crate::model::{is_terminal, Change, State};
pub use crate::pipeline::update_status::{merge, stamp};
pub use crate::pipeline::Write;
pub use crate::protocol::decode::{decode_request, DecodeError};
pub use crate::protocol::encode::{
    encode_event_frame, encode_execution_reply, encode_response, encode_update_event,
};
pub use crate::store::checkpoint::{
    CHECKPOINT_AFTER_CHANGES, CHECKPOINT_POLL, WRITER_AUTOCHECKPOINT_PAGES,
};
pub use crate::store::prune::{prune_floor, PRUNE_MAX_REVISIONS};
pub use crate::store::WRITER_CACHE_KIB;
pub use crate::wire::outbox::Outbox;
pub use crate::wire::socket::WriteHalf;
pub use crate::writer::{
    start as start_writer, Answer, Job, JobResult, Outcome, Running, Writer, WriterConfig,
    WriterStats, MAX_BATCH,
};
