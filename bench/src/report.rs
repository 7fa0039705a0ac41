//! What `stigmer-bench` writes: the medians and paired ratios of the
//! rounds as `bench-results.json`, and the Markdown table printed at the end.
//! Apart from main.rs (which runs the rounds) so that each stays short; each
//! scenario with a file of its own (the transcript, watch_all) writes its own
//! part of both here.

use serde_json::{json, Value};

use crate::scenarios::{Idle, Latency, Rate};
use crate::{transcript, watch_all, Args, Round};

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn med<T>(rounds: &[Round], f: impl Fn(&Round) -> T) -> f64
where
    T: Into<f64>,
{
    median(rounds.iter().map(|r| f(r).into()).collect())
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn latency_json(rounds: &[Round], f: impl Fn(&Round) -> Latency) -> Value {
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
pub(crate) fn paired(rounds: &[Round], ratio: impl Fn(&Round) -> f64) -> f64 {
    (median(rounds.iter().map(ratio).collect()) * 1000.0).round() / 1000.0
}

pub(crate) fn rate_json(rounds: &[Round], f: impl Fn(&Round) -> Rate) -> Value {
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
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
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

pub(crate) fn results(args: &Args, rounds: &[Round]) -> Value {
    let tp_committed: u64 = rounds.iter().map(|r| r.tp_stigmer.committed).sum();
    let tp_acked: u64 = rounds.iter().map(|r| r.tp_stigmer.acked).sum();
    let mut v = json!({
        "latency": {
            "stigmer": latency_json(rounds, |r| r.lat_stigmer),
            "redis_pubsub": latency_json(rounds, |r| r.lat_pubsub),
            "redis_stream": latency_json(rounds, |r| r.lat_stream),
            "nats_jetstream": latency_json(rounds, |r| r.lat_nats),
            "etcd": latency_json(rounds, |r| r.lat_etcd),
            // The floor server, when it ran: the update committed, then its
            // status written to the subscriber, on one thread (reference).
            "sqlite_floor": latency_json(rounds, |r| r.lat_floor),
            "status_bytes": args.status_bytes,
        },
        "throughput": {
            "writers": args.writers,
            "stigmer": rate_json(rounds, |r| r.tp_stigmer),
            "redis_stream": rate_json(rounds, |r| r.tp_redis),
            // The floor server (src/bin/stigmer-floor/): one thread, one
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
            "latency_floor_p50_vs_pubsub": paired(rounds, |r| ratio(r.lat_floor.p50_us, r.lat_pubsub.p50_us)),
            "latency_floor_p99_vs_pubsub": paired(rounds, |r| ratio(r.lat_floor.p99_us, r.lat_pubsub.p99_us)),
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
        "transcript": transcript::report::transcript_json(args, rounds),
        "watch_all": watch_all::json(rounds, &args.watch_settings()),
        "cluster": crate::cluster::json(rounds),
        "rounds": rounds.len(),
        "window_s": args.window.as_secs_f64(),
        "machine": machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    if let Some(ratios) = v["paired_ratios"].as_object_mut() {
        peer_ratios(rounds, ratios);
        watch_all::ratios(rounds, ratios);
        transcript::report::jetstream_ratios(rounds, ratios);
        transcript::report::reference_ratios(rounds, ratios);
    }
    v
}

pub(crate) fn table(v: &Value) -> String {
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
    let (fp50, fp99) = (
        f("/latency/sqlite_floor/p50_us"),
        f("/latency/sqlite_floor/p99_us"),
    );
    if ran(fp50) {
        out.push_str(&format!(
        "| latency p50 / p99 (µs), SQLite floor server (reference, not stigmer) | {fp50:.0} / {fp99:.0} | pub/sub {p50r:.0} / {p99r:.0} | p50 {:.2}x, p99 {:.2}x pub/sub | | |\n",
        f("/paired_ratios/latency_floor_p50_vs_pubsub"),
        f("/paired_ratios/latency_floor_p99_vs_pubsub"),
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
    transcript::report::transcript_rows(v, &mut out);
    watch_all::rows(v, &mut out);
    crate::cluster::rows(v, &mut out);
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

#[cfg(test)]
mod tests {
    use super::*;

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
