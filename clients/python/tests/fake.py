"""A scripted stand-in for the daemon, for client behaviour the real one cannot force."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from pathlib import Path
from typing import Callable, List, Optional

from stigmer_client import Request, Response, daemon_pb2


class FakeConn:
    """One accepted connection, seen from the fake daemon."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        self.sock.settimeout(30.0)

    def recv(self) -> Optional[Request]:
        """The next request, or None at EOF."""
        header = self._exact(4)
        if header is None:
            return None
        (length,) = struct.unpack(">I", header)
        body = self._exact(length) if length else b""
        if body is None:
            return None
        return Request.FromString(body)

    def recv_command(self, command: str) -> Request:
        """The next request that is not a cancel; it must be ``command``."""
        while True:
            request = self.recv()
            assert request is not None, f"EOF waiting for {command}"
            if request.WhichOneof("command") == "cancel" and command != "cancel":
                continue
            assert request.WhichOneof("command") == command, request
            return request

    def _exact(self, n: int) -> Optional[bytes]:
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def send(self, response: Response) -> None:
        """Send one response frame."""
        body = response.SerializeToString()
        with contextlib.suppress(OSError):
            self.sock.sendall(struct.pack(">I", len(body)) + body)

    def event(self, request_id: int, kind: int, revision: int, reason: int = 0) -> None:
        """Send one event on stream ``request_id``."""
        response = Response(id=request_id)
        response.event.type = kind  # type: ignore[assignment]
        response.event.revision = revision
        response.event.execution_id = "aex-1"
        if kind != daemon_pb2.EVENT_END:
            response.event.execution.metadata.id = "aex-1"
            response.event.execution.status.error = f"rev{revision}"
        else:
            response.event.reason = reason  # type: ignore[assignment]
        self.send(response)

    def pong(self, request_id: int) -> None:
        """Answer a ping."""
        response = Response(id=request_id)
        response.pong.protocol_version = 1
        self.send(response)

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


Handler = Callable[[FakeConn], None]


class FakeDaemon:
    """Accepts connections on ``path`` and runs ``handlers[i]`` on the i-th one."""

    def __init__(self, path: Path, handlers: List[Handler]) -> None:
        self.path = str(path)
        self.handlers = handlers
        self.errors: List[BaseException] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.threads: List[threading.Thread] = []
        self.accepted = 0
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            index = self.accepted
            self.accepted += 1
            if index >= len(self.handlers):
                sock.close()
                continue
            thread = threading.Thread(
                target=self._run, args=(self.handlers[index], FakeConn(sock, index)), daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def _run(self, handler: Handler, conn: FakeConn) -> None:
        try:
            handler(conn)
        except BaseException as exc:  # reported by close()
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop accepting; re-raise the first handler failure."""
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=30)
        if self.errors:
            raise self.errors[0]
