"""Client behaviour against a scripted fake daemon: timeouts, drops, resume, routing."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import List

import pytest
from fake import FakeConn, FakeDaemon

from stigmer_client import (
    AgentExecutionStatus,
    AgentMessage,
    Client,
    DataLossError,
    DeadlineExceededError,
    Event,
    PermissionDeniedError,
    ReconnectPolicy,
    ResourceExhaustedError,
    UnavailableError,
    daemon_pb2,
)
from stigmer_client.aio import AsyncClient

FAST = ReconnectPolicy(initial_backoff=0.01, max_backoff=0.05)
SNAP, UPD, END = daemon_pb2.EVENT_SNAPSHOT, daemon_pb2.EVENT_UPDATE, daemon_pb2.EVENT_END


def _silent(conn: FakeConn) -> None:
    conn.recv_command("ping")
    conn.recv()  # wait for the client to go away


def _connection_error(conn: FakeConn) -> None:
    conn.recv_command("ping")
    response = daemon_pb2.Response(id=0)
    response.error.code = daemon_pb2.RESOURCE_EXHAUSTED
    response.error.message = "too many connections"
    conn.send(response)


def _resume_script() -> List[object]:
    """Connection 0 drops after two events; connection 1 replays a duplicate and a shutdown."""
    seen: List[daemon_pb2.Request] = []

    def first(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        seen.append(request)
        conn.event(request.id, SNAP, 5)
        conn.event(request.id, UPD, 6)

    def second(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        seen.append(request)
        conn.event(request.id, UPD, 6)  # already delivered: must be dropped
        conn.event(request.id, UPD, 7)
        conn.event(request.id, END, 7, daemon_pb2.END_REASON_SHUTDOWN)
        again = conn.recv_command("subscribe")
        seen.append(again)
        conn.event(again.id, UPD, 8)
        conn.event(again.id, END, 8, daemon_pb2.END_REASON_TERMINAL)
        conn.recv()

    return [first, second, seen]


def _check_resume(events: List[Event], seen: List[daemon_pb2.Request]) -> None:
    assert [(e.type, e.revision) for e in events] == [
        ("snapshot", 5),
        ("update", 6),
        ("update", 7),
        ("update", 8),
        ("end", 8),
    ]
    assert events[-1].reason == "terminal"
    assert [e.execution.status.error for e in events[:-1] if e.execution] == [
        "rev5",
        "rev6",
        "rev7",
        "rev8",
    ]
    assert not seen[0].subscribe.HasField("from_revision")
    assert seen[1].subscribe.from_revision == 6
    assert seen[2].subscribe.from_revision == 7
    assert len({r.id for r in seen}) == 3


def _interleave(conn: FakeConn) -> None:
    sub = conn.recv_command("subscribe")
    conn.event(sub.id, SNAP, 1)
    ping = conn.recv_command("ping")
    conn.event(sub.id, UPD, 2)  # arrives while the client waits for the pong
    conn.event(sub.id, UPD, 3)
    conn.pong(ping.id)
    conn.event(sub.id, END, 3, daemon_pb2.END_REASON_TERMINAL)
    conn.recv()


def _reverse_pongs(conn: FakeConn) -> None:
    pings = [conn.recv_command("ping") for _ in range(20)]
    for ping in reversed(pings):
        conn.pong(ping.id)
    conn.recv()


def _retry_unavailable(conn: FakeConn) -> None:
    first = conn.recv_command("subscribe")
    error = daemon_pb2.Response(id=first.id)
    error.error.code = daemon_pb2.UNAVAILABLE
    error.error.message = "shutting down"
    conn.send(error)
    second = conn.recv_command("subscribe")
    conn.event(second.id, SNAP, 4)
    conn.event(second.id, END, 4, daemon_pb2.END_REASON_DELETED)
    conn.recv()


# -- sync ---------------------------------------------------------------------


def test_sync_timeout(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_silent])
    with Client(fake.path, timeout=0.2) as client, pytest.raises(DeadlineExceededError):
        client.ping()
    fake.close()


def test_sync_connection_error(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_connection_error])
    with Client(fake.path) as client:
        with pytest.raises(ResourceExhaustedError, match="too many connections"):
            client.ping()
        assert not client.connected
    fake.close()


def test_sync_unreachable(tmp_path: Path) -> None:
    with Client(str(tmp_path / "nothing.sock")) as client, pytest.raises(UnavailableError):
        client.ping()


def test_sync_give_up(tmp_path: Path) -> None:
    policy = ReconnectPolicy(initial_backoff=0.01, max_backoff=0.02, give_up_after=0.1)
    with Client(str(tmp_path / "nothing.sock"), reconnect=policy) as client:
        sub = client.subscribe("aex-1")
        with pytest.raises(UnavailableError, match="gave up"):
            next(sub)
        assert sub.closed


def test_sync_frame_too_long_is_not_sent(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_silent])
    status = AgentExecutionStatus(messages=[AgentMessage(content="x" * 200)])
    with Client(fake.path, max_frame_length=100) as client:
        with pytest.raises(ResourceExhaustedError):
            client.update_status("aex-1", status)
        with pytest.raises(DeadlineExceededError):
            client.ping(timeout=0.2)  # the connection is still usable
    fake.close()


def test_sync_resume_without_gap_or_duplicate(tmp_path: Path) -> None:
    first, second, seen = _resume_script()
    fake = FakeDaemon(tmp_path / "s", [first, second])  # type: ignore[list-item]
    with Client(fake.path, reconnect=FAST) as client:
        events = list(client.subscribe("aex-1"))
    fake.close()
    _check_resume(events, seen)  # type: ignore[arg-type]


def test_sync_no_reconnect_raises(tmp_path: Path) -> None:
    first, _, _ = _resume_script()
    fake = FakeDaemon(tmp_path / "s", [first])  # type: ignore[list-item]
    with Client(fake.path) as client:
        sub = client.subscribe("aex-1", reconnect=False)
        assert next(sub).revision == 5
        assert next(sub).revision == 6
        with pytest.raises(UnavailableError):
            next(sub)
    fake.close()


def test_sync_interleaves_subscription_and_calls(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_interleave])
    with Client(fake.path) as client:
        sub = client.subscribe("aex-1")
        assert next(sub).type == "snapshot"
        client.ping()
        assert [(e.type, e.revision) for e in sub] == [("update", 2), ("update", 3), ("end", 3)]
    fake.close()


def test_sync_retries_unavailable_subscribe(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_retry_unavailable])
    with Client(fake.path, reconnect=FAST) as client:
        events = list(client.subscribe("aex-1"))
    fake.close()
    assert [(e.type, e.reason) for e in events] == [("snapshot", None), ("end", "deleted")]


def test_sync_subscription_timeout_keeps_it_usable(tmp_path: Path) -> None:
    release = threading.Event()

    def handler(conn: FakeConn) -> None:
        sub = conn.recv_command("subscribe")
        release.wait(30)
        conn.event(sub.id, SNAP, 1)
        conn.recv()

    fake = FakeDaemon(tmp_path / "s", [handler])
    with Client(fake.path) as client:
        sub = client.subscribe("aex-1")
        with pytest.raises(DeadlineExceededError):
            sub.next_event(timeout=0.1)
        release.set()
        event = sub.next_event(timeout=30)
        assert event is not None and event.revision == 1
        sub.close()
    fake.close()


def test_sync_threads_share_one_connection(tmp_path: Path) -> None:
    # The fake answers only once all 20 pings arrived, last first: each thread's
    # reply is read by whichever thread is reading and routed to its waiter.
    fake = FakeDaemon(tmp_path / "s", [_reverse_pongs])
    pongs: List[int] = []
    errors: List[BaseException] = []

    def ping(client: Client) -> None:
        try:
            pongs.append(client.ping(timeout=30).protocol_version)
        except BaseException as exc:
            errors.append(exc)

    with Client(fake.path) as client:
        threads = [threading.Thread(target=ping, args=(client,)) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    fake.close()
    assert not errors, errors
    assert pongs == [1] * 20
    assert fake.accepted == 1


def test_sync_call_while_another_thread_waits_on_a_subscription(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_interleave])
    with Client(fake.path) as client:
        sub = client.subscribe("aex-1")
        assert next(sub).type == "snapshot"
        events: List[Event] = []
        reader = threading.Thread(target=lambda: events.extend(sub))
        reader.start()  # blocks reading the socket until the next event
        client.ping()  # its pong is read by the reader thread or by this one
        reader.join(60)
    fake.close()
    assert [(e.type, e.revision) for e in events] == [("update", 2), ("update", 3), ("end", 3)]


# -- async --------------------------------------------------------------------


def test_async_timeout(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_silent])

    async def main() -> None:
        async with AsyncClient(fake.path, timeout=0.2) as client:
            with pytest.raises(DeadlineExceededError):
                await client.ping()

    asyncio.run(main())
    fake.close()


def test_async_connection_error(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_connection_error])

    async def main() -> None:
        async with AsyncClient(fake.path) as client:
            with pytest.raises(ResourceExhaustedError, match="too many connections"):
                await client.ping()

    asyncio.run(main())
    fake.close()


def test_async_unreachable(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(str(tmp_path / "nothing.sock")) as client:
            with pytest.raises(UnavailableError):
                await client.ping()

    asyncio.run(main())


def test_async_concurrent_calls_routed_by_id(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_reverse_pongs])

    async def main() -> None:
        async with AsyncClient(fake.path) as client:
            pongs = await asyncio.gather(*(client.ping() for _ in range(20)))
            assert len(pongs) == 20

    asyncio.run(main())
    fake.close()
    assert fake.accepted == 1


def test_async_resume_without_gap_or_duplicate(tmp_path: Path) -> None:
    first, second, seen = _resume_script()
    fake = FakeDaemon(tmp_path / "s", [first, second])  # type: ignore[list-item]

    async def main() -> List[Event]:
        async with AsyncClient(fake.path, reconnect=FAST) as client:
            return [event async for event in client.subscribe("aex-1")]

    events = asyncio.run(main())
    fake.close()
    _check_resume(events, seen)  # type: ignore[arg-type]


def test_async_interleaves_subscription_and_calls(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_interleave])

    async def main() -> None:
        async with AsyncClient(fake.path) as client:
            sub = client.subscribe("aex-1")
            first = await sub.__anext__()
            assert first.type == "snapshot"
            await client.ping()
            rest = [(e.type, e.revision) async for e in sub]
            assert rest == [("update", 2), ("update", 3), ("end", 3)]

    asyncio.run(main())
    fake.close()


def test_async_retries_unavailable_subscribe(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_retry_unavailable])

    async def main() -> List[Event]:
        async with AsyncClient(fake.path, reconnect=FAST) as client:
            return [event async for event in client.subscribe("aex-1")]

    events = asyncio.run(main())
    fake.close()
    assert [(e.type, e.reason) for e in events] == [("snapshot", None), ("end", "deleted")]


def test_async_give_up(tmp_path: Path) -> None:
    policy = ReconnectPolicy(initial_backoff=0.01, max_backoff=0.02, give_up_after=0.1)

    async def main() -> None:
        async with AsyncClient(str(tmp_path / "nothing.sock"), reconnect=policy) as client:
            sub = client.subscribe("aex-1")
            with pytest.raises(UnavailableError, match="gave up"):
                await sub.__anext__()

    asyncio.run(main())


def _replaying(conn: FakeConn) -> None:
    """A daemon whose execution has revisions 1..20 and is terminal: replays, then ends."""
    while True:
        request = conn.recv()
        if request is None:
            return
        kind = request.WhichOneof("command")
        if kind == "subscribe":
            resuming = request.subscribe.HasField("from_revision")
            start = request.subscribe.from_revision + 1 if resuming else 1
            for revision in range(start, 21):
                first = revision == start and not resuming
                conn.event(request.id, SNAP if first else UPD, revision)
            conn.event(request.id, END, 20, daemon_pb2.END_REASON_TERMINAL)
        elif kind == "ping":
            conn.pong(request.id)
        elif kind == "cancel":
            error = daemon_pb2.Response(id=request.id)
            error.error.code = daemon_pb2.NOT_FOUND
            error.error.message = "no open subscription"
            conn.send(error)


def test_sync_lagging_subscription_progresses_and_loses_nothing(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_replaying])
    with Client(fake.path, stream_buffer=4) as client:
        sub = client.subscribe("aex-1")
        assert next(sub).type == "snapshot"
        client.ping()  # reads the burst of events into the subscription's buffer
        rest = list(sub)
    fake.close()
    assert [e.revision for e in rest] == [*range(2, 21), 20]
    assert rest[-1].reason == "terminal"


def test_async_lagging_subscription_progresses_and_loses_nothing(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_replaying])

    async def main() -> List[Event]:
        async with AsyncClient(fake.path, stream_buffer=4) as client:
            sub = client.subscribe("aex-1")
            events = []
            async for event in sub:
                events.append(event)
                await asyncio.sleep(0.005)  # a slow consumer
            return events

    events = asyncio.run(main())
    fake.close()
    assert [e.revision for e in events] == [*range(1, 21), 20]
    assert [e.type for e in events] == ["snapshot"] + ["update"] * 19 + ["end"]


def _stated_then_serve(code: int) -> List[object]:
    """Connection 0 answers the subscribe with a connection error (id 0) of ``code``."""

    def refuse(conn: FakeConn) -> None:
        conn.recv_command("subscribe")
        response = daemon_pb2.Response(id=0)
        response.error.code = code  # type: ignore[assignment]
        response.error.message = "stated"
        conn.send(response)

    def serve(conn: FakeConn) -> None:
        request = conn.recv_command("subscribe")
        conn.event(request.id, SNAP, 1)
        conn.event(request.id, END, 1, daemon_pb2.END_REASON_DELETED)
        conn.recv()

    return [refuse, serve]


def test_sync_stated_connection_error_ends_subscription(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", _stated_then_serve(daemon_pb2.PERMISSION_DENIED))  # type: ignore[arg-type]
    with Client(fake.path, reconnect=FAST) as client:
        sub = client.subscribe("aex-1")
        with pytest.raises(PermissionDeniedError, match="stated"):
            next(sub)
        assert sub.closed
    fake.close()
    assert fake.accepted == 1


def test_sync_stated_unavailable_is_retried(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", _stated_then_serve(daemon_pb2.UNAVAILABLE))  # type: ignore[arg-type]
    with Client(fake.path, reconnect=FAST) as client:
        events = list(client.subscribe("aex-1"))
    fake.close()
    assert [(e.type, e.revision) for e in events] == [("snapshot", 1), ("end", 1)]


def test_async_stated_connection_error_ends_subscription(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", _stated_then_serve(daemon_pb2.RESOURCE_EXHAUSTED))  # type: ignore[arg-type]

    async def main() -> None:
        async with AsyncClient(fake.path, reconnect=FAST) as client:
            sub = client.subscribe("aex-1")
            with pytest.raises(ResourceExhaustedError, match="stated"):
                await sub.__anext__()
            assert sub.closed

    asyncio.run(main())
    fake.close()
    assert fake.accepted == 1


def test_async_stated_unavailable_is_retried(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", _stated_then_serve(daemon_pb2.UNAVAILABLE))  # type: ignore[arg-type]

    async def main() -> List[Event]:
        async with AsyncClient(fake.path, reconnect=FAST) as client:
            return [e async for e in client.subscribe("aex-1")]

    events = asyncio.run(main())
    fake.close()
    assert [(e.type, e.revision) for e in events] == [("snapshot", 1), ("end", 1)]


def _delta_gap(conn: FakeConn) -> None:
    """A snapshot at 5, a delta that follows it, then one that skips revision 7."""
    sub = conn.recv_command("subscribe")
    assert sub.subscribe.deltas
    conn.event(sub.id, SNAP, 5)
    for revision, prev, text in ((7, 5, "a"), (9, 8, "b")):
        response = daemon_pb2.Response(id=sub.id)
        response.event.type = daemon_pb2.EVENT_DELTA
        response.event.revision = revision
        response.event.prev_revision = prev
        op = response.event.ops.add()
        op.append_text.message_index = 0
        op.append_text.offset = 0 if text == "a" else 1
        op.append_text.text = text
        conn.send(response)
    cancel = conn.recv_command("cancel")  # the client cancels the broken stream
    assert cancel.cancel.subscription_id == sub.id


def test_sync_a_delta_after_a_gap_is_a_protocol_error(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", [_delta_gap])
    with Client(fake.path, reconnect=FAST) as client:
        sub = client.subscribe("aex-1")
        assert next(sub).type == "snapshot"
        delta = next(sub)
        assert (delta.type, delta.revision) == ("delta", 7)
        assert delta.execution is not None
        assert delta.execution.status.messages[0].content == "a"
        with pytest.raises(DataLossError, match="applies to revision 8"):
            next(sub)
        assert sub.closed and sub.next_event() is None
    fake.close()
