"""Never talk to an impostor: who answers on the socket, and the private fallback directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import List

import pytest
from fake import FakeConn, FakeDaemon

from stigmer_client import (
    Client,
    ImpostorError,
    ReconnectPolicy,
    UnavailableError,
    _paths,
)
from stigmer_client.aio import AsyncClient

OTHER_UID = 4242  # neither root nor us: the tests never run as it


def _pong(conn: FakeConn) -> None:
    request = conn.recv_command("ping")
    conn.pong(request.id)
    conn.recv()


class _Recorder:
    """A fake daemon's handler that keeps every byte it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.done = threading.Event()

    def __call__(self, conn: FakeConn) -> None:
        try:
            while True:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    return
                self.received += chunk
        finally:
            self.done.set()


@pytest.fixture
def impostor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever accepts a connection seems to run as OTHER_UID."""
    monkeypatch.delenv(_paths.EXPECTED_UID_ENV, raising=False)
    monkeypatch.setattr(_paths, "peer_uid", lambda fd: OTHER_UID)


def test_peer_uid_is_the_listening_process_uid(tmp_path: Path) -> None:
    recorder = _Recorder()
    fake = FakeDaemon(tmp_path / "s", [recorder])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(fake.path)
        assert _paths.peer_uid(sock.fileno()) == os.geteuid()
    assert recorder.done.wait(30)
    fake.close()


_LISTEN_AS_NOBODY = """
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
received = 0
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    received += len(chunk)
print(received, flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another user")
def test_real_process_of_another_user_is_refused() -> None:
    # No monkeypatching: SO_PEERCRED reports the listener's uid (nobody).
    directory = tempfile.mkdtemp()
    try:
        os.chmod(directory, 0o777)
        path = os.path.join(directory, "s.sock")
        listener = subprocess.Popen(
            [sys.executable, "-c", _LISTEN_AS_NOBODY, path], stdout=subprocess.PIPE, text=True
        )
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        with Client(path) as client, pytest.raises(ImpostorError, match="uid 65534"):
            client.ping()
        assert listener.stdout.readline().strip() == "0"  # bytes it received
        assert listener.wait(30) == 0
    finally:
        shutil.rmtree(directory)


def test_same_uid_passes(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_pong])
    with Client(fake.path) as client:
        assert client.ping().protocol_version == 1
    fake.close()


def test_impostor_refused_before_one_byte_sync(tmp_path: Path, impostor: None) -> None:
    recorder = _Recorder()
    fake = FakeDaemon(tmp_path / "s", [recorder])
    with Client(fake.path) as client:
        with pytest.raises(ImpostorError, match=f"uid {OTHER_UID}") as raised:
            client.ping()
        assert not client.connected
    assert recorder.done.wait(30)
    fake.close()
    assert recorder.received == b""
    assert isinstance(raised.value, UnavailableError)
    assert "expected_uid=4242" in str(raised.value)


def test_impostor_refused_before_one_byte_async(tmp_path: Path, impostor: None) -> None:
    recorder = _Recorder()
    fake = FakeDaemon(tmp_path / "s", [recorder])

    async def main() -> None:
        async with AsyncClient(fake.path) as client:
            with pytest.raises(ImpostorError, match=f"uid {OTHER_UID}"):
                await client.ping()

    asyncio.run(main())
    assert recorder.done.wait(30)
    fake.close()
    assert recorder.received == b""


def test_subscription_does_not_retry_an_impostor(tmp_path: Path, impostor: None) -> None:
    recorders = [_Recorder(), _Recorder()]
    fake = FakeDaemon(tmp_path / "s", list(recorders))
    fast = ReconnectPolicy(initial_backoff=0.01, max_backoff=0.02)
    with Client(fake.path, reconnect=fast) as client:
        sub = client.subscribe("aex-1")
        with pytest.raises(ImpostorError):
            next(sub)
        assert sub.closed
    assert recorders[0].done.wait(30)
    fake.close()
    assert fake.accepted == 1
    assert recorders[0].received == b""


def test_expected_uid_admits_that_uid(tmp_path: Path, impostor: None) -> None:
    fake = FakeDaemon(tmp_path / "s", [_pong, _pong])
    with Client(fake.path, expected_uid=OTHER_UID) as client:
        assert client.ping().protocol_version == 1

    async def main() -> None:
        async with AsyncClient(fake.path, expected_uid=OTHER_UID) as client:
            assert (await client.ping()).protocol_version == 1

    asyncio.run(main())
    fake.close()


def test_expected_uid_from_env(
    tmp_path: Path, impostor: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_paths.EXPECTED_UID_ENV, str(OTHER_UID))
    fake = FakeDaemon(tmp_path / "s", [_pong])
    with Client(fake.path) as client:
        assert client.expected_uid == OTHER_UID
        assert client.ping().protocol_version == 1
    fake.close()
    with Client(fake.path, expected_uid=7) as client:
        assert client.expected_uid == 7  # the argument wins


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_bad_expected_uid_env(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(_paths.EXPECTED_UID_ENV, value)
    with pytest.raises(ValueError, match="STIGMER_EXPECTED_UID"):
        Client("/nowhere.sock")


# -- the private directory of the /tmp fallback --------------------------------


def _private(path: Path) -> Path:
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # whatever the umask
    return path


def test_private_dir_passes(tmp_path: Path) -> None:
    _paths.check_private_dir(str(_private(tmp_path / "d")), os.geteuid())
    _paths.check_private_dir(str(tmp_path / "missing"), os.geteuid())  # nothing listens


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o777, 0o1700])
def test_dir_with_wrong_mode_is_refused(tmp_path: Path, mode: int) -> None:
    directory = _private(tmp_path / "d")
    directory.chmod(mode)
    with pytest.raises(ImpostorError, match="not 0700"):
        _paths.check_private_dir(str(directory), os.geteuid())


def test_symlinked_dir_is_refused(tmp_path: Path) -> None:
    target = _private(tmp_path / "elsewhere")
    link = tmp_path / "d"
    link.symlink_to(target)
    with pytest.raises(ImpostorError, match="symbolic link"):
        _paths.check_private_dir(str(link), os.geteuid())


def test_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = _private(tmp_path / "d")
    with pytest.raises(ImpostorError, match=f"owned by uid {os.geteuid()}, not by uid 1234"):
        _paths.check_private_dir(str(directory), 1234)


def test_file_instead_of_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").write_text("")
    with pytest.raises(ImpostorError, match="not a directory"):
        _paths.check_private_dir(str(tmp_path / "d"), os.geteuid())


def _fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the fallback path live under ``tmp_path``; return it."""
    monkeypatch.setattr(_paths, "FALLBACK_ROOT", str(tmp_path))
    path = Path(_paths.fallback_socket_path(os.geteuid()))
    assert path == tmp_path / f"stigmer-{os.geteuid()}" / "stigmer.sock"
    return path


def test_client_uses_a_private_fallback_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _fallback(tmp_path, monkeypatch)
    _private(path.parent)
    fake = FakeDaemon(path, [_pong])
    with Client(str(path)) as client:
        assert client.ping().protocol_version == 1
    fake.close()


@pytest.mark.parametrize("flaw", ["mode", "symlink"])
def test_client_refuses_an_open_fallback_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flaw: str
) -> None:
    path = _fallback(tmp_path, monkeypatch)
    if flaw == "mode":
        _private(path.parent).chmod(0o777)
    else:
        path.parent.symlink_to(_private(tmp_path / "planted"))
    fake = FakeDaemon(path, [_pong])
    errors: List[BaseException] = []
    with Client(str(path)) as client, pytest.raises(ImpostorError):
        client.ping()

    async def main() -> None:
        async with AsyncClient(str(path)) as client:
            try:
                await client.ping()
            except ImpostorError as exc:
                errors.append(exc)

    asyncio.run(main())
    fake.close()
    assert len(errors) == 1
    assert fake.accepted == 0  # refused before connecting
