"""Shared fixtures: the real daemon binary on a temporary socket and database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from stigmer_client import Client, StigmerError

REPO_ROOT = Path(__file__).resolve().parents[3]
#: A guard against hangs only; nothing asserts on timing.
STARTUP_DEADLINE = 60.0
STOP_DEADLINE = 60.0


def daemon_binary() -> Path:
    """The daemon binary: ``$STIGMER_BIN`` or ``target/debug/stigmer``."""
    env = os.environ.get("STIGMER_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "stigmer"
    if not path.is_file():
        pytest.fail(f"daemon binary not found at {path}; build it (cargo build) or set STIGMER_BIN")
    return path


class Daemon:
    """A daemon process on a private socket and database."""

    def __init__(self, binary: Path, workdir: Path, extra_args: Optional[List[str]] = None) -> None:
        self.binary = binary
        self.socket_path = str(workdir / "stigmer.sock")
        self.db_path = str(workdir / "stigmer.db")
        self.log_path = workdir / "daemon.log"
        self.extra_args = list(extra_args or [])
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        """Start the daemon and wait until it answers a ping."""
        assert self.proc is None
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "--socket",
                self.socket_path,
                "daemon",
                "--db",
                self.db_path,
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_DEADLINE
        last: Optional[BaseException] = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket_path, timeout=5.0, reconnect=None) as client:
                    client.ping()
                return
            except (StigmerError, OSError) as exc:
                last = exc
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"daemon not ready after {STARTUP_DEADLINE}s: {last}\n{self.log()}")

    def stop(self) -> int:
        """Stop the daemon with SIGTERM and wait; return its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"daemon did not stop within {STOP_DEADLINE}s of SIGTERM:\n{self.log()}")

    def restart(self) -> None:
        """Stop, then start again on the same socket and database."""
        self.stop()
        self.start()

    def log(self) -> str:
        """The daemon's output so far."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, **kwargs: object) -> Client:
        """A sync client of this daemon."""
        return Client(self.socket_path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A running daemon, stopped (SIGTERM) after the test."""
    d = Daemon(daemon_binary(), tmp_path)
    d.start()
    try:
        yield d
    finally:
        code = d.stop()
        assert code == 0, f"daemon exited with {code} after SIGTERM:\n{d.log()}"


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """A factory of daemons with extra arguments (each stopped after the test)."""
    made: List[Daemon] = []

    def factory(*extra_args: str) -> Daemon:
        workdir = tmp_path / f"d{len(made)}"
        workdir.mkdir()
        d = Daemon(daemon_binary(), workdir, list(extra_args))
        made.append(d)
        d.start()
        return d

    yield factory
    for d in made:
        d.stop()
