"""Appends and delta subscriptions (the sync client) against the real daemon binary."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Tuple
from unittest import mock

import pytest
from conftest import Daemon
from helpers import GUARD, assert_ordered_unique, status
from proxy import Proxy

import stigmer_client as sc
from stigmer_client import Client, Event, Op, ReconnectPolicy, _api

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = ReconnectPolicy(initial_backoff=0.02, max_backoff=0.5, give_up_after=GUARD)


def _next(sub: sc.Subscription) -> Event:
    event = sub.next_event(timeout=GUARD)
    assert event is not None, "stream ended early"
    return event


def _text(client: Client, eid: str, index: int = -1) -> str:
    return str(client.get(eid).status.messages[index].content)


def _states(events: List[Event]) -> List[Tuple[int, object]]:
    """What a subscriber sees: (revision, the whole execution)."""
    return [(e.revision, e.execution) for e in events]


def _types(events: List[Event]) -> List[str]:
    """The types of a delta stream's events, as a whole stream would name them."""
    return ["update" if e.type == "delta" else e.type for e in events]


@pytest.fixture
def proxy(daemon: Daemon, tmp_path: Path) -> Iterator[Proxy]:
    """A proxy in front of the daemon that can lose a reply."""
    p = Proxy(str(tmp_path / "proxy.sock"), daemon.socket_path)
    try:
        yield p
    finally:
        p.close()


def test_append_text_builds_text_with_increasing_revisions(daemon: Daemon) -> None:
    tokens = ["Ça ", "marche", " — ", "très ", "bien", " 🎉", "!"]
    with daemon.client() as client:
        eid = client.create("agent", "stream").metadata.id
        with mock.patch.object(client, "get", wraps=client.get) as get:
            revisions = [client.append_text(eid, token) for token in tokens]
            # One fetch, the first time; then the client tracks the offsets.
            assert get.call_count == 1
        assert revisions == sorted(set(revisions))
        execution = client.get(eid)
        assert len(execution.status.messages) == 1
        message = execution.status.messages[0]
        assert message.type == sc.MESSAGE_AI
        assert message.content == "".join(tokens)
        assert client.get_reply(eid).revision == revisions[-1]
        # A second message: by its index (the count), then as the last one.
        second = client.append_text(eid, "next", message_index=1)
        third = client.append_text(eid, " one")
        assert revisions[-1] < second < third
        assert [m.content for m in client.get(eid).status.messages] == [
            "".join(tokens),
            "next one",
        ]
        # An explicit offset: UTF-8 bytes.
        length = len("".join(tokens).encode("utf-8"))
        client.append_text(eid, ".", message_index=0, offset=length)
        assert _text(client, eid, 0) == "".join(tokens) + "."


def test_a_resent_append_leaves_one_copy(daemon: Daemon) -> None:
    with daemon.client() as client:
        eid = client.create("agent", "retry").metadata.id
        client.append_text(eid, "hello")
        request = _api.append_request(
            eid, [Op(append_text=sc.AppendText(message_index=0, offset=5, text=" world"))]
        )
        first = client.call(request, "execution").execution.revision
        again = client.call(request, "execution").execution.revision
        assert again == first
    daemon.restart()
    with daemon.client() as client:
        after_restart = client.call(request, "execution").execution.revision
        assert after_restart == first
        assert _text(client, eid) == "hello world"


def test_an_append_whose_reply_is_lost_is_retried_once_applied(
    daemon: Daemon, proxy: Proxy
) -> None:
    with Client(proxy.path, reconnect=FAST) as client:
        eid = client.create("agent", "lost reply").metadata.id
        client.append_text(eid, "one")
        proxy.drop_reply_to = "append"
        revision = client.append_text(eid, " two")  # committed; the reply is lost; sent again
        client.append_text(eid, " three")
        assert _text(client, eid) == "one two three"
    assert len(proxy.dropped) == 1
    assert proxy.dropped[0].execution.revision == revision
    sent = [r.append.ops[0].append_text for r in proxy.requests_of("append")]
    assert [(a.offset, a.text) for a in sent] == [
        (0, "one"),
        (3, " two"),
        (3, " two"),
        (7, " three"),
    ]
    assert proxy.connections == 2


def test_an_append_whose_reply_is_lost_across_a_daemon_restart(
    daemon: Daemon, proxy: Proxy
) -> None:
    with Client(proxy.path, reconnect=FAST) as client:
        eid = client.create("agent", "restart").metadata.id
        first = client.append_text(eid, "before ")
        proxy.drop_reply_to = "append"
        proxy.on_drop = daemon.restart  # the reply is lost and the daemon restarts
        lost = client.append_text(eid, "lost reply ")
        after = client.append_text(eid, "after")
        assert first < lost < after
        assert _text(client, eid) == "before lost reply after"
    assert proxy.dropped[0].execution.revision == lost


def test_without_reconnect_a_lost_reply_raises_and_the_same_text_is_not_duplicated(
    daemon: Daemon, proxy: Proxy
) -> None:
    with Client(proxy.path, reconnect=None) as client:
        eid = client.create("agent", "no retry").metadata.id
        client.append_text(eid, "one")
        proxy.drop_reply_to = "append"
        with pytest.raises(sc.UnavailableError):
            client.append_text(eid, " two")  # committed, but the reply is lost
        # The caller sends the same text again: the same offset, acknowledged.
        assert client.append_text(eid, " two") == proxy.dropped[0].execution.revision
        client.append_text(eid, " three")
        assert _text(client, eid) == "one two three"
        proxy.drop_reply_to = "append"
        with pytest.raises(sc.UnavailableError):
            client.append_text(eid, " four")
        # Other text: the client fetches the length (the lost text is there).
        client.append_text(eid, " five")
        assert _text(client, eid) == "one two three four five"
    sent = [r.append.ops[0].append_text for r in proxy.requests_of("append")]
    assert [a.offset for a in sent] == [0, 3, 3, 7, 13, 18]


def test_a_lost_reply_to_a_final_phase_is_acknowledged(daemon: Daemon, proxy: Proxy) -> None:
    with Client(proxy.path, reconnect=FAST) as client:
        eid = client.create("agent", "finish").metadata.id
        client.append_text(eid, "answer")
        proxy.drop_reply_to = "append"
        ops = [
            Op(append_text=sc.AppendText(message_index=0, offset=6, text=".")),
            Op(set_phase=sc.EXECUTION_COMPLETED),
        ]
        # The resent append is refused (the phase is final), but the state
        # holds every operation: it was this append that finalized it.
        revision = client.apply(eid, ops)
        assert client.get_reply(eid).revision == revision
        assert _text(client, eid) == "answer."
        # Someone else's final phase is still refused.
        other = client.create("agent", "cancelled").metadata.id
        client.apply(other, [Op(set_phase=sc.EXECUTION_CANCELLED)])
        with pytest.raises(sc.FailedPreconditionError, match="EXECUTION_CANCELLED"):
            client.apply(other, [Op(set_phase=sc.EXECUTION_COMPLETED)])


def test_a_stale_offset_is_aborted_and_the_next_append_fetches(daemon: Daemon) -> None:
    with daemon.client() as runner, daemon.client() as other:
        eid = runner.create("agent", "stale").metadata.id
        runner.append_text(eid, "abc")
        other.append_text(eid, "def")  # the runner's tracked length is now stale
        with pytest.raises(sc.AbortedError, match="6 bytes long") as info:
            runner.append_text(eid, "ghi")
        assert info.value.code == sc.Code.Value("ABORTED")
        assert _text(runner, eid) == "abcdef"  # the refused text was not applied
        # The caller decides; the next append fetches the length again.
        with mock.patch.object(runner, "get", wraps=runner.get) as get:
            runner.append_text(eid, "ghi")
            runner.append_text(eid, "jkl")
            assert get.call_count == 1
        assert _text(runner, eid) == "abcdefghijkl"
        # An explicit stale offset.
        with pytest.raises(sc.AbortedError, match="12 bytes long"):
            runner.append_text(eid, "x", offset=1)
        with pytest.raises(sc.AbortedError, match="past its end"):
            runner.append_text(eid, "x", offset=99)
        assert _text(runner, eid) == "abcdefghijkl"
        with pytest.raises(ValueError):
            runner.append_text(eid, "x", message_index=-2)


def test_concurrent_appenders_never_interleave(daemon: Daemon) -> None:
    writers, chunks = 3, 30
    with daemon.client() as setup:
        eid = setup.create("agent", "race").metadata.id
        setup.append_text(eid, "")  # message 0 exists, empty
    aborted = [0] * writers
    errors: List[BaseException] = []

    def write(w: int) -> None:
        try:
            with daemon.client() as client:
                for j in range(chunks):
                    chunk = f"<{w}:{j}:{'é' * (j % 4)}>"
                    while True:
                        try:
                            client.append_text(eid, chunk, message_index=0)
                            break
                        except sc.AbortedError:
                            aborted[w] += 1  # someone else appended first: not applied
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD)
    assert not errors, errors
    with daemon.client() as client:
        text = _text(client, eid, 0)
    found = re.findall(r"<(\d+):(\d+):(é*)>", text)
    # Every chunk exactly once, whole, in its writer's order; nothing else.
    assert "".join(f"<{w}:{j}:{e}>" for w, j, e in found) == text
    assert len(found) == writers * chunks
    for w in range(writers):
        mine = [(int(j), e) for ww, j, e in found if int(ww) == w]
        assert mine == [(j, "é" * (j % 4)) for j in range(chunks)]
    assert sum(aborted) >= 0  # contention is likely, not certain


def _mixed_run(client: Client, eid: str) -> None:
    """Appends, operations and whole statuses, mixed."""
    client.apply(eid, [Op(set_phase=sc.EXECUTION_IN_PROGRESS)])
    for token in ["The ", "logs ", "show"]:
        client.append_text(eid, token)
    call = sc.ToolCall(id="c1", name="grep", status=sc.ToolCallStatus.TOOL_CALL_RUNNING)
    client.apply(
        eid,
        [
            Op(put_tool_call=call),
            Op(put_todo=sc.PutTodo(key="t1", item=sc.TodoItem(content="check"))),
        ],
    )
    client.apply(
        eid, [Op(append_tool_result=sc.AppendToolResult(tool_call_id="c1", offset=0, text="ok"))]
    )
    # Upstream's pattern: a whole cumulative status (the daemon diffs it).
    whole = client.get(eid).status
    whole.messages[0].content += " a rise"
    client.update_status(eid, whole)
    client.append_text(eid, " in latency.")
    human = sc.AgentMessage(type=sc.MESSAGE_HUMAN, content="why?")
    client.apply(eid, [Op(add_message=sc.AddMessage(index=1, message=human))])
    client.append_text(eid, "Because", message_index=2)
    client.update_status(eid, status("replaced whole"))  # not an extension: replaced
    client.append_text(eid, " and extended")
    client.apply(eid, [Op(remove_todo="t1"), Op(set_error="")])
    client.apply(eid, [Op(set_phase=sc.EXECUTION_COMPLETED)])


def test_delta_and_whole_subscriptions_see_the_same_states(daemon: Daemon) -> None:
    with daemon.client() as writer, daemon.client() as watcher:
        eid = writer.create("agent", "mixed").metadata.id
        live_deltas = watcher.subscribe(eid)
        live_whole = watcher.subscribe(eid, deltas=False)
        assert live_deltas.deltas and not live_whole.deltas
        first = [_next(live_deltas), _next(live_whole)]
        _mixed_run(writer, eid)
        deltas = [first[0], *live_deltas]
        whole = [first[1], *live_whole]
        assert _states(deltas) == _states(whole)
        assert _types(deltas) == [e.type for e in whole]
        assert deltas[-1].type == "end" and deltas[-1].reason == "terminal"
        assert_ordered_unique(deltas)
        # The delta stream carried operations; the whole one none.
        assert {e.type for e in deltas[1:-1]} == {"delta"}
        assert all(e.ops for e in deltas[1:-1])
        assert {e.type for e in whole[1:-1]} == {"update"}
        assert not any(e.ops for e in whole)
        assert all(e.ops[-1].WhichOneof("op") == "stamp" for e in deltas[1:-1])
        # Replays from the history: from the start, and from the middle.
        replay = list(watcher.subscribe(eid, from_revision=0))
        replay_whole = list(watcher.subscribe(eid, from_revision=0, deltas=False))
        assert _states(replay) == _states(replay_whole)
        assert _states(replay[1:]) == _states(deltas[1:])  # after the create
        middle = deltas[len(deltas) // 2].revision
        part = list(watcher.subscribe(eid, from_revision=middle))
        part_whole = list(watcher.subscribe(eid, from_revision=middle, deltas=False))
        assert _states(part) == _states(part_whole)
        assert part[0].revision > middle and part[0].type == "delta"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_runs_look_the_same_through_deltas(daemon: Daemon, seed: int) -> None:
    """Random appends, operations and whole statuses: both kinds of stream agree."""
    rng = random.Random(seed)
    words = ["a", "é", "🎉", "token ", "\n", "ß"]
    with daemon.client() as writer, daemon.client() as watcher:
        eid = writer.create("agent", f"random {seed}").metadata.id
        live = watcher.subscribe(eid)
        first = _next(live)
        for step in range(60):
            roll = rng.random()
            if roll < 0.5:
                index = rng.choice([-1, -1, -1, 0])
                writer.append_text(eid, rng.choice(words), message_index=index)
            elif roll < 0.6:
                count = len(writer.get(eid).status.messages)
                added = sc.AgentMessage(type=sc.MESSAGE_HUMAN, content=f"m{step}")
                writer.apply(eid, [Op(add_message=sc.AddMessage(index=count, message=added))])
            elif roll < 0.7:
                call = sc.ToolCall(id=f"c{rng.randrange(3)}", name="t", result=str(step))
                writer.apply(eid, [Op(put_tool_call=call)])
            elif roll < 0.8:
                key = f"k{rng.randrange(3)}"
                todo = sc.PutTodo(key=key, item=sc.TodoItem(content=str(step)))
                writer.apply(eid, [Op(put_todo=todo), Op(remove_todo=f"k{rng.randrange(3)}")])
            else:  # a whole status: an extension of the stored one, or not
                whole = writer.get(eid).status
                if whole.messages and rng.random() < 0.5:
                    whole.messages[-1].content += rng.choice(words)
                else:
                    whole.messages.add(type=sc.MESSAGE_AI, content=f"whole {step}")
                whole.error = rng.choice(["", f"e{step}"])
                writer.update_status(eid, whole)
        writer.apply(eid, [Op(set_phase=sc.EXECUTION_COMPLETED)])
        deltas = [first, *live]
        whole_stream = list(watcher.subscribe(eid, deltas=False, from_revision=first.revision))
        replay = list(watcher.subscribe(eid, from_revision=first.revision))
    assert _states(deltas[1:]) == _states(whole_stream) == _states(replay)
    assert deltas[-2].execution == _stored(daemon, eid)


def _stored(daemon: Daemon, eid: str) -> sc.AgentExecution:
    with daemon.client() as client:
        return client.get(eid)


def test_delta_subscription_resumes_across_a_daemon_restart(daemon: Daemon, proxy: Proxy) -> None:
    watcher = Client(proxy.path, reconnect=FAST)
    with daemon.client() as writer:
        eid = writer.create("agent", "restart").metadata.id
        sub = watcher.subscribe(eid)
        got = [_next(sub)]
        before = [writer.append_text(eid, f"a{i} ") for i in range(5)]
    got += [_next(sub) for _ in range(5)]
    assert [e.revision for e in got[1:]] == before
    daemon.restart()
    with daemon.client() as writer:
        after = [writer.append_text(eid, f"b{i} ") for i in range(5)]
        final = writer.apply(eid, [Op(set_phase=sc.EXECUTION_COMPLETED)])
    rest = list(sub)
    assert [e.revision for e in rest[:-1]] == [*after, final]
    assert rest[-1].type == "end"
    events = got + rest
    assert_ordered_unique(events)
    with daemon.client() as client:
        whole = list(client.subscribe(eid, from_revision=got[0].revision, deltas=False))
    assert _states(events[1:]) == _states(whole)
    last = events[-2].execution
    assert last is not None
    assert last.status.messages[0].content == "".join(f"a{i} " for i in range(5)) + "".join(
        f"b{i} " for i in range(5)
    )
    # It resumed from its last revision without the initial state: nothing re-sent.
    subscribes = [r.subscribe for r in proxy.requests_of("subscribe")]
    assert len(subscribes) >= 2
    assert subscribes[0].deltas and not subscribes[0].HasField("from_revision")
    for again in subscribes[1:]:
        assert again.deltas and again.skip_initial_state
        assert again.from_revision == before[-1]
    watcher.close()


def test_apply_several_ops_with_expected_revision(daemon: Daemon) -> None:
    with daemon.client() as client:
        reply = client.create_execution(
            sc.AgentExecution(spec=sc.AgentExecutionSpec(agent_id="a", message="m"))
        )
        eid = reply.execution.metadata.id
        call = sc.ToolCall(id="c1", name="search", status=sc.ToolCallStatus.TOOL_CALL_RUNNING)
        ops = [
            Op(set_phase=sc.EXECUTION_IN_PROGRESS),
            Op(add_message=sc.AddMessage(index=0, message=sc.AgentMessage(content="hi"))),
            Op(append_text=sc.AppendText(message_index=1, offset=0, text="there")),
            Op(put_tool_call=call),
            Op(put_todo=sc.PutTodo(key="k", item=sc.TodoItem(content="todo"))),
        ]
        revision = client.apply(eid, ops, expected_revision=reply.revision)
        assert revision > reply.revision
        execution = client.get(eid)
        assert execution.status.phase == sc.EXECUTION_IN_PROGRESS
        assert [m.content for m in execution.status.messages] == ["hi", "there"]
        assert execution.status.messages[1].type == sc.MESSAGE_AI
        assert [c.id for c in execution.status.tool_calls] == ["c1"]
        assert execution.status.todos["k"].content == "todo"
        assert execution.status.started_at  # the daemon's stamp
        # The same append again (a retry): every op applied, acknowledged.
        assert client.apply(eid, ops, expected_revision=reply.revision) == revision
        # A new op with a stale expected revision: compare-and-set fails.
        more = [Op(set_error="oops")]
        with pytest.raises(sc.AbortedError, match=f"revision {revision}"):
            client.apply(eid, more, expected_revision=reply.revision)
        assert client.get(eid).status.error == ""
        assert client.apply(eid, more, expected_revision=revision) > revision
        # The client learned the messages from the ops: no fetch.
        with mock.patch.object(client, "get", wraps=client.get) as get:
            client.append_text(eid, "!")
            client.append_text(eid, "!", message_index=0)
            assert get.call_count == 0
        assert [m.content for m in client.get(eid).status.messages] == ["hi!", "there!"]
        with pytest.raises(sc.InvalidArgumentError, match="stamp"):
            client.apply(eid, [Op(stamp={})])


def _run_example(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "agent_runner.py"), "--socket", daemon.socket_path, *args],
        capture_output=True,
        text=True,
        timeout=GUARD,
    )


@pytest.mark.parametrize("mode", ["append", "full"])
def test_example_runner_modes_reach_the_same_state(daemon: Daemon, mode: str) -> None:
    run = _run_example(daemon, "--mode", mode, "--tokens", "45", "--every", "10")
    assert run.returncode == 0, run.stderr
    eid = run.stdout.splitlines()[0]
    with daemon.client() as client:
        execution = client.get(eid)
        events = list(client.subscribe(eid, from_revision=0))
    assert execution.status.phase == sc.EXECUTION_COMPLETED
    human, ai = execution.status.messages
    assert human.type == sc.MESSAGE_HUMAN and human.content == "summarize the logs"
    assert ai.type == sc.MESSAGE_AI and len(ai.content.split()) == 45
    assert [t.status for t in execution.status.tool_calls] == [
        sc.ToolCallStatus.TOOL_CALL_COMPLETED
    ]
    assert [t.id for t in ai.tool_calls] == ["call-1"]
    updates = [e for e in events if e.type in ("update", "delta")]
    if mode == "append":  # a revision per token, each a small delta
        assert len(updates) >= 45
        # No update resends a message: the tool calls reach the AI message
        # by put_message_tool_call as they start and finish.
        kinds = {op.WhichOneof("op") for e in updates for op in e.ops}
        assert "replace_message" not in kinds and "put_message_tool_call" in kinds
    else:  # create, IN_PROGRESS, 4 flushes, COMPLETED
        assert len(updates) == 1 + 1 + 4 + 1
    assert updates[-1].execution == execution


def test_the_full_mode_runner_streams_its_message_tool_calls_as_ops(daemon: Daemon) -> None:
    # Upstream's pattern with tool calls (issue 16's measured case): the AI
    # message's text grows while its own tool calls change. The daemon
    # diffs each whole status into append_text and put_message_tool_call,
    # never a replace_message, and this client's delta application rebuilds
    # every state a whole-state stream carries.
    run = _run_example(daemon, "--mode", "full", "--tokens", "125", "--every", "10")
    assert run.returncode == 0, run.stderr
    eid = run.stdout.splitlines()[0]
    with daemon.client() as client:
        execution = client.get(eid)
        deltas = list(client.subscribe(eid, from_revision=0))
        whole = list(client.subscribe(eid, from_revision=0, deltas=False))
    assert _states(deltas) == _states(whole)
    assert deltas[-2].execution == execution
    kinds = [op.WhichOneof("op") for e in deltas for op in e.ops]
    assert "replace_message" not in kinds
    # call-1..3 started, then completed (the last by the final status).
    assert kinds.count("put_message_tool_call") == 6
    ai = execution.status.messages[1]
    assert [t.id for t in ai.tool_calls] == ["call-1", "call-2", "call-3"]
    assert {t.status for t in ai.tool_calls} == {sc.ToolCallStatus.TOOL_CALL_COMPLETED}
