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
    /// Scenarios to run (all when empty): latency, throughput, fanout,
    /// idle, full. For profiling one path; the table needs them all.
    only: Vec<String>,
}

const USAGE: &str = "usage: stigmer-bench --stigmer BIN --redis-socket PATH --dir TMPDIR \
[--floor BIN] [--nats 127.0.0.1:PORT --nats-pid PID] [--etcd 127.0.0.1:PORT --etcd-pid PID] [--out bench-results.json] [--rounds 3] [--latency-updates 10000] [--seconds 5] \
[--writers 32] [--subscribers 1000] [--idle 10000] [--status-bytes 1024] \
[--only latency,throughput,fanout,idle,full]";

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
        },
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
