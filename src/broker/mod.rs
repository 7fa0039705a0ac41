//! The broker: fans each committed change out to the subscribers of its
//! execution.
//!
//! Each subscriber has its own bounded queue. Publishing never waits: when a
//! queue is full the broker empties it and marks it *overflowed*; the
//! subscriber then catches up from the durable history starting after the
//! last revision it sent, so nothing is lost and memory stays bounded
//! whatever a subscriber does (unlike a broadcast channel, which would skip,
//! or an unbounded one, which would grow).
//!
//! The writer thread is the only publisher, so changes enter every queue in
//! commit order. A topic (one execution's subscriber list) is removed when
//! its last subscriber leaves.
//!
//! **Selections.** A subscriber watches one execution, one session, or
//! every execution ([`Selector`]). The broker keeps one subscriber list per
//! execution, one per session and one for "all", so a change finds its
//! subscribers with three map lookups (its execution id, its session), in
//! time proportional to the matches, never by scanning subscribers.
//! Many-execution subscribers take every change, terminal ones and deletes
//! included, so they are delivered to directly whenever armed.
//!
//! **Direct delivery.** A stream that is caught up and waiting *arms* its
//! subscriber with its connection's outbox. While armed, `publish` puts the
//! event straight into that outbox (written to the socket on the
//! publishing thread when nothing is queued ahead) and records the
//! revision; the stream task is not woken at all. That removes a task
//! wake-up and a hop per delivery from both the latency path and the
//! fan-out. Anything else disarms and takes the queue path: a change the
//! stream must act on (terminal, deleted), an outbox at its bound, a closed
//! connection. Since the stream is armed only with nothing pending and the
//! outbox is ordered, events still reach the socket in revision order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::model::Change;
use crate::wire::{Frame, Outbox, TrySend};

/// Counters for `stigmer status`.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Changes delivered to subscribers (queued, or directly to their
    /// connection).
    pub delivered: AtomicU64,
    /// Of those, delivered directly to an armed stream's connection.
    pub direct: AtomicU64,
    /// Times a subscriber queue overflowed (each followed by a catch-up).
    pub overflows: AtomicU64,
    /// From publication (just after COMMIT) to the event frame handed to a
    /// subscriber's connection: once per change for direct deliveries (when
    /// its last armed subscriber has it), once per queued delivery (when
    /// the stream task hands it over).
    pub broadcast_latency: crate::metrics::Histogram,
}

/// Routes committed changes to subscriber queues.
///
/// A std `Mutex` guards the topic map: it is held only to push pointers into
/// queues or to add/remove a subscriber, never across an `.await`, so a
/// blocking lock is cheaper than tokio's and cannot deadlock the runtime.
pub struct Broker {
    /// Copy-on-write subscriber lists: `publish` clones their `Arc`s and
    /// releases the map before touching any subscriber, so a fan-out to many
    /// subscribers never holds up a subscribe elsewhere.
    topics: Mutex<Topics>,
    queue_capacity: usize,
    next_id: AtomicU64,
    /// The newest revision whose publication has finished: every change up
    /// to it is in its subscribers' queues or connections (what a bookmark
    /// may promise).
    published: AtomicU64,
    /// Counters.
    pub stats: BrokerStats,
}

/// The subscriber lists, by what they watch.
#[derive(Default)]
struct Topics {
    executions: HashMap<Arc<str>, Slots>,
    sessions: HashMap<Arc<str>, Slots>,
    all: Slots,
}

/// What a subscriber watches.
#[derive(Clone, Debug)]
pub(crate) enum Selector {
    /// One execution: a one-execution stream.
    Execution(Arc<str>),
    /// Every execution of one session.
    Session(Arc<str>),
    /// Every execution.
    All,
}

impl Topics {
    /// The list a selector's subscribers are in, created empty if missing.
    fn slots_mut(&mut self, selector: &Selector) -> &mut Slots {
        match selector {
            Selector::Execution(id) => self.executions.entry(id.clone()).or_default(),
            Selector::Session(id) => self.sessions.entry(id.clone()).or_default(),
            Selector::All => &mut self.all,
        }
    }

    /// Drops a selector's list once it is empty.
    fn forget_if_empty(&mut self, selector: &Selector) {
        match selector {
            Selector::Execution(id) if self.executions.get(id).is_some_and(|s| s.is_empty()) => {
                self.executions.remove(id);
            }
            Selector::Session(id) if self.sessions.get(id).is_some_and(|s| s.is_empty()) => {
                self.sessions.remove(id);
            }
            _ => {}
        }
    }

    /// The lists a change goes to: its execution's (one-execution
    /// streams), its session's and "all" (many-execution streams).
    fn matching(&self, change: &Change) -> [(Option<Slots>, bool); 3] {
        let non_empty = |slots: &Slots| (!slots.is_empty()).then(|| slots.clone());
        [
            (self.executions.get(&change.execution_id).cloned(), false),
            (self.sessions.get(change.session_id()).cloned(), true),
            (non_empty(&self.all), true),
        ]
    }
}

/// One topic's subscribers, replaced (never mutated) on subscribe/leave.
type Slots = Arc<Vec<Arc<Slot>>>;

/// One subscriber's queue, shared between the broker and its stream task.
struct Slot {
    id: u64,
    state: Mutex<SlotState>,
    /// Wakes the stream task; `notify_one` keeps a permit when nobody waits,
    /// so a wake-up between "queue empty" and "await" is never lost.
    notify: Notify,
}

#[derive(Default)]
struct SlotState {
    queue: VecDeque<Arc<Change>>,
    overflowed: bool,
    /// Set while the stream waits caught up: where to deliver directly.
    armed: Option<Armed>,
    /// The last revision delivered directly (the stream's `last_sent` once
    /// it takes over again).
    delivered: u64,
}

/// Deliveries counted during one publication, added to [`BrokerStats`]
/// once at its end.
#[derive(Default)]
struct Tally {
    delivered: u64,
    direct: u64,
}

/// An armed stream's connection and request id, and which events it takes
/// (DELTA events for a delta stream, else whole states).
struct Armed {
    outbox: Arc<Outbox>,
    request_id: u64,
    deltas: bool,
}

/// What [`Subscriber::recv`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The changes are contiguous after the previous ones.
    InOrder,
    /// The queue overflowed: changes were dropped before the ones returned
    /// (which may be none); catch up from history before using them.
    Overflowed,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data inconsistent
    // (each critical section is a push/pop), so a poisoned lock is still used.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Broker {
    /// A broker whose subscriber queues hold `queue_capacity` changes.
    pub fn new(queue_capacity: usize) -> Self {
        Self {
            topics: Mutex::new(Topics::default()),
            queue_capacity: queue_capacity.max(1),
            next_id: AtomicU64::new(1),
            published: AtomicU64::new(0),
            stats: BrokerStats::default(),
        }
    }

    /// Registers a subscriber to `execution_id`. Call this BEFORE reading the
    /// snapshot or history: every change committed after this call is queued.
    pub fn subscribe(self: &Arc<Self>, execution_id: &str) -> Subscriber {
        self.watch(Selector::Execution(Arc::from(execution_id)))
    }

    /// Registers a subscriber to what `selector` names; as
    /// [`Broker::subscribe`], before reading anything.
    pub(crate) fn watch(self: &Arc<Self>, selector: Selector) -> Subscriber {
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(SlotState::default()),
            notify: Notify::new(),
        });
        let mut topics = lock(&self.topics);
        let slots = topics.slots_mut(&selector);
        let mut next = Vec::with_capacity(slots.len() + 1);
        next.extend(slots.iter().cloned());
        next.push(slot.clone());
        *slots = Arc::new(next);
        drop(topics);
        Subscriber {
            broker: self.clone(),
            selector,
            slot,
        }
    }

    /// The newest revision whose publication has finished (0 before the
    /// first): every change at or below it has reached each of its
    /// subscribers' queues or connections.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Delivers one committed change (see [`Broker::publish_all`]).
    pub fn publish(&self, change: &Arc<Change>) {
        self.publish_all(std::slice::from_ref(change));
    }

    /// Delivers one transaction's committed changes, in revision order, to
    /// every subscriber of their executions: directly to an armed stream's
    /// connection, else into its queue. Never blocks on a subscriber.
    ///
    /// Direct deliveries are appended first and written once per connection
    /// at the end, so a subscriber gets all of a batch's events in one
    /// `writev` (as Redis writes each client's buffer once per event-loop
    /// turn): under fan-out, syscalls per delivery fall with the batch size.
    pub(crate) fn publish_all(&self, changes: &[Arc<Change>]) {
        // A lone change (the common case: one runner, or fan-out) is written
        // to each armed connection as it is appended, in one pass over the
        // subscribers; a batch is appended everywhere first and written
        // once per connection at the end.
        let mut touched: Option<Vec<Arc<Outbox>>> = (changes.len() > 1).then(Vec::new);
        let mut tally = Tally::default();
        // Changes with direct deliveries, whose broadcast latency is
        // observed once their frames are written.
        let mut direct: Vec<&Change> = Vec::new();
        for change in changes {
            let before = tally.direct;
            self.publish_one(change, touched.as_mut(), &mut tally);
            if tally.direct > before {
                direct.push(change);
            }
        }
        for outbox in touched.into_iter().flatten() {
            outbox.flush_deferred();
        }
        if let Some(last) = changes.last() {
            self.published.fetch_max(last.revision, Ordering::AcqRel);
        }
        // Bookkeeping once per publication, not per delivery: under fan-out
        // the per-delivery work is what bounds the rate. The latency is the
        // time until a change's frame reached the last armed subscriber.
        self.stats
            .delivered
            .fetch_add(tally.delivered, Ordering::Relaxed);
        self.stats.direct.fetch_add(tally.direct, Ordering::Relaxed);
        for change in direct {
            if let Some(latency) = change.since_published() {
                self.stats.broadcast_latency.observe(latency);
            }
        }
    }

    /// Delivers one change, counting its deliveries in `tally`. `touched`
    /// collects connections to write at the end of a batch (None: write
    /// each at once).
    fn publish_one(
        &self,
        change: &Arc<Change>,
        mut touched: Option<&mut Vec<Arc<Outbox>>>,
        tally: &mut Tally,
    ) {
        change.mark_published();
        let lists = lock(&self.topics).matching(change);
        for (slots, many) in lists {
            if let Some(slots) = slots {
                self.deliver(change, &slots, many, touched.as_deref_mut(), tally);
            }
        }
    }

    /// Delivers one change to one subscriber list (`many`: of
    /// many-execution streams).
    fn deliver(
        &self,
        change: &Arc<Change>,
        slots: &[Arc<Slot>],
        many: bool,
        mut touched: Option<&mut Vec<Arc<Outbox>>>,
        tally: &mut Tally,
    ) {
        // On a one-execution stream only a plain update may bypass the
        // stream task: a terminal one or a delete ends the stream, which the
        // task must do itself. A many-execution stream takes every change
        // alike. Each kind of event is encoded at most once per change,
        // shared by every stream that takes it.
        let terminal = !many && change.is_terminal();
        let event = |deltas: bool| {
            if many {
                Some(change.many_event_bytes(deltas))
            } else {
                change.event_bytes(deltas).filter(|_| !terminal)
            }
        };
        for slot in slots.iter() {
            let mut state = lock(&slot.state);
            if state.armed.is_some() && change.revision <= state.delivered {
                // Already covered: the stream read a state at least this new
                // (a snapshot or history read can see a commit before its
                // publication reaches here).
                continue;
            }
            if let Some((armed, event)) = state
                .armed
                .take()
                .and_then(|armed| event(armed.deltas).map(|event| (armed, event)))
            {
                let frame = Frame::event(armed.request_id, event.clone());
                let taken = match touched.as_deref_mut() {
                    None => armed.outbox.try_send(frame),
                    Some(touched) => armed.outbox.try_defer(frame).map(|first| {
                        if first {
                            touched.push(armed.outbox.clone());
                        }
                    }),
                };
                match taken {
                    Ok(()) => {
                        state.delivered = change.revision;
                        state.armed = Some(armed);
                        tally.delivered += 1;
                        tally.direct += 1;
                        continue;
                    }
                    // At its bound or closed: the stream task takes over
                    // (it waits for room, or finds the connection gone).
                    Err(TrySend::Full(_) | TrySend::Closed) => {}
                }
            }
            if state.queue.len() < self.queue_capacity {
                state.queue.push_back(change.clone());
                tally.delivered += 1;
            } else {
                if !state.overflowed {
                    self.stats.overflows.fetch_add(1, Ordering::Relaxed);
                }
                // Free the memory now; the subscriber re-reads history.
                state.queue.clear();
                state.overflowed = true;
            }
            drop(state);
            slot.notify.notify_one();
        }
    }

    /// Makes every subscriber catch up from the history, as after an
    /// overflow of its queue: the cluster mode's replica was rebuilt under
    /// a new compaction floor, so each stream finds its position below it
    /// and sends an explicit RESYNC rather than continue across a gap.
    pub(crate) fn resync_all(&self) {
        let slots: Vec<Arc<Slot>> = {
            let topics = lock(&self.topics);
            topics
                .executions
                .values()
                .chain(topics.sessions.values())
                .chain(std::iter::once(&topics.all))
                .flat_map(|slots| slots.iter().cloned())
                .collect()
        };
        for slot in slots {
            let mut state = lock(&slot.state);
            state.queue.clear();
            state.overflowed = true;
            drop(state);
            slot.notify.notify_one();
        }
    }

    /// Subscribers of one execution.
    #[cfg(test)]
    pub(crate) fn subscriber_count(&self, execution_id: &str) -> usize {
        lock(&self.topics)
            .executions
            .get(execution_id)
            .map(|slots| slots.len())
            .unwrap_or(0)
    }

    /// Subscribers per execution, for `stigmer status`.
    pub(crate) fn topics(&self) -> Vec<(String, usize)> {
        lock(&self.topics)
            .executions
            .iter()
            .map(|(k, v)| (k.to_string(), v.len()))
            .collect()
    }

    /// Open many-execution streams: of one session (any), and of every
    /// execution. Counts only, for the status and the metrics.
    pub(crate) fn watch_totals(&self) -> (usize, usize) {
        let topics = lock(&self.topics);
        let session = topics.sessions.values().map(|v| v.len()).sum();
        (session, topics.all.len())
    }

    /// Open session watches per session id.
    pub(crate) fn watches_by_session(&self) -> Vec<(String, usize)> {
        lock(&self.topics)
            .sessions
            .iter()
            .map(|(k, v)| (k.to_string(), v.len()))
            .collect()
    }

    fn unsubscribe(&self, selector: &Selector, id: u64) {
        let mut topics = lock(&self.topics);
        let slots = topics.slots_mut(selector);
        let next: Vec<Arc<Slot>> = slots.iter().filter(|s| s.id != id).cloned().collect();
        *slots = Arc::new(next);
        topics.forget_if_empty(selector);
    }
}

/// A registered subscriber; unregisters itself when dropped.
pub struct Subscriber {
    broker: Arc<Broker>,
    selector: Selector,
    slot: Arc<Slot>,
}

impl Subscriber {
    /// Arms direct delivery to `outbox` under `request_id`, with
    /// `last_sent` the last revision the stream sent. Returns false (and
    /// arms nothing) when changes are already pending: [`Subscriber::recv`]
    /// then returns at once.
    pub fn arm(&self, outbox: &Arc<Outbox>, request_id: u64, last_sent: u64, deltas: bool) -> bool {
        let mut state = lock(&self.slot.state);
        if !state.queue.is_empty() || state.overflowed {
            return false;
        }
        state.delivered = last_sent;
        state.armed = Some(Armed {
            outbox: outbox.clone(),
            request_id,
            deltas,
        });
        true
    }

    /// Stops direct delivery; returns the last revision delivered directly
    /// (or the `last_sent` given to `arm`). After this, nothing reaches the
    /// connection for this stream but what the stream sends itself.
    pub(crate) fn disarm(&self) -> u64 {
        let mut state = lock(&self.slot.state);
        state.armed = None;
        state.delivered
    }

    /// Waits until changes are queued (or the queue overflowed), then
    /// disarms and moves them all into `out`; `last_sent` advances past what
    /// was delivered directly meanwhile.
    pub async fn recv(&self, out: &mut Vec<Arc<Change>>, last_sent: &mut u64) -> Received {
        loop {
            if let Some(received) = self.try_recv(out, last_sent) {
                return received;
            }
            // Waits for the next publish to this subscriber; never fails.
            self.slot.notify.notified().await;
        }
    }

    /// [`Subscriber::recv`] without waiting: `None` (and nothing changed)
    /// when nothing is queued.
    pub(crate) fn try_recv(
        &self,
        out: &mut Vec<Arc<Change>>,
        last_sent: &mut u64,
    ) -> Option<Received> {
        let mut state = lock(&self.slot.state);
        if state.queue.is_empty() && !state.overflowed {
            return None;
        }
        // `delivered` is at most what reached the connection: the
        // `last_sent` given to `arm`, or a direct delivery.
        state.armed = None;
        *last_sent = (*last_sent).max(state.delivered);
        out.extend(state.queue.drain(..));
        Some(if std::mem::take(&mut state.overflowed) {
            Received::Overflowed
        } else {
            Received::InOrder
        })
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.broker.unsubscribe(&self.selector, self.slot.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(rev: u64) -> Arc<Change> {
        Arc::new(Change::deleted(rev, Arc::from("aex-1"), Arc::from("s")))
    }

    #[tokio::test]
    async fn delivers_in_order_and_overflows_without_growing() {
        let broker = Arc::new(Broker::new(2));
        let sub = broker.subscribe("aex-1");
        broker.publish(&change(1));
        broker.publish(&change(2));
        let mut out = Vec::new();
        let mut last = 0;
        assert_eq!(sub.recv(&mut out, &mut last).await, Received::InOrder);
        assert_eq!(
            out.iter().map(|c| c.revision).collect::<Vec<_>>(),
            vec![1, 2]
        );
        out.clear();
        for rev in 3..10 {
            broker.publish(&change(rev));
        }
        assert_eq!(sub.recv(&mut out, &mut last).await, Received::Overflowed);
        assert!(out.len() <= 2, "queue stays bounded, got {}", out.len());
        assert_eq!(broker.stats.overflows.load(Ordering::Relaxed), 1);
    }

    fn update(rev: u64, phase: stigmer_proto::agentexecution::ExecutionPhase) -> Arc<Change> {
        use prost::Message;
        use stigmer_proto::agentexecution::{AgentExecution, AgentExecutionStatus};
        let execution = AgentExecution {
            status: Some(AgentExecutionStatus {
                phase: phase as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let encoded = bytes::Bytes::from(execution.encode_to_vec());
        Arc::new(Change::new(
            rev,
            Arc::from("aex-1"),
            crate::model::State::new(Arc::new(execution), Some(encoded)),
        ))
    }

    /// An outbox (room for 8 frames) on one end of a socket pair, and the
    /// peer's end.
    fn outbox_pair() -> (Arc<Outbox>, tokio::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let outbox = Outbox::new(crate::wire::socket::WriteHalf::from_std(a), 8);
        (
            Arc::new(outbox),
            tokio::net::UnixStream::from_std(b).unwrap(),
        )
    }

    /// Reads one frame off `peer` and returns the event's revision.
    async fn event_revision(peer: &mut tokio::net::UnixStream) -> u64 {
        use prost::Message;
        use tokio::io::AsyncReadExt;
        let len = peer.read_u32().await.unwrap() as usize;
        let mut body = vec![0u8; len];
        peer.read_exact(&mut body).await.unwrap();
        let response = stigmer_proto::daemon::Response::decode(&body[..]).unwrap();
        assert_eq!(response.id, 9);
        match response.result {
            Some(stigmer_proto::daemon::response::Result::Event(e)) => e.revision,
            other => panic!("{other:?}"),
        }
    }

    /// A subscriber to "aex-1" armed with a new connection's outbox
    /// (request id 9) after sending `last_sent`; the peer end reads what it
    /// is sent.
    fn armed(
        broker: &Arc<Broker>,
        last_sent: u64,
    ) -> (Subscriber, Arc<Outbox>, tokio::net::UnixStream) {
        let (outbox, peer) = outbox_pair();
        let sub = broker.subscribe("aex-1");
        assert!(sub.arm(&outbox, 9, last_sent, false));
        (sub, outbox, peer)
    }

    #[tokio::test]
    async fn an_armed_stream_gets_events_directly_until_something_needs_it() {
        use stigmer_proto::agentexecution::ExecutionPhase;
        let broker = Arc::new(Broker::new(8));
        // The stream sent revision 3 (say, its snapshot) and waits.
        let (sub, _outbox, mut peer) = armed(&broker, 3);
        // Published late, already covered by the snapshot: skipped.
        broker.publish(&update(2, ExecutionPhase::ExecutionInProgress));
        // Written to the socket by the publisher; nothing queued.
        broker.publish(&update(4, ExecutionPhase::ExecutionInProgress));
        broker.publish(&update(5, ExecutionPhase::ExecutionInProgress));
        assert_eq!(event_revision(&mut peer).await, 4);
        assert_eq!(event_revision(&mut peer).await, 5);
        assert_eq!(broker.stats.direct.load(Ordering::Relaxed), 2);
        // A terminal change must end the stream: queued for the task.
        broker.publish(&update(6, ExecutionPhase::ExecutionCompleted));
        let (mut out, mut last_sent) = (Vec::new(), 3);
        assert_eq!(sub.recv(&mut out, &mut last_sent).await, Received::InOrder);
        assert_eq!(last_sent, 5, "direct deliveries count as sent");
        assert_eq!(out.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![6]);
        // Disarmed now: later changes are queued, not written.
        broker.publish(&update(7, ExecutionPhase::ExecutionInProgress));
        assert_eq!(broker.stats.direct.load(Ordering::Relaxed), 2);
        assert_eq!(sub.disarm(), 5);
    }

    #[tokio::test]
    async fn a_batch_reaches_an_armed_stream_in_one_write_in_order() {
        use stigmer_proto::agentexecution::ExecutionPhase;
        let broker = Arc::new(Broker::new(8));
        let (_sub, outbox, mut peer) = armed(&broker, 0);
        let batch: Vec<_> = (1..=3)
            .map(|rev| update(rev, ExecutionPhase::ExecutionInProgress))
            .collect();
        broker.publish_all(&batch);
        // Written by the publisher before it returned: nothing left queued.
        assert_eq!(outbox.queued(), 0);
        for rev in 1..=3 {
            assert_eq!(event_revision(&mut peer).await, rev);
        }
    }

    #[tokio::test]
    async fn counters_and_latency_are_kept_per_publication() {
        use stigmer_proto::agentexecution::ExecutionPhase;
        let broker = Arc::new(Broker::new(8));
        let (_a, _, mut peer_a) = armed(&broker, 0);
        let (_b, _, mut peer_b) = armed(&broker, 0);
        broker.publish(&update(1, ExecutionPhase::ExecutionInProgress));
        let batch: Vec<_> = (2..=3)
            .map(|rev| update(rev, ExecutionPhase::ExecutionInProgress))
            .collect();
        broker.publish_all(&batch);
        for rev in 1..=3 {
            assert_eq!(event_revision(&mut peer_a).await, rev);
            assert_eq!(event_revision(&mut peer_b).await, rev);
        }
        // Every delivery is counted; the latency once per change (the time
        // until its last subscriber had it).
        assert_eq!(broker.stats.delivered.load(Ordering::Relaxed), 6);
        assert_eq!(broker.stats.direct.load(Ordering::Relaxed), 6);
        assert_eq!(broker.stats.broadcast_latency.count(), 3);
    }

    #[test]
    fn topic_removed_with_last_subscriber() {
        let broker = Arc::new(Broker::new(4));
        let a = broker.subscribe("aex-1");
        let b = broker.subscribe("aex-1");
        assert_eq!(broker.subscriber_count("aex-1"), 2);
        drop(a);
        assert_eq!(broker.subscriber_count("aex-1"), 1);
        drop(b);
        assert!(broker.topics().is_empty());
    }
}
