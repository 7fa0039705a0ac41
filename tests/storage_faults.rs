//! Storage faults: the database's filesystem fills up, and the database
//! file becomes read-only. Writes must answer a clear error (UNAVAILABLE),
//! reads and streams go on, writes succeed again once the fault is gone, and
//! nothing acknowledged is lost. See docs/RELIABILITY.md for what each test
//! found.
//!
//! Both need root (a tmpfs mount; a second user); they skip, saying why,
//! otherwise.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use stigmer_proto::agentexecution::AgentExecutionId;
use stigmer_proto::daemon::{
    request::Command as Cmd, response, Code, EventType, ListExecutionsRequest,
};

const UPDATE: i32 = EventType::EventUpdate as i32;
const SNAPSHOT: i32 = EventType::EventSnapshot as i32;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() as u64 * s.fragment_size() as u64
}

async fn get(c: &mut Raw, id: &str) -> Response {
    c.call(Cmd::Get(AgentExecutionId { value: id.into() }))
        .await
}

use stigmer_proto::daemon::Response;

/// Every acknowledged revision of `id` is in its history, replayed from 0.
async fn assert_history_has(c: &mut Raw, id: &str, acked: &[u64]) {
    let s = c.subscribe(id, Some(0)).await;
    let mut got = Vec::new();
    while got.len() < acked.len() {
        let e = c.event(s).await;
        assert_eq!(e.r#type, UPDATE, "{e:?}");
        got.push(e.revision);
    }
    assert_eq!(got, acked, "every acknowledged write is in the history");
    expect_cancelled(c, s).await;
}

async fn expect_cancelled(c: &mut Raw, s: u64) {
    let r = c
        .call(Cmd::Cancel(
            stigmer_proto::daemon::CancelSubscriptionRequest { subscription_id: s },
        ))
        .await;
    assert!(matches!(r.result, Some(response::Result::Cancelled(_))));
    let end = c.event(s).await;
    assert_eq!(end.r#type, EventType::EventEnd as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_writes_keeps_reads_and_streams_then_recovers() {
    if !is_root() {
        eprintln!("SKIPPED disk_full: needs root to mount a small tmpfs");
        return;
    }
    let fs = match Tmpfs::mount("6m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED disk_full: {why}");
            return;
        }
    };
    let sockdir = tempfile::tempdir().expect("tempdir");
    let socket = sockdir.path().join("s.sock");
    let db = fs.path.join("stigmer.db");
    let (child, _log) = spawn_daemon(&socket, &db, &[]);
    let mut d = OwnedChild(Some(child));
    let mut c = Raw::connect(&socket).await;
    let (id, created) = c.create("full").await;
    let mut acked = vec![created];
    // A subscriber from before the fault, and a reader.
    let mut watcher = Raw::connect(&socket).await;
    let ws = watcher.subscribe(&id, None).await;
    assert_eq!(watcher.event(ws).await.r#type, SNAPSHOT);
    // Fill the filesystem, leaving ~200 KiB.
    let filler = fs.path.join("filler");
    let room = free_bytes(&fs.path).saturating_sub(200 * 1024);
    std::fs::write(&filler, vec![0u8; room as usize]).expect("filler");
    // 16 KiB updates until the store refuses one.
    let payload = "f".repeat(16 * 1024);
    let mut refusal = None;
    for n in 0..200 {
        let r = c.update(&id, ai_status(&format!("{n}{payload}"))).await;
        match r.result {
            Some(response::Result::Execution(e)) => acked.push(e.revision),
            Some(response::Result::Error(e)) => {
                refusal = Some(e);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let refusal = refusal.expect("a write is refused once the disk is full");
    eprintln!(
        "disk full after {} acknowledged writes: {:?} {}",
        acked.len(),
        Code::try_from(refusal.code),
        refusal.message
    );
    assert_eq!(refusal.code, Code::Unavailable as i32, "{refusal:?}");
    assert!(
        refusal.message.contains("full"),
        "a clear message: {refusal:?}"
    );
    // Further writes are refused the same way, and nothing half-written shows.
    let r = c.update(&id, ai_status(&format!("again{payload}"))).await;
    expect_error(&r, Code::Unavailable);
    // Reads go on: get, list, a replay, and the stream opened before.
    let (_, rev) = expect_execution(get(&mut c, &id).await);
    assert_eq!(rev, *acked.last().expect("acked"));
    assert!(matches!(
        c.call(Cmd::List(ListExecutionsRequest::default()))
            .await
            .result,
        Some(response::Result::List(_))
    ));
    assert_history_has(&mut c, &id, &acked).await;
    for rev in &acked[1..] {
        assert_eq!(watcher.event(ws).await.revision, *rev);
    }
    // Space comes back: writes succeed again, on the same connection.
    std::fs::remove_file(&filler).expect("remove filler");
    let (_, after) = expect_execution(c.update(&id, ai_status("space is back")).await);
    acked.push(after);
    assert_eq!(
        watcher.event(ws).await.revision,
        after,
        "the stream goes on"
    );
    assert_history_has(&mut c, &id, &acked).await;
    // And across a restart: nothing acknowledged was lost.
    d.sigterm_and_wait();
    let (child, _log) = spawn_daemon(&socket, &db, &[]);
    d.0 = Some(child);
    let mut c = Raw::connect(&socket).await;
    assert_history_has(&mut c, &id, &acked).await;
    let ok: String =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open")
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
    assert_eq!(ok, "ok");
}

/// The database file made read-only. While the daemon runs, a `chmod`
/// changes nothing for it (SQLite keeps the descriptor it opened
/// read-write): writes go on. A daemon started on a read-only file (as an
/// unprivileged user, for whom the mode is binding) opens it read-only:
/// reads and streams work and writes answer UNAVAILABLE "read-only"; once
/// the file is writable again, writes resume without a restart (reported in
/// docs/RELIABILITY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_database_file() {
    if !is_root() {
        eprintln!("SKIPPED read_only_database_file: needs root to run the daemon as another user");
        return;
    }
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        eprintln!("SKIPPED read_only_database_file: no user `nobody`");
        return;
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_stigmer"));
    if !executable_by_others(&bin) {
        eprintln!(
            "SKIPPED read_only_database_file: {} is not reachable by `nobody`",
            bin.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    nix::unistd::chown(&home, Some(nobody.uid), Some(nobody.gid)).expect("chown");
    let socket = home.join("s.sock");
    let db = home.join("stigmer.db");
    let spawn = || spawn_daemon_as(&socket, &db, nobody.uid.as_raw(), nobody.gid.as_raw());

    // 1. chmod while running: no effect on the open database.
    let mut d = OwnedChild(Some(spawn()));
    let mut c = Raw::connect(&socket).await;
    let (id, created) = c.create("readonly").await;
    let mut acked = vec![created];
    acked.push(expect_execution(c.update(&id, ai_status("before")).await).1);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    let r = c.update(&id, ai_status("after chmod")).await;
    eprintln!("update after chmod 0444 while running: {:?}", r.result);
    acked.push(expect_execution(r).1);
    d.sigterm_and_wait();

    // 2. Started on the read-only file.
    let mut d = OwnedChild(Some(spawn()));
    let mut c = Raw::connect(&socket).await;
    let mut watcher = Raw::connect(&socket).await;
    let ws = watcher.subscribe(&id, None).await;
    let snap = watcher.event(ws).await;
    assert_eq!(
        (snap.r#type, snap.revision),
        (SNAPSHOT, *acked.last().unwrap())
    );
    let r = c.update(&id, ai_status("refused")).await;
    eprintln!("update with the file read-only at start: {:?}", r.result);
    let msg = expect_error(&r, Code::Unavailable);
    assert!(msg.contains("read-only"), "a clear message: {msg}");
    assert_history_has(&mut c, &id, &acked).await;
    expect_execution(get(&mut c, &id).await);
    // Writable again: the running daemon recovers (its writer reopens the
    // connection it had to open read-only), and the stream sees the write.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let r = c.update(&id, ai_status("writable again")).await;
    let (_, revision) = expect_execution(r);
    acked.push(revision);
    assert_eq!(watcher.event(ws).await.revision, revision);
    // After a restart, writes succeed and nothing acknowledged is lost.
    d.sigterm_and_wait();
    let _d = OwnedChild(Some(spawn()));
    let mut c = Raw::connect(&socket).await;
    acked.push(expect_execution(c.update(&id, ai_status("restarted")).await).1);
    assert_history_has(&mut c, &id, &acked).await;
}

fn executable_by_others(bin: &Path) -> bool {
    let mut p = bin.to_path_buf();
    if std::fs::metadata(&p)
        .map(|m| m.permissions().mode() & 0o001 == 0)
        .unwrap_or(true)
    {
        return false;
    }
    while p.pop() {
        if p.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(&p) {
            Ok(m) if m.permissions().mode() & 0o001 != 0 => {}
            _ => return false,
        }
    }
    true
}

/// The daemon as another user (for whom file modes are binding).
fn spawn_daemon_as(socket: &Path, db: &Path, uid: u32, gid: u32) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let home = socket.parent().expect("dir").to_path_buf();
    // The daemon logs to a pipe the harness drains; the socket is the
    // daemon user's (0600), and root connects regardless.
    let (child, log) = spawn_daemon_with(socket, db, &[], |command| {
        command
            .env_remove("STIGMER_SOCKET")
            .env("HOME", home)
            .uid(uid)
            .gid(gid);
    });
    // Keep draining its log for as long as it runs.
    std::thread::spawn(move || for _ in log.iter() {});
    child
}

/// A child process killed on drop.
struct OwnedChild(Option<std::process::Child>);

impl OwnedChild {
    fn sigterm_and_wait(&mut self) {
        let mut child = self.0.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "clean exit");
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
