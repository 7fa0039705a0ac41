"""The real daemon, `stigmer ui` and headless Chromium, for the browser tests.

Everything runs on this machine: a daemon on a temporary socket, the UI
process in front of it on a free loopback port, and Debian's chromium driven
by its chromedriver through Selenium (scripts/test-browser installs both).
The runner's side is played with the `stigmer executions ...` CLI.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver as Chrome
from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
STIGMER = os.environ.get("STIGMER_BIN", str(ROOT / "target" / "debug" / "stigmer"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# Screenshots of every test (two are kept in docs/ for the README).
SHOTS = Path(os.environ.get("STIGMER_SHOTS", str(ROOT / "target" / "browser-screenshots")))

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Polls `probe` until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Daemon:
    """A `stigmer daemon` on a temporary socket and database."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.dir = directory
        self.args = list(args)
        self.socket = directory / "s.sock"
        self.db = directory / "db" / "stigmer.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.dir / "daemon.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [STIGMER, "--socket", str(self.socket), "daemon", "--db", str(self.db), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        wait_for("the daemon to listen", lambda: self.cli_ok("status"), 20)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
            self.proc = None

    def cli(self, *args: str) -> str:
        """Runs `stigmer --socket S ARGS`; returns its output, fails on error."""
        done = subprocess.run(
            [STIGMER, "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if done.returncode != 0:
            raise AssertionError(f"stigmer {' '.join(args)}: {done.returncode} {done.stderr}")
        return done.stdout

    def cli_ok(self, *args: str) -> bool:
        done = subprocess.run(
            [STIGMER, "--socket", str(self.socket), *args],
            capture_output=True,
            timeout=20,
        )
        return done.returncode == 0

    def create(self, agent: str, message: str, session: str | None = None) -> str:
        args = ["executions", "create", "--agent", agent, "--message", message]
        if session:
            args += ["--session", session]
        return self.cli(*args).strip()

    def append(self, execution_id: str, text: str) -> None:
        self.cli("executions", "append", execution_id, f"--text={text}")

    def update(self, execution_id: str, status: dict[str, Any]) -> None:
        path = self.dir / "status.json"
        path.write_text(json.dumps(status))
        self.cli("executions", "update", execution_id, "-f", str(path))

    def phase(self, execution_id: str) -> str:
        execution = json.loads(self.cli("executions", "get", execution_id, "-o", "json"))
        phase: str = execution.get("status", {}).get("phase", "")
        return phase


class Ui:
    """A `stigmer ui --no-browser` in front of `daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.proc = subprocess.Popen(
            [STIGMER, "--socket", str(daemon.socket), "ui", "--no-browser"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://\S+)/\?token=(\S+)", line)
        if not found:
            raise AssertionError(f"no URL in {line!r}")
        self.base = found.group(1)
        self.token = found.group(2)
        self.url = f"{self.base}/?token={self.token}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Etcd:
    """A one-member etcd on free loopback ports: the log of a daemon in the
    cluster mode (`--etcd`). Its data and log live in `directory`."""

    def __init__(self, binary: str, directory: Path) -> None:
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        log = open(directory / "etcd.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [
                binary,
                "--name=m0",
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=m0={peer_url}",
                "--log-level=warn",
            ],
            # No ETCD_* variable of the environment may change the flags.
            env={},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for("etcd to serve", self.healthy, 30)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def chromium(profile: Path, rules: str | None = None) -> Chrome:
    """Headless Debian chromium with a fresh profile, its network log on,
    and no background traffic of its own (this machine's network is closed)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,720",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    if rules:
        options.add_argument(f"--host-resolver-rules={rules}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the browser asked for since the last call (its network log)."""
    assert isinstance(driver, Chrome)
    urls: list[str] = []
    # Selenium leaves get_log unannotated; its entries are dicts.
    entries: list[dict[str, Any]] = driver.get_log("performance")  # type: ignore[no-untyped-call]
    for entry in entries:
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def facts(driver: WebDriver, element_id: str) -> dict[str, str]:
    """The rows of the `<dl>` with this id, in the page's order: each `<dt>`'s
    text to its `<dd>`'s."""
    value = driver.execute_script(
        "const d = document.getElementById(arguments[0]);"
        "return d ? [...d.querySelectorAll('dt')]"
        ".map(t => [t.textContent, t.nextElementSibling?.textContent ?? '']) : [];",
        element_id,
    )
    return {str(k): str(v) for k, v in value}


def text_of(driver: WebDriver, element_id: str) -> str:
    """The text content of the element with this id ('' when absent)."""
    value = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
        element_id,
    )
    return str(value)


def shot(driver: WebDriver, name: str) -> Path:
    """Saves a screenshot under SHOTS."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
