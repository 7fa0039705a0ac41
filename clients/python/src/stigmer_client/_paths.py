"""Where the daemon's socket is, resolved exactly as the daemon resolves it."""

from __future__ import annotations

import os

#: Environment variable that overrides the socket path.
SOCKET_ENV = "STIGMER_SOCKET"
#: The system service's socket (used when running as root).
SYSTEM_SOCKET = "/run/stigmer.sock"


def default_socket_path() -> str:
    """Return the daemon's default socket path.

    ``$STIGMER_SOCKET`` when set and non-empty, else ``/run/stigmer.sock`` when
    the effective user is root, else ``$XDG_RUNTIME_DIR/stigmer.sock``, else
    ``/tmp/stigmer-$UID.sock`` (the same rules as the daemon and the Rust
    client, see ``clients/rust/src/paths.rs``).
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
    return f"/tmp/stigmer-{euid}.sock"
