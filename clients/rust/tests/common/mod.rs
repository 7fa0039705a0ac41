//! Runs the real `stigmer` daemon for the client's integration tests.
//!
//! The binary belongs to another package, so `CARGO_BIN_EXE_stigmer` is not
//! set here: it is `$STIGMER_BIN`, else `stigmer` next to the test's own
//! `deps/` directory (build it first: `cargo build -p stigmer`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stigmer_client::proto::daemon::{request, response, PingRequest, Request, Response};
use stigmer_client::proto::Message;

/// A failure guard, not a timing assertion: a healthy start takes far less.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemon binary under test.
pub fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STIGMER_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> -> target/debug/stigmer
    let exe = std::env::current_exe().expect("current_exe");
    let debug_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let bin = debug_dir.join("stigmer");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p stigmer` first or set STIGMER_BIN",
        bin.display()
    );
    bin
}

/// A daemon process on a temporary socket and database; restartable on the
/// same paths. Killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub db: PathBuf,
    starts: u32,
}

impl Daemon {
    /// Starts a daemon and waits until it answers a ping.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let db = dir.path().join("db.sqlite");
        let mut d = Daemon {
            child: None,
            dir,
            socket,
            db,
            starts: 0,
        };
        d.spawn();
        d
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("daemon-{}.log", self.starts))
    }

    /// Starts the process (again) on the same socket and database, and waits
    /// until it answers a ping.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let child = Command::new(daemon_binary())
            .arg("--socket")
            .arg(&self.socket)
            .arg("daemon")
            .arg("--db")
            .arg(&self.db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the stigmer daemon");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls connect + ping (raw, blocking) until the daemon answers; panics
    /// with the daemon's log if it exits or never answers.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if raw_ping(&self.socket).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("daemon exited ({status}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not answer a ping within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The current run's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGTERM, then wait for the process to exit (it drains and ends every
    /// stream with SHUTDOWN first).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = child.wait().expect("wait for the daemon");
        assert!(
            status.success(),
            "daemon exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One ping over a plain blocking socket, independent of the client under
/// test (and usable inside or outside an async runtime).
pub fn raw_ping(socket: &Path) -> std::io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = Request {
        protocol_version: 1,
        id: 1,
        minimal_reply: false,
        command: Some(request::Command::Ping(PingRequest {})),
    }
    .encode_to_vec();
    s.write_all(&(body.len() as u32).to_be_bytes())?;
    s.write_all(&body)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    match Response::decode(&buf[..]) {
        Ok(Response {
            id: 1,
            result: Some(response::Result::Pong(_)),
        }) => Ok(()),
        other => Err(std::io::Error::other(format!("not a pong: {other:?}"))),
    }
}
