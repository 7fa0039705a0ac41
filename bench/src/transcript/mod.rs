//! The transcript scenario (issue 16, `--only transcript`): `runners`
//! runners, each streaming `tokens` tokens into its own execution, with one
//! subscriber each, in two modes on the stigmer side and two on the Redis
//! side, run in turn (the order rotating each round):
//!
//! - stigmer, upstream's mode: the whole cumulative status (`update_status`
//!   with `minimal_reply`) every `every` tokens, read by a delta
//!   subscriber (the daemon diffs each status into operations);
//! - stigmer, append mode: one `append` (an `AppendText` at the tracked
//!   offset) per token, read by a delta subscriber;
//! - Redis, upstream's pattern: `XADD` of the whole status every `every`
//!   tokens to a stream per execution, read by one `XREAD BLOCK` consumer
//!   per stream;
//! - Redis pub/sub: one `PUBLISH` per token, one subscriber per channel.
//!
//! The status has one shape everywhere: phase IN_PROGRESS and one AI
//! message growing by a token ("word " style, 4-6 bytes) at a time; each run
//! ends with the phase COMPLETED (the stigmer streams then END; the pub/sub
//! side has no state to complete).
//!
//! Each runner waits for the acknowledgement of each request before the
//! next, as a runner's client does, and produces its tokens at `rate` per
//! second (0: as fast as the acknowledgements allow). A token's latency runs
//! from the moment its runner produced it to the moment its subscriber holds
//! it: in append mode and for PUBLISH that is the token's own request; in
//! upstream's mode the token waits for the update that carries it, so the
//! latency from that update's send is reported beside it.
//!
//! Every loop is bounded: a connection that stays silent for `STALL` fails
//! the run.
//!
//! The sides live apart: `daemon.rs` (stigmer's two modes), `redis_side.rs`
//! (XADD, PUBLISH), `jetstream.rs` (NATS JetStream, issue 21: the whole
//! status every `every` tokens, or a message per token, to a file-storage
//! stream) and `report.rs` (the JSON and the table rows); this file holds
//! what they share.

mod daemon;
mod jetstream;
mod redis_side;
pub mod report;

pub use daemon::{stigmer, Sends};
pub use jetstream::jetstream;

pub use redis_side::redis;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use crate::pace::Pacer;
use crate::procs;
use crate::scenarios::{latency_of, Latency};
use crate::wire::{invalid, AsyncConn, Parse};

/// How long any connection may stay silent before the run fails.
pub(super) const STALL: Duration = Duration::from_secs(30);
/// Before a stigmer mode's run: time for the checkpointer to fold the
/// creates into the database and empty the WAL, so the run's growth is the
/// run's own.
pub(super) const SETTLE: Duration = Duration::from_millis(3000);
/// After a stigmer mode's run: time for the checkpointer to copy the WAL
/// into the database (within a second of the last commit) and, the daemon
/// being quiet a second later, to empty the WAL file (TRUNCATE).
pub const CHECKPOINT_WAIT: Duration = Duration::from_millis(3000);
/// The request id of every subscription.
pub(super) const SUB_ID: u64 = 1;

/// The scenario's settings (from the command line).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub runners: usize,
    pub tokens: usize,
    /// Upstream's mode: tokens per whole-status update.
    pub every: usize,
    /// Tokens per second per runner; 0: as fast as acknowledgements allow.
    pub rate: f64,
    /// `--transcript-pacing exact`: each token leaves at its own due time
    /// (`crate::pace`), so the runners' tokens stay spread; otherwise
    /// (`tick`, the default) tokio's millisecond timer sends the runners due
    /// within a millisecond together.
    pub exact: bool,
}

impl Settings {
    /// Revisions a stigmer mode commits (for `--history-retention`): every
    /// token's, plus the create and the completion of each execution.
    pub fn revisions(&self) -> u64 {
        (self.runners * (self.tokens + 2)) as u64
    }
}

/// Words of 3-5 letters and a space: tokens of 4-6 bytes, as a model's
/// word-sized tokens are.
const WORDS: [&str; 16] = [
    "the ", "and ", "for ", "run ", "tool ", "data ", "code ", "step ", "file ", "with ", "model ",
    "agent ", "token ", "write ", "reads ", "plan ",
];

/// The tokens every runner streams, in order (the same sequence for all),
/// and where each ends in the AI message's content (UTF-8 bytes).
pub struct Tokens {
    pub text: Vec<&'static str>,
    pub ends: Vec<u64>,
}

impl Tokens {
    pub fn new(n: usize) -> Tokens {
        // A fixed LCG: the same words every run.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let (mut text, mut ends) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut end = 0u64;
        for _ in 0..n {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let word = WORDS[(x >> 33) as usize % WORDS.len()];
            end += word.len() as u64;
            text.push(word);
            ends.push(end);
        }
        Tokens { text, ends }
    }

    /// The final AI message's length in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub(super) fn content(&self) -> String {
        self.text.concat()
    }
}

/// The database's files, for their growth.
#[derive(Clone, Copy, Debug, Default)]
pub struct Files {
    pub db: u64,
    pub wal: u64,
}

impl Files {
    pub(super) fn of(db: &Path) -> Files {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Files {
            db: procs::file_size(db),
            wal: procs::file_size(&PathBuf::from(wal)),
        }
    }

    pub fn total(&self) -> u64 {
        self.db + self.wal
    }
}

/// What a stigmer mode wrote to storage.
#[derive(Clone, Copy, Debug, Default)]
pub struct Disk {
    /// The database and WAL files before the run, right after it, and
    /// `CHECKPOINT_WAIT` later.
    pub before: Files,
    pub after_run: Files,
    pub after_checkpoint: Files,
    /// The daemon's `write_bytes` (/proc/<pid>/io) from before the run to
    /// right after it, and to after the checkpoint wait.
    pub written_run: u64,
    pub written_checkpoint: u64,
    /// `write_bytes` over the first and the last quarter of the tokens (by
    /// the tokens the subscribers held).
    pub written_first_quarter: u64,
    pub written_last_quarter: u64,
}

/// One mode's measurements (all runners together).
#[derive(Clone, Debug, Default)]
pub struct Mode {
    pub tokens: u64,
    /// Requests the runners sent (updates, appends, XADDs, PUBLISHes),
    /// completions included.
    pub requests: u64,
    /// From the first token to the last subscriber done.
    pub seconds: f64,
    /// From a token's production to its subscriber holding it.
    pub latency: Latency,
    /// From the send of the request that carried a token to its subscriber
    /// holding it (the same as `latency` where each token has its request).
    pub latency_from_send: Latency,
    /// Bytes the subscribers read off their sockets (the first snapshot or
    /// subscribe confirmation included), and the messages they read.
    pub sub_bytes: u64,
    pub sub_events: u64,
    /// Subscriber bytes over the first and the last quarter of the tokens.
    pub sub_first_quarter: u64,
    pub sub_last_quarter: u64,
    pub resyncs: u64,
    /// The encoded final states (the whole `AgentExecution` a `get`
    /// returns; on Redis the last status entry), summed over executions.
    pub final_state_bytes: u64,
    /// Server CPU over the run (stigmer: to after the checkpoint wait).
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
    pub idle: f64,
    /// stigmer only.
    pub disk: Disk,
}

impl Mode {
    pub fn per_token(&self, x: f64) -> f64 {
        if self.tokens > 0 {
            x / self.tokens as f64
        } else {
            0.0
        }
    }
}

/// The send times of one runner's tokens, in ns since the run's start.
pub(super) struct Times {
    pub(super) base: Instant,
    pub(super) produced: Vec<AtomicU64>,
    pub(super) sent: Vec<AtomicU64>,
}

impl Times {
    pub(super) fn new(base: Instant, n: usize) -> Times {
        Times {
            base,
            produced: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// A subscriber's progress through the tokens.
pub(super) struct Held {
    pub(super) tokens: Arc<Tokens>,
    pub(super) times: Arc<Times>,
    pub(super) delivered: Arc<AtomicU64>,
    pub(super) next: usize,
    pub(super) from_produced: Vec<Duration>,
    pub(super) from_sent: Vec<Duration>,
    pub(super) start_bytes: u64,
    pub(super) first_quarter: Option<u64>,
    pub(super) third_quarter: Option<u64>,
    pub(super) last_token: Option<u64>,
}

/// What one subscriber saw.
pub(super) struct Seen {
    pub(super) from_produced: Vec<Duration>,
    pub(super) from_sent: Vec<Duration>,
    pub(super) bytes: u64,
    pub(super) events: u64,
    pub(super) first_quarter: u64,
    pub(super) last_quarter: u64,
    pub(super) resyncs: u64,
}

impl Held {
    pub(super) fn new(tokens: Arc<Tokens>, times: Arc<Times>, delivered: Arc<AtomicU64>) -> Held {
        let n = tokens.len();
        Held {
            tokens,
            times,
            delivered,
            next: 0,
            from_produced: Vec::with_capacity(n),
            from_sent: Vec::with_capacity(n),
            start_bytes: 0,
            first_quarter: None,
            third_quarter: None,
            last_token: None,
        }
    }

    /// The message now holds `len` bytes; `consumed` bytes have been read.
    pub(super) fn advance(&mut self, len: u64, consumed: u64) {
        let now = self.times.now();
        let n = self.tokens.len();
        let from = self.next;
        while self.next < n && self.tokens.ends[self.next] <= len {
            let i = self.next;
            let produced = self.times.produced[i].load(Ordering::Relaxed);
            let sent = self.times.sent[i].load(Ordering::Relaxed);
            self.from_produced
                .push(Duration::from_nanos(now.saturating_sub(produced)));
            self.from_sent
                .push(Duration::from_nanos(now.saturating_sub(sent)));
            self.next += 1;
        }
        if self.next == from {
            return;
        }
        self.delivered
            .fetch_add((self.next - from) as u64, Ordering::Relaxed);
        if self.first_quarter.is_none() && self.next >= n / 4 {
            self.first_quarter = Some(consumed);
        }
        if self.third_quarter.is_none() && self.next >= n - n / 4 {
            self.third_quarter = Some(consumed);
        }
        if self.last_token.is_none() && self.next == n {
            self.last_token = Some(consumed);
        }
    }

    pub(super) fn done(&self) -> bool {
        self.next == self.tokens.len()
    }

    pub(super) fn finish(self, bytes: u64, events: u64, resyncs: u64) -> io::Result<Seen> {
        if !self.done() {
            return Err(invalid(format!(
                "the stream ended at token {} of {}",
                self.next,
                self.tokens.len()
            )));
        }
        let q1 = self.first_quarter.unwrap_or(bytes);
        let q3 = self.third_quarter.unwrap_or(bytes);
        let last = self.last_token.unwrap_or(bytes);
        Ok(Seen {
            from_produced: self.from_produced,
            from_sent: self.from_sent,
            bytes,
            events,
            first_quarter: q1.saturating_sub(self.start_bytes),
            last_quarter: last.saturating_sub(q3),
            resyncs,
        })
    }
}

pub(super) async fn recv_timed<P: Parse, S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut AsyncConn<S>,
) -> io::Result<P::Out> {
    match tokio::time::timeout(STALL, conn.recv::<P>()).await {
        Ok(got) => got,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("nothing received for {} s", STALL.as_secs()),
        )),
    }
}

/// Waits until token `i` is due (runner start `start`, `s.rate` per
/// second): on the runner's own timer with `--transcript-pacing exact`
/// (`crate::pace`, to the microsecond), else on tokio's (the next whole
/// millisecond).
pub(super) async fn pace(
    pacer: &mut Pacer,
    start: tokio::time::Instant,
    i: usize,
    s: &Settings,
) -> io::Result<()> {
    if s.rate > 0.0 {
        let due = start + Duration::from_secs_f64(i as f64 / s.rate);
        if s.exact {
            pacer.until(due).await?;
        } else {
            tokio::time::sleep_until(due).await;
        }
    }
    Ok(())
}

/// Runner `r`'s start: the runners' first tokens spread over one token
/// interval, so they do not all fire at once.
pub(super) fn runner_start(s: &Settings, r: usize) -> tokio::time::Instant {
    let offset = if s.rate > 0.0 {
        Duration::from_secs_f64(r as f64 / s.rate / s.runners as f64)
    } else {
        Duration::ZERO
    };
    tokio::time::Instant::now() + offset
}

/// Counters taken before and after a run.
pub(super) struct Counters {
    pub(super) server_cpu: f64,
    pub(super) own_cpu: f64,
    pub(super) ticks: (u64, u64),
}

impl Counters {
    pub(super) fn take(pid: u32) -> Counters {
        Counters {
            server_cpu: procs::cpu_seconds(pid).unwrap_or(0.0),
            own_cpu: procs::cpu_seconds(std::process::id()).unwrap_or(0.0),
            ticks: procs::machine_ticks().unwrap_or((0, 0)),
        }
    }
}

pub(super) fn idle_share(before: &Counters, after: &Counters) -> f64 {
    let all = after.ticks.1.saturating_sub(before.ticks.1);
    if all > 0 {
        after.ticks.0.saturating_sub(before.ticks.0) as f64 / all as f64
    } else {
        0.0
    }
}

/// Runs the tasks to the end; the first error fails the run.
pub(super) async fn join<T: 'static>(mut set: JoinSet<io::Result<T>>) -> io::Result<Vec<T>> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| io::Error::other(format!("task failed: {e}")))? {
            Ok(v) => out.push(v),
            Err(e) => {
                set.abort_all();
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Fills in a mode's subscriber figures.
pub(super) fn gather(mode: &mut Mode, seen: Vec<Seen>) {
    let (mut produced, mut sent) = (Vec::new(), Vec::new());
    for s in seen {
        mode.sub_bytes += s.bytes;
        mode.sub_events += s.events;
        mode.sub_first_quarter += s.first_quarter;
        mode.sub_last_quarter += s.last_quarter;
        mode.resyncs += s.resyncs;
        produced.extend(s.from_produced);
        sent.extend(s.from_sent);
    }
    mode.latency = latency_of(produced);
    mode.latency_from_send = latency_of(sent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_words_of_four_to_six_bytes() {
        let tokens = Tokens::new(8000);
        assert!(tokens.text.iter().all(|t| (4..=6).contains(&t.len())));
        assert!(tokens.text.iter().all(|t| t.ends_with(' ')));
        // ~40 KB for 8,000 tokens.
        let total = tokens.total_bytes();
        assert!((36_000..=44_000).contains(&total), "{total}");
        assert_eq!(tokens.content().len() as u64, total);
        assert_eq!(tokens.ends[0], tokens.text[0].len() as u64);
    }

    /// A subscriber holds a token once the message reaches its end; the
    /// quarter marks are taken as the tokens pass them.
    #[test]
    fn held_tokens_and_quarters() {
        let tokens = Arc::new(Tokens::new(8));
        let times = Arc::new(Times::new(Instant::now(), 8));
        let delivered = Arc::new(AtomicU64::new(0));
        let mut held = Held::new(tokens.clone(), times, delivered.clone());
        held.start_bytes = 10;
        held.advance(tokens.ends[1], 100);
        assert_eq!(held.next, 2);
        held.advance(tokens.ends[1] + 1, 150);
        assert_eq!(held.next, 2);
        held.advance(tokens.ends[5], 400);
        held.advance(tokens.ends[7], 600);
        assert!(held.done());
        assert_eq!(delivered.load(Ordering::Relaxed), 8);
        let seen = held.finish(650, 5, 0).unwrap();
        assert_eq!(seen.first_quarter, 90);
        assert_eq!(seen.last_quarter, 200);
        assert_eq!(seen.from_produced.len(), 8);
    }
}
