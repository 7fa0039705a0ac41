//! The async client: one typed method per protocol command, all sharing one
//! multiplexed connection that is reopened transparently when it has died.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::conn::{CallError, Conn, NotSent, StreamHandle};
use crate::proto::agentexecution::{
    AgentExecution, AgentExecutionId, AgentExecutionSpec, AgentExecutionStatus,
    AgentExecutionUpdateStatusInput, ExecutionPhase,
};
use crate::proto::apiresource::{ApiResourceId, ApiResourceMetadata};
use crate::proto::daemon::{
    op, request::Command, response::Result as Reply, AppendRequest, AppendText,
    CancelSubscriptionRequest, Code, DaemonStatus, ListExecutionsRequest, Op, PingRequest,
    PingResponse, StatusRequest, SubscribeRequest,
};
use crate::subscription::Subscription;
use crate::{paths, Config, Error, Result};

/// A handle on the daemon. Cheap to clone (an `Arc` inside); clones share
/// one connection, and any number of calls may be in flight on it at once.
///
/// When the connection has died (the daemon restarted, say), the next call
/// opens a new one. A call that was in flight when it died fails with
/// [`Error::Closed`]: it may or may not have been applied, so it is not
/// retried behind the caller's back.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    config: Config,
    /// The current connection; replaced when found closed.
    conn: std::sync::Mutex<Option<Arc<Conn>>>,
    /// Held while reconnecting, so concurrent calls make one connection.
    connecting: Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// A new execution to create: the fields a caller usually sets. Turn it
/// into an [`AgentExecution`] (`.into()`) to set anything else.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewExecution {
    /// The agent to run (`spec.agent_id`); required.
    pub agent_id: String,
    /// The user's prompt (`spec.message`); required.
    pub message: String,
    /// The session the execution belongs to (`spec.session_id`).
    pub session_id: Option<String>,
    /// A caller-chosen id (`aex-` + lowercase ULID); the daemon assigns one
    /// when absent.
    pub id: Option<String>,
}

impl NewExecution {
    /// An execution of `agent_id` for the prompt `message`.
    pub fn new(agent_id: impl Into<String>, message: impl Into<String>) -> Self {
        NewExecution {
            agent_id: agent_id.into(),
            message: message.into(),
            ..Default::default()
        }
    }

    /// Sets the session.
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets the execution id instead of letting the daemon choose it.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

impl From<NewExecution> for AgentExecution {
    fn from(n: NewExecution) -> Self {
        AgentExecution {
            metadata: n.id.map(|id| ApiResourceMetadata {
                id,
                ..Default::default()
            }),
            spec: Some(AgentExecutionSpec {
                session_id: n.session_id.unwrap_or_default(),
                agent_id: n.agent_id,
                message: n.message,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// What to list, and which page. `ListFilter::default()` is the first page
/// of every execution.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListFilter {
    /// Only executions in this phase.
    pub phase: Option<ExecutionPhase>,
    /// Only executions of this session.
    pub session_id: Option<String>,
    /// Page size; 0 is the daemon's default (100); at most 1000.
    pub page_size: u32,
    /// `Page::next_page_token` of the previous page; `None` for the first.
    pub page_token: Option<String>,
}

/// One page of [`Client::list`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The executions, in creation order.
    pub executions: Vec<AgentExecution>,
    /// Pass back in [`ListFilter::page_token`] (same filters) for the next
    /// page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl Client {
    /// Connects to the daemon at `path` with the default [`Config`].
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client> {
        Client::connect_with(path, Config::default()).await
    }

    /// Connects to the daemon at the default socket
    /// ([`paths::default_socket_path`]: `$STIGMER_SOCKET`, else
    /// `/run/stigmer.sock` as root, else `$XDG_RUNTIME_DIR/stigmer.sock`).
    pub async fn connect_default() -> Result<Client> {
        Client::connect(paths::default_socket_path()).await
    }

    /// Connects to the daemon at `path` with `config`. Fails at once when no
    /// daemon listens there.
    pub async fn connect_with(path: impl AsRef<Path>, config: Config) -> Result<Client> {
        let path = path.as_ref().to_path_buf();
        // Opens the socket; fails with Io (ENOENT, ECONNREFUSED) when no
        // daemon listens.
        let conn = Conn::connect(&path, &config).await?;
        Ok(Client {
            inner: Arc::new(Inner {
                path,
                config,
                conn: std::sync::Mutex::new(Some(conn)),
                connecting: Mutex::new(()),
            }),
        })
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.inner.path
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The live connection, reconnecting when the current one has died.
    ///
    /// The fast path (a live connection) takes only a short synchronous
    /// lock, with no await, so concurrent calls queue their frames in the
    /// order they are first polled.
    pub(crate) async fn conn(&self) -> Result<Arc<Conn>> {
        if let Some(conn) = self.live_conn() {
            return Ok(conn);
        }
        // Waits while another task reconnects, so only one connection is made.
        let _connecting = self.inner.connecting.lock().await;
        if let Some(conn) = self.live_conn() {
            return Ok(conn);
        }
        // Opens a new socket; fails when the daemon is not (yet) back.
        let conn = Conn::connect(&self.inner.path, &self.inner.config).await?;
        *self.inner.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn live_conn(&self) -> Option<Arc<Conn>> {
        let slot = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// Sends `command` and returns its reply; retries on a fresh connection
    /// only when the request provably never left (the old one was dead).
    async fn call(&self, command: Command) -> Result<Reply> {
        self.call_with(command, false).await
    }

    /// [`Client::call`] with `Request.minimal_reply` set as given.
    async fn call_with(&self, mut command: Command, minimal_reply: bool) -> Result<Reply> {
        for _ in 0..3 {
            // May reconnect; fails when the daemon is unreachable.
            let conn = self.conn().await?;
            // Waits for the daemon's reply; fails with its error, or Closed
            // when the connection dies while waiting.
            match conn.call(command, minimal_reply).await {
                Ok(reply) => return Ok(reply),
                Err(CallError::Failed(e)) => return Err(e),
                Err(CallError::NotSent(NotSent(c))) => command = c,
            }
        }
        Err(Error::Closed)
    }

    /// Asks the daemon who it is: protocol version, daemon version, last
    /// committed revision and frame limit. Cheap; good for health checks.
    pub async fn ping(&self) -> Result<PingResponse> {
        // Waits for the pong.
        match self.call(Command::Ping(PingRequest {})).await? {
            Reply::Pong(p) => Ok(p),
            other => Err(unexpected("pong", &other)),
        }
    }

    /// The daemon's status: version, uptime, paths, load, counters and
    /// latencies (docs/PROTOCOL.md, "status"). With `prometheus`, the reply
    /// also carries the Prometheus text exposition.
    pub async fn status(&self, prometheus: bool) -> Result<DaemonStatus> {
        // Waits for the status reply.
        match self
            .call(Command::Status(StatusRequest { prometheus }))
            .await?
        {
            Reply::Status(s) => Ok(s),
            other => Err(unexpected("status", &other)),
        }
    }

    /// Creates an execution; returns it as stored (with its id) and the
    /// revision of its creation. Accepts an [`AgentExecution`] or a
    /// [`NewExecution`].
    pub async fn create(
        &self,
        execution: impl Into<AgentExecution>,
    ) -> Result<(AgentExecution, u64)> {
        // Waits until the creation is committed.
        let reply = self.call(Command::Create(execution.into())).await?;
        execution_reply(reply)
    }

    /// Merges `status` into execution `execution_id` (docs/PROTOCOL.md,
    /// "update_status"); returns the execution after the merge and the
    /// revision this update committed. Fails with FAILED_PRECONDITION once
    /// the execution's phase is terminal (e.g. it was cancelled).
    pub async fn update_status(
        &self,
        execution_id: impl Into<String>,
        status: AgentExecutionStatus,
    ) -> Result<(AgentExecution, u64)> {
        let command = Command::UpdateStatus(AgentExecutionUpdateStatusInput {
            execution_id: execution_id.into(),
            status: Some(status),
        });
        // Waits until the update is committed (durable) and acknowledged.
        execution_reply(self.call(command).await?)
    }

    /// Like [`Client::update_status`], but the daemon answers with the
    /// revision alone (`Request.minimal_reply`), not the whole execution
    /// after the merge: for a runner that sends its cumulative status with
    /// every update and has no use for the echo, which grows with the
    /// transcript. Returns the revision this update committed.
    pub async fn update_status_ack(
        &self,
        execution_id: impl Into<String>,
        status: AgentExecutionStatus,
    ) -> Result<u64> {
        let command = Command::UpdateStatus(AgentExecutionUpdateStatusInput {
            execution_id: execution_id.into(),
            status: Some(status),
        });
        // Waits until the update is committed (durable) and acknowledged.
        match self.call_with(command, true).await? {
            Reply::Execution(r) => Ok(r.revision),
            other => Err(unexpected("execution", &other)),
        }
    }

    /// Applies `ops` to execution `execution_id`'s status atomically, under
    /// one revision (docs/PROTOCOL.md, "append"); returns that revision (or,
    /// when every operation was already applied, the execution's current
    /// one). With `expected_revision`, only if the execution is still at it
    /// (compare-and-set); else ABORTED.
    ///
    /// Safe to retry, and retried here across reconnects with the
    /// subscription backoff ([`crate::Config::reconnect`]): an operation
    /// that names where it applies (a text's byte offset, a message's index)
    /// and finds its content already there is acknowledged, never applied
    /// twice. A stale offset is ABORTED (another writer appended first):
    /// that is the caller's to resolve, never retried here.
    pub async fn append(
        &self,
        execution_id: impl Into<String>,
        ops: Vec<Op>,
        expected_revision: Option<u64>,
    ) -> Result<u64> {
        let command = Command::Append(AppendRequest {
            execution_id: execution_id.into(),
            expected_revision,
            ops,
        });
        let reconnect = &self.config().reconnect;
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            // Waits until the append is committed (or refused); the reply
            // may be lost with the connection, hence the retry.
            match self.call_with(command.clone(), true).await {
                Ok(Reply::Execution(r)) => return Ok(r.revision),
                Ok(other) => return Err(unexpected("execution", &other)),
                Err(e) if e.is_transient() && self.config().resume => {
                    if reconnect
                        .give_up_after
                        .is_some_and(|limit| started.elapsed() >= limit)
                    {
                        return Err(e);
                    }
                    attempt = attempt.saturating_add(1);
                    // Waits before sending the same append again: the
                    // daemon is probably restarting.
                    tokio::time::sleep(reconnect.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends `text` to the content of message `message_index` at UTF-8
    /// byte `offset` (its length so far; an index equal to the number of
    /// messages creates a new AI message): [`Client::append`] of one
    /// `append_text` operation. Returns the revision.
    pub async fn append_text(
        &self,
        execution_id: impl Into<String>,
        message_index: u32,
        offset: u64,
        text: impl Into<String>,
    ) -> Result<u64> {
        let op = Op {
            op: Some(op::Op::AppendText(AppendText {
                message_index,
                offset,
                text: text.into(),
                r#type: 0,
            })),
        };
        self.append(execution_id, vec![op], None).await
    }

    /// The stored execution `execution_id` and its revision; NOT_FOUND when
    /// there is none.
    pub async fn get(&self, execution_id: impl Into<String>) -> Result<(AgentExecution, u64)> {
        let command = Command::Get(AgentExecutionId {
            value: execution_id.into(),
        });
        // Waits for the daemon's read.
        execution_reply(self.call(command).await?)
    }

    /// One page of executions matching `filter`, in creation order.
    pub async fn list(&self, filter: &ListFilter) -> Result<Page> {
        let command = Command::List(ListExecutionsRequest {
            page_size: filter.page_size,
            page_token: filter.page_token.clone().unwrap_or_default(),
            phase: filter.phase.map_or(0, |p| p as i32),
            session_id: filter.session_id.clone().unwrap_or_default(),
        });
        // Waits for the daemon's read.
        match self.call(command).await? {
            Reply::List(l) => Ok(Page {
                executions: l.entries,
                next_page_token: Some(l.next_page_token).filter(|t| !t.is_empty()),
            }),
            other => Err(unexpected("list", &other)),
        }
    }

    /// Every execution matching `filter`, following `next_page_token` from
    /// `filter.page_token` to the last page.
    pub async fn list_all(&self, filter: &ListFilter) -> Result<Vec<AgentExecution>> {
        let mut filter = filter.clone();
        let mut all = Vec::new();
        loop {
            // Waits for one page.
            let page = self.list(&filter).await?;
            all.extend(page.executions);
            match page.next_page_token {
                None => return Ok(all),
                Some(token) if Some(&token) == filter.page_token.as_ref() => {
                    return Err(Error::Protocol(
                        "the daemon returned the same page token twice".into(),
                    ))
                }
                Some(token) => filter.page_token = Some(token),
            }
        }
    }

    /// Deletes execution `execution_id`; returns the deletion's revision.
    /// Streams on it end with `END_REASON_DELETED`.
    pub async fn delete(&self, execution_id: impl Into<String>) -> Result<u64> {
        let command = Command::Delete(ApiResourceId {
            value: execution_id.into(),
        });
        // Waits until the deletion is committed.
        match self.call(command).await? {
            Reply::Deleted(d) => Ok(d.revision),
            other => Err(unexpected("deleted", &other)),
        }
    }

    /// Ends the stream opened by request `subscription_id` on the current
    /// connection (the low-level `cancel` command). Prefer
    /// [`Subscription::cancel`], which knows its current request id.
    pub async fn cancel(&self, subscription_id: u64) -> Result<()> {
        let command = Command::Cancel(CancelSubscriptionRequest { subscription_id });
        // Waits for the daemon's acknowledgement.
        match self.call(command).await? {
            Reply::Cancelled(_) => Ok(()),
            other => Err(unexpected("cancelled", &other)),
        }
    }

    /// Watches execution `execution_id`: a [`Subscription`] (a
    /// `futures::Stream`) of its committed changes.
    ///
    /// Without `from_revision` the stream starts with a
    /// [`crate::Event::Snapshot`]; with it, with every change after that
    /// revision. Errors at the start (NOT_FOUND, OUT_OF_RANGE) arrive as the
    /// stream's first item. The stream resumes by itself across reconnects
    /// and daemon restarts (see the crate docs).
    pub async fn subscribe(
        &self,
        execution_id: impl Into<String>,
        from_revision: Option<u64>,
    ) -> Result<Subscription> {
        let execution_id = execution_id.into();
        // Sends the subscribe request; fails when the daemon is unreachable.
        let request =
            Client::subscribe_request(&execution_id, from_revision, self.config().deltas, false);
        let (conn, handle) = self.open_subscribe(request).await?;
        Ok(Subscription::new(
            self.clone(),
            execution_id,
            from_revision,
            conn,
            handle,
        ))
    }

    /// The `subscribe` of one execution's stream. `holds_state`: a delta
    /// stream resuming with the state at `from_revision` in hand, which the
    /// daemon need not send again.
    pub(crate) fn subscribe_request(
        execution_id: &str,
        from_revision: Option<u64>,
        deltas: bool,
        holds_state: bool,
    ) -> SubscribeRequest {
        SubscribeRequest {
            execution_id: execution_id.to_string(),
            from_revision,
            deltas,
            skip_initial_state: deltas && holds_state && from_revision.is_some(),
            ..Default::default()
        }
    }

    /// Sends `request` (a `subscribe`) on the live connection (reconnecting
    /// first if it died) and returns the channel its events arrive on.
    pub(crate) async fn open_subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<(Arc<Conn>, StreamHandle)> {
        let mut command = Command::Subscribe(request);
        for _ in 0..3 {
            // May reconnect; fails when the daemon is unreachable.
            let conn = self.conn().await?;
            // Queues the request; fails only if the connection just died.
            match conn.open_stream(command).await {
                Ok(handle) => return Ok((conn, handle)),
                Err(CallError::Failed(e)) => return Err(e),
                Err(CallError::NotSent(NotSent(c))) => command = c,
            }
        }
        Err(Error::Closed)
    }
}

fn execution_reply(reply: Reply) -> Result<(AgentExecution, u64)> {
    match reply {
        Reply::Execution(r) => match r.execution {
            Some(e) => Ok((e, r.revision)),
            None => Err(Error::Protocol(
                "execution reply without an execution".into(),
            )),
        },
        other => Err(unexpected("execution", &other)),
    }
}

fn unexpected(wanted: &str, got: &Reply) -> Error {
    // The variant's name (its Debug text up to the payload), so replies
    // added to the schema later need no change here.
    let debug = format!("{got:?}");
    let got = debug.split(['(', ' ']).next().unwrap_or("unknown");
    Error::Protocol(format!("expected a {wanted} reply, got {got}"))
}

/// True for errors that mean "the execution is not there" — a convenience
/// for callers that treat absence as a normal outcome.
pub fn is_not_found(err: &Error) -> bool {
    err.is(Code::NotFound)
}
