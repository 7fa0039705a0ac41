//! Keeps a connection worker awake while a lone peer sends requests close
//! together, so the next request is read without a wake-up.
//!
//! Why: on a small VM an idle vCPU halts, and a request that arrives while
//! every worker sleeps in `epoll_wait` pays for waking it through the
//! hypervisor (~45–55 µs here, docs/PERFORMANCE.md) before a byte is read.
//! The writer thread's poll (`crate::poll`) removed the same cost between a
//! connection and the writer; this removes the one between the peer and the
//! connection. After each request one task keeps yielding: each yield lets
//! its worker poll the I/O driver without blocking (tokio runs a yielded
//! task again only after an `epoll_wait` with a zero timeout), so the next
//! request's socket is seen as soon as it is readable. Measured on the
//! latency benchmark (one runner, one subscriber): p50 ~125 µs without it,
//! ~60–80 µs with it.
//!
//! When: only while requests come from one connection at a time, the case
//! of a peer that waits for each reply before it sends again, where every
//! hop adds to its round trip. Once requests from two connections come
//! within a window of each other, the daemon has concurrent work, the CPUs
//! are better left to it, and a wake-up is shared by a burst of requests:
//! measured with 32 runners, polling then cost ~20 µs of CPU per update and
//! a fifth of the throughput. The window adapts like the writer's
//! ([`PollWindow`]), so a lone peer that sends every few milliseconds is not
//! polled for at all.
//!
//! Where: tokio lets one worker at a time wait on the I/O driver, so the
//! poll must run on the worker that owns its peer's socket. Each connection
//! shard (`server::shards`) is a runtime with one worker and its own
//! driver, and has its own poll task, woken by its own connections; what
//! tells a lone peer from concurrent ones is shared by all shards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::PollWindow;

/// For how many windows after two connections sent within a window of each
/// other requests count as concurrent: long enough to span the gaps between
/// bursts of many runners (each burst is one commit's replies), short
/// enough that a peer left alone is polled for again within a millisecond.
const CONCURRENT_HOLD_WINDOWS: u64 = 4;

/// The shared state of the read poll: what the connections record, what
/// the poll task reads, and its counters.
#[derive(Debug)]
pub(crate) struct ReadPoll {
    /// `--reader-poll-us`; zero turns the poll off.
    max: Duration,
    /// The clock the atomics below count nanoseconds from.
    origin: Instant,
    /// When the last request was read.
    last: AtomicU64,
    /// Which connection sent it.
    last_conn: AtomicU64,
    /// Until when requests count as concurrent (no polling).
    concurrent_until: AtomicU64,
    /// One poll task per connection shard, by shard number.
    shards: Box<[Sleeper]>,
    /// Requests read while the task polled (no wake-up).
    pub(crate) hits: AtomicU64,
    /// Nanoseconds spent polling (CPU the poll costs).
    pub(crate) nanos: AtomicU64,
}

/// A shard's poll task: whether it sleeps, how to wake it, and the gap
/// before the request that woke it (for its window). Each shard's own, so
/// that two shards' tasks never read each other's gap.
#[derive(Debug)]
struct Sleeper {
    asleep: AtomicBool,
    wake: Notify,
    woken_gap: AtomicU64,
}

impl ReadPoll {
    /// A read poll capped at `max` (zero: off), for `shards` connection
    /// shards (at least one).
    pub(crate) fn new(max: Duration, shards: usize) -> Self {
        ReadPoll {
            max,
            origin: Instant::now(),
            last: AtomicU64::new(0),
            last_conn: AtomicU64::new(0),
            concurrent_until: AtomicU64::new(0),
            shards: (0..shards.max(1))
                .map(|_| Sleeper {
                    asleep: AtomicBool::new(true),
                    wake: Notify::new(),
                    woken_gap: AtomicU64::new(u64::MAX),
                })
                .collect(),
            hits: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        crate::poll::nanos(self.origin.elapsed())
    }

    fn max_nanos(&self) -> u64 {
        crate::poll::nanos(self.max)
    }

    /// Records a request read from connection `conn` on shard `shard`;
    /// wakes that shard's poll task when this peer is alone and the task
    /// sleeps. A few atomics per request.
    pub(crate) fn request(&self, conn: u64, shard: usize) {
        if self.max.is_zero() {
            return;
        }
        self.record(conn, shard, self.now());
    }

    fn sleeper(&self, shard: usize) -> &Sleeper {
        // `shards` is never empty; a shard number out of range (never made
        // by the server) falls back to the first.
        self.shards.get(shard).unwrap_or(&self.shards[0])
    }

    /// [`ReadPoll::request`] at time `now` (tests drive the clock).
    fn record(&self, conn: u64, shard: usize, now: u64) {
        let gap = now.saturating_sub(self.last.swap(now, Ordering::AcqRel));
        let other = self.last_conn.swap(conn, Ordering::Relaxed) != conn;
        if other && gap <= self.max_nanos() {
            let hold = self.max_nanos().saturating_mul(CONCURRENT_HOLD_WINDOWS);
            self.concurrent_until
                .store(now.saturating_add(hold), Ordering::Relaxed);
        }
        let sleeper = self.sleeper(shard);
        if !self.concurrent(now) && sleeper.asleep.swap(false, Ordering::AcqRel) {
            sleeper.woken_gap.store(gap, Ordering::Relaxed);
            sleeper.wake.notify_one();
        }
    }

    /// Whether requests from several connections came close together lately.
    fn concurrent(&self, now: u64) -> bool {
        now < self.concurrent_until.load(Ordering::Relaxed)
    }

    /// Polls after each lone request read on shard `shard` until the next
    /// request or the window's end, and sleeps in between; returns at
    /// shutdown. One task per shard, spawned on that shard.
    pub(crate) async fn run(self: Arc<Self>, shard: usize, shutdown: CancellationToken) {
        if self.max.is_zero() {
            return;
        }
        let sleeper = self.sleeper(shard);
        let mut window = PollWindow::new(self.max);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Sleeps until a lone peer's request arrives (`record`).
                _ = sleeper.wake.notified() => {}
            }
            window.blocked(Duration::from_nanos(
                sleeper.woken_gap.load(Ordering::Relaxed),
            ));
            loop {
                let after = self.last.load(Ordering::Acquire);
                if !self.poll_once(window.current(), after, &shutdown).await {
                    break;
                }
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            sleeper.asleep.store(true, Ordering::Release);
            // A request that came after the last look found the task awake
            // and did not wake it: it is simply not polled after (no
            // request is delayed; the connection reads it either way).
        }
    }

    /// Polls until a request newer than `after` is read (true) or `window`
    /// ends, requests turn concurrent or the daemon stops (false).
    async fn poll_once(&self, window: Duration, after: u64, shutdown: &CancellationToken) -> bool {
        let start = Instant::now();
        let got = loop {
            if self.last.load(Ordering::Acquire) != after {
                break true;
            }
            if start.elapsed() >= window || self.concurrent(self.now()) || shutdown.is_cancelled() {
                break false;
            }
            // Back in the worker's queue behind an `epoll_wait` that does
            // not block: a readable socket's task runs before this one.
            tokio::task::yield_now().await;
            // And the CPU to any other thread that wants it (a client on
            // this machine): `sched_yield` returns at once when none does.
            std::thread::yield_now();
        };
        self.nanos
            .fetch_add(crate::poll::nanos(start.elapsed()), Ordering::Relaxed);
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(200);
    const US: u64 = 1_000;

    /// Whether a request recorded at `now` would wake shard 0's sleeping
    /// poll task.
    fn wakes(p: &ReadPoll, conn: u64, now: u64) -> bool {
        wakes_shard(p, conn, 0, now)
    }

    fn wakes_shard(p: &ReadPoll, conn: u64, shard: usize, now: u64) -> bool {
        let sleeper = p.sleeper(shard);
        sleeper.asleep.store(true, Ordering::Relaxed);
        p.record(conn, shard, now);
        !sleeper.asleep.load(Ordering::Relaxed)
    }

    #[test]
    fn a_lone_peer_wakes_the_poll_and_a_second_one_stops_it() {
        let p = ReadPoll::new(MAX, 1);
        assert!(wakes(&p, 1, 1_000 * US), "a lone peer is polled for");
        assert!(wakes(&p, 1, 1_100 * US));
        assert_eq!(p.sleeper(0).woken_gap.load(Ordering::Relaxed), 100 * US);
        // A second connection within the window: concurrent for 4 windows.
        assert!(!wakes(&p, 2, 1_150 * US));
        assert!(p.concurrent(1_150 * US + 799 * US));
        assert!(!wakes(&p, 1, 1_700 * US), "still concurrent");
        // Left alone again past the hold: polled for again.
        assert!(wakes(&p, 1, 3_000 * US));
    }

    /// Each shard's task is woken by its own connections; what counts as
    /// concurrent is shared, so peers on two shards do not both poll.
    #[test]
    fn shards_wake_their_own_task_and_share_the_concurrency() {
        let p = ReadPoll::new(MAX, 2);
        assert!(wakes_shard(&p, 1, 1, 1_000 * US), "shard 1's lone peer");
        assert!(
            p.sleeper(0).asleep.load(Ordering::Relaxed),
            "shard 0 sleeps on"
        );
        assert_eq!(
            p.sleeper(0).woken_gap.load(Ordering::Relaxed),
            u64::MAX,
            "shard 1's wake-up leaves shard 0's window alone"
        );
        // A peer on shard 0 within the window: concurrent for both shards.
        assert!(!wakes_shard(&p, 2, 0, 1_050 * US));
        assert!(!wakes_shard(&p, 1, 1, 1_100 * US));
        // An out-of-range shard number falls back to the first.
        assert!(wakes_shard(&p, 3, 9, 9_000 * US));
        assert!(!p.sleeper(0).asleep.load(Ordering::Relaxed));
    }

    #[test]
    fn two_peers_far_apart_are_not_concurrent() {
        let p = ReadPoll::new(MAX, 1);
        assert!(wakes(&p, 1, 1_000 * US));
        // Another connection, but 5 ms later: each is a lone peer.
        assert!(wakes(&p, 2, 6_000 * US));
        assert!(!p.concurrent(6_000 * US));
    }

    #[tokio::test]
    async fn off_at_zero() {
        let p = Arc::new(ReadPoll::new(Duration::ZERO, 1));
        p.request(1, 0);
        assert_eq!(p.last.load(Ordering::Relaxed), 0, "nothing recorded");
        // The task returns at once.
        p.clone().run(0, CancellationToken::new()).await;
    }

    #[tokio::test]
    async fn a_poll_ends_with_the_next_request_or_its_window() {
        let p = ReadPoll::new(MAX, 1);
        let shutdown = CancellationToken::new();
        let after = p.last.load(Ordering::Acquire);
        assert!(
            !p.poll_once(Duration::from_micros(50), after, &shutdown)
                .await,
            "nothing came within the window"
        );
        p.record(1, 0, p.now());
        assert!(p.poll_once(MAX, after, &shutdown).await, "a request came");
        assert!(p.nanos.load(Ordering::Relaxed) >= 50 * US);
    }
}
