"""The offsets append_text tracks (no daemon)."""

from __future__ import annotations

import stigmer_client as sc
from stigmer_client import Op
from stigmer_client._texts import TextTracker, utf8_length


def _status(*contents: str) -> sc.AgentExecutionStatus:
    return sc.AgentExecutionStatus(messages=[sc.AgentMessage(content=c) for c in contents])


def test_lengths_are_utf8_bytes() -> None:
    assert utf8_length("aé🎉") == 1 + 2 + 4


def test_first_append_needs_a_fetch_then_is_tracked() -> None:
    texts = TextTracker()
    assert texts.position("e", -1, None) is None
    assert texts.learn_status("e", _status("hi", "héllo"), -1, None) == (1, 6)
    texts.sent("e", 1, 6, "!")
    assert texts.position("e", -1, None) == (1, 7)
    assert texts.position("e", 0, None) is None  # not learned yet
    assert texts.learn_status("e", _status("hi", "héllo!"), 0, None) == (0, 2)
    assert texts.position("e", -1, None) == (1, 7)
    assert texts.position("e", -1, 3) == (1, 3)  # an explicit offset wins


def test_no_messages_means_a_new_first_one() -> None:
    texts = TextTracker()
    assert texts.learn_status("e", _status(), -1, None) == (0, 0)
    assert texts.learn_status("f", _status("a"), 1, None) == (1, 0)  # the next one
    assert texts.learn_status("g", _status("a"), 5, None) == (5, 0)  # the daemon will refuse


def test_ops_teach_the_messages() -> None:
    texts = TextTracker()
    texts.learn_ops(
        "e",
        [
            Op(add_message=sc.AddMessage(index=0, message=sc.AgentMessage(content="hé"))),
            Op(add_message=sc.AddMessage(index=1, message=sc.AgentMessage())),
            Op(append_text=sc.AppendText(message_index=1, offset=0, text="abc")),
        ],
    )
    assert texts.position("e", -1, None) == (1, 3)
    assert texts.position("e", 0, None) == (0, 3)
    texts.learn_ops(
        "e", [Op(replace_message=sc.ReplaceMessage(index=0, message=sc.AgentMessage(content="x")))]
    )
    assert texts.position("e", 0, None) == (0, 1)
    replaced = sc.delta_pb2.Messages(messages=[sc.AgentMessage(content="only")])
    texts.learn_ops("e", [Op(replace_messages=replaced)])
    assert texts.position("e", -1, None) == (0, 4)
    assert texts.position("e", 1, None) is None
    texts.learn_ops("e", [Op(set_phase=sc.EXECUTION_COMPLETED)])
    assert texts.position("e", -1, None) is None
    assert len(texts) == 0


def test_forget_and_limit() -> None:
    texts = TextTracker(limit=2)
    for eid in ("a", "b", "c"):
        texts.sent(eid, 0, 0, "x")
    assert len(texts) == 2
    assert texts.position("a", -1, None) is None  # the oldest went
    assert texts.position("c", -1, None) == (0, 1)
    texts.forget("c")
    assert texts.position("c", -1, None) is None


def test_an_unsure_append_keeps_its_offset_for_the_same_text() -> None:
    texts = TextTracker()
    texts.sent("e", 0, 0, "ab")
    texts.sent("e", 0, 2, "cd")
    texts.unsure("e", -1, 0, 2, "cd")
    assert texts.position("e", -1, None, "cd") == (0, 2)  # the same append again
    texts.unsure("e", -1, 0, 2, "cd")
    assert texts.position("e", 0, None, "cd") == (0, 2)  # named by its index
    texts.unsure("e", -1, 0, 2, "cd")
    assert texts.position("e", -1, None, "other") is None  # something else: fetch
    assert texts.position("e", -1, None, "cd") is None  # the pending one is gone
    texts.unsure("e", -1, 0, 2, "cd")
    texts.forget("e")
    assert texts.position("e", -1, None, "cd") is None
