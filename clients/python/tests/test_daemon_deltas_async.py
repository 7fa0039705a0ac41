"""Appends and delta subscriptions (the asyncio client) against the real daemon binary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from conftest import Daemon
from helpers import GUARD, assert_ordered_unique
from proxy import Proxy

import stigmer_client as sc
from stigmer_client import Event, Op, ReconnectPolicy
from stigmer_client.aio import AsyncClient, AsyncSubscription

FAST = ReconnectPolicy(initial_backoff=0.02, max_backoff=0.5, give_up_after=GUARD)


async def _next(sub: AsyncSubscription) -> Event:
    event = await sub.next_event(timeout=GUARD)
    assert event is not None, "stream ended early"
    return event


def _states(events: List[Event]) -> List[Tuple[int, object]]:
    return [(e.revision, e.execution) for e in events]


@pytest.fixture
def proxy(daemon: Daemon, tmp_path: Path) -> Iterator[Proxy]:
    p = Proxy(str(tmp_path / "proxy.sock"), daemon.socket_path)
    try:
        yield p
    finally:
        p.close()


def test_async_append_text_and_pipelined_appends(daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.socket_path) as client:
            eid = (await client.create("agent", "tokens")).metadata.id
            first = await client.append_text(eid, "0 ")
            # Not waiting for each reply: the offsets advance as the appends
            # are sent, and one connection commits them in that order.
            tokens = [f"{i}é " for i in range(1, 40)]
            revisions = await asyncio.gather(*(client.append_text(eid, t) for t in tokens))
            assert [first, *revisions] == sorted(set([first, *revisions]))
            text = (await client.get(eid)).status.messages[0].content
            assert text == "0 " + "".join(tokens)
            final = await client.apply(eid, [Op(set_phase=sc.EXECUTION_COMPLETED)])
            assert final > revisions[-1]
            with pytest.raises(sc.FailedPreconditionError):
                await client.append_text(eid, "late")

    asyncio.run(main())


def test_async_append_whose_reply_is_lost(daemon: Daemon, proxy: Proxy) -> None:
    async def main() -> None:
        async with AsyncClient(proxy.path, reconnect=FAST) as client:
            eid = (await client.create("agent", "lost")).metadata.id
            await client.append_text(eid, "one")
            proxy.drop_reply_to = "append"
            proxy.on_drop = daemon.restart
            lost = await client.append_text(eid, " two")
            await client.append_text(eid, " three")
            assert (await client.get(eid)).status.messages[0].content == "one two three"
            assert proxy.dropped[0].execution.revision == lost

    asyncio.run(main())


def test_async_delta_subscription_matches_whole_and_resumes(daemon: Daemon) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with AsyncClient(daemon.socket_path, reconnect=FAST) as watcher:
            async with AsyncClient(daemon.socket_path) as writer:
                eid = (await writer.create("agent", "watch")).metadata.id
                sub = watcher.subscribe(eid)
                got = [await _next(sub)]
                assert got[0].type == "snapshot" and not got[0].ops
                for token in ["a", "b", "c"]:
                    await writer.append_text(eid, token)
                got += [await _next(sub) for _ in range(3)]
                assert all(e.ops for e in got[1:])
            pending = asyncio.ensure_future(_next(sub))
            await loop.run_in_executor(None, daemon.restart)
            async with AsyncClient(daemon.socket_path) as writer:
                await writer.append_text(eid, "d")
                got.append(await asyncio.wait_for(pending, GUARD))
                await writer.update_status(
                    eid, sc.AgentExecutionStatus(phase=sc.EXECUTION_COMPLETED)
                )
            got += [e async for e in sub]
            assert_ordered_unique(got)
            last = got[-2].execution
            assert last is not None and last.status.messages[0].content == "abcd"
            async with AsyncClient(daemon.socket_path) as client:
                start = got[0].revision
                whole = [e async for e in client.subscribe(eid, start, deltas=False)]
                deltas = [e async for e in client.subscribe(eid, start)]
            assert _states(got[1:]) == _states(whole) == _states(deltas)

    asyncio.run(main())
