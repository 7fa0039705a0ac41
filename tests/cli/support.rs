//! What every `stigmer` command-line test needs, in one place: the daemon
//! under test with helpers to run the CLI against it (`Daemon`), a running
//! `subscribe -o json` read line by line (`Watcher`), a running command
//! whose lines arrive on channels (`Lines`), and many executions created
//! fast over the raw protocol (`create_many`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::common;

pub const BIN: &str = env!("CARGO_BIN_EXE_stigmer");

/// The daemon under test (the shared harness: temporary socket and
/// database, ready once it logs "listening"), with CLI helpers.
pub struct Daemon {
    pub inner: common::Daemon,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon {
            inner: common::Daemon::start(&[]),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--socket").arg(&self.inner.socket);
        c
    }

    /// Runs `stigmer --socket S <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run stigmer")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "stigmer {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    pub fn create(&self, agent: &str) -> String {
        self.ok(&[
            "executions",
            "create",
            "--agent",
            agent,
            "--message",
            "hello",
        ])
        .trim()
        .to_string()
    }
}

/// A running `subscribe -o json`, read line by line.
pub struct Watcher {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Watcher {
    pub fn start(d: &Daemon, id: &str, extra: &[&str]) -> Watcher {
        let mut child = d
            .cmd()
            .args(["executions", "subscribe", id, "-o", "json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn subscribe");
        let stdout = child.stdout.take().expect("stdout");
        Watcher {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next event line (blocks until the CLI prints it).
    pub fn next(&mut self) -> Value {
        let line = self
            .lines
            .next()
            .expect("subscribe ended early")
            .expect("read line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Reads the remaining lines and the exit status.
    pub fn finish(mut self) -> (Vec<Value>, Option<i32>, String) {
        let rest: Vec<Value> = self
            .lines
            .by_ref()
            .map(|l| serde_json::from_str(&l.expect("line")).expect("json line"))
            .collect();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = self.child.wait().expect("wait subscribe");
        (rest, status.code(), stderr)
    }
}

/// A running command whose stdout and stderr lines arrive on channels, so a
/// test waits for a line (an event), never for the clock.
pub struct Lines {
    child: Child,
    out: std::sync::mpsc::Receiver<String>,
    err: std::sync::mpsc::Receiver<String>,
    seen_out: Vec<String>,
    seen_err: Vec<String>,
}

impl Lines {
    pub fn spawn(mut cmd: Command) -> Lines {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let forward = |r: Box<dyn Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = forward(Box::new(child.stdout.take().expect("stdout")));
        let err = forward(Box::new(child.stderr.take().expect("stderr")));
        Lines {
            child,
            out,
            err,
            seen_out: Vec::new(),
            seen_err: Vec::new(),
        }
    }

    fn wait(
        rx: &std::sync::mpsc::Receiver<String>,
        seen: &mut Vec<String>,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        loop {
            match rx.recv_timeout(common::STEP_TIMEOUT) {
                Ok(line) => {
                    seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no {what} line ({e}); saw {seen:?}"),
            }
        }
    }

    pub fn wait_out(&mut self, pred: impl Fn(&str) -> bool) -> String {
        Self::wait(&self.out, &mut self.seen_out, "stdout", pred)
    }

    pub fn wait_err(&mut self, pred: impl Fn(&str) -> bool) -> String {
        Self::wait(&self.err, &mut self.seen_err, "stderr", pred)
    }

    /// Waits for the exit; returns the status and every line of both.
    pub fn finish(mut self) -> (Option<i32>, Vec<String>, Vec<String>) {
        let status = self.child.wait().expect("wait");
        self.seen_out.extend(self.out.iter());
        self.seen_err.extend(self.err.iter());
        (status.code(), self.seen_out, self.seen_err)
    }
}

/// Creates `n` executions of `agent` over the raw protocol (fast); returns
/// their ids in creation order.
pub fn create_many(d: &Daemon, agent: &str, n: usize) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = d.inner.connect().await;
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(c.create(agent).await.0);
        }
        ids
    })
}
