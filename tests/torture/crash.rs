//! The killer of the crash runs: SIGKILL of the daemon at random moments
//! under load, a check of the files each crash left, and a restart.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::common;
use crate::torture_support::*;

/// SIGKILLs the daemon `kills` times at random moments under load; after
/// each, checks the files it left (integrity, no revision lost) and
/// restarts it.
pub async fn killer(
    shared: Arc<Shared>,
    mut daemon: common::Daemon,
    db: std::path::PathBuf,
    kills: u64,
    mut rng: Rng,
) -> (common::Daemon, Vec<Violation>) {
    let mut violations = Vec::new();
    let mut acked = shared.acked.subscribe();
    for _ in 0..kills {
        // A random number of acknowledged writes (0: at once after a
        // restart), then sometimes a few more milliseconds, so kills land
        // inside batches, between them, and during start-up catch-ups.
        let target = *acked.borrow() + rng.below(60);
        let _ = acked.wait_for(|n| *n >= target).await;
        if rng.percent(50) {
            tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
        }
        daemon = tokio::task::spawn_blocking(move || {
            daemon.kill();
            daemon
        })
        .await
        .expect("kill");
        shared.crashes_seen.fetch_add(1, Ordering::Relaxed);
        // Everything acknowledged or delivered so far came from the dead
        // daemon and was committed.
        let max_seen = shared.record.lock().expect("record").max_seen;
        let dbc = db.clone();
        let found = tokio::task::spawn_blocking(move || check_files(&dbc, max_seen))
            .await
            .expect("check");
        violations.extend(found);
        daemon = tokio::task::spawn_blocking(move || {
            daemon.restart();
            daemon
        })
        .await
        .expect("restart");
        // Revisions never go back.
        let mut wire = Wire::connect(&daemon.socket).await.expect("connect");
        let pong = wire
            .call(stigmer_proto::daemon::request::Command::Ping(
                stigmer_proto::daemon::PingRequest {},
            ))
            .await
            .expect("ping");
        if let Some(stigmer_proto::daemon::response::Result::Pong(p)) = pong.result {
            if p.revision < max_seen {
                violations.push(Violation {
                    what: format!(
                        "after restart the daemon's revision is {} but {max_seen} was acknowledged or delivered",
                        p.revision
                    ),
                    trace: vec![],
                });
            }
        }
        shared.generation.send_modify(|g| *g += 1);
    }
    (daemon, violations)
}

/// The database a crash left: `PRAGMA integrity_check` is ok and the last
/// revision is at least `max_seen`.
pub fn check_files(db: &std::path::Path, max_seen: u64) -> Vec<Violation> {
    use rusqlite::{Connection, OpenFlags};
    let mut out = Vec::new();
    let conn = match Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(c) => c,
        Err(e) => {
            return vec![Violation {
                what: format!("cannot open the database after the crash: {e}"),
                trace: vec![],
            }]
        }
    };
    let integrity: Result<String, _> = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0));
    match integrity {
        Ok(s) if s == "ok" => {}
        other => out.push(Violation {
            what: format!("integrity_check after the crash: {other:?}"),
            trace: vec![],
        }),
    }
    let last: Result<i64, _> = conn.query_row(
        // As the daemon computes it at start-up (store::writer::load_revisions).
        "SELECT MAX((SELECT value FROM meta WHERE key = 'last_revision'),
                    COALESCE((SELECT MAX(revision) FROM history), 0))",
        [],
        |r| r.get(0),
    );
    match last {
        Ok(last) if last as u64 >= max_seen => {}
        other => out.push(Violation {
            what: format!(
                "after the crash the database's last revision is {other:?}, but {max_seen} was acknowledged or delivered"
            ),
            trace: vec![],
        }),
    }
    out
}
