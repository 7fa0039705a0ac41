"""The asyncio client: one connection, shared by concurrent calls and subscriptions.

This is the one hand-written client: ``client.py``, the synchronous client, is
generated from this file by ``scripts/unasync.py`` (``async``/``await``
stripped, the asyncio primitives of ``_transport.py`` swapped for their
blocking twins). Edit this file, then run ``python scripts/unasync.py``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import AsyncIterator
from types import MappingProxyType, TracebackType
from typing import (
    Any,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    TypeVar,
)

from . import _api, _delta
from ._framing import (
    DEFAULT_MAX_FRAME_LENGTH,
    PROTOCOL_VERSION,
    FrameDecoder,
    decode_response,
    encode_request,
)
from ._paths import check_peer, check_socket_path, default_socket_path, expected_uid_from_env
from ._proto.ai.stigmer.agentic.agentexecution.v1.api_pb2 import AgentExecution
from ._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import AgentExecutionStatus
from ._proto.stigmer.daemon.v1 import daemon_pb2, delta_pb2
from ._stream import (
    DROP,
    FINISH,
    REOPEN,
    Backoff,
    E,
    Event,
    ReconnectPolicy,
    ResumeState,
    StreamState,
)
from ._texts import TextTracker
from ._transport import (
    AsyncLock,
    AsyncSocket,
    AsyncWaiters,
    async_sleep,
    time_left,
    to_deadline,
)
from ._watch import WatchEvent, WatchState
from .errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    ImpostorError,
    StigmerError,
    UnavailableError,
    error_from_proto,
)

__all__ = ["DEFAULT_TIMEOUT", "AsyncClient", "AsyncSubscription", "AsyncWatcher"]

#: Default timeout of a unary call, in seconds.
DEFAULT_TIMEOUT = 30.0
#: Default timeout of connecting, in seconds.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Default number of events buffered for a subscription that is not being read.
DEFAULT_STREAM_BUFFER = 256

_Timeout = Optional[float]


def _refused(exc: BaseException) -> bool:
    """Whether an append's error means the daemon refused it (nothing was applied)."""
    return isinstance(exc, StigmerError) and not isinstance(
        exc, (UnavailableError, DeadlineExceededError)
    )


class _ConnectionLost(Exception):
    """Internal: the connection dropped; ``error`` is what to raise to a unary caller."""

    def __init__(self, error: StigmerError) -> None:
        super().__init__(str(error))
        self.error = error


class _Overflow(Exception):
    """Internal: a subscription's inbox overflowed (or was closed); reopen it."""


class _Inbox:
    """Frames received for one request id, not yet taken by their reader.

    The inbox of a many-execution stream (``many``) is unbounded while the
    stream sends a list (``listing``: from its start without
    ``from_revision``, or from a ``RESYNC``, to the end-of-list bookmark): a
    list cannot be resumed part way, so overflowing it would start it over,
    for ever with a slow reader. What it buffers is at most the list, which
    the watcher's cache holds anyway once read.
    """

    __slots__ = ("frames", "limit", "listing", "many", "overflowed")

    def __init__(self, limit: Optional[int], many: bool = False, listing: bool = False) -> None:
        self.frames: Deque[daemon_pb2.Response] = collections.deque()
        self.limit = limit
        self.many = many
        self.listing = listing
        self.overflowed = False


class _Connection:
    """One open connection and the inboxes of the requests waiting on it.

    Nobody reads the socket in the background: a caller waiting for a frame
    reads when no other caller is reading (``reading``) and routes every frame
    it receives to its inbox. The others wait on ``waiters`` until a frame of
    theirs comes or the reader is done (then one of them reads next).
    """

    def __init__(self, sock: AsyncSocket, max_frame_length: int) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(max_frame_length)
        self.inboxes: Dict[int, _Inbox] = {}
        self.waiters = AsyncWaiters()
        self.reading = False
        #: Why the connection was lost; ``None`` while it is open.
        self.lost: Optional[StigmerError] = None


class AsyncClient:
    """An asyncio client of the stigmer daemon.

    Example::

        async with AsyncClient() as client:
            execution = await client.create("agent-1", "hello")
            async for event in client.subscribe(execution.metadata.id):
                print(event.type, event.revision)

    The connection is opened on first use (or by :meth:`connect`) and carries
    every call and subscription made through this object at once, from
    any number of tasks. Whichever call is waiting reads the socket and routes
    each reply and event by request id; events of a subscription that is not being
    read are buffered (up to ``stream_buffer`` per subscription; beyond that
    the subscription drops its buffer and later resumes from the daemon's
    history, losing nothing). Requests are written in the order they are made,
    so updates sent through one client commit in that order.

    Unary calls (``create``, ``update_status``, ...) are never retried: when
    the daemon cannot be reached or the connection drops before the reply,
    they raise :class:`~stigmer_client.UnavailableError` (the write may or may
    not have been committed). The next call reconnects. Appends
    (:meth:`append_text`, :meth:`apply`) are the exception: the daemon
    acknowledges an append that was already applied, so they are retried
    across reconnects without ever applying twice. Subscriptions reconnect
    and resume by themselves (see :meth:`subscribe`).

    Args:
        socket_path: the daemon's socket; default :func:`default_socket_path`.
        timeout: default timeout of unary calls, seconds (``None``: wait forever).
        connect_timeout: timeout of connecting, seconds.
        max_frame_length: largest frame body sent or accepted (the daemon's limit).
        reconnect: how subscriptions reconnect; ``None`` disables reconnecting
            (a drop then raises :class:`~stigmer_client.UnavailableError` and a
            ``shutdown`` end event is delivered and ends the iteration).
        stream_buffer: events buffered per subscription that is not being read.
        expected_uid: one more uid the daemon may run as (default
            ``$STIGMER_EXPECTED_UID``). Before sending anything on a new
            connection, the client reads the uid of the process that accepted
            it and raises :class:`~stigmer_client.ImpostorError` unless it is
            root, this user or ``expected_uid``.
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
        expected_uid: Optional[int] = None,
    ) -> None:
        """Configure the client; nothing is connected yet."""
        self.socket_path: str = socket_path if socket_path else default_socket_path()
        self.expected_uid = expected_uid if expected_uid is not None else expected_uid_from_env()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame_length = max_frame_length
        self.reconnect = reconnect
        self.stream_buffer = max(1, stream_buffer)
        self._conn: Optional[_Connection] = None
        self._connect_lock = AsyncLock()
        self._ids = itertools.count(1)
        self._closed = False
        self._texts = TextTracker()

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
        """Close the connection; open subscriptions end, further calls raise."""
        self._closed = True
        conn = self._conn
        if conn is not None:
            self._lose(conn, UnavailableError("the client is closed"))
            await conn.sock.wait_closed()

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        return self._conn is not None and self._conn.lost is None

    # -- unary calls -------------------------------------------------------

    async def ping(self, *, timeout: _Timeout = None) -> daemon_pb2.PingResponse:
        """Ping the daemon: its protocol and daemon versions, last revision and frame limit."""
        return (await self.call(_api.ping_request(), "pong", timeout=timeout)).pong

    async def status(
        self, *, prometheus: bool = False, timeout: _Timeout = None
    ) -> daemon_pb2.DaemonStatus:
        """The daemon's status: identity, load and counters (``stigmer status``).

        With ``prometheus=True`` the reply's ``prometheus`` field also holds the
        Prometheus text exposition.
        """
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
        """Merge ``status`` into the execution (upstream's rules); return the result.

        Raises :class:`~stigmer_client.FailedPreconditionError` once the
        execution's phase is final (completed, failed, cancelled, terminated).
        """
        return (await self.update_status_reply(execution_id, status, timeout=timeout)).execution

    async def update_status_reply(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> daemon_pb2.ExecutionReply:
        """Like :meth:`update_status`, returning the execution and the revision committed."""
        if status.messages:  # replaces the messages: lengths tracked for appends are stale
            self._texts.forget(execution_id)
        request = _api.update_status_request(execution_id, status)
        return (await self.call(request, "execution", timeout=timeout)).execution

    async def update_status_ack(
        self, execution_id: str, status: AgentExecutionStatus, *, timeout: _Timeout = None
    ) -> int:
        """Like :meth:`update_status`, returning only the revision committed.

        The daemon answers with a minimal reply (``Request.minimal_reply``)
        instead of echoing the whole execution: for a runner that sends its
        cumulative status with every update, that echo grows with the transcript.
        """
        if status.messages:
            self._texts.forget(execution_id)
        request = _api.update_status_request(execution_id, status, minimal_reply=True)
        return (await self.call(request, "execution", timeout=timeout)).execution.revision

    async def append_text(
        self,
        execution_id: str,
        text: str,
        *,
        message_index: int = -1,
        offset: Optional[int] = None,
        timeout: _Timeout = None,
    ) -> int:
        """Append ``text`` to a message's content; return the revision (an ``append``).

        ``message_index=-1`` is the last message (a new first one, of type
        ``MESSAGE_AI``, when there is none); the index equal to the number of
        messages creates a new AI message. ``offset`` is the UTF-8 byte offset
        where ``text`` starts: the message's length. When it is not given, the
        client tracks it, per execution and message, from its own appends
        (and :meth:`apply` operations), fetching the execution with
        :meth:`get` only the first time; a runner calling this once per token
        sends one small frame per token and never fetches. ``-1`` likewise
        stands for the last message the client knows of.

        Safe to retry: when the connection drops (or the daemon restarts)
        before the reply, the same append, at the same offset, is sent again
        after a backoff (the client's :class:`ReconnectPolicy`, until the
        call's ``timeout`` passes); the daemon acknowledges an append it
        already applied, so the text is never duplicated.

        Raises :class:`~stigmer_client.AbortedError` when the message is not
        at ``offset`` (its message names the current length and revision):
        someone else appended to it (or ``offset`` is stale), and this text
        was *not* applied. It is not re-sent at the new offset, which could
        duplicate or reorder text: the caller decides. The tracked length is
        dropped on any error, so the next call without ``offset`` fetches the
        execution and appends at its current end -- except after an error
        that leaves the outcome unknown (``UnavailableError`` once the
        reconnect policy gives up, ``DeadlineExceededError``): calling again
        with the same text sends it to the same offset, so it is applied once.
        :class:`~stigmer_client.FailedPreconditionError`: the execution's phase
        is final (a runner should stop).
        """
        if message_index < -1:
            raise ValueError(f"message_index must be -1 or a message index, not {message_index}")
        if offset is not None and offset < 0:
            raise ValueError(f"offset must be a byte offset (>= 0), not {offset}")
        texts = self._texts
        position = texts.position(execution_id, message_index, offset, text)
        if position is None:
            stored = await self.get(execution_id, timeout=timeout)
            position = texts.learn_status(execution_id, stored.status, message_index, offset)
        index, start = position
        op = delta_pb2.Op()
        op.append_text.message_index = index
        op.append_text.offset = start
        op.append_text.text = text
        texts.sent(execution_id, index, start, text)
        try:
            return await self._append(execution_id, [op], None, timeout)
        except BaseException as exc:
            if _refused(exc):  # not applied: the next append asks the daemon
                texts.forget(execution_id)
            else:  # unknown: the same text again goes to the same offset
                texts.unsure(execution_id, message_index, index, start, text)
            raise

    async def apply(
        self,
        execution_id: str,
        ops: Iterable[delta_pb2.Op],
        *,
        expected_revision: Optional[int] = None,
        timeout: _Timeout = None,
    ) -> int:
        """Apply operations (``Op``) atomically, under one revision; return it (an ``append``).

        The operations (``stigmer_client.Op``: ``append_text``, ``add_message``,
        ``put_tool_call``, ``put_message_tool_call``, ``append_tool_result``,
        ``put_todo``, ``remove_todo``, ``put_sub_agent``, ``set_phase``,
        ``set_error``, ...)
        are what a runner changes during a run, so it never sends a whole
        status. With ``expected_revision`` it is a compare-and-set: applied
        only when the execution's latest revision is that one, else
        :class:`~stigmer_client.AbortedError`. When every operation was
        already applied nothing is written and the execution's current
        revision is returned, which makes the call safe to retry: like
        :meth:`append_text` it is sent again across reconnects.

        Raises :class:`~stigmer_client.AbortedError` when an operation does
        not fit the state (a stale offset or index) or on a revision mismatch,
        :class:`~stigmer_client.InvalidArgumentError` for a malformed one,
        :class:`~stigmer_client.FailedPreconditionError` once the phase is final.
        """
        op_list: List[delta_pb2.Op] = list(ops)
        try:
            revision = await self._append(execution_id, op_list, expected_revision, timeout)
        except BaseException as exc:
            # Refused: nothing was applied. Otherwise (no reply) it may have
            # been: the next append_text without an offset asks the daemon.
            if not _refused(exc):
                self._texts.forget(execution_id)
            raise
        self._texts.learn_ops(execution_id, op_list)
        return revision

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
        """Return every execution (all pages), in creation order, optionally filtered.

        ``phase`` is an ``ExecutionPhase`` value or name (``"EXECUTION_PENDING"``
        or ``"pending"``); ``session_id`` a session id.
        """
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
        """Send one request and return its reply (the low-level API).

        The client sets ``request.id`` (and ``protocol_version`` when it is 0).
        An ``error`` reply is raised as its :class:`~stigmer_client.StigmerError`
        subclass; when ``expect`` names a result field, any other result raises
        :class:`~stigmer_client.InternalError`. Not for ``subscribe``.
        """
        deadline = to_deadline(self.timeout if timeout is None else timeout)
        conn, request_id = await self._send(request, None)
        try:
            response = await self._wait(conn, request_id, deadline)
        except _ConnectionLost as lost:
            raise lost.error from None
        finally:
            conn.inboxes.pop(request_id, None)
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
        deltas: bool = True,
    ) -> AsyncSubscription:
        """Open a stream of the execution's changes; return an iterator of :class:`Event`.

        Without ``from_revision`` the first event is a ``"snapshot"``; with it,
        an ``"update"`` for every change after that revision. The iterator
        yields every revision once, in increasing order (or a ``"resync"``
        when the daemon's history no longer reaches back), and stops after an
        ``"end"`` event whose ``reason`` is ``"terminal"``, ``"deleted"`` or
        ``"cancelled"``.

        With ``deltas=True`` (the default) the daemon sends each change as its
        operations, not the whole state: the client keeps the state and
        applies them, and yields a ``"delta"`` event whose ``execution`` is
        still the whole execution at its revision and whose ``ops`` are the
        operations of that revision. Changes without operations (a create)
        still come as ``"update"``. The revisions and executions are those of
        ``deltas=False`` (``"update"`` events: whole states on the wire, whose
        cost grows with the transcript). A delta that does not follow the
        state held raises :class:`~stigmer_client.DataLossError`.

        When the connection drops, or the stream ends with reason ``shutdown``
        or ``slow_consumer``, the iterator reconnects with jittered exponential
        backoff (the client's :class:`ReconnectPolicy`) and resubscribes from the
        last revision it delivered, dropping anything already delivered; the
        caller sees no gap and no duplicate. ``reconnect=False`` (or a client
        made with ``reconnect=None``) turns that off. A delta stream resumes
        without the initial state (``skip_initial_state``): the client holds it.

        The stream is opened when the first event is asked for. Close the
        subscription (or leave its ``with`` block) to cancel it on the daemon.
        """
        return AsyncSubscription(
            self, execution_id, from_revision, reconnect and self.reconnect is not None, deltas
        )

    def watch(
        self,
        session_id: Optional[str] = None,
        *,
        all: bool = False,
        from_revision: Optional[int] = None,
        deltas: bool = True,
        reconnect: bool = True,
    ) -> AsyncWatcher:
        """Watch every execution of a session, or of the machine; return an iterator of events.

        Give exactly one of ``session_id`` and ``all=True`` (else
        ``ValueError``). The iterator yields :class:`WatchEvent` objects and
        never ends by itself (an execution ending or being deleted is just
        another event): leave its ``with`` block, or close it, to cancel the
        stream on the daemon.

        Without ``from_revision``: a ``"snapshot"`` of every matching
        execution, then a ``"bookmark"`` with ``initial_events_end`` (the
        list is complete), then ``"created"``, ``"update"``, ``"delta"`` and
        ``"deleted"`` events as they commit, in increasing revision order,
        each once, and a ``"bookmark"`` after a quiet spell. With
        ``from_revision=R``: every matching change after ``R``, no list.

        The watcher keeps :attr:`AsyncWatcher.cache`, every execution's
        current state by id, as its events are consumed (an informer's store,
        as in Kubernetes' client-go); each event's ``execution`` is the whole
        state at its revision. ``deltas=True`` (the default) has each change
        sent as its operations, applied by the client to the state it holds,
        as :meth:`subscribe` does; a watcher started from a ``from_revision``
        holds nothing, so it asks for whole states (``"update"`` events) until
        a list has filled its cache.

        When the connection drops or the daemon restarts, the watcher
        reconnects with the client's :class:`ReconnectPolicy` and resumes
        from the revision of the last event or bookmark delivered, dropping
        anything at or below it: no gap, no duplicate. A ``"resync"`` event
        means "forget every execution": the cache was cleared and a new list
        (``"snapshot"`` events, then an end-of-list bookmark) follows. The
        daemon sends one when its history no longer reaches back to where the
        watcher stands; the watcher yields one itself when a drop cuts an
        initial list short, since a list cannot resume part way.
        ``reconnect=False`` (or a client made with ``reconnect=None``) makes
        a drop or a daemon shutdown raise
        :class:`~stigmer_client.UnavailableError` instead.
        """
        return AsyncWatcher(
            self,
            session_id,
            all,
            from_revision,
            reconnect and self.reconnect is not None,
            deltas,
        )

    # -- internals ---------------------------------------------------------

    async def _append(
        self,
        execution_id: str,
        ops: Sequence[delta_pb2.Op],
        expected_revision: Optional[int],
        timeout: _Timeout,
    ) -> int:
        """Send an ``append``, again across reconnects; return the revision.

        Sending it again is safe: the daemon acknowledges operations it already
        applied. When the reply to the first attempt was lost and the phase
        became final meanwhile (the append itself may have finalized it), a
        later attempt is refused with FAILED_PRECONDITION: it is then
        acknowledged when the stored state already holds every operation.
        """
        request = _api.append_request(execution_id, ops, expected_revision)
        deadline = to_deadline(self.timeout if timeout is None else timeout)
        policy = self.reconnect
        backoff = Backoff(policy) if policy is not None else None
        resent = False
        while True:
            try:
                response = await self.call(request, "execution", timeout=time_left(deadline))
                return response.execution.revision
            except ImpostorError:
                raise
            except UnavailableError as error:
                if backoff is None or self._closed:
                    raise
                delay = backoff.next_delay(error)  # raises once the policy gives up
                left = time_left(deadline)
                if left is not None and left <= delay:
                    raise
                await async_sleep(delay)
                resent = True
            except FailedPreconditionError:
                if resent:
                    revision = await self._applied_revision(execution_id, ops, deadline)
                    if revision is not None:
                        return revision
                raise

    async def _applied_revision(
        self, execution_id: str, ops: Sequence[delta_pb2.Op], deadline: Optional[float]
    ) -> Optional[int]:
        """The execution's revision when its state already holds ``ops``, else ``None``."""
        reply = await self.get_reply(execution_id, timeout=time_left(deadline))
        status = AgentExecutionStatus()
        status.CopyFrom(reply.execution.status)
        try:
            changed = _delta.apply_all(status, ops)
        except StigmerError:
            return None
        return None if changed else reply.revision

    async def _ensure_connected(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.lost is None and not self._closed:
            return conn
        async with self._connect_lock:
            if self._closed:
                raise UnavailableError("the client is closed")
            conn = self._conn
            if conn is not None and conn.lost is None:
                return conn
            check_socket_path(self.socket_path)
            try:
                sock = await AsyncSocket.connect(self.socket_path, self.connect_timeout)
            except OSError as exc:
                raise UnavailableError(
                    f"cannot connect to the stigmer daemon at {self.socket_path}: {exc!r}"
                ) from exc
            try:  # who accepted? (before a single byte is sent)
                check_peer(sock.fileno(), self.socket_path, self.expected_uid)
            except BaseException:
                sock.close()
                raise
            conn = _Connection(sock, self.max_frame_length)
            self._conn = conn
            return conn

    async def _send(
        self, request: daemon_pb2.Request, buffer_limit: Optional[int], *, many: bool = False
    ) -> Tuple[_Connection, int]:
        """Connect if needed, register an inbox, send; return the connection and request id.

        ``many``: the request opens a many-execution stream (see :class:`_Inbox`).
        """
        conn = await self._ensure_connected()
        request_id = next(self._ids)
        request.id = request_id
        if request.protocol_version == 0:
            request.protocol_version = PROTOCOL_VERSION
        frame = encode_request(request, self.max_frame_length)
        listing = many and not request.subscribe.HasField("from_revision")
        conn.inboxes[request_id] = _Inbox(buffer_limit, many, listing)
        try:
            await conn.sock.send(frame)
        except OSError as exc:
            error = UnavailableError(f"connection to the stigmer daemon lost: {exc!r}")
            self._lose(conn, error)
            raise error from exc
        return conn, request_id

    def _cancel_stream(self, conn: _Connection, subscription_id: int) -> None:
        """Send a cancel of a stream, without waiting (nobody reads its reply)."""
        if conn.lost is None:
            request = _api.cancel_request(next(self._ids), subscription_id)
            # On failure, whoever reads next sees the connection drop.
            with contextlib.suppress(OSError):
                conn.sock.write_nowait(encode_request(request, self.max_frame_length))

    async def _wait(
        self, conn: _Connection, request_id: int, deadline: Optional[float]
    ) -> daemon_pb2.Response:
        """Return the next frame for ``request_id``, reading the socket when nobody else is.

        Raises ``_ConnectionLost``, ``DeadlineExceededError``, and ``_Overflow``
        when the inbox overflowed or was closed.
        """
        while True:
            async with conn.waiters:
                while True:
                    inbox = conn.inboxes.get(request_id)
                    if inbox is None:
                        raise _Overflow()
                    if inbox.frames:
                        return inbox.frames.popleft()
                    if inbox.overflowed:
                        raise _Overflow()
                    if conn.lost is not None:
                        raise _ConnectionLost(conn.lost)
                    if not conn.reading:
                        conn.reading = True
                        break
                    if not await conn.waiters.wait(request_id, time_left(deadline)):
                        raise DeadlineExceededError("timed out waiting for the stigmer daemon")
            routed: Set[int] = set()
            try:
                await self._read(conn, deadline, routed)
            finally:
                conn.reading = False
                # Wake the callers whose frames came, and one more to read next.
                conn.waiters.notify(routed, one_more=True)

    async def _read(self, conn: _Connection, deadline: Optional[float], routed: Set[int]) -> None:
        """Receive at least one whole frame (or time out); route every whole frame.

        Adds the ids of the inboxes that received a frame to ``routed``.
        """
        try:
            body = conn.decoder.next_body()
            while body is None:
                data = await conn.sock.recv(deadline)
                if not data:
                    raise UnavailableError("the stigmer daemon closed the connection")
                conn.decoder.feed(data)
                body = conn.decoder.next_body()
            while body is not None:
                response = decode_response(body)
                if self._route(conn, response):
                    routed.add(response.id)
                body = conn.decoder.next_body()
        except StigmerError as exc:  # a broken frame, or a connection error the daemon stated
            self._lose(conn, exc)
        except TimeoutError:  # from recv (a DeadlineExceededError is a StigmerError)
            raise DeadlineExceededError("timed out waiting for the stigmer daemon") from None
        except OSError as exc:
            self._lose(conn, UnavailableError(f"connection to the stigmer daemon lost: {exc!r}"))

    def _route(self, conn: _Connection, response: daemon_pb2.Response) -> bool:
        """Put a frame in its inbox; False when nobody waits for it."""
        if response.id == 0:
            # A connection error: the daemon closes the connection after it.
            if response.WhichOneof("result") == "error":
                raise error_from_proto(response.error)
            raise UnavailableError("the stigmer daemon closed the connection")
        inbox = conn.inboxes.get(response.id)
        if inbox is None or inbox.overflowed:
            return False  # nobody waits for it (timed out, cancelled, overflowed): drop it
        bounded = not inbox.listing
        if inbox.many and response.WhichOneof("result") == "event":
            event = response.event
            if event.type == daemon_pb2.EVENT_RESYNC:
                inbox.listing = True  # a new list follows
                bounded = False
            elif event.type == daemon_pb2.EVENT_BOOKMARK and event.initial_events_end:
                inbox.listing = False
        if bounded and inbox.limit is not None and len(inbox.frames) >= inbox.limit:
            # The reader fell behind: keep the buffered events, drop the rest
            # and cancel the stream; once the buffer has been read, the
            # subscription resumes from the daemon's history (no loss, and
            # every round delivers a full buffer, so it always progresses).
            inbox.overflowed = True
            self._cancel_stream(conn, response.id)
            return True  # its reader learns that it overflowed
        inbox.frames.append(response)
        return True

    def _lose(self, conn: _Connection, error: StigmerError) -> None:
        """Close a connection for good: its waiters raise ``error``."""
        if conn.lost is not None:
            return
        conn.lost = error
        if self._conn is conn:
            self._conn = None
        conn.sock.close()
        conn.waiters.notify_all()


_S = TypeVar("_S", bound="_StreamIterator[Any]")


class _StreamIterator(AsyncIterator[E]):
    """What a subscription and a watcher share: open the stream, read it, resume it.

    ``state`` (a :class:`~stigmer_client._stream.StreamState`) builds the
    request that (re)opens the stream and says what each event means; this
    class sends it, reads the stream's inbox, and reconnects with backoff.
    """

    def __init__(self, client: AsyncClient, state: StreamState[E]) -> None:
        """Prepare a stream; it is opened when the first event is asked for."""
        self._client = client
        self._state = state
        self._backoff = Backoff(client.reconnect or ReconnectPolicy())
        self._conn: Optional[_Connection] = None
        self._id: Optional[int] = None

    @property
    def closed(self) -> bool:
        """Whether the iteration is over."""
        return self._state.done

    def __aiter__(self: _S) -> _S:
        """Return self."""
        return self

    async def __anext__(self) -> E:
        """Return the next event; ``StopAsyncIteration`` once the iteration is over."""
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self: _S) -> _S:
        """Return self."""
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        """Close the stream."""
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the stream on the daemon (without waiting) and end the iteration."""
        self._state.done = True
        self._detach(cancel=True)

    def _detach(self, cancel: bool = False) -> None:
        """Forget the stream (and cancel it on the daemon when ``cancel``)."""
        conn, stream_id = self._conn, self._id
        self._conn, self._id = None, None
        if conn is None or stream_id is None:
            return
        inbox = conn.inboxes.pop(stream_id, None)
        if cancel and inbox is not None and not inbox.overflowed:
            self._client._cancel_stream(conn, stream_id)

    async def next_event(self, timeout: _Timeout = None) -> Optional[E]:
        """Return the next event, or ``None`` when the iteration is over.

        Raises :class:`~stigmer_client.DeadlineExceededError` when ``timeout``
        (seconds) passes first; the stream stays usable.
        """
        deadline = to_deadline(timeout)
        while not self._state.done:
            pending = self._state.pending()
            if pending is not None:
                return pending
            conn, stream_id = self._conn, self._id
            if conn is None or stream_id is None:
                await self._open(deadline)
                continue
            try:
                response = await self._client._wait(conn, stream_id, deadline)
            except _Overflow:
                self._detach()  # resume from the daemon's history
                continue
            except _ConnectionLost as lost:
                self._detach()
                if not self._state.is_retryable(lost.error):
                    # A connection error the daemon stated (too many
                    # connections, permission denied, ...) or a broken frame:
                    # retrying would only be refused again.
                    self._state.done = True
                    raise lost.error from None
                await self._retry_or_raise(lost.error, deadline)
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
            try:
                action, event = self._state.process(response.event)
            except StigmerError:  # a delta that does not follow: a protocol violation
                self._state.done = True
                self._detach(cancel=True)
                raise
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
        """(Re)send the subscribe request, or wait the backoff delay when it fails."""
        client = self._client
        request = daemon_pb2.Request(subscribe=self._state.subscribe_request())
        try:
            self._conn, self._id = await client._send(
                request, client.stream_buffer, many=self._state.many
            )
        except ImpostorError:
            self._state.done = True  # not the daemon: retrying would not help
            raise
        except UnavailableError as error:
            if client._closed:
                self._state.done = True
                raise
            await self._retry_or_raise(error, deadline)

    async def _retry_or_raise(self, error: StigmerError, deadline: Optional[float]) -> None:
        """Sleep the backoff delay before reconnecting, or raise when that is not allowed."""
        if not self._state.reconnect or self._client._closed:
            self._state.done = True
            raise error
        try:
            delay = self._backoff.next_delay(error)
        except UnavailableError:
            self._state.done = True
            raise
        left = time_left(deadline)
        if left is not None and left < delay:
            await async_sleep(left)
            raise DeadlineExceededError("timed out waiting for a subscription event")
        await async_sleep(delay)


class AsyncSubscription(_StreamIterator[Event]):
    """An iterator of a subscription's :class:`Event` objects (see :meth:`AsyncClient.subscribe`).

    Also a context manager: leaving it cancels the stream on the daemon.
    """

    def __init__(
        self,
        client: AsyncClient,
        execution_id: str,
        from_revision: Optional[int],
        reconnect: bool,
        deltas: bool = True,
    ) -> None:
        """Prepare a subscription; it is opened when the first event is asked for."""
        self._resume = ResumeState(execution_id, from_revision, reconnect, deltas)
        super().__init__(client, self._resume)

    @property
    def execution_id(self) -> str:
        """The execution this subscription follows."""
        return self._resume.execution_id

    @property
    def last_revision(self) -> Optional[int]:
        """The last revision delivered (resume from it), or the ``from_revision`` given."""
        return self._resume.last_revision

    @property
    def deltas(self) -> bool:
        """Whether the stream carries deltas (applied by the client to the state it holds)."""
        return self._resume.deltas


class AsyncWatcher(_StreamIterator[WatchEvent]):
    """An iterator of the :class:`WatchEvent` objects of a watch (see :meth:`AsyncClient.watch`).

    It keeps :attr:`cache`, every execution's current state, as the events
    are consumed. Also a context manager: leaving it cancels the stream on
    the daemon.
    """

    def __init__(
        self,
        client: AsyncClient,
        session_id: Optional[str],
        all_executions: bool,
        from_revision: Optional[int],
        reconnect: bool,
        deltas: bool = True,
    ) -> None:
        """Prepare a watcher; its stream is opened when the first event is asked for."""
        self._watch = WatchState(session_id, all_executions, from_revision, reconnect, deltas)
        super().__init__(client, self._watch)

    @property
    def session_id(self) -> Optional[str]:
        """The session watched (``None`` for a watch of every execution)."""
        return self._watch.session_id

    @property
    def cache(self) -> Mapping[str, AgentExecution]:
        """Every execution held, by id: its state at the last event delivered (read-only).

        Kept up to date as events are consumed: ``snapshot``, ``created``,
        ``update`` and ``delta`` set an execution, ``deleted`` removes it,
        ``resync`` clears everything. Once an initial list has ended
        (:attr:`synced`) it is every matching execution as of
        :attr:`last_revision`. Do not modify the executions: the next delta
        of each applies to it.
        """
        return MappingProxyType(self._watch.cache)

    @property
    def revisions(self) -> Mapping[str, int]:
        """The revision of each execution's state in :attr:`cache` (read-only)."""
        return MappingProxyType(self._watch.revisions)

    @property
    def synced(self) -> bool:
        """Whether :attr:`cache` holds every matching execution (an initial list ended)."""
        return self._watch.holds_all and not self._watch.listing

    @property
    def last_revision(self) -> Optional[int]:
        """The revision of the last change or bookmark delivered (resume from it)."""
        return self._watch.last_revision

    @property
    def deltas(self) -> bool:
        """Whether the watcher asks for deltas (once it holds every execution)."""
        return self._watch.deltas
