"""The offsets ``append_text`` tracks: the byte length of each message it appends to.

A text append names the UTF-8 byte offset where its text starts
(``AppendText.offset``): the daemon applies it when that is the message's
length, acknowledges it without a second copy when the message already holds
the text there (a retry), and refuses any other offset with ``ABORTED``. So
that a runner calling ``append_text`` once per token never has to fetch the
execution, the client remembers, per execution and message, the length the
message has after its own last append. It learns it from its own appends and
operations, or from one ``get`` the first time. Shared by both clients.

An append whose outcome is unknown (no reply: the client gave up
reconnecting, or the call timed out) leaves its position pending: when the
caller sends the same text again, it goes to the same offset, so the daemon
acknowledges it if the first one was applied, instead of appending a copy.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

from . import _delta
from ._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import AgentExecutionStatus
from ._proto.stigmer.daemon.v1 import delta_pb2

__all__ = ["TextTracker", "utf8_length"]

#: Executions tracked at most; beyond, the oldest is forgotten (and fetched
#: again should it be appended to).
DEFAULT_LIMIT = 4096


def utf8_length(text: str) -> int:
    """The length of ``text`` in bytes of UTF-8 (what offsets count)."""
    return len(text.encode("utf-8"))


class _Track:
    """What is known of one execution's messages."""

    __slots__ = ("last", "lengths")

    def __init__(self, last: int) -> None:
        #: The index ``message_index=-1`` stands for: the last message known
        #: (0 when the execution has none: a new first message).
        self.last = last
        #: Message index -> its content's length in bytes, after this client's
        #: last append to it.
        self.lengths: Dict[int, int] = {}

    def set(self, index: int, length: int) -> None:
        self.last = max(self.last, index)
        self.lengths[index] = length


class TextTracker:
    """Message lengths per execution, for ``append_text`` without an offset."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        """Track nothing yet; keep at most ``limit`` executions."""
        self._limit = max(1, limit)
        self._tracks: Dict[str, _Track] = {}
        #: Execution id -> (message_index asked, message index, offset, text)
        #: of an append whose outcome is unknown.
        self._unsure: Dict[str, Tuple[int, int, int, str]] = {}

    def position(
        self, execution_id: str, message_index: int, offset: Optional[int], text: str = ""
    ) -> Optional[Tuple[int, int]]:
        """``(message index, offset)`` of the next append, or ``None`` when a fetch is needed."""
        unsure = self._unsure.pop(execution_id, None)
        if unsure is not None:
            asked, index, start, sent = unsure
            if sent == text and message_index in (asked, index) and offset in (None, start):
                return index, start  # the same append again: where it went before
        track = self._tracks.get(execution_id)
        index = message_index
        if index == -1:
            if track is None:
                return None
            index = track.last
        if offset is not None:
            return index, offset
        if track is None or index not in track.lengths:
            return None
        return index, track.lengths[index]

    def learn_status(
        self,
        execution_id: str,
        status: AgentExecutionStatus,
        message_index: int,
        offset: Optional[int],
    ) -> Tuple[int, int]:
        """Learn from the stored status; return ``(message index, offset)`` of the next append.

        ``message_index=-1`` is the last message, or a new first one when
        there is none. An index past the end gets offset 0 (the daemon will
        say what is wrong).
        """
        messages = status.messages
        track = self._track(execution_id, max(len(messages) - 1, 0))
        track.last = max(len(messages) - 1, 0)
        index = track.last if message_index == -1 else message_index
        if index < len(messages):
            track.lengths[index] = utf8_length(messages[index].content)
        elif index == len(messages):
            track.lengths[index] = 0
        return index, offset if offset is not None else track.lengths.get(index, 0)

    def sent(self, execution_id: str, index: int, offset: int, text: str) -> None:
        """Record an append of ``text`` at ``offset`` to message ``index`` (when it is sent).

        Advancing before the reply lets appends that are sent one after the
        other, without waiting for each reply, follow each other (one
        connection commits requests in the order they were sent).
        """
        self._track(execution_id, index).set(index, offset + utf8_length(text))

    def learn_ops(self, execution_id: str, ops: Iterable[delta_pb2.Op]) -> None:
        """Record what operations that were applied did to the messages."""
        for op in ops:
            kind = op.WhichOneof("op")
            if kind == "append_text":
                a = op.append_text
                self.sent(execution_id, a.message_index, a.offset, a.text)
            elif kind == "add_message":
                added = op.add_message
                length = utf8_length(added.message.content)
                self._track(execution_id, added.index).set(added.index, length)
            elif kind == "replace_message":
                replaced = op.replace_message
                length = utf8_length(replaced.message.content)
                self._track(execution_id, replaced.index).lengths[replaced.index] = length
            elif kind == "replace_messages":
                messages = op.replace_messages.messages
                self.forget(execution_id)
                track = self._track(execution_id, max(len(messages) - 1, 0))
                for i, message in enumerate(messages):
                    track.lengths[i] = utf8_length(message.content)
            elif kind == "set_phase" and _delta.is_terminal_phase(op.set_phase):
                self.forget(execution_id)  # no more appends: stop tracking
                return

    def forget(self, execution_id: str) -> None:
        """Forget an execution: its next append without an offset fetches it."""
        self._tracks.pop(execution_id, None)
        self._unsure.pop(execution_id, None)

    def unsure(
        self, execution_id: str, message_index: int, index: int, offset: int, text: str
    ) -> None:
        """Forget an execution after an append whose outcome is unknown, keeping that append.

        The next append of the same text to the same message goes to the same
        offset (the daemon acknowledges it if the first one was applied); any
        other fetches the execution.
        """
        self.forget(execution_id)
        if len(self._unsure) >= self._limit:
            self._unsure.pop(next(iter(self._unsure)))
        self._unsure[execution_id] = (message_index, index, offset, text)

    def __len__(self) -> int:
        """The number of executions tracked."""
        return len(self._tracks)

    def _track(self, execution_id: str, last: int) -> _Track:
        track = self._tracks.get(execution_id)
        if track is None:
            if len(self._tracks) >= self._limit:
                self._tracks.pop(next(iter(self._tracks)))
            track = self._tracks[execution_id] = _Track(last)
        return track
