//! Wires the daemon together: [`run`] for the `stigmer daemon` command, and
//! [`Daemon`] for running it inside another program (tests, fuzzers,
//! benchmarks), which get the same daemon without spawning a process.
//!
//! Start-up order matters: the database lock first (two daemons must never
//! share a database), then the database and the writer thread, then the
//! socket, and only then is the daemon ready. Shutdown runs the other way:
//! stop accepting and reading, let every stream send END_REASON_SHUTDOWN
//! with its last revision and every in-flight write finish, then stop the
//! writer thread (which drains its queue and checkpoints the WAL).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::cmd::Context;
use crate::config::Durability;
use crate::metrics::{ConnectionStats, StreamStats};
use crate::model::Revisions;
use crate::poll::ReadPoll;
use crate::report::Sources;
use crate::server::{self, peer, Limits, Shared};
use crate::service::activation;
use crate::service::notify::{self, Notifier};
use crate::store::{self, DbLock, Reader};
use crate::writer::{self, Writer, WriterConfig};

pub use crate::config::DaemonArgs;
pub use crate::service::activation::Activation;

/// How long shutdown waits for connections to write their streams' END
/// events and in-flight replies. A peer that does not read could hold its
/// connection forever; 800 ms is ample for everyone else and keeps the whole
/// shutdown (grace, writer drain, WAL checkpoint) within one second.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// Bytes of envelope around an execution in the largest frame that carries
/// one (Response id, Event type, revision, execution id and field headers,
/// well under this), so every stored state can be streamed back.
const ENVELOPE_ALLOWANCE: usize = 512;

/// How often STATUS= is refreshed for `systemctl status`.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the daemon in the foreground until SIGTERM/SIGINT; builds its own
/// tokio runtime. Returns the process exit code.
pub fn run(socket: PathBuf, args: DaemonArgs) -> ExitCode {
    init_tracing(args.log_level.as_deref());
    // SAFETY: no other thread exists yet: the runtime is built below and
    // tracing's subscriber starts none.
    let activation = match unsafe { activation::take_listener() } {
        Ok(activation) => activation,
        Err(message) => {
            eprintln!("stigmer daemon: {message}");
            return ExitCode::FAILURE;
        }
    };
    // The first connection shard (`server::shards`); `Daemon::start` adds
    // the others.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1);
    let runtime = match builder.enable_all().thread_name("stigmer-worker").build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("stigmer daemon: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Signal handlers go in before READY=1: a SIGTERM that arrives just
        // after the service manager hears READY must shut down gracefully,
        // not kill the process with the default action.
        let mut stop_signals = StopSignals::install()?;
        let notifier = Notifier::from_env();
        let idle_exit = (activation.is_activated() && args.idle_exit > 0)
            .then(|| Duration::from_secs(args.idle_exit));
        let daemon = Daemon::start(&socket, &args, activation).await?;
        notifier.ready(&daemon.status_line());
        let background = daemon.spawn_service_tasks(notifier.clone());
        tokio::select! {
            _ = stop_signals.wait() => {}
            _ = wait_idle(&daemon, idle_exit) => {
                tracing::info!("idle: exiting until the socket unit starts the daemon again");
            }
        }
        notifier.stopping();
        background.abort();
        daemon.shutdown().await
    });
    // Tasks still running after the grace period (peers that do not read)
    // are dropped here; they hold no acknowledged write.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Printed once, for a person (under systemd, stderr is the
            // journal too): not also as a log line.
            eprintln!("stigmer daemon: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .unwrap_or_else(|| EnvFilter::new("info"));
    // Under systemd, journald stamps each line; do not print a second time.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // Colours only for a person at a terminal, never in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if under_journald {
        let _ = builder.without_time().with_ansi(false).try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// SIGTERM and SIGINT handlers, installed before READY=1 so that no stop
/// request can take the default action (immediate death) once the service
/// manager believes the daemon is up.
struct StopSignals {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, String> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            sigterm: signal(SignalKind::terminate())
                .map_err(|e| format!("cannot handle SIGTERM: {e}"))?,
            sigint: signal(SignalKind::interrupt())
                .map_err(|e| format!("cannot handle SIGINT: {e}"))?,
        })
    }

    /// Waits for a stop signal (signals received since `install` count).
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = self.sigint.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

/// Resolves when the daemon has had no connection for `idle` (never when
/// `idle` is None).
async fn wait_idle(daemon: &Daemon, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    // Checks a few times per idle period; an idle timer needs no precision.
    let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if daemon.shared.stats.idle_for().is_some_and(|t| t >= idle) {
            return;
        }
    }
}

/// A running daemon inside this process.
pub struct Daemon {
    /// What the server's connections share.
    shared: Arc<Shared>,
    /// What the status report reads.
    sources: Arc<Sources>,
    /// Submits writes (kept to stop the writer thread at shutdown).
    writer: Writer,
    tracker: TaskTracker,
    accept: tokio::task::JoinHandle<()>,
    bound: server::listener::Bound,
    socket: PathBuf,
    writer_thread: std::thread::JoinHandle<()>,
    /// The connection shards beyond the caller's runtime.
    shards: server::shards::Shards,
    revisions: Arc<Revisions>,
    next_stream_id: std::sync::atomic::AtomicU64,
    _lock: DbLock,
}

impl Daemon {
    /// Opens the database, binds the socket and starts serving. Must be
    /// called inside a tokio runtime.
    pub async fn start(
        socket: &Path,
        args: &DaemonArgs,
        activation: Activation,
    ) -> Result<Daemon, String> {
        if args.max_frame_length <= ENVELOPE_ALLOWANCE || args.max_frame_length > u32::MAX as usize
        {
            return Err(format!(
                "--max-frame-length must be between {} and {}",
                ENVELOPE_ALLOWANCE + 1,
                u32::MAX
            ));
        }
        let db_path = args.db_path();
        let groups = peer::resolve_groups(&args.allow_groups)?;
        // Every check that creates nothing comes first, so that a refused
        // start leaves no file behind: the socket's path and directory (no
        // live daemon on it), the database's directory, the metrics address.
        let socket_checked = match activation {
            Activation::None => Some(server::listener::check(socket)?),
            _ => None,
        };
        if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::dirs::check(dir, "database directory")?;
        }
        let metrics_listener = match args.metrics_listen {
            Some(addr) => Some(crate::report::http::bind(addr).await?),
            None => None,
        };
        // Then what creates files: the database's directory and lock (which
        // also keeps a second daemon off this database), the database.
        let lock = store::lock_database(&db_path)?;
        let broker = Arc::new(Broker::new(args.subscriber_queue));
        // Opens and migrates the database, then starts the writer thread,
        // which broadcasts every commit to `broker`.
        let running = writer::start(
            WriterConfig {
                path: db_path.clone(),
                durability: args.durability,
                queue: args.writer_queue,
                poll: Duration::from_micros(args.writer_poll_us),
                history_retention: args.history_retention,
                max_execution_bytes: crate::cluster::max_execution_bytes(
                    args.max_frame_length - ENVELOPE_ALLOWANCE,
                    !args.etcd.is_empty(),
                ),
                cluster: !args.etcd.is_empty(),
            },
            broker.clone(),
        )?;
        let bound = match (activation, socket_checked) {
            (Activation::Systemd(listener) | Activation::Launchd(listener), _) => {
                tracing::info!("using the socket passed by the service manager");
                server::listener::Bound::activated(listener)
            }
            (Activation::None, Some(checked)) => {
                let default_mode = if groups.is_empty() { 0o600 } else { 0o660 };
                let mode = args.socket_mode.unwrap_or(default_mode);
                server::listener::bind(checked, mode, groups.first().map(|(_, gid)| *gid))?
            }
            (Activation::None, None) => return Err("the socket was not checked".into()),
        };
        // The socket actually in use: a service manager's may differ from
        // `--socket` (and from the default path).
        let socket = bound.path().unwrap_or_else(|| socket.to_path_buf());
        let socket = socket.as_path();
        let listener = bound
            .listener
            .try_clone()
            .and_then(UnixListener::from_std)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards =
            server::shards::Shards::start(crate::config::worker_threads(args.worker_threads, cpus))
                .map_err(|e| format!("cannot start the connection workers: {e}"))?;
        let shard_handles = shards.handles();
        let shard_count = shard_handles.len();
        // One pool for every read of the daemon, so --max-reads bounds them
        // all (the retention sweep's too).
        let reader = Reader::new(
            db_path.clone(),
            crate::config::max_reads(args.max_reads, cpus),
        );
        let shutdown = CancellationToken::new();
        let connections = Arc::new(ConnectionStats::with_shards(shard_count));
        let streams = Arc::new(StreamStats::default());
        let read_poll = Arc::new(ReadPoll::new(
            Duration::from_micros(args.reader_poll_us),
            shard_count,
        ));
        // The cluster mode (--etcd): the client lives on this runtime (the
        // first shard's, which lasts as long as the daemon), as does the
        // replica's watch.
        let cluster = if args.etcd.is_empty() {
            None
        } else {
            let client =
                stigmer_etcd::Client::connect(&args.etcd, stigmer_etcd::Options::default())
                    .await
                    .map_err(|e| format!("--etcd: {e}"))?;
            let cluster =
                crate::cluster::Cluster::new(client, &args.etcd_prefix, running.revisions.last());
            tokio::spawn(crate::cluster::replica::run(
                cluster.clone(),
                running.writer.clone(),
                reader.clone(),
                shutdown.clone(),
            ));
            tokio::spawn(crate::cluster::compact::run(
                cluster.clone(),
                reader.clone(),
                args.history_retention,
                args.etcd_compaction_interval,
                shutdown.clone(),
            ));
            tracing::info!(endpoints = ?args.etcd, prefix = %args.etcd_prefix, "sharing executions through etcd");
            Some(cluster)
        };
        let sources = Arc::new(Sources {
            started: std::time::Instant::now(),
            socket: socket.to_path_buf(),
            database: db_path.clone(),
            durability: match args.durability {
                Durability::Normal => "normal",
                Durability::Full => "full",
            },
            revisions: running.revisions.clone(),
            writer: running.stats.clone(),
            broker: broker.clone(),
            connections: connections.clone(),
            streams: streams.clone(),
            read_poll: read_poll.clone(),
            cluster: cluster.clone(),
        });
        let context = Arc::new(Context {
            writer: running.writer.clone(),
            cluster,
            reader: reader.clone(),
            broker,
            revisions: running.revisions.clone(),
            stream_stats: streams,
            report: sources.clone(),
            max_frame_length: args.max_frame_length,
            max_subscriptions_per_connection: args.max_subscriptions_per_connection,
            bookmark_interval: (!args.bookmark_interval.is_zero())
                .then_some(args.bookmark_interval),
            shutdown: shutdown.clone(),
        });
        let shared = Arc::new(Shared {
            context,
            limits: Limits {
                max_frame_length: args.max_frame_length,
                max_connections: args.max_connections,
                max_connections_per_uid: args.max_connections_per_uid,
                connection_queue: args.connection_queue,
                slow_consumer_timeout: (args.slow_consumer_timeout > 0)
                    .then(|| Duration::from_secs(args.slow_consumer_timeout)),
            },
            policy: peer::AccessPolicy::new(groups),
            stats: connections,
            shards: shard_handles,
            shutdown,
            read_poll,
        });
        shared.stats.mark_idle_now();
        let tracker = TaskTracker::new();
        if let Some(http) = metrics_listener {
            tracing::info!(addr = ?http.local_addr().ok(), "serving Prometheus metrics at /metrics");
            tracker.spawn(crate::report::http::serve(
                http,
                sources.clone(),
                shared.shutdown.clone(),
            ));
        }
        if let Some(keep) = args.keep_finished {
            tracker.spawn(crate::retention::run(
                keep,
                reader,
                running.writer.clone(),
                shared.context.cluster.clone(),
                shared.shutdown.clone(),
            ));
        }
        let accept = tokio::spawn(server::run(listener, shared.clone(), tracker.clone()));
        tracing::info!(
            socket = %socket.display(),
            db = %db_path.display(),
            revision = running.revisions.last(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        Ok(Daemon {
            shared,
            sources,
            writer: running.writer,
            tracker,
            accept,
            bound,
            socket: socket.to_path_buf(),
            writer_thread: running.thread,
            shards,
            revisions: running.revisions,
            next_stream_id: std::sync::atomic::AtomicU64::new(1 << 48),
            _lock: lock,
        })
    }

    /// Serves an already-connected stream as if it had been accepted (for
    /// fuzzing dispatch in process over a socketpair).
    pub fn serve_stream(&self, stream: UnixStream) {
        let id = self
            .next_stream_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .stats
            .connections_open
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.tracker.spawn(server::connection::serve(
            id,
            0,
            stream,
            self.shared.clone(),
        ));
    }

    /// One line for systemd's STATUS=.
    pub(crate) fn status_line(&self) -> String {
        crate::report::status_line(&self.sources)
    }

    /// Keeps systemd informed: STATUS= every few seconds and WATCHDOG=1 at
    /// half the watchdog interval. Aborted at shutdown.
    pub(crate) fn spawn_service_tasks(&self, notifier: Notifier) -> tokio::task::JoinHandle<()> {
        let sources = self.sources.clone();
        tokio::spawn(async move {
            if !notifier.enabled() {
                return;
            }
            let watchdog = notify::watchdog_interval().map(|t| t / 2);
            let tick = watchdog.unwrap_or(STATUS_INTERVAL).min(STATUS_INTERVAL);
            let mut timer = tokio::time::interval(tick);
            loop {
                // Waits for the next tick.
                timer.tick().await;
                if watchdog.is_some() {
                    notifier.watchdog();
                }
                notifier.status(&crate::report::status_line(&sources));
            }
        })
    }

    /// Stops gracefully: END_REASON_SHUTDOWN on every stream, in-flight
    /// writes committed, WAL checkpointed, socket file removed.
    pub async fn shutdown(self) -> Result<(), String> {
        self.shared.shutdown.cancel();
        let _ = self.accept.await;
        self.tracker.close();
        // Waits for every connection to flush its END events and replies.
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within the grace period");
        }
        self.bound.remove_file(&self.socket);
        // The writer commits what is queued, checkpoints the WAL and exits
        // (connections stuck on a peer that never reads may still hold a
        // handle; their later writes are refused). Joining it blocks, so it
        // runs on the blocking pool.
        self.writer.stop().await;
        let Daemon {
            shared,
            sources,
            writer,
            writer_thread,
            shards,
            revisions,
            ..
        } = self;
        drop((shared, sources, writer));
        // Connections past the grace period (peers that do not read) are
        // dropped with their shard (without blocking, see `Shards`'s
        // `Drop`); they hold no acknowledged write.
        drop(shards);
        let joined = tokio::task::spawn_blocking(move || writer_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            return Err("the writer thread panicked".into());
        }
        tracing::info!(revision = revisions.last(), "stopped");
        Ok(())
    }
}
