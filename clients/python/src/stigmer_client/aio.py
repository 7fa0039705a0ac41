"""The asyncio client: one connection, one reader task, many concurrent calls.

Example::

    import asyncio
    from stigmer_client.aio import AsyncClient

    async def main() -> None:
        async with AsyncClient() as client:
            execution = await client.create("agent-1", "hello")
            async for event in client.subscribe(execution.metadata.id):
                print(event.type, event.revision)

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from types import TracebackType
from typing import AsyncIterator, Deque, Dict, List, Optional, Set, Type

from . import _api
from ._framing import (
    DEFAULT_MAX_FRAME_LENGTH,
    HEADER_LENGTH,
    PROTOCOL_VERSION,
    decode_length,
    decode_response,
    encode_request,
)
from ._paths import default_socket_path
from ._proto.ai.stigmer.agentic.agentexecution.v1.api_pb2 import AgentExecution
from ._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import AgentExecutionStatus
from ._proto.stigmer.daemon.v1 import daemon_pb2
from ._stream import DROP, FINISH, REOPEN, Backoff, Event, ReconnectPolicy, ResumeState
from .client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_STREAM_BUFFER, DEFAULT_TIMEOUT
from .errors import (
    DeadlineExceededError,
    StigmerError,
    UnavailableError,
    error_from_proto,
)

__all__ = ["AsyncClient", "AsyncSubscription"]

_Timeout = Optional[float]


class _Inbox:
    """Events received for one stream, not yet taken by its reader."""

    __slots__ = ("frames", "lost", "overflowed", "wake")

    def __init__(self) -> None:
        self.frames: Deque[daemon_pb2.Response] = collections.deque()
        self.lost: Optional[StigmerError] = None
        self.overflowed = False
        self.wake = asyncio.Event()


class _Connection:
    """One open connection and what is waiting on it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, generation: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.generation = generation
        self.pending: Dict[int, asyncio.Future[daemon_pb2.Response]] = {}
        self.streams: Dict[int, _Inbox] = {}
        self.drain_lock = asyncio.Lock()
        self.closed = False
        self.task: Optional[asyncio.Task[None]] = None


def _deadline(timeout: _Timeout) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class AsyncClient:
    """An asyncio client of the stigmer daemon.

    The same API as :class:`stigmer_client.Client`, as coroutines. One
    connection carries every call and subscription of the client at once: a
    reader task routes each reply and event by request id, so calls from many
    tasks run concurrently. Requests are written in the order the coroutines
    are called, so updates of one execution sent from one client commit in that
    order even when not awaited one by one.

    Unary calls are never retried (they raise
    :class:`~stigmer_client.UnavailableError` when the connection drops;
    the next call reconnects); subscriptions reconnect and resume by themselves.

    Args: as :class:`stigmer_client.Client`.
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
        self._conn: Optional[_Connection] = None
        self._connect_lock: Optional[asyncio.Lock] = None
        self._next_id = 1
        self._generation = 0
        self._closed = False
        self._background: Set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> AsyncClient:
        """Return self (the connection opens on first use)."""
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Close the client."""
        await self.close()

    async def connect(self) -> None:
        """Open the connection now (it is otherwise opened on first use)."""
        await self._ensure_connected()

    async def close(self) -> None:
        """Close the connection; pending calls and subscriptions raise."""
        self._closed = True
        conn = self._conn
        if conn is not None:
            self._lose(conn, UnavailableError("the client is closed"))
            if conn.task is not None:
                conn.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await conn.task
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await conn.writer.wait_closed()

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        return self._conn is not None and not self._conn.closed

    # -- unary calls -------------------------------------------------------

    async def ping(self, *, timeout: _Timeout = None) -> daemon_pb2.PingResponse:
        """Ping the daemon (see :meth:`stigmer_client.Client.ping`)."""
        return (await self.call(_api.ping_request(), "pong", timeout=timeout)).pong

    async def status(
        self, *, prometheus: bool = False, timeout: _Timeout = None
    ) -> daemon_pb2.DaemonStatus:
        """The daemon's status (see :meth:`stigmer_client.Client.status`)."""
        request = _api.status_request(prometheus)
        return (await self.call(request, "status", timeout=timeout)).status

    async def create(
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
        return (await self.call(request, "execution", timeout=timeout)).execution.execution

    async def create_execution(
        self, execution: AgentExecution, *, timeout: _Timeout = None
    ) -> daemon_pb2.ExecutionReply:
        """Create an execution from a whole ``AgentExecution``; return it and its revision."""
        request = _api.create_execution_request(execution)
        return (await self.call(request, "execution", timeout=timeout)).execution

    async def update_status(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> AgentExecution:
        """Merge ``status`` into the execution; return the result.

        Raises :class:`~stigmer_client.FailedPreconditionError` once the
        execution's phase is final.
        """
        return (await self.update_status_reply(execution_id, status, timeout=timeout)).execution

    async def update_status_reply(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> daemon_pb2.ExecutionReply:
        """Like :meth:`update_status`, returning the execution and the revision committed."""
        request = _api.update_status_request(execution_id, status)
        return (await self.call(request, "execution", timeout=timeout)).execution

    async def update_status_ack(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> int:
        """Like :meth:`update_status`, returning only the revision committed (a minimal reply)."""
        request = _api.update_status_request(execution_id, status, minimal_reply=True)
        return (await self.call(request, "execution", timeout=timeout)).execution.revision

    async def get(self, execution_id: str, *, timeout: _Timeout = None) -> AgentExecution:
        """Return the stored execution (or raise :class:`~stigmer_client.NotFoundError`)."""
        return (await self.get_reply(execution_id, timeout=timeout)).execution

    async def get_reply(
        self, execution_id: str, *, timeout: _Timeout = None
    ) -> daemon_pb2.ExecutionReply:
        """Like :meth:`get`, returning the execution and its revision."""
        request = _api.get_request(execution_id)
        return (await self.call(request, "execution", timeout=timeout)).execution

    async def list(
        self,
        phase: Optional[_api.PhaseLike] = None,
        session_id: Optional[str] = None,
        *,
        page_size: int = 0,
        timeout: _Timeout = None,
    ) -> List[AgentExecution]:
        """Return every execution (all pages), in creation order, optionally filtered."""
        entries: List[AgentExecution] = []
        token = ""
        while True:
            page = await self.list_page(
                phase, session_id, page_size=page_size, page_token=token, timeout=timeout
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries

    async def list_page(
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
        return (await self.call(request, "list", timeout=timeout)).list

    async def delete(self, execution_id: str, *, timeout: _Timeout = None) -> int:
        """Delete an execution; return the revision of the deletion."""
        request = _api.delete_request(execution_id)
        return (await self.call(request, "deleted", timeout=timeout)).deleted.revision

    async def call(
        self,
        request: daemon_pb2.Request,
        expect: Optional[str] = None,
        *,
        timeout: _Timeout = None,
    ) -> daemon_pb2.Response:
        """Send one request and return its reply (see :meth:`stigmer_client.Client.call`)."""
        effective = self.timeout if timeout is None else timeout
        conn = await self._ensure_connected()
        request_id = self._prepare(request)
        frame = encode_request(request, self.max_frame_length)
        future: asyncio.Future[daemon_pb2.Response] = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = future
        try:
            await self._write(conn, frame)
            try:
                response = await asyncio.wait_for(future, effective)
            except asyncio.TimeoutError:
                raise DeadlineExceededError("timed out waiting for the stigmer daemon") from None
        finally:
            conn.pending.pop(request_id, None)
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
    ) -> AsyncSubscription:
        """Open a stream of the execution's changes: an async iterator of :class:`Event`.

        The same semantics as :meth:`stigmer_client.Client.subscribe`
        (every revision once and in order, reconnect and resume).
        """
        return AsyncSubscription(
            self, execution_id, from_revision, reconnect and self.reconnect is not None
        )

    # -- internals ---------------------------------------------------------

    def _prepare(self, request: daemon_pb2.Request) -> int:
        request_id = self._next_id
        self._next_id += 1
        request.id = request_id
        if request.protocol_version == 0:
            request.protocol_version = PROTOCOL_VERSION
        return request_id

    async def _ensure_connected(self) -> _Connection:
        if self._closed:
            raise UnavailableError("the client is closed")
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                return conn
            if self._closed:
                raise UnavailableError("the client is closed")
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(self.socket_path), self.connect_timeout
                )
            except (OSError, asyncio.TimeoutError) as exc:
                raise UnavailableError(
                    f"cannot connect to the stigmer daemon at {self.socket_path}: {exc!r}"
                ) from exc
            self._generation += 1
            conn = _Connection(reader, writer, self._generation)
            conn.task = asyncio.ensure_future(self._read_loop(conn))
            self._conn = conn
            return conn

    async def _write(self, conn: _Connection, frame: bytes) -> None:
        if conn.closed:
            raise UnavailableError("connection to the stigmer daemon lost")
        try:
            conn.writer.write(frame)
            async with conn.drain_lock:
                await conn.writer.drain()
        except (OSError, RuntimeError) as exc:
            error = UnavailableError(f"connection to the stigmer daemon lost: {exc!r}")
            self._lose(conn, error)
            raise error from exc

    def _write_quietly(self, conn: _Connection, request: daemon_pb2.Request) -> None:
        """Queue a request whose reply nobody waits for (a cancel)."""
        if conn.closed:
            return
        try:
            conn.writer.write(encode_request(request, self.max_frame_length))
        except (OSError, RuntimeError):
            return

    def _cancel_stream(self, conn: _Connection, subscription_id: int) -> None:
        conn.streams.pop(subscription_id, None)
        request = _api.cancel_request(self._next_id, subscription_id)
        self._next_id += 1
        self._write_quietly(conn, request)

    async def _read_loop(self, conn: _Connection) -> None:
        error: StigmerError = UnavailableError("the stigmer daemon closed the connection")
        try:
            while True:
                header = await conn.reader.readexactly(HEADER_LENGTH)
                length = decode_length(header, self.max_frame_length)
                body = await conn.reader.readexactly(length) if length else b""
                response = decode_response(body)
                if response.id == 0:
                    if response.WhichOneof("result") == "error":
                        error = error_from_proto(response.error)
                    break
                self._route(conn, response)
        except asyncio.IncompleteReadError:
            pass
        except StigmerError as exc:
            error = exc
        except OSError as exc:
            error = UnavailableError(f"connection to the stigmer daemon lost: {exc!r}")
        except asyncio.CancelledError:
            error = UnavailableError("the client is closed")
            self._lose(conn, error)
            raise
        self._lose(conn, error)

    def _route(self, conn: _Connection, response: daemon_pb2.Response) -> None:
        future = conn.pending.get(response.id)
        if future is not None:
            if not future.done():
                future.set_result(response)
            return
        inbox = conn.streams.get(response.id)
        if inbox is None or inbox.overflowed:
            return  # nobody waits for it (timed out, cancelled, overflowed): drop it
        if len(inbox.frames) >= self.stream_buffer:
            # The consumer fell behind: keep the buffered events, drop the rest
            # and cancel the stream; once the consumer has read the buffer, the
            # subscription resumes from the daemon's history. Nothing is lost,
            # and every round delivers a full buffer, so it always progresses.
            inbox.overflowed = True
            request = _api.cancel_request(self._next_id, response.id)
            self._next_id += 1
            self._write_quietly(conn, request)
            inbox.wake.set()
            return
        inbox.frames.append(response)
        inbox.wake.set()

    def _lose(self, conn: _Connection, error: StigmerError) -> None:
        if conn.closed:
            return
        conn.closed = True
        if self._conn is conn:
            self._conn = None
        with contextlib.suppress(OSError, RuntimeError):
            conn.writer.close()
        for future in conn.pending.values():
            if not future.done():
                future.set_exception(error)
        conn.pending.clear()
        for inbox in conn.streams.values():
            inbox.lost = error
            inbox.wake.set()


class AsyncSubscription(AsyncIterator[Event]):
    """An async iterator of a subscription's :class:`Event` objects.

    See :meth:`AsyncClient.subscribe`. Also an async context manager: leaving
    it cancels the stream on the daemon.
    """

    def __init__(
        self,
        client: AsyncClient,
        execution_id: str,
        from_revision: Optional[int],
        reconnect: bool,
    ) -> None:
        """Prepare a subscription; it is opened on the first ``__anext__``."""
        self._client = client
        self._state = ResumeState(execution_id, from_revision, reconnect)
        self._backoff = Backoff(client.reconnect or ReconnectPolicy())
        self._conn: Optional[_Connection] = None
        self._id: Optional[int] = None
        self._inbox: Optional[_Inbox] = None

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

    def __aiter__(self) -> AsyncSubscription:
        """Return self."""
        return self

    async def __anext__(self) -> Event:
        """Return the next event; ``StopAsyncIteration`` after the final ``end``."""
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> AsyncSubscription:
        """Return self."""
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Close the subscription."""
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the stream on the daemon (without waiting) and end the iteration."""
        self._state.done = True
        self._detach(cancel=True)

    def _detach(self, cancel: bool = False) -> None:
        conn, stream_id = self._conn, self._id
        self._conn, self._id, self._inbox = None, None, None
        if conn is None or stream_id is None:
            return
        inbox = conn.streams.get(stream_id)
        if inbox is not None:
            if cancel and not inbox.overflowed:
                self._client._cancel_stream(conn, stream_id)
            else:
                conn.streams.pop(stream_id, None)

    async def next_event(self, timeout: _Timeout = None) -> Optional[Event]:
        """Return the next event, or ``None`` when the iteration is over.

        Raises :class:`~stigmer_client.DeadlineExceededError` when ``timeout``
        (seconds) passes first; the subscription stays usable.
        """
        deadline = _deadline(timeout)
        while not self._state.done:
            inbox = self._inbox
            conn = self._conn
            if inbox is None or conn is None or self._id is None:
                await self._open(deadline)
                continue
            if inbox.frames:
                response = inbox.frames.popleft()
            elif inbox.lost is not None:
                error = inbox.lost
                self._detach()
                if not self._state.is_retryable(error):
                    # A connection error the daemon stated (too many
                    # connections, permission denied, ...) or a broken frame:
                    # retrying would only be refused again.
                    self._state.done = True
                    raise error
                await self._retry_or_raise(error, deadline)
                continue
            elif inbox.overflowed or conn.streams.get(self._id) is not inbox:
                self._detach()  # overflowed: resume from the history
                continue
            else:
                inbox.wake.clear()
                try:
                    await asyncio.wait_for(inbox.wake.wait(), _remaining(deadline))
                except asyncio.TimeoutError:
                    raise DeadlineExceededError(
                        "timed out waiting for a subscription event"
                    ) from None
                continue
            kind = response.WhichOneof("result")
            if kind == "error":
                self._detach()
                error = error_from_proto(response.error)
                if self._state.is_retryable(error):
                    await self._retry_or_raise(error, deadline)
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
                self._detach()
                await self._retry_or_raise(
                    UnavailableError(f"stream ended: {response.event.message or 'resumable'}"),
                    deadline,
                )
                continue
            if action == FINISH:
                self._detach()
            return event
        return None

    async def _open(self, deadline: Optional[float]) -> None:
        client = self._client
        try:
            conn = await client._ensure_connected()
            request = daemon_pb2.Request(subscribe=self._state.subscribe_request())
            stream_id = client._prepare(request)
            frame = encode_request(request, client.max_frame_length)
            inbox = _Inbox()
            conn.streams[stream_id] = inbox
            self._conn, self._id, self._inbox = conn, stream_id, inbox
            await client._write(conn, frame)
        except UnavailableError as error:
            self._detach()
            if client._closed:
                self._state.done = True
                raise
            await self._retry_or_raise(error, deadline)

    async def _retry_or_raise(self, error: StigmerError, deadline: Optional[float]) -> None:
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
            await asyncio.sleep(remaining)
            raise DeadlineExceededError("timed out waiting for a subscription event")
        await asyncio.sleep(delay)
