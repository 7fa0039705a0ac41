"""The sync client against the real daemon binary."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List

import pytest
from conftest import Daemon
from helpers import GUARD, assert_ordered_unique, content, status

import stigmer_client as sc
from stigmer_client import Client, Event, ReconnectPolicy, Request

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = ReconnectPolicy(initial_backoff=0.02, max_backoff=0.5, give_up_after=GUARD)


def _next(sub: sc.Subscription) -> Event:
    event = sub.next_event(timeout=GUARD)
    assert event is not None, "stream ended early"
    return event


def test_ping(daemon: Daemon) -> None:
    with daemon.client() as client:
        pong = client.ping()
    assert pong.protocol_version == 1
    assert pong.max_frame_length == 4 * 1024 * 1024
    assert pong.daemon_version
    with daemon.client() as client:
        client.create("agent", "m")
        status = client.status(prometheus=True)
    assert status.protocol_version == 1
    assert status.committed_changes >= 1
    assert status.revision >= 1
    assert status.prometheus


def test_create_get_list_delete(daemon: Daemon) -> None:
    with daemon.client() as client:
        created = client.create("agent-a", "hello", "sess-1", model_name="m")
        eid = created.metadata.id
        assert eid.startswith("aex-")
        assert created.api_version == "agentic.stigmer.ai/v1"
        assert created.kind == "AgentExecution"
        assert created.status.phase == sc.EXECUTION_PENDING
        assert created.spec.execution_config.model_name == "m"
        assert client.get(eid) == created
        other = client.create("agent-b", "bye")
        ids = [e.metadata.id for e in client.list()]
        assert ids == [eid, other.metadata.id]
        assert [e.metadata.id for e in client.list(session_id="sess-1")] == [eid]
        assert [e.metadata.id for e in client.list(phase="pending")] == ids
        assert client.list(phase=sc.EXECUTION_COMPLETED) == []
        revision = client.delete(eid)
        assert revision > 0
        with pytest.raises(sc.NotFoundError):
            client.get(eid)
        reply = client.get_reply(other.metadata.id)
        assert reply.revision < revision


def test_list_pages(daemon: Daemon) -> None:
    with daemon.client() as client:
        ids = [client.create("agent", f"m{i}").metadata.id for i in range(5)]
        page = client.list_page(page_size=2)
        assert [e.metadata.id for e in page.entries] == ids[:2]
        assert page.next_page_token
        assert [e.metadata.id for e in client.list(page_size=2)] == ids


def test_each_error_class(daemon: Daemon, tmp_path: Path) -> None:
    with daemon.client() as client:
        with pytest.raises(sc.InvalidArgumentError):
            client.create("", "no agent")
        with pytest.raises(sc.InvalidArgumentError):
            client.list_page(page_size=1001)
        with pytest.raises(sc.NotFoundError):
            client.get("aex-01jzzzzzzzzzzzzzzzzzzzzzzz")
        created = client.create("agent", "hi")
        eid = created.metadata.id
        with pytest.raises(sc.AlreadyExistsError):
            client.create("agent", "again", execution_id=eid)
        client.update_status(eid, status("done", sc.EXECUTION_COMPLETED))
        with pytest.raises(sc.FailedPreconditionError, match="EXECUTION_COMPLETED"):
            client.update_status(eid, status("late"))
        with pytest.raises(sc.FailedPreconditionError):
            client.call(Request(protocol_version=2, ping={}))
        with pytest.raises(sc.UnimplementedError):
            client.call(Request())
        ahead = client.ping().revision + 1000
        with pytest.raises(sc.OutOfRangeError):
            next(client.subscribe(eid, from_revision=ahead))
        with pytest.raises(sc.NotFoundError):
            next(client.subscribe("aex-01jzzzzzzzzzzzzzzzzzzzzzzz"))
        cancel = Request()
        cancel.cancel.subscription_id = 999_999
        with pytest.raises(sc.NotFoundError):
            client.call(cancel)
        # The connection survived every request error.
        assert client.ping().protocol_version == 1
    with pytest.raises(sc.UnavailableError), Client(str(tmp_path / "none.sock")) as client:
        client.ping()


def test_limits_are_resource_exhausted(make_daemon: Callable[..., Daemon]) -> None:
    d = make_daemon("--max-subscriptions-per-connection", "1", "--max-frame-length", "4096")
    with d.client(max_frame_length=1 << 20) as client:
        eid = client.create("agent", "hi").metadata.id
        first = client.subscribe(eid)
        assert _next(first).type == "snapshot"
        with pytest.raises(sc.ResourceExhaustedError):
            next(client.subscribe(eid, reconnect=False))
        # A frame over the daemon's limit is a connection error.
        with pytest.raises(sc.ResourceExhaustedError):
            client.update_status(eid, status("x" * 8000))
    with d.client() as client:
        assert client.ping().max_frame_length == 4096


@pytest.mark.parametrize("deltas", [True, False], ids=["deltas", "whole"])
def test_subscribe_snapshot_updates_terminal(daemon: Daemon, deltas: bool) -> None:
    change = "delta" if deltas else "update"
    with daemon.client() as writer, daemon.client() as watcher:
        reply = writer.create_execution(
            sc.AgentExecution(spec=sc.AgentExecutionSpec(agent_id="a", message="m"))
        )
        eid = reply.execution.metadata.id
        sub = watcher.subscribe(eid, deltas=deltas)
        snapshot = _next(sub)
        assert (snapshot.type, snapshot.revision, snapshot.execution_id) == (
            "snapshot",
            reply.revision,
            eid,
        )
        revisions = [writer.update_status_reply(eid, status("u0")).revision]
        # Minimal replies: the revision alone; the watcher still gets each state.
        revisions += [writer.update_status_ack(eid, status(f"u{i}")) for i in (1, 2)]
        assert reply.execution_id == eid
        revisions.append(
            writer.update_status_reply(eid, status("fin", sc.EXECUTION_COMPLETED)).revision
        )
        events = list(sub)
        assert [e.type for e in events] == [change] * 4 + ["end"]
        assert all(e.execution_id == eid for e in events)
        assert [e.revision for e in events[:-1]] == revisions
        assert [content(e) for e in events[:-1]] == ["u0", "u1", "u2", "fin"]
        assert events[-1].reason == "terminal"
        assert events[-1].revision == revisions[-1]
        assert sub.closed


@pytest.mark.parametrize("deltas", [True, False], ids=["deltas", "whole"])
def test_every_revision_once_in_order_under_concurrent_writers(
    daemon: Daemon, deltas: bool
) -> None:
    change = "delta" if deltas else "update"
    writers, per_writer = 4, 25
    with daemon.client() as setup:
        eid = setup.create("agent", "race").metadata.id
    written: Dict[int, str] = {}
    lock = threading.Lock()
    errors: List[BaseException] = []

    def write(w: int) -> None:
        try:
            with daemon.client() as client:
                for j in range(per_writer):
                    label = f"w{w}-{j}"
                    revision = client.update_status_reply(eid, status(label)).revision
                    with lock:
                        written[revision] = label
        except BaseException as exc:
            errors.append(exc)

    with daemon.client() as watcher:
        sub = watcher.subscribe(eid, deltas=deltas)
        snapshot = _next(sub)
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        seen: List[Event] = []
        while len(seen) < writers * per_writer:
            seen.append(_next(sub))
        for t in threads:
            t.join(GUARD)
        assert not errors, errors
        with daemon.client() as closer:
            final = closer.update_status_reply(eid, status("end", sc.EXECUTION_COMPLETED))
        rest = list(sub)
    assert_ordered_unique([snapshot, *seen])
    assert all(e.type == change for e in seen)
    assert {e.revision: content(e) for e in seen} == written
    assert [e.revision for e in seen] == sorted(written)
    assert [(e.type, e.revision) for e in rest] == [
        (change, final.revision),
        ("end", final.revision),
    ]
    # Per writer, its own writes appear in the order it made them.
    for w in range(writers):
        mine = [content(e) for e in seen if content(e).startswith(f"w{w}-")]
        assert mine == [f"w{w}-{j}" for j in range(per_writer)]


@pytest.mark.parametrize("deltas", [True, False], ids=["deltas", "whole"])
def test_resume_across_daemon_restart(daemon: Daemon, deltas: bool) -> None:
    change = "delta" if deltas else "update"
    watcher = daemon.client(reconnect=FAST)
    with daemon.client() as writer:
        eid = writer.create("agent", "restart").metadata.id
        sub = watcher.subscribe(eid, deltas=deltas)
        got = [_next(sub)]  # the snapshot
        before = [writer.update_status_reply(eid, status(f"a{i}")).revision for i in range(5)]
    got += [_next(sub) for _ in range(5)]
    assert [e.revision for e in got[1:]] == before
    daemon.restart()  # SIGTERM: the stream ends SHUTDOWN / the connection drops
    with daemon.client() as writer:
        after = [writer.update_status_reply(eid, status(f"b{i}")).revision for i in range(5)]
    more = [_next(sub) for _ in range(5)]
    assert [e.revision for e in more] == after
    assert [content(e) for e in more] == [f"b{i}" for i in range(5)]
    assert all(e.type == change for e in more)
    with daemon.client() as writer:
        final = writer.update_status_reply(eid, status("z", sc.EXECUTION_FAILED)).revision
    rest = list(sub)
    assert [(e.type, e.revision) for e in rest] == [(change, final), ("end", final)]
    assert_ordered_unique(got + more + rest)
    watcher.close()


def test_cancellation_seen_by_running_writer(daemon: Daemon) -> None:
    with daemon.client() as runner, daemon.client() as operator:
        eid = runner.create("agent", "long job").metadata.id
        runner.update_status(eid, status("working"))
        operator.update_status(eid, status("", sc.EXECUTION_CANCELLED))
        with pytest.raises(sc.FailedPreconditionError, match="EXECUTION_CANCELLED"):
            runner.update_status(eid, status("more tokens"))
        assert runner.get(eid).status.phase == sc.EXECUTION_CANCELLED


def test_example_runner_stops_when_cancelled(daemon: Daemon) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "agent_runner.py"),
            "--socket",
            daemon.socket_path,
            "--tokens",
            "1000000",
            "--every",
            "3",
            "--delay",
            "0.001",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        eid = proc.stdout.readline().strip()
        assert eid.startswith("aex-"), eid
        with daemon.client() as operator:
            sub = operator.subscribe(eid)
            # Wait until the runner has streamed some tokens.
            while True:
                event = _next(sub)
                messages = event.execution.status.messages if event.execution else []
                if messages and messages[-1].content:
                    break
            cancelled = operator.update_status_reply(eid, status("", sc.EXECUTION_CANCELLED))
            code = proc.wait(timeout=GUARD)
            out = proc.stdout.read()
            assert code == 2, out
            assert "stopped" in out
            events = list(sub)
            assert events[-1].type == "end" and events[-1].reason == "terminal"
            assert events[-2].revision == cancelled.revision
            execution = operator.get(eid)
            assert execution.status.phase == sc.EXECUTION_CANCELLED
            # The runner's last accepted status is kept (cancel did not replace messages).
            assert execution.status.messages[-1].content
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_example_runner_and_watch(daemon: Daemon) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "agent_runner.py"),
            "--socket",
            daemon.socket_path,
            "--mode",
            "full",
            "--tokens",
            "50",
            "--every",
            "10",
            "--tool-every",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert run.returncode == 0, run.stderr
    eid = run.stdout.splitlines()[0]
    with daemon.client() as client:
        execution = client.get(eid)
    assert execution.status.phase == sc.EXECUTION_COMPLETED
    ai = execution.status.messages[-1]
    assert ai.type == sc.MESSAGE_AI and len(ai.content.split()) == 50
    assert [t.status for t in execution.status.tool_calls] == [
        sc.ToolCallStatus.TOOL_CALL_COMPLETED
    ] * 2
    watch = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "watch.py"),
            eid,
            "--socket",
            daemon.socket_path,
            "--from-revision",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert watch.returncode == 0, watch.stderr
    lines = watch.stdout.splitlines()
    # create, IN_PROGRESS, 5 flushes, COMPLETED; then the end.
    assert len(lines) == 1 + 1 + 5 + 1 + 1, lines
    assert "EXECUTION_COMPLETED" in lines[-2]
    assert "end (terminal)" in lines[-1]


@pytest.mark.parametrize("deltas", [True, False], ids=["deltas", "whole"])
def test_unread_subscription_overflows_without_loss(daemon: Daemon, deltas: bool) -> None:
    with daemon.client(stream_buffer=4, reconnect=FAST) as client:
        eid = client.create("agent", "slow reader").metadata.id
        sub = client.subscribe(eid, deltas=deltas)
        assert _next(sub).type == "snapshot"
        # Unary calls on the same client read the stream's events into its buffer.
        revisions = [client.update_status_reply(eid, status(f"s{i}")).revision for i in range(30)]
        final = client.update_status_reply(eid, status("f", sc.EXECUTION_COMPLETED)).revision
        events = list(sub)
    assert [e.revision for e in events] == [*revisions, final, final]
    assert [content(e) for e in events[:-1]] == [f"s{i}" for i in range(30)] + ["f"]


def test_delete_ends_stream_and_cancel_ends_subscription(daemon: Daemon) -> None:
    with daemon.client() as client:
        eid = client.create("agent", "to delete").metadata.id
        sub = client.subscribe(eid)
        assert _next(sub).type == "snapshot"
        other = client.subscribe(eid)
        assert _next(other).type == "snapshot"
        other.close()
        assert other.closed and other.next_event() is None
        revision = client.delete(eid)
        end = _next(sub)
        assert (end.type, end.reason, end.revision) == ("end", "deleted", revision)
        assert sub.next_event() is None
        assert client.ping().protocol_version == 1


def test_resync_when_history_is_gone(make_daemon: Callable[..., Daemon]) -> None:
    d = make_daemon("--history-retention", "3")
    with d.client() as client:
        created = client.create_execution(
            sc.AgentExecution(spec=sc.AgentExecutionSpec(agent_id="a", message="m"))
        )
        eid = created.execution.metadata.id
        last = 0
        for i in range(10):
            last = client.update_status_reply(eid, status(f"r{i}")).revision
        sub = client.subscribe(eid, from_revision=created.revision)
        event = _next(sub)
        assert (event.type, event.revision, content(event)) == ("resync", last, "r9")
        sub.close()
