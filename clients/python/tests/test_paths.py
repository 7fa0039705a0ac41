from __future__ import annotations

import pytest

from stigmer_client import default_socket_path


def test_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STIGMER_SOCKET", "/x/y.sock")
    assert default_socket_path() == "/x/y.sock"


def test_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STIGMER_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_socket_path() == "/run/stigmer.sock"


def test_user_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STIGMER_SOCKET", "")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert default_socket_path() == "/run/user/1000/stigmer.sock"


def test_user_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STIGMER_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert default_socket_path() == "/tmp/stigmer-1000/stigmer.sock"
