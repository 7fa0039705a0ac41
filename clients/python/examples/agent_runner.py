#!/usr/bin/env python3
"""A stand-in for upstream Stigmer's agent runner, reporting through the daemon.

It streams a (fake) model's tokens into the last AI message, adds tool calls
as the model "uses tools", and ends the execution COMPLETED (or FAILED with
``--fail``), in one of two modes:

- ``--mode append`` (the default): one ``append_text`` per token, and
  operations (``apply``) for the rest: the phase, the messages, the tool
  calls. Each token costs a few dozen bytes on the wire, on disk and to each
  subscriber, however long the transcript. Tool calls are put in the status
  and on the AI message (``put_message_tool_call``) as they start and
  finish, so that both modes pass through the same states and end in the
  same one; no update resends a message.
- ``--mode full``: upstream's pattern: the whole cumulative status every
  ``--every`` tokens (the daemon turns each into the operations that changed).

When the daemon refuses an update because the execution's phase is already
final -- someone cancelled or terminated it -- it stops at once.

Usage::

    agent_runner.py --agent-id my-agent --message "summarize the logs"
    agent_runner.py --execution-id aex-...      # run an execution created elsewhere
    agent_runner.py --mode full --every 10      # upstream's way

The first line printed is the execution id. Exit codes: 0 finished as asked,
2 stopped because the execution was finalized by someone else, 1 error.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Iterator, List, Optional

from google.protobuf.struct_pb2 import Struct

from stigmer_client import (
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    EXECUTION_IN_PROGRESS,
    MESSAGE_AI,
    MESSAGE_HUMAN,
    AddMessage,
    AgentExecutionStatus,
    AgentMessage,
    Client,
    ExecutionPhase,
    FailedPreconditionError,
    Op,
    PutMessageToolCall,
    StigmerError,
    ToolCall,
    ToolCallStatus,
)

#: The ways of reporting (``--mode``).
MODES = ("append", "full")

_TEXT = (
    "the logs show a steady rise in latency after the deploy at noon and the cache "
    "hit ratio drops at the same time which points at the new eviction policy"
)
WORDS = _TEXT.split(" ")


def now() -> str:
    """The current time, RFC 3339 in UTC."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def fake_model(count: int) -> Iterator[str]:
    """Yield ``count`` tokens, like a streaming model."""
    for i in range(count):
        yield WORDS[i % len(WORDS)] + " "


class Stopped(Exception):
    """The execution was finalized by someone else; the runner must stop."""


class Runner:
    """Runs one execution, keeping the cumulative status it reports."""

    def __init__(
        self, client: Client, execution_id: str, prompt: str, mode: str = "append"
    ) -> None:
        """Start from the prompt as the human message and an empty AI message."""
        self.client = client
        self.execution_id = execution_id
        self.mode = mode
        self.messages: List[AgentMessage] = [
            AgentMessage(type=MESSAGE_HUMAN, content=prompt, timestamp=now()),
            AgentMessage(type=MESSAGE_AI, content="", timestamp=now()),
        ]
        self.tool_calls: List[ToolCall] = []
        self.updates = 0

    def send(self, phase: ExecutionPhase, error: str = "") -> None:
        """Send the whole cumulative status; raise :class:`Stopped` when refused as final."""
        status = AgentExecutionStatus(
            phase=phase, messages=self.messages, tool_calls=self.tool_calls, error=error
        )
        try:
            # The whole status goes out every time, so the echo of it is
            # not needed back: a minimal reply (the revision) will do.
            self.client.update_status_ack(self.execution_id, status)
        except FailedPreconditionError as exc:
            raise Stopped(exc.message) from exc
        self.updates += 1

    def apply(self, *ops: Op) -> None:
        """Send operations (append mode); raise :class:`Stopped` when refused as final."""
        try:
            self.client.apply(self.execution_id, ops)
        except FailedPreconditionError as exc:
            raise Stopped(exc.message) from exc
        self.updates += 1

    def append(self, token: str) -> None:
        """Append one token to the AI message (append mode)."""
        self.messages[-1].content += token
        try:
            # The client tracks the message's length (the offset of the next
            # token) and resends an append lost to a reconnect, which the
            # daemon acknowledges without a second copy.
            self.client.append_text(self.execution_id, token)
        except FailedPreconditionError as exc:
            raise Stopped(exc.message) from exc
        self.updates += 1

    def start_tool(self, index: int) -> None:
        """Record a tool call the model made, RUNNING, on the last AI message."""
        args = Struct()
        args.update({"query": f"step {index}", "limit": 10})
        call = ToolCall(
            id=f"call-{index}",
            name="search_logs",
            args=args,
            status=ToolCallStatus.TOOL_CALL_RUNNING,
            started_at=now(),
        )
        self.tool_calls.append(call)
        self.messages[-1].tool_calls.append(call)
        if self.mode == "append":
            self.apply(*self.tool_call_ops(call))

    def finish_tools(self) -> None:
        """Complete every running tool call."""
        finished = ""
        for calls in (self.tool_calls, self.messages[-1].tool_calls):
            for call in calls:
                if call.status == ToolCallStatus.TOOL_CALL_RUNNING:
                    finished = finished or call.id
                    call.status = ToolCallStatus.TOOL_CALL_COMPLETED
                    call.result = "3 matches"
                    call.completed_at = now()
        if self.mode == "append" and finished:
            call = next(call for call in self.messages[-1].tool_calls if call.id == finished)
            self.apply(*self.tool_call_ops(call))

    def tool_call_ops(self, call: ToolCall) -> List[Op]:
        """Put ``call`` in the status's tool calls and in the AI message's."""
        on_message = PutMessageToolCall(message_index=len(self.messages) - 1, tool_call=call)
        return [Op(put_tool_call=call), Op(put_message_tool_call=on_message)]

    def finish(self, phase: ExecutionPhase, error: str = "") -> None:
        """End the execution in ``phase``."""
        if self.mode == "full":
            self.send(phase, error)
            return
        # One update: the error, the phase.
        ops = [Op(set_error=error)] if error else []
        self.apply(*ops, Op(set_phase=phase))

    def run(self, tokens: int, every: int, tool_every: int, delay: float, fail: bool) -> None:
        """Stream the model's output, then end COMPLETED or FAILED."""
        if self.mode == "full":
            self.send(EXECUTION_IN_PROGRESS)
        else:  # the phase and the two messages, in one update
            human, ai = self.messages
            self.apply(
                Op(set_phase=EXECUTION_IN_PROGRESS),
                Op(add_message=AddMessage(index=0, message=human)),
                Op(add_message=AddMessage(index=1, message=ai)),
            )
        for i, token in enumerate(fake_model(tokens), start=1):
            if self.mode == "full":
                self.messages[-1].content += token
            else:
                self.append(token)
            if tool_every and i % tool_every == 0:
                self.finish_tools()
                self.start_tool(i // tool_every)
            if self.mode == "full" and i % every == 0:
                self.send(EXECUTION_IN_PROGRESS)
            if delay:
                time.sleep(delay)
        self.finish_tools()
        if fail:
            self.finish(EXECUTION_FAILED, error="the model gave up (requested with --fail)")
        else:
            self.finish(EXECUTION_COMPLETED)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", help="daemon socket (default: as the daemon resolves it)")
    parser.add_argument("--execution-id", help="run this existing execution")
    parser.add_argument("--agent-id", default="example-agent")
    parser.add_argument("--message", default="summarize the logs")
    parser.add_argument("--session-id")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="append",
        help="append: one append per token (default); full: the whole status every --every tokens",
    )
    parser.add_argument("--tokens", type=int, default=120, help="tokens the model produces")
    parser.add_argument(
        "--every", type=int, default=10, help="--mode full: send the status every N tokens"
    )
    parser.add_argument("--tool-every", type=int, default=40, help="a tool call every N tokens")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--fail", action="store_true", help="end FAILED instead of COMPLETED")
    args = parser.parse_args(argv)
    every = max(1, args.every)

    with Client(args.socket) as client:
        try:
            if args.execution_id:
                execution = client.get(args.execution_id)
            else:
                execution = client.create(args.agent_id, args.message, args.session_id)
            execution_id = execution.metadata.id
            print(execution_id, flush=True)
            runner = Runner(client, execution_id, execution.spec.message, args.mode)
            runner.run(args.tokens, every, args.tool_every, args.delay, args.fail)
        except Stopped as stopped:
            print(f"stopped: {stopped}", flush=True)
            return 2
        except StigmerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"done after {runner.updates} updates", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
