//! The cluster scenario (issue 20, `--only cluster`): the daemon's cluster
//! mode (`--etcd`) on a 3-member etcd cluster on loopback, beside the
//! embedded store, in the same round:
//!
//! - throughput: `--writers` connections to one daemon, each waiting for
//!   its acknowledgement (scenario 2's code);
//! - latency: one writer, one subscriber, one update at a time, the
//!   subscriber on the same daemon ("same host") or on a second daemon of
//!   the same cluster ("across hosts", both on this machine);
//! - fan-out: `--subscribers` subscribers of one execution on the writer's
//!   daemon (scenario 3's code).
//!
//! The cluster's etcd members run with their defaults (a WAL fsync per
//! raft batch); the embedded daemon with its default durability. Server
//! CPU is the daemon's alone (etcd's is not counted). No target: the issue
//! asks for the figures.

use std::io;
use std::path::Path;
use std::time::Duration;

use stigmer_proto::agentexecution::AgentExecutionStatus;

use crate::procs;
use crate::scenarios::{self, Latency, Rate};

/// One round's figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Round {
    pub tp_embedded: Rate,
    pub tp_cluster: Rate,
    pub lat_embedded: Latency,
    pub lat_same: Latency,
    pub lat_across: Latency,
    pub fan_embedded: Rate,
    pub fan_cluster: Rate,
}

/// What a round needs from the command line.
pub struct Settings<'a> {
    pub stigmer: &'a Path,
    pub dir: &'a Path,
    pub status: &'a AgentExecutionStatus,
    pub writers: usize,
    pub subscribers: usize,
    pub latency_updates: usize,
    pub warmup: Duration,
    pub window: Duration,
}

/// Latency samples per side: fewer than scenario 1's, an etcd round trip
/// being a few milliseconds.
const LATENCY_SHARE: usize = 10;

/// Runs one round: the embedded daemon's three figures, then the cluster's.
pub fn round(
    rt: &tokio::runtime::Runtime,
    r: usize,
    s: &Settings<'_>,
    latency_warmup: usize,
) -> io::Result<Round> {
    let mut out = Round::default();
    let n = (s.latency_updates / LATENCY_SHARE).max(100);
    let warm = (latency_warmup / LATENCY_SHARE).max(20);
    {
        let d = procs::Daemon::start(s.stigmer, s.dir, &format!("r{r}-cl-embedded"), "normal")?;
        out.tp_embedded = rt.block_on(scenarios::throughput_stigmer(
            &d.socket,
            d.pid(),
            s.status,
            s.writers,
            s.warmup,
            s.window,
        ))?;
        out.lat_embedded = scenarios::latency_stigmer(&d.socket, s.status, warm, n)?;
        out.fan_embedded = rt.block_on(scenarios::fanout_stigmer(
            &d.socket,
            d.pid(),
            s.status,
            s.subscribers,
            s.warmup,
            s.window,
        ))?;
    }
    let etcd = procs::EtcdCluster::start(s.dir, &format!("r{r}-cl-etcd"))?;
    let flags = ["--etcd".to_string(), etcd.endpoints().join(",")];
    let a = procs::Daemon::start_with(s.stigmer, s.dir, &format!("r{r}-cl-a"), "normal", &flags)?;
    let b = procs::Daemon::start_with(s.stigmer, s.dir, &format!("r{r}-cl-b"), "normal", &flags)?;
    out.tp_cluster = rt.block_on(scenarios::throughput_stigmer(
        &a.socket,
        a.pid(),
        s.status,
        s.writers,
        s.warmup,
        s.window,
    ))?;
    out.lat_same = scenarios::latency_stigmer(&a.socket, s.status, warm, n)?;
    out.lat_across = scenarios::latency_between(&a.socket, &b.socket, s.status, warm, n)?;
    out.fan_cluster = rt.block_on(scenarios::fanout_stigmer(
        &a.socket,
        a.pid(),
        s.status,
        s.subscribers,
        s.warmup,
        s.window,
    ))?;
    Ok(out)
}

/// `bench-results.json`'s `cluster` (empty when it did not run).
pub fn json(rounds: &[crate::Round]) -> serde_json::Value {
    use crate::report::{latency_json, paired, rate_json, ratio};
    if rounds.iter().all(|r| r.cluster.tp_cluster.per_s <= 0.0) {
        return serde_json::json!({});
    }
    let c = |f: fn(&Round) -> f64| move |r: &crate::Round| f(&r.cluster);
    serde_json::json!({
        "etcd_members": 3,
        "embedded": {
            "throughput": rate_json(rounds, |r| r.cluster.tp_embedded),
            "latency": latency_json(rounds, |r| r.cluster.lat_embedded),
            "fanout": rate_json(rounds, |r| r.cluster.fan_embedded),
        },
        "etcd": {
            "throughput": rate_json(rounds, |r| r.cluster.tp_cluster),
            "latency_same_daemon": latency_json(rounds, |r| r.cluster.lat_same),
            "latency_across_daemons": latency_json(rounds, |r| r.cluster.lat_across),
            "fanout": rate_json(rounds, |r| r.cluster.fan_cluster),
        },
        "paired_ratios": {
            "throughput_vs_embedded": paired(rounds, c(|r| ratio(r.tp_cluster.per_s, r.tp_embedded.per_s))),
            "latency_same_p50_vs_embedded": paired(rounds, c(|r| ratio(r.lat_same.p50_us, r.lat_embedded.p50_us))),
            "latency_across_p50_vs_embedded": paired(rounds, c(|r| ratio(r.lat_across.p50_us, r.lat_embedded.p50_us))),
            "fanout_vs_embedded": paired(rounds, c(|r| ratio(r.fan_cluster.per_s, r.fan_embedded.per_s))),
        },
    })
}

/// The table's rows (reference figures: the issue sets no target).
pub fn rows(v: &serde_json::Value, out: &mut String) {
    let f = |p: &str| {
        v.pointer(&format!("/cluster{p}"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    if f("/etcd/throughput/per_s") <= 0.0 {
        return;
    }
    let head = "cluster mode, 3-member etcd on loopback, against the embedded store";
    let rows = [
        (
            "throughput (/s)",
            "/etcd/throughput/per_s",
            "/embedded/throughput/per_s",
            "/paired_ratios/throughput_vs_embedded",
        ),
        (
            "latency p50, subscriber on the writer's daemon (µs)",
            "/etcd/latency_same_daemon/p50_us",
            "/embedded/latency/p50_us",
            "/paired_ratios/latency_same_p50_vs_embedded",
        ),
        (
            "latency p99, subscriber on the writer's daemon (µs)",
            "/etcd/latency_same_daemon/p99_us",
            "/embedded/latency/p99_us",
            "",
        ),
        (
            "latency p50, subscriber on another daemon (µs)",
            "/etcd/latency_across_daemons/p50_us",
            "/embedded/latency/p50_us",
            "/paired_ratios/latency_across_p50_vs_embedded",
        ),
        (
            "latency p99, subscriber on another daemon (µs)",
            "/etcd/latency_across_daemons/p99_us",
            "/embedded/latency/p99_us",
            "",
        ),
        (
            "fan-out (deliveries/s)",
            "/etcd/fanout/per_s",
            "/embedded/fanout/per_s",
            "/paired_ratios/fanout_vs_embedded",
        ),
        (
            "daemon CPU per update, throughput (µs)",
            "/etcd/throughput/server_cpu_us_per_op",
            "/embedded/throughput/server_cpu_us_per_op",
            "",
        ),
    ];
    for (what, cluster, embedded, ratio) in rows {
        let paired = if ratio.is_empty() {
            String::new()
        } else {
            format!("{:.2}x", f(ratio))
        };
        out.push_str(&format!(
            "| {head}: {what} | {:.0} | embedded {:.0} | {paired} | reference | |\n",
            f(cluster),
            f(embedded)
        ));
    }
}
