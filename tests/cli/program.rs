//! The `stigmer` program as a whole rather than one command: usage errors
//! and the exit-status table, an unreachable daemon, a closed pipe, colour,
//! completions, man pages and packaging, and the release profile's binary.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::support::{create_many, Daemon, BIN};

#[test]
fn errors_and_usage() {
    let d = Daemon::start();
    let id = d.create("a");
    d.ok(&["executions", "update", &id, "--phase", "completed"]);
    let out = d.run(&["executions", "update", &id, "--phase", "in-progress"]);
    assert_eq!(out.status.code(), Some(7), "refused by a precondition");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: FAILED_PRECONDITION: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = d.run(&["executions", "create", "--agent", "", "--message", "m"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "INVALID_ARGUMENT is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: INVALID_ARGUMENT: "));

    // Usage errors are clap's: status 2.
    let out = d.run(&["executions", "update", &id, "--message", "robot:hi"]);
    assert_eq!(out.status.code(), Some(2));
    let out = d.run(&["executions", "update", &id, "--phase", "sideways"]);
    assert_eq!(out.status.code(), Some(2));

    // No daemon on the socket: unreachable, status 5, and how to start one.
    let out = Command::new(BIN)
        .args([
            "--socket",
            "/nonexistent/stigmer.sock",
            "executions",
            "get",
            "aex-01jf8zq3k4m5n6p7q8r9s0t1v2",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("stigmer daemon") && stderr.contains("stigmer.socket"),
        "the error says how to start a daemon: {stderr}"
    );
    let out = Command::new(BIN)
        .args([
            "--socket",
            "/nonexistent/stigmer.sock",
            "executions",
            "subscribe",
            "aex-01jf8zq3k4m5n6p7q8r9s0t1v2",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(5));
}

/// Point 8: the exit-status table, a malformed id, `--prometheus -o json`,
/// and a closed pipe.
#[test]
fn exit_statuses_and_a_closed_pipe() {
    let d = Daemon::start();
    let out = d.run(&["executions", "get", "not-an-id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an execution id"));

    let out = d.run(&["status", "--prometheus", "-o", "json"]);
    assert_eq!(out.status.code(), Some(2), "-o is not silently ignored");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));

    let help = d.ok(&["--help"]);
    assert!(help.contains("Exit status:"), "{help}");
    assert!(
        help.contains("12  subscribe/wait/executions watch: gave up reconnecting"),
        "{help}"
    );

    // `list -o json | head -c 400`, with more JSON than a pipe holds: the
    // CLI meets EPIPE and exits quietly.
    create_many(&d, "agent", 300);
    let mut child = d
        .cmd()
        .args(["executions", "list", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 400];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("400 bytes");
    // The read end is closed here (the stdout handle was dropped).
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing on stderr"
    );
}

/// Point 11: colour on a terminal (or when asked), never into a pipe or
/// with NO_COLOR.
#[test]
fn colour_on_a_terminal_unless_no_color() {
    let d = Daemon::start();
    let id = d.create("a");
    d.ok(&["executions", "update", &id, "--phase", "completed"]);
    assert!(!d.ok(&["executions", "list"]).contains('\x1b'));
    assert!(d
        .ok(&["--color", "always", "executions", "list"])
        .contains("\x1b["));
    let sub = d.run(&["--color", "always", "executions", "subscribe", &id]);
    assert!(String::from_utf8_lossy(&sub.stdout).contains("\x1b["));

    // On a real terminal (script(1) gives the command a pty).
    let have_script = Command::new("script")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_script {
        println!("SKIPPED (terminal part): script(1) is not installed (util-linux)");
        return;
    }
    let socket = d.inner.socket.to_str().expect("utf-8").to_string();
    let on_tty = |no_color: bool| {
        let mut c = Command::new("script");
        c.args([
            "-qec",
            &format!("{BIN} --socket {socket} executions subscribe {id}"),
            "/dev/null",
        ]);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().expect("script");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let coloured = on_tty(false);
    assert!(
        coloured.contains("[phase]") && coloured.contains("\x1b["),
        "{coloured:?}"
    );
    let plain = on_tty(true);
    assert!(
        plain.contains("[phase]") && !plain.contains("\x1b["),
        "{plain:?}"
    );
}

/// Point 9: completions, the man page, and the packaging that installs them.
#[test]
fn completions_man_page_and_packaging() {
    let d = Daemon::start();
    for shell in ["bash", "zsh", "fish"] {
        let script = d.ok(&["completion", shell]);
        assert!(
            script.contains("stigmer") && script.contains("executions"),
            "{shell}: {script}"
        );
    }
    let man = d.ok(&["man"]);
    assert!(man.contains(".TH stigmer 1"), "{man}");
    let tmp = tempfile::tempdir().expect("tmp");
    let pages = tmp.path().join("pages");
    d.ok(&["man", "--dir", pages.to_str().expect("utf-8")]);
    assert!(pages.join("stigmer.1").exists());
    assert!(pages.join("stigmer-executions.1").exists());

    let root = tmp.path().join("root");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/install"))
        .env("DESTDIR", &root)
        .env("PREFIX", "/usr")
        .env("STIGMER_BIN", BIN)
        .output()
        .expect("run packaging/install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "usr/bin/stigmer",
        "usr/share/man/man1/stigmer.1",
        "usr/share/man/man1/stigmer-executions.1",
        "usr/share/bash-completion/completions/stigmer",
        "usr/share/zsh/site-functions/_stigmer",
        "usr/share/fish/vendor_completions.d/stigmer.fish",
    ] {
        assert!(root.join(file).exists(), "{file} installed");
    }
}

/// Point 12: the release profile ships without debug info; the profiling
/// profile keeps it.
#[test]
fn release_profile_is_stripped_and_profiling_keeps_debug_info() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("read");
    let section = |name: &str| -> String {
        let start = manifest
            .find(&format!("[{name}]"))
            .unwrap_or_else(|| panic!("no [{name}]"));
        let body = &manifest[start + name.len() + 2..];
        body[..body.find("\n[").unwrap_or(body.len())].to_string()
    };
    let release = section("profile.release");
    assert!(release.contains("debug = false"), "{release}");
    assert!(release.contains("strip = \"debuginfo\""), "{release}");
    let profiling = section("profile.profiling");
    assert!(profiling.contains("inherits = \"release\""), "{profiling}");
    assert!(profiling.contains("debug = true"), "{profiling}");

    // A release binary built since the manifest last changed carries no
    // DWARF: its section names hold no `.debug_info`.
    let target = std::path::Path::new(BIN)
        .parent()
        .and_then(|debug| debug.parent())
        .expect("target dir");
    let release = target.join("release").join("stigmer");
    let manifest_time = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .and_then(|m| m.modified())
        .expect("manifest time");
    match std::fs::metadata(&release).and_then(|m| m.modified()) {
        Ok(built) if built >= manifest_time => {
            let bytes = std::fs::read(&release).expect("read the release binary");
            match elf_section_names(&bytes) {
                Some(names) => assert!(
                    !names.iter().any(|n| n == ".debug_info"),
                    "{} carries debug info: {names:?}",
                    release.display()
                ),
                None => println!("SKIPPED (binary part): not a 64-bit little-endian ELF file"),
            }
        }
        _ => println!(
            "SKIPPED (binary part): no release build at {} newer than Cargo.toml",
            release.display()
        ),
    }
}

/// The section names of a 64-bit little-endian ELF file (None for anything
/// else), read from its section headers and their string table.
fn elf_section_names(elf: &[u8]) -> Option<Vec<String>> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)).ok();
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18)?;
    let mut names = Vec::new();
    for i in 0..shnum {
        let start = strtab + u32_at(header(i))?;
        let len = elf.get(start..)?.iter().position(|&b| b == 0)?;
        names.push(String::from_utf8_lossy(&elf[start..start + len]).into_owned());
    }
    Some(names)
}
