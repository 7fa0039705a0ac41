//! Wires the daemon together and runs it until SIGTERM or SIGINT.
//!
//! Start-up order matters: the database lock first (two daemons must never
//! share a database), then the database and the writer thread, then the
//! socket, and only then is the daemon ready. Shutdown runs the other way:
//! stop accepting and reading, let every stream send END_REASON_SHUTDOWN
//! with its last revision and every in-flight write finish, then stop the
//! writer thread (which drains its queue and checkpoints the WAL).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::DaemonArgs;
use crate::pipeline::Broadcast;
use crate::server::{self, Limits, ServerStats, Shared};
use crate::store::{self, StoreConfig};

/// How long shutdown waits for connections to write their streams' END
/// events and in-flight replies. A peer that does not read could hold its
/// connection forever; one second is ample for everyone else.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Bytes of envelope around an execution in the largest frame that carries
/// one (Response id, Event type, revision, execution id and field headers,
/// well under this), so every stored state can be streamed back.
const ENVELOPE_ALLOWANCE: usize = 512;

/// Runs the daemon in the foreground until SIGTERM/SIGINT; builds its own
/// tokio runtime. Returns the process exit code.
pub fn run(socket: PathBuf, args: DaemonArgs) -> ExitCode {
    init_tracing(args.log_level.as_deref());
    match run_daemon(socket, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if under_journald {
        let _ = builder.without_time().with_ansi(false).try_init();
    } else {
        let _ = builder.try_init();
    }
}

fn run_daemon(socket: PathBuf, args: DaemonArgs) -> Result<(), String> {
    if args.max_frame_length <= ENVELOPE_ALLOWANCE || args.max_frame_length > u32::MAX as usize {
        return Err(format!(
            "--max-frame-length must be between {} and {}",
            ENVELOPE_ALLOWANCE + 1,
            u32::MAX
        ));
    }
    let db_path = args.db_path();
    let _lock = store::lock_database(&db_path)?;
    let broker = Arc::new(Broker::new(args.subscriber_queue));
    let broadcast = Broadcast::new(broker.clone());
    let store = store::open(
        &StoreConfig {
            path: db_path.clone(),
            durability: args.durability,
            writer_queue: args.writer_queue,
            history_retention: args.history_retention,
            max_execution_bytes: args.max_frame_length - ENVELOPE_ALLOWANCE,
        },
        Box::new(move |change| broadcast.run(change)),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stigmer-worker")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;

    let bound = server::listener::bind(&socket)?;
    let shared = Arc::new(Shared {
        writer: store.writer,
        reader: store.reader,
        revisions: store.revisions.clone(),
        broker,
        limits: Limits {
            max_frame_length: args.max_frame_length,
            max_connections: args.max_connections,
            max_subscriptions_per_connection: args.max_subscriptions_per_connection,
            connection_queue: args.connection_queue,
        },
        shutdown: CancellationToken::new(),
        stats: ServerStats::default(),
    });
    let result = runtime.block_on(serve(bound.listener.try_clone(), shared.clone(), &socket, &db_path));
    bound.remove_file(&socket);
    // Tasks still running after the grace period (peers that do not read)
    // are dropped here; they hold no acknowledged write.
    runtime.shutdown_timeout(Duration::from_millis(100));
    // The last handle to the writer goes with `shared`: the writer thread
    // commits what is queued, checkpoints the WAL and exits.
    drop(shared);
    if store.thread.join().is_err() {
        return Err("the writer thread panicked".into());
    }
    tracing::info!(revision = store.revisions.last(), "stopped");
    result
}

async fn serve(
    listener: std::io::Result<std::os::unix::net::UnixListener>,
    shared: Arc<Shared>,
    socket: &std::path::Path,
    db: &std::path::Path,
) -> Result<(), String> {
    let listener = listener
        .and_then(UnixListener::from_std)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    tracing::info!(
        socket = %socket.display(),
        db = %db.display(),
        revision = shared.revisions.last(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    let tracker = TaskTracker::new();
    let accept = tokio::spawn(server::run(listener, shared.clone(), tracker.clone()));
    // Waits for a stop signal.
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shared.shutdown.cancel();
    let _ = accept.await;
    tracker.close();
    // Waits for every connection to flush its END events and replies.
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not finish within the grace period");
    }
    Ok(())
}
