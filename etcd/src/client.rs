//! `Client`: one lazily connected gRPC channel per etcd member, and the one
//! loop every call goes through: try the member that answered last, move on
//! to the next when a member is down or has no leader, back off after a
//! round in which none could serve, and give up at the request timeout.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::cluster::{Member, Status};
use crate::error::{classify, Error, Kind, Result};
use crate::kv::{Delete, DeleteResponse, Header, KeyValue, Put, PutResponse, Range, RangeResponse};
use crate::options::{Options, RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};
use crate::proto::etcdserverpb as pb;
use crate::txn::{Txn, TxnResponse};
use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

/// A client of one etcd cluster. Cheap to clone (an `Arc`); clones share the
/// members' connections, and calls from many tasks run concurrently, each an
/// HTTP/2 stream of its own on the member's one connection (no queue in
/// front of them, so etcd batches concurrent writes into one raft round).
///
/// Every call is bounded by [`Options::request_timeout`], failover and
/// retries included, and fails with [`Error::Unavailable`] when no member
/// could serve it in that time.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<MemberChannel>,
    /// Index into `members` of the member to try first: the last one that
    /// answered. Moved on when it fails.
    preferred: AtomicUsize,
    options: Options,
}

struct MemberChannel {
    url: String,
    channel: Channel,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints())
            .field("options", &self.inner.options)
            .finish()
    }
}

impl Client {
    /// A client of the cluster whose members listen at `endpoints`
    /// (`http://host:port`, etcd's `--advertise-client-urls`; TLS is not
    /// supported). Several endpoints give failover: a call moves on to the
    /// next member when one is down.
    ///
    /// Nothing is contacted yet: each member's connection is opened on first
    /// use (and reopened after it breaks), so a client can be made while
    /// etcd is down. Call [`member_list`](Client::member_list) to check the
    /// cluster is reachable.
    ///
    /// Must be called within a tokio runtime: each member's connection is
    /// driven by a task spawned on the runtime that first uses it, and the
    /// client stops working if that runtime shuts down. Make the client on
    /// a runtime that lives as long as the client.
    pub async fn connect(endpoints: &[String], options: Options) -> Result<Client> {
        if endpoints.is_empty() {
            return Err(Error::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no etcd endpoint given".into(),
            });
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            let channel = channel(url, &options)?;
            members.push(MemberChannel {
                url: url.clone(),
                channel,
            });
        }
        Ok(Client {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(0),
                options,
            }),
        })
    }

    /// The endpoints given to [`connect`](Client::connect).
    pub fn endpoints(&self) -> Vec<&str> {
        self.inner.members.iter().map(|m| m.url.as_str()).collect()
    }

    /// The client's bounds.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Reads a key or a range of keys.
    pub async fn range(&self, range: Range) -> Result<RangeResponse> {
        let asked = range.inner.revision;
        let request = range.inner;
        let max = self.inner.options.max_response_bytes;
        self.call(Kind::Read, "range", |channel, timeout| {
            let request = with_leader(request.clone(), timeout);
            async move {
                KvClient::new(channel)
                    .max_decoding_message_size(max)
                    .range(request)
                    .await
            }
        })
        .await
        .map(RangeResponse::from)
        .map_err(|e| e.at_revision(asked))
    }

    /// Reads one key at the newest revision: `None` when it does not exist.
    pub async fn get(&self, key: impl Into<bytes::Bytes>) -> Result<Option<KeyValue>> {
        let response = self.range(Range::key(key)).await?;
        Ok(response.kvs.into_iter().next())
    }

    /// Writes one key. On [`Error::Unavailable`] the put may still have been
    /// applied (see there).
    pub async fn put(&self, put: Put) -> Result<PutResponse> {
        let request = put.inner;
        let max = self.inner.options.max_response_bytes;
        self.call(Kind::Write, "put", |channel, timeout| {
            let request = with_leader(request.clone(), timeout);
            async move {
                KvClient::new(channel)
                    .max_decoding_message_size(max)
                    .put(request)
                    .await
            }
        })
        .await
        .map(PutResponse::from)
    }

    /// Deletes a key or a range of keys.
    pub async fn delete_range(&self, delete: Delete) -> Result<DeleteResponse> {
        let request = delete.inner;
        let max = self.inner.options.max_response_bytes;
        self.call(Kind::Write, "delete", |channel, timeout| {
            let request = with_leader(request.clone(), timeout);
            async move {
                KvClient::new(channel)
                    .max_decoding_message_size(max)
                    .delete_range(request)
                    .await
            }
        })
        .await
        .map(DeleteResponse::from)
    }

    /// Runs a transaction. A transaction that only reads is still sent once
    /// only (it is not told apart from one that writes).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let asked = txn.asked_revision();
        let request = txn.into_request();
        let max = self.inner.options.max_response_bytes;
        self.call(Kind::Write, "txn", |channel, timeout| {
            let request = with_leader(request.clone(), timeout);
            async move {
                KvClient::new(channel)
                    .max_decoding_message_size(max)
                    .txn(request)
                    .await
            }
        })
        .await
        .map(TxnResponse::from)
        .map_err(|e| e.at_revision(asked))
    }

    /// Discards the history below `revision`: ranges and watches at lower
    /// revisions then fail as compacted. With `physical`, returns only once
    /// every member has removed it from its database. Compacting at or
    /// below the current compaction revision gives [`Error::Compacted`].
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<Header> {
        let request = pb::CompactionRequest { revision, physical };
        self.call(Kind::Write, "compact", |channel, timeout| {
            let request = with_leader(request, timeout);
            async move { KvClient::new(channel).compact(request).await }
        })
        .await
        .map(|r| Header::from(r.header))
        .map_err(|e| e.at_revision(revision))
    }

    /// The status of the member at `endpoint` (one of
    /// [`endpoints`](Client::endpoints)), asked of that member only: its
    /// leader, raft term, revision and database size. Answers even when the
    /// member has no leader (then `leader` is 0).
    pub async fn status(&self, endpoint: &str) -> Result<Status> {
        let Some(member) = self.inner.members.iter().find(|m| m.url == endpoint) else {
            return Err(Error::InvalidEndpoint {
                endpoint: endpoint.to_owned(),
                reason: "not one of the client's endpoints".into(),
            });
        };
        let timeout = self.inner.options.request_timeout;
        let mut request = tonic::Request::new(pb::StatusRequest {});
        request.set_timeout(timeout);
        let mut client = MaintenanceClient::new(member.channel.clone());
        // Bounded: a member that accepted the connection but never answers
        // costs the request timeout, then the call fails as unavailable.
        match tokio::time::timeout(timeout, client.status(request)).await {
            Ok(Ok(response)) => Ok(Status::from_response(endpoint, response.into_inner())),
            Ok(Err(status)) => Err(at_endpoint(classify(&status, Kind::Read).error, endpoint)),
            Err(_) => Err(Error::Unavailable {
                reason: format!("{endpoint}: no status within {timeout:?}"),
            }),
        }
    }

    /// The cluster's members, as the first member that answers knows them.
    pub async fn member_list(&self) -> Result<Vec<Member>> {
        self.call(Kind::Read, "member list", |channel, timeout| {
            let mut request = tonic::Request::new(pb::MemberListRequest {
                linearizable: false,
            });
            request.set_timeout(timeout);
            async move { ClusterClient::new(channel).member_list(request).await }
        })
        .await
        .map(|r| r.members.into_iter().map(Member::from).collect())
    }

    /// Runs `attempt` against the members, each given its channel and the
    /// time left, until one answers, a failure that must not be retried
    /// comes back, or the request timeout expires.
    pub(crate) async fn call<T, F, Fut>(&self, kind: Kind, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_raw(kind, what, |channel, timeout| {
            let fut = attempt(channel, timeout);
            async move { fut.await.map(tonic::Response::into_inner) }
        })
        .await
        .map(|(value, _endpoint)| value)
    }

    /// [`call`](Client::call) for attempts that are not one unary request
    /// (opening a watch).
    pub(crate) async fn call_raw<T, F, Fut>(
        &self,
        kind: Kind,
        what: &str,
        mut attempt: F,
    ) -> Result<(T, &str)>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let inner = &*self.inner;
        let timeout = inner.options.request_timeout;
        let deadline = Instant::now() + timeout;
        let count = inner.members.len();
        let mut backoff = RETRY_BACKOFF_MIN;
        // The last failure of each member in this round, for the error.
        let mut failures: Vec<String> = Vec::with_capacity(count);
        loop {
            failures.clear();
            let first = inner.preferred.load(Ordering::Relaxed) % count;
            for step in 0..count {
                let index = (first + step) % count;
                let member = &inner.members[index];
                let left = deadline.saturating_duration_since(Instant::now());
                // Bounded by the call's deadline: a member that takes the
                // request and never answers costs the time left, no more.
                let outcome =
                    tokio::time::timeout_at(deadline, attempt(member.channel.clone(), left)).await;
                match outcome {
                    Ok(Ok(value)) => {
                        inner.preferred.store(index, Ordering::Relaxed);
                        return Ok((value, member.url.as_str()));
                    }
                    Ok(Err(status)) => {
                        let failure = classify(&status, kind);
                        if !failure.retry {
                            if failure.error.is_unavailable() {
                                inner.avoid(index);
                            }
                            return Err(at_endpoint(failure.error, &member.url));
                        }
                        tracing::debug!(endpoint = %member.url, %status, "etcd {what}: trying the next member");
                        inner.avoid(index);
                        failures.push(format!("{}: {}", member.url, reason(&failure.error)));
                    }
                    Err(_elapsed) => {
                        // A member that holds calls without answering (hung,
                        // or cut off with its connection still open) costs
                        // this call; the next ones start elsewhere.
                        inner.avoid(index);
                        failures.push(format!("{}: no answer", member.url));
                        return Err(gave_up(what, timeout, &failures));
                    }
                }
            }
            // No member could serve it, each in a way that is safe to
            // retry (down, or no leader: an election may be under way).
            if Instant::now() + backoff >= deadline {
                return Err(gave_up(what, timeout, &failures));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
    }
}

impl Inner {
    /// Moves the preferred member past `index` (if it is still the
    /// preferred one), so that other calls skip a member that just failed,
    /// until one that answers becomes preferred.
    fn avoid(&self, index: usize) {
        let next = (index + 1) % self.members.len();
        let _ = self
            .preferred
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// The tonic channel of one member: connected on first use, reconnected
/// after a failure, with the client's connect timeout and keepalive.
fn channel(url: &str, options: &Options) -> Result<Channel> {
    let invalid = |reason: String| Error::InvalidEndpoint {
        endpoint: url.to_owned(),
        reason,
    };
    if !url.starts_with("http://") {
        return Err(invalid(
            "expected http://host:port (TLS is not supported)".into(),
        ));
    }
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| invalid(e.to_string()))?;
    Ok(endpoint
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout)
        // etcd counts pings on a connection with no open stream as abuse
        // and closes it (grpc-go's enforcement policy).
        .keep_alive_while_idle(false)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// A request that etcd refuses at once, with "etcdserver: no leader", when
/// the member it reaches has no leader (etcd's `hasleader` metadata, as
/// etcd's own client's `WithRequireLeader`), rather than waiting for a
/// proposal that cannot commit. Such a refusal is safe to retry elsewhere.
/// On a watch stream, the member also ends the stream when it loses its
/// leader for a while, instead of going quiet.
pub(crate) fn require_leader<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("hasleader", MetadataValue::from_static("true"));
    request
}

/// [`require_leader`], and tells etcd the time left (`grpc-timeout`), so it
/// gives up when the client does.
fn with_leader<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = require_leader(message);
    request.set_timeout(timeout);
    request
}

/// Names the member an unavailability came from.
fn at_endpoint(error: Error, url: &str) -> Error {
    match error {
        Error::Unavailable { reason } => Error::Unavailable {
            reason: format!("{url}: {reason}"),
        },
        other => other,
    }
}

/// An error's reason without the "etcd unavailable" its display adds.
fn reason(error: &Error) -> String {
    match error {
        Error::Unavailable { reason } => reason.clone(),
        other => other.to_string(),
    }
}

fn gave_up(what: &str, timeout: Duration, failures: &[String]) -> Error {
    Error::Unavailable {
        reason: format!(
            "no etcd member could serve {what} within {timeout:?} ({})",
            failures.join("; ")
        ),
    }
}
