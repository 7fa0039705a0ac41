"""Applying delta operations (``Op``, stigmer/daemon/v1/delta.proto) to a status.

This module exists so that the Python client rebuilds an execution's status
from a delta stream exactly as the daemon does: it mirrors the Rust module
``stigmer_proto::delta`` (``proto/src/delta/``, whose documentation is the
normative statement of the rules, quoted in docs/PROTOCOL.md), and
``tests/test_delta_vectors.py`` runs every case of the shared golden file
``tests/vectors/deltas.json`` to prove both reach the same bytes.

In short (offsets and lengths are in bytes of UTF-8):

- ``append_text``: at ``message_index`` equal to the message count, creates a
  message of ``type`` (UNSPECIFIED: ``MESSAGE_AI``) first, only at offset 0.
  ``offset == len(content)`` appends; an offset where the content already holds
  the text is :attr:`Outcome.ALREADY_APPLIED`; anything else is a
  :class:`ConflictError`; an offset inside a character is an
  :class:`InvalidOpError`.
- ``add_message``: at the count, pushes; an equal message at a smaller index is
  already applied; else a conflict.
- ``put_tool_call`` / ``put_sub_agent``: replaces the first entry with the same
  (non-empty) id, else appends. ``put_message_tool_call``: the same, on message
  ``message_index``'s own tool calls (an index not below the count: conflict).
  ``append_tool_result``: as ``append_text`` on that tool call's result
  (unknown id: conflict).
- ``put_todo`` / ``remove_todo``: insert or replace / remove by key.
- ``set_phase`` (not UNSPECIFIED), ``set_error``, ``set_started_at``,
  ``set_completed_at``: set. ``replace_message`` (an existing index),
  ``replace_messages``, ``replace_tool_calls``, ``replace_sub_agents``: replace.
- ``stamp``: the daemon's commit stamp (:func:`stamp`); always applied.
- An op that changes nothing is already applied; every enum value an op
  carries must be known; checks of the op alone come before checks against
  the status.
"""

from __future__ import annotations

import datetime
import enum
from typing import Callable, Iterable, Optional, Sequence, TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from ._proto.ai.stigmer.agentic.agentexecution.v1 import enum_pb2
from ._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import (
    AgentExecutionStatus,
    AgentMessage,
    SubAgentExecution,
    TodoItem,
    ToolCall,
)
from ._proto.stigmer.daemon.v1 import delta_pb2
from .errors import AbortedError, InvalidArgumentError

__all__ = [
    "ConflictError",
    "InvalidOpError",
    "Outcome",
    "apply",
    "apply_all",
    "is_terminal_phase",
    "rfc3339",
    "stamp",
]

#: The last second that RFC 3339 (and the daemon) formats: 9999-12-31T23:59:59Z.
MAX_SECONDS = 253_402_300_799

_TERMINAL_PHASES = frozenset(
    {
        enum_pb2.EXECUTION_COMPLETED,
        enum_pb2.EXECUTION_FAILED,
        enum_pb2.EXECUTION_CANCELLED,
        enum_pb2.EXECUTION_TERMINATED,
    }
)


class Outcome(enum.Enum):
    """What applying one op did."""

    #: The status changed.
    APPLIED = "applied"
    #: The status already held what the op makes; nothing changed.
    ALREADY_APPLIED = "already_applied"


class ConflictError(AbortedError):
    """The op does not fit the status (a stale offset or index, an unknown tool call id).

    The daemon answers such an op with ``ABORTED``; the message names what the
    status holds (e.g. ``message 3 is 120 bytes long``).
    """


class InvalidOpError(InvalidArgumentError):
    """The op itself is malformed (the daemon's ``INVALID_ARGUMENT``)."""


_T = TypeVar("_T", bound=Message)


def _known(name: Callable[[int], str], value: int, field: str) -> None:
    try:
        name(value)
    except ValueError:
        raise InvalidOpError(f"{field}: unknown enum value {value}") from None


def _check_tool_call(field: str, call: ToolCall) -> None:
    _known(enum_pb2.ToolCallStatus.Name, call.status, f"{field}.status")


def _check_sub_agent(field: str, sub: SubAgentExecution) -> None:
    _known(enum_pb2.SubAgentStatus.Name, sub.status, f"{field}.status")


def _check_message(field: str, message: AgentMessage) -> None:
    _known(enum_pb2.MessageType.Name, message.type, f"{field}.type")
    for i, call in enumerate(message.tool_calls):
        _check_tool_call(f"{field}.tool_calls[{i}]", call)


def _append_at(current: str, offset: int, text: str, what: str) -> Optional[str]:
    """The offset rule: the new text, or None when already applied."""
    data = current.encode("utf-8")
    length = len(data)
    if offset > length:
        raise ConflictError(f"{what} is {length} bytes long; offset {offset} is past its end")
    if offset < length and data[offset] & 0xC0 == 0x80:
        # A stale offset, as any other that does not match.
        raise ConflictError(
            f"offset {offset} falls inside a UTF-8 character of {what} ({length} bytes long)"
        )
    if offset == length:
        return current + text if text else None
    encoded = text.encode("utf-8")
    end = offset + len(encoded)
    if end <= length and data[offset:end] == encoded:
        return None
    raise ConflictError(
        f"{what} is {length} bytes long and does not hold this text at offset {offset}"
    )


def _append_text(status: AgentExecutionStatus, op: delta_pb2.AppendText) -> Outcome:
    _known(enum_pb2.MessageType.Name, op.type, "append_text.type")
    count = len(status.messages)
    index = op.message_index
    created = False
    if index > count:
        raise ConflictError(
            f"there are {count} messages: message {index} does not exist"
            f" (index {count} creates the next one)"
        )
    if index == count:
        if op.offset != 0:
            raise ConflictError(
                f"there are {count} messages: creating message {index} takes offset 0,"
                f" not {op.offset}"
            )
        unspecified = op.type == enum_pb2.MESSAGE_TYPE_UNSPECIFIED
        status.messages.add(type=enum_pb2.MESSAGE_AI if unspecified else op.type)
        created = True
    message = status.messages[index]
    new = _append_at(message.content, op.offset, op.text, f"message {index}")
    if new is not None:
        message.content = new
    return Outcome.APPLIED if created or new is not None else Outcome.ALREADY_APPLIED


def _add_message(status: AgentExecutionStatus, op: delta_pb2.AddMessage) -> Outcome:
    _check_message("add_message.message", op.message)
    count = len(status.messages)
    if op.index == count:
        status.messages.add().CopyFrom(op.message)
        return Outcome.APPLIED
    if op.index < count:
        if status.messages[op.index] == op.message:
            return Outcome.ALREADY_APPLIED
        raise ConflictError(
            f"there are {count} messages and message {op.index} differs from this one"
        )
    raise ConflictError(
        f"there are {count} messages: a message added now takes index {count}, not {op.index}"
    )


def _put_tool_call(status: AgentExecutionStatus, call: ToolCall) -> Outcome:
    _check_tool_call("put_tool_call", call)
    if not call.id:
        raise InvalidOpError("put_tool_call: the tool call's id is empty")
    for existing in status.tool_calls:
        if existing.id == call.id:
            if existing == call:
                return Outcome.ALREADY_APPLIED
            existing.CopyFrom(call)
            return Outcome.APPLIED
    status.tool_calls.add().CopyFrom(call)
    return Outcome.APPLIED


def _put_message_tool_call(
    status: AgentExecutionStatus, op: delta_pb2.PutMessageToolCall
) -> Outcome:
    call = op.tool_call
    _check_tool_call("put_message_tool_call.tool_call", call)
    if not call.id:
        raise InvalidOpError("put_message_tool_call: the tool call's id is empty")
    count = len(status.messages)
    if op.message_index >= count:
        raise ConflictError(
            f"there are {count} messages: message {op.message_index} does not exist"
        )
    calls = status.messages[op.message_index].tool_calls
    for existing in calls:
        if existing.id == call.id:
            if existing == call:
                return Outcome.ALREADY_APPLIED
            existing.CopyFrom(call)
            return Outcome.APPLIED
    calls.add().CopyFrom(call)
    return Outcome.APPLIED


def _put_sub_agent(status: AgentExecutionStatus, sub: SubAgentExecution) -> Outcome:
    _check_sub_agent("put_sub_agent", sub)
    if not sub.id:
        raise InvalidOpError("put_sub_agent: the sub-agent's id is empty")
    for existing in status.sub_agent_executions:
        if existing.id == sub.id:
            if existing == sub:
                return Outcome.ALREADY_APPLIED
            existing.CopyFrom(sub)
            return Outcome.APPLIED
    status.sub_agent_executions.add().CopyFrom(sub)
    return Outcome.APPLIED


def _append_tool_result(status: AgentExecutionStatus, op: delta_pb2.AppendToolResult) -> Outcome:
    if not op.tool_call_id:
        raise InvalidOpError("append_tool_result: tool_call_id is empty")
    for call in status.tool_calls:
        if call.id == op.tool_call_id:
            new = _append_at(
                call.result, op.offset, op.text, f"the result of tool call {op.tool_call_id!r}"
            )
            if new is None:
                return Outcome.ALREADY_APPLIED
            call.result = new
            return Outcome.APPLIED
    raise ConflictError(
        f"no tool call has id {op.tool_call_id!r} (there are {len(status.tool_calls)} tool calls)"
    )


def _put_todo(status: AgentExecutionStatus, op: delta_pb2.PutTodo) -> Outcome:
    item: TodoItem = op.item
    _known(enum_pb2.TodoStatus.Name, item.status, f"put_todo[{op.key!r}].status")
    if op.key in status.todos and status.todos[op.key] == item:
        return Outcome.ALREADY_APPLIED
    status.todos[op.key].CopyFrom(item)
    return Outcome.APPLIED


def _remove_todo(status: AgentExecutionStatus, key: str) -> Outcome:
    if key not in status.todos:
        return Outcome.ALREADY_APPLIED
    del status.todos[key]
    return Outcome.APPLIED


def _replace_message(status: AgentExecutionStatus, op: delta_pb2.ReplaceMessage) -> Outcome:
    _check_message("replace_message.message", op.message)
    count = len(status.messages)
    if op.index >= count:
        raise ConflictError(f"there are {count} messages: message {op.index} does not exist")
    existing = status.messages[op.index]
    if existing == op.message:
        return Outcome.ALREADY_APPLIED
    existing.CopyFrom(op.message)
    return Outcome.APPLIED


def _replace_list(
    target: RepeatedCompositeFieldContainer[_T],
    items: Sequence[_T],
    check: Callable[[str, _T], None],
    field: str,
) -> Outcome:
    """A replace_* op: every new item checked, then the list swapped whole."""
    for i, item in enumerate(items):
        check(f"{field}[{i}]", item)
    if list(target) == list(items):
        return Outcome.ALREADY_APPLIED
    del target[:]
    target.extend(items)
    return Outcome.APPLIED


def _set_string(status: AgentExecutionStatus, field: str, value: str) -> Outcome:
    if getattr(status, field) == value:
        return Outcome.ALREADY_APPLIED
    setattr(status, field, value)
    return Outcome.APPLIED


def apply(status: AgentExecutionStatus, op: delta_pb2.Op) -> Outcome:
    """Apply one op to ``status`` in place.

    Returns :attr:`Outcome.APPLIED` when the status changed and
    :attr:`Outcome.ALREADY_APPLIED` when it already held what the op makes.
    Raises :class:`ConflictError` when the op does not fit the status and
    :class:`InvalidOpError` when the op is malformed; the status is then
    unchanged.
    """
    kind = op.WhichOneof("op")
    if kind is None:
        raise InvalidOpError("the operation is empty (no op set)")
    if kind == "append_text":
        return _append_text(status, op.append_text)
    if kind == "add_message":
        return _add_message(status, op.add_message)
    if kind == "put_tool_call":
        return _put_tool_call(status, op.put_tool_call)
    if kind == "append_tool_result":
        return _append_tool_result(status, op.append_tool_result)
    if kind == "put_todo":
        return _put_todo(status, op.put_todo)
    if kind == "remove_todo":
        return _remove_todo(status, op.remove_todo)
    if kind == "put_sub_agent":
        return _put_sub_agent(status, op.put_sub_agent)
    if kind == "set_phase":
        _known(enum_pb2.ExecutionPhase.Name, op.set_phase, "set_phase")
        if op.set_phase == enum_pb2.EXECUTION_PHASE_UNSPECIFIED:
            raise InvalidOpError("set_phase: EXECUTION_PHASE_UNSPECIFIED is not a phase to set")
        if status.phase == op.set_phase:
            return Outcome.ALREADY_APPLIED
        status.phase = op.set_phase
        return Outcome.APPLIED
    if kind == "set_error":
        return _set_string(status, "error", op.set_error)
    if kind == "replace_message":
        return _replace_message(status, op.replace_message)
    if kind == "replace_messages":
        return _replace_list(
            status.messages,
            op.replace_messages.messages,
            _check_message,
            "replace_messages.messages",
        )
    if kind == "replace_tool_calls":
        return _replace_list(
            status.tool_calls,
            op.replace_tool_calls.tool_calls,
            _check_tool_call,
            "replace_tool_calls.tool_calls",
        )
    if kind == "replace_sub_agents":
        return _replace_list(
            status.sub_agent_executions,
            op.replace_sub_agents.sub_agent_executions,
            _check_sub_agent,
            "replace_sub_agents.sub_agent_executions",
        )
    if kind == "set_started_at":
        return _set_string(status, "started_at", op.set_started_at)
    if kind == "set_completed_at":
        return _set_string(status, "completed_at", op.set_completed_at)
    if kind == "put_message_tool_call":
        return _put_message_tool_call(status, op.put_message_tool_call)
    if kind == "stamp":
        now = op.stamp
        if not (0 <= now.seconds <= MAX_SECONDS and 0 <= now.nanos < 1_000_000_000):
            raise InvalidOpError(
                f"stamp: {now.seconds}s {now.nanos}ns is not a time between 1970 and 9999"
            )
        stamp(status, now)
        return Outcome.APPLIED
    raise InvalidOpError(f"unknown operation {kind!r}")


def apply_all(status: AgentExecutionStatus, ops: Iterable[delta_pb2.Op]) -> bool:
    """Apply ``ops`` in order; return whether any changed the status.

    False means every op was already applied. On an error (whose message starts
    with the op's position, ``ops[2]: ``) the status may be partly changed:
    apply to a copy and discard it.
    """
    changed = False
    for i, op in enumerate(ops):
        try:
            outcome = apply(status, op)
        except (ConflictError, InvalidOpError) as e:
            raise type(e)(f"ops[{i}]: {e.message}") from None
        changed = changed or outcome is Outcome.APPLIED
    return changed


def is_terminal_phase(phase: int) -> bool:
    """True for the four terminal phases (COMPLETED, FAILED, CANCELLED, TERMINATED)."""
    return phase in _TERMINAL_PHASES


def rfc3339(timestamp: Timestamp) -> str:
    """``timestamp`` in RFC 3339 with microseconds, as the daemon writes it.

    E.g. ``2023-11-14T22:13:20.000000Z`` (nanoseconds truncated). A time outside
    1970..9999 is clamped into it.
    """
    seconds = min(max(timestamp.seconds, 0), MAX_SECONDS)
    nanos = min(max(timestamp.nanos, 0), 999_999_999)
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{nanos // 1000:06d}Z"
    )


def stamp(status: AgentExecutionStatus, timestamp: Timestamp) -> None:
    """Apply the daemon's commit stamp at ``timestamp`` to ``status`` in place.

    started_at when the phase has left UNSPECIFIED/PENDING and it is empty,
    completed_at at a terminal phase when empty, and the status audit:
    created_at when missing, updated_at, event ``status_updated``.
    """
    phase = status.phase
    started = phase not in (enum_pb2.EXECUTION_PHASE_UNSPECIFIED, enum_pb2.EXECUTION_PENDING)
    if started and not status.started_at:
        status.started_at = rfc3339(timestamp)
    if is_terminal_phase(phase) and not status.completed_at:
        status.completed_at = rfc3339(timestamp)
    info = status.audit.status_audit
    if not info.HasField("created_at"):
        info.created_at.CopyFrom(timestamp)
        info.created_at.SetInParent()
    info.updated_at.CopyFrom(timestamp)
    info.updated_at.SetInParent()
    info.event = "status_updated"
