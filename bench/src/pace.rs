//! Sends paced to the microsecond: a `timerfd` per runner, awaited through
//! tokio's reactor.
//!
//! Why not `tokio::time::sleep_until`: tokio's timer wheel fires on whole
//! milliseconds, so runners whose tokens are meant to be spread over a
//! token interval (32 runners at 250 tokens/s: one every 125 µs) leave it
//! in bunches, all the runners due within a millisecond at the same tick
//! (about 8 at once, every millisecond). That measures a burst the bench
//! made, not the spread of independent runners, whose tokens do not line
//! up on a shared clock tick. A `timerfd` is a kernel high-resolution
//! timer (no timer slack applies to it), readable when it expires, so each
//! runner wakes at its own due time on the same one client thread.
//! Written by hand: no well-kept crate offers a sub-millisecond timer for
//! tokio, and this is a dozen lines over `nix`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

/// `AsyncFd` wants `AsRawFd`; nix's `TimerFd` offers `AsFd`.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One runner's timer.
pub(crate) struct Pacer {
    timer: AsyncFd<Timer>,
}

impl Pacer {
    /// A timer on `CLOCK_MONOTONIC` (the clock of `Instant`), non-blocking
    /// so that reading it before it expires answers `EAGAIN`. Needs a tokio
    /// runtime with I/O enabled.
    pub(crate) fn new() -> io::Result<Pacer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the fd is the `TimerFd`'s, owned by the `Timer` that the
        // `AsyncFd` owns: it stays open, and `as_raw_fd` returns it, for as
        // long as the registration lives.
        let timer = unsafe { AsyncFd::register_with_interest(Timer(fd), Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Pacer { timer })
    }

    /// Returns at `due` (at once when it has passed).
    pub(crate) async fn until(&mut self, due: Instant) -> io::Result<()> {
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        // A zero expiration would disarm the timer; a nanosecond is "now".
        let left = left.max(Duration::from_nanos(1));
        self.timer.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        )?;
        loop {
            // Waits for the timer's expiry (the fd turning readable).
            let mut ready = self.timer.readable().await?;
            match ready.try_io(|t| match t.get_ref().0.wait() {
                Ok(()) => Ok(()),
                Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e.into()),
            }) {
                Ok(result) => return result,
                // Not expired yet (a readiness left from before): wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_its_due_time_not_the_next_millisecond() {
        let mut pacer = Pacer::new().expect("timerfd");
        // Twenty waits of 250 µs: tokio's timer would take 20 ms or more.
        let start = Instant::now();
        for i in 1..=20u32 {
            pacer
                .until(start + Duration::from_micros(250) * i)
                .await
                .expect("wait");
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(5), "{took:?}");
        assert!(took < Duration::from_millis(15), "{took:?}");
    }

    #[tokio::test]
    async fn a_past_due_time_returns_at_once() {
        let mut pacer = Pacer::new().expect("timerfd");
        pacer
            .until(Instant::now() - Duration::from_millis(1))
            .await
            .expect("wait");
    }
}
