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

mod cluster;
mod etcd;
mod nats;
mod pace;
mod peers;
mod procs;
mod redis;
mod report;
mod scenarios;
mod stig;
mod transcript;
mod watch_all;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use prost::Message;

use scenarios::{Idle, Latency, Rate};

/// Settings, from the command line (all have defaults but the paths).
struct Args {
    stigmer: PathBuf,
    /// The floor server (`src/bin/stigmer-floor/`), run beside the other
    /// two in the throughput scenario and beside append mode in the
    /// transcript; by default the `stigmer-floor` next to this binary, left
    /// out when there is none.
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
    /// The watch_all scenario (issue 17): updates per second per writer
    /// (0: as fast as acknowledgements allow).
    watch_rate: f64,
    /// Scenarios to run (all when empty): latency, throughput, fanout,
    /// idle, full, transcript. For profiling one path; the table needs
    /// them all.
    only: Vec<String>,
}

const USAGE: &str = "usage: stigmer-bench --stigmer BIN --redis-socket PATH --dir TMPDIR \
[--floor BIN] [--nats 127.0.0.1:PORT --nats-pid PID] [--etcd 127.0.0.1:PORT --etcd-pid PID] [--out bench-results.json] [--rounds 3] [--latency-updates 10000] [--seconds 5] \
[--writers 32] [--subscribers 1000] [--idle 10000] [--status-bytes 1024] \
[--transcript-runners 32] [--transcript-tokens 8000] [--transcript-every 10] [--transcript-rate 250] [--transcript-pacing tick|exact] \
[--watch-rate 100] [--only latency,throughput,fanout,idle,full,transcript,watch_all,cluster]";

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
            exact: false,
        },
        // 3,200 updates/s in all (each execution ~3 a second), 35,200
        // deliveries/s: well under what either side can do on 2 vCPUs, so
        // the latency is not queueing (docs/PERFORMANCE.md, "watch_all").
        watch_rate: 100.0,
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
            "--transcript-pacing" => {
                args.transcript.exact = match value()?.as_str() {
                    "tick" => false,
                    "exact" => true,
                    other => return Err(format!("--transcript-pacing {other}: tick or exact")),
                }
            }
            "--watch-rate" => {
                let v = value()?;
                let rate: f64 = v.parse().map_err(|e| format!("{v}: {e}"))?;
                args.watch_rate = rate.max(0.0);
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
    /// The floor server's latency (when it is given), a reference.
    lat_floor: Latency,
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
    /// JetStream's two (when NATS is given): the whole status every
    /// `every` tokens, one message per token.
    tr_js_status: transcript::Mode,
    tr_js_token: transcript::Mode,
    /// Append mode on the floor server (when it is given): what committing
    /// each append before publishing it costs with nothing else around it.
    tr_floor_append: transcript::Mode,
    /// The throughput scenario's 1 KiB update once per token, at the same
    /// pace and with the same subscribers as append mode: an append's cost
    /// beside an update's under one load.
    tr_update: transcript::Mode,
    /// The watch_all scenario: stigmer and Redis PSUBSCRIBE.
    watch: watch_all::Round,
    /// The cluster scenario (issue 20): the cluster mode on 3-member etcd
    /// beside the embedded store.
    cluster: cluster::Round,
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

    fn watch_settings(&self) -> watch_all::Settings {
        watch_all::Settings {
            rate: self.watch_rate,
            status_bytes: self.status_bytes,
            warmup: WARMUP,
            window: self.window,
        }
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
        for side in rotation(r, 6) {
            match side {
                0 => round.lat_stigmer = scenarios::latency_stigmer(ds, &status, warm, n)?,
                1 => round.lat_pubsub = scenarios::latency_redis_pubsub(rs, &payload, warm, n)?,
                2 => round.lat_stream = scenarios::latency_redis_stream(rs, &payload, warm, n)?,
                3 => {
                    let Some(p) = args.nats else { continue };
                    round.lat_nats = peers::latency_nats(p.addr, &payload, warm, n, &tag)?;
                }
                4 => {
                    let Some(p) = args.etcd else { continue };
                    round.lat_etcd = rt.block_on(peers::latency_etcd(p.addr, &payload, warm, n))?;
                }
                _ => {
                    let Some(floor) = &args.floor else { continue };
                    let server = procs::Daemon::start(
                        floor,
                        &args.dir,
                        &format!("r{r}-lat-floor"),
                        "normal",
                    )?;
                    round.lat_floor = scenarios::latency_stigmer(&server.socket, &status, warm, n)?;
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
                // Each peer fresh, as each daemon is (procs::Server).
                1 => {
                    let redis = procs::Server::redis(&args.dir, &format!("r{r}-idle-redis"))?;
                    round.idle_redis = rt.block_on(scenarios::idle_redis(
                        &redis.socket,
                        redis.pid(),
                        args.idle,
                        IDLE_EXECUTIONS,
                    ))?;
                }
                2 => {
                    if args.nats.is_none() {
                        continue;
                    }
                    let nats = procs::Server::nats(&args.dir, &format!("r{r}-idle-nats"))?;
                    round.idle_nats = rt.block_on(peers::idle_nats(
                        nats.addr
                            .ok_or_else(|| io::Error::other("nats-server: no address"))?,
                        nats.pid(),
                        args.idle,
                        IDLE_EXECUTIONS,
                        &tag,
                    ))?;
                }
                _ => {
                    if args.etcd.is_none() {
                        continue;
                    }
                    let etcd = procs::Server::etcd(&args.dir, &format!("r{r}-idle-etcd"))?;
                    round.idle_etcd = rt.block_on(peers::idle_etcd(
                        etcd.addr
                            .ok_or_else(|| io::Error::other("etcd: no address"))?,
                        etcd.pid(),
                        args.idle,
                        IDLE_EXECUTIONS,
                    ))?;
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
        for side in rotation(r, 8) {
            match side {
                0 | 1 | 7 => {
                    let (sends, name) = match side {
                        0 => (transcript::Sends::Upstream, "upstream"),
                        1 => (transcript::Sends::Append, "append"),
                        _ => (transcript::Sends::Update1Kib, "update"),
                    };
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
                        sends,
                    ))?;
                    match sends {
                        transcript::Sends::Upstream => round.tr_upstream = mode,
                        transcript::Sends::Append => round.tr_append = mode,
                        transcript::Sends::Update1Kib => round.tr_update = mode,
                    }
                }
                2 => {
                    round.tr_xadd =
                        rt.block_on(transcript::redis(rs, redis_pid, t, &tokens, false))?
                }
                3 => {
                    round.tr_publish =
                        rt.block_on(transcript::redis(rs, redis_pid, t, &tokens, true))?
                }
                6 => {
                    let Some(floor) = &args.floor else { continue };
                    let server = procs::Daemon::start_with(
                        floor,
                        &args.dir,
                        &format!("r{r}-transcript-floor"),
                        "normal",
                        &retention,
                    )?;
                    round.tr_floor_append = rt.block_on(transcript::stigmer(
                        &server.socket,
                        server.pid(),
                        &server.db,
                        t,
                        &tokens,
                        transcript::Sends::Append,
                    ))?;
                }
                _ => {
                    let Some(p) = args.nats else { continue };
                    // scripts/bench starts nats-server with `-sd <dir>/nats`.
                    let (store, per_token) = (args.dir.join("nats"), side == 5);
                    let mode = rt.block_on(transcript::jetstream(
                        p.addr, p.pid, &store, t, &tokens, per_token, &tag,
                    ))?;
                    if per_token {
                        round.tr_js_token = mode;
                    } else {
                        round.tr_js_status = mode;
                    }
                }
            }
        }
    }
    if args.wants("watch_all") {
        let s = args.watch_settings();
        say(format!(
            "round {r}: watch_all ({} executions, {} writers at {} updates/s each)",
            watch_all::EXECUTIONS,
            watch_all::WRITERS,
            s.rate
        ));
        for side in rotation(r, 2) {
            if side == 0 {
                let d = procs::Daemon::start(
                    &args.stigmer,
                    &args.dir,
                    &format!("r{r}-watch"),
                    "normal",
                )?;
                round.watch.stigmer = rt.block_on(watch_all::stigmer(&d.socket, d.pid(), &s))?;
            } else {
                round.watch.redis = rt.block_on(watch_all::redis(rs, redis_pid, &s))?;
            }
        }
    }
    if args.wants("cluster") && args.etcd.is_some() {
        say(format!(
            "round {r}: cluster (3-member etcd; {} writers, {} subscribers)",
            w, args.subscribers
        ));
        round.cluster = cluster::round(
            rt,
            r,
            &cluster::Settings {
                stigmer: &args.stigmer,
                dir: &args.dir,
                status: &status,
                writers: w,
                subscribers: args.subscribers,
                latency_updates: args.latency_updates,
                warmup: WARMUP,
                window: win,
            },
            LATENCY_WARMUP,
        )?;
    }
    Ok(round)
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
    let v = report::results(&args, &rounds);
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    if let Err(e) = std::fs::write(&args.out, text + "\n") {
        eprintln!("stigmer-bench: cannot write {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    println!("{}", report::table(&v));
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

    #[test]
    fn rotation_puts_each_side_first_in_turn() {
        let firsts: Vec<usize> = (0..5).map(|r| rotation(r, 5).next().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2, 3, 4]);
        let mut round: Vec<usize> = rotation(3, 4).collect();
        assert_eq!(round, [3, 0, 1, 2]);
        round.sort_unstable();
        assert_eq!(round, [0, 1, 2, 3]);
    }
}
