//! The write pipelines: every change to an execution runs as a list of named
//! steps over a context, so the path a request takes is written down in one
//! place per command and each step does one thing.
//!
//! - [`update_status`]: validate -> load -> build -> persist -> broadcast.
//! - [`create`]: validate -> build -> persist -> broadcast.
//! - [`delete`]: validate -> load -> persist -> broadcast.
//!
//! `validate` runs on the connection's task before the request is queued (a
//! refusal costs no disk access); the middle steps run on the writer thread
//! inside its transaction (which makes them atomic per execution);
//! `broadcast` runs on the writer thread after COMMIT ([`Broadcast`]).

pub mod create;
pub mod delete;
pub mod update_status;
pub mod validate;

use std::sync::Arc;
use std::time::SystemTime;

use crate::broker::Broker;
use crate::protocol::Status;
use crate::store::Change;

/// One named step of a pipeline over context `C`.
pub trait Step<C>: Sync {
    /// The step's name, shown in traces.
    fn name(&self) -> &'static str;
    /// Does the step's one job, or refuses with a status.
    fn run(&self, ctx: &mut C) -> Result<(), Status>;
}

/// Steps run in order; the first refusal stops the pipeline. `S` is the
/// step trait object, e.g. `dyn Step<Input>`, or a higher-ranked one for
/// contexts that borrow the writer's transaction.
pub struct Pipeline<S: ?Sized + 'static> {
    /// The pipeline's name, shown in traces.
    pub name: &'static str,
    /// The steps, in order.
    pub steps: &'static [&'static S],
}

impl<S: ?Sized> Pipeline<S> {
    /// Runs every step on `ctx`.
    pub fn run<C>(&self, ctx: &mut C) -> Result<(), Status>
    where
        S: Step<C>,
    {
        for step in self.steps {
            if let Err(status) = step.run(ctx) {
                tracing::debug!(pipeline = self.name, step = step.name(), %status, "refused");
                return Err(status);
            }
        }
        Ok(())
    }
}

/// The last step of every write pipeline: hands a committed change to the
/// broker. The writer thread calls it after COMMIT, in revision order.
pub struct Broadcast {
    broker: Arc<Broker>,
}

impl Broadcast {
    /// A broadcast step publishing to `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// Publishes one transaction's committed changes; never blocks.
    pub fn run(&self, changes: &[Arc<Change>]) {
        self.broker.publish_all(changes);
    }
}

/// RFC 3339 with microseconds, UTC: the format of upstream's string times.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A protobuf Timestamp.
pub fn timestamp(t: SystemTime) -> stigmer_proto::wkt::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    stigmer_proto::wkt::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
