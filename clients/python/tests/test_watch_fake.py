"""Watchers (many-execution streams) against a scripted fake daemon.

The fake daemon can force what the real one does only by chance: a drop in
the middle of an initial list, a RESYNC, a replayed duplicate, a list larger
than the client's buffer arriving at once, a delta that does not follow.
Each test checks the events the watcher yields, its cache and the requests
it sends (where it resumes from, whether it asks for deltas).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import pytest
from fake import FakeConn, FakeDaemon
from helpers import take

import stigmer_client as sc
from stigmer_client import (
    AsyncWatcher,
    Client,
    DataLossError,
    Op,
    ReconnectPolicy,
    UnavailableError,
    WatchEvent,
    WatchEventType,
    daemon_pb2,
)
from stigmer_client.aio import AsyncClient

FAST = ReconnectPolicy(initial_backoff=0.01, max_backoff=0.05)
GUARD = 30.0

SNAP = daemon_pb2.EVENT_SNAPSHOT
CREATED = daemon_pb2.EVENT_CREATED
UPD = daemon_pb2.EVENT_UPDATE
DELTA = daemon_pb2.EVENT_DELTA
DELETED = daemon_pb2.EVENT_DELETED
BOOKMARK = daemon_pb2.EVENT_BOOKMARK
RESYNC = daemon_pb2.EVENT_RESYNC
END = daemon_pb2.EVENT_END


def send(
    conn: FakeConn,
    stream: int,
    kind: int,
    revision: int,
    eid: str = "",
    *,
    text: str = "",
    ops: Sequence[Op] = (),
    prev: int = 0,
    end: bool = False,
    reason: int = 0,
) -> None:
    """One event of a many-execution stream; a whole state's message content is ``text``."""
    response = daemon_pb2.Response(id=stream)
    event = response.event
    event.type = kind  # type: ignore[assignment]
    event.revision = revision
    event.execution_id = eid
    if kind in (SNAP, CREATED, UPD):
        event.execution.metadata.id = eid
        event.execution.spec.session_id = "s"
        event.execution.status.messages.add(content=text)
    event.ops.extend(ops)
    event.prev_revision = prev
    event.initial_events_end = end
    event.reason = reason  # type: ignore[assignment]
    conn.send(response)


def text_op(text: str, offset: int = 1) -> Op:
    """Append ``text`` to the first message, whose content is ``offset`` bytes long."""
    return Op(append_text=sc.AppendText(message_index=0, offset=offset, text=text))


def listing(conn: FakeConn, stream: int) -> None:
    """The initial list of the scripts: aex-1 at 3, aex-2 at 5, complete at 7."""
    send(conn, stream, SNAP, 3, "aex-1", text="x")
    send(conn, stream, SNAP, 5, "aex-2", text="y")
    send(conn, stream, BOOKMARK, 7, end=True)


def summary(events: Sequence[WatchEvent]) -> List[Tuple[str, int, str]]:
    return [(str(e.type), e.revision, e.execution_id) for e in events]


def contents(cache: Dict[str, sc.AgentExecution]) -> Dict[str, str]:
    return {eid: "".join(m.content for m in e.status.messages) for eid, e in cache.items()}


def test_watch_needs_exactly_one_selector(tmp_path: Path) -> None:
    with Client(str(tmp_path / "none.sock")) as client:
        with pytest.raises(ValueError, match="exactly one"):
            client.watch()
        with pytest.raises(ValueError, match="exactly one"):
            client.watch("s", all=True)
        with pytest.raises(ValueError, match="empty"):
            client.watch("")


def test_list_bookmark_live_events_and_cache(tmp_path: Path) -> None:
    requests: List[daemon_pb2.Request] = []

    def script(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        requests.append(request)
        listing(conn, request.id)
        send(conn, request.id, CREATED, 8, "aex-3", text="z")
        send(conn, request.id, DELTA, 9, "aex-1", ops=[text_op("+")], prev=3)
        send(conn, request.id, UPD, 10, "aex-2", text="y2")
        send(conn, request.id, DELETED, 11, "aex-3")
        send(conn, request.id, BOOKMARK, 12)
        send(conn, request.id, BOOKMARK, 12)  # nothing new: not delivered
        send(conn, request.id, DELTA, 13, "aex-1", ops=[text_op("!", 2)], prev=9)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [script])
    with Client(fake.path) as client, client.watch("s") as watcher:
        assert not watcher.synced
        events = take(watcher, 2)
        assert summary(events) == [("snapshot", 3, "aex-1"), ("snapshot", 5, "aex-2")]
        assert not watcher.synced and watcher.last_revision is None
        [end] = take(watcher, 1)
        assert end.type is WatchEventType.BOOKMARK and end.initial_events_end
        assert watcher.synced and watcher.last_revision == 7
        assert contents(dict(watcher.cache)) == {"aex-1": "x", "aex-2": "y"}
        events = take(watcher, 6)
        assert summary(events) == [
            ("created", 8, "aex-3"),
            ("delta", 9, "aex-1"),
            ("update", 10, "aex-2"),
            ("deleted", 11, "aex-3"),
            ("bookmark", 12, ""),
            ("delta", 13, "aex-1"),
        ]
        created, delta, _, deleted, bookmark, last = events
        assert delta.execution is not None and delta.execution.status.messages[0].content == "x+"
        assert [op.append_text.text for op in delta.ops] == ["+"]
        assert deleted.execution is not None and deleted.execution.metadata.id == "aex-3"
        assert not bookmark.initial_events_end and bookmark.execution is None
        assert last.execution is not None and last.execution.status.messages[0].content == "x+!"
        # Each event's execution is its own copy: later deltas leave it alone.
        assert created.execution is not None and created.execution.status.messages[0].content
        assert delta.execution.status.messages[0].content == "x+"
        assert contents(dict(watcher.cache)) == {"aex-1": "x+!", "aex-2": "y2"}
        assert dict(watcher.revisions) == {"aex-1": 13, "aex-2": 10}
        assert watcher.last_revision == 13
    fake.close()
    sub = requests[0].subscribe
    assert sub.session_id == "s" and not sub.all and not sub.execution_id
    assert sub.deltas and not sub.HasField("from_revision")


def test_resync_clears_the_cache_and_a_new_list_follows(tmp_path: Path) -> None:
    def script(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        listing(conn, request.id)
        send(conn, request.id, RESYNC, 20)
        send(conn, request.id, SNAP, 5, "aex-2", text="y")
        send(conn, request.id, SNAP, 18, "aex-5", text="w")
        send(conn, request.id, BOOKMARK, 20, end=True)  # the revision of the RESYNC: delivered
        send(conn, request.id, DELTA, 21, "aex-5", ops=[text_op("+")], prev=18)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [script])
    with Client(fake.path) as client, client.watch(all=True) as watcher:
        take(watcher, 3)
        [resync] = take(watcher, 1)
        assert resync.type == "resync" and resync.revision == 20 and resync.execution is None
        assert dict(watcher.cache) == {} and not watcher.synced
        events = take(watcher, 4)
        assert summary(events) == [
            ("snapshot", 5, "aex-2"),
            ("snapshot", 18, "aex-5"),
            ("bookmark", 20, ""),
            ("delta", 21, "aex-5"),
        ]
        assert events[2].initial_events_end and watcher.synced
        assert contents(dict(watcher.cache)) == {"aex-2": "y", "aex-5": "w+"}
    fake.close()


def _resume_script(requests: List[daemon_pb2.Request]) -> List[Callable[[FakeConn], None]]:
    """Connection 0 drops after a bookmark; connection 1 replays, then shuts down; 2 goes on."""

    def first(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        requests.append(request)
        listing(conn, request.id)
        send(conn, request.id, CREATED, 8, "aex-3", text="z")
        send(conn, request.id, BOOKMARK, 9)

    def second(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        requests.append(request)
        send(conn, request.id, CREATED, 8, "aex-3", text="z")  # delivered already: dropped
        send(conn, request.id, DELTA, 9, "aex-3", ops=[text_op("?")], prev=8)  # dropped
        send(conn, request.id, DELTA, 10, "aex-1", ops=[text_op("+")], prev=3)
        send(conn, request.id, END, 10, reason=daemon_pb2.END_REASON_SHUTDOWN)
        again = conn.recv_command("subscribe")
        requests.append(again)
        send(conn, again.id, DELETED, 11, "aex-2")
        conn.recv()

    return [first, second]


def _check_resume(events: List[WatchEvent], requests: List[daemon_pb2.Request]) -> None:
    assert summary(events) == [
        ("snapshot", 3, "aex-1"),
        ("snapshot", 5, "aex-2"),
        ("bookmark", 7, ""),
        ("created", 8, "aex-3"),
        ("bookmark", 9, ""),
        ("delta", 10, "aex-1"),
        ("deleted", 11, "aex-2"),
    ]
    first, second, third = (r.subscribe for r in requests)
    assert not first.HasField("from_revision")
    assert second.from_revision == 9 and second.deltas and second.session_id == "s"
    assert third.from_revision == 10 and third.deltas
    assert len({r.id for r in requests}) == 3


def test_sync_resume_from_the_last_bookmark_without_duplicate(tmp_path: Path) -> None:
    requests: List[daemon_pb2.Request] = []
    fake = FakeDaemon(tmp_path / "s", _resume_script(requests))
    with Client(fake.path, reconnect=FAST) as client, client.watch("s") as watcher:
        events = take(watcher, 7)
        assert contents(dict(watcher.cache)) == {"aex-1": "x+", "aex-3": "z"}
    fake.close()
    _check_resume(events, requests)


def test_async_resume_from_the_last_bookmark_without_duplicate(tmp_path: Path) -> None:
    requests: List[daemon_pb2.Request] = []
    fake = FakeDaemon(tmp_path / "s", _resume_script(requests))

    async def main() -> List[WatchEvent]:
        async with AsyncClient(fake.path, reconnect=FAST) as client:
            watcher: AsyncWatcher
            async with client.watch("s") as watcher:
                events = []
                async for event in watcher:
                    events.append(event)
                    if len(events) == 7:
                        break
                assert contents(dict(watcher.cache)) == {"aex-1": "x+", "aex-3": "z"}
                return events

    events = asyncio.run(main())
    fake.close()
    _check_resume(events, requests)


def test_a_drop_during_the_list_starts_it_over_after_a_resync(tmp_path: Path) -> None:
    requests: List[daemon_pb2.Request] = []

    def first(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        requests.append(request)
        send(conn, request.id, SNAP, 3, "aex-1", text="x")  # then the connection drops

    def second(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        requests.append(request)
        send(conn, request.id, SNAP, 4, "aex-1", text="x2")
        send(conn, request.id, BOOKMARK, 6, end=True)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [first, second])
    with Client(fake.path, reconnect=FAST) as client, client.watch("s") as watcher:
        events = take(watcher, 4)
        assert summary(events) == [
            ("snapshot", 3, "aex-1"),
            ("resync", 0, ""),
            ("snapshot", 4, "aex-1"),
            ("bookmark", 6, ""),
        ]
        assert contents(dict(watcher.cache)) == {"aex-1": "x2"}
    fake.close()
    assert not requests[1].subscribe.HasField("from_revision")


def test_from_revision_asks_for_whole_states_until_a_list(tmp_path: Path) -> None:
    requests: List[daemon_pb2.Request] = []

    def first(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        requests.append(request)
        send(conn, request.id, UPD, 41, "aex-1", text="a")
        send(conn, request.id, END, 41, reason=daemon_pb2.END_REASON_SHUTDOWN)
        again = conn.recv_command("subscribe")
        requests.append(again)
        send(conn, again.id, RESYNC, 41)
        send(conn, again.id, SNAP, 41, "aex-1", text="a")
        send(conn, again.id, BOOKMARK, 42, end=True)
        send(conn, again.id, END, 42, reason=daemon_pb2.END_REASON_SHUTDOWN)
        last = conn.recv_command("subscribe")
        requests.append(last)
        send(conn, last.id, DELTA, 43, "aex-1", ops=[text_op("b")], prev=41)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [first])
    with Client(fake.path, reconnect=FAST) as client, client.watch("s", from_revision=40) as w:
        events = take(w, 5)
        assert summary(events) == [
            ("update", 41, "aex-1"),
            ("resync", 41, ""),
            ("snapshot", 41, "aex-1"),
            ("bookmark", 42, ""),
            ("delta", 43, "aex-1"),
        ]
        assert w.deltas
    fake.close()
    first_sub, second_sub, third_sub = (r.subscribe for r in requests)
    assert first_sub.from_revision == 40 and not first_sub.deltas
    assert second_sub.from_revision == 41 and not second_sub.deltas
    assert third_sub.from_revision == 42 and third_sub.deltas


def test_a_list_larger_than_the_buffer_does_not_overflow(tmp_path: Path) -> None:
    """A slow reader: the list arrives at once; live events beyond the buffer resume."""
    requests: List[daemon_pb2.Request] = []

    def script(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        requests.append(request)
        for i in range(40):
            send(conn, request.id, SNAP, i + 1, f"aex-{i}", text=str(i))
        send(conn, request.id, BOOKMARK, 40, end=True)
        # While the client waits for each pong, it routes the frames before
        # it to the watcher's inbox: the list, then ten updates.
        conn.pong(conn.recv_command("ping").id)
        ping = conn.recv_command("ping")
        for i in range(10):  # beyond the buffer of 3: the client cancels and resumes
            send(conn, request.id, UPD, 41 + i, f"aex-{i}", text=f"u{i}")
        conn.pong(ping.id)
        while True:  # each resume from where the client stands (it may overflow again)
            again = conn.recv()
            if again is None:
                return
            if again.WhichOneof("command") == "subscribe":
                requests.append(again)
                for revision in range(again.subscribe.from_revision + 1, 51):
                    send(conn, again.id, UPD, revision, f"aex-{revision - 41}", text="u")

    fake = FakeDaemon(tmp_path / "s", [script])
    with Client(fake.path, reconnect=FAST, stream_buffer=3) as client, client.watch("s") as w:
        events = take(w, 1)
        client.ping()
        events += take(w, 40)
        assert [e.type for e in events] == ["snapshot"] * 40 + ["bookmark"]
        client.ping()
        updates = take(w, 10)
        assert [e.revision for e in updates] == list(range(41, 51))
        assert len(w.cache) == 40
    fake.close()
    resumed = [r.subscribe.from_revision for r in requests[1:]]
    assert resumed[0] == 43 and resumed == sorted(set(resumed))


def test_closing_the_watcher_cancels_the_stream(tmp_path: Path) -> None:
    cancels: List[int] = []
    subscribed: List[int] = []

    def script(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        subscribed.append(request.id)
        listing(conn, request.id)
        cancel = conn.recv_command("cancel")
        cancels.append(cancel.cancel.subscription_id)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [script])

    async def main() -> None:
        async with AsyncClient(fake.path) as client:
            watcher = client.watch("s")
            first = await watcher.next_event(timeout=GUARD)
            assert first is not None and first.type == "snapshot"
            await watcher.aclose()
            assert watcher.closed
            assert await watcher.next_event() is None

    asyncio.run(main())
    fake.close()
    assert cancels == subscribed


def test_a_delta_that_does_not_follow_raises(tmp_path: Path) -> None:
    def script(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        listing(conn, request.id)
        send(conn, request.id, DELTA, 8, "aex-1", ops=[text_op("+")], prev=2)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [script])
    with Client(fake.path) as client, client.watch("s") as watcher:
        take(watcher, 3)
        with pytest.raises(DataLossError, match="changes were missed"):
            watcher.next_event(timeout=GUARD)
        assert watcher.closed
    fake.close()


def test_without_reconnect_a_shutdown_raises(tmp_path: Path) -> None:
    def script(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        listing(conn, request.id)
        send(conn, request.id, END, 7, reason=daemon_pb2.END_REASON_SHUTDOWN)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [script])
    with Client(fake.path) as client, client.watch("s", reconnect=False) as watcher:
        take(watcher, 3)
        with pytest.raises(UnavailableError):
            watcher.next_event(timeout=GUARD)
        assert watcher.closed
    fake.close()
