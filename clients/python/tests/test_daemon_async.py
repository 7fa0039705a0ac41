"""The asyncio client against the real daemon binary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import Daemon
from helpers import GUARD, assert_ordered_unique, content, status

import stigmer_client as sc
from stigmer_client import Event, ReconnectPolicy, Request
from stigmer_client.aio import AsyncClient, AsyncSubscription

FAST = ReconnectPolicy(initial_backoff=0.02, max_backoff=0.5, give_up_after=GUARD)


async def _next(sub: AsyncSubscription) -> Event:
    event = await sub.next_event(timeout=GUARD)
    assert event is not None, "stream ended early"
    return event


def _client(daemon: Daemon, **kwargs: object) -> AsyncClient:
    return AsyncClient(daemon.socket_path, **kwargs)  # type: ignore[arg-type]


def test_async_crud_concurrent_on_one_connection(daemon: Daemon) -> None:
    async def main() -> None:
        async with _client(daemon) as client:
            pong = await client.ping()
            assert pong.protocol_version == 1
            assert (await client.status()).protocol_version == 1
            created = await asyncio.gather(
                *(client.create("agent", f"m{i}", "s") for i in range(50))
            )
            ids = [e.metadata.id for e in created]
            assert len(set(ids)) == 50
            got = await asyncio.gather(*(client.get(i) for i in ids))
            assert [g.metadata.id for g in got] == ids
            listed = await client.list(session_id="s", page_size=7)
            assert sorted(e.metadata.id for e in listed) == sorted(ids)
            assert [e.metadata.id for e in listed] == sorted(ids)  # creation order = id order
            deleted = await asyncio.gather(*(client.delete(i) for i in ids[:10]))
            assert len(set(deleted)) == 10
            assert len(await client.list()) == 40

    asyncio.run(main())


def test_async_each_error_class(daemon: Daemon, tmp_path: Path) -> None:
    async def main() -> None:
        async with _client(daemon) as client:
            with pytest.raises(sc.InvalidArgumentError):
                await client.create("agent", "")
            with pytest.raises(sc.NotFoundError):
                await client.get("aex-01jzzzzzzzzzzzzzzzzzzzzzzz")
            eid = (await client.create("agent", "x")).metadata.id
            with pytest.raises(sc.AlreadyExistsError):
                await client.create("agent", "x", execution_id=eid)
            await client.update_status(eid, status("", sc.EXECUTION_TERMINATED))
            with pytest.raises(sc.FailedPreconditionError, match="EXECUTION_TERMINATED"):
                await client.update_status(eid, status("late"))
            with pytest.raises(sc.UnimplementedError):
                await client.call(Request())
            ahead = (await client.ping()).revision + 1000
            with pytest.raises(sc.OutOfRangeError):
                await client.subscribe(eid, from_revision=ahead).__anext__()
            with pytest.raises(sc.InvalidArgumentError):
                await client.list_page(page_size=5000)
            assert (await client.ping()).protocol_version == 1
        async with AsyncClient(str(tmp_path / "none.sock")) as client:
            with pytest.raises(sc.UnavailableError):
                await client.ping()

    asyncio.run(main())


def test_async_every_revision_once_in_order_under_concurrent_writers(daemon: Daemon) -> None:
    async def main() -> None:
        async with _client(daemon) as shared, _client(daemon) as other:
            eid = (await shared.create("agent", "race")).metadata.id
            written: Dict[int, str] = {}

            async def writer(client: AsyncClient, name: str, n: int) -> None:
                for j in range(n):
                    label = f"{name}-{j}"
                    reply = await client.update_status_reply(eid, status(label))
                    written[reply.revision] = label

            async def watch() -> List[Event]:
                async with _client(daemon) as watcher:
                    return [e async for e in watcher.subscribe(eid, from_revision=0)]

            watcher = asyncio.ensure_future(watch())
            # Four writers: three multiplexed on one connection, one on another.
            await asyncio.gather(
                writer(shared, "a", 25),
                writer(shared, "b", 25),
                writer(shared, "c", 25),
                writer(other, "d", 25),
            )
            final = await other.update_status_reply(eid, status("end", sc.EXECUTION_COMPLETED))
            events = await asyncio.wait_for(watcher, GUARD)
        assert_ordered_unique(events)
        updates = [e for e in events if e.type in ("update", "delta")]
        # The create comes whole; every change after it as its operations.
        assert [e.type for e in updates] == ["update"] + ["delta"] * 101
        # The create, the 100 writes and the final one, each exactly once.
        assert len(updates) == 1 + 100 + 1
        assert {e.revision: content(e) for e in updates[1:-1]} == written
        assert updates[-1].revision == final.revision
        assert events[-1].type == "end" and events[-1].reason == "terminal"

    asyncio.run(main())


def test_async_updates_from_one_connection_commit_in_send_order(daemon: Daemon) -> None:
    async def main() -> None:
        async with _client(daemon) as client:
            eid = (await client.create("agent", "order")).metadata.id
            replies = await asyncio.gather(
                *(client.update_status_reply(eid, status(f"o{i}")) for i in range(40))
            )
            revisions = [r.revision for r in replies]
            assert revisions == sorted(revisions)
            assert content_of(await client.get(eid)) == "o39"

    def content_of(execution: sc.AgentExecution) -> str:
        return execution.status.messages[-1].content

    asyncio.run(main())


def test_async_resume_across_daemon_restart(daemon: Daemon) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with _client(daemon, reconnect=FAST) as watcher:
            async with _client(daemon) as writer:
                eid = (await writer.create("agent", "restart")).metadata.id
                sub = watcher.subscribe(eid)
                got = [await _next(sub)]  # the snapshot
                before = [await writer.update_status_ack(eid, status(f"a{i}")) for i in range(3)]
            got += [await _next(sub) for _ in range(3)]
            assert [e.revision for e in got[1:]] == before
            # The subscriber is waiting while the daemon stops and starts again.
            pending = asyncio.ensure_future(_next(sub))
            await loop.run_in_executor(None, daemon.restart)
            async with _client(daemon) as writer:
                after = [
                    (await writer.update_status_reply(eid, status(f"b{i}"))).revision
                    for i in range(4)
                ]
                more = [await asyncio.wait_for(pending, GUARD)]
                more += [await _next(sub) for _ in range(3)]
                assert [e.revision for e in more] == after
                assert [content(e) for e in more] == [f"b{i}" for i in range(4)]
                final = (
                    await writer.update_status_reply(eid, status("z", sc.EXECUTION_COMPLETED))
                ).revision
            rest = [e async for e in sub]
            assert [(e.type, e.revision) for e in rest] == [("delta", final), ("end", final)]
            assert_ordered_unique(got + more + rest)

    asyncio.run(main())


def test_async_cancellation_seen_by_running_writer(daemon: Daemon) -> None:
    async def main() -> None:
        async with _client(daemon) as runner, _client(daemon) as operator:
            eid = (await runner.create("agent", "job")).metadata.id
            stop = asyncio.Event()
            refused: List[sc.FailedPreconditionError] = []

            async def run() -> int:
                sent = 0
                while True:
                    try:
                        await runner.update_status(eid, status(f"t{sent}"))
                    except sc.FailedPreconditionError as exc:
                        refused.append(exc)
                        return sent
                    sent += 1
                    if sent == 5:
                        stop.set()
                    await asyncio.sleep(0)

            task = asyncio.ensure_future(run())
            await asyncio.wait_for(stop.wait(), GUARD)
            await operator.update_status(eid, status("", sc.EXECUTION_CANCELLED))
            sent = await asyncio.wait_for(task, GUARD)
            assert sent >= 5
            assert "EXECUTION_CANCELLED" in refused[0].message
            execution = await operator.get(eid)
            assert execution.status.phase == sc.EXECUTION_CANCELLED
            assert execution.status.messages[-1].content == f"t{sent - 1}"

    asyncio.run(main())


def test_async_slow_subscriber_overflows_without_loss(daemon: Daemon) -> None:
    async def main() -> None:
        async with _client(daemon, stream_buffer=4, reconnect=FAST) as client:
            eid = (await client.create("agent", "slow")).metadata.id
            sub = client.subscribe(eid)
            assert (await _next(sub)).type == "snapshot"
            revisions = [
                (await client.update_status_reply(eid, status(f"s{i}"))).revision for i in range(30)
            ]
            final = (
                await client.update_status_reply(eid, status("f", sc.EXECUTION_COMPLETED))
            ).revision
            events = [e async for e in sub]
            assert [e.revision for e in events] == [*revisions, final, final]

    asyncio.run(main())


def test_async_delete_ends_stream(daemon: Daemon) -> None:
    async def main() -> None:
        async with _client(daemon) as client:
            eid = (await client.create("agent", "del")).metadata.id
            async with client.subscribe(eid) as sub:
                assert (await _next(sub)).type == "snapshot"
                revision = await client.delete(eid)
                end = await _next(sub)
                assert (end.type, end.reason, end.revision) == ("end", "deleted", revision)
                assert await sub.next_event() is None

    asyncio.run(main())
