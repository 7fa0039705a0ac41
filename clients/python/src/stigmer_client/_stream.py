"""Subscription events and the resume logic shared by both clients."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Generic, Optional, Tuple, TypeVar

from . import _delta
from ._proto.ai.stigmer.agentic.agentexecution.v1.api_pb2 import AgentExecution
from ._proto.stigmer.daemon.v1 import daemon_pb2, delta_pb2
from .errors import DataLossError, StigmerError, UnavailableError

__all__ = [
    "DELTA",
    "END",
    "RESYNC",
    "SNAPSHOT",
    "UPDATE",
    "Event",
    "ReconnectPolicy",
]

#: ``Event.type`` of the first event of a stream opened without ``from_revision``.
SNAPSHOT = "snapshot"
#: ``Event.type`` of one committed change, sent whole.
UPDATE = "update"
#: ``Event.type`` of one committed change sent as its operations (``Event.ops``),
#: which the client applied to the state it holds (``Event.execution``).
DELTA = "delta"
#: ``Event.type`` of the whole current state after changes that could not be sent one by one.
RESYNC = "resync"
#: ``Event.type`` of the last event of a stream.
END = "end"

_TYPES = {
    daemon_pb2.EVENT_SNAPSHOT: SNAPSHOT,
    daemon_pb2.EVENT_UPDATE: UPDATE,
    daemon_pb2.EVENT_RESYNC: RESYNC,
    daemon_pb2.EVENT_END: END,
    daemon_pb2.EVENT_DELTA: DELTA,
}

_REASONS = {
    daemon_pb2.END_REASON_TERMINAL: "terminal",
    daemon_pb2.END_REASON_DELETED: "deleted",
    daemon_pb2.END_REASON_CANCELLED: "cancelled",
    daemon_pb2.END_REASON_SHUTDOWN: "shutdown",
    daemon_pb2.END_REASON_SLOW_CONSUMER: "slow_consumer",
}

_RESUMABLE = (daemon_pb2.END_REASON_SHUTDOWN, daemon_pb2.END_REASON_SLOW_CONSUMER)


@dataclass(frozen=True)
class Event:
    """One event of a subscription.

    Attributes:
        type: ``"snapshot"``, ``"update"``, ``"resync"``, ``"delta"`` or ``"end"``.
        revision: the revision of the state carried; on ``"end"``, the last
            revision delivered.
        execution_id: the execution the stream is about.
        execution: the whole execution at ``revision`` (``None`` on ``"end"``).
        reason: on ``"end"``: ``"terminal"``, ``"deleted"``, ``"cancelled"``,
            ``"shutdown"``, ``"slow_consumer"`` or ``"unspecified"`` (an end
            reason this client does not know); ``None`` otherwise.
        message: on ``"end"``, a person-readable detail.
        ops: on ``"delta"`` (a subscription with ``deltas=True``), the
            operations of the change at ``revision``; ``execution`` is then
            the state before it with these applied, rebuilt by the client.
            Empty on the other types (a change that came whole: a create, a
            resync, a stream without deltas).
    """

    type: str
    revision: int
    execution_id: str
    execution: Optional[AgentExecution]
    reason: Optional[str] = None
    message: str = ""
    ops: Tuple[delta_pb2.Op, ...] = ()

    @classmethod
    def from_proto(cls, event: daemon_pb2.Event) -> Optional[Event]:
        """Convert a protocol ``Event``; ``None`` for an event type this client ignores.

        A ``DELTA`` event carries no state: its ``execution`` is ``None`` here
        (a subscription fills it in from the state it holds).
        """
        kind = _TYPES.get(event.type)
        if kind is None:
            return None
        if kind == DELTA:
            return cls(
                type=DELTA,
                revision=event.revision,
                execution_id=event.execution_id,
                execution=None,
                ops=tuple(event.ops),
            )
        if kind == END:
            return cls(
                type=END,
                revision=event.revision,
                execution_id=event.execution_id,
                execution=None,
                reason=_REASONS.get(event.reason, "unspecified"),
                message=event.message,
            )
        return cls(
            type=kind,
            revision=event.revision,
            execution_id=event.execution_id,
            execution=event.execution if event.HasField("execution") else None,
        )


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a subscription reconnects after the connection drops or the daemon restarts.

    The delay before attempt ``n`` (from 0) is
    ``min(initial_backoff * multiplier**n, max_backoff)``, multiplied by a
    random factor in ``[1 - jitter, 1]`` (by default half fixed, half random,
    as the Rust client does). After an event is delivered the delay starts
    over. When ``give_up_after`` (seconds) is set and that long has passed since
    the first failed attempt, the subscription raises :class:`UnavailableError`.
    The defaults are the Rust client's: 50 ms doubling to 2 s, never give up.
    """

    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5
    give_up_after: Optional[float] = None


class Backoff:
    """Jittered exponential backoff state for one subscription."""

    def __init__(self, policy: ReconnectPolicy) -> None:
        """Start with no failures."""
        self.policy = policy
        self._attempt = 0
        self._since: Optional[float] = None

    def reset(self) -> None:
        """Forget the failures (after a successful delivery)."""
        self._attempt = 0
        self._since = None

    def next_delay(self, cause: BaseException) -> float:
        """The delay before the next attempt; raise :class:`UnavailableError` on give-up."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        limit = self.policy.give_up_after
        if limit is not None and now - self._since >= limit:
            raise UnavailableError(
                f"gave up reconnecting after {now - self._since:.1f}s: {cause}"
            ) from cause
        base = min(
            self.policy.initial_backoff * self.policy.multiplier**self._attempt,
            self.policy.max_backoff,
        )
        self._attempt += 1
        jitter = min(max(self.policy.jitter, 0.0), 1.0)
        delay = base * random.uniform(1.0 - jitter, 1.0)
        if limit is not None:
            delay = min(delay, max(0.0, self._since + limit - now))
        return delay


# What to do with an event received on a stream.
YIELD = "yield"  # give it to the user
DROP = "drop"  # already delivered (or an unknown type): ignore
REOPEN = "reopen"  # the stream ended but can be resumed: subscribe again
FINISH = "finish"  # give it to the user (when there is one), then stop

#: The events a stream yields (:class:`Event`, or a watcher's ``WatchEvent``).
E = TypeVar("E")


class StreamState(Generic[E]):
    """What a stream delivered, and how to reopen it where it stands.

    The clients' stream iterators (subscriptions and watchers) share their
    connection, reconnect and backoff logic; what differs -- the request that
    (re)opens the stream and what each received event means -- is here.
    """

    #: Whether the stream reconnects and resumes after a drop or a shutdown.
    reconnect: bool
    #: Whether the iteration is over.
    done: bool
    #: Whether the stream covers many executions (a watch): its inbox is
    #: unbounded during an initial list (see ``aio._route``).
    many = False

    def subscribe_request(self) -> daemon_pb2.SubscribeRequest:
        """The ``SubscribeRequest`` that (re)opens the stream where it stands."""
        raise NotImplementedError

    def process(self, event: daemon_pb2.Event) -> Tuple[str, Optional[E]]:
        """Classify one received event: ``(action, event to deliver or None)``."""
        raise NotImplementedError

    def pending(self) -> Optional[E]:
        """An event the client made itself, to deliver before reading the stream again."""
        return None

    def is_retryable(self, error: StigmerError) -> bool:
        """Whether a stream error is transient: retry after a backoff (as the Rust client).

        Only ``UNAVAILABLE`` is: a dropped connection, a daemon that is shutting
        down or cannot write right now. Any other error -- an error reply, or a
        connection error the daemon stated (``RESOURCE_EXHAUSTED`` for too many
        connections, ``PERMISSION_DENIED``, ...) -- ends the subscription with it.
        """
        return self.reconnect and error.code == daemon_pb2.UNAVAILABLE


class ResumeState(StreamState[Event]):
    """Tracks what a subscription delivered, to resume without gap or duplicate.

    With ``deltas`` it also holds the execution's whole state (the state at
    ``state_revision``): the base the stream's ``DELTA`` events apply to, kept
    across reconnects so that a resumed stream skips the initial state.
    """

    def __init__(
        self,
        execution_id: str,
        from_revision: Optional[int],
        reconnect: bool,
        deltas: bool = False,
    ) -> None:
        """Start a subscription state for ``execution_id``."""
        self.execution_id = execution_id
        #: The last revision delivered to the user (or the ``from_revision`` asked for).
        self.last_revision: Optional[int] = from_revision
        self.reconnect = reconnect
        self.deltas = deltas
        self.done = False
        #: Deltas only: the execution's whole state at ``state_revision`` (its
        #: last change at or before ``last_revision``), or ``None`` before the first.
        self.state: Optional[AgentExecution] = None
        self.state_revision = 0

    def subscribe_request(self) -> daemon_pb2.SubscribeRequest:
        """The ``SubscribeRequest`` that (re)opens the stream where it stands."""
        request = daemon_pb2.SubscribeRequest(execution_id=self.execution_id, deltas=self.deltas)
        if self.last_revision is not None:
            request.from_revision = self.last_revision
            # Holding the state at last_revision, the stream can start right
            # after it: nothing is sent again.
            request.skip_initial_state = self.deltas and self.state is not None
        return request

    def process(self, event: daemon_pb2.Event) -> Tuple[str, Optional[Event]]:
        """Classify one received event: ``(action, event to deliver or None)``.

        Raises :class:`~stigmer_client.DataLossError` when a delta does not
        follow the state held (a protocol violation: a change was missed).
        """
        if event.type == daemon_pb2.EVENT_DELTA:
            return self._delta(event)
        converted = Event.from_proto(event)
        if converted is None:
            return DROP, None
        if converted.type == END:
            if self.reconnect and event.reason in _RESUMABLE:
                return REOPEN, None
            self.done = True
            return FINISH, converted
        if self.deltas and (self.state is None or event.revision > self.state_revision):
            # The base of the deltas that follow. A stream resumed from R
            # starts with the state at the last change at or before R: kept as
            # the base, not delivered again.
            self.state = AgentExecution()
            self.state.CopyFrom(event.execution)
            self.state_revision = event.revision
        if self.last_revision is not None and converted.revision <= self.last_revision:
            return DROP, None
        self.last_revision = converted.revision
        return YIELD, converted

    def _delta(self, event: daemon_pb2.Event) -> Tuple[str, Optional[Event]]:
        """Apply a ``DELTA`` event to the state held; deliver the state after it."""
        state = self.state
        if state is None:
            raise DataLossError(
                f"protocol error: a delta (revision {event.revision}) came before any whole "
                f"state of execution {self.execution_id}"
            )
        if event.revision <= self.state_revision:
            return DROP, None  # already in the state held
        apply_delta(state, event, self.state_revision, "")
        self.state_revision = event.revision
        if self.last_revision is not None and event.revision <= self.last_revision:
            return DROP, None
        self.last_revision = event.revision
        execution = AgentExecution()
        execution.CopyFrom(state)  # the user's own copy: the state held changes on
        return YIELD, Event(
            type=DELTA,
            revision=event.revision,
            execution_id=self.execution_id,
            execution=execution,
            ops=tuple(event.ops),
        )


def apply_delta(state: AgentExecution, event: daemon_pb2.Event, held: int, subject: str) -> None:
    """Apply a ``DELTA`` event to ``state``, held at revision ``held``.

    Raises DataLossError when the delta does not follow ``held`` (changes were
    missed) or does not apply to it. ``subject`` (e.g. `` of execution X``)
    names the execution in the message when the stream carries several.
    """
    if event.prev_revision != held:
        raise DataLossError(
            f"protocol error: the delta of revision {event.revision}{subject} applies to "
            f"revision {event.prev_revision}, but the state held is at revision {held}: "
            f"changes were missed"
        )
    try:
        _delta.apply_all(state.status, event.ops)
    except StigmerError as error:
        raise DataLossError(
            f"protocol error: the delta of revision {event.revision}{subject} does not apply "
            f"to the state at revision {held}: {error.message}"
        ) from None
