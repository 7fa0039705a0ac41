//! The sizes of one run: the CI defaults, and the `TORTURE_*` environment
//! variables that make a long run (docs/RELIABILITY.md).

use std::time::Duration;

/// Sizes of one run. The defaults are the CI form; `TORTURE_*` environment
/// variables make a long run (docs/RELIABILITY.md).
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub writers: usize,
    /// Executions kept live at once (more are created as others end).
    pub executions: usize,
    pub subscribers: usize,
    /// Many-execution streams (`subscribe` by session, or all), each
    /// following its selection for the whole run.
    pub watchers: usize,
    /// Sessions the executions are spread over.
    pub sessions: usize,
    /// Acknowledged updates before the workload stops (at least).
    pub updates: u64,
    /// SIGKILLs (crash runs only).
    pub kills: u64,
    /// Longest stall of a stalling subscriber.
    pub max_stall: Duration,
    /// RESYNC events are legitimate (small history retention).
    pub allow_resync: bool,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

impl Config {
    /// The CI defaults, overridden by `TORTURE_SEED`, `TORTURE_WRITERS`,
    /// `TORTURE_EXECUTIONS`, `TORTURE_SUBSCRIBERS`, `TORTURE_WATCHERS`,
    /// `TORTURE_SESSIONS`, `TORTURE_UPDATES`, `TORTURE_KILLS`,
    /// `TORTURE_MAX_STALL_MS`.
    pub fn from_env(updates: u64, kills: u64) -> Config {
        let default_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Config {
            seed: env_u64("TORTURE_SEED", default_seed),
            writers: env_u64("TORTURE_WRITERS", 4) as usize,
            executions: env_u64("TORTURE_EXECUTIONS", 8) as usize,
            subscribers: env_u64("TORTURE_SUBSCRIBERS", 12) as usize,
            watchers: env_u64("TORTURE_WATCHERS", 6) as usize,
            sessions: env_u64("TORTURE_SESSIONS", 3).max(1) as usize,
            updates: env_u64("TORTURE_UPDATES", updates),
            kills: env_u64("TORTURE_KILLS", kills),
            max_stall: Duration::from_millis(env_u64("TORTURE_MAX_STALL_MS", 2000)),
            allow_resync: false,
        }
    }
}
