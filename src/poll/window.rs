//! The adaptive poll window: how long a thread polls before it sleeps. The
//! writer thread polls its queue (`crate::writer`), and a connection worker
//! polls the sockets while a lone peer sends requests close together
//! ([`super::read`]). This file tells the writer's case; the window is the
//! same for both.
//!
//! Why: on a small VM, waking a sleeping thread costs tens of microseconds
//! (an inter-processor interrupt through the hypervisor), and the first
//! commit after a sleep runs about twice as slow as one on a warm CPU (30
//! against 60 µs for the same SQLite transaction, docs/PERFORMANCE.md). For
//! an update that arrives soon after the previous one, both costs are
//! avoided if the writer thread is still awake: it polls its queue for a
//! short window before it blocks. Measured on the latency benchmark (one
//! writer, one subscriber): p50 ~200 µs without polling, ~120 µs with it.
//!
//! Polling burns CPU, so the window adapts the way Linux's guest halt-poll
//! does: it grows (doubling, up to `--writer-poll-us`) while jobs keep
//! arriving within that cap of the previous batch, and shrinks (halving, then
//! to zero) when they do not. An idle daemon, or one that receives an update
//! every few milliseconds, does not poll at all; while updates come less
//! than the cap apart, the writer thread stays on its CPU. The thread yields
//! between looks, so a runnable thread on the same CPU (a connection worker
//! bringing the next update) is not kept waiting.

use std::time::{Duration, Instant};

/// The window a growing poll starts from: shorter polls rarely catch a job
/// (a cross-thread hand-off alone takes several microseconds).
const GROW_START: Duration = Duration::from_micros(10);

/// `d` in nanoseconds for an atomic counter (saturating: a poll never
/// lasts 584 years, but no conversion here can panic).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The current poll window and its cap.
#[derive(Debug)]
pub(crate) struct PollWindow {
    max: Duration,
    window: Duration,
}

/// What a poll found.
pub(crate) enum Polled<T> {
    /// An item, after polling this long.
    Got(T, Duration),
    /// Nothing within the window, after polling this long (zero when
    /// polling is off); the caller blocks.
    Nothing(Duration),
}

impl PollWindow {
    /// A window capped at `max`; zero turns polling off.
    pub(crate) fn new(max: Duration) -> Self {
        PollWindow {
            max,
            window: Duration::ZERO,
        }
    }

    /// The window the next poll will use.
    pub(crate) fn current(&self) -> Duration {
        self.window
    }

    /// Calls `try_take` until it returns an item or the window ends,
    /// yielding the CPU between calls. A hit leaves the window as it is.
    pub(crate) fn poll<T>(&self, mut try_take: impl FnMut() -> Option<T>) -> Polled<T> {
        if self.window.is_zero() {
            return Polled::Nothing(Duration::ZERO);
        }
        let start = Instant::now();
        loop {
            if let Some(item) = try_take() {
                return Polled::Got(item, start.elapsed());
            }
            let polled = start.elapsed();
            if polled >= self.window {
                return Polled::Nothing(polled);
            }
            std::thread::yield_now();
        }
    }

    /// After a poll found nothing and the thread blocked: `waited` is the
    /// time from the end of the previous batch to the next job. Within the
    /// cap, a longer poll would have caught it (grow); beyond it, polling
    /// only burns CPU (shrink).
    pub(crate) fn blocked(&mut self, waited: Duration) {
        if self.max.is_zero() {
            return;
        }
        if waited <= self.max {
            self.window = (self.window * 2).max(GROW_START).min(self.max);
        } else {
            self.window /= 2;
            if self.window < GROW_START {
                self.window = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(200);

    /// The window (µs) after each of `times` jobs that came `waited` after
    /// the previous batch.
    fn windows(w: &mut PollWindow, waited: Duration, times: usize) -> Vec<u128> {
        (0..times)
            .map(|_| {
                w.blocked(waited);
                w.current().as_micros()
            })
            .collect()
    }

    #[test]
    fn grows_to_the_cap_while_jobs_come_soon() {
        let mut w = PollWindow::new(MAX);
        assert_eq!(w.current(), Duration::ZERO);
        let seen = windows(&mut w, Duration::from_micros(150), 6);
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 200]);
    }

    #[test]
    fn shrinks_to_zero_when_jobs_stop_coming_soon() {
        let mut w = PollWindow::new(MAX);
        windows(&mut w, Duration::from_micros(100), 6);
        assert_eq!(w.current(), MAX);
        let seen = windows(&mut w, Duration::from_millis(5), 6);
        assert_eq!(seen, vec![100, 50, 25, 12, 0, 0]);
    }

    #[test]
    fn a_zero_cap_never_polls() {
        let mut w = PollWindow::new(Duration::ZERO);
        for _ in 0..10 {
            w.blocked(Duration::from_micros(1));
        }
        assert_eq!(w.current(), Duration::ZERO);
        let mut calls = 0;
        assert!(matches!(
            w.poll(|| {
                calls += 1;
                Some(())
            }),
            Polled::Nothing(Duration::ZERO)
        ));
        assert_eq!(calls, 0, "a zero window does not even look");
    }

    #[test]
    fn a_poll_returns_what_arrives_within_the_window_or_gives_up() {
        let mut w = PollWindow::new(Duration::from_millis(50));
        for _ in 0..20 {
            w.blocked(Duration::from_millis(1));
        }
        assert_eq!(w.current(), Duration::from_millis(50));
        // An item on the third look.
        let mut looks = 0;
        match w.poll(|| {
            looks += 1;
            (looks == 3).then_some(7)
        }) {
            Polled::Got(item, _) => assert_eq!(item, 7),
            Polled::Nothing(_) => panic!("the item was there"),
        }
        // Nothing at all: the poll ends once the window has passed.
        match w.poll(|| None::<()>) {
            Polled::Nothing(polled) => assert!(polled >= Duration::from_millis(50)),
            Polled::Got(..) => panic!("there was nothing"),
        }
    }
}
