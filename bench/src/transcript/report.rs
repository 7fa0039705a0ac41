//! The transcript scenario's part of `bench-results.json`
//! (`transcript.<side>.<mode>`) and of the table (issue 16's targets, and
//! the JetStream columns of issue 21).

use serde_json::{json, Map, Value};

use super::{Files, Mode, Tokens};
use crate::report::{latency_json, med, paired, ratio, round1};
use crate::{scenarios, Args, Round};

/// The transcript scenario's JSON: `transcript.<side>.<mode>`.
pub(crate) fn transcript_json(args: &Args, rounds: &[Round]) -> Value {
    let t = &args.transcript;
    let message = Tokens::new(t.tokens).total_bytes();
    json!({
        "runners": t.runners,
        "tokens_per_runner": t.tokens,
        "every": t.every,
        "rate_per_runner": t.rate,
        "pacing": if t.exact { "exact" } else { "tick" },
        "message_bytes": message,
        "history_retention": t.revisions().max(scenarios::HISTORY_RETENTION as u64),
        "stigmer": {
            "upstream": mode_json(rounds, |r| &r.tr_upstream, t.runners, true),
            "append": mode_json(rounds, |r| &r.tr_append, t.runners, true),
            "update_1kib": mode_json(rounds, |r| &r.tr_update, t.runners, true),
        },
        "redis": {
            "xadd": mode_json(rounds, |r| &r.tr_xadd, t.runners, false),
            "publish": mode_json(rounds, |r| &r.tr_publish, t.runners, false),
        },
        "nats_jetstream": {
            "whole_status": jetstream_json(rounds, |r| &r.tr_js_status, t.runners),
            "per_token": jetstream_json(rounds, |r| &r.tr_js_token, t.runners),
        },
        // The floor server (`src/bin/stigmer-floor/`) in append mode, when
        // it ran: a reference, no target.
        "sqlite_floor": {
            "append": mode_json(rounds, |r| &r.tr_floor_append, t.runners, true),
        },
    })
}

/// The reference ratios: the floor server's append mode (when it ran),
/// its token latency against PUBLISH's, and the daemon's against its own;
/// and an append's daemon CPU against a 1 KiB update's at the same pace.
pub(crate) fn reference_ratios(rounds: &[Round], out: &mut Map<String, Value>) {
    let cpu = |m: &Mode| m.per_token(m.server_cpu_s * 1e6);
    out.insert(
        "transcript_append_cpu_vs_paced_update".to_string(),
        json!(paired(rounds, |r| ratio(
            cpu(&r.tr_append),
            cpu(&r.tr_update)
        ))),
    );
    if rounds.iter().all(|r| r.tr_floor_append.tokens == 0) {
        return;
    }
    let p50 = |m: &Mode| m.latency.p50_us;
    let entries = [
        (
            "transcript_floor_append_p50_vs_publish",
            paired(rounds, |r| {
                ratio(p50(&r.tr_floor_append), p50(&r.tr_publish))
            }),
        ),
        (
            "transcript_append_p50_vs_floor",
            paired(rounds, |r| {
                ratio(p50(&r.tr_append), p50(&r.tr_floor_append))
            }),
        ),
    ];
    for (name, value) in entries {
        out.insert(name.to_string(), json!(value));
    }
}

/// A JetStream mode: what a Redis mode has, and its store's growth (the
/// `-sd` directory) and the server's `write_bytes`, per execution.
fn jetstream_json(rounds: &[Round], f: impl Fn(&Round) -> &Mode, runners: usize) -> Value {
    let per_exec = |x: u64| x as f64 / runners.max(1) as f64;
    let growth = |a: Files, b: Files| per_exec(b.total().saturating_sub(a.total()));
    let per_quarter_token = |m: &Mode, x: u64| m.per_token(x as f64 * 4.0);
    let mut v = mode_json(rounds, &f, runners, false);
    v["disk"] = json!({
        "store_growth_bytes_per_execution_after_run":
            med(rounds, |r| growth(f(r).disk.before, f(r).disk.after_run)).round(),
        "store_growth_bytes_per_execution_after_wait":
            med(rounds, |r| growth(f(r).disk.before, f(r).disk.after_checkpoint)).round(),
        "write_bytes_per_execution_run": med(rounds, |r| per_exec(f(r).disk.written_run)).round(),
        "write_bytes_per_execution_after_wait":
            med(rounds, |r| per_exec(f(r).disk.written_checkpoint)).round(),
        "write_bytes_per_token_first_quarter":
            round1(med(rounds, |r| per_quarter_token(f(r), f(r).disk.written_first_quarter))),
        "write_bytes_per_token_last_quarter":
            round1(med(rounds, |r| per_quarter_token(f(r), f(r).disk.written_last_quarter))),
        "store_bytes_per_round": rounds.iter().map(|r| {
            let d = f(r).disk;
            json!({
                "before": d.before.db,
                "after_run": d.after_run.db,
                "after_wait": d.after_checkpoint.db,
            })
        }).collect::<Vec<_>>(),
    });
    v
}

/// One mode's figures in a round.
type ModeOf = fn(&Round) -> &Mode;

/// The paired ratios against JetStream: stigmer's upstream mode against
/// the whole status, append mode against a message per token.
pub(crate) fn jetstream_ratios(rounds: &[Round], out: &mut Map<String, Value>) {
    let settled = |m: &Mode| {
        m.disk
            .after_checkpoint
            .total()
            .saturating_sub(m.disk.before.total()) as f64
    };
    let cpu = |m: &Mode| m.per_token(m.server_cpu_s * 1e6);
    let pairs: [(&str, ModeOf, ModeOf); 2] = [
        ("upstream", |r| &r.tr_upstream, |r| &r.tr_js_status),
        ("append", |r| &r.tr_append, |r| &r.tr_js_token),
    ];
    for (name, ours, theirs) in pairs {
        let peer = if name == "append" {
            "jetstream_token"
        } else {
            "jetstream_status"
        };
        let entries = [
            (
                "p50",
                paired(rounds, |r| {
                    ratio(ours(r).latency.p50_us, theirs(r).latency.p50_us)
                }),
            ),
            (
                "p99",
                paired(rounds, |r| {
                    ratio(ours(r).latency.p99_us, theirs(r).latency.p99_us)
                }),
            ),
            (
                "cpu",
                paired(rounds, |r| ratio(cpu(ours(r)), cpu(theirs(r)))),
            ),
            (
                "disk",
                paired(rounds, |r| ratio(settled(ours(r)), settled(theirs(r)))),
            ),
        ];
        for (what, value) in entries {
            out.insert(format!("transcript_{name}_{what}_vs_{peer}"), json!(value));
        }
    }
}

/// One transcript mode: medians over rounds, per execution (subscriber
/// bytes, disk) or per token (CPU, bytes per quarter).
fn mode_json(rounds: &[Round], f: impl Fn(&Round) -> &Mode, runners: usize, disk: bool) -> Value {
    let per_exec = |x: u64| x as f64 / runners.max(1) as f64;
    // Bytes per token over a quarter of the tokens.
    let per_quarter_token = |m: &Mode, x: u64| m.per_token(x as f64 * 4.0);
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
        let growth = |a: Files, b: Files| per_exec(b.total().saturating_sub(a.total()));
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
pub(crate) fn transcript_rows(v: &Value, out: &mut String) {
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
    let exact = v.pointer("/transcript/pacing").and_then(Value::as_str) == Some("exact");
    let pace = if rate > 0.0 && exact {
        format!("{rate:.0} tokens/s each, paced exactly")
    } else if rate > 0.0 {
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
    let paced = f("/transcript/stigmer/update_1kib/server_cpu_us_per_token");
    if paced > 0.0 {
        out.push_str(&format!(
            "| {head}, append mode: daemon CPU per token beside a 1 KiB update per token at the same pace, with the same subscribers (µs) | {cpu:.1} | 1 KiB update {paced:.1} | {:.2}x ({:.2}x) | ≤ 1x a 1 KiB update | {} |\n",
            f("/paired_ratios/transcript_append_cpu_vs_paced_update"),
            cpu / paced,
            check(f("/paired_ratios/transcript_append_cpu_vs_paced_update") <= 1.0)
        ));
    }
    floor_rows(v, &head, out);
    jetstream_rows(v, &head, out);
}

/// Append mode on the floor server (when it ran): the least a server that
/// commits each append before publishing it costs here, beside PUBLISH.
fn floor_rows(v: &Value, head: &str, out: &mut String) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let (fl, pu) = (
        "/transcript/sqlite_floor/append",
        "/transcript/redis/publish",
    );
    if f(&format!("{fl}/tokens_per_s")) <= 0.0 {
        return;
    }
    out.push_str(&format!(
        "| {head}, append mode on the SQLite floor server (reference, not stigmer): token latency p50 / p99 (µs), server CPU per token (µs) | {:.0} / {:.0}, {:.1} | PUBLISH {:.0} / {:.0}, {:.1} | p50 {:.2}x PUBLISH; stigmer's p50 {:.2}x the floor's | | |\n",
        f(&format!("{fl}/latency/p50_us")),
        f(&format!("{fl}/latency/p99_us")),
        f(&format!("{fl}/server_cpu_us_per_token")),
        f(&format!("{pu}/latency/p50_us")),
        f(&format!("{pu}/latency/p99_us")),
        f(&format!("{pu}/server_cpu_us_per_token")),
        f("/paired_ratios/transcript_floor_append_p50_vs_publish"),
        f("/paired_ratios/transcript_append_p50_vs_floor"),
    ));
}

/// stigmer's two modes against JetStream's (issue 21), when it ran: no
/// targets, a reference.
fn jetstream_rows(v: &Value, head: &str, out: &mut String) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let (up, ap) = ("/transcript/stigmer/upstream", "/transcript/stigmer/append");
    let (js, jt) = (
        "/transcript/nats_jetstream/whole_status",
        "/transcript/nats_jetstream/per_token",
    );
    if f(&format!("{js}/tokens_per_s")) <= 0.0 && f(&format!("{jt}/tokens_per_s")) <= 0.0 {
        return;
    }
    let every = f("/transcript/every");
    let (mb, kb) = (1e6, 1e3);
    let modes = [
        (
            "upstream's mode",
            up,
            js,
            format!("whole status every {every:.0}"),
            "upstream",
            "jetstream_status",
        ),
        (
            "append mode",
            ap,
            jt,
            "a message per token".to_string(),
            "append",
            "jetstream_token",
        ),
    ];
    for (mode, ours, theirs, shape, key, peer) in modes {
        let g = |p: &str, k: &str| f(&format!("{p}/{k}"));
        let q = |what: &str| f(&format!("/paired_ratios/transcript_{key}_{what}_vs_{peer}"));
        let label = format!("{head}, {mode} vs JetStream (file; fsync every 2 min), {shape}");
        let (d, jd) = (
            g(ours, "disk/growth_bytes_per_execution_after_checkpoint"),
            g(theirs, "disk/store_growth_bytes_per_execution_after_wait"),
        );
        out.push_str(&format!(
            "| {label}: disk growth per execution, settled (MB; write_bytes) | {:.3} ({:.3}) | {:.3} ({:.3}) | {:.2}x ({:.2}x) | reference | |\n",
            d / mb,
            g(ours, "disk/write_bytes_per_execution_after_checkpoint") / mb,
            jd / mb,
            g(theirs, "disk/write_bytes_per_execution_after_wait") / mb,
            q("disk"),
            ratio(d, jd)
        ));
        let (b, jb) = (
            g(ours, "subscriber_bytes_per_execution"),
            g(theirs, "subscriber_bytes_per_execution"),
        );
        out.push_str(&format!(
            "| {label}: bytes per subscriber (KB) | {:.1} | {:.1} | ({:.2}x) | reference | |\n",
            b / kb,
            jb / kb,
            ratio(b, jb)
        ));
        out.push_str(&format!(
            "| {label}: token latency p50 / p99 (µs) | {:.0} / {:.0} | {:.0} / {:.0} | p50 {:.2}x, p99 {:.2}x | reference | |\n",
            g(ours, "latency/p50_us"),
            g(ours, "latency/p99_us"),
            g(theirs, "latency/p50_us"),
            g(theirs, "latency/p99_us"),
            q("p50"),
            q("p99")
        ));
        out.push_str(&format!(
            "| {label}: server CPU per token (µs) | {:.1} | {:.1} | {:.2}x | reference | |\n",
            g(ours, "server_cpu_us_per_token"),
            g(theirs, "server_cpu_us_per_token"),
            q("cpu")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::table;

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
}
