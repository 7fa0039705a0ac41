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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::store::Change;

/// Counters for `stigmer status`.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Changes delivered into subscriber queues.
    pub delivered: AtomicU64,
    /// Times a subscriber queue overflowed (each followed by a catch-up).
    pub overflows: AtomicU64,
}

/// Routes committed changes to subscriber queues.
///
/// A std `Mutex` guards the topic map: it is held only to push pointers into
/// queues or to add/remove a subscriber, never across an `.await`, so a
/// blocking lock is cheaper than tokio's and cannot deadlock the runtime.
pub struct Broker {
    topics: Mutex<HashMap<Arc<str>, Vec<Arc<Slot>>>>,
    queue_capacity: usize,
    next_id: AtomicU64,
    /// Counters.
    pub stats: BrokerStats,
}

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
            topics: Mutex::new(HashMap::new()),
            queue_capacity: queue_capacity.max(1),
            next_id: AtomicU64::new(1),
            stats: BrokerStats::default(),
        }
    }

    /// Registers a subscriber to `execution_id`. Call this BEFORE reading the
    /// snapshot or history: every change committed after this call is queued.
    pub fn subscribe(self: &Arc<Self>, execution_id: &str) -> Subscriber {
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(SlotState::default()),
            notify: Notify::new(),
        });
        let key: Arc<str> = Arc::from(execution_id);
        lock(&self.topics)
            .entry(key.clone())
            .or_default()
            .push(slot.clone());
        Subscriber {
            broker: self.clone(),
            execution_id: key,
            slot,
        }
    }

    /// Queues a committed change for every subscriber of its execution.
    /// Never blocks on a subscriber.
    pub fn publish(&self, change: &Arc<Change>) {
        change.mark_published();
        let topics = lock(&self.topics);
        let Some(slots) = topics.get(&change.execution_id) else {
            return;
        };
        for slot in slots {
            {
                let mut state = lock(&slot.state);
                if state.queue.len() < self.queue_capacity {
                    state.queue.push_back(change.clone());
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                } else {
                    if !state.overflowed {
                        self.stats.overflows.fetch_add(1, Ordering::Relaxed);
                    }
                    // Free the memory now; the subscriber re-reads history.
                    state.queue.clear();
                    state.overflowed = true;
                }
            }
            slot.notify.notify_one();
        }
    }

    /// Subscribers of one execution.
    pub fn subscriber_count(&self, execution_id: &str) -> usize {
        lock(&self.topics)
            .get(execution_id)
            .map(Vec::len)
            .unwrap_or(0)
    }

    /// Subscribers per execution, for `stigmer status`.
    pub fn topics(&self) -> Vec<(String, usize)> {
        lock(&self.topics)
            .iter()
            .map(|(k, v)| (k.to_string(), v.len()))
            .collect()
    }

    /// All subscribers.
    pub fn total_subscribers(&self) -> usize {
        lock(&self.topics).values().map(Vec::len).sum()
    }

    fn unsubscribe(&self, execution_id: &Arc<str>, id: u64) {
        let mut topics = lock(&self.topics);
        if let Some(slots) = topics.get_mut(execution_id) {
            slots.retain(|s| s.id != id);
            if slots.is_empty() {
                topics.remove(execution_id);
            }
        }
    }
}

/// A registered subscriber; unregisters itself when dropped.
pub struct Subscriber {
    broker: Arc<Broker>,
    execution_id: Arc<str>,
    slot: Arc<Slot>,
}

impl Subscriber {
    /// Waits until changes are queued (or the queue overflowed), then moves
    /// them all into `out`.
    pub async fn recv(&self, out: &mut Vec<Arc<Change>>) -> Received {
        loop {
            {
                let mut state = lock(&self.slot.state);
                if !state.queue.is_empty() || state.overflowed {
                    out.extend(state.queue.drain(..));
                    return if std::mem::take(&mut state.overflowed) {
                        Received::Overflowed
                    } else {
                        Received::InOrder
                    };
                }
            }
            // Waits for the next publish to this subscriber; never fails.
            self.slot.notify.notified().await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.broker.unsubscribe(&self.execution_id, self.slot.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(rev: u64) -> Arc<Change> {
        Arc::new(Change::deleted(rev, Arc::from("aex-1")))
    }

    #[tokio::test]
    async fn delivers_in_order_and_overflows_without_growing() {
        let broker = Arc::new(Broker::new(2));
        let sub = broker.subscribe("aex-1");
        broker.publish(&change(1));
        broker.publish(&change(2));
        let mut out = Vec::new();
        assert_eq!(sub.recv(&mut out).await, Received::InOrder);
        assert_eq!(
            out.iter().map(|c| c.revision).collect::<Vec<_>>(),
            vec![1, 2]
        );
        out.clear();
        for rev in 3..10 {
            broker.publish(&change(rev));
        }
        assert_eq!(sub.recv(&mut out).await, Received::Overflowed);
        assert!(out.len() <= 2, "queue stays bounded, got {}", out.len());
        assert_eq!(broker.stats.overflows.load(Ordering::Relaxed), 1);
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
