//! The daemon's settings: paths, durability and every bound, each with its
//! flag, its default and the reasoning behind the default. docs/OPERATIONS.md
//! lists the same table for operators.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Default `--max-connections`. sd-varlink allows 4096; 1024 is ample for
/// one machine's runners and watchers and keeps the fd budget well under the
/// usual 1024-soft/524288-hard RLIMIT_NOFILE once raised by the unit file.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default `--max-subscriptions-per-connection`. A UI watching every
/// execution of a busy machine needs hundreds; a runaway loop should meet a
/// clear RESOURCE_EXHAUSTED long before it costs real memory.
pub(crate) const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 1024;

/// Default `--subscriber-queue` (events). Overflow is not loss: the stream
/// catches up from the durable history. So the queue only needs to absorb
/// bursts: 256 events is ~10 s of a model streaming at 25 updates/s.
pub(crate) const DEFAULT_SUBSCRIBER_QUEUE: usize = 256;

/// Default `--connection-queue` (frames waiting for the socket). Bounds the
/// memory one unread connection can hold: at most this many frames (each
/// shared with other subscribers when it is an event).
pub(crate) const DEFAULT_CONNECTION_QUEUE: usize = 1024;

/// Default `--writer-poll-us`: the longest the writer thread polls its
/// queue before sleeping (the window adapts below it, see `crate::poll`).
/// 200 µs covers a writer's round trip on a small VM (reply, client, next
/// update) and is the cap Linux's guest halt-poll uses by default; polling
/// stops by itself when updates come further apart.
pub(crate) const DEFAULT_WRITER_POLL_US: u64 = 200;

/// Default `--reader-poll-us`: the longest a connection worker polls for a
/// lone peer's next request before it sleeps (adaptive below it, see
/// `server::read_poll`). The same cap as the writer's, for the same reason:
/// it covers a peer's round trip on a small VM.
pub(crate) const DEFAULT_READER_POLL_US: u64 = 200;

/// Default `--writer-queue` (updates waiting for the writer thread). Large
/// enough that group commit always finds a full batch under load; when it is
/// full, connections wait to submit (back-pressure), nothing is dropped.
pub(crate) const DEFAULT_WRITER_QUEUE: usize = 4096;

/// Default `--history-retention` (revisions kept for resume). Each history
/// row holds a whole execution state, so with 1 KiB states this is ~100 MiB of
/// disk; a resume from further back gets an explicit RESYNC.
pub const DEFAULT_HISTORY_RETENTION: u64 = 100_000;

/// Default `--max-connections-per-uid`. One user's runaway script must not
/// lock every other user out: a quarter of the total (sd-varlink: 1024 of
/// 4096).
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 256;

/// Default `--slow-consumer-timeout` (seconds). A connection whose socket
/// accepts no bytes for this long while frames wait is closed (its client
/// resumes from its last revision). Long enough for a paused debugger or a
/// swapped-out UI, short enough that a dead peer does not pin its buffers.
pub(crate) const DEFAULT_SLOW_CONSUMER_TIMEOUT_SECS: u64 = 30;

/// Default `--worker-threads`: 0, which [`worker_threads`] turns into one
/// per CPU but one, and at least two where there are two CPUs.
pub(crate) const DEFAULT_WORKER_THREADS: usize = 0;

/// The connection workers to start for `--worker-threads requested` on
/// `cpus` CPUs: `requested`, or for 0 one per CPU but one, at least two
/// (one on a single CPU). Each is a shard: a runtime with one worker thread
/// and its own I/O driver (`server::shards`). Under load the writer thread
/// keeps a CPU busy by itself (it commits, and polls between batches, see
/// `crate::poll`), hence one fewer than CPUs on larger machines. On two
/// vCPUs two shards gave 32 concurrent runners a slightly better paired
/// throughput than one (0.34x against 0.31x XADD, near this VM's noise;
/// fewer idle gaps between a commit and the next requests, ~10% more CPU
/// per update) without costing a lone runner's latency, since each shard
/// polls for its own lone peer (docs/PERFORMANCE.md, session 5).
pub(crate) fn worker_threads(requested: usize, cpus: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        cpus.saturating_sub(1).max(2).min(cpus.max(1))
    }
}

/// Default `--max-reads`: 0, which [`max_reads`] turns into twice the
/// CPUs, between 4 and 32.
pub(crate) const DEFAULT_MAX_READS: usize = 0;

/// The SQLite reads (gets, list pages, a stream's list and catch-up) that
/// may run at once for `--max-reads requested` on `cpus` CPUs: `requested`,
/// or for 0 twice the CPUs, at least 4 and at most 32. Each running read
/// holds a thread of tokio's blocking pool and a read connection (three
/// file descriptors: the database, its WAL and the shared-memory index,
/// and a page cache of up to 2 MiB); without a bound, 200 clients listing
/// at once took the daemon to 193 threads and 535 descriptors (session 11). Reads are
/// CPU work on cached pages, so more than about two per CPU only queue in
/// the kernel instead of here; the extra one per CPU covers a read waiting
/// on the disk.
pub(crate) fn max_reads(requested: usize, cpus: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        cpus.saturating_mul(2).clamp(4, 32)
    }
}

/// How the database syncs commits (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// WAL + synchronous=NORMAL: an acknowledged update survives a crash of
    /// the daemon (even SIGKILL); the last commits may be lost on power loss.
    Normal,
    /// WAL + synchronous=FULL: every commit is fsynced before it is
    /// acknowledged, so acknowledged updates also survive power loss.
    Full,
}

/// `stigmer daemon` flags.
#[derive(Clone, Debug, Args)]
pub struct DaemonArgs {
    /// Database file [default: $STIGMER_DB, else /var/lib/stigmer/stigmer.db
    /// as root, else $XDG_STATE_HOME/stigmer/stigmer.db].
    #[arg(long)]
    pub(crate) db: Option<PathBuf>,

    /// What an acknowledgement survives: `normal` (a daemon crash) or `full`
    /// (also power loss, at the cost of an fsync per commit batch).
    #[arg(long, value_enum, default_value_t = Durability::Normal)]
    pub(crate) durability: Durability,

    /// Largest frame body accepted or sent, in bytes.
    #[arg(long, default_value_t = stigmer_proto::frame::DEFAULT_MAX_FRAME_LENGTH)]
    pub(crate) max_frame_length: usize,

    /// Most connections open at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub(crate) max_connections: usize,

    /// Most open subscriptions on one connection.
    #[arg(long, default_value_t = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION)]
    pub(crate) max_subscriptions_per_connection: usize,

    /// Events queued per subscription before it catches up from history.
    #[arg(long, default_value_t = DEFAULT_SUBSCRIBER_QUEUE)]
    pub(crate) subscriber_queue: usize,

    /// Frames queued per connection waiting for the socket.
    #[arg(long, default_value_t = DEFAULT_CONNECTION_QUEUE)]
    pub(crate) connection_queue: usize,

    /// Most SQLite reads running at once (gets, list pages, streams'
    /// lists and catch-up); more wait their turn. Each holds a thread and
    /// a read connection (0: twice the CPUs, between 4 and 32).
    #[arg(long, default_value_t = DEFAULT_MAX_READS)]
    pub(crate) max_reads: usize,

    /// Share executions with other daemons through this etcd cluster
    /// (comma-separated `http://host:port` endpoints; docs/OPERATIONS.md,
    /// "More than one machine").
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub(crate) etcd: Vec<String>,

    /// The key prefix of this deployment in etcd.
    #[arg(long, value_name = "PREFIX", default_value = "/stigmer")]
    pub(crate) etcd_prefix: String,

    /// With --etcd: how often this daemon compacts etcd's history to what
    /// --history-retention and the executions' states still need, e.g. 1m
    /// or 500ms (0s: never).
    // A minute keeps etcd's keyspace within a minute's writes of the
    // retention for one small request per daemon per minute.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval,
          default_value = "1m")]
    pub(crate) etcd_compaction_interval: std::time::Duration,

    /// Updates queued for the writer thread.
    #[arg(long, default_value_t = DEFAULT_WRITER_QUEUE)]
    pub(crate) writer_queue: usize,

    /// Longest time (µs) the writer thread polls for the next update before
    /// it sleeps; adaptive below this, 0 turns polling off.
    #[arg(long, default_value_t = DEFAULT_WRITER_POLL_US, value_name = "MICROS")]
    pub(crate) writer_poll_us: u64,

    /// Longest time (µs) a connection worker polls for the next request of
    /// a lone peer before it sleeps; adaptive below this, never while
    /// several peers send at once, 0 turns polling off.
    #[arg(long, default_value_t = DEFAULT_READER_POLL_US, value_name = "MICROS")]
    pub(crate) reader_poll_us: u64,

    /// Send a many-execution stream that has sent nothing for this long a
    /// BOOKMARK with the current revision, e.g. 10s or 500ms (0s: never).
    // 10 s (Kubernetes' watch cache bookmarks about once a minute) keeps a
    // quiet session's resume point fresh for one ~10-byte frame per idle
    // stream per interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval,
          default_value = "10s")]
    pub(crate) bookmark_interval: std::time::Duration,

    /// Revisions of history kept so streams can resume.
    #[arg(long, default_value_t = DEFAULT_HISTORY_RETENTION)]
    pub(crate) history_retention: u64,

    /// Delete executions that finished (completed, failed, cancelled or
    /// terminated) longer ago than this, e.g. 30d or 12h [default: off:
    /// executions are kept until deleted].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) keep_finished: Option<std::time::Duration>,

    /// Most connections open at once from one uid.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS_PER_UID)]
    pub(crate) max_connections_per_uid: usize,

    /// Close a connection whose socket has accepted no bytes for this many
    /// seconds while frames wait for it (0: never).
    #[arg(long, default_value_t = DEFAULT_SLOW_CONSUMER_TIMEOUT_SECS)]
    pub(crate) slow_consumer_timeout: u64,

    /// Also admit members of this group (repeatable). The socket file then
    /// gets the first such group and mode 0660 unless --socket-mode says
    /// otherwise. Root and the daemon's own uid are always admitted.
    #[arg(long = "allow-group", value_name = "NAME")]
    pub(crate) allow_groups: Vec<String>,

    /// Mode of the socket file we bind, in octal [default: 0600, or 0660
    /// with --allow-group]. Ignored under socket activation (the unit sets it).
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub(crate) socket_mode: Option<u32>,

    /// Under socket activation, exit after this many seconds without any
    /// connection; the socket unit starts the daemon again on the next one
    /// (0: never).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub(crate) idle_exit: u64,

    /// Serve Prometheus metrics over HTTP on this loopback address (e.g.
    /// 127.0.0.1:9464). Non-loopback addresses are refused.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,

    /// Connection workers, each a single-threaded runtime with its own
    /// event loop; connections are spread over them (0: one per CPU but
    /// one, at least two on two or more CPUs). SQLite has its own writer
    /// thread besides these.
    #[arg(long, default_value_t = DEFAULT_WORKER_THREADS)]
    pub(crate) worker_threads: usize,

    /// Log filter (tracing's syntax, e.g. `info`, `stigmer=debug`); RUST_LOG
    /// is used when this is not given.
    #[arg(long)]
    pub(crate) log_level: Option<String>,
}

impl DaemonArgs {
    /// The database path after applying the defaults.
    pub(crate) fn db_path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(stigmer_client::paths::default_db_path)
    }
}

/// A duration such as `30d`, `12h` or `90s` (humantime's syntax), not zero.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (e.g. 30d, 12h, 90s)")),
    }
}

/// A duration that may be zero (meaning "off").
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s, 500ms, 0s)"))
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{text:?} is not an octal mode like 0660"))?;
    if mode > 0o777 {
        return Err(format!("{text} is not a file mode (at most 0777)"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_leave_a_cpu_to_the_writer_beyond_two() {
        assert_eq!(worker_threads(0, 1), 1);
        assert_eq!(worker_threads(0, 2), 2);
        assert_eq!(worker_threads(0, 3), 2);
        assert_eq!(worker_threads(0, 8), 7);
        // An explicit count is kept, even above the CPUs.
        assert_eq!(worker_threads(3, 2), 3);
        assert_eq!(worker_threads(1, 8), 1);
    }

    #[test]
    fn reads_are_twice_the_cpus_between_4_and_32() {
        assert_eq!(max_reads(0, 1), 4);
        assert_eq!(max_reads(0, 2), 4);
        assert_eq!(max_reads(0, 6), 12);
        assert_eq!(max_reads(0, 64), 32);
        assert_eq!(max_reads(0, usize::MAX), 32);
        assert_eq!(max_reads(1, 64), 1);
    }
}
