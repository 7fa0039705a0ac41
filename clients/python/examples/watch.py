#!/usr/bin/env python3
"""Watch one execution live (asyncio client): one line per committed change.

Usage::

    watch.py aex-...                      # snapshot, then every change
    watch.py aex-... --from-revision 41   # every change after revision 41
    watch.py aex-... --json               # each event's execution as JSON
    watch.py aex-... --whole              # ask for whole states instead of deltas

Each change comes as a delta (its operations) applied by the client to the
state it holds; a line shows how many operations it had.

It reconnects and resumes by itself when the daemon restarts, and exits when
the execution reaches a final phase or is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import List, Optional

from google.protobuf import json_format

from stigmer_client import ExecutionPhase, StigmerError
from stigmer_client.aio import AsyncClient


async def watch(
    socket: Optional[str],
    execution_id: str,
    from_revision: Optional[int],
    as_json: bool,
    deltas: bool = True,
) -> int:
    """Print the execution's events until its stream ends."""
    async with (
        AsyncClient(socket) as client,
        client.subscribe(execution_id, from_revision, deltas=deltas) as events,
    ):
        async for event in events:
            if event.type == "end":
                print(f"#{event.revision} end ({event.reason}) {event.message}".rstrip())
                continue
            assert event.execution is not None
            status = event.execution.status
            if as_json:
                print(json_format.MessageToJson(event.execution, indent=None))
                continue
            last = status.messages[-1].content if status.messages else ""
            if len(last) > 60:
                last = "..." + last[-57:]
            phase = ExecutionPhase.Name(status.phase)
            ops = f" ops={len(event.ops)}" if event.ops else ""
            print(
                f"#{event.revision} {event.type} {phase} messages={len(status.messages)} "
                f"tools={len(status.tool_calls)}{ops} {last!r}",
                flush=True,
            )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("execution_id")
    parser.add_argument("--from-revision", type=int)
    parser.add_argument("--socket", help="daemon socket (default: as the daemon resolves it)")
    parser.add_argument("--json", action="store_true", help="print executions as JSON")
    parser.add_argument(
        "--whole", action="store_true", help="whole states on the wire instead of deltas"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(
            watch(args.socket, args.execution_id, args.from_revision, args.json, not args.whole)
        )
    except StigmerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
