"""Helpers shared by the tests that run the real daemon."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import stigmer_client as sc
from stigmer_client import (
    AgentExecutionStatus,
    AgentMessage,
    Client,
    Event,
    ExecutionPhase,
    Watcher,
    WatchEvent,
)

#: Guard against hangs only; a healthy run never comes near it.
GUARD = 120.0


def status(content: str, phase: int = 2) -> AgentExecutionStatus:
    """A status whose single message identifies the write (no message when empty)."""
    messages = [AgentMessage(type="MESSAGE_AI", content=content)] if content else []
    return AgentExecutionStatus(phase=ExecutionPhase.Name(phase), messages=messages)


def content(event: Event) -> str:
    """The identifying content of an event's execution."""
    assert event.execution is not None
    messages = event.execution.status.messages
    return messages[-1].content if messages else ""


def assert_ordered_unique(events: List[Event]) -> None:
    """Revisions strictly increase over the events that carry a state."""
    revisions = [e.revision for e in events if e.type != "end"]
    assert revisions == sorted(set(revisions)), revisions


# -- watchers -------------------------------------------------------------------

#: A change as (revision, "created" | "update" | "deleted", execution id, state).
Change = Tuple[int, str, str, Optional[sc.AgentExecution]]


def take(watcher: Watcher, n: int) -> List[WatchEvent]:
    events = []
    for _ in range(n):
        event = watcher.next_event(timeout=GUARD)
        assert event is not None, "the watch ended"
        events.append(event)
    return events


def until(watcher: Watcher, stop: Callable[[WatchEvent], bool]) -> List[WatchEvent]:
    """The events up to and including the first for which ``stop`` holds."""
    events: List[WatchEvent] = []
    while not events or not stop(events[-1]):
        events += take(watcher, 1)
    return events


def created(eid: str) -> Callable[[WatchEvent], bool]:
    return lambda e: e.type == "created" and e.execution_id == eid


def changes(events: List[WatchEvent]) -> List[Change]:
    """(revision, kind, execution id, state) of the changes: a delta is an update."""
    kinds = {"created": "created", "update": "update", "delta": "update", "deleted": "deleted"}
    return [
        (e.revision, kinds[e.type], e.execution_id, None if e.type == "deleted" else e.execution)
        for e in events
        if e.type in kinds
    ]


def merged_streams(
    client: Client, ids: List[str], deletes: Optional[Dict[str, int]] = None
) -> List[Change]:
    """Every change of these executions, in revision order: their own streams' and deletes.

    Each stream is read up to the execution's current revision (its stream
    would not end while it is neither finished nor deleted), or to its end.
    ``deletes`` are the revisions ``delete`` returned: a deleted execution's
    stream ends at its terminal phase when it had one, before its delete.
    """
    deletes = deletes or {}
    merged: List[Change] = [(rev, "deleted", eid, None) for eid, rev in deletes.items()]
    for eid in ids:
        current = None if eid in deletes else client.get_reply(eid).revision
        first = True
        with client.subscribe(eid, from_revision=0, deltas=False, reconnect=False) as stream:
            while True:
                event = stream.next_event(timeout=GUARD)
                assert event is not None
                if event.type == "end":
                    break
                kind = "created" if first else "update"
                merged.append((event.revision, kind, eid, event.execution))
                first = False
                if current is not None and event.revision >= current:
                    break
    return sorted(merged, key=lambda change: change[0])


def cache_is_the_store(client: Client, watcher: Watcher, session: str) -> None:
    stored = {e.metadata.id: e for e in client.list(session_id=session)}
    assert dict(watcher.cache) == stored
    for eid in stored:
        assert watcher.revisions[eid] == client.get_reply(eid).revision
