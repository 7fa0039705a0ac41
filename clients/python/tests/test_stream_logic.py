from __future__ import annotations

import pytest

from stigmer_client import ReconnectPolicy, UnavailableError, daemon_pb2
from stigmer_client._stream import DROP, FINISH, REOPEN, YIELD, Backoff, Event, ResumeState


def _event(kind: int, revision: int, reason: int = 0) -> daemon_pb2.Event:
    event = daemon_pb2.Event(execution_id="aex-1", revision=revision)
    event.type = kind  # type: ignore[assignment]
    if kind == daemon_pb2.EVENT_END:
        event.reason = reason  # type: ignore[assignment]
    else:
        event.execution.metadata.id = "aex-1"
    return event


def test_dedupes_and_orders() -> None:
    state = ResumeState("aex-1", None, reconnect=True)
    assert not state.subscribe_request().HasField("from_revision")
    assert state.process(_event(1, 5))[0] == YIELD
    assert state.process(_event(2, 5))[0] == DROP
    assert state.process(_event(2, 4))[0] == DROP
    action, event = state.process(_event(2, 6))
    assert action == YIELD and event is not None and event.type == "update"
    assert state.subscribe_request().from_revision == 6


def test_from_revision_zero_is_sent() -> None:
    state = ResumeState("aex-1", 0, reconnect=True)
    assert state.subscribe_request().HasField("from_revision")
    assert state.process(_event(2, 0))[0] == DROP
    assert state.process(_event(2, 1))[0] == YIELD


@pytest.mark.parametrize(
    "reason", [daemon_pb2.END_REASON_SHUTDOWN, daemon_pb2.END_REASON_SLOW_CONSUMER]
)
def test_resumable_ends_reopen(reason: int) -> None:
    state = ResumeState("aex-1", 3, reconnect=True)
    assert state.process(_event(4, 3, reason)) == (REOPEN, None)
    assert not state.done
    no_resume = ResumeState("aex-1", 3, reconnect=False)
    action, event = no_resume.process(_event(4, 3, reason))
    assert action == FINISH and event is not None and event.type == "end"
    assert no_resume.done


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        (daemon_pb2.END_REASON_TERMINAL, "terminal"),
        (daemon_pb2.END_REASON_DELETED, "deleted"),
        (daemon_pb2.END_REASON_CANCELLED, "cancelled"),
        (0, "unspecified"),
        (42, "unspecified"),
    ],
)
def test_final_ends(reason: int, name: str) -> None:
    state = ResumeState("aex-1", None, reconnect=True)
    action, event = state.process(_event(4, 9, reason))
    assert action == FINISH
    assert event == Event("end", 9, "aex-1", None, name, "")
    assert state.done


def test_unknown_event_type_is_ignored() -> None:
    state = ResumeState("aex-1", None, reconnect=True)
    assert state.process(_event(9, 100)) == (DROP, None)
    assert state.last_revision is None


def test_backoff_grows_bounded_and_resets() -> None:
    backoff = Backoff(ReconnectPolicy(initial_backoff=0.05, max_backoff=2.0))
    cause = OSError("x")
    delays = [backoff.next_delay(cause) for _ in range(12)]
    assert 0.025 <= delays[0] <= 0.05
    assert all(0 < d <= 2.0 for d in delays)
    assert delays[-1] >= 1.0
    backoff.reset()
    assert backoff.next_delay(cause) <= 0.05


def test_backoff_gives_up() -> None:
    backoff = Backoff(ReconnectPolicy(give_up_after=0.0))
    with pytest.raises(UnavailableError):
        backoff.next_delay(OSError("gone"))
