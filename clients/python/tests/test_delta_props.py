"""Property tests (Hypothesis) of the delta rules: retried appends never duplicate text.

A runner streams text with ``append_text`` and ``add_message``; after a lost
reply it resends ops it already sent, possibly long after, and a confused
writer sends stale offsets. Whatever the interleaving, each message must hold
each text it was sent exactly once, in order: a retry is acknowledged
(ALREADY_APPLIED) or refused, never applied twice.
"""

from __future__ import annotations

from typing import List, Tuple

import pytest

from stigmer_client._delta import ConflictError, InvalidOpError, Outcome, apply
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import enum_pb2
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import (
    AgentExecutionStatus,
    AgentMessage,
)
from stigmer_client._proto.stigmer.daemon.v1.delta_pb2 import AddMessage, AppendText, Op

# Installed with the dev extras; the Python 3.9 run of scripts/test-python
# installs only pytest, so the properties are skipped there.
pytest.importorskip("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st

TEXT = st.text(alphabet="ab é€😀", min_size=1, max_size=4)
# (kind, message pick, earlier-op pick, text, offset): kind 0 appends to a
# message, 1 adds a message, 2 resends an earlier op, 3 sends a stale offset.
STEP = st.tuples(
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 1000),
    TEXT,
    st.integers(0, 40),
)


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def _append(index: int, offset: int, text: str) -> Op:
    return Op(append_text=AppendText(message_index=index, offset=offset, text=text))


def _contents(status: AgentExecutionStatus) -> List[str]:
    return [m.content for m in status.messages]


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40))
def test_retries_leave_each_text_once(steps: List[Tuple[int, int, int, str, int]]) -> None:
    status = AgentExecutionStatus()
    expected: List[str] = []
    sent: List[Op] = []
    for kind, message, pick, text, offset in steps:
        if kind == 0:
            # index == count creates the message (at offset 0).
            index = message % (len(expected) + 1)
            if index == len(expected):
                expected.append("")
            op = _append(index, _utf8_len(expected[index]), text)
            assert apply(status, op) is Outcome.APPLIED
            expected[index] += text
            sent.append(op)
        elif kind == 1:
            op = Op(
                add_message=AddMessage(
                    index=len(expected),
                    message=AgentMessage(type=enum_pb2.MESSAGE_HUMAN, content=text),
                )
            )
            assert apply(status, op) is Outcome.APPLIED
            expected.append(text)
            sent.append(op)
        elif kind == 2 and sent:
            op = sent[pick % len(sent)]
            try:
                outcome = apply(status, op)
            except ConflictError:
                # Only an added message that has grown since (it no longer
                # equals the op's); appends are always acknowledged.
                assert op.WhichOneof("op") == "add_message"
            else:
                # Appends are always acknowledged: content only grows.
                assert outcome is Outcome.ALREADY_APPLIED
        elif expected:
            index = message % len(expected)
            length = _utf8_len(expected[index])
            if offset == length:
                continue  # that is a valid append, not a stale one
            try:
                outcome = apply(status, _append(index, offset, text))
            except ConflictError:
                pass  # past the end, or other text there
            except InvalidOpError:
                assert offset < length, "inside a character"
            else:
                assert outcome is Outcome.ALREADY_APPLIED
                assert offset < length
        assert _contents(status) == expected
