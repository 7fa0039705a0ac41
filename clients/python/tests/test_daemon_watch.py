"""Watchers (many-execution streams) against the real daemon binary, sync and asyncio.

What the fake daemon cannot prove: that the daemon's list, bookmarks and live
events, the client's delta application and its resume across a restart fit
together -- the cache a watcher keeps is what ``get`` returns, a session's
watch is exactly the merge of its executions' own streams, and nothing of
another session ever shows.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Dict, List

import pytest
from conftest import Daemon
from helpers import GUARD, cache_is_the_store, changes, created, merged_streams, take, until

import stigmer_client as sc
from stigmer_client import Client, ReconnectPolicy, WatchEvent
from stigmer_client.aio import AsyncClient, AsyncWatcher

FAST = ReconnectPolicy(initial_backoff=0.02, max_backoff=0.5, give_up_after=GUARD)


def test_list_bookmark_and_live_events(daemon: Daemon) -> None:
    with daemon.client() as writer, daemon.client() as client:
        a = writer.create("agent", "a", "s").metadata.id
        other = writer.create("agent", "other", "t").metadata.id
        writer.append_text(a, "one")
        b = writer.create("agent", "b", "s").metadata.id
        with client.watch("s") as watcher:
            listed = take(watcher, 3)
            assert [(e.type, e.execution_id) for e in listed] == [
                ("snapshot", a),
                ("snapshot", b),
                ("bookmark", ""),
            ]
            assert listed[0].revision < listed[1].revision <= listed[2].revision
            assert listed[2].initial_events_end and watcher.synced
            assert listed[2].revision == writer.ping().revision
            cache_is_the_store(writer, watcher, "s")

            writer.append_text(other, "not for s")
            c = writer.create("agent", "c", "s").metadata.id
            writer.append_text(c, "tok")
            writer.update_status(b, sc.AgentExecutionStatus(phase=sc.EXECUTION_IN_PROGRESS))
            writer.apply(a, [sc.Op(set_phase=sc.EXECUTION_COMPLETED)])
            deleted = writer.delete(c)
            writer.append_text(other, "still not")
            live = until(watcher, lambda e: e.type == "deleted")
            assert [(e.type, e.execution_id) for e in live] == [
                ("created", c),
                ("delta", c),
                ("delta", b),
                ("delta", a),
                ("deleted", c),
            ]
            revisions = [e.revision for e in live]
            assert revisions == sorted(set(revisions)) and revisions[-1] == deleted
            assert live[1].execution is not None
            assert live[1].execution.status.messages[0].content == "tok"
            assert [op.WhichOneof("op") for op in live[3].ops] == ["set_phase", "stamp"]
            assert live[4].execution is not None and live[4].execution.metadata.id == c
            cache_is_the_store(writer, watcher, "s")
            assert other not in watcher.cache


def test_whole_states_and_deltas_see_the_same_changes(daemon: Daemon) -> None:
    with daemon.client() as writer, daemon.client() as client:
        deltas = client.watch("s")
        whole = client.watch("s", deltas=False)
        for w in (deltas, whole):
            assert take(w, 1)[0].initial_events_end  # an empty session: just the bookmark
        eid = writer.create("agent", "x", "s").metadata.id
        for token in ["a", "b", "c"]:
            writer.append_text(eid, token)
        writer.update_status(eid, sc.AgentExecutionStatus(phase=sc.EXECUTION_COMPLETED))
        last = writer.get_reply(eid).revision
        got_deltas = until(deltas, lambda e: e.revision == last)
        got_whole = until(whole, lambda e: e.revision == last)
        assert {e.type for e in got_deltas} == {"created", "delta"}
        assert {e.type for e in got_whole} == {"created", "update"}
        assert changes(got_deltas) == changes(got_whole) == merged_streams(writer, [eid])
        deltas.close()
        whole.close()


def test_resume_across_a_daemon_restart(daemon: Daemon) -> None:
    with daemon.client(reconnect=FAST) as client:
        watcher = client.watch("s")
        assert take(watcher, 1)[0].initial_events_end  # an empty list
        ids: List[str] = []
        with daemon.client() as writer:
            ids.append(writer.create("agent", "before", "s").metadata.id)
            writer.append_text(ids[0], "x")
        seen = until(watcher, lambda e: e.type == "delta")
        daemon.restart()  # the watcher's stream ends with SHUTDOWN: it resumes
        with daemon.client() as writer:
            writer.append_text(ids[0], "y")  # while the watcher is away
            ids.append(writer.create("agent", "after", "s").metadata.id)
            writer.create("agent", "elsewhere", "t")
            deletes = {ids[0]: writer.delete(ids[0])}
            sentinel = writer.create("agent", "sentinel", "s").metadata.id
            ids.append(sentinel)
            seen += until(watcher, created(sentinel))
            assert changes(seen) == merged_streams(writer, ids, deletes)
            cache_is_the_store(writer, watcher, "s")
        watcher.close()


def test_all_sees_every_session(daemon: Daemon) -> None:
    with daemon.client() as writer, daemon.client() as client:
        a = writer.create("agent", "a", "s").metadata.id
        with client.watch(all=True) as watcher:
            assert [e.type for e in take(watcher, 2)] == ["snapshot", "bookmark"]
            b = writer.create("agent", "b", "t").metadata.id
            c = writer.create("agent", "c").metadata.id  # no session
            events = until(watcher, created(c))
            assert [(e.type, e.execution_id) for e in events] == [("created", b), ("created", c)]
            assert set(watcher.cache) == {a, b, c}


def test_a_session_with_no_execution_and_bookmarks(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon("--bookmark-interval", "100ms")
    with daemon.client() as writer, daemon.client() as client, client.watch("quiet") as watcher:
        [end] = take(watcher, 1)
        assert end.type == "bookmark" and end.initial_events_end and not watcher.cache
        elsewhere = writer.create("agent", "elsewhere", "t").metadata.id
        revision = writer.get_reply(elsewhere).revision
        # Nothing of "quiet" changes: a bookmark says how far the watch is.
        progress = until(watcher, lambda e: e.revision >= revision)
        assert {e.type for e in progress} == {"bookmark"}
        assert not any(e.initial_events_end for e in progress)
        assert watcher.last_revision == progress[-1].revision


def test_a_resume_below_the_history_floor_resyncs(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon("--history-retention", "2")
    with daemon.client() as writer, daemon.client() as client:
        a = writer.create("agent", "a", "s").metadata.id
        for i in range(20):
            writer.append_text(a, str(i))
        b = writer.create("agent", "b", "s").metadata.id
        with client.watch("s", from_revision=1) as watcher:
            events = until(watcher, lambda e: e.initial_events_end)
            assert [(e.type, e.execution_id) for e in events] == [
                ("resync", ""),
                ("snapshot", a),
                ("snapshot", b),
                ("bookmark", ""),
            ]
            cache_is_the_store(writer, watcher, "s")
            writer.append_text(b, "after")
            # Opened from a revision, holding nothing: whole states on this stream.
            [update] = take(watcher, 1)
            assert update.type == "update" and update.execution_id == b
            cache_is_the_store(writer, watcher, "s")


def test_async_watch_while_writing(daemon: Daemon) -> None:
    async def write(writer: AsyncClient, session: str, n: int) -> List[str]:
        ids = []
        for i in range(n):
            eid = (await writer.create("agent", f"m{i}", session)).metadata.id
            await writer.append_text(eid, "0 ")  # the message, and its tracked length
            await asyncio.gather(*(writer.append_text(eid, f"{j} ") for j in range(1, 5)))
            await writer.apply(eid, [sc.Op(set_phase=sc.EXECUTION_COMPLETED)])
            ids.append(eid)
        return ids

    async def main() -> None:
        async with (
            AsyncClient(daemon.socket_path) as writer,
            AsyncClient(daemon.socket_path) as client,
        ):
            watcher: AsyncWatcher
            async with client.watch("s") as watcher:
                first = await watcher.next_event(timeout=GUARD)
                assert first is not None and first.initial_events_end
                mine, _ = await asyncio.gather(write(writer, "s", 4), write(writer, "t", 4))
                sentinel = (await writer.create("agent", "end", "s")).metadata.id
                events: List[WatchEvent] = []
                async for event in watcher:
                    events.append(event)
                    if event.execution_id == sentinel:
                        break
                stored: Dict[str, sc.AgentExecution] = {
                    e.metadata.id: e for e in await writer.list(session_id="s")
                }
                assert dict(watcher.cache) == stored
            assert watcher.closed
            with Client(daemon.socket_path) as sync:
                assert changes(events) == merged_streams(sync, [*mine, sentinel])

    asyncio.run(main())


def test_errors_end_the_watch(daemon: Daemon) -> None:
    with daemon.client(reconnect=FAST) as client:
        ahead = client.ping().revision + 10
        watcher = client.watch("s", from_revision=ahead)
        with pytest.raises(sc.OutOfRangeError):
            watcher.next_event(timeout=GUARD)
        assert watcher.closed
        too_long = client.watch("x" * 5000)
        with pytest.raises(sc.InvalidArgumentError):
            too_long.next_event(timeout=GUARD)
        assert client.ping().protocol_version == 1  # the connection is fine
