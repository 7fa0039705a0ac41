"""Where the daemon's socket is, and whether whoever answers there may be trusted.

The socket path is resolved exactly as the daemon resolves it. Before a
request is sent, the clients check that the path is not a trap (the
``/tmp`` fallback must be in a private directory of the user) and that the
process that accepted the connection runs as root, as the user, or as the
uid the user said to expect: a process of another user listening on the path
would otherwise receive every request and could answer anything.
"""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import struct
import sys
from typing import Optional

from .errors import ImpostorError, UnavailableError

#: Environment variable that overrides the socket path.
SOCKET_ENV = "STIGMER_SOCKET"
#: Environment variable naming one more uid the daemon may run as.
EXPECTED_UID_ENV = "STIGMER_EXPECTED_UID"
#: The system service's socket (used when running as root).
SYSTEM_SOCKET = "/run/stigmer.sock"
#: Where the fallback socket's private directory is made.
FALLBACK_ROOT = "/tmp"

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def fallback_socket_path(euid: int) -> str:
    """The socket path of a user with no ``$XDG_RUNTIME_DIR``: in a private directory."""
    return os.path.join(FALLBACK_ROOT, f"stigmer-{euid}", "stigmer.sock")


def default_socket_path() -> str:
    """Return the daemon's default socket path.

    ``$STIGMER_SOCKET`` when set and non-empty, else ``/run/stigmer.sock`` when
    the effective user is root, else ``$XDG_RUNTIME_DIR/stigmer.sock``, else
    ``/tmp/stigmer-$UID/stigmer.sock`` (the same rules as the daemon and the
    Rust client, see ``clients/rust/src/paths.rs``).
    """
    env = os.environ.get(SOCKET_ENV)
    if env:
        return env
    euid = os.geteuid()
    if euid == 0:
        return SYSTEM_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "stigmer.sock")
    return fallback_socket_path(euid)


def check_socket_path(path: str) -> None:
    """Refuse the fallback socket path when its directory is not the user's private one.

    Anyone can create ``/tmp/stigmer-<uid>`` before the user's daemon does;
    only a directory the user owns, of mode 0700 and not a symbolic link,
    keeps others from binding the socket in it. Other paths are not checked.
    """
    euid = os.geteuid()
    if path == fallback_socket_path(euid):
        check_private_dir(os.path.dirname(path), euid)


def check_private_dir(directory: str, euid: int) -> None:
    """Raise :class:`ImpostorError` unless ``directory`` is ``euid``'s, mode 0700, no symlink.

    A directory that does not exist passes: nothing listens in it, and
    connecting fails with its own error.
    """
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnavailableError(f"cannot inspect the socket directory {directory}: {exc}") from exc
    refuse = f"refusing the socket directory {directory}"
    if stat.S_ISLNK(info.st_mode):
        raise ImpostorError(f"{refuse}: it is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise ImpostorError(f"{refuse}: it is not a directory")
    if info.st_uid != euid:
        raise ImpostorError(f"{refuse}: it is owned by uid {info.st_uid}, not by uid {euid}")
    mode = stat.S_IMODE(info.st_mode)
    if mode != 0o700:
        raise ImpostorError(f"{refuse}: its mode is {mode:04o}, not 0700")


def expected_uid_from_env() -> Optional[int]:
    """The uid in ``$STIGMER_EXPECTED_UID`` (``None`` when unset or empty)."""
    value = os.environ.get(EXPECTED_UID_ENV, "").strip()
    if not value:
        return None
    try:
        uid = int(value)
    except ValueError:
        uid = -1
    if uid < 0:
        raise ValueError(f"${EXPECTED_UID_ENV} must be a uid (a number), not {value!r}")
    return uid


def peer_uid(fd: int) -> Optional[int]:
    """The uid of the process at the other end of the connected Unix socket ``fd``.

    ``None`` when this platform offers no way to ask (the check is skipped).
    Tests replace this function to play a daemon of another user.
    """
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        _pid, uid, _gid = _UCRED.unpack(creds)
        return int(uid)
    if sys.platform == "darwin" or "bsd" in sys.platform:
        # getpeereid(3) (macOS and the BSDs); Python does not wrap it. Not
        # exercised by the tests, which run on Linux.
        getpeereid = getattr(ctypes.CDLL(None, use_errno=True), "getpeereid", None)
        if getpeereid is None:
            return None
        uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
        if getpeereid(fd, ctypes.byref(uid), ctypes.byref(gid)) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return int(uid.value)
    return None  # no known way on this platform: the check is skipped


def check_peer(fd: int, path: str, expected_uid: Optional[int]) -> None:
    """Raise :class:`ImpostorError` unless the peer of ``fd`` is root, us or ``expected_uid``."""
    try:
        uid = peer_uid(fd)
    except OSError as exc:
        raise UnavailableError(f"cannot read who listens on {path}: {exc}") from exc
    euid = os.geteuid()
    if uid is None or uid in (0, euid) or uid == expected_uid:
        return
    expected = "" if expected_uid is None else f", nor the expected uid {expected_uid}"
    raise ImpostorError(
        f"refusing the process listening on {path}: it runs as uid {uid}, which is neither "
        f"root nor this user (uid {euid}){expected}. If that is the daemon, pass "
        f"expected_uid={uid} (or set ${EXPECTED_UID_ENV}={uid})"
    )
