//! `stigmer-floor`: the least a server can do for the throughput scenario,
//! and for the transcript scenario's append mode, while still committing
//! every write to SQLite before acknowledging or publishing it. The
//! benchmark runs it beside the daemon and Redis (`--floor`), so that the
//! gap between the daemon and Redis (XADD; PUBLISH for a token) splits into
//! what SQLite costs on this machine and what the daemon's own design
//! costs.
//!
//! It is Redis's design with SQLite added: one thread, a `poll` over every
//! connection, run to completion. Each turn of the loop reads what every
//! ready connection sent, appends each update's bytes as one row in one
//! transaction (group commit), commits, then writes each reply. It does
//! nothing the daemon's contract needs beyond that and a bounded disk: no
//! merge (the row is the request as received), no latest-state table, no
//! broadcast, no limits; it prunes rows older than the daemon's default
//! retention, in the daemon's slices, since any server must bound its disk.
//! So its rate bounds from above what a server that commits every update to
//! SQLite can reach here with the same client.
//!
//! For the transcript's append mode it also keeps each execution's text,
//! phase, revision and delta subscribers in memory (`executions.rs`): each
//! turn's appends commit as one transaction, and only then does each
//! subscriber get the append's DELTA, in the same turn as the replies, with
//! no thread between the socket, SQLite and the subscriber. So its token
//! latency bounds from below what a server that commits each append before
//! publishing it can do here.
//!
//! It answers only what those scenarios send (`ping`, `create`,
//! `update_status`, `append`, a one-execution `subscribe` with deltas,
//! `get`; anything else gets UNIMPLEMENTED), and takes the
//! daemon's command line (`--socket PATH daemon --db PATH`, other flags are
//! ignored) so that the benchmark starts it like the daemon. The
//! checkpointing is the daemon's: a PASSIVE checkpoint on its own thread
//! every `CHECKPOINT_AFTER_CHANGES` rows, and the serving thread's own
//! automatic checkpoint as the backstop, at the daemon's values.
//!
//! Not a product: nothing here is meant to be used but by the benchmark.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use prost::Message;
use rusqlite::{params, Connection};
use stigmer_proto::agentexecution::AgentExecutionStatus;
use stigmer_proto::daemon::{
    request, response, Code, Error, ExecutionReply, Op, PingResponse, Request, Response,
};

mod executions;
use executions::{Executions, Outgoing};

// The daemon's own values, so that the floor's checkpoints, page cache
// and pruning cost what the daemon's do: the checkpointer's interval and
// poll, the writer's backstop and page cache, the default retention.
use stigmer::internals::{
    prune_floor, CHECKPOINT_AFTER_CHANGES, CHECKPOINT_POLL, DEFAULT_HISTORY_RETENTION,
    WRITER_AUTOCHECKPOINT_PAGES, WRITER_CACHE_KIB,
};

/// Bytes read from a connection per `read`: many frames at once.
const READ_CHUNK: usize = 64 * 1024;
/// The largest frame accepted, as the daemon's default.
const MAX_FRAME: usize = stigmer_proto::frame::DEFAULT_MAX_FRAME_LENGTH;

fn main() {
    if let Err(err) = run() {
        eprintln!("stigmer-floor: {err}");
        std::process::exit(1);
    }
}

/// `--socket PATH` and `--db PATH` from the daemon's command line.
fn paths() -> io::Result<(PathBuf, PathBuf)> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other(format!("{flag} PATH is required")))
    };
    Ok((value("--socket")?, value("--db")?))
}

fn sql(err: rusqlite::Error) -> io::Error {
    io::Error::other(err.to_string())
}

fn run() -> io::Result<()> {
    let (socket, db) = paths()?;
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open(&db).map_err(sql)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -{WRITER_CACHE_KIB};
         PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES};
         CREATE TABLE IF NOT EXISTS updates (
            revision     INTEGER PRIMARY KEY,
            execution_id TEXT NOT NULL,
            data         BLOB NOT NULL
         );"
    ))
    .map_err(sql)?;
    let last: i64 = conn
        .query_row("SELECT COALESCE(MAX(revision), 0) FROM updates", [], |r| {
            r.get(0)
        })
        .map_err(sql)?;
    let first: i64 = conn
        .query_row("SELECT COALESCE(MIN(revision), 1) FROM updates", [], |r| {
            r.get(0)
        })
        .map_err(sql)?;
    let committed = Arc::new(AtomicU64::new(last as u64));
    spawn_checkpointer(db.clone(), committed.clone())?;

    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    listener.set_nonblocking(true)?;
    Server {
        conn,
        listener,
        peers: Vec::new(),
        committed,
        pruned: (first as u64).saturating_sub(1),
        next_execution: 1,
        executions: Executions::default(),
        spin: std::env::var_os("STIGMER_FLOOR_SPIN").is_some_and(|v| v == "1"),
    }
    .serve()
}

/// PASSIVE checkpoints on their own connection and thread, as the daemon's
/// checkpointer does.
fn spawn_checkpointer(db: PathBuf, committed: Arc<AtomicU64>) -> io::Result<()> {
    let conn = Connection::open(&db).map_err(sql)?;
    std::thread::Builder::new()
        .name("floor-checkpoint".into())
        .spawn(move || {
            let mut done = committed.load(Ordering::Relaxed);
            loop {
                std::thread::sleep(CHECKPOINT_POLL);
                let now = committed.load(Ordering::Relaxed);
                if now - done >= CHECKPOINT_AFTER_CHANGES {
                    // A failed checkpoint is retried next time; the serving
                    // thread's own automatic checkpoint is the backstop.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    done = now;
                }
            }
        })?;
    Ok(())
}

/// One client connection: bytes read and not yet parsed, replies not yet
/// written.
struct Peer {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// A write waiting for this turn's commit.
struct Pending {
    peer: usize,
    id: u64,
    execution_id: String,
    data: Vec<u8>,
    kind: Kind,
}

/// What a pending write does once committed, beside its reply.
enum Kind {
    Create,
    /// Its status goes to the execution's whole-state subscribers.
    Update(Option<Box<AgentExecutionStatus>>),
    /// An append, already applied in memory: its operations go to the
    /// execution's subscribers.
    Append(Vec<Op>),
}

struct Server {
    conn: Connection,
    listener: UnixListener,
    peers: Vec<Option<Peer>>,
    committed: Arc<AtomicU64>,
    /// Rows at or below this revision are gone.
    pruned: u64,
    next_execution: u64,
    executions: Executions,
    /// `STIGMER_FLOOR_SPIN=1`: `poll` without blocking, again and again, so
    /// that the thread never sleeps and no request waits for a wake-up (the
    /// best case for latency, at the cost of a whole CPU).
    spin: bool,
}

impl Server {
    fn serve(mut self) -> io::Result<()> {
        let mut pending = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let (accept, ready) = self.wait()?;
            if accept {
                self.accept()?;
            }
            for index in ready {
                self.read(index, &mut buf, &mut pending);
            }
            if !pending.is_empty() {
                self.commit(&mut pending)?;
            }
            self.flush();
        }
    }

    /// Blocks in `poll` (or spins on it, see `spin`) until the listener or a
    /// connection is ready; returns whether to accept, and the connections
    /// to read.
    fn wait(&self) -> io::Result<(bool, Vec<usize>)> {
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let mut index = Vec::new();
        for (i, peer) in self.peers.iter().enumerate() {
            if let Some(peer) = peer {
                let mut flags = PollFlags::POLLIN;
                if !peer.output.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(peer.stream.as_fd(), flags));
                index.push(i);
            }
        }
        let timeout = if self.spin {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        while poll(&mut fds, timeout)? == 0 {}
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let accept = ready(&fds[0]);
        let peers = fds[1..]
            .iter()
            .zip(index)
            .filter(|(fd, _)| ready(fd))
            .map(|(_, i)| i)
            .collect();
        Ok((accept, peers))
    }

    fn accept(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true)?;
                    let peer = Some(Peer {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                    });
                    match self.peers.iter().position(Option::is_none) {
                        Some(free) => self.peers[free] = peer,
                        None => self.peers.push(peer),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what the peer sent and handles each whole frame: pings at once,
    /// writes into `pending`. A peer that closed or sent garbage is dropped.
    fn read(&mut self, index: usize, buf: &mut [u8], pending: &mut Vec<Pending>) {
        let Some(peer) = self.peers[index].as_mut() else {
            return;
        };
        // One `read` per readiness, as Redis does: `poll` is level
        // triggered, so what a full buffer left behind is read next turn,
        // and no second call just to learn that the socket is empty.
        let alive = loop {
            match peer.stream.read(buf) {
                Ok(0) => break false,
                Ok(n) => {
                    peer.input.extend_from_slice(&buf[..n]);
                    break true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break false,
            }
        };
        let mut used = 0;
        let mut ok = alive;
        while peer.input.len() - used >= 4 {
            let head = &peer.input[used..used + 4];
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > MAX_FRAME {
                ok = false;
                break;
            }
            if peer.input.len() - used - 4 < len {
                break;
            }
            let body = &peer.input[used + 4..used + 4 + len];
            used += 4 + len;
            let Ok(req) = Request::decode(body) else {
                ok = false;
                break;
            };
            match req.command {
                Some(request::Command::Ping(_)) => {
                    let pong = PingResponse {
                        protocol_version: stigmer_proto::frame::PROTOCOL_VERSION,
                        daemon_version: "floor".into(),
                        revision: self.committed.load(Ordering::Relaxed),
                        max_frame_length: MAX_FRAME as u32,
                    };
                    reply(&mut peer.output, req.id, response::Result::Pong(pong));
                }
                Some(request::Command::Create(_)) => {
                    let execution_id = format!("aex-floor-{}", self.next_execution);
                    self.next_execution += 1;
                    pending.push(Pending {
                        peer: index,
                        id: req.id,
                        execution_id,
                        data: body.to_vec(),
                        kind: Kind::Create,
                    });
                }
                Some(request::Command::UpdateStatus(input)) => pending.push(Pending {
                    peer: index,
                    id: req.id,
                    execution_id: input.execution_id,
                    data: body.to_vec(),
                    kind: Kind::Update(input.status.map(Box::new)),
                }),
                Some(request::Command::Append(append)) => match self.executions.append(&append) {
                    Ok(()) => pending.push(Pending {
                        peer: index,
                        id: req.id,
                        execution_id: append.execution_id,
                        data: body.to_vec(),
                        kind: Kind::Append(append.ops),
                    }),
                    Err(error) => reply(&mut peer.output, req.id, response::Result::Error(error)),
                },
                // Reads answer what is committed: the state in memory is
                // ahead only by this turn's appends, and no get or
                // subscribe of an execution with one in flight comes from
                // the scenario's clients (a runner waits for each reply).
                Some(request::Command::Subscribe(sub))
                    if !sub.execution_id.is_empty() && sub.from_revision.is_none() =>
                {
                    let subscribed =
                        self.executions
                            .subscribe(index, req.id, &sub.execution_id, sub.deltas);
                    let result = match subscribed {
                        Ok(event) => response::Result::Event(event),
                        Err(error) => response::Result::Error(error),
                    };
                    reply(&mut peer.output, req.id, result);
                }
                Some(request::Command::Get(id)) => {
                    let result = match self.executions.get(&id.value) {
                        Some((execution, revision)) => {
                            response::Result::Execution(ExecutionReply {
                                execution: Some(execution),
                                revision,
                                execution_id: id.value,
                            })
                        }
                        None => response::Result::Error(Error {
                            code: Code::NotFound as i32,
                            message: format!("no execution {}", id.value),
                        }),
                    };
                    reply(&mut peer.output, req.id, result);
                }
                _ => {
                    let error = Error {
                        code: Code::Unimplemented as i32,
                        message: "the floor server answers ping, create, update_status, append, \
                                  get and a one-execution subscribe"
                            .into(),
                    };
                    reply(&mut peer.output, req.id, response::Result::Error(error));
                }
            }
        }
        peer.input.drain(..used);
        if !ok {
            self.peers[index] = None;
            self.executions.forget_peer(index);
        }
    }

    /// Commits this turn's writes in one transaction, then queues each
    /// reply with the revision it committed. Nothing is acknowledged
    /// before the COMMIT returned.
    fn commit(&mut self, pending: &mut Vec<Pending>) -> io::Result<()> {
        let first = self.committed.load(Ordering::Relaxed) + 1;
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO updates(revision, execution_id, data) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql)?;
            for (offset, write) in pending.iter().enumerate() {
                insert
                    .execute(params![
                        (first + offset as u64) as i64,
                        write.execution_id,
                        write.data
                    ])
                    .map_err(sql)?;
            }
        }
        // The daemon's pruning rule (`store::prune::prune_floor`), in the same
        // transaction: once the history is a slice past the retention, one
        // bounded range DELETE.
        let last = first - 1 + pending.len() as u64;
        let mut pruned = self.pruned;
        if let Some(floor) = prune_floor(last, pruned, DEFAULT_HISTORY_RETENTION) {
            pruned = floor;
            tx.prepare_cached("DELETE FROM updates WHERE revision <= ?1")
                .map_err(sql)?
                .execute([pruned as i64])
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.pruned = pruned;
        self.committed.store(last, Ordering::Relaxed);
        // Publish first, then acknowledge, as the daemon does: both only
        // after the COMMIT.
        let mut events = Vec::new();
        for (offset, write) in pending.iter_mut().enumerate() {
            let revision = first + offset as u64;
            match &mut write.kind {
                Kind::Create => self.executions.created(&write.execution_id, revision),
                Kind::Update(status) => self.executions.updated(
                    &write.execution_id,
                    revision,
                    status.take().map(|s| *s),
                    &mut events,
                ),
                Kind::Append(ops) => self.executions.committed(
                    &write.execution_id,
                    revision,
                    std::mem::take(ops),
                    &mut events,
                ),
            }
        }
        for Outgoing { peer, id, event } in events {
            if let Some(peer) = self.peers[peer].as_mut() {
                reply(&mut peer.output, id, response::Result::Event(event));
            }
        }
        for (offset, write) in pending.drain(..).enumerate() {
            if let Some(peer) = self.peers[write.peer].as_mut() {
                // Always a minimal reply (revision and id): the benchmark's
                // updates ask for one, and its creates read only the id.
                let result = ExecutionReply {
                    execution: None,
                    revision: first + offset as u64,
                    execution_id: write.execution_id,
                };
                reply(
                    &mut peer.output,
                    write.id,
                    response::Result::Execution(result),
                );
            }
        }
        Ok(())
    }

    /// Writes what each connection has queued, as far as its socket takes.
    fn flush(&mut self) {
        let mut gone = Vec::new();
        for (index, slot) in self.peers.iter_mut().enumerate() {
            let Some(peer) = slot.as_mut() else {
                continue;
            };
            while !peer.output.is_empty() {
                match peer.stream.write(&peer.output) {
                    Ok(n) => {
                        peer.output.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        *slot = None;
                        gone.push(index);
                        break;
                    }
                }
            }
        }
        for index in gone {
            self.executions.forget_peer(index);
        }
    }
}

/// Appends one framed response.
fn reply(out: &mut Vec<u8>, id: u64, result: response::Result) {
    let response = Response {
        id,
        result: Some(result),
    };
    let len = response.encoded_len();
    out.extend_from_slice(&(len as u32).to_be_bytes());
    response.encode(out).expect("a Vec grows as needed");
}
