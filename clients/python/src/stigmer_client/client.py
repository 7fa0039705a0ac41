"""The synchronous client: one blocking Unix socket, multiplexed by request id."""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Deque, Dict, Iterator, List, Optional, Type

from . import _api
from ._framing import (
    DEFAULT_MAX_FRAME_LENGTH,
    PROTOCOL_VERSION,
    FrameDecoder,
    decode_response,
    encode_request,
)
from ._paths import default_socket_path
from ._proto.ai.stigmer.agentic.agentexecution.v1.api_pb2 import AgentExecution
from ._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import AgentExecutionStatus
from ._proto.stigmer.daemon.v1 import daemon_pb2
from ._stream import DROP, FINISH, REOPEN, Backoff, Event, ReconnectPolicy, ResumeState
from .errors import (
    DeadlineExceededError,
    StigmerError,
    UnavailableError,
    error_from_proto,
)

__all__ = ["DEFAULT_TIMEOUT", "Client", "Subscription"]

#: Default timeout of a unary call, in seconds.
DEFAULT_TIMEOUT = 30.0
#: Default timeout of connecting, in seconds.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Default number of events buffered for a subscription that is not being read.
DEFAULT_STREAM_BUFFER = 256

_Timeout = Optional[float]


class _ConnectionLost(Exception):
    """Internal: the connection dropped; ``error`` is what to raise to a unary caller."""

    def __init__(self, error: StigmerError) -> None:
        super().__init__(str(error))
        self.error = error


class _Inbox:
    """Frames received for one request id, not yet taken by their reader."""

    __slots__ = ("frames", "limit", "overflowed")

    def __init__(self, limit: Optional[int]) -> None:
        self.frames: Deque[daemon_pb2.Response] = collections.deque()
        self.limit = limit
        self.overflowed = False


def _deadline(timeout: _Timeout) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class Client:
    """A synchronous client of the stigmer daemon.

    Example::

        with Client() as client:
            execution = client.create("agent-1", "hello")
            for event in client.subscribe(execution.metadata.id):
                print(event.type, event.revision)

    The connection is opened on first use (or by :meth:`connect`) and shared by
    every call and subscription made through this object: a subscription's
    iterator may be interleaved with unary calls; frames are routed by request
    id, and events of a subscription that is not being read are buffered (up to
    ``stream_buffer`` per subscription; beyond that the subscription drops its
    buffer and later resumes from the daemon's history, losing nothing).

    Unary calls (``create``, ``update_status``, ...) are never retried: when
    the daemon cannot be reached or the connection drops before the reply,
    they raise :class:`~stigmer_client.UnavailableError` (the write may or may
    not have been committed). The next call reconnects. Subscriptions reconnect
    and resume by themselves (see :meth:`subscribe`).

    A ``Client`` serializes its socket operations with a lock, but it is meant
    for one thread: a thread blocked on a subscription holds the socket until an
    event arrives. Use one ``Client`` per thread, or
    :class:`stigmer_client.aio.AsyncClient` for concurrency on one connection.

    Args:
        socket_path: the daemon's socket; default :func:`default_socket_path`.
        timeout: default timeout of unary calls, seconds (``None``: wait forever).
        connect_timeout: timeout of connecting, seconds.
        max_frame_length: largest frame body sent or accepted (the daemon's limit).
        reconnect: how subscriptions reconnect; ``None`` disables reconnecting
            (a drop then raises :class:`~stigmer_client.UnavailableError` and a
            ``shutdown`` end event is delivered and ends the iteration).
        stream_buffer: events buffered per subscription that is not being read.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        *,
        timeout: _Timeout = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH,
        reconnect: Optional[ReconnectPolicy] = ReconnectPolicy(),  # noqa: B008
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
    ) -> None:
        """Configure the client; nothing is connected yet."""
        self.socket_path: str = socket_path if socket_path else default_socket_path()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame_length = max_frame_length
        self.reconnect = reconnect
        self.stream_buffer = max(1, stream_buffer)
        self._sock: Optional[socket.socket] = None
        self._decoder = FrameDecoder(max_frame_length)
        self._inbox: Dict[int, _Inbox] = {}
        self._next_id = 1
        self._generation = 0
        self._lock = threading.RLock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Client:
        """Return self (the connection opens on first use)."""
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Close the client."""
        self.close()

    def connect(self) -> None:
        """Open the connection now (it is otherwise opened on first use)."""
        with self._lock:
            self._ensure_connected()

    def close(self) -> None:
        """Close the connection; open subscriptions end, further calls raise."""
        with self._lock:
            self._closed = True
            self._disconnect()

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        return self._sock is not None

    # -- unary calls -------------------------------------------------------

    def ping(self, *, timeout: _Timeout = None) -> daemon_pb2.PingResponse:
        """Ping the daemon: its protocol and daemon versions, last revision and frame limit."""
        return self.call(_api.ping_request(), "pong", timeout=timeout).pong

    def status(
        self, *, prometheus: bool = False, timeout: _Timeout = None
    ) -> daemon_pb2.DaemonStatus:
        """The daemon's status: identity, load and counters (``stigmer status``).

        With ``prometheus=True`` the reply's ``prometheus`` field also holds the
        Prometheus text exposition.
        """
        return self.call(_api.status_request(prometheus), "status", timeout=timeout).status

    def create(
        self,
        agent_id: str,
        message: str,
        session_id: Optional[str] = None,
        *,
        execution_id: Optional[str] = None,
        model_name: Optional[str] = None,
        timeout: _Timeout = None,
    ) -> AgentExecution:
        """Create an execution; return it as stored (its id is ``.metadata.id``)."""
        request = _api.create_request(agent_id, message, session_id, execution_id, model_name)
        return self.call(request, "execution", timeout=timeout).execution.execution

    def create_execution(
        self, execution: AgentExecution, *, timeout: _Timeout = None
    ) -> daemon_pb2.ExecutionReply:
        """Create an execution from a whole ``AgentExecution``; return it and its revision."""
        request = _api.create_execution_request(execution)
        return self.call(request, "execution", timeout=timeout).execution

    def update_status(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> AgentExecution:
        """Merge ``status`` into the execution (upstream's rules); return the result.

        Raises :class:`~stigmer_client.FailedPreconditionError` once the
        execution's phase is final (completed, failed, cancelled, terminated).
        """
        return self.update_status_reply(execution_id, status, timeout=timeout).execution

    def update_status_reply(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> daemon_pb2.ExecutionReply:
        """Like :meth:`update_status`, returning the execution and the revision committed."""
        request = _api.update_status_request(execution_id, status)
        return self.call(request, "execution", timeout=timeout).execution

    def update_status_ack(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> int:
        """Like :meth:`update_status`, returning only the revision committed.

        The daemon answers with a minimal reply (``Request.minimal_reply``)
        instead of echoing the whole execution: for a runner that sends its
        cumulative status with every update, that echo grows with the transcript.
        """
        request = _api.update_status_request(execution_id, status, minimal_reply=True)
        return self.call(request, "execution", timeout=timeout).execution.revision

    def get(self, execution_id: str, *, timeout: _Timeout = None) -> AgentExecution:
        """Return the stored execution (or raise :class:`~stigmer_client.NotFoundError`)."""
        return self.get_reply(execution_id, timeout=timeout).execution

    def get_reply(
        self, execution_id: str, *, timeout: _Timeout = None
    ) -> daemon_pb2.ExecutionReply:
        """Like :meth:`get`, returning the execution and its revision."""
        return self.call(_api.get_request(execution_id), "execution", timeout=timeout).execution

    def list(
        self,
        phase: Optional[_api.PhaseLike] = None,
        session_id: Optional[str] = None,
        *,
        page_size: int = 0,
        timeout: _Timeout = None,
    ) -> List[AgentExecution]:
        """Return every execution (all pages), in creation order, optionally filtered.

        ``phase`` is an ``ExecutionPhase`` value or name (``"EXECUTION_PENDING"``
        or ``"pending"``); ``session_id`` a session id.
        """
        entries: List[AgentExecution] = []
        token = ""
        while True:
            page = self.list_page(
                phase, session_id, page_size=page_size, page_token=token, timeout=timeout
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries

    def list_page(
        self,
        phase: Optional[_api.PhaseLike] = None,
        session_id: Optional[str] = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: _Timeout = None,
    ) -> daemon_pb2.ListExecutionsResponse:
        """Return one page of executions (``next_page_token`` is empty on the last)."""
        request = _api.list_request(phase, session_id, page_size, page_token)
        return self.call(request, "list", timeout=timeout).list

    def delete(self, execution_id: str, *, timeout: _Timeout = None) -> int:
        """Delete an execution; return the revision of the deletion."""
        return self.call(
            _api.delete_request(execution_id), "deleted", timeout=timeout
        ).deleted.revision

    def call(
        self,
        request: daemon_pb2.Request,
        expect: Optional[str] = None,
        *,
        timeout: _Timeout = None,
    ) -> daemon_pb2.Response:
        """Send one request and return its reply (the low-level API).

        The client sets ``request.id`` (and ``protocol_version`` when it is 0).
        An ``error`` reply is raised as its :class:`~stigmer_client.StigmerError`
        subclass; when ``expect`` names a result field, any other result raises
        :class:`~stigmer_client.InternalError`. Not for ``subscribe``.
        """
        effective = self.timeout if timeout is None else timeout
        deadline = _deadline(effective)
        with self._lock:
            request_id = self._open_request(request, None)
            try:
                response = self._wait(request_id, deadline)
            except _ConnectionLost as lost:
                raise lost.error from None
            except _Overflow:
                raise UnavailableError("connection to the stigmer daemon lost") from None
            finally:
                self._inbox.pop(request_id, None)
        if expect is None:
            if response.WhichOneof("result") == "error":
                raise error_from_proto(response.error)
            return response
        return _api.check(response, expect)

    # -- subscriptions -----------------------------------------------------

    def subscribe(
        self,
        execution_id: str,
        from_revision: Optional[int] = None,
        *,
        reconnect: bool = True,
    ) -> Subscription:
        """Open a stream of the execution's changes; return an iterator of :class:`Event`.

        Without ``from_revision`` the first event is a ``"snapshot"``; with it,
        an ``"update"`` for every change after that revision. The iterator
        yields every revision once, in increasing order (or a ``"resync"``
        when the daemon's history no longer reaches back), and stops after an
        ``"end"`` event whose ``reason`` is ``"terminal"``, ``"deleted"`` or
        ``"cancelled"``.

        When the connection drops, or the stream ends with reason ``shutdown``
        or ``slow_consumer``, the iterator reconnects with jittered exponential
        backoff (the client's :class:`ReconnectPolicy`) and resubscribes from the
        last revision it delivered, dropping anything already delivered; the
        caller sees no gap and no duplicate. ``reconnect=False`` (or a client
        made with ``reconnect=None``) turns that off.

        The stream is opened on the first ``next()``. Close it (or leave the
        ``with`` block) to cancel it on the daemon.
        """
        return Subscription(
            self, execution_id, from_revision, reconnect and self.reconnect is not None
        )

    # -- internals ---------------------------------------------------------

    def _ensure_connected(self) -> socket.socket:
        if self._closed:
            raise UnavailableError("the client is closed")
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise UnavailableError(
                f"cannot connect to the stigmer daemon at {self.socket_path}: {exc}"
            ) from exc
        self._sock = sock
        self._decoder = FrameDecoder(self.max_frame_length)
        self._generation += 1
        return sock

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._decoder.clear()
        self._inbox.clear()

    def _alloc_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def _open_request(self, request: daemon_pb2.Request, limit: Optional[int]) -> int:
        """Connect if needed, register an inbox, send; return the request id."""
        sock = self._ensure_connected()
        request_id = self._alloc_id()
        request.id = request_id
        if request.protocol_version == 0:
            request.protocol_version = PROTOCOL_VERSION
        frame = encode_request(request, self.max_frame_length)
        self._inbox[request_id] = _Inbox(limit)
        try:
            sock.settimeout(None)
            sock.sendall(frame)
        except OSError as exc:
            self._disconnect()
            raise UnavailableError(f"connection to the stigmer daemon lost: {exc}") from exc
        return request_id

    def _send_quietly(self, request: daemon_pb2.Request) -> None:
        """Send a request whose reply nobody waits for; ignore failures."""
        if self._sock is None:
            return
        try:
            self._sock.settimeout(None)
            self._sock.sendall(encode_request(request, self.max_frame_length))
        except OSError:
            self._disconnect()

    def _cancel_stream(self, subscription_id: int) -> None:
        self._inbox.pop(subscription_id, None)
        if self._sock is not None:
            self._send_quietly(_api.cancel_request(self._alloc_id(), subscription_id))

    def _wait(self, request_id: int, deadline: Optional[float]) -> daemon_pb2.Response:
        """Read frames until one for ``request_id`` is available; route the others.

        Raises ``_ConnectionLost``, ``DeadlineExceededError``, and ``_Overflow``
        when the inbox overflowed or vanished (a disconnect).
        """
        while True:
            inbox = self._inbox.get(request_id)
            if inbox is None:
                raise _Overflow()
            if inbox.frames:
                return inbox.frames.popleft()
            if inbox.overflowed:
                raise _Overflow()
            self._read_frame(deadline)

    def _read_frame(self, deadline: Optional[float]) -> None:
        """Receive at least one frame (or time out) and route every complete one."""
        sock = self._sock
        if sock is None:
            raise _ConnectionLost(UnavailableError("not connected to the stigmer daemon"))
        while True:
            try:
                body = self._decoder.next_body()
            except StigmerError as exc:
                self._disconnect()
                raise _ConnectionLost(exc) from exc
            if body is not None:
                break
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError("timed out waiting for the stigmer daemon")
            try:
                sock.settimeout(remaining)
                data = sock.recv(256 * 1024)
            except socket.timeout:
                raise DeadlineExceededError("timed out waiting for the stigmer daemon") from None
            except OSError as exc:
                self._disconnect()
                raise _ConnectionLost(
                    UnavailableError(f"connection to the stigmer daemon lost: {exc}")
                ) from exc
            if not data:
                self._disconnect()
                raise _ConnectionLost(UnavailableError("the stigmer daemon closed the connection"))
            self._decoder.feed(data)
        try:
            response = decode_response(body)
        except StigmerError as exc:
            self._disconnect()
            raise _ConnectionLost(exc) from exc
        self._route(response)

    def _route(self, response: daemon_pb2.Response) -> None:
        if response.id == 0:
            # A connection error: the daemon closes the connection after it.
            self._disconnect()
            if response.WhichOneof("result") == "error":
                raise _ConnectionLost(error_from_proto(response.error))
            raise _ConnectionLost(UnavailableError("the stigmer daemon closed the connection"))
        inbox = self._inbox.get(response.id)
        if inbox is None or inbox.overflowed:
            return  # a reply nobody waits for (timed out, cancelled stream): drop it
        if inbox.limit is not None and len(inbox.frames) >= inbox.limit:
            # The reader fell behind: keep the buffered events, drop the rest
            # and cancel the stream; once the buffer has been read, the
            # subscription resumes from the daemon's history (no loss, and
            # every round delivers a full buffer, so it always progresses).
            inbox.overflowed = True
            self._send_quietly(_api.cancel_request(self._alloc_id(), response.id))
            return
        inbox.frames.append(response)


class _Overflow(Exception):
    """Internal: a subscription's inbox overflowed (or vanished); reopen it."""


class Subscription(Iterator[Event]):
    """An iterator of a subscription's :class:`Event` objects (see :meth:`Client.subscribe`).

    Also a context manager: leaving it cancels the stream on the daemon.
    """

    def __init__(
        self, client: Client, execution_id: str, from_revision: Optional[int], reconnect: bool
    ) -> None:
        """Prepare a subscription; it is opened on the first ``next()``."""
        self._client = client
        self._state = ResumeState(execution_id, from_revision, reconnect)
        self._backoff = Backoff(client.reconnect or ReconnectPolicy())
        self._id: Optional[int] = None
        self._generation = -1

    @property
    def execution_id(self) -> str:
        """The execution this subscription follows."""
        return self._state.execution_id

    @property
    def last_revision(self) -> Optional[int]:
        """The last revision delivered (resume from it), or the ``from_revision`` given."""
        return self._state.last_revision

    @property
    def closed(self) -> bool:
        """Whether the iteration is over."""
        return self._state.done

    def __iter__(self) -> Subscription:
        """Return self."""
        return self

    def __next__(self) -> Event:
        """Return the next event (blocking); ``StopIteration`` after the final ``end``."""
        event = self.next_event()
        if event is None:
            raise StopIteration
        return event

    def __enter__(self) -> Subscription:
        """Return self."""
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Close the subscription."""
        self.close()

    def close(self) -> None:
        """Cancel the stream on the daemon (without waiting) and end the iteration."""
        with self._client._lock:
            inbox = self._client._inbox.get(self._id) if self._id is not None else None
            if inbox is not None and self._generation == self._client._generation:
                if inbox.overflowed:
                    self._client._inbox.pop(self._id, None)  # type: ignore[arg-type]
                else:
                    self._client._cancel_stream(self._id)  # type: ignore[arg-type]
            self._id = None
            self._state.done = True

    def next_event(self, timeout: _Timeout = None) -> Optional[Event]:
        """Return the next event, or ``None`` when the iteration is over.

        Raises :class:`~stigmer_client.DeadlineExceededError` when ``timeout``
        (seconds) passes first; the subscription stays usable.
        """
        deadline = _deadline(timeout)
        client = self._client
        with client._lock:
            while not self._state.done:
                stale = self._id is None or self._generation != client._generation
                if stale and not self._open(deadline):
                    continue
                assert self._id is not None
                try:
                    response = client._wait(self._id, deadline)
                except _Overflow:
                    client._inbox.pop(self._id, None)
                    self._id = None
                    continue
                except _ConnectionLost as lost:
                    self._id = None
                    if not self._state.is_retryable(lost.error):
                        # A connection error the daemon stated (too many
                        # connections, permission denied, ...) or a broken
                        # frame: retrying would only be refused again.
                        self._state.done = True
                        raise lost.error from None
                    self._retry_or_raise(lost.error, deadline)
                    continue
                kind = response.WhichOneof("result")
                if kind == "error":
                    client._inbox.pop(self._id, None)
                    self._id = None
                    error = error_from_proto(response.error)
                    if self._state.is_retryable(error):
                        self._retry_or_raise(error, deadline)
                        continue
                    self._state.done = True
                    raise error
                if kind != "event":
                    continue
                self._backoff.reset()  # any event proves the daemon is back
                action, event = self._state.process(response.event)
                if action == DROP:
                    continue
                if action == REOPEN:
                    client._inbox.pop(self._id, None)
                    self._id = None
                    self._retry_or_raise(
                        UnavailableError(f"stream ended: {response.event.message or 'resumable'}"),
                        deadline,
                    )
                    continue
                if action == FINISH:
                    client._inbox.pop(self._id, None)
                    self._id = None
                return event
        return None

    def _open(self, deadline: Optional[float]) -> bool:
        """(Re)send the subscribe request; False when it must be retried."""
        client = self._client
        try:
            request = daemon_pb2.Request(subscribe=self._state.subscribe_request())
            self._id = client._open_request(request, client.stream_buffer)
            self._generation = client._generation
            return True
        except UnavailableError as error:
            if client._closed:
                self._state.done = True
                raise
            self._id = None
            self._retry_or_raise(error, deadline)
            return False

    def _retry_or_raise(self, error: StigmerError, deadline: Optional[float]) -> None:
        """Sleep the backoff delay before reconnecting, or raise when that is not allowed."""
        if not self._state.reconnect or self._client._closed:
            self._state.done = True
            raise error
        try:
            delay = self._backoff.next_delay(error)
        except UnavailableError:
            self._state.done = True
            raise
        remaining = _remaining(deadline)
        if remaining is not None and remaining < delay:
            time.sleep(remaining)
            raise DeadlineExceededError("timed out waiting for a subscription event")
        time.sleep(delay)
