"""A Unix-socket proxy in front of the real daemon that can lose a reply.

It forwards frames both ways, records every request, and, when armed for a
command, drops the connection instead of forwarding that command's next
reply: the daemon has committed the request, the client never hears of it
(as when a connection breaks at the worst moment). An optional hook runs
first, while the client is still waiting (e.g. restart the daemon).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Callable, Dict, List, Optional

from stigmer_client import Request, Response

_HEADER = struct.Struct(">I")


def _read_frame(sock: socket.socket) -> Optional[bytes]:
    """One frame's body, or None at EOF or on a broken connection."""
    header = _exact(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    return _exact(sock, length) if length else b""


def _exact(sock: socket.socket, n: int) -> Optional[bytes]:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Pair:
    """One client connection and its connection to the daemon."""

    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        #: Request id -> command, for the replies to drop.
        self.doomed: Dict[int, str] = {}

    def close(self) -> None:
        _close(self.client)
        _close(self.upstream)

    def pump_requests(self) -> None:
        while True:
            body = _read_frame(self.client)
            if body is None:
                break
            request = Request.FromString(body)
            command = request.WhichOneof("command") or ""
            proxy = self.proxy
            with proxy.lock:
                proxy.requests.append(request)
                if proxy.drop_reply_to == command:
                    proxy.drop_reply_to = None
                    self.doomed[request.id] = command
            try:
                self.upstream.sendall(_HEADER.pack(len(body)) + body)
            except OSError:
                break
        self.close()

    def pump_replies(self) -> None:
        while True:
            body = _read_frame(self.upstream)
            if body is None:
                break
            response = Response.FromString(body)
            if response.id in self.doomed:
                self.proxy.dropped.append(response)
                hook = self.proxy.on_drop
                if hook is not None:
                    hook()
                break
            try:
                self.client.sendall(_HEADER.pack(len(body)) + body)
            except OSError:
                break
        self.close()


class Proxy:
    """Listens on ``path``; each connection is forwarded to the daemon at ``target``."""

    def __init__(self, path: str, target: str) -> None:
        self.path = path
        self.target = target
        self.lock = threading.Lock()
        #: Every request forwarded, in order.
        self.requests: List[Request] = []
        #: The replies dropped (the daemon sent them; the client never got them).
        self.dropped: List[Response] = []
        #: Drop the next reply to this command (e.g. ``"append"``) with its connection.
        self.drop_reply_to: Optional[str] = None
        #: Runs before the connection is dropped.
        self.on_drop: Optional[Callable[[], None]] = None
        self.connections = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(16)
        self._threads: List[threading.Thread] = []
        self._pairs: List[_Pair] = []
        acceptor = threading.Thread(target=self._accept, daemon=True)
        acceptor.start()

    def requests_of(self, command: str) -> List[Request]:
        """The requests forwarded for ``command``."""
        with self.lock:
            return [r for r in self.requests if r.WhichOneof("command") == command]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:  # the daemon is down: so is the proxy, for this client
                _close(client)
                upstream.close()
                continue
            self.connections += 1
            pair = _Pair(self, client, upstream)
            self._pairs.append(pair)
            for target in (pair.pump_requests, pair.pump_replies):
                thread = threading.Thread(target=target, daemon=True)
                self._threads.append(thread)
                thread.start()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        _close(self._listener)
        for pair in self._pairs:
            pair.close()
        for thread in self._threads:
            thread.join(timeout=30)
