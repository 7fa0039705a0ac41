"""Helpers shared by the tests that run the real daemon."""

from __future__ import annotations

from typing import List

from stigmer_client import (
    AgentExecutionStatus,
    AgentMessage,
    Event,
    ExecutionPhase,
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
