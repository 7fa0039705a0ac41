//! Watches: one gRPC stream per [`Watch`], carrying one etcd watcher on a
//! key range from a start revision, turned into a stream of [`WatchEvent`]s
//! (events in revision order, progress bookmarks, compaction, cancellation).
//! A broken stream is not resumed here: it ends with an error and the
//! caller, who knows what it applied, watches again from its next revision.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use tonic::codec::Streaming;

use crate::client::{require_leader, Client};
use crate::error::{classify, Code, Error, Kind, Result};
use crate::kv::{prefix_end, KeyValue};
use crate::options::WATCH_REQUEST_QUEUE;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;
use pb::watch_client::WatchClient;
use pb::watch_request::RequestUnion;

/// What to watch: a key or a range of keys, from which revision, with
/// which extras.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    inner: pb::WatchCreateRequest,
}

impl WatchOptions {
    /// The key alone.
    pub fn key(key: impl Into<Bytes>) -> WatchOptions {
        WatchOptions {
            inner: pb::WatchCreateRequest {
                key: key.into(),
                ..Default::default()
            },
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> WatchOptions {
        let key: Bytes = prefix.into();
        let end = prefix_end(&key);
        WatchOptions::key(key).range_end(end)
    }

    /// The keys in `[key, range_end)`.
    pub fn range_end(mut self, range_end: impl Into<Bytes>) -> WatchOptions {
        self.inner.range_end = range_end.into();
        self
    }

    /// The first revision to deliver (inclusive); 0, the default: changes
    /// after the watch is created. A revision in the past replays the
    /// history from there, unless it was compacted
    /// ([`WatchEvent::Compacted`]).
    pub fn start_revision(mut self, revision: i64) -> WatchOptions {
        self.inner.start_revision = revision;
        self
    }

    /// Ask etcd for a [`WatchEvent::Progress`] whenever the watch has been
    /// quiet for its `--experimental-watch-progress-notify-interval` (10 min
    /// by default).
    pub fn progress_notify(mut self, on: bool) -> WatchOptions {
        self.inner.progress_notify = on;
        self
    }

    /// Deliver each event's previous key-value pair ([`Event::prev_kv`]),
    /// when etcd still has it.
    pub fn prev_kv(mut self, on: bool) -> WatchOptions {
        self.inner.prev_kv = on;
        self
    }

    /// Let etcd split a response larger than its `--max-request-bytes`
    /// (1.5 MiB by default) into fragments. A watch catching up puts up to
    /// 1,000 revisions in one response, which with large values can pass
    /// any response limit and end the watch at every attempt; fragmented,
    /// each response stays within etcd's request limit. The watch hands on
    /// each revision whole all the same (the events of a revision split
    /// over two fragments wait for the second).
    pub fn fragment(mut self, on: bool) -> WatchOptions {
        self.inner.fragment = on;
        self
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Written (created when `kv.version` is 1).
    Put,
    /// Deleted.
    Delete,
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// Put: the key-value pair written. Delete: the key, with
    /// `mod_revision` the deletion's revision and no value.
    pub kv: KeyValue,
    /// The pair before the change, when the watch asked for it and etcd
    /// still had it.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    fn from_proto(e: mvccpb::Event) -> Event {
        let kind = match mvccpb::event::EventType::try_from(e.r#type) {
            Ok(mvccpb::event::EventType::Delete) => EventKind::Delete,
            // PUT is 0, protobuf's default.
            _ => EventKind::Put,
        };
        Event {
            kind,
            kv: e.kv.unwrap_or_default(),
            prev_kv: e.prev_kv,
        }
    }
}

/// One item of a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Changes, in revision order, each revision once; the changes of one
    /// revision (a transaction) always come in the same item. `revision` is
    /// the revision of the last event: resume after it.
    Events {
        /// The revision of the last event.
        revision: i64,
        /// The changes.
        events: Vec<Event>,
    },
    /// A bookmark: every later event of this watch has a revision above
    /// `revision`, so a caller that applied everything before it may resume
    /// from `revision + 1`. Sent when the watch asked for `progress_notify`
    /// and was quiet, or after [`Watch::request_progress`].
    ///
    /// On etcd releases before the fix of etcd issue #15220 (2023; Debian's
    /// 3.4.23 predates it) a notification asked for with `request_progress`
    /// can overtake the events of a watch that is still catching up on past
    /// revisions: rely on it only once the watch has caught up.
    Progress {
        /// The store's revision when the notification was sent.
        revision: i64,
    },
    /// The start revision (or, for a watch that fell far behind, its
    /// position) was compacted: etcd no longer has the history the watch
    /// needs. The watch is over; the caller must rebuild its state from a
    /// read at the current revision and watch from that read's revision + 1.
    Compacted {
        /// etcd's compaction revision: the oldest revision it still keeps.
        compact_revision: i64,
    },
    /// etcd cancelled the watch (for example the member is shutting down or
    /// the range became invalid). The watch is over; watch again.
    Canceled {
        /// etcd's reason; may be empty.
        reason: String,
    },
}

/// An open watch: a [`Stream`] of [`WatchEvent`]s, ended after `Compacted`
/// or `Canceled`, or by an error when the stream broke (the member died, its
/// connection or keepalive failed, it lost its leader for several election
/// timeouts, or a response exceeded
/// [`Options::max_response_bytes`](crate::Options::max_response_bytes)).
///
/// It does not reconnect by itself: after an error, watch again from the
/// revision after the last one applied (that is
/// [`last_revision`](Watch::last_revision) plus one if everything delivered
/// was applied); the new watch may land on another member, and delivers
/// each revision after that once, in order.
///
/// Bounded: etcd's responses are read only as the stream is polled (HTTP/2
/// flow control holds the rest at the member), and one response holds at
/// most `max_response_bytes`. A watch that asked for
/// [`fragment`](WatchOptions::fragment) gets large responses in pieces of
/// at most etcd's request limit; it holds back only the events of the last
/// revision of a piece (it may go on in the next), so each revision is
/// still delivered whole, in one item.
///
/// Dropping the watch closes its stream, which cancels it at etcd.
pub struct Watch {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: Streaming<pb::WatchResponse>,
    endpoint: String,
    watch_id: i64,
    created_revision: i64,
    last_revision: i64,
    request_timeout: Duration,
    /// An item decided before the first poll (compaction reported with the
    /// creation).
    pending: Option<WatchEvent>,
    /// A fragmented response's events of its last revision, which the next
    /// fragment may continue.
    carried: Vec<Event>,
    finished: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("endpoint", &self.endpoint)
            .field("watch_id", &self.watch_id)
            .field("created_revision", &self.created_revision)
            .field("last_revision", &self.last_revision)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Client {
    /// Opens a watch on the first member that accepts it: it has a leader
    /// (the stream asks for one, so a member cut off from the others ends
    /// it with an error rather than going quiet) and creates the watcher
    /// within the request timeout.
    pub async fn watch(&self, options: WatchOptions) -> Result<Watch> {
        let create = options.inner;
        let max = self.options().max_response_bytes;
        let request_timeout = self.options().request_timeout;
        let ((requests, responses, created), endpoint) = self
            .call_raw(Kind::Read, "watch", |channel, _left| {
                let create = create.clone();
                async move {
                    let (mut requests, receiver) = mpsc::channel(WATCH_REQUEST_QUEUE);
                    let create = pb::WatchRequest {
                        request_union: Some(RequestUnion::CreateRequest(create)),
                    };
                    // A fresh channel has room for its first request.
                    requests
                        .try_send(create)
                        .map_err(|e| tonic::Status::internal(e.to_string()))?;
                    // No grpc-timeout: it would end the stream.
                    let request = require_leader(receiver);
                    let mut client = WatchClient::new(channel).max_decoding_message_size(max);
                    // Waits for the response headers, which etcd sends with
                    // its answer to the create request; this await and the
                    // next are bounded by the call's deadline (call_raw).
                    let mut responses = client.watch(request).await?.into_inner();
                    // etcd answers the create request before anything else;
                    // a member without a leader refuses the stream instead.
                    loop {
                        match responses.message().await? {
                            Some(r) if r.created => return Ok((requests, responses, r)),
                            Some(_) => continue,
                            None => {
                                return Err(tonic::Status::unavailable(
                                    "the watch stream ended before the watch was created",
                                ))
                            }
                        }
                    }
                }
            })
            .await?;
        if created.canceled && created.compact_revision == 0 {
            return Err(Error::Grpc {
                code: Code::InvalidArgument,
                message: format!("etcd refused the watch: {}", created.cancel_reason),
            });
        }
        let created_revision = created.header.map_or(0, |h| h.revision);
        let pending = (created.compact_revision != 0).then_some(WatchEvent::Compacted {
            compact_revision: created.compact_revision,
        });
        Ok(Watch {
            requests,
            responses,
            endpoint: endpoint.to_owned(),
            watch_id: created.watch_id,
            created_revision,
            last_revision: 0,
            request_timeout,
            pending,
            carried: Vec::new(),
            finished: false,
        })
    }
}

impl Watch {
    /// The member this watch streams from.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The store's revision when the watch was created: a watch from "now"
    /// (start revision 0) delivers the revisions after it.
    pub fn created_revision(&self) -> i64 {
        self.created_revision
    }

    /// The highest revision delivered so far, by events or progress
    /// notifications; 0 before any.
    pub fn last_revision(&self) -> i64 {
        self.last_revision
    }

    /// Asks etcd for a [`WatchEvent::Progress`] now (etcd 3.4 and later).
    /// Waits for room in the stream's small request queue, at most the
    /// request timeout.
    pub async fn request_progress(&self) -> Result<()> {
        let mut requests = self.requests.clone();
        let request = pb::WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
        };
        // Bounded: blocks only while the queue towards etcd is full.
        match tokio::time::timeout(self.request_timeout, requests.send(request)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => Err(Error::Unavailable {
                reason: format!("{}: the watch stream is closed", self.endpoint),
            }),
            Err(_elapsed) => Err(Error::Unavailable {
                reason: format!(
                    "{}: progress request not sent within {:?}",
                    self.endpoint, self.request_timeout
                ),
            }),
        }
    }

    /// The item for one response of etcd, if it makes one.
    fn item(&mut self, r: pb::WatchResponse) -> Option<WatchEvent> {
        // A progress response asked for with request_progress may carry
        // watch id -1 ("every watcher of the stream").
        if r.watch_id != self.watch_id && r.watch_id != -1 {
            return None;
        }
        if r.compact_revision != 0 {
            self.finished = true;
            return Some(WatchEvent::Compacted {
                compact_revision: r.compact_revision,
            });
        }
        if r.canceled {
            self.finished = true;
            return Some(WatchEvent::Canceled {
                reason: r.cancel_reason,
            });
        }
        if r.created {
            return None;
        }
        if r.events.is_empty() && self.carried.is_empty() {
            let revision = r.header.map_or(0, |h| h.revision);
            self.last_revision = self.last_revision.max(revision);
            return Some(WatchEvent::Progress { revision });
        }
        let mut events = std::mem::take(&mut self.carried);
        events.extend(r.events.into_iter().map(Event::from_proto));
        if r.fragment {
            // More of this response follows: hold back its last revision,
            // which the next fragment may continue.
            let last = events.last().map_or(0, Event::revision);
            let whole = events.partition_point(|e| e.revision() < last);
            self.carried = events.split_off(whole);
            if events.is_empty() {
                return None;
            }
        }
        let revision = events.last().map_or(0, Event::revision);
        self.last_revision = self.last_revision.max(revision);
        Some(WatchEvent::Events { revision, events })
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(item) = this.pending.take() {
            this.finished = matches!(
                item,
                WatchEvent::Compacted { .. } | WatchEvent::Canceled { .. }
            );
            return Poll::Ready(Some(Ok(item)));
        }
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            let response = match Pin::new(&mut this.responses).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(response) => response,
            };
            match response {
                Some(Ok(r)) => {
                    if let Some(item) = this.item(r) {
                        return Poll::Ready(Some(Ok(item)));
                    }
                }
                Some(Err(status)) => {
                    this.finished = true;
                    let error = match classify(&status, Kind::Read).error {
                        Error::Unavailable { reason } => Error::Unavailable {
                            reason: format!("{}: watch stream broken: {reason}", this.endpoint),
                        },
                        other => other,
                    };
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(Error::Unavailable {
                        reason: format!("{}: the watch stream was closed by etcd", this.endpoint),
                    })));
                }
            }
        }
    }
}
