"""Watch events and the state of a many-execution stream, shared by both clients.

A watcher (``AsyncClient.watch`` / ``Client.watch``) follows every execution
of a session, or of the machine, over one stream (docs/PROTOCOL.md,
"Many-execution streams"). :class:`WatchState` turns the daemon's events into
:class:`WatchEvent` objects and keeps a cache of every execution's current
state (an informer's store, as in Kubernetes' client-go): the base the
``DELTA`` events apply to, and what the watcher resumes from after a
reconnect or a daemon restart.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass
from typing import Deque, Dict, Optional, Tuple

from ._proto.ai.stigmer.agentic.agentexecution.v1.api_pb2 import AgentExecution
from ._proto.stigmer.daemon.v1 import daemon_pb2, delta_pb2
from ._stream import _RESUMABLE, DROP, FINISH, REOPEN, YIELD, StreamState, apply_delta
from .errors import DataLossError

__all__ = ["WatchEvent", "WatchEventType", "WatchState"]


class WatchEventType(str, enum.Enum):
    """The type of a :class:`WatchEvent`; a ``str``, so ``type == "created"`` works too."""

    #: One execution of an initial list (its state at its own revision).
    SNAPSHOT = "snapshot"
    #: An execution was created (its whole state).
    CREATED = "created"
    #: An execution changed; the change came whole.
    UPDATE = "update"
    #: An execution changed; the change came as its operations (``ops``),
    #: applied by the client to the state it holds.
    DELTA = "delta"
    #: An execution was deleted (it has left the cache).
    DELETED = "deleted"
    #: Progress: every matching change up to ``revision`` was delivered; with
    #: ``initial_events_end``, the end of an initial list.
    BOOKMARK = "bookmark"
    #: Forget every execution held (the cache was cleared): a new list follows.
    RESYNC = "resync"

    def __str__(self) -> str:
        """The value (``"created"``), on every Python version."""
        return self.value


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watcher.

    Attributes:
        type: a :class:`WatchEventType` (also a ``str``).
        revision: ``snapshot``: the execution's revision (at most the list's,
            and not in order within a list); ``created``, ``update``,
            ``delta``, ``deleted``: the change's revision (strictly increasing
            after a list); ``bookmark``: every matching change up to it was
            delivered (resume from it); ``resync``: the revision the stream
            had reached (``0`` when nothing was).
        execution_id: the execution; ``""`` on ``bookmark`` and ``resync``.
        execution: the whole execution at ``revision`` (each event its own
            copy); on ``deleted``, its last state the watcher held (``None``
            when it held none); ``None`` on ``bookmark`` and ``resync``.
        ops: on ``delta``, the operations of the change; ``()`` otherwise.
        initial_events_end: on ``bookmark``, whether it ends an initial list:
            the ``snapshot`` events since the start (or the last ``resync``)
            were every matching execution at ``revision``.
    """

    type: WatchEventType
    revision: int
    execution_id: str = ""
    execution: Optional[AgentExecution] = None
    ops: Tuple[delta_pb2.Op, ...] = ()
    initial_events_end: bool = False


def _copy(execution: AgentExecution) -> AgentExecution:
    copy = AgentExecution()
    copy.CopyFrom(execution)
    return copy


class WatchState(StreamState[WatchEvent]):
    """What a watcher delivered and holds, to resume without gap or duplicate.

    ``cache`` maps each execution id to its state at the last event
    delivered, ``revisions`` to that state's revision. The stream resumes
    from ``last_revision``: the revision of the last change or bookmark
    delivered. A drop during an initial list cannot resume (the list is not
    in revision order): the list starts over, after a ``resync`` event when
    part of it was delivered.

    A deltas stream resumed from a revision assumes that the client holds
    every matching execution (``holds_all``): only after a whole list. A
    watcher started from a revision the caller gives holds nothing, so it
    asks for whole states until a list (after a daemon ``RESYNC``) fills its
    cache.
    """

    many = True

    def __init__(
        self,
        session_id: Optional[str],
        all_executions: bool,
        from_revision: Optional[int],
        reconnect: bool,
        deltas: bool,
    ) -> None:
        """Start the state of a watch of ``session_id``, or of every execution."""
        if (session_id is None) == (not all_executions):
            raise ValueError("watch: give exactly one of session_id or all=True")
        if session_id is not None and not session_id:
            raise ValueError("watch: session_id is empty (use all=True to watch every execution)")
        self.session_id = session_id
        self.all = all_executions
        self.reconnect = reconnect
        self.deltas = deltas
        self.done = False
        #: The revision of the last change or bookmark delivered (or the
        #: ``from_revision`` given); ``None`` before the end of the first list.
        self.last_revision: Optional[int] = from_revision
        self.cache: Dict[str, AgentExecution] = {}
        self.revisions: Dict[str, int] = {}
        #: Between the start of a list and its end-of-list bookmark.
        self.listing = False
        #: Whether the cache holds every matching execution (a list ended).
        self.holds_all = False
        self._pending: Deque[WatchEvent] = collections.deque()

    def subscribe_request(self) -> daemon_pb2.SubscribeRequest:
        """The ``SubscribeRequest`` that (re)opens the stream where it stands."""
        request = daemon_pb2.SubscribeRequest(deltas=self.deltas)
        if self.session_id is not None:
            request.session_id = self.session_id
        else:
            request.all = True
        if self.last_revision is None or self.listing:
            # A list, from the start. Part of one was delivered: that part
            # is dropped first, as the daemon's RESYNC would.
            if self.cache:
                self._clear()
                self._pending.append(
                    WatchEvent(type=WatchEventType.RESYNC, revision=self.last_revision or 0)
                )
            self.listing = True
            return request
        request.from_revision = self.last_revision
        # Deltas apply to states the client holds: without a whole list,
        # whole states (an execution not held could change).
        request.deltas = self.deltas and self.holds_all
        return request

    def pending(self) -> Optional[WatchEvent]:
        """The client's own ``resync``, when a list starts over after a drop."""
        return self._pending.popleft() if self._pending else None

    def _clear(self) -> None:
        self.cache.clear()
        self.revisions.clear()
        self.holds_all = False

    def _later(self, revision: int) -> bool:
        """Whether a change at ``revision`` was not delivered yet (and now is)."""
        if self.last_revision is not None and revision <= self.last_revision:
            return False
        self.last_revision = revision
        return True

    def process(self, event: daemon_pb2.Event) -> Tuple[str, Optional[WatchEvent]]:
        """Classify one received event: ``(action, event to deliver or None)``.

        Raises :class:`~stigmer_client.DataLossError` when a delta does not
        follow the state held (a protocol violation: a change was missed).
        """
        kind = event.type
        if kind == daemon_pb2.EVENT_END:
            if event.reason in _RESUMABLE:
                return REOPEN, None  # raised as UnavailableError without reconnect
            self.done = True
            return FINISH, None
        if kind == daemon_pb2.EVENT_BOOKMARK:
            return self._bookmark(event)
        if kind == daemon_pb2.EVENT_RESYNC:
            self._clear()
            self.listing = True
            return YIELD, WatchEvent(type=WatchEventType.RESYNC, revision=event.revision)
        if kind == daemon_pb2.EVENT_SNAPSHOT:
            # A list: its revisions are each execution's own, not in order.
            return YIELD, self._set(WatchEventType.SNAPSHOT, event)
        if kind == daemon_pb2.EVENT_CREATED:
            if not self._later(event.revision):
                return DROP, None
            return YIELD, self._set(WatchEventType.CREATED, event)
        if kind == daemon_pb2.EVENT_UPDATE:
            if not self._later(event.revision):
                return DROP, None
            return YIELD, self._set(WatchEventType.UPDATE, event)
        if kind == daemon_pb2.EVENT_DELTA:
            return self._delta(event)
        if kind == daemon_pb2.EVENT_DELETED:
            if not self._later(event.revision):
                return DROP, None
            self.revisions.pop(event.execution_id, None)
            last = self.cache.pop(event.execution_id, None)
            return YIELD, WatchEvent(
                type=WatchEventType.DELETED,
                revision=event.revision,
                execution_id=event.execution_id,
                execution=last,
            )
        return DROP, None  # a type this client does not know

    def _bookmark(self, event: daemon_pb2.Event) -> Tuple[str, Optional[WatchEvent]]:
        if event.initial_events_end:
            # Always delivered: it ends the list the caller was given.
            self.listing = False
            self.holds_all = True
            if self.last_revision is None or event.revision > self.last_revision:
                self.last_revision = event.revision
        elif self.listing or not self._later(event.revision):
            return DROP, None
        return YIELD, WatchEvent(
            type=WatchEventType.BOOKMARK,
            revision=event.revision,
            initial_events_end=event.initial_events_end,
        )

    def _set(self, kind: WatchEventType, event: daemon_pb2.Event) -> WatchEvent:
        """Hold the whole state an event carries; the event to deliver."""
        execution_id = event.execution_id or event.execution.metadata.id
        self.cache[execution_id] = _copy(event.execution)
        self.revisions[execution_id] = event.revision
        return WatchEvent(
            type=kind,
            revision=event.revision,
            execution_id=execution_id,
            execution=_copy(event.execution),
        )

    def _delta(self, event: daemon_pb2.Event) -> Tuple[str, Optional[WatchEvent]]:
        """Apply a ``DELTA`` to the execution held; deliver the state after it."""
        execution_id = event.execution_id
        if self.last_revision is not None and event.revision <= self.last_revision:
            return DROP, None  # already in the state held
        state = self.cache.get(execution_id)
        if state is None:
            raise DataLossError(
                f"protocol error: a delta (revision {event.revision}) of execution "
                f"{execution_id!r}, which the watcher does not hold"
            )
        apply_delta(state, event, self.revisions[execution_id], f" of execution {execution_id}")
        self.revisions[execution_id] = event.revision
        self.last_revision = event.revision
        return YIELD, WatchEvent(
            type=WatchEventType.DELTA,
            revision=event.revision,
            execution_id=execution_id,
            execution=_copy(state),
            ops=tuple(event.ops),
        )
