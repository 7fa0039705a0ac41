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
        // Recorded so that scripts/bench's trap can stop it if we die first.
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.pids"))
        {
            let _ = writeln!(f, "{}", child.id());
        }
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
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
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
