//! `stigmer-bench`: the end-to-end benchmark of issue 5, run by
//! `scripts/bench`. It sets the stigmer daemon beside Redis (over a Unix
//! socket) and, when given, NATS JetStream and etcd (issue 21, over loopback
//! TCP) in the same run, rotating the order of the systems in every scenario
//! and every round so all see the same machine noise, and reports the median
//! of the rounds.
//!
//! It starts (and stops) its own daemons; the Redis, NATS and etcd servers
//! are started by `scripts/bench` and given here as `--redis-socket`,
//! `--nats ADDR --nats-pid PID` and `--etcd ADDR --etcd-pid PID`. Results go
//! to `--out` (JSON) and stdout (a Markdown table).

mod etcd;
mod nats;
mod peers;
mod procs;
mod redis;
mod scenarios;
mod stig;
mod transcript;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use prost::Message;
use serde_json::{json, Value};

use scenarios::{Idle, Latency, Rate};

/// Settings, from the command line (all have defaults but the paths).
struct Args {
    stigmer: PathBuf,
    /// The floor server (`src/bin/stigmer-floor.rs`), run beside the other
    /// two in the throughput scenario; by default the `stigmer-floor` next
    /// to this binary, left out when there is none.
    floor: Option<PathBuf>,
    redis_socket: PathBuf,
    /// NATS (with JetStream) and etcd: their client address and their pid
    /// (for RSS and CPU time); each side is left out when not given.
    nats: Option<Peer>,
    etcd: Option<Peer>,
    dir: PathBuf,
    out: PathBuf,
    rounds: usize,
    latency_updates: usize,
    window: Duration,
    writers: usize,
    subscribers: usize,
    idle: usize,
    status_bytes: usize,
    /// The transcript scenario (issue 16): runners, tokens per runner,
    /// tokens per whole-status update in upstream's mode, tokens per second
    /// per runner (0: as fast as acknowledgements allow).
    transcript: transcript::Settings,
    /// Scenarios to run (all when empty): latency, throughput, fanout,
    /// idle, full, transcript. For profiling one path; the table needs
    /// them all.
    only: Vec<String>,
}

const USAGE: &str = "usage: stigmer-bench --stigmer BIN --redis-socket PATH --dir TMPDIR \
[--floor BIN] [--nats 127.0.0.1:PORT --nats-pid PID] [--etcd 127.0.0.1:PORT --etcd-pid PID] [--out bench-results.json] [--rounds 3] [--latency-updates 10000] [--seconds 5] \
[--writers 32] [--subscribers 1000] [--idle 10000] [--status-bytes 1024] \
[--transcript-runners 32] [--transcript-tokens 8000] [--transcript-every 10] [--transcript-rate 250] \
[--only latency,throughput,fanout,idle,full,transcript]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        stigmer: PathBuf::new(),
        floor: std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("stigmer-floor")))
            .filter(|floor| floor.exists()),
        redis_socket: PathBuf::new(),
        nats: None,
        etcd: None,
        dir: PathBuf::new(),
        out: PathBuf::from("bench-results.json"),
        rounds: 3,
        latency_updates: 10_000,
        window: Duration::from_secs(5),
        writers: 32,
        subscribers: 1000,
        idle: 10_000,
        status_bytes: 1024,
        transcript: transcript::Settings {
            runners: 32,
            tokens: 8000,
            every: 10,
            // 4 ms between a runner's tokens, the runners spread over them
            // (transcript::runner_start): about 8 send in each millisecond.
            rate: 250.0,
        },
        only: Vec::new(),
    };
    let (mut nats, mut etcd) = ((None, None), (None, None));
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        let addr = |v: String| v.parse::<SocketAddr>().map_err(|e| format!("{v}: {e}"));
        let pid = |v: String| v.parse::<u32>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--stigmer" => args.stigmer = value()?.into(),
            "--floor" => args.floor = Some(value()?.into()),
            "--redis-socket" => args.redis_socket = value()?.into(),
            "--nats" => nats.0 = Some(addr(value()?)?),
            "--nats-pid" => nats.1 = Some(pid(value()?)?),
            "--etcd" => etcd.0 = Some(addr(value()?)?),
            "--etcd-pid" => etcd.1 = Some(pid(value()?)?),
            "--dir" => args.dir = value()?.into(),
            "--out" => args.out = value()?.into(),
            "--rounds" => args.rounds = num(value()?)?.max(1),
            "--latency-updates" => args.latency_updates = num(value()?)?.max(1),
            "--seconds" => {
                let v = value()?;
                let secs: f64 = v.parse().map_err(|e| format!("{v}: {e}"))?;
                args.window = Duration::from_secs_f64(secs.max(0.1));
            }
            "--writers" => args.writers = num(value()?)?.max(1),
            "--subscribers" => args.subscribers = num(value()?)?.max(1),
            "--idle" => args.idle = num(value()?)?.max(1),
            "--status-bytes" => args.status_bytes = num(value()?)?.max(16),
            "--transcript-runners" => args.transcript.runners = num(value()?)?.max(1),
            // At least four updates, for the quarters.
            "--transcript-tokens" => args.transcript.tokens = num(value()?)?.max(40),
            "--transcript-every" => args.transcript.every = num(value()?)?.max(1),
            "--transcript-rate" => {
                let v = value()?;
                let rate: f64 = v.parse().map_err(|e| format!("{v}: {e}"))?;
                args.transcript.rate = rate.max(0.0);
            }
            "--only" => args.only = value()?.split(',').map(str::to_string).collect(),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.stigmer.as_os_str().is_empty()
        || args.redis_socket.as_os_str().is_empty()
        || args.dir.as_os_str().is_empty()
    {
        return Err(USAGE.into());
    }
    args.nats = peer("--nats", nats)?;
    args.etcd = peer("--etcd", etcd)?;
    Ok(args)
}

/// A peer needs both its address and its pid, or neither.
fn peer(flag: &str, given: (Option<SocketAddr>, Option<u32>)) -> Result<Option<Peer>, String> {
    match given {
        (Some(addr), Some(pid)) => Ok(Some(Peer { addr, pid })),
        (None, None) => Ok(None),
        _ => Err(format!("{flag} and {flag}-pid go together\n{USAGE}")),
    }
}

/// A peer server started by scripts/bench.
#[derive(Clone, Copy)]
struct Peer {
    addr: SocketAddr,
    pid: u32,
}

/// One round's measurements.
#[derive(Default)]
struct Round {
    lat_stigmer: Latency,
    lat_pubsub: Latency,
    lat_stream: Latency,
    lat_nats: Latency,
    lat_etcd: Latency,
    tp_stigmer: Rate,
    tp_redis: Rate,
    tp_nats: Rate,
    tp_etcd: Rate,
    /// The floor server's rate, when it ran (`Rate::default()` otherwise).
    tp_floor: Rate,
    fan_stigmer: Rate,
    fan_redis: Rate,
    fan_nats: Rate,
    fan_etcd: Rate,
    idle_stigmer: Idle,
    idle_redis: Idle,
    idle_nats: Idle,
    idle_etcd: Idle,
    full: Rate,
    full_single: Rate,
    /// The transcript scenario: stigmer's two modes, Redis's two.
    tr_upstream: transcript::Mode,
    tr_append: transcript::Mode,
    tr_xadd: transcript::Mode,
    tr_publish: transcript::Mode,
}

/// Warm-up before each measured window (connections made, caches filled).
const WARMUP: Duration = Duration::from_millis(700);
/// Latency warm-up iterations (not recorded).
const LATENCY_WARMUP: usize = 500;
/// Executions the idle subscribers are spread over.
const IDLE_EXECUTIONS: usize = 100;

fn say(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// The order the sides of a scenario run in this round: all `n` in turn,
/// each round starting one further along, so no side always runs first
/// (or right after the same other side).
fn rotation(r: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (r + i) % n)
}

fn run_round(args: &Args, r: usize, rt: &tokio::runtime::Runtime) -> io::Result<Round> {
    let stigmer_first = r % 2 == 0;
    let status = stig::status_of_size(args.status_bytes);
    let payload = status.encode_to_vec();
    let redis_pid = scenarios::redis_pid(&args.redis_socket)?;
    let rs = args.redis_socket.as_path();
    let mut round = Round::default();
    // JetStream streams are named per round.
    let tag = format!("r{r}");

    // Scenarios 1-3 share one daemon (normal durability).
    let daemon = procs::Daemon::start(&args.stigmer, &args.dir, &format!("r{r}-normal"), "normal")?;
    let ds = daemon.socket.as_path();
    let (warm, n) = (LATENCY_WARMUP, args.latency_updates);

    if args.wants("latency") {
        say(format!("round {r}: latency"));
        for side in rotation(r, 5) {
            match side {
                0 => round.lat_stigmer = scenarios::latency_stigmer(ds, &status, warm, n)?,
                1 => round.lat_pubsub = scenarios::latency_redis_pubsub(rs, &payload, warm, n)?,
                2 => round.lat_stream = scenarios::latency_redis_stream(rs, &payload, warm, n)?,
                3 => {
                    let Some(p) = args.nats else { continue };
                    round.lat_nats = peers::latency_nats(p.addr, &payload, warm, n, &tag)?;
                }
                _ => {
                    let Some(p) = args.etcd else { continue };
                    round.lat_etcd = rt.block_on(peers::latency_etcd(p.addr, &payload, warm, n))?;
                }
            }
        }
    }

    let (w, win) = (args.writers, args.window);
    if args.wants("throughput") {
        say(format!("round {r}: throughput ({} writers)", args.writers));
        // The sides in turn, each round starting one further along.
        for side in rotation(r, 5) {
            match side {
                0 => {
                    round.tp_stigmer = rt.block_on(scenarios::throughput_stigmer(
                        ds,
                        daemon.pid(),
                        &status,
                        w,
                        WARMUP,
                        win,
                    ))?
                }
                1 => {
                    round.tp_redis = rt.block_on(scenarios::throughput_redis(
                        rs, redis_pid, &payload, w, WARMUP, win,
                    ))?
                }
                2 => {
                    let Some(floor) = &args.floor else { continue };
                    let server =
                        procs::Daemon::start(floor, &args.dir, &format!("r{r}-floor"), "normal")?;
                    round.tp_floor = rt.block_on(scenarios::throughput_stigmer(
                        &server.socket,
                        server.pid(),
                        &status,
                        w,
                        WARMUP,
                        win,
                    ))?;
                }
                3 => {
                    let Some(p) = args.nats else { continue };
                    round.tp_nats = rt.block_on(peers::throughput_nats(
                        p.addr, p.pid, &payload, w, WARMUP, win, &tag,
                    ))?;
                }
                _ => {
                    let Some(p) = args.etcd else { continue };
                    round.tp_etcd = rt.block_on(peers::throughput_etcd(
                        p.addr, p.pid, &payload, w, WARMUP, win,
                    ))?;
                }
            }
        }
    }
    if args.wants("fanout") {
        say(format!(
            "round {r}: fan-out ({} subscribers)",
            args.subscribers
        ));
        let s = args.subscribers;
        for side in rotation(r, 4) {
            match side {
                0 => {
                    round.fan_stigmer = rt.block_on(scenarios::fanout_stigmer(
                        ds,
                        daemon.pid(),
                        &status,
                        s,
                        WARMUP,
                        win,
                    ))?
                }
                1 => {
                    round.fan_redis = rt.block_on(scenarios::fanout_redis(
                        rs, redis_pid, &payload, s, WARMUP, win,
                    ))?
                }
                2 => {
                    let Some(p) = args.nats else { continue };
                    round.fan_nats = rt.block_on(peers::fanout_nats(
                        p.addr, p.pid, &payload, s, WARMUP, win, &tag,
                    ))?;
                }
                _ => {
                    let Some(p) = args.etcd else { continue };
                    round.fan_etcd =
                        rt.block_on(peers::fanout_etcd(p.addr, p.pid, &payload, s, WARMUP, win))?;
                }
            }
        }
    }
    drop(daemon);

    if args.wants("idle") {
        say(format!("round {r}: idle ({} subscriptions)", args.idle));
        for side in rotation(r, 4) {
            match side {
                0 => {
                    let daemon = procs::Daemon::start(
                        &args.stigmer,
                        &args.dir,
                        &format!("r{r}-idle"),
                        "normal",
                    )?;
                    round.idle_stigmer = rt.block_on(scenarios::idle_stigmer(
                        &daemon.socket,
                        daemon.pid(),
                        args.idle,
                        IDLE_EXECUTIONS,
                    ))?;
                }
                1 => {
                    round.idle_redis = rt.block_on(scenarios::idle_redis(
                        rs,
                        redis_pid,
                        args.idle,
                        IDLE_EXECUTIONS,
                    ))?;
                }
                2 => {
                    let Some(p) = args.nats else { continue };
                    round.idle_nats = rt.block_on(peers::idle_nats(
                        p.addr,
                        p.pid,
                        args.idle,
                        IDLE_EXECUTIONS,
                        &tag,
                    ))?;
                }
                _ => {
                    let Some(p) = args.etcd else { continue };
                    round.idle_etcd =
                        rt.block_on(peers::idle_etcd(p.addr, p.pid, args.idle, IDLE_EXECUTIONS))?;
                }
            }
        }
    }

    if args.wants("full") {
        say(format!("round {r}: durability full"));
        let daemon = procs::Daemon::start(&args.stigmer, &args.dir, &format!("r{r}-full"), "full")?;
        for single in [stigmer_first, !stigmer_first] {
            if single {
                round.full_single = rt.block_on(scenarios::single_writer_stigmer(
                    &daemon.socket,
                    daemon.pid(),
                    &status,
                    WARMUP,
                    win,
                ))?;
            } else {
                round.full = rt.block_on(scenarios::throughput_stigmer(
                    &daemon.socket,
                    daemon.pid(),
                    &status,
                    w,
                    WARMUP,
                    win,
                ))?;
            }
        }
        drop(daemon);
    }

    if args.wants("transcript") {
        let t = &args.transcript;
        say(format!(
            "round {r}: transcript ({} runners x {} tokens, {} tokens/s each; 0 = closed loop)",
            t.runners, t.tokens, t.rate
        ));
        let tokens = std::sync::Arc::new(transcript::Tokens::new(t.tokens));
        // Every revision of the run kept (the default keeps 100,000 for the
        // whole daemon), so each execution's disk is its whole history.
        let retention = [
            "--history-retention".to_string(),
            t.revisions()
                .max(scenarios::HISTORY_RETENTION as u64)
                .to_string(),
        ];
        for side in rotation(r, 4) {
            match side {
                0 | 1 => {
                    let append = side == 1;
                    let name = if append { "append" } else { "upstream" };
                    let daemon = procs::Daemon::start_with(
                        &args.stigmer,
                        &args.dir,
                        &format!("r{r}-transcript-{name}"),
                        "normal",
                        &retention,
                    )?;
                    let mode = rt.block_on(transcript::stigmer(
                        &daemon.socket,
                        daemon.pid(),
                        &daemon.db,
                        t,
                        &tokens,
                        append,
                    ))?;
                    if append {
                        round.tr_append = mode;
                    } else {
                        round.tr_upstream = mode;
                    }
                }
                2 => {
                    round.tr_xadd =
                        rt.block_on(transcript::redis(rs, redis_pid, t, &tokens, false))?
                }
                _ => {
                    round.tr_publish =
                        rt.block_on(transcript::redis(rs, redis_pid, t, &tokens, true))?
                }
            }
        }
    }
    Ok(round)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn med<T>(rounds: &[Round], f: impl Fn(&Round) -> T) -> f64
where
    T: Into<f64>,
{
    median(rounds.iter().map(|r| f(r).into()).collect())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn latency_json(rounds: &[Round], f: impl Fn(&Round) -> Latency) -> Value {
    json!({
        "p50_us": round1(med(rounds, |r| f(r).p50_us)),
        "p99_us": round1(med(rounds, |r| f(r).p99_us)),
        "mean_us": round1(med(rounds, |r| f(r).mean_us)),
        "samples_per_round": f(&rounds[0]).samples,
        "p50_per_round": rounds.iter().map(|r| round1(f(r).p50_us)).collect::<Vec<_>>(),
        "p99_per_round": rounds.iter().map(|r| round1(f(r).p99_us)).collect::<Vec<_>>(),
    })
}

/// The median over rounds of stigmer's figure divided by its peer's in
/// the same round. Both ran back to back in that round, so machine noise
/// that moves both (other tenants of the host, this VM's idle states)
/// cancels, which a ratio of the two medians does not do when the rounds
/// that are slow for one are not the rounds that are slow for the other.
fn paired(rounds: &[Round], ratio: impl Fn(&Round) -> f64) -> f64 {
    (median(rounds.iter().map(ratio).collect()) * 1000.0).round() / 1000.0
}

fn rate_json(rounds: &[Round], f: impl Fn(&Round) -> Rate) -> Value {
    json!({
        "per_s": med(rounds, |r| f(r).per_s).round(),
        "server_cpu_us_per_op": round1(med(rounds, |r| f(r).server_cpu_us)),
        "client_cpu_us_per_op": round1(med(rounds, |r| f(r).client_cpu_us)),
        "machine_idle": (med(rounds, |r| f(r).idle) * 1000.0).round() / 1000.0,
        "per_round": rounds.iter().map(|r| f(r).per_s.round()).collect::<Vec<_>>(),
        "ops_per_round": rounds.iter().map(|r| f(r).ops).collect::<Vec<_>>(),
    })
}

/// `a / b`, or 0 when `b` did not run (a side left out reads 0).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Growth of a server's RSS over the idle scenario, in bytes.
fn growth(idle: Idle) -> f64 {
    idle.rss_bytes.saturating_sub(idle.rss_before_bytes) as f64
}

/// The JSON key, the table's label and the accessors of one durable peer.
struct PeerSide {
    key: &'static str,
    label: &'static str,
    lat: fn(&Round) -> Latency,
    tp: fn(&Round) -> Rate,
    fan: fn(&Round) -> Rate,
    idle: fn(&Round) -> Idle,
}

/// The durable peers of issue 21, in table order. The labels carry each
/// one's durability (docs/PERFORMANCE.md, "NATS JetStream" and "etcd").
const PEERS: [PeerSide; 2] = [
    PeerSide {
        key: "nats_jetstream",
        label: "JetStream (file; fsync every 2 min)",
        lat: |r| r.lat_nats,
        tp: |r| r.tp_nats,
        fan: |r| r.fan_nats,
        idle: |r| r.idle_nats,
    },
    PeerSide {
        key: "etcd",
        label: "etcd (WAL fsync per commit)",
        lat: |r| r.lat_etcd,
        tp: |r| r.tp_etcd,
        fan: |r| r.fan_etcd,
        idle: |r| r.idle_etcd,
    },
];

/// The paired ratios of stigmer against each durable peer.
fn peer_ratios(rounds: &[Round], out: &mut serde_json::Map<String, Value>) {
    for p in &PEERS {
        let k = p.key;
        let entries = [
            (
                format!("latency_p50_vs_{k}"),
                paired(rounds, |r| ratio(r.lat_stigmer.p50_us, (p.lat)(r).p50_us)),
            ),
            (
                format!("latency_p99_vs_{k}"),
                paired(rounds, |r| ratio(r.lat_stigmer.p99_us, (p.lat)(r).p99_us)),
            ),
            (
                format!("throughput_vs_{k}"),
                paired(rounds, |r| ratio(r.tp_stigmer.per_s, (p.tp)(r).per_s)),
            ),
            (
                format!("fanout_vs_{k}"),
                paired(rounds, |r| ratio(r.fan_stigmer.per_s, (p.fan)(r).per_s)),
            ),
            (
                format!("idle_growth_vs_{k}"),
                paired(rounds, |r| {
                    ratio(growth(r.idle_stigmer), growth((p.idle)(r)))
                }),
            ),
        ];
        for (name, value) in entries {
            out.insert(name, json!(value));
        }
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": kernel,
        "loadavg_at_end": load,
    })
}

fn results(args: &Args, rounds: &[Round]) -> Value {
    let tp_committed: u64 = rounds.iter().map(|r| r.tp_stigmer.committed).sum();
    let tp_acked: u64 = rounds.iter().map(|r| r.tp_stigmer.acked).sum();
    let mut v = json!({
        "latency": {
            "stigmer": latency_json(rounds, |r| r.lat_stigmer),
            "redis_pubsub": latency_json(rounds, |r| r.lat_pubsub),
            "redis_stream": latency_json(rounds, |r| r.lat_stream),
            "nats_jetstream": latency_json(rounds, |r| r.lat_nats),
            "etcd": latency_json(rounds, |r| r.lat_etcd),
            "status_bytes": args.status_bytes,
        },
        "throughput": {
            "writers": args.writers,
            "stigmer": rate_json(rounds, |r| r.tp_stigmer),
            "redis_stream": rate_json(rounds, |r| r.tp_redis),
            // The floor server (src/bin/stigmer-floor.rs): one thread, one
            // SQLite row per update, nothing else; where SQLite alone puts
            // the ceiling on this machine.
            "sqlite_floor": rate_json(rounds, |r| r.tp_floor),
            "nats_jetstream": rate_json(rounds, |r| r.tp_nats),
            "etcd": rate_json(rounds, |r| r.tp_etcd),
            "stigmer_acked": tp_acked,
            "stigmer_committed": tp_committed,
        },
        "fanout": {
            "subscribers": args.subscribers,
            "stigmer": rate_json(rounds, |r| r.fan_stigmer),
            "redis_pubsub": rate_json(rounds, |r| r.fan_redis),
            "nats_jetstream": rate_json(rounds, |r| r.fan_nats),
            "etcd": rate_json(rounds, |r| r.fan_etcd),
        },
        "idle": {
            "subscriptions": args.idle,
            "rss_bytes": med(rounds, |r| r.idle_stigmer.rss_bytes as f64) as u64,
            "rss_before_bytes": med(rounds, |r| r.idle_stigmer.rss_before_bytes as f64) as u64,
            "redis_rss_bytes": med(rounds, |r| r.idle_redis.rss_bytes as f64) as u64,
            "redis_rss_before_bytes": med(rounds, |r| r.idle_redis.rss_before_bytes as f64) as u64,
            "nats_jetstream_rss_bytes": med(rounds, |r| r.idle_nats.rss_bytes as f64) as u64,
            "nats_jetstream_rss_before_bytes": med(rounds, |r| r.idle_nats.rss_before_bytes as f64) as u64,
            "etcd_rss_bytes": med(rounds, |r| r.idle_etcd.rss_bytes as f64) as u64,
            "etcd_rss_before_bytes": med(rounds, |r| r.idle_etcd.rss_before_bytes as f64) as u64,
            // Per round, since a server's RSS need not fall back when the
            // connections close (the Go runtime of NATS and etcd keeps freed
            // heap a while): a later round's "before" can include an earlier
            // round's connections, so its growth reads smaller.
            "rss_growth_per_round": {
                "stigmer": rounds.iter().map(|r| growth(r.idle_stigmer)).collect::<Vec<_>>(),
                "redis": rounds.iter().map(|r| growth(r.idle_redis)).collect::<Vec<_>>(),
                "nats_jetstream": rounds.iter().map(|r| growth(r.idle_nats)).collect::<Vec<_>>(),
                "etcd": rounds.iter().map(|r| growth(r.idle_etcd)).collect::<Vec<_>>(),
            },
        },
        "durability_full": {
            "writers": args.writers,
            "per_s": med(rounds, |r| r.full.per_s).round(),
            "single_writer_per_s": med(rounds, |r| r.full_single.per_s).round(),
            "per_round": rounds.iter().map(|r| r.full.per_s.round()).collect::<Vec<_>>(),
            "single_writer_per_round": rounds.iter().map(|r| r.full_single.per_s.round()).collect::<Vec<_>>(),
            "server_cpu_us_per_op": round1(med(rounds, |r| r.full.server_cpu_us)),
        },
        "paired_ratios": {
            "latency_p50_vs_pubsub": paired(rounds, |r| r.lat_stigmer.p50_us / r.lat_pubsub.p50_us),
            "latency_p50_vs_stream": paired(rounds, |r| r.lat_stigmer.p50_us / r.lat_stream.p50_us),
            "latency_p99_vs_pubsub": paired(rounds, |r| r.lat_stigmer.p99_us / r.lat_pubsub.p99_us),
            "throughput": paired(rounds, |r| r.tp_stigmer.per_s / r.tp_redis.per_s),
            "throughput_floor": paired(rounds, |r| r.tp_floor.per_s / r.tp_redis.per_s),
            "throughput_vs_floor": paired(rounds, |r| {
                if r.tp_floor.per_s > 0.0 { r.tp_stigmer.per_s / r.tp_floor.per_s } else { 0.0 }
            }),
            "fanout": paired(rounds, |r| r.fan_stigmer.per_s / r.fan_redis.per_s),
            "durability_full": paired(rounds, |r| r.full.per_s / r.full_single.per_s),
            "transcript_append_p50_vs_publish": paired(rounds, |r| {
                ratio(r.tr_append.latency.p50_us, r.tr_publish.latency.p50_us)
            }),
            "transcript_upstream_p50_vs_xadd": paired(rounds, |r| {
                ratio(r.tr_upstream.latency.p50_us, r.tr_xadd.latency.p50_us)
            }),
            // An append's daemon CPU against a 1 KiB update's in the
            // throughput scenario of the same round (0 when that did not run).
            "transcript_append_cpu_vs_update": paired(rounds, |r| {
                ratio(r.tr_append.per_token(r.tr_append.server_cpu_s * 1e6), r.tp_stigmer.server_cpu_us)
            }),
        },
        "transcript": transcript_json(args, rounds),
        "rounds": rounds.len(),
        "window_s": args.window.as_secs_f64(),
        "machine": machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    if let Some(ratios) = v["paired_ratios"].as_object_mut() {
        peer_ratios(rounds, ratios);
    }
    v
}

/// The transcript scenario's JSON: `transcript.<side>.<mode>`.
fn transcript_json(args: &Args, rounds: &[Round]) -> Value {
    let t = &args.transcript;
    let message = transcript::Tokens::new(t.tokens).total_bytes();
    json!({
        "runners": t.runners,
        "tokens_per_runner": t.tokens,
        "every": t.every,
        "rate_per_runner": t.rate,
        "message_bytes": message,
        "history_retention": t.revisions().max(scenarios::HISTORY_RETENTION as u64),
        "stigmer": {
            "upstream": mode_json(rounds, |r| &r.tr_upstream, t.runners, true),
            "append": mode_json(rounds, |r| &r.tr_append, t.runners, true),
        },
        "redis": {
            "xadd": mode_json(rounds, |r| &r.tr_xadd, t.runners, false),
            "publish": mode_json(rounds, |r| &r.tr_publish, t.runners, false),
        },
    })
}

/// One transcript mode: medians over rounds, per execution (subscriber
/// bytes, disk) or per token (CPU, bytes per quarter).
fn mode_json(
    rounds: &[Round],
    f: impl Fn(&Round) -> &transcript::Mode,
    runners: usize,
    disk: bool,
) -> Value {
    let per_exec = |x: u64| x as f64 / runners.max(1) as f64;
    // Bytes per token over a quarter of the tokens.
    let per_quarter_token = |m: &transcript::Mode, x: u64| m.per_token(x as f64 * 4.0);
    let mut v = json!({
        "tokens_per_s": med(rounds, |r| {
            let m = f(r);
            if m.seconds > 0.0 { m.tokens as f64 / m.seconds } else { 0.0 }
        }).round(),
        "requests_per_round": rounds.iter().map(|r| f(r).requests).collect::<Vec<_>>(),
        "latency": latency_json(rounds, |r| f(r).latency),
        "latency_from_send": latency_json(rounds, |r| f(r).latency_from_send),
        "subscriber_bytes_per_execution": med(rounds, |r| per_exec(f(r).sub_bytes)).round(),
        "subscriber_events_per_execution": med(rounds, |r| per_exec(f(r).sub_events)).round(),
        "final_state_bytes": med(rounds, |r| per_exec(f(r).final_state_bytes)).round(),
        "subscriber_bytes_per_token_first_quarter":
            round1(med(rounds, |r| per_quarter_token(f(r), f(r).sub_first_quarter))),
        "subscriber_bytes_per_token_last_quarter":
            round1(med(rounds, |r| per_quarter_token(f(r), f(r).sub_last_quarter))),
        "server_cpu_us_per_token": round1(med(rounds, |r| f(r).per_token(f(r).server_cpu_s * 1e6))),
        "client_cpu_us_per_token": round1(med(rounds, |r| f(r).per_token(f(r).client_cpu_s * 1e6))),
        "machine_idle": (med(rounds, |r| f(r).idle) * 1000.0).round() / 1000.0,
        "resyncs": rounds.iter().map(|r| f(r).resyncs).sum::<u64>(),
        "subscriber_bytes_per_round": rounds.iter().map(|r| f(r).sub_bytes).collect::<Vec<_>>(),
    });
    if disk {
        let growth = |a: transcript::Files, b: transcript::Files| {
            per_exec(b.total().saturating_sub(a.total()))
        };
        v["disk"] = json!({
            "growth_bytes_per_execution_after_run":
                med(rounds, |r| growth(f(r).disk.before, f(r).disk.after_run)).round(),
            "growth_bytes_per_execution_after_checkpoint":
                med(rounds, |r| growth(f(r).disk.before, f(r).disk.after_checkpoint)).round(),
            // The two files apart (the WAL keeps its high-water mark: SQLite
            // reuses it from the start after a checkpoint, never shrinks it).
            "db_growth_bytes_per_execution_after_checkpoint": med(rounds, |r| {
                let d = f(r).disk;
                per_exec(d.after_checkpoint.db.saturating_sub(d.before.db))
            }).round(),
            "wal_growth_bytes_per_execution_after_checkpoint": med(rounds, |r| {
                let d = f(r).disk;
                per_exec(d.after_checkpoint.wal.saturating_sub(d.before.wal))
            }).round(),
            "write_bytes_per_execution_run": med(rounds, |r| per_exec(f(r).disk.written_run)).round(),
            "write_bytes_per_execution_after_checkpoint":
                med(rounds, |r| per_exec(f(r).disk.written_checkpoint)).round(),
            "write_bytes_per_token_first_quarter":
                round1(med(rounds, |r| per_quarter_token(f(r), f(r).disk.written_first_quarter))),
            "write_bytes_per_token_last_quarter":
                round1(med(rounds, |r| per_quarter_token(f(r), f(r).disk.written_last_quarter))),
            "files_per_round": rounds.iter().map(|r| {
                let d = f(r).disk;
                json!({
                    "db_before": d.before.db, "wal_before": d.before.wal,
                    "db_after_run": d.after_run.db, "wal_after_run": d.after_run.wal,
                    "db_after_checkpoint": d.after_checkpoint.db,
                    "wal_after_checkpoint": d.after_checkpoint.wal,
                })
            }).collect::<Vec<_>>(),
        });
    }
    v
}

/// The transcript scenario's rows (issue 16's targets), when it ran.
fn transcript_rows(v: &Value, out: &mut String) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let check = |ok: bool| if ok { "yes" } else { "**no**" };
    let (up, ap) = ("/transcript/stigmer/upstream", "/transcript/stigmer/append");
    let (xa, pu) = ("/transcript/redis/xadd", "/transcript/redis/publish");
    if f(&format!("{up}/tokens_per_s")) <= 0.0 && f(&format!("{ap}/tokens_per_s")) <= 0.0 {
        return;
    }
    let tokens = f("/transcript/tokens_per_runner");
    let runners = f("/transcript/runners");
    let every = f("/transcript/every");
    let scale = tokens / 8000.0;
    let mb = 1e6;
    let kb = 1e3;
    let rate = f("/transcript/rate_per_runner");
    let pace = if rate > 0.0 {
        format!("{rate:.0} tokens/s each")
    } else {
        "closed loop".to_string()
    };
    let head = format!("transcript ({runners:.0} runners x {tokens:.0} tokens, {pace})");
    // Disk: the files' growth after the checkpoint, per execution, against
    // the target for 8,000 tokens scaled to the tokens run.
    for (path, mode, limit) in [(up, "upstream's mode", 1.0), (ap, "append mode", 2.0)] {
        let d = |k: &str| f(&format!("{path}/disk/{k}"));
        let growth = d("growth_bytes_per_execution_after_checkpoint");
        let right_after = d("growth_bytes_per_execution_after_run");
        let (db, wal) = (
            d("db_growth_bytes_per_execution_after_checkpoint"),
            d("wal_growth_bytes_per_execution_after_checkpoint"),
        );
        let written = d("write_bytes_per_execution_after_checkpoint");
        let target = limit * mb * scale;
        let scaled = if (scale - 1.0).abs() > 1e-9 {
            format!(" ({:.3} MB for {tokens:.0})", target / mb)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {head}, {mode}: database + WAL growth per execution after the checkpoint (MB) | {:.3} (db {:.3}, WAL {:.3}; right after the run {:.3}; write_bytes {:.3}) | Redis: no disk | | ≤ {limit:.0} MB per 8,000 tokens{scaled} | {} |\n",
            growth / mb,
            db / mb,
            wal / mb,
            right_after / mb,
            written / mb,
            check(growth <= target)
        ));
    }
    // Fan-out: bytes each subscriber read.
    let (bytes, fin) = (
        f(&format!("{up}/subscriber_bytes_per_execution")),
        f(&format!("{up}/final_state_bytes")),
    );
    out.push_str(&format!(
        "| {head}, upstream's mode: bytes per delta subscriber (KB) | {:.1} | XREAD {:.1} | {:.2}x the final state ({:.1} KB) | ≤ 3x the final state | {} |\n",
        bytes / kb,
        f(&format!("{xa}/subscriber_bytes_per_execution")) / kb,
        ratio(bytes, fin),
        fin / kb,
        check(fin > 0.0 && bytes <= 3.0 * fin)
    ));
    let (bytes, fin, events) = (
        f(&format!("{ap}/subscriber_bytes_per_execution")),
        f(&format!("{ap}/final_state_bytes")),
        f(&format!("{ap}/subscriber_events_per_execution")),
    );
    let per_event = ratio(bytes - fin, events);
    out.push_str(&format!(
        "| {head}, append mode: bytes per delta subscriber (KB) | {:.1} | PUBLISH {:.1} | final state ({:.1} KB) + {per_event:.1} B per event ({events:.0} events) | ≤ final state + 64 B per event | {} |\n",
        bytes / kb,
        f(&format!("{pu}/subscriber_bytes_per_execution")) / kb,
        fin / kb,
        check(fin > 0.0 && bytes <= fin + 64.0 * events)
    ));
    // Growth: bytes per token, last quarter against the first.
    for (path, mode, peer, peer_label) in [
        (up, "upstream's mode", xa, "XREAD"),
        (ap, "append mode", pu, "PUBLISH"),
    ] {
        let q = |p: &str, k: &str| f(&format!("{p}/{k}"));
        let (s1, s4) = (
            q(path, "subscriber_bytes_per_token_first_quarter"),
            q(path, "subscriber_bytes_per_token_last_quarter"),
        );
        let (d1, d4) = (
            q(path, "disk/write_bytes_per_token_first_quarter"),
            q(path, "disk/write_bytes_per_token_last_quarter"),
        );
        let (p1, p4) = (
            q(peer, "subscriber_bytes_per_token_first_quarter"),
            q(peer, "subscriber_bytes_per_token_last_quarter"),
        );
        let (rs, rd) = (ratio(s4, s1), ratio(d4, d1));
        out.push_str(&format!(
            "| {head}, {mode}: bytes per token, first → last quarter | subscriber {s1:.1} → {s4:.1}; disk {d1:.0} → {d4:.0} | {peer_label} {p1:.1} → {p4:.1} | last / first: subscriber {rs:.2}x, disk {rd:.2}x | flat (≤ 1.5x) | {} |\n",
            check(s1 > 0.0 && rs <= 1.5 && d1 > 0.0 && rd <= 1.5)
        ));
    }
    // Latency: a token from its production to its subscriber.
    let q = f("/paired_ratios/transcript_append_p50_vs_publish");
    let (p50, p50p) = (
        f(&format!("{ap}/latency/p50_us")),
        f(&format!("{pu}/latency/p50_us")),
    );
    out.push_str(&format!(
        "| {head}, append mode: token latency p50 (µs) | {p50:.0} | PUBLISH {p50p:.0} | {q:.2}x ({:.2}x) | ≤ 1x PUBLISH | {} |\n",
        ratio(p50, p50p),
        check(p50 > 0.0 && q <= 1.0)
    ));
    out.push_str(&format!(
        "| {head}, append mode: token latency p99 (µs, reference) | {:.0} | PUBLISH {:.0} | ({:.2}x) | | |\n",
        f(&format!("{ap}/latency/p99_us")),
        f(&format!("{pu}/latency/p99_us")),
        ratio(f(&format!("{ap}/latency/p99_us")), f(&format!("{pu}/latency/p99_us")))
    ));
    out.push_str(&format!(
        "| {head}, upstream's mode: token latency p50 / p99 (µs, reference: a token waits for the update every {every:.0} tokens; in parentheses from that update's send) | {:.0} / {:.0} ({:.0} / {:.0}) | XADD {:.0} / {:.0} ({:.0} / {:.0}) | {:.2}x p50 | | |\n",
        f(&format!("{up}/latency/p50_us")),
        f(&format!("{up}/latency/p99_us")),
        f(&format!("{up}/latency_from_send/p50_us")),
        f(&format!("{up}/latency_from_send/p99_us")),
        f(&format!("{xa}/latency/p50_us")),
        f(&format!("{xa}/latency/p99_us")),
        f(&format!("{xa}/latency_from_send/p50_us")),
        f(&format!("{xa}/latency_from_send/p99_us")),
        f("/paired_ratios/transcript_upstream_p50_vs_xadd")
    ));
    // Cost: an append's daemon CPU against a 1 KiB update's (throughput).
    let cpu = f(&format!("{ap}/server_cpu_us_per_token"));
    let update = f("/throughput/stigmer/server_cpu_us_per_op");
    let q = f("/paired_ratios/transcript_append_cpu_vs_update");
    let (peer, ratio_cell, met) = if update > 0.0 {
        (
            format!("1 KiB update (throughput) {update:.1}"),
            format!("{q:.2}x ({:.2}x)", cpu / update),
            check(q <= 1.0),
        )
    } else {
        (
            "throughput scenario not run".to_string(),
            String::new(),
            "n/a",
        )
    };
    out.push_str(&format!(
        "| {head}, append mode: daemon CPU per token (µs) | {cpu:.1} | {peer} | {ratio_cell} | ≤ 1x a 1 KiB update | {met} |\n"
    ));
    out.push_str(&format!(
        "| {head}: server CPU per token (µs, reference) | upstream's mode {:.1}, append {:.1} | XADD {:.1}, PUBLISH {:.1} | | | |\n",
        f(&format!("{up}/server_cpu_us_per_token")),
        cpu,
        f(&format!("{xa}/server_cpu_us_per_token")),
        f(&format!("{pu}/server_cpu_us_per_token")),
    ));
}

fn table(v: &Value) -> String {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let check = |ok: bool| if ok { "yes" } else { "**no**" };
    let mut out = String::new();
    out.push_str(
        "| scenario | stigmer | peer | paired ratio (ratio of medians) | target | met |\n",
    );
    out.push_str("|---|---:|---:|---:|---|---|\n");
    let (p50, p50r, p50s) = (
        f("/latency/stigmer/p50_us"),
        f("/latency/redis_pubsub/p50_us"),
        f("/latency/redis_stream/p50_us"),
    );
    let (q, qs) = (
        f("/paired_ratios/latency_p50_vs_pubsub"),
        f("/paired_ratios/latency_p50_vs_stream"),
    );
    // A scenario left out with --only has no row (its figures read 0).
    let ran = |x: f64| x > 0.0;
    if ran(p50) {
        out.push_str(&format!(
        "| latency p50 (µs) | {p50:.0} | pub/sub {p50r:.0}, stream {p50s:.0} | {q:.2}x pub/sub ({:.2}x), {qs:.2}x stream ({:.2}x) | ≤ 1.5x pub/sub and < stream | {} |\n",
        p50 / p50r,
        p50 / p50s,
        check(q <= 1.5 && qs < 1.0)
    ));
    }
    let (p99, p99r, p99s) = (
        f("/latency/stigmer/p99_us"),
        f("/latency/redis_pubsub/p99_us"),
        f("/latency/redis_stream/p99_us"),
    );
    let q = f("/paired_ratios/latency_p99_vs_pubsub");
    if ran(p99) {
        out.push_str(&format!(
        "| latency p99 (µs) | {p99:.0} | pub/sub {p99r:.0}, stream {p99s:.0} | {q:.2}x pub/sub ({:.2}x) | ≤ 2x pub/sub | {} |\n",
        p99 / p99r,
        check(q <= 2.0)
    ));
    }
    let (tp, tpr) = (
        f("/throughput/stigmer/per_s"),
        f("/throughput/redis_stream/per_s"),
    );
    let q = f("/paired_ratios/throughput");
    if ran(tp) {
        out.push_str(&format!(
        "| throughput, 32 writers (updates/s) | {tp:.0} | XADD {tpr:.0} | {q:.2}x ({:.2}x) | ≥ 0.5x | {} |\n",
        tp / tpr,
        check(q >= 0.5)
    ));
    }
    let floor = f("/throughput/sqlite_floor/per_s");
    let q = f("/paired_ratios/throughput_floor");
    if ran(floor) {
        out.push_str(&format!(
        "| throughput, SQLite floor server (reference, not stigmer) | {floor:.0} | XADD {tpr:.0} | {q:.2}x ({:.2}x); stigmer {:.2}x of it | | |\n",
        floor / tpr,
        f("/paired_ratios/throughput_vs_floor")
    ));
    }
    let (fan, fanr) = (f("/fanout/stigmer/per_s"), f("/fanout/redis_pubsub/per_s"));
    let q = f("/paired_ratios/fanout");
    if ran(fan) {
        out.push_str(&format!(
        "| fan-out, 1,000 subscribers (deliveries/s) | {fan:.0} | PUBLISH {fanr:.0} | {q:.2}x ({:.2}x) | ≥ 0.8x | {} |\n",
        fan / fanr,
        check(q >= 0.8)
    ));
    }
    let rss = f("/idle/rss_bytes");
    let rssr = f("/idle/redis_rss_bytes") - f("/idle/redis_rss_before_bytes");
    let mib = 1024.0 * 1024.0;
    if ran(rss) {
        out.push_str(&format!(
        "| idle, 10,000 subscriptions (RSS MiB) | {:.1} | +{:.1} (growth) | | < 150 MiB | {} |\n",
        rss / mib,
        rssr / mib,
        check(rss < 150.0 * mib)
    ));
    }
    let (full, single) = (
        f("/durability_full/per_s"),
        f("/durability_full/single_writer_per_s"),
    );
    let q = f("/paired_ratios/durability_full");
    if ran(full) {
        out.push_str(&format!(
        "| durability full, 32 writers (updates/s) | {full:.0} | single writer {single:.0} | {q:.1}x ({:.1}x) | ≥ 5x single | {} |\n",
        full / single,
        check(q >= 5.0)
    ));
    }
    for p in &PEERS {
        peer_rows(v, p, &mut out);
    }
    transcript_rows(v, &mut out);
    out
}

/// The rows against one durable peer (issue 21), where both sides ran:
/// each target is "at least as good as the peer", judged on the paired
/// ratio (stigmer / peer).
fn peer_rows(v: &Value, p: &PeerSide, out: &mut String) {
    let f = |path: &str| v.pointer(path).and_then(Value::as_f64).unwrap_or(0.0);
    let check = |ok: bool| if ok { "yes" } else { "**no**" };
    let (k, label) = (p.key, p.label);
    let mib = 1024.0 * 1024.0;
    // The counts this run used (the defaults, 1,000 and 10,000, unless the
    // command line set fewer for a smoke run).
    let count = |path: &str, default: u64| {
        v.pointer(path)
            .and_then(Value::as_u64)
            .unwrap_or(default)
            .to_string()
    };
    let fanout = format!(
        "fan-out, {} subscribers (deliveries/s)",
        count("/fanout/subscribers", 1000)
    );
    let idle = format!(
        "idle, {} subscriptions (RSS growth MiB)",
        count("/idle/subscriptions", 10000)
    );
    let rows = [
        (
            "latency p50 (µs)",
            f("/latency/stigmer/p50_us"),
            f(&format!("/latency/{k}/p50_us")),
            f(&format!("/paired_ratios/latency_p50_vs_{k}")),
            false,
        ),
        (
            "latency p99 (µs)",
            f("/latency/stigmer/p99_us"),
            f(&format!("/latency/{k}/p99_us")),
            f(&format!("/paired_ratios/latency_p99_vs_{k}")),
            false,
        ),
        (
            "throughput, 32 writers (updates/s)",
            f("/throughput/stigmer/per_s"),
            f(&format!("/throughput/{k}/per_s")),
            f(&format!("/paired_ratios/throughput_vs_{k}")),
            true,
        ),
        (
            fanout.as_str(),
            f("/fanout/stigmer/per_s"),
            f(&format!("/fanout/{k}/per_s")),
            f(&format!("/paired_ratios/fanout_vs_{k}")),
            true,
        ),
        (
            idle.as_str(),
            (f("/idle/rss_bytes") - f("/idle/rss_before_bytes")) / mib,
            (f(&format!("/idle/{k}_rss_bytes")) - f(&format!("/idle/{k}_rss_before_bytes"))) / mib,
            f(&format!("/paired_ratios/idle_growth_vs_{k}")),
            false,
        ),
    ];
    for (scenario, ours, theirs, q, higher_is_better) in rows {
        if !(ours > 0.0 && theirs > 0.0) {
            continue;
        }
        let (target, met) = if higher_is_better {
            ("≥ 1x", q >= 1.0)
        } else {
            ("≤ 1x", q <= 1.0)
        };
        let precision = if scenario.starts_with("idle") { 1 } else { 0 };
        out.push_str(&format!(
            "| {scenario} vs {label} | {ours:.precision$} | {theirs:.precision$} | {q:.2}x ({:.2}x) | {target} | {} |\n",
            ours / theirs,
            check(met)
        ));
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let nofile = procs::raise_fd_limit();
    if (nofile as usize) < args.idle.max(args.subscribers) + 64 {
        eprintln!(
            "stigmer-bench: the open-files limit is {nofile}; {} connections need more",
            args.idle.max(args.subscribers)
        );
        return ExitCode::FAILURE;
    }
    // One client thread for every scenario and both systems, so the client
    // side costs the same whichever server it drives.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stigmer-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rounds = Vec::with_capacity(args.rounds);
    for r in 0..args.rounds {
        match run_round(&args, r, &rt) {
            Ok(round) => rounds.push(round),
            Err(e) => {
                eprintln!("stigmer-bench: round {r} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let v = results(&args, &rounds);
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    if let Err(e) = std::fs::write(&args.out, text + "\n") {
        eprintln!("stigmer-bench: cannot write {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    println!("{}", table(&v));
    println!(
        "median of {} rounds; {}; written to {}",
        rounds.len(),
        v["machine"],
        args.out.display()
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--only throughput`: one row, judged on its paired ratio; the
    /// scenarios that did not run are left out rather than shown as met.
    #[test]
    fn table_shows_only_the_scenarios_that_ran() {
        let v = json!({
            "throughput": {"stigmer": {"per_s": 30000.0}, "redis_stream": {"per_s": 100000.0}},
            "paired_ratios": {"throughput": 0.3},
        });
        let t = table(&v);
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(rows.len(), 1, "{t}");
        assert!(rows[0].starts_with("| throughput"), "{t}");
        assert!(rows[0].ends_with("| **no** |"), "{t}");
    }

    /// With NATS JetStream and etcd given, each gets its rows after the
    /// Redis ones: stigmer against it in every scenario, judged on the
    /// paired ratio (at most the peer's latency and memory, at least its
    /// rates), labelled with its durability; a peer that did not run has
    /// no rows.
    #[test]
    fn durable_peers_get_their_rows() {
        let v = json!({
            "latency": {
                "stigmer": {"p50_us": 30.0, "p99_us": 90.0},
                "nats_jetstream": {"p50_us": 60.0, "p99_us": 80.0},
            },
            "throughput": {"stigmer": {"per_s": 70000.0}, "nats_jetstream": {"per_s": 50000.0}},
            "fanout": {"subscribers": 50, "stigmer": {"per_s": 1000.0}, "nats_jetstream": {"per_s": 900.0}},
            "idle": {
                "subscriptions": 10000,
                "rss_bytes": 80.0 * 1048576.0, "rss_before_bytes": 10.0 * 1048576.0,
                "nats_jetstream_rss_bytes": 500.0 * 1048576.0,
                "nats_jetstream_rss_before_bytes": 100.0 * 1048576.0,
            },
            "paired_ratios": {
                "latency_p50_vs_nats_jetstream": 0.5,
                "latency_p99_vs_nats_jetstream": 1.125,
                "throughput_vs_nats_jetstream": 1.4,
                "fanout_vs_nats_jetstream": 1.111,
                "idle_growth_vs_nats_jetstream": 0.175,
            },
        });
        let t = table(&v);
        let rows: Vec<&str> = t.lines().filter(|l| l.contains("JetStream")).collect();
        assert_eq!(rows.len(), 5, "{t}");
        assert!(rows.iter().all(|r| r.contains("fsync every 2 min")), "{t}");
        assert!(
            rows[0].starts_with("| latency p50 (µs) vs JetStream"),
            "{t}"
        );
        assert!(rows[0].ends_with("| 0.50x (0.50x) | ≤ 1x | yes |"), "{t}");
        assert!(
            rows[1].ends_with("| 1.12x (1.12x) | ≤ 1x | **no** |"),
            "{t}"
        );
        assert!(rows[2].ends_with("| ≥ 1x | yes |"), "{t}");
        assert!(rows[3].starts_with("| fan-out, 50 subscribers"), "{t}");
        assert!(
            rows[4].contains("| 70.0 | 400.0 | 0.17x (0.17x) | ≤ 1x | yes |"),
            "{t}"
        );
        assert!(!t.contains("etcd"), "{t}");
    }

    /// The transcript rows: each of issue 16's targets judged, the disk
    /// target scaled to the tokens run, the CPU target left open when the
    /// throughput scenario did not run.
    #[test]
    fn transcript_rows_judge_the_targets() {
        let mode = |sub: f64, fin: f64, events: f64, p50: f64, cpu: f64| {
            json!({
                "tokens_per_s": 1000.0,
                "subscriber_bytes_per_execution": sub,
                "final_state_bytes": fin,
                "subscriber_events_per_execution": events,
                "subscriber_bytes_per_token_first_quarter": 10.0,
                "subscriber_bytes_per_token_last_quarter": 11.0,
                "latency": {"p50_us": p50, "p99_us": 2.0 * p50},
                "latency_from_send": {"p50_us": p50, "p99_us": 2.0 * p50},
                "server_cpu_us_per_token": cpu,
                "disk": {
                    "growth_bytes_per_execution_after_checkpoint": 150_000.0,
                    "write_bytes_per_token_first_quarter": 100.0,
                    "write_bytes_per_token_last_quarter": 400.0,
                },
            })
        };
        let v = json!({
            "transcript": {
                "runners": 4, "tokens_per_runner": 800, "every": 10,
                "stigmer": {
                    "upstream": mode(12_000.0, 5_000.0, 82.0, 5000.0, 9.0),
                    "append": mode(45_000.0, 5_000.0, 803.0, 90.0, 20.0),
                },
                "redis": {
                    "xadd": mode(175_000.0, 4_000.0, 81.0, 4000.0, 3.0),
                    "publish": mode(37_000.0, 4_000.0, 801.0, 45.0, 6.0),
                },
            },
            "paired_ratios": {
                "transcript_append_p50_vs_publish": 2.0,
                "transcript_upstream_p50_vs_xadd": 1.25,
            },
        });
        let t = table(&v);
        let rows: Vec<&str> = t.lines().filter(|l| l.contains("transcript")).collect();
        assert_eq!(rows.len(), 11, "{t}");
        // 0.15 MB per execution: over 0.1 MB (1 MB scaled to 800 tokens),
        // under 0.2 MB.
        assert!(
            rows[0].contains("(0.100 MB for 800)") && rows[0].ends_with("| **no** |"),
            "{t}"
        );
        assert!(rows[1].ends_with("| yes |"), "{t}");
        // 12 KB against 3 x 5 KB; 45 KB against 5 KB + 64 B x 803 events.
        assert!(
            rows[2].contains("2.40x the final state") && rows[2].ends_with("| yes |"),
            "{t}"
        );
        assert!(
            rows[3].contains("+ 49.8 B per event") && rows[3].ends_with("| yes |"),
            "{t}"
        );
        // The disk's bytes per token grew 4x.
        assert!(rows[4].ends_with("| **no** |"), "{t}");
        assert!(
            rows[6].contains("| 2.00x (2.00x) | ≤ 1x PUBLISH | **no** |"),
            "{t}"
        );
        assert!(
            rows[9].contains("throughput scenario not run") && rows[9].ends_with("| n/a |"),
            "{t}"
        );
        // Without the transcript, no rows.
        assert!(!table(&json!({})).contains("transcript"));
    }

    #[test]
    fn rotation_puts_each_side_first_in_turn() {
        let firsts: Vec<usize> = (0..5).map(|r| rotation(r, 5).next().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2, 3, 4]);
        let mut round: Vec<usize> = rotation(3, 4).collect();
        assert_eq!(round, [3, 0, 1, 2]);
        round.sort_unstable();
        assert_eq!(round, [0, 1, 2, 3]);
    }

    /// The floor server's row follows the throughput row as a reference:
    /// its ratio against XADD and the daemon's against it, judged on no
    /// target.
    #[test]
    fn floor_server_is_a_reference_row() {
        let v = json!({
            "throughput": {
                "stigmer": {"per_s": 30000.0},
                "redis_stream": {"per_s": 100000.0},
                "sqlite_floor": {"per_s": 50000.0},
            },
            "paired_ratios": {"throughput": 0.3, "throughput_floor": 0.5, "throughput_vs_floor": 0.6},
        });
        let t = table(&v);
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{t}");
        assert!(rows[1].contains("SQLite floor server"), "{t}");
        assert!(
            rows[1].contains("0.50x (0.50x); stigmer 0.60x of it"),
            "{t}"
        );
        assert!(rows[1].ends_with("| | |"), "{t}");
    }
}
