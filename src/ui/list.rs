//! The executions page's live table. One [`Hub`] per UI process follows
//! every execution of the machine with one [`stigmer_client::Watch`] (which
//! resumes by itself across daemon restarts), keeps a row per execution,
//! and fans each change out to the open tabs over Server-Sent Events.
//!
//! Each SSE event's `id` is the daemon revision of the change. A tab that
//! reconnects with `Last-Event-ID: R` gets the changes after `R` from the
//! hub's ring of recent changes when the ring still reaches back to `R`;
//! otherwise (an older `R`, the ring moved on, the hub relisted) it gets a
//! `reset` event with every row, which replaces its table. Either way
//! nothing is missed and nothing applies twice (rows are whole values,
//! keyed by id).
//!
//! Bounds: the ring holds [`RING`] changes and the fan-out channel
//! [`FANOUT`]; a tab that falls further behind than the channel (a stalled
//! connection) is resynced with a `reset` when it reads again, so a stalled
//! tab never grows the process's memory.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use stigmer_client::{Client, Notice, Selector, WatchEvent, WatchOptions};
use tokio::sync::broadcast;

use super::json::{id_of, row};
use super::App;

/// Recent changes kept for tabs resuming by `Last-Event-ID`.
const RING: usize = 4096;
/// Changes buffered for the tabs between the watch and their connections.
const FANOUT: usize = 1024;

/// One change of the table.
#[derive(Clone, Debug)]
enum Item {
    /// An execution's row, created or changed.
    Row { revision: u64, row: Arc<Value> },
    /// An execution was deleted.
    Gone { revision: u64, id: String },
    /// The table was listed again (first list, or a relist): every tab
    /// takes a snapshot.
    Reset,
    /// The watch's connection to the daemon broke or came back.
    Notice(String),
}

impl Item {
    fn revision(&self) -> u64 {
        match self {
            Item::Row { revision, .. } | Item::Gone { revision, .. } => *revision,
            Item::Reset | Item::Notice(_) => 0,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Every execution's row, by id (complete once `listed`).
    rows: BTreeMap<String, Arc<Value>>,
    /// The last revision applied (changes and bookmarks).
    revision: u64,
    /// The initial list (or the relist after a resync) is complete.
    listed: bool,
    /// Recent changes, oldest first.
    ring: VecDeque<Item>,
    /// Every change after this revision is in the ring.
    floor: u64,
    /// The latest connection notice, shown to tabs that open meanwhile.
    notice: Option<String>,
}

/// The shared watch and its table.
pub(crate) struct Hub {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Item>,
}

impl Hub {
    /// Starts following every execution with `client`.
    pub(crate) fn start(client: Client) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(FANOUT);
        let hub = Arc::new(Hub {
            inner: Mutex::new(Inner::default()),
            tx,
        });
        tokio::spawn(follow(client, hub.clone()));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, inner: &mut Inner, item: Item) {
        if item.revision() > 0 {
            inner.ring.push_back(item.clone());
            while inner.ring.len() > RING {
                if let Some(old) = inner.ring.pop_front() {
                    inner.floor = old.revision();
                }
            }
        }
        // No receivers is fine: no tab is open.
        let _ = self.tx.send(item);
    }

    fn apply(&self, event: WatchEvent) {
        let mut inner = self.lock();
        match event {
            WatchEvent::Snapshot { execution, .. } => {
                inner
                    .rows
                    .insert(id_of(&execution).to_string(), Arc::new(row(&execution)));
            }
            WatchEvent::Created {
                revision,
                execution,
            }
            | WatchEvent::Updated {
                revision,
                execution,
                ..
            } => {
                let r = Arc::new(row(&execution));
                inner.rows.insert(id_of(&execution).to_string(), r.clone());
                inner.revision = inner.revision.max(revision);
                if inner.listed {
                    self.publish(&mut inner, Item::Row { revision, row: r });
                }
            }
            WatchEvent::Deleted {
                revision,
                execution_id,
                ..
            } => {
                inner.rows.remove(&execution_id);
                inner.revision = inner.revision.max(revision);
                if inner.listed {
                    self.publish(
                        &mut inner,
                        Item::Gone {
                            revision,
                            id: execution_id,
                        },
                    );
                }
            }
            WatchEvent::Bookmark {
                revision,
                initial_events_end,
            } => {
                inner.revision = inner.revision.max(revision);
                if initial_events_end {
                    inner.listed = true;
                    inner.ring.clear();
                    inner.floor = inner.revision;
                    self.publish(&mut inner, Item::Reset);
                }
            }
            WatchEvent::Resync { .. } => {
                inner.listed = false;
                inner.rows.clear();
            }
        }
    }

    fn notice(&self, text: String) {
        let mut inner = self.lock();
        inner.notice = Some(text.clone());
        self.publish(&mut inner, Item::Notice(text));
    }

    /// The whole table as a `reset` event (`None` before the list is in).
    fn snapshot(&self) -> Option<(u64, Event)> {
        let inner = self.lock();
        if !inner.listed {
            return None;
        }
        let rows: Vec<&Value> = inner.rows.values().map(|r| r.as_ref()).collect();
        let data = json!({ "rows": rows, "notice": inner.notice });
        Some((
            inner.revision,
            Event::default()
                .event("reset")
                .id(inner.revision.to_string())
                .data(data.to_string()),
        ))
    }

    /// A tab's start: its receiver (subscribed under the lock, so no change
    /// falls between), and the changes after `last` when the ring still
    /// has them all (`None`: the tab needs a snapshot).
    fn attach(&self, last: Option<u64>) -> (broadcast::Receiver<Item>, Option<Vec<Item>>) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let replay = match last {
            Some(last) if inner.listed && last >= inner.floor && last <= inner.revision => Some(
                inner
                    .ring
                    .iter()
                    .filter(|i| i.revision() > last)
                    .cloned()
                    .collect(),
            ),
            _ => None,
        };
        (rx, replay)
    }
}

/// The watch loop: applies every event to the hub; starts the watch again
/// (after a pause) if it ever ends.
async fn follow(client: Client, hub: Arc<Hub>) {
    loop {
        match client.watch(Selector::All, WatchOptions::default()).await {
            Ok(watch) => {
                let notices = hub.clone();
                let mut watch = watch.on_notice(move |n| {
                    notices.notice(match n {
                        Notice::Reconnecting { reason, .. } => {
                            format!("reconnecting to the daemon: {reason}")
                        }
                        Notice::Resumed { .. } => String::new(),
                    })
                });
                while let Some(event) = watch.next().await {
                    match event {
                        Ok(event) => hub.apply(event),
                        Err(e) => {
                            hub.notice(format!("the watch failed: {e}; starting again"));
                            break;
                        }
                    }
                }
            }
            Err(e) => hub.notice(format!("cannot watch the daemon: {e}; retrying")),
        }
        // A new watch lists everything again (rows of executions deleted
        // meanwhile must not linger); tabs get a reset then.
        {
            let mut inner = hub.lock();
            inner.listed = false;
            inner.rows.clear();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `Last-Event-ID` as a revision.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn to_event(item: &Item) -> Option<Event> {
    match item {
        Item::Row { revision, row } => Some(
            Event::default()
                .event("row")
                .id(revision.to_string())
                .data(row.to_string()),
        ),
        Item::Gone { revision, id } => Some(
            Event::default()
                .event("gone")
                .id(revision.to_string())
                .data(json!({ "id": id }).to_string()),
        ),
        Item::Notice(text) => Some(
            Event::default()
                .event("notice")
                .data(json!({ "text": text }).to_string()),
        ),
        Item::Reset => None,
    }
}

/// A tab's state between two events.
struct Tab {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Item>,
    /// Events ready to send.
    queue: VecDeque<Event>,
    /// The revision of the last change sent: later copies are skipped.
    sent: u64,
}

impl Tab {
    fn reset(&mut self) {
        if let Some((revision, event)) = self.hub.snapshot() {
            self.sent = revision;
            self.queue.push_back(event);
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Tab)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((Ok(event), self));
            }
            match self.rx.recv().await {
                Ok(Item::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => self.reset(),
                Ok(item) => {
                    let revision = item.revision();
                    if revision > 0 && revision <= self.sent {
                        continue;
                    }
                    self.sent = self.sent.max(revision);
                    if let Some(event) = to_event(&item) {
                        self.queue.push_back(event);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// `GET /api/watch`: the table as SSE.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last = last_event_id(&headers);
    let (rx, replay) = app.hub.attach(last);
    let mut tab = Tab {
        hub: app.hub.clone(),
        rx,
        queue: VecDeque::new(),
        sent: 0,
    };
    match (replay, last) {
        (Some(items), Some(last)) => {
            tab.sent = last;
            for item in &items {
                tab.sent = tab.sent.max(item.revision());
                tab.queue.extend(to_event(item));
            }
        }
        _ => tab.reset(),
    }
    let stream =
        futures::stream::unfold(tab, Tab::next).take_until(app.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stigmer_client::proto::agentexecution::AgentExecution;
    use stigmer_client::proto::apiresource::ApiResourceMetadata;

    fn hub() -> Hub {
        let (tx, _) = broadcast::channel(FANOUT);
        Hub {
            inner: Mutex::new(Inner::default()),
            tx,
        }
    }

    fn execution(id: &str) -> Arc<AgentExecution> {
        Arc::new(AgentExecution {
            metadata: Some(ApiResourceMetadata {
                id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn revisions(items: Option<Vec<Item>>) -> Option<Vec<u64>> {
        items.map(|v| v.iter().map(Item::revision).collect())
    }

    #[test]
    fn resume_replays_from_the_ring_or_asks_for_a_reset() {
        let h = hub();
        assert!(h.snapshot().is_none(), "no table before the list");
        h.apply(WatchEvent::Snapshot {
            revision: 2,
            execution: execution("a"),
        });
        h.apply(WatchEvent::Bookmark {
            revision: 5,
            initial_events_end: true,
        });
        for (revision, id) in [(6, "b"), (7, "a")] {
            h.apply(WatchEvent::Updated {
                revision,
                execution: execution(id),
                ops: None,
            });
        }
        h.apply(WatchEvent::Deleted {
            revision: 8,
            execution_id: "b".into(),
            last_state: None,
        });
        assert_eq!(revisions(h.attach(Some(6)).1), Some(vec![7, 8]));
        assert_eq!(revisions(h.attach(Some(5)).1), Some(vec![6, 7, 8]));
        assert_eq!(revisions(h.attach(Some(8)).1), Some(vec![]));
        assert_eq!(revisions(h.attach(Some(4)).1), None, "before the list");
        assert_eq!(revisions(h.attach(Some(9)).1), None, "from the future");
        assert_eq!(revisions(h.attach(None).1), None);
        let (revision, _) = h.snapshot().expect("listed");
        assert_eq!(revision, 8);
        assert_eq!(h.lock().rows.len(), 1);
    }

    #[test]
    fn the_ring_is_bounded_and_its_floor_follows() {
        let h = hub();
        h.apply(WatchEvent::Bookmark {
            revision: 0,
            initial_events_end: true,
        });
        let n = RING as u64 + 10;
        for revision in 1..=n {
            h.apply(WatchEvent::Updated {
                revision,
                execution: execution("a"),
                ops: None,
            });
        }
        assert_eq!(h.lock().ring.len(), RING);
        assert_eq!(revisions(h.attach(Some(5)).1), None, "fell out of the ring");
        assert_eq!(revisions(h.attach(Some(n - 1)).1), Some(vec![n]));
        // A resync relists: no resume across it.
        h.apply(WatchEvent::Resync { revision: n });
        assert_eq!(revisions(h.attach(Some(n)).1), None);
    }
}
