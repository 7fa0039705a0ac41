//! `stigmer top` on a pseudo-terminal of 80x24, its screen read back with
//! a terminal emulator (vt100): it shows the executions, follows a phase
//! change and streamed text live, opens and closes a live transcript,
//! honours NO_COLOR, and `q` quits with status 0 and the terminal restored
//! (main screen, cursor shown, cooked mode).
//!
//! Waits are on output (each chunk the program writes is fed to the
//! emulator and the screen checked again), never on the clock; the timeout
//! is a failure guard.

mod common;

use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::mpsc;
use std::time::Instant;

use common::{cli_create, stigmer_ok, Daemon, STEP_TIMEOUT};
use portable_pty::{native_pty_system, CommandBuilder, PtySize};

const BIN: &str = env!("CARGO_BIN_EXE_stigmer");

/// The program's output, chunk by chunk, fed to an 80x24 emulator.
struct Screen {
    parser: vt100::Parser,
    output: mpsc::Receiver<Vec<u8>>,
}

impl Screen {
    /// Reads output until the screen satisfies `pred`; returns its text.
    /// (The deadline is a failure guard: the program redraws every second,
    /// so output alone never runs dry.)
    fn wait(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let text = self.parser.screen().contents();
            if pred(&text) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.parser.process(&chunk),
                Err(_) => panic!("the screen never showed {what}; it shows:\n{text}"),
            }
        }
    }

    /// The screen row holding `needle`.
    fn row_with(&self, needle: &str) -> Option<String> {
        self.parser
            .screen()
            .rows(0, 80)
            .find(|r| r.contains(needle))
    }

    /// Feeds whatever output is left (after the program exited).
    fn drain(&mut self) {
        while let Ok(chunk) = self.output.recv_timeout(STEP_TIMEOUT) {
            self.parser.process(&chunk);
        }
    }
}

/// Kills the program if the test fails before it quits.
struct Killer(Box<dyn portable_pty::ChildKiller + Send + Sync>);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[test]
fn top_shows_executions_live_and_quits_restoring_the_terminal() {
    let d = Daemon::start(&[]);
    let a = cli_create(&d, "agent-a", "s1");
    let b = cli_create(&d, "agent-b", "s2");

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut cmd = CommandBuilder::new(BIN);
    cmd.arg("--socket");
    cmd.arg(&d.socket);
    cmd.arg("top");
    cmd.env("TERM", "xterm-256color");
    cmd.env("NO_COLOR", "1");
    let mut child = pty.slave.spawn_command(cmd).expect("spawn top");
    let _kill_on_failure = Killer(child.clone_killer());
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let (tx, output) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut keys = pty.master.take_writer().expect("writer");
    let mut press = |bytes: &[u8]| {
        keys.write_all(bytes).expect("type");
        keys.flush().expect("flush");
    };
    let mut screen = Screen {
        parser: vt100::Parser::new(24, 80, 0),
        output,
    };

    // The table: both executions, the columns that fit in 80.
    let text = screen.wait("both executions, live", |t| {
        t.contains(&a) && t.contains(&b) && t.contains("live")
    });
    assert!(text.contains("ID") && text.contains("PHASE"), "{text}");
    assert!(screen.parser.screen().alternate_screen());
    let row = screen.row_with(&a).expect("a's row");
    assert!(row.contains("agent-a") && row.contains("pending"), "{row}");

    // A phase change and streamed text appear live.
    stigmer_ok(
        &d,
        &[
            "executions",
            "update",
            &a,
            "--phase",
            "in-progress",
            "--message",
            "ai:Reading the file",
        ],
    );
    let a_short = a.clone();
    screen.wait("the phase change", move |t| {
        t.lines()
            .any(|l| l.contains(&a_short) && l.contains("in-progress"))
    });
    let row = screen.row_with(&a).expect("a's row");
    assert!(
        row.contains("Reading"),
        "the latest text (cut to fit): {row}"
    );

    // NO_COLOR: nothing is coloured.
    let s = screen.parser.screen();
    for r in 0..24 {
        for c in 0..80 {
            if let Some(cell) = s.cell(r, c) {
                assert_eq!(cell.fgcolor(), vt100::Color::Default, "cell {r},{c}");
            }
        }
    }

    // The selection stays on its execution as rows re-sort; g selects the
    // first row (the most recently updated: a), Enter opens its transcript,
    // which follows the execution live; Esc goes back.
    press(b"g");
    press(b"\r");
    screen.wait("the transcript", |t| {
        t.contains("prompt: hi") && t.contains("ai: Reading the file")
    });
    stigmer_ok(&d, &["executions", "append", &a, "--text", " and counting"]);
    screen.wait("the streamed text", |t| {
        t.contains("ai: Reading the file and counting")
    });
    press(b"\x1b");
    screen.wait("the table again", |t| {
        t.contains("LATEST") && t.contains(&b)
    });

    // A daemon that goes away is a status line, not a crash; it comes
    // back and the table goes on.
    let mut d = d;
    d.stop();
    screen.wait("the reconnecting status", |t| t.contains("reconnecting"));
    d.restart();
    stigmer_ok(&d, &["executions", "update", &b, "--phase", "completed"]);
    let b_short = b.clone();
    screen.wait("live again, with b's change", move |t| {
        t.contains(" live")
            && t.lines()
                .any(|l| l.contains(&b_short) && l.contains("completed"))
    });

    // q quits with status 0 and restores the terminal.
    press(b"q");
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done
        .recv_timeout(STEP_TIMEOUT)
        .expect("top exits after q")
        .expect("wait for top");
    assert!(status.success(), "{status:?}");
    screen.drain();
    let s = screen.parser.screen();
    assert!(!s.alternate_screen(), "back on the main screen");
    assert!(!s.hide_cursor(), "the cursor is shown again");
    let fd = pty.master.as_raw_fd().expect("the master's fd");
    // SAFETY: the master pty stays open (owned by `pty`) for this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let modes = nix::sys::termios::tcgetattr(fd).expect("the pty's modes");
    use nix::sys::termios::LocalFlags;
    assert!(
        modes
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO),
        "raw mode is off again: {:?}",
        modes.local_flags
    );
}
