//! `--max-reads`: a burst of clients reading at once costs the daemon no
//! more threads than the bound (each running read holds a blocking-pool
//! thread and an SQLite read connection), and every read is still answered.

mod common;

use common::{new_execution, Daemon, STEP_TIMEOUT};
use stigmer_proto::daemon::{request::Command as Cmd, response, ListExecutionsRequest};

/// The daemon's thread count (`Threads:` in /proc/<pid>/status).
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_lists_runs_at_most_max_reads_at_once() {
    const CLIENTS: usize = 64;
    const MAX_READS: usize = 2;
    let d = Daemon::start(&["--max-reads", &MAX_READS.to_string()]);
    let mut writer = d.connect().await;
    for i in 0..200 {
        writer
            .call(Cmd::Create(new_execution(&format!("agent-{i}"), None)))
            .await;
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut c = d.connect().await;
        c.expect_pong().await;
        clients.push(c);
    }
    // Settled: the workers, the writer thread, the checkpointer and
    // whatever the start-up left in the blocking pool.
    let before = threads(d.pid());
    let pid = d.pid();
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(before));
    let sampling = tokio::spawn({
        let most = most.clone();
        async move {
            loop {
                most.fetch_max(threads(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    });
    // Every client lists at once, three times over (pages of 10: 20 reads
    // each), so reads wait for their turn.
    let lists = clients.into_iter().map(|mut c| {
        tokio::spawn(async move {
            for _ in 0..3 {
                let mut token = String::new();
                loop {
                    let reply = c
                        .call(Cmd::List(ListExecutionsRequest {
                            page_size: 10,
                            page_token: token.clone(),
                            ..Default::default()
                        }))
                        .await;
                    let Some(response::Result::List(page)) = reply.result else {
                        panic!("expected a page, got {reply:?}");
                    };
                    token = page.next_page_token;
                    if token.is_empty() {
                        break;
                    }
                }
            }
        })
    });
    tokio::time::timeout(STEP_TIMEOUT * 3, futures::future::join_all(lists))
        .await
        .expect("every list answered")
        .into_iter()
        .for_each(|r| r.expect("a client task"));
    sampling.abort();
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    // One read thread per turn at most: never one per client.
    assert!(
        most <= before + MAX_READS,
        "{most} threads during the burst, {before} before, --max-reads {MAX_READS}"
    );
}
