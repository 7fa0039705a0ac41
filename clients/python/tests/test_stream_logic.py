from __future__ import annotations

import pytest

from stigmer_client import DataLossError, ReconnectPolicy, UnavailableError, daemon_pb2, delta_pb2
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


def _delta(revision: int, prev: int, *ops: delta_pb2.Op) -> daemon_pb2.Event:
    event = daemon_pb2.Event(revision=revision, prev_revision=prev, ops=ops)
    event.type = daemon_pb2.EVENT_DELTA
    return event


def _text(offset: int, text: str) -> delta_pb2.Op:
    return delta_pb2.Op(append_text=delta_pb2.AppendText(message_index=0, offset=offset, text=text))


def test_deltas_apply_to_the_state_held() -> None:
    state = ResumeState("aex-1", None, reconnect=True, deltas=True)
    request = state.subscribe_request()
    assert request.deltas and not request.skip_initial_state
    assert state.process(_event(1, 5))[0] == YIELD
    action, event = state.process(_delta(7, 5, _text(0, "ab")))
    assert action == YIELD and event is not None
    assert (event.type, event.revision, event.execution_id) == ("delta", 7, "aex-1")
    assert event.execution is not None
    assert event.execution.status.messages[0].content == "ab"
    assert [op.WhichOneof("op") for op in event.ops] == ["append_text"]
    _, second = state.process(_delta(9, 7, _text(2, "c")))
    assert second is not None and second.execution is not None
    assert second.execution.status.messages[0].content == "abc"
    # Each event has its own copy of the state.
    assert event.execution.status.messages[0].content == "ab"
    assert state.process(_delta(9, 7, _text(2, "c")))[0] == DROP  # already held
    # Resuming: from the last revision, without the state the client holds.
    request = state.subscribe_request()
    assert (request.from_revision, request.deltas, request.skip_initial_state) == (9, True, True)


def test_a_delta_that_does_not_follow_is_a_protocol_error() -> None:
    state = ResumeState("aex-1", None, reconnect=True, deltas=True)
    with pytest.raises(DataLossError, match="before any whole state"):
        state.process(_delta(7, 5, _text(0, "x")))
    state.process(_event(1, 5))
    with pytest.raises(DataLossError, match="applies to revision 6"):
        state.process(_delta(8, 6, _text(0, "x")))
    with pytest.raises(DataLossError, match="does not apply"):
        state.process(_delta(8, 5, _text(3, "x")))


def test_resume_from_a_revision_takes_the_snapshot_as_base() -> None:
    state = ResumeState("aex-1", 10, reconnect=True, deltas=True)
    request = state.subscribe_request()
    assert request.from_revision == 10 and not request.skip_initial_state
    # The state at the last change at or before 10: the base, not delivered again.
    assert state.process(_event(1, 8)) == (DROP, None)
    assert state.subscribe_request().skip_initial_state
    action, event = state.process(_delta(12, 8, _text(0, "x")))
    assert action == YIELD and event is not None and event.revision == 12
    assert state.last_revision == 12


def test_whole_streams_do_not_hold_the_state() -> None:
    state = ResumeState("aex-1", None, reconnect=True)
    assert not state.subscribe_request().deltas
    state.process(_event(1, 5))
    assert state.state is None
    assert not state.subscribe_request().skip_initial_state


def test_a_delta_converted_alone_has_no_state() -> None:
    event = Event.from_proto(_delta(7, 5, _text(0, "x")))
    assert event is not None
    assert (event.type, event.revision, event.execution) == ("delta", 7, None)
    assert [op.append_text.text for op in event.ops] == ["x"]
