"""The I/O primitives of the clients: each asyncio class and its blocking twin.

The asyncio client (``aio.py``) is the only hand-written client: the
synchronous one (``client.py``) is generated from it by
``scripts/unasync.py``, which strips ``async``/``await`` and renames
``AsyncSocket`` to ``SyncSocket``, ``AsyncLock`` to ``SyncLock``,
``AsyncWaiters`` to ``SyncWaiters`` and ``async_sleep`` to ``sync_sleep``.
Everything that differs between asyncio and blocking code is here, as pairs of
classes with the same methods, so that the generated code reads naturally.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import select
import socket
import threading
import time
from types import TracebackType
from typing import Dict, Iterable, List, Optional, Type, TypeVar

#: The most bytes read from the socket at once.
RECV_SIZE = 256 * 1024


def to_deadline(timeout: Optional[float]) -> Optional[float]:
    """The ``time.monotonic()`` at which ``timeout`` seconds from now have passed."""
    return None if timeout is None else time.monotonic() + timeout


def time_left(deadline: Optional[float]) -> Optional[float]:
    """Seconds left until ``deadline`` (never negative; ``None``: no deadline)."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


_W = TypeVar("_W")


def _first(waiting: Dict[int, List[_W]]) -> _W:
    """Remove and return the longest waiting waiter."""
    key = next(iter(waiting))
    waiters = waiting[key]
    woken = waiters.pop(0)
    if not waiters:
        del waiting[key]
    return woken


def _forget(waiting: Dict[int, List[_W]], key: int, woken: _W) -> None:
    """Remove a waiter that is no longer waiting (when still there)."""
    waiters = waiting.get(key)
    if waiters is not None and woken in waiters:
        waiters.remove(woken)
        if not waiters:
            del waiting[key]


# -- asyncio -----------------------------------------------------------------


class AsyncSocket:
    """A connected Unix socket, asyncio flavour (a stream reader and writer)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open connection."""
        self._reader = reader
        self._writer = writer
        self._drain_lock = AsyncLock()  # Python 3.9 refuses concurrent drains

    @classmethod
    async def connect(cls, path: str, timeout: Optional[float]) -> AsyncSocket:
        """Connect to ``path``; raise ``OSError`` (``TimeoutError`` after ``timeout``)."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"timed out after {timeout}s") from None
        return cls(reader, writer)

    def fileno(self) -> int:
        """The socket's file descriptor."""
        return int(self._writer.get_extra_info("socket").fileno())

    async def recv(self, deadline: Optional[float]) -> bytes:
        """Some received bytes, ``b""`` at the end of the stream.

        Raises ``TimeoutError`` when ``deadline`` passes first (no byte is
        lost: they stay buffered for the next call).
        """
        if deadline is None:
            return await self._reader.read(RECV_SIZE)
        try:
            return await asyncio.wait_for(self._reader.read(RECV_SIZE), time_left(deadline))
        except asyncio.TimeoutError:
            raise TimeoutError("timed out") from None

    async def send(self, data: bytes) -> None:
        """Queue ``data`` whole once the queue has room; the event loop writes it.

        It waits for room *before* queueing, not after: a caller waiting here
        has no reply due yet, while every caller whose frame is queued goes on
        to wait for its reply, so one of those reads the socket, and the daemon
        (which stops reading when its replies are not read) keeps reading.
        """
        async with self._drain_lock:
            try:
                await self._writer.drain()
            except RuntimeError as exc:  # a closed transport, on some versions
                raise ConnectionError(str(exc)) from exc
            self.write_nowait(data)

    def write_nowait(self, data: bytes) -> None:
        """Queue ``data`` without waiting for it to be sent."""
        try:
            self._writer.write(data)
        except RuntimeError as exc:
            raise ConnectionError(str(exc)) from exc

    def close(self) -> None:
        """Close the connection (a pending :meth:`recv` returns ``b""``)."""
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.close()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        with contextlib.suppress(OSError, RuntimeError, asyncio.CancelledError):
            await self._writer.wait_closed()


class AsyncLock:
    """An ``asyncio.Lock`` made on first use (Python 3.9 binds it to a loop when made)."""

    def __init__(self) -> None:
        """Make an unlocked lock."""
        self._lock: Optional[asyncio.Lock] = None

    async def __aenter__(self) -> None:
        """Acquire the lock."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        await self._lock.acquire()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Release the lock."""
        assert self._lock is not None
        self._lock.release()


class AsyncWaiters:
    """Tasks waiting for frames of a connection, asyncio flavour.

    Use as ``async with waiters:`` around checking for a frame and, when
    there is none yet, ``await waiters.wait(key, timeout)``; whoever routes
    frames wakes the waiters of their keys. asyncio switches tasks only at an
    ``await``, so nothing can change between the check and the wait: entering
    is a no-op here (the blocking twin takes a lock).
    """

    def __init__(self) -> None:
        """Nobody is waiting yet."""
        # The waiters of each key; keys in the order their first waiter came.
        self._waiting: Dict[int, List[asyncio.Future[None]]] = {}

    async def __aenter__(self) -> None:
        """Nothing to do (see the class documentation)."""

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Nothing to do."""

    async def wait(self, key: int, timeout: Optional[float]) -> bool:
        """Wait until woken; False when ``timeout`` seconds passed first."""
        woken = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(woken)
        try:
            await asyncio.wait({woken}, timeout=timeout)
            return woken.done()
        except BaseException:  # cancelled: pass on a wake-up that came meanwhile
            if woken.done():
                self.notify((), one_more=True)
            raise
        finally:
            if not woken.done():
                _forget(self._waiting, key, woken)

    def notify(self, keys: Iterable[int], one_more: bool = False) -> None:
        """Wake the waiters of ``keys`` and, with ``one_more``, the longest waiting other."""
        for key in keys:
            for woken in self._waiting.pop(key, ()):
                woken.set_result(None)
        if one_more and self._waiting:
            _first(self._waiting).set_result(None)

    def notify_all(self) -> None:
        """Wake every waiter."""
        waiting, self._waiting = self._waiting, {}
        for waiters in waiting.values():
            for woken in waiters:
                woken.set_result(None)


async def async_sleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


# -- blocking ----------------------------------------------------------------


class SyncSocket:
    """A connected Unix socket, blocking flavour; safe to share between threads."""

    def __init__(self, sock: socket.socket) -> None:
        """Wrap an open, blocking socket."""
        self._sock = sock
        self._write_lock = threading.Lock()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    @classmethod
    def connect(cls, path: str, timeout: Optional[float]) -> SyncSocket:
        """Connect to ``path``; raise ``OSError`` (``TimeoutError`` after ``timeout``)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def fileno(self) -> int:
        """The socket's file descriptor."""
        return self._sock.fileno()

    def recv(self, deadline: Optional[float]) -> bytes:
        """Some received bytes, ``b""`` at the end of the stream.

        Raises ``TimeoutError`` when ``deadline`` passes first.
        """
        left = time_left(deadline)
        if left is not None and not self._poll.poll(math.ceil(left * 1000)):
            raise TimeoutError("timed out")
        return self._sock.recv(RECV_SIZE)

    def send(self, data: bytes) -> None:
        """Send ``data`` whole (frames of concurrent callers never interleave)."""
        with self._write_lock:
            self._sock.sendall(data)

    def write_nowait(self, data: bytes) -> None:
        """Send ``data`` (a blocking socket has no queue: the same as :meth:`send`)."""
        self.send(data)

    def close(self) -> None:
        """Close the connection (a :meth:`recv` in another thread returns ``b""``)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()

    def wait_closed(self) -> None:
        """Nothing to wait for: :meth:`close` closed the socket."""


class SyncLock:
    """A ``threading.Lock`` used as ``with lock:``."""

    def __init__(self) -> None:
        """Make an unlocked lock."""
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        """Acquire the lock."""
        self._lock.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Release the lock."""
        self._lock.release()


class SyncWaiters:
    """Threads waiting for frames of a connection, blocking flavour.

    Use as ``with waiters:`` (a lock) around checking for a frame and, when
    there is none yet, ``waiters.wait(key, timeout)``, which releases the lock
    while waiting: a wake-up sent in between is not missed.
    """

    def __init__(self) -> None:
        """Nobody is waiting yet."""
        self._lock = threading.RLock()
        # The waiters of each key; keys in the order their first waiter came.
        self._waiting: Dict[int, List[threading.Condition]] = {}

    def __enter__(self) -> None:
        """Take the lock."""
        self._lock.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Release the lock."""
        self._lock.release()

    def wait(self, key: int, timeout: Optional[float]) -> bool:
        """Wait until woken; False when ``timeout`` seconds passed first."""
        woken = threading.Condition(self._lock)
        self._waiting.setdefault(key, []).append(woken)
        try:
            woken.wait(timeout)
            # Woken also when the wake-up came just as the timeout expired.
            return woken not in self._waiting.get(key, ())
        except BaseException:  # interrupted: pass on a wake-up that came meanwhile
            if woken not in self._waiting.get(key, ()):
                self.notify((), one_more=True)
            raise
        finally:
            _forget(self._waiting, key, woken)

    def notify(self, keys: Iterable[int], one_more: bool = False) -> None:
        """Wake the waiters of ``keys`` and, with ``one_more``, the longest waiting other."""
        with self._lock:
            for key in keys:
                for woken in self._waiting.pop(key, ()):
                    woken.notify()
            if one_more and self._waiting:
                _first(self._waiting).notify()

    def notify_all(self) -> None:
        """Wake every waiter."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            for waiters in waiting.values():
                for woken in waiters:
                    woken.notify()


def sync_sleep(seconds: float) -> None:
    """Sleep (blocking the thread)."""
    time.sleep(seconds)
