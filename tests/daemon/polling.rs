//! Polling instead of sleeping, only while it pays: the writer thread while
//! updates come close together, a connection worker for a lone peer, on
//! every connection shard; never while idle, nor at 0.

use stigmer_proto::daemon::response;

use crate::common::*;

/// `--writer-poll-us`: while updates come within the cap of each other the
/// writer thread finds them by polling; once they stop it sleeps (the poll
/// counter stands still); at 0 it never polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_polls_only_while_updates_come_close() {
    const HITS: &str = "stigmer_writer_poll_hits_total";
    const POLLED: &str = "stigmer_writer_poll_seconds_total";
    // A cap far above this test's round trip, even on a loaded machine.
    let d = Daemon::start(&["--writer-poll-us", "20000"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("poller").await;
    send_updates(&mut c, &id, 200).await;
    assert!(d.metric(HITS) > 0.0, "no update was found by polling");
    // Idle: after at most one window (20 ms) the thread sleeps.
    assert_eq!(
        polled_while_idle(&d, POLLED).await,
        0.0,
        "the writer kept polling while idle"
    );
    assert_poll_off("--writer-poll-us", HITS, POLLED).await;
}

/// Sends `n` status updates to `id`, one at a time, each acknowledged.
async fn send_updates(c: &mut Raw, id: &str, n: usize) {
    for i in 0..n {
        expect_execution(c.update(id, ai_status(&format!("step {i}"))).await);
    }
}

/// Seconds of polling counted in `polled` over 300 ms of idle time, from
/// 100 ms after the last request.
async fn polled_while_idle(d: &Daemon, polled: &str) -> f64 {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let before = d.metric(polled);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    d.metric(polled) - before
}

/// Requests the connection workers read while polling for them.
const READER_POLL_HITS: &str = "stigmer_reader_poll_hits_total";

/// With `flag` at 0, 50 updates from one peer are never polled for.
async fn assert_poll_off(flag: &str, hits: &str, polled: &str) {
    let d = Daemon::start(&[flag, "0"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("sleeper").await;
    send_updates(&mut c, &id, 50).await;
    assert_eq!(d.metric(hits), 0.0, "{flag} 0 still polled");
    assert_eq!(d.metric(polled), 0.0, "{flag} 0 still polled");
}

/// `--reader-poll-us`: while one connection sends requests within the cap
/// of each other a worker polls for them; while two connections send at
/// once it does not; idle, it sleeps (the poll counter stands still); at 0
/// it never polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_polls_only_for_a_lone_peer() {
    const HITS: &str = READER_POLL_HITS;
    const POLLED: &str = "stigmer_reader_poll_seconds_total";
    // A cap far above this test's round trip, even on a loaded machine.
    let d = Daemon::start(&["--reader-poll-us", "20000"]);
    let mut c = d.connect().await;
    let (id, _) = c.create("lone").await;
    // The start-up probe's connection came within a window of this one:
    // requests count as concurrent for four windows (80 ms) after it.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    send_updates(&mut c, &id, 200).await;
    let lone_hits = d.metric(HITS);
    assert!(lone_hits > 0.0, "no request was read while polling");

    // Two peers taking turns, each well within the cap of the other.
    let mut other = d.connect().await;
    let (other_id, _) = other.create("second").await;
    let before = d.metric(HITS);
    for i in 0..50 {
        expect_execution(c.update(&id, ai_status(&format!("a {i}"))).await);
        expect_execution(other.update(&other_id, ai_status(&format!("b {i}"))).await);
    }
    // The poll already running when the second peer arrived may end with a
    // hit; after that nothing is polled for (a stall of more than four
    // windows on a loaded machine could let one more poll start: a handful,
    // where polling every request would give ~100).
    assert!(
        d.metric(HITS) - before <= 10.0,
        "polled while two peers sent: {} hits",
        d.metric(HITS) - before
    );

    // Idle: after at most one window (20 ms) the poll sleeps. Reading the
    // metric is itself a lone request, which may be polled after for at
    // most one window; polling through the idle time would add ~0.3 s.
    let idle = polled_while_idle(&d, POLLED).await;
    assert!(idle <= 0.05, "kept polling while idle: {idle} s");
    assert_poll_off("--reader-poll-us", HITS, POLLED).await;
}

/// `--worker-threads 3`: connections are spread over three shards (three
/// in a row land on all three), each is served there (a write on each,
/// watched from another), and a lone peer is polled for whichever shard it
/// is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_shard_serves_and_polls() {
    const HITS: &str = READER_POLL_HITS;
    let d = Daemon::start(&["--worker-threads", "3", "--reader-poll-us", "20000"]);
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(d.connect().await);
    }
    let mut watcher = d.connect().await;
    for (n, peer) in peers.iter_mut().enumerate() {
        let (id, _) = peer.create(&format!("shard-{n}")).await;
        let sub = watcher.subscribe(&id, None).await;
        assert_eq!(watcher.recv(sub).await.id, sub, "snapshot");
        // Past the concurrency hold of the connections just made.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let before = d.metric(HITS);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        send_updates(peer, &id, 100).await;
        assert!(
            d.metric(HITS) > before,
            "peer {n} was not polled for on its shard"
        );
        for _ in 0..100 {
            let event = watcher.recv(sub).await;
            assert!(
                matches!(event.result, Some(response::Result::Event(_))),
                "{event:?}"
            );
        }
    }
}
