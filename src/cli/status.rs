//! `stigmer status`: what the daemon is and how it is doing, as text for
//! people, canonical JSON for programs, or the Prometheus exposition.

use std::io::Write;
use std::process::ExitCode;

use stigmer_client::proto::daemon::DaemonStatus;

use super::executions::connect;
use super::{CliError, Ctx, Output};

/// Runs `stigmer status` (`--prometheus` with `-o` is refused by clap as a
/// usage error: the exposition has one format).
pub(super) async fn run(ctx: Ctx, prometheus: bool, output: Output) -> Result<ExitCode, CliError> {
    show(&ctx, prometheus, output).await?;
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, prometheus: bool, output: Output) -> Result<(), CliError> {
    let client = connect(ctx).await?;
    // Waits for the daemon's status reply.
    let status = client.status(prometheus).await?;
    let mut out = std::io::stdout().lock();
    if prometheus {
        out.write_all(status.prometheus.as_bytes())?;
        return Ok(());
    }
    match output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&status)?;
            writeln!(out, "{text}")?;
        }
        Output::Text => out.write_all(text(&status).as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

/// The human-readable form.
fn text(s: &DaemonStatus) -> String {
    let mut t = String::new();
    let mut line = |k: &str, v: String| t.push_str(&format!("{k:<26} {v}\n"));
    line(
        "version",
        format!("{} (protocol {})", s.daemon_version, s.protocol_version),
    );
    line("uptime", format!("{:.0} s", s.uptime_seconds));
    line("socket", s.socket.clone());
    line(
        "database",
        format!("{} (durability {})", s.database, s.durability),
    );
    line("revision", s.revision.to_string());
    if s.backend == "etcd" {
        line(
            "backend",
            format!(
                "etcd: replica at revision {} of {} heard of (lag {})",
                s.replica_applied_revision,
                s.etcd_revision,
                s.etcd_revision.saturating_sub(s.replica_applied_revision)
            ),
        );
    }
    line("connections", s.connections.to_string());
    line("subscriptions", s.subscriptions.to_string());
    line(
        "  of which watches",
        format!(
            "{} of a session, {} of every execution",
            s.session_watches, s.all_watches
        ),
    );
    line(
        "committed",
        format!(
            "{} changes in {} transactions",
            s.committed_changes, s.commit_batches
        ),
    );
    line(
        "commit latency",
        format!(
            "p50 {:.0} µs, p99 {:.0} µs",
            s.commit_latency_p50_us, s.commit_latency_p99_us
        ),
    );
    line(
        "broadcast latency",
        format!(
            "p50 {:.0} µs, p99 {:.0} µs",
            s.broadcast_latency_p50_us, s.broadcast_latency_p99_us
        ),
    );
    line("subscriber overflows", s.subscriber_overflows.to_string());
    line("resyncs", s.resyncs.to_string());
    line(
        "slow-consumer disconnects",
        s.slow_consumer_disconnects.to_string(),
    );
    line("refused writes", s.refused_writes.to_string());
    let rejected: Vec<String> = s
        .rejected_connections
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    line("rejected connections", rejected.join(", "));
    if !s.subscriptions_by_execution.is_empty() {
        t.push_str("subscriptions by execution:\n");
        for (id, n) in &s.subscriptions_by_execution {
            t.push_str(&format!("  {id}  {n}\n"));
        }
    }
    if !s.watches_by_session.is_empty() {
        t.push_str("watches by session:\n");
        let mut sessions: Vec<_> = s.watches_by_session.iter().collect();
        sessions.sort();
        for (id, n) in sessions {
            t.push_str(&format!("  {id}  {n}\n"));
        }
    }
    t
}
