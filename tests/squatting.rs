//! Socket squatting (issue 18, point 1; docs/SECURITY.md): another local
//! user listens on the path a victim's client will use. The client must
//! refuse (checking the listener's uid, and the fallback directory's owner,
//! mode and type) before sending a single byte, and the impostor must
//! receive nothing. The victim's own daemon creates its fallback directory
//! 0700 and refuses a squatted one.
//!
//! Needs root (to create two users with useradd and run as them with
//! runuser); prints why it skips otherwise. The users are removed at the
//! end. The impostor is this test binary itself, run as the other user
//! with `--ignored --exact impostor_listener`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{have, skip};

const VICTIM: &str = "stigmer-victim";
const SQUATTER: &str = "stigmer-squat";

fn quiet(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The two users, created for the test and removed (with what they left in
/// /tmp) when it ends.
struct Users {
    victim: nix::unistd::User,
    squatter: nix::unistd::User,
    created: Vec<&'static str>,
}

impl Users {
    fn create() -> Result<Users, String> {
        let mut created = Vec::new();
        for name in [VICTIM, SQUATTER] {
            if !quiet(&["getent", "passwd", name]) {
                if !quiet(&[
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ]) {
                    return Err(format!("useradd {name} failed"));
                }
                created.push(name);
            }
        }
        let find = |name: &str| {
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("user {name} not found after useradd"))
        };
        let users = Users {
            victim: find(VICTIM)?,
            squatter: find(SQUATTER)?,
            created,
        };
        users.clean_tmp();
        Ok(users)
    }

    fn victim_uid(&self) -> u32 {
        self.victim.uid.as_raw()
    }

    /// The victim's old fallback socket (a file directly in /tmp).
    fn old_path(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/stigmer-{}.sock", self.victim_uid()))
    }

    /// The victim's fallback directory.
    fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/stigmer-{}", self.victim_uid()))
    }

    fn clean_tmp(&self) {
        let _ = std::fs::remove_file(self.old_path());
        let dir = self.dir();
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                let _ = std::fs::remove_file(&dir);
            }
            Ok(_) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(_) => {}
        }
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.clean_tmp();
        for name in &self.created {
            quiet(&["userdel", name]);
        }
    }
}

/// A directory every user can traverse, holding copies of the stigmer
/// binary and of this test binary (the build tree may not be readable by
/// the test users).
struct Shared {
    dir: tempfile::TempDir,
    stigmer: PathBuf,
    impostor: PathBuf,
}

impl Shared {
    fn new() -> Shared {
        let dir = tempfile::Builder::new()
            .prefix("stigmer-squat")
            .tempdir_in("/tmp")
            .expect("tmp");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let copy = |from: &Path, name: &str| {
            let to = dir.path().join(name);
            std::fs::copy(from, &to).expect("copy binary");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            to
        };
        let stigmer = copy(Path::new(env!("CARGO_BIN_EXE_stigmer")), "stigmer");
        let impostor = copy(&std::env::current_exe().expect("test exe"), "impostor");
        Shared {
            dir,
            stigmer,
            impostor,
        }
    }
}

/// Runs the stigmer CLI as the victim, with no XDG_RUNTIME_DIR (so the
/// fallback path applies) and no overrides from the environment.
fn as_victim(shared: &Shared, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", VICTIM, "--"])
        .arg(&shared.stigmer)
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("STIGMER_SOCKET")
        .env_remove("STIGMER_EXPECTED_UID")
        .stdin(Stdio::null())
        .output()
        .expect("runuser")
}

/// The impostor: this test binary's `impostor_listener`, run as the
/// squatting user, listening until its stdin closes.
struct Impostor {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
}

/// Where the impostor listens.
enum Squat {
    /// A socket file at this path (the old fallback form).
    File(PathBuf),
    /// A directory of its own (mode 0777) at the victim's fallback
    /// directory, with a socket inside.
    Dir(PathBuf),
    /// A symlink at the victim's fallback directory to a directory of its
    /// own holding a socket.
    Link { link: PathBuf, target: PathBuf },
}

impl Impostor {
    fn start(shared: &Shared, squat: &Squat) -> Impostor {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SQUATTER, "--"])
            .arg(&shared.impostor)
            .args([
                "impostor_listener",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match squat {
            Squat::File(path) => {
                cmd.env("STIGMER_TEST_IMPOSTOR", path);
            }
            Squat::Dir(dir) => {
                cmd.env("STIGMER_TEST_IMPOSTOR", dir.join("stigmer.sock"))
                    .env("STIGMER_TEST_IMPOSTOR_MKDIR", "1");
            }
            Squat::Link { link, target } => {
                cmd.env("STIGMER_TEST_IMPOSTOR", target.join("stigmer.sock"))
                    .env("STIGMER_TEST_IMPOSTOR_MKDIR", "1")
                    .env("STIGMER_TEST_IMPOSTOR_LINK", link);
            }
        }
        let mut child = cmd.spawn().expect("spawn the impostor");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            match stderr.read_line(&mut line) {
                Ok(0) | Err(_) => panic!("the impostor did not start: {seen}"),
                Ok(_) if line.contains("impostor listening") => break,
                Ok(_) => seen.push_str(&line),
            }
        }
        Impostor { child, stderr }
    }

    /// Stops it; returns (connections accepted, bytes received).
    fn finish(mut self) -> (u64, u64) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.stderr.read_to_string(&mut rest);
        let _ = self.child.wait();
        let line = rest
            .lines()
            .find_map(|l| l.split("impostor total ").nth(1))
            .unwrap_or_else(|| panic!("no total from the impostor: {rest}"));
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (nums[0], nums[1])
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn squatters_get_nothing_and_the_fallback_directory_is_private() {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root to create test users");
    }
    for tool in ["useradd", "userdel", "runuser", "getent"] {
        if !have(tool) {
            return skip(&format!(
                "{tool} is not installed (Debian: passwd, util-linux)"
            ));
        }
    }
    let users = match Users::create() {
        Ok(u) => u,
        Err(e) => return skip(&format!("cannot create test users: {e}")),
    };
    let shared = Shared::new();
    let squat_uid = users.squatter.uid.as_raw().to_string();
    let secret = [
        "executions",
        "create",
        "--agent",
        "secret-agent",
        "--message",
        "my secret prompt",
    ];

    // 1. The old form: a socket file at /tmp/stigmer-<uid>.sock, which an
    //    older client used by default (here named with --socket). The
    //    client connects, reads the listener's uid, refuses, sends nothing.
    let old = users.old_path();
    let old_str = old.to_str().expect("utf-8").to_string();
    let impostor = Impostor::start(&shared, &Squat::File(old.clone()));
    let mut args = vec!["--socket", old_str.as_str()];
    args.extend(secret);
    let out = as_victim(&shared, &args);
    let (conns, bytes) = impostor.finish();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains(&format!("uid {squat_uid}")), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
    assert!(conns <= 1, "{conns}");
    assert_eq!(bytes, 0, "the impostor received nothing");
    // The default path is no longer that file: nothing listens at the
    // victim's (missing) fallback directory.
    let impostor = Impostor::start(&shared, &Squat::File(old.clone()));
    let out = as_victim(&shared, &secret);
    let (_, bytes) = impostor.finish();
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    assert_eq!(bytes, 0);
    users.clean_tmp();

    // 2. The new form: the squatter made /tmp/stigmer-<uid>/ itself. The
    //    client refuses the directory and never connects.
    let impostor = Impostor::start(&shared, &Squat::Dir(users.dir()));
    let out = as_victim(&shared, &secret);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains("refusing the socket directory"), "{err}");
    assert!(err.contains(&format!("owned by uid {squat_uid}")), "{err}");
    // The victim's daemon refuses to start in it, and says why.
    let db_dir = shared.dir.path().join("victim-db");
    std::fs::create_dir(&db_dir).expect("mkdir");
    nix::unistd::chown(&db_dir, Some(users.victim.uid), Some(users.victim.gid)).expect("chown");
    let db = db_dir.join("stigmer.db");
    let db_str = db.to_str().expect("utf-8").to_string();
    let out = as_victim(&shared, &["daemon", "--db", &db_str]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains("refusing the socket directory"), "{err}");
    let (conns, bytes) = impostor.finish();
    assert_eq!((conns, bytes), (0, 0), "the impostor was never contacted");
    users.clean_tmp();

    // 3. A symlink at the fallback directory, to the squatter's directory.
    let target = PathBuf::from(format!("/tmp/stigmer-squatter-{}", std::process::id()));
    let impostor = Impostor::start(
        &shared,
        &Squat::Link {
            link: users.dir(),
            target: target.clone(),
        },
    );
    let out = as_victim(&shared, &secret);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    let (conns, bytes) = impostor.finish();
    let _ = std::fs::remove_dir_all(&target);
    assert_eq!((conns, bytes), (0, 0));
    users.clean_tmp();

    // 4. The victim's own daemon: the directory is created 0700, owned by
    //    the victim, and the victim's client uses it.
    let mut daemon = Command::new(&shared.stigmer);
    daemon
        .args(["daemon", "--db", &db_str])
        .uid(users.victim_uid())
        .gid(users.victim.gid.as_raw())
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("STIGMER_SOCKET")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut daemon = daemon.spawn().expect("spawn the victim's daemon");
    let mut log = BufReader::new(daemon.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        match log.read_line(&mut line) {
            Ok(0) | Err(_) => panic!("the victim's daemon did not start: {seen}"),
            Ok(_) if line.contains("listening") => break,
            Ok(_) => seen.push_str(&line),
        }
    }
    let meta = std::fs::symlink_metadata(users.dir()).expect("fallback dir");
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), users.victim_uid());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
    let out = as_victim(&shared, &secret);
    assert!(out.status.success(), "{}", stderr_of(&out));

    // 5. Root's client refuses that daemon too (uid neither 0 nor root's)
    //    unless told to expect the victim's uid, by flag or environment.
    let sock = users.dir().join("stigmer.sock");
    let victim_uid = users.victim_uid().to_string();
    let root_cli = |extra: &[&str], env: Option<&str>| {
        let mut c = Command::new(&shared.stigmer);
        c.arg("--socket").arg(&sock).args(extra);
        c.args(["executions", "list"]);
        match env {
            Some(uid) => c.env("STIGMER_EXPECTED_UID", uid),
            None => c.env_remove("STIGMER_EXPECTED_UID"),
        };
        c.output().expect("run")
    };
    let out = root_cli(&[], None);
    assert_eq!(out.status.code(), Some(9), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(&format!("uid {victim_uid}")));
    let out = root_cli(&["--expected-uid", &victim_uid], None);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = root_cli(&[], Some(&victim_uid));
    assert!(out.status.success(), "{}", stderr_of(&out));

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    drop(users);
}

/// The impostor, run by the test above as another user: listens where
/// `STIGMER_TEST_IMPOSTOR` says (making its directory 0777 first with
/// `STIGMER_TEST_IMPOSTOR_MKDIR`, and a symlink to it with
/// `STIGMER_TEST_IMPOSTOR_LINK`), counts every byte any client sends, and
/// reports on stderr once its stdin closes. A no-op when run without them.
#[test]
#[ignore = "a helper the squatting test runs as another user"]
fn impostor_listener() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let Some(path) = std::env::var_os("STIGMER_TEST_IMPOSTOR").map(PathBuf::from) else {
        return;
    };
    if std::env::var_os("STIGMER_TEST_IMPOSTOR_MKDIR").is_some() {
        let dir = path.parent().expect("a directory");
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        if let Some(link) = std::env::var_os("STIGMER_TEST_IMPOSTOR_LINK") {
            std::os::unix::fs::symlink(dir, link).expect("symlink");
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, Ordering::SeqCst);
        });
    }
    eprintln!("impostor listening");
    let (mut connections, mut bytes) = (0u64, 0u64);
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got);
                connections += 1;
                bytes += got.len() as u64;
            }
            // Stops only once the backlog is empty: a client that has
            // already exited left its connection (and any bytes) there.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    let _ = std::io::stderr().flush();
    eprintln!("impostor total {connections} {bytes}");
    let _ = std::fs::remove_file(&path);
}
