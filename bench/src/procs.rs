//! The processes under test: starting and stopping daemons, and reading
//! their memory and CPU time from /proc.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::stig;
use crate::wire::SyncConn;

/// How long a daemon gets to start answering, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon this benchmark started; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    /// Its database file (`--db`); the WAL is beside it (`-wal`).
    pub db: PathBuf,
}

impl Daemon {
    /// Starts `bin --socket <dir>/<name>.sock daemon --db <dir>/<name>/stigmer.db`
    /// with the bench's limits, and waits until it answers a ping.
    pub fn start(bin: &Path, dir: &Path, name: &str, durability: &str) -> io::Result<Daemon> {
        Daemon::start_with(bin, dir, name, durability, &[])
    }

    /// `start`, with more daemon flags (before `STIGMER_BENCH_DAEMON_ARGS`).
    pub fn start_with(
        bin: &Path,
        dir: &Path,
        name: &str,
        durability: &str,
        extra: &[String],
    ) -> io::Result<Daemon> {
        let socket = dir.join(format!("{name}.sock"));
        let db = dir.join(name).join("stigmer.db");
        let child = Command::new(bin)
            .arg("--socket")
            .arg(&socket)
            .arg("daemon")
            .arg("--db")
            .arg(&db)
            .args(["--durability", durability])
            // 10,000 idle subscribers, each its own connection.
            .args(["--max-connections", "12000"])
            .args(["--max-connections-per-uid", "12000"])
            .args(["--log-level", "warn"])
            .args(extra)
            // Extra daemon flags for experiments, e.g. "--worker-threads 1".
            .args(
                std::env::var("STIGMER_BENCH_DAEMON_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::null())
            .spawn()?;
        record_pid(dir, &child);
        let mut daemon = Daemon { child, socket, db };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut conn) = SyncConn::connect(&daemon.socket) {
                conn.send(&stig::ping(1))?;
                let body = conn.recv::<stig::Frame>()?;
                stig::ping_revision(&body, 1)?;
                return Ok(daemon);
            }
            if let Some(status) = daemon.child.try_wait()? {
                return Err(io::Error::other(format!("daemon exited: {status}")));
            }
            if Instant::now() > deadline {
                daemon.stop();
                return Err(io::Error::other("daemon did not start in time"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait (bounded), then SIGKILL.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM, wait (bounded), then SIGKILL.
fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A peer server (Redis, nats-server, etcd) started fresh for one
/// measurement and stopped on drop, as each daemon is.
///
/// Why: the idle scenario reads a server's RSS growth while 10,000
/// subscriptions are open. On the long-lived servers `scripts/bench`
/// starts, the earlier scenarios (1,000 fan-out subscribers) and rounds
/// have already grown the heap, which Go's runtime and Redis's allocator
/// keep: later rounds reused it and measured less (JetStream 611.7, 128.4,
/// then 0.0 MiB in three rounds), while every daemon started fresh.
pub struct Server {
    child: Child,
    /// Redis's Unix socket (empty for the TCP servers).
    pub socket: PathBuf,
    /// The loopback address of nats-server and etcd (None for Redis).
    pub addr: Option<std::net::SocketAddr>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis-server` on `<dir>/<name>.sock`, without persistence, as
    /// `scripts/bench` starts its own.
    pub fn redis(dir: &Path, name: &str) -> io::Result<Server> {
        let socket = dir.join(format!("{name}.sock"));
        let data = dir.join(name);
        std::fs::create_dir_all(&data)?;
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--maxclients", "12000", "--dir"])
            .arg(&data)
            .args(["--logfile", "", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        record_pid(dir, &child);
        let deadline = Instant::now() + START_TIMEOUT;
        while crate::scenarios::redis_pid(&socket).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!("redis-server exited: {status}")));
            }
            if Instant::now() > deadline {
                stop_child(&mut child);
                return Err(io::Error::other("redis-server did not start in time"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server {
            child,
            socket,
            addr: None,
        })
    }

    /// `nats-server -js` with its store in `<dir>/<name>`, on a free
    /// loopback port.
    pub fn nats(dir: &Path, name: &str) -> io::Result<Server> {
        let port = free_port()?;
        let log = dir.join(format!("{name}.log"));
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join(name))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()?;
        Server::when_logged(dir, child, &log, "Server is ready", port)
    }

    /// A one-member etcd with its defaults and data in `<dir>/<name>`, on
    /// free loopback ports.
    pub fn etcd(dir: &Path, name: &str) -> io::Result<Server> {
        let (port, peer) = (free_port()?, free_port()?);
        let log = dir.join(format!("{name}.log"));
        let (client_url, peer_url) = (
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{peer}"),
        );
        // etcd 3.4 logs to stderr; one file description shared by both
        // streams, appending.
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new("etcd")
            .args(["--name", name, "--data-dir"])
            .arg(dir.join(name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Server::when_logged(dir, child, &log, "ready to serve client requests", port)
    }

    /// Waits until `log` says `ready` (as `scripts/bench` does).
    fn when_logged(
        dir: &Path,
        mut child: Child,
        log: &Path,
        ready: &str,
        port: u16,
    ) -> io::Result<Server> {
        record_pid(dir, &child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if std::fs::read_to_string(log).is_ok_and(|l| l.contains(ready)) {
                return Ok(Server {
                    child,
                    socket: PathBuf::new(),
                    addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
                });
            }
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!("{log:?}: exited: {status}")));
            }
            if Instant::now() > deadline {
                stop_child(&mut child);
                return Err(io::Error::other(format!("{log:?}: not ready in time")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A 3-member etcd cluster on loopback ports, each member with etcd's
/// defaults and its data in `<dir>/<name>-<i>`; stopped on drop. The
/// cluster mode's scenario (`crate::cluster`).
pub struct EtcdCluster {
    members: Vec<Server>,
}

impl EtcdCluster {
    pub fn start(dir: &Path, name: &str) -> io::Result<EtcdCluster> {
        const MEMBERS: usize = 3;
        let ports: Vec<(u16, u16)> = (0..MEMBERS)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<io::Result<_>>()?;
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("{name}-{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::with_capacity(MEMBERS);
        for (i, (client, peer)) in ports.iter().enumerate() {
            let member = format!("{name}-{i}");
            let log = dir.join(format!("{member}.log"));
            let out = OpenOptions::new().create(true).append(true).open(&log)?;
            let (client_url, peer_url) = (
                format!("http://127.0.0.1:{client}"),
                format!("http://127.0.0.1:{peer}"),
            );
            let child = Command::new("etcd")
                .args(["--name", &member, "--data-dir"])
                .arg(dir.join(&member))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()?;
            record_pid(dir, &child);
            children.push((child, log, *client));
        }
        // Each member logs that it serves once the cluster has a leader.
        let mut members = Vec::with_capacity(MEMBERS);
        for (child, log, client) in children {
            members.push(Server::when_logged(
                dir,
                child,
                &log,
                "ready to serve client requests",
                client,
            )?);
        }
        Ok(EtcdCluster { members })
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter_map(|m| m.addr)
            .map(|a| format!("http://{a}"))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Recorded so that scripts/bench's trap can stop it if we die first.
fn record_pid(dir: &Path, child: &Child) {
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.pids"))
    {
        let _ = writeln!(f, "{}", child.id());
    }
}

/// A loopback port free a moment ago (the kernel's pick for port 0).
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident set size of a process, in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

/// User + system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line (11 and 12 after the name).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    // USER_HZ is 100 on every Linux configuration in use.
    Ok((ticks(11) + ticks(12)) as f64 / 100.0)
}

/// Bytes a process caused to be written to storage (`write_bytes` of
/// /proc/<pid>/io: pages it dirtied in files, all its threads).
pub fn write_bytes(pid: u32) -> io::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no write_bytes in /proc/<pid>/io"))
}

/// The size of a file, 0 when it does not exist (yet).
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The machine's CPU ticks from /proc/stat: (idle + iowait, all), summed
/// over every CPU, for the share of the machine left idle over a window.
pub fn machine_ticks() -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Ok((idle, ticks.iter().sum()))
}

/// Raises this process's soft open-files limit to its hard limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}
