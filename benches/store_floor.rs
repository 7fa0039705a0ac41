//! The store's CPU per committed update, beside SQLite's own floor for the
//! same bytes, in one run and with no sockets (docs/PERFORMANCE.md, "The
//! store alone").
//!
//! Why it exists: issue 5's throughput target asks the daemon and its
//! client to commit every update to SQLite at half of Redis's in-memory
//! XADD rate, on two vCPUs. The end-to-end benchmark (`scripts/bench`)
//! cannot tell how much of the daemon's CPU per update committing costs;
//! this can, with far less noise, because only the store runs:
//!
//! - **stigmer store**: the real write path. `store::open`, then the
//!   pipeline's `update_status` jobs (load, merge, encode, the history row
//!   and the `executions` pointer, pruning at `--history-retention`),
//!   `--batch` (14) per transaction, as group commit forms them under the
//!   end-to-end benchmark's 32 writers. CPU of the writer and checkpointer
//!   threads.
//! - **sqlite floor**: the least any durable, bounded history of these
//!   states can cost in SQLite. One `INSERT` of the same encoded state per
//!   update into a plain rowid table, the same pragmas (WAL, synchronous
//!   NORMAL, 16 MiB cache), the same batches, trimmed to the same retention
//!   in the same slices with a range `DELETE`, and a PASSIVE checkpoint as
//!   often as the daemon's checkpointer runs one, on a second connection
//!   and thread.
//!
//! CPU time is each thread's own (`/proc/self/task/*/schedstat`), so a
//! checkpoint's wait for its fsync counts as wall time, not CPU. Every
//! batch is also timed (the store: from its jobs being queued to its last
//! reply; the floor: BEGIN to COMMIT), for the longest and the count over
//! [`SLOW_BATCH`]: the stalls a caller meets (the WAL backstop's
//! checkpoint, pruning).
//!
//!     CARGO_TARGET_DIR=target-bench cargo bench --bench store_floor
//!     ... -- --updates 150000 --batch 14 --rounds 3

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use rusqlite::{params, Connection};
use stigmer::internals::{
    prune_floor, start_writer, Answer, Broker, Durability, Job, JobResult, Outcome, Running, Write,
    Writer, WriterConfig, CHECKPOINT_AFTER_CHANGES, DEFAULT_HISTORY_RETENTION, MAX_BATCH,
    WRITER_AUTOCHECKPOINT_PAGES, WRITER_CACHE_KIB,
};
use stigmer_proto::agentexecution::{
    AgentExecution, AgentExecutionSpec, AgentExecutionUpdateStatusInput,
};

/// Executions updated in turn, like the end-to-end benchmark's 32 writers.
const EXECUTIONS: usize = 32;
/// The daemon's default `--history-retention`, and the floor's trim.
const RETENTION: u64 = DEFAULT_HISTORY_RETENTION;

struct Args {
    updates: u64,
    batch: u64,
    rounds: u64,
}

fn args() -> Args {
    let mut a = Args {
        updates: 150_000,
        batch: 14,
        rounds: 3,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let target = match flag.as_str() {
            "--updates" => &mut a.updates,
            "--batch" => &mut a.batch,
            "--rounds" => &mut a.rounds,
            // `cargo bench` passes --bench; anything else is ignored.
            _ => continue,
        };
        match argv.next().and_then(|v| v.parse().ok()) {
            Some(value) => *target = value,
            None => panic!("{flag} takes a number"),
        }
    }
    // A transaction holds at most MAX_BATCH jobs, and a batch must fit the
    // writer's queue, since it is queued from the writer thread itself.
    a.batch = a.batch.clamp(1, MAX_BATCH as u64);
    a.rounds = a.rounds.max(1);
    a
}

/// One side's cost over a round, per update.
#[derive(Clone, Copy, Default)]
struct Cost {
    writer_us: f64,
    checkpoint_us: f64,
    wall_us: f64,
    mean_batch: f64,
    /// The longest batch, from its jobs being queued to its last reply, in
    /// ms: the stall a caller can meet (a backstop checkpoint, a prune).
    longest_ms: f64,
    /// Batches that took longer than [`SLOW_BATCH`].
    slow: u64,
}

/// A batch this long is counted as a stall: a batch of 14 updates takes
/// ~0.2 ms here.
const SLOW_BATCH: Duration = Duration::from_millis(10);

/// Keeps the longest of the batch times it is given, and counts the slow.
#[derive(Default)]
struct Stalls {
    longest: Duration,
    slow: u64,
}

impl Stalls {
    fn note(&mut self, took: Duration) {
        self.longest = self.longest.max(took);
        self.slow += u64::from(took > SLOW_BATCH);
    }
}

impl Cost {
    fn total(&self) -> f64 {
        self.writer_us + self.checkpoint_us
    }
}

/// CPU nanoseconds of this process's threads whose name starts with
/// `prefix` (thread names are cut to 15 bytes in /proc).
fn thread_cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn per_update(ns: u64, updates: u64) -> f64 {
    ns as f64 / 1e3 / updates.max(1) as f64
}

/// The state both sides store: an execution holding the 1 KiB status.
fn execution(i: usize) -> AgentExecution {
    AgentExecution {
        spec: Some(AgentExecutionSpec {
            agent_id: "bench-agent".into(),
            message: format!("benchmark {i}"),
            ..Default::default()
        }),
        status: Some(common::status()),
        ..Default::default()
    }
}

/// Feeds the writer `batch` jobs at a time, each batch queued from the
/// writer thread itself while it answers the previous one (as 32 waiting
/// writers' next requests queue while it commits), so that it always finds
/// exactly one whole batch queued.
struct Feed {
    writer: Writer,
    handle: tokio::runtime::Handle,
    ids: Vec<String>,
    next: usize,
    left: u64,
    batch: u64,
    finished: mpsc::Sender<Result<(), String>>,
    /// When the batch now being committed was queued.
    queued: Instant,
    stalls: Stalls,
}

fn feed(feed: &Arc<Mutex<Feed>>) {
    let mut f = feed.lock().unwrap_or_else(|p| p.into_inner());
    let took = f.queued.elapsed();
    f.stalls.note(took);
    f.queued = Instant::now();
    if f.left == 0 {
        let _ = f.finished.send(Ok(()));
        return;
    }
    let n = f.batch.min(f.left);
    f.left -= n;
    for i in 0..n {
        let id = f.ids[f.next % EXECUTIONS].clone();
        f.next += 1;
        let write = Write::UpdateStatus(Box::new(AgentExecutionUpdateStatusInput {
            execution_id: id,
            status: Some(common::status()),
        }));
        let (again, finished) = (feed.clone(), f.finished.clone());
        let last = i + 1 == n;
        let answer = Answer::Call(Box::new(move |result: JobResult| match result {
            Ok(_) if last => self::feed(&again),
            Ok(_) => {}
            Err(err) => drop(finished.send(Err(err.to_string()))),
        }));
        // Never waits: the queue (4096) has room for a batch (at most
        // MAX_BATCH). Handle's
        // block_on is allowed here, on the writer thread, outside any runtime.
        f.handle.block_on(f.writer.submit(Job { write, answer }));
    }
}

fn stigmer_store(dir: &Path, args: &Args) -> Cost {
    let config = WriterConfig {
        path: dir.join("stigmer.db"),
        durability: Durability::Normal,
        queue: 4096,
        // No polling: between this benchmark's batches the queue is empty
        // by construction, and a poll would only burn the CPU measured.
        poll: Duration::ZERO,
        history_retention: RETENTION,
        max_execution_bytes: 4 << 20,
        cluster: false,
    };
    // A broker with no subscriber: the broadcast step finds no topic.
    let store = start_writer(config, Arc::new(Broker::new(1))).expect("open the store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (tx, rx) = mpsc::channel();
    runtime.block_on(async {
        for i in 0..EXECUTIONS {
            let tx = tx.clone();
            let answer = Answer::Call(Box::new(move |r: JobResult| drop(tx.send(r))));
            store
                .writer
                .submit(Job {
                    write: Write::Create(Box::new(execution(i))),
                    answer,
                })
                .await;
        }
    });
    let ids: Vec<String> = (0..EXECUTIONS)
        .map(|_| match rx.recv() {
            Ok(Ok(Outcome::Committed(change))) => change.execution_id.to_string(),
            other => panic!("create failed: {other:?}"),
        })
        .collect();

    let (writer0, checkpoint0) = (
        thread_cpu_ns("stigmer-writer"),
        thread_cpu_ns("stigmer-checkp"),
    );
    let batches0 = store.stats.batches.load(Ordering::Relaxed);
    let started = Instant::now();
    let (finished, wait) = mpsc::channel();
    let fed = Arc::new(Mutex::new(Feed {
        writer: store.writer.clone(),
        handle: runtime.handle().clone(),
        ids,
        next: 0,
        left: args.updates,
        batch: args.batch,
        finished,
        queued: Instant::now(),
        stalls: Stalls::default(),
    }));
    feed(&fed);
    match wait.recv_timeout(Duration::from_secs(600)) {
        Ok(Ok(())) => {}
        other => panic!("updates failed: {other:?}"),
    }
    let wall = started.elapsed();
    let done = args.updates;
    let batches = store.stats.batches.load(Ordering::Relaxed) - batches0;
    let stalls = std::mem::take(&mut fed.lock().unwrap_or_else(|p| p.into_inner()).stalls);
    // The feed holds a writer handle: the writer thread stops only once
    // every handle is gone.
    drop(fed);
    let cost = Cost {
        writer_us: per_update(thread_cpu_ns("stigmer-writer") - writer0, done),
        checkpoint_us: per_update(thread_cpu_ns("stigmer-checkp") - checkpoint0, done),
        wall_us: wall.as_secs_f64() * 1e6 / done as f64,
        mean_batch: done as f64 / batches.max(1) as f64,
        longest_ms: stalls.longest.as_secs_f64() * 1e3,
        slow: stalls.slow,
    };
    let Running { writer, thread, .. } = store;
    drop(writer);
    let _ = thread.join();
    cost
}

fn sqlite_floor(dir: &Path, args: &Args) -> Cost {
    let path = dir.join("floor.db");
    let data = execution(0).encode_to_vec();
    let (updates, batch) = (args.updates, args.batch);
    let (ck_tx, ck_rx) = mpsc::channel::<()>();
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch(
        &format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{WRITER_CACHE_KIB};
         PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES};
         CREATE TABLE log (revision INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    ))
    .expect("schema");
    let checkpoint_path = path.clone();
    let checkpointer = std::thread::Builder::new()
        .name("floor-checkpoint".into())
        .spawn(move || {
            let conn = Connection::open(checkpoint_path).expect("open");
            while ck_rx.recv().is_ok() {
                conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                    .expect("checkpoint");
            }
        })
        .expect("thread");
    let writer = std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || {
            let started = Instant::now();
            let (mut revision, mut trimmed, mut since_checkpoint) = (0u64, 0u64, 0u64);
            let mut stalls = Stalls::default();
            while revision < updates {
                let batch_started = Instant::now();
                conn.prepare_cached("BEGIN IMMEDIATE")
                    .and_then(|mut s| s.execute([]))
                    .expect("begin");
                for _ in 0..batch {
                    revision += 1;
                    conn.prepare_cached("INSERT INTO log (revision, data) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![revision as i64, data]))
                        .expect("insert");
                }
                // The daemon's slices (writer::prune).
                if let Some(floor) = prune_floor(revision, trimmed, RETENTION) {
                    trimmed = floor;
                    conn.prepare_cached("DELETE FROM log WHERE revision <= ?1")
                        .and_then(|mut s| s.execute([trimmed as i64]))
                        .expect("trim");
                }
                conn.prepare_cached("COMMIT")
                    .and_then(|mut s| s.execute([]))
                    .expect("commit");
                stalls.note(batch_started.elapsed());
                since_checkpoint += batch;
                if since_checkpoint >= CHECKPOINT_AFTER_CHANGES {
                    since_checkpoint = 0;
                    let _ = ck_tx.send(());
                }
            }
            (started.elapsed(), revision, stalls)
        })
        .expect("thread");
    // Sampled before the threads end: a finished thread leaves /proc.
    let (mut writer_ns, mut checkpoint_ns) = (0, 0);
    while !writer.is_finished() {
        writer_ns = writer_ns.max(thread_cpu_ns("floor-writer"));
        checkpoint_ns = checkpoint_ns.max(thread_cpu_ns("floor-checkpoi"));
        std::thread::sleep(Duration::from_millis(5));
    }
    let (wall, done, stalls) = writer.join().expect("floor writer");
    checkpoint_ns = checkpoint_ns.max(thread_cpu_ns("floor-checkpoi"));
    let _ = checkpointer.join();
    Cost {
        writer_us: per_update(writer_ns, done),
        checkpoint_us: per_update(checkpoint_ns, done),
        wall_us: wall.as_secs_f64() * 1e6 / done as f64,
        mean_batch: batch as f64,
        longest_ms: stalls.longest.as_secs_f64() * 1e3,
        slow: stalls.slow,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = args();
    let mut sides: [(&str, Vec<Cost>); 2] = [("stigmer store", vec![]), ("sqlite floor", vec![])];
    for round in 0..args.rounds {
        // Alternating, each round on fresh files, so both meet the same noise.
        for (i, (name, costs)) in sides.iter_mut().enumerate() {
            let dir = tempfile::tempdir().expect("temp dir");
            let cost = if i == 0 {
                stigmer_store(dir.path(), &args)
            } else {
                sqlite_floor(dir.path(), &args)
            };
            eprintln!(
                "round {round} {name}: {:.2} µs CPU/update (writer {:.2} + checkpoint {:.2}), wall {:.2}, batch {:.1}, longest batch {:.1} ms, {} over {} ms",
                cost.total(),
                cost.writer_us,
                cost.checkpoint_us,
                cost.wall_us,
                cost.mean_batch,
                cost.longest_ms,
                cost.slow,
                SLOW_BATCH.as_millis()
            );
            costs.push(cost);
        }
    }
    println!(
        "\n{} updates of a {}-byte state per round, batches of {}, {} rounds (medians)\n",
        args.updates,
        execution(0).encoded_len(),
        args.batch,
        args.rounds
    );
    println!(
        "| side | CPU µs/update | writer thread | checkpointer | wall µs/update | mean batch | longest batch ms | batches over {} ms |",
        SLOW_BATCH.as_millis()
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, costs) in &sides {
        let m = |f: fn(&Cost) -> f64| median(costs.iter().map(f).collect());
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} |",
            m(Cost::total),
            m(|c| c.writer_us),
            m(|c| c.checkpoint_us),
            m(|c| c.wall_us),
            m(|c| c.mean_batch),
            m(|c| c.longest_ms),
            m(|c| c.slow as f64)
        );
    }
}
