"""Property test (Hypothesis): a session's watch is the merge of its executions' streams.

Random creates, appends, whole updates, phase changes and deletes in two
sessions, against the real daemon: what a watcher of one session yields
after its list is exactly every change of that session's executions, as
their own one-execution streams (and the deletes) have them, in revision
order -- nothing of the other session, no gap, no duplicate -- and its cache
ends equal to the store.
"""

from __future__ import annotations

import uuid
from typing import Dict, List, Tuple

import pytest
from conftest import Daemon
from helpers import cache_is_the_store, changes, created, merged_streams, take, until

import stigmer_client as sc

# Installed with the dev extras; the Python 3.9 run of scripts/test-python
# installs only pytest, so the property is skipped there.
pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# (kind, session pick, execution pick): 0 create, 1 append, 2 update_status,
# 3 apply a phase (may end the execution), 4 delete.
STEP = st.tuples(st.integers(0, 4), st.integers(0, 1), st.integers(0, 100))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_session_watch_is_the_merge_of_execution_streams(
    daemon: Daemon, steps: List[Tuple[int, int, int]]
) -> None:
    sessions = [f"s-{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"]
    with daemon.client() as writer, daemon.client() as client:
        watcher = client.watch(sessions[0])
        assert take(watcher, 1)[0].initial_events_end
        live: Dict[int, List[str]] = {0: [], 1: []}
        ever: List[str] = []
        deletes: Dict[str, int] = {}
        for kind, pick, which in steps:
            pool = live[pick]
            if kind == 0 or not pool:
                eid = writer.create("agent", "m", sessions[pick]).metadata.id
                pool.append(eid)
                if pick == 0:
                    ever.append(eid)
                continue
            eid = pool[which % len(pool)]
            try:
                if kind == 1:
                    writer.append_text(eid, f"{which} ")
                elif kind == 2:
                    message = sc.AgentMessage(type=sc.MESSAGE_AI, content=f"whole {which}")
                    writer.update_status(eid, sc.AgentExecutionStatus(messages=[message]))
                elif kind == 3:
                    phases = [sc.EXECUTION_IN_PROGRESS, sc.EXECUTION_COMPLETED]
                    writer.apply(eid, [sc.Op(set_phase=phases[which % 2])])
                else:
                    revision = writer.delete(eid)
                    pool.remove(eid)
                    if pick == 0:
                        deletes[eid] = revision
            except sc.FailedPreconditionError:
                pass  # a finished execution takes no more changes: not a change
        sentinel = writer.create("agent", "end", sessions[0]).metadata.id
        ever.append(sentinel)
        seen = until(watcher, created(sentinel))
        assert changes(seen) == merged_streams(writer, ever, deletes)
        cache_is_the_store(writer, watcher, sessions[0])
        watcher.close()
