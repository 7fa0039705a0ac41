//! A real etcd cluster for the tests: three `etcd` processes on free
//! loopback ports, data in a temporary directory, which a test can `kill -9`
//! (any member, or whichever leads) and restart. Everything is killed when
//! the `Cluster` is dropped. Without an `etcd` binary the tests skip.

#![allow(dead_code)] // each test file uses part of it

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use stigmer_etcd::{Client, Options};

/// Members per cluster: the smallest that survives losing one (the leader).
pub const MEMBERS: usize = 3;

/// etcd's defaults (100 ms heartbeat, 1 s election timeout): a leader's
/// death is noticed within a second, and shorter timeouts gave spurious
/// elections on a 2-CPU machine running several clusters at once.
const HEARTBEAT_MS: u32 = 100;
const ELECTION_MS: u32 = 1000;

/// How often etcd sends progress notifications to a quiet watch that asked
/// for them (10 min by default): short, so the test of it is.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// How long a cluster may take to elect a leader and serve, at start or
/// after a restart. Typically 1-2 s.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// Clusters running at once across the tests of one binary: each is three
/// processes writing a WAL with fsync, and the test machine may have two
/// CPUs. The rest wait for a slot.
const CLUSTERS_AT_ONCE: usize = 2;

static SLOTS: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

/// One of [`CLUSTERS_AT_ONCE`] places, released on drop.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= CLUSTERS_AT_ONCE {
            used = SLOT_FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        SLOT_FREED.notify_one();
    }
}

struct Member {
    name: String,
    client_url: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    members: Vec<Member>,
    binary: PathBuf,
    // Dropped after the members (fields drop in order): processes first,
    // then their data, then the slot.
    dir: tempfile::TempDir,
    _slot: Slot,
}

/// The `etcd` binary: `$STIGMER_ETCD` or `etcd` on the PATH.
fn etcd_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STIGMER_ETCD") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// Free loopback ports, held open together so they are distinct, then
/// released for etcd to bind (a race with other programs that `start`
/// survives by trying again).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

impl Cluster {
    /// A healthy three-member cluster, or `None` (after printing why the
    /// test skips) when etcd is not installed.
    pub async fn start() -> Option<Cluster> {
        let Some(binary) = etcd_binary() else {
            eprintln!("skipped: etcd not installed (apt-get install etcd-server)");
            return None;
        };
        let slot = tokio::task::spawn_blocking(Slot::take)
            .await
            .expect("wait for a cluster slot");
        let mut cluster = Cluster {
            members: Vec::new(),
            binary,
            dir: tempfile::Builder::new()
                .prefix("stigmer-etcd-test-")
                .tempdir()
                .expect("temporary directory"),
            _slot: slot,
        };
        for attempt in 1..=3 {
            cluster.launch_fresh(attempt);
            if cluster.wait_healthy_quietly(HEALTHY_WITHIN).await {
                return Some(cluster);
            }
            eprintln!("etcd cluster attempt {attempt} did not become healthy; retrying");
            cluster.kill_all();
            cluster.dump_logs();
        }
        panic!("no healthy etcd cluster after 3 attempts (logs above)");
    }

    fn launch_fresh(&mut self, attempt: usize) {
        let ports = free_ports(2 * MEMBERS);
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster = (0..MEMBERS)
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "stigmer-test-{}-{}",
            std::process::id(),
            self.dir.path().display()
        );
        self.members = (0..MEMBERS)
            .map(|i| {
                let name = format!("m{i}");
                let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
                let data = self.dir.path().join(format!("{name}-{attempt}"));
                let args: Vec<String> = vec![
                    "--name".into(),
                    name.clone(),
                    "--data-dir".into(),
                    data.display().to_string(),
                    "--listen-client-urls".into(),
                    client_url.clone(),
                    "--advertise-client-urls".into(),
                    client_url.clone(),
                    "--listen-peer-urls".into(),
                    peer_url(i),
                    "--initial-advertise-peer-urls".into(),
                    peer_url(i),
                    "--initial-cluster".into(),
                    initial_cluster.clone(),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--initial-cluster-token".into(),
                    token.clone(),
                    "--heartbeat-interval".into(),
                    HEARTBEAT_MS.to_string(),
                    "--election-timeout".into(),
                    ELECTION_MS.to_string(),
                    "--experimental-watch-progress-notify-interval".into(),
                    format!("{}ms", PROGRESS_INTERVAL.as_millis()),
                    "--logger".into(),
                    "zap".into(),
                    "--log-level".into(),
                    "warn".into(),
                ];
                let log = self.dir.path().join(format!("{name}-{attempt}.log"));
                Member {
                    name,
                    client_url,
                    args,
                    log,
                    child: None,
                }
            })
            .collect();
        for i in 0..MEMBERS {
            self.spawn(i);
        }
    }

    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        assert!(member.child.is_none(), "{} is already running", member.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("open the member's log");
        let child = Command::new(&self.binary)
            .args(&member.args)
            // No ETCD_* variable of the environment may change the flags.
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        member.child = Some(child);
    }

    /// The client URLs, one per member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url.clone()
    }

    /// A client of every member, with short timeouts (a test should not
    /// wait long for a failure).
    pub async fn client(&self) -> Client {
        self.client_with(self.endpoints(), Self::options()).await
    }

    pub fn options() -> Options {
        Options {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            ..Options::default()
        }
    }

    pub async fn client_with(&self, endpoints: Vec<String>, options: Options) -> Client {
        Client::connect(&endpoints, options)
            .await
            .expect("client for the test cluster")
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// `kill -9` member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            // Child::kill sends SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `kill -<signal>` to member `i` (STOP hangs it, CONT resumes).
    pub fn signal(&self, i: usize, signal: &str) {
        let child = self.members[i].child.as_ref().expect("a running member");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its data directory and ports.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// The index of the member that leads, as the running members report
    /// it (polled until one does).
    pub async fn leader(&self) -> usize {
        let client = self.status_client().await;
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            for (i, member) in self.members.iter().enumerate() {
                if member.child.is_none() {
                    continue;
                }
                if let Ok(status) = client.status(&member.client_url).await {
                    if status.is_leader() {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no member leads");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` the leader; returns its index.
    pub async fn kill_leader(&mut self) -> usize {
        let leader = self.leader().await;
        self.kill(leader);
        leader
    }

    /// Waits until every running member reports the same leader and the
    /// cluster serves a linearizable read; panics (with the logs) if it
    /// does not within 30 s.
    pub async fn wait_healthy(&mut self) {
        if !self.wait_healthy_quietly(HEALTHY_WITHIN).await {
            self.dump_logs();
            panic!("the etcd cluster did not become healthy within {HEALTHY_WITHIN:?}");
        }
    }

    async fn status_client(&self) -> Client {
        let options = Options {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(1),
            ..Options::default()
        };
        self.client_with(self.endpoints(), options).await
    }

    async fn wait_healthy_quietly(&mut self, within: Duration) -> bool {
        let client = self.status_client().await;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(exited) = self.exited() {
                eprintln!("{exited}");
                return false;
            }
            let mut leaders = Vec::new();
            for member in self.members.iter().filter(|m| m.child.is_some()) {
                match client.status(&member.client_url).await {
                    Ok(status) if status.leader != 0 => leaders.push(status.leader),
                    _ => break,
                }
            }
            let running = self.members.iter().filter(|m| m.child.is_some()).count();
            if leaders.len() == running
                && leaders.windows(2).all(|w| w[0] == w[1])
                && client.get("health-check").await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Names a member that should be running but exited (a port taken by
    /// another program, a bad flag), and reaps it.
    fn exited(&mut self) -> Option<String> {
        for member in &mut self.members {
            let status = member
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = status {
                member.child = None;
                return Some(format!("etcd member {} exited: {status}", member.name));
            }
        }
        None
    }

    /// Prints the tail of each member's log, for a failing test.
    pub fn dump_logs(&self) {
        for member in &self.members {
            let text = std::fs::read_to_string(&member.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("---- {} ({}) ----", member.name, member.log.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
