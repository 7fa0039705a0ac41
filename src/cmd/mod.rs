//! Commands: one file per command, each parsing its body, applying it and
//! answering (as mini-redis's `cmd/`, whose `apply(db, dst)` takes only
//! what a command needs).
//!
//! A command gets three narrow things, never the connection itself:
//!
//! - a [`Reply`] for its request (the request id, the connection's outbox,
//!   and the in-flight permit it holds until written);
//! - the daemon-wide [`Context`]: the writer handle, the read pool, the
//!   broker, the revision counters and the status sources;
//! - the connection's [`Session`]: its open streams and when it closes
//!   (only `subscribe` and `cancel` use it).
//!
//! [`dispatch`] runs on the connection's reader loop. It does the cheap,
//! ordered part inline (checks, the `validate` step, queuing a write,
//! registering a stream) and moves every wait (a commit, a read, a stream)
//! elsewhere, so the reader goes straight back to reading.

mod append;
mod cancel;
mod create;
mod delete;
mod get;
mod list;
mod ping;
mod status;
mod stream;
mod subscribe;
mod update_status;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use stigmer_proto::daemon::request::Command;
use stigmer_proto::daemon::Request;
use stigmer_proto::frame::PROTOCOL_VERSION;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::metrics::StreamStats;
use crate::model::Revisions;
use crate::pipeline::Write;
use crate::protocol::ApiError;
use crate::store::Reader;
use crate::wire::Reply;
use crate::writer::{Answer, Job, ReplyForm, Writer};

/// What commands act on, shared by every connection; built once at
/// start-up.
pub(crate) struct Context {
    /// Submits writes to the writer thread.
    pub(crate) writer: Writer,
    /// The cluster mode's log (`--etcd`): writes are proposed there and
    /// reach the writer thread through the replica.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Runs reads on the read pool.
    pub(crate) reader: Reader,
    /// Registers streams.
    pub(crate) broker: Arc<Broker>,
    /// The committed revision counters.
    pub(crate) revisions: Arc<Revisions>,
    /// Subscriptions open and resyncs sent.
    pub(crate) stream_stats: Arc<StreamStats>,
    /// What `status` reports.
    pub(crate) report: Arc<crate::report::Sources>,
    /// The frame limit, told to clients by `ping`.
    pub(crate) max_frame_length: usize,
    /// `--max-subscriptions-per-connection`.
    pub(crate) max_subscriptions_per_connection: usize,
    /// `--bookmark-interval` (`None`: no bookmarks).
    pub(crate) bookmark_interval: Option<std::time::Duration>,
    /// Cancelled when the daemon begins shutting down (streams then end
    /// with END_REASON_SHUTDOWN).
    pub(crate) shutdown: CancellationToken,
}

/// One connection's state that commands use: its open streams and its
/// lifecycle. The server creates it and cancels its tokens.
pub(crate) struct Session {
    /// Open streams by request id: their cancel tokens.
    streams: Mutex<HashMap<u64, CancellationToken>>,
    /// Cancelled when the connection ends for any reason (its streams stop).
    pub(crate) closing: CancellationToken,
    /// Cancelled when the peer is gone (EOF or a failed write): streams then
    /// stop without an END, since nobody would read it.
    pub(crate) gone: CancellationToken,
    /// The cluster mode: this connection's writes, proposed in order
    /// (started on its first write).
    proposals: std::sync::OnceLock<crate::cluster::propose::Queue>,
}

impl Session {
    /// A session whose streams end when `closing` is cancelled.
    pub(crate) fn new(closing: CancellationToken, gone: CancellationToken) -> Self {
        Session {
            streams: Mutex::new(HashMap::new()),
            closing,
            gone,
            proposals: std::sync::OnceLock::new(),
        }
    }

    /// Locks the stream table (never held across an `.await`).
    fn streams(&self) -> MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Dispatches one decoded request; `reply` answers it. An `Err` is a
/// connection error: the reader sends it with id 0 and closes the
/// connection.
pub(crate) async fn dispatch(
    ctx: &Arc<Context>,
    session: &Arc<Session>,
    reply: Reply,
    request: Request,
) -> Result<(), ApiError> {
    let id = request.id;
    if id == 0 {
        return Err(ApiError::invalid_argument(
            "request id 0 is reserved (ids are chosen by the client and non-zero)",
        ));
    }
    if request.protocol_version != PROTOCOL_VERSION {
        reply.error(ApiError::failed_precondition(format!(
            "protocol version {} is not supported; this daemon speaks version {PROTOCOL_VERSION}",
            request.protocol_version
        )));
        return Ok(());
    }
    if session.streams().contains_key(&id) {
        // A connection error, as HTTP/2 treats a reused stream id: an error
        // reply under this id would read as the end of the open stream.
        return Err(ApiError::invalid_argument(format!(
            "request id {id} is already used by an open subscription on this connection; \
             ids must not be reused until the stream ends; closing the connection"
        )));
    }
    let form = if request.minimal_reply {
        ReplyForm::Minimal
    } else {
        ReplyForm::Execution
    };
    let Some(command) = request.command else {
        reply.error(ApiError::unimplemented(
            "unknown or missing command; protocol 1 has ping, create, update_status, append, \
             get, list, delete, subscribe, cancel and status",
        ));
        return Ok(());
    };
    match command {
        Command::Ping(_) => ping::apply(ctx, reply),
        Command::Create(execution) => create::apply(ctx, session, reply, execution, form).await,
        Command::UpdateStatus(input) => {
            update_status::apply(ctx, session, reply, input, form).await
        }
        Command::Get(get) => get::apply(ctx, reply, get.value),
        Command::List(list) => list::apply(ctx, reply, list),
        Command::Delete(delete) => delete::apply(ctx, session, reply, delete.value).await,
        Command::Subscribe(sub) => subscribe::apply(ctx, session, reply, sub),
        Command::Cancel(cancel) => cancel::apply(session, reply, cancel.subscription_id),
        Command::Status(req) => status::apply(ctx, reply, req.prometheus),
        Command::Append(req) => append::apply(ctx, session, reply, req).await,
    }
    Ok(())
}

/// Before a read that names an execution or a revision: in the cluster
/// mode, the read-after-write rule ([`crate::cluster::Cluster::before_read`]:
/// this daemon's replica first catches up with what etcd has of them,
/// bounded); nothing at all on a daemon alone. The one place every such
/// read goes through (`get`, `subscribe`).
async fn caught_up(
    ctx: &Context,
    execution: Option<&str>,
    revision: Option<u64>,
) -> Result<(), ApiError> {
    match &ctx.cluster {
        // One etcd read and a wait, bounded by `cluster::APPLY_WAIT`.
        Some(cluster) => cluster.before_read(execution, revision).await,
        None => Ok(()),
    }
}

/// Queues a validated write in arrival order; the writer thread answers
/// `reply` itself right after COMMIT (or the refusal), with no task in
/// between. Shared by create, update_status and delete.
async fn submit(ctx: &Context, session: &Session, reply: Reply, write: Write, form: ReplyForm) {
    if let Some(cluster) = &ctx.cluster {
        session
            .proposals
            .get_or_init(|| {
                crate::cluster::propose::Queue::start(cluster.clone(), ctx.writer.clone())
            })
            .push(reply, write, form);
        return;
    }
    let job = Job {
        write,
        answer: Answer::Client { reply, form },
    };
    // Waits only while the writer queue is full (back-pressure from the disk).
    ctx.writer.submit(job).await;
}
