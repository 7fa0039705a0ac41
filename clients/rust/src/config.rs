//! Client settings: the frame limit, per-stream buffering and how
//! subscriptions reconnect. Defaults match the daemon's defaults, so most
//! programs never touch them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Settings for a [`crate::Client`]; start from `Config::default()`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest frame body sent or accepted, in bytes. Defaults to the
    /// daemon's default (4 MiB); set it to the daemon's `--max-frame-length`
    /// when that was changed. A request that encodes larger fails with
    /// [`crate::Error::FrameTooLarge`] without being sent.
    pub max_frame_length: usize,
    /// Events buffered per subscription between the connection's reader and
    /// the consumer. When a consumer falls this far behind, the client drops
    /// the stream and resubscribes from the last revision it delivered, so a
    /// slow consumer never stalls other calls on the connection and loses
    /// nothing.
    pub stream_queue: usize,
    /// Whether subscriptions resume by themselves after the connection drops
    /// or the daemon ends a stream with `SHUTDOWN`/`SLOW_CONSUMER`. When
    /// false, those surface as [`crate::Error::Closed`] or an
    /// [`crate::Event::End`] and the stream ends.
    pub resume: bool,
    /// How resuming subscriptions reconnect.
    pub reconnect: Reconnect,
    /// A uid, besides root and this process's effective uid, accepted as the
    /// daemon's. After connecting, the client reads the socket's peer
    /// credentials and refuses any other daemon with
    /// [`crate::Error::UntrustedDaemon`] before sending a byte (the defence
    /// against another local user squatting on the socket path). Set it
    /// when the daemon legitimately runs as another user, e.g. a system
    /// service started without socket activation. Defaults to
    /// `$STIGMER_EXPECTED_UID` when that holds a number.
    pub expected_uid: Option<u32>,
    /// Whether subscriptions ask for deltas (`SubscribeRequest.deltas`):
    /// each change arrives as its operations, applied to a state kept here,
    /// so a token stream costs its tokens, not the whole transcript per
    /// change. The consumer still gets the whole state at every revision
    /// ([`crate::Event::Delta`]). Default on.
    pub deltas: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_length: crate::proto::frame::DEFAULT_MAX_FRAME_LENGTH,
            stream_queue: 256,
            resume: true,
            reconnect: Reconnect::default(),
            expected_uid: expected_uid_from_env(),
            deltas: true,
        }
    }
}

/// `$STIGMER_EXPECTED_UID` as a uid; unset, empty or not a number is none
/// (a bad value is logged, and only narrows whom the client trusts).
fn expected_uid_from_env() -> Option<u32> {
    let text = std::env::var(crate::paths::EXPECTED_UID_ENV).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse() {
        Ok(uid) => Some(uid),
        Err(_) => {
            tracing::warn!(
                value = text,
                "{} is not a uid; ignored",
                crate::paths::EXPECTED_UID_ENV
            );
            None
        }
    }
}

/// Jittered exponential backoff for reconnecting subscriptions.
///
/// The n-th consecutive attempt waits `min(max_backoff, initial_backoff *
/// 2^(n-1))`, of which a random half is jitter, so many watchers of one
/// restarting daemon do not reconnect in lock step.
#[derive(Clone, Debug)]
pub struct Reconnect {
    /// Wait before the first reconnection attempt (default 50 ms).
    pub initial_backoff: Duration,
    /// Longest wait between attempts (default 2 s).
    pub max_backoff: Duration,
    /// Give up (the stream yields [`crate::Error::GaveUp`] and ends) after
    /// being disconnected this long; `None` (the default) retries forever.
    pub give_up_after: Option<Duration>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            give_up_after: None,
        }
    }
}

impl Reconnect {
    /// The wait before attempt `attempt` (1-based), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff);
        // Equal jitter: half fixed, half random.
        let half = base / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let extra = if span == 0 { 0 } else { random() % (span + 1) };
        half + Duration::from_nanos(extra)
    }
}

/// A cheap pseudo-random number for jitter (xorshift over the clock and a
/// counter); jitter needs spread, not cryptographic quality.
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_is_bounded() {
        let r = Reconnect::default();
        for attempt in 1..40 {
            let d = r.delay(attempt);
            assert!(d <= r.max_backoff, "attempt {attempt}: {d:?}");
        }
        let first = r.delay(1);
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(50));
        let late = r.delay(30);
        assert!(late >= Duration::from_secs(1));
    }
}
