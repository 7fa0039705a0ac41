//! Staying awake while work comes close together: on a small VM a wake-up
//! of a halted vCPU costs tens of microseconds, so a thread that will soon
//! have work polls for it a short, adaptive while before it sleeps.
//!
//! - [`window`]: the adaptive window ([`PollWindow`]), shared by both polls.
//! - [`read`]: the connection workers' poll for a lone peer's next request
//!   ([`ReadPoll`]).

pub(crate) mod read;
pub(crate) mod window;

pub(crate) use read::ReadPoll;
pub(crate) use window::{nanos, PollWindow, Polled};
