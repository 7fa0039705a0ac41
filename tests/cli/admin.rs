//! `stigmer admin`: an online backup taken while writers run (and served
//! by a second daemon), and `admin export` as JSON Lines.

use std::process::Command;

use serde_json::Value;

use crate::common;
use crate::support::{create_many, Daemon, BIN};

/// Point 10: an online backup while writers run, usable by a daemon, and
/// `admin export` as JSON Lines.
#[test]
fn admin_backup_while_writers_run_and_export() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let d = Daemon::start();
    let ids = create_many(&d, "a", 20);
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = std::sync::mpsc::channel();
    let writer = {
        let (stop, ids, socket) = (stop.clone(), ids.clone(), d.inner.socket.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = common::Raw::connect(&socket).await;
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let id = &ids[n % ids.len()];
                    common::expect_execution(
                        c.update(id, common::ai_status(&format!("token {n}"))).await,
                    );
                    n += 1;
                    if n == 1 {
                        let _ = started_tx.send(());
                    }
                }
                n
            })
        })
    };
    started
        .recv_timeout(common::STEP_TIMEOUT)
        .expect("the writer runs");
    let copy = d.inner.dir.join("copy.db");
    let copy_str = copy.to_str().expect("utf-8");
    let out = d.ok(&["admin", "backup", copy_str]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let updates = writer.join().expect("writer");
    assert!(updates > 0);
    assert!(out.contains("backed up"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Not replaced without --force.
    assert_eq!(d.run(&["admin", "backup", copy_str]).status.code(), Some(2));
    let db = d.inner.db.to_str().expect("utf-8").to_string();
    d.ok(&["admin", "backup", "--db", &db, "--force", copy_str]);

    // The copy is a whole database: a daemon serves it.
    let socket2 = d.inner.dir.join("copy.sock");
    let (mut child, _log) = common::spawn_daemon(&socket2, &copy, &[]);
    let listed = Command::new(BIN)
        .arg("--socket")
        .arg(&socket2)
        .args(["executions", "list", "-o", "json"])
        .output()
        .expect("list the copy");
    let _ = child.kill();
    let _ = child.wait();
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(ids.len()));

    let export = d.ok(&["admin", "export"]);
    let exported: Vec<String> = export
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            v["metadata"]["id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(exported, ids);
}
