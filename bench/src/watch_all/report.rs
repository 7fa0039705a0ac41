//! The watch_all scenario's part of `bench-results.json` (`watch_all`, its
//! paired ratios) and of the table.

use serde_json::{json, Map, Value};

use super::{Settings, Side, ALL_WATCHERS, EXECUTIONS, SESSIONS, WRITERS};
use crate::report::{med, paired, ratio, round1};

/// `bench-results.json`'s `watch_all`.
pub fn json(rounds: &[crate::Round], s: &Settings) -> Value {
    json!({
        "executions": EXECUTIONS,
        "sessions": SESSIONS,
        "writers": WRITERS,
        "all_watchers": ALL_WATCHERS,
        "session_watchers": SESSIONS,
        "rate_per_writer": s.rate,
        "status_bytes": s.status_bytes,
        "stigmer": side_json(rounds, |r| r.watch.stigmer),
        "redis_psubscribe": side_json(rounds, |r| r.watch.redis),
    })
}

fn side_json(rounds: &[crate::Round], f: impl Fn(&crate::Round) -> Side) -> Value {
    json!({
        "p50_us": round1(med(rounds, |r| f(r).latency.p50_us)),
        "p99_us": round1(med(rounds, |r| f(r).latency.p99_us)),
        "mean_us": round1(med(rounds, |r| f(r).latency.mean_us)),
        "cpu_us_per_delivery": round1(med(rounds, |r| f(r).per_delivery(f(r).server_cpu_s))),
        "cpu_us_per_update": round1(med(rounds, |r| {
            let s = f(r);
            if s.updates > 0 { s.server_cpu_s * 1e6 / s.updates as f64 } else { 0.0 }
        })),
        "client_cpu_us_per_delivery": round1(med(rounds, |r| f(r).per_delivery(f(r).client_cpu_s))),
        "rss_per_watcher_bytes": med(rounds, |r| f(r).rss_per_watcher()).round(),
        "rss_before_bytes": med(rounds, |r| f(r).rss_before as f64) as u64,
        "rss_watching_bytes": med(rounds, |r| f(r).rss_watching as f64) as u64,
        "subscribe_ms": round1(med(rounds, |r| f(r).subscribe_s * 1e3)),
        "deliveries_per_s": med(rounds, |r| f(r).per_s(f(r).deliveries)).round(),
        "updates_per_s": med(rounds, |r| f(r).per_s(f(r).updates)).round(),
        "machine_idle": (med(rounds, |r| f(r).idle) * 1000.0).round() / 1000.0,
        "samples_per_round": rounds.iter().map(|r| f(r).latency.samples).collect::<Vec<_>>(),
        "p50_per_round": rounds.iter().map(|r| round1(f(r).latency.p50_us)).collect::<Vec<_>>(),
        "p99_per_round": rounds.iter().map(|r| round1(f(r).latency.p99_us)).collect::<Vec<_>>(),
        "deliveries_per_round": rounds.iter().map(|r| f(r).deliveries).collect::<Vec<_>>(),
    })
}

/// The paired ratios (stigmer / Redis within each round).
pub fn ratios(rounds: &[crate::Round], out: &mut Map<String, Value>) {
    let (st, rd) = (
        |r: &crate::Round| r.watch.stigmer,
        |r: &crate::Round| r.watch.redis,
    );
    let entries = [
        (
            "watch_all_p50_vs_psubscribe",
            paired(rounds, |r| {
                ratio(st(r).latency.p50_us, rd(r).latency.p50_us)
            }),
        ),
        (
            "watch_all_p99_vs_psubscribe",
            paired(rounds, |r| {
                ratio(st(r).latency.p99_us, rd(r).latency.p99_us)
            }),
        ),
        (
            "watch_all_cpu_per_delivery_vs_psubscribe",
            paired(rounds, |r| {
                ratio(
                    st(r).per_delivery(st(r).server_cpu_s),
                    rd(r).per_delivery(rd(r).server_cpu_s),
                )
            }),
        ),
        (
            "watch_all_rss_per_watcher_vs_psubscribe",
            paired(rounds, |r| {
                ratio(st(r).rss_per_watcher(), rd(r).rss_per_watcher())
            }),
        ),
    ];
    for (name, value) in entries {
        out.insert(name.to_string(), json!(value));
    }
}

/// The table's rows, when the scenario ran (no targets: a reference).
pub fn rows(v: &Value, out: &mut String) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let (st, rd) = ("/watch_all/stigmer", "/watch_all/redis_psubscribe");
    if f(&format!("{st}/p50_us")) <= 0.0 {
        return;
    }
    let rate = f("/watch_all/rate_per_writer");
    let pace = if rate > 0.0 {
        format!("{rate:.0} updates/s each")
    } else {
        "closed loop".to_string()
    };
    let head = format!(
        "watch_all ({EXECUTIONS} executions, {WRITERS} writers at {pace}, {ALL_WATCHERS} all + {SESSIONS} session watchers)"
    );
    let kib = 1024.0;
    let rows = [
        (
            "delivery latency p50 (µs)",
            "p50_us",
            "watch_all_p50_vs_psubscribe",
            1.0,
            0,
        ),
        (
            "delivery latency p99 (µs)",
            "p99_us",
            "watch_all_p99_vs_psubscribe",
            1.0,
            0,
        ),
        (
            "server CPU per delivery (µs)",
            "cpu_us_per_delivery",
            "watch_all_cpu_per_delivery_vs_psubscribe",
            1.0,
            2,
        ),
        (
            "RSS per watcher (KiB)",
            "rss_per_watcher_bytes",
            "watch_all_rss_per_watcher_vs_psubscribe",
            kib,
            1,
        ),
    ];
    for (label, key, q, unit, precision) in rows {
        let (ours, theirs) = (
            f(&format!("{st}/{key}")) / unit,
            f(&format!("{rd}/{key}")) / unit,
        );
        out.push_str(&format!(
            "| {head}: {label} | {ours:.precision$} | PSUBSCRIBE {theirs:.precision$} | {:.2}x ({:.2}x) | reference | |\n",
            f(&format!("/paired_ratios/{q}")),
            ratio(ours, theirs)
        ));
    }
}
