"""The shared golden frames (tests/vectors/vectors.json) decode and re-encode byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from google.protobuf.message import Message

from stigmer_client import Event, Request, Response
from stigmer_client._framing import DEFAULT_MAX_FRAME_LENGTH, FrameDecoder, encode_body

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "vectors" / "vectors.json"


def _load() -> List[Dict[str, Any]]:
    # Not a skip: the vectors are part of the repository, their absence is a failure.
    if not VECTORS.is_file():
        return [{"name": "missing", "message": "missing", "frame_hex": "", "description": ""}]
    data = json.loads(VECTORS.read_text())
    assert data["version"] == 1
    vectors: List[Dict[str, Any]] = data["vectors"]
    return vectors


ALL = _load()


def _body(vector: Dict[str, Any]) -> bytes:
    frame = bytes.fromhex(vector["frame_hex"])
    decoder = FrameDecoder(DEFAULT_MAX_FRAME_LENGTH)
    decoder.feed(frame)
    body = decoder.next_body()
    assert body is not None, "incomplete frame"
    assert decoder.pending() == 0, "bytes after the frame"
    return body


@pytest.mark.parametrize("vector", ALL, ids=[v["name"] for v in ALL])
def test_vector_round_trips(vector: Dict[str, Any]) -> None:
    assert VECTORS.is_file(), f"{VECTORS} is missing"
    body = _body(vector)
    message: Message
    if vector["message"] == "Request":
        message = Request()
    else:
        assert vector["message"] == "Response", vector["message"]
        message = Response()
    message.ParseFromString(body)
    assert message.SerializeToString(deterministic=True) == body
    assert message.SerializeToString() == body
    # Nothing in the frame is unknown to this client's schema.
    message.DiscardUnknownFields()  # type: ignore[union-attr]
    assert message.SerializeToString(deterministic=True) == body, "fields this client does not know"
    assert encode_body(message.SerializeToString()) == bytes.fromhex(vector["frame_hex"])
    # Names say what the frame holds.
    if vector["name"].startswith("request_"):
        assert message.WhichOneof("command") is not None
    if isinstance(message, Response) and message.WhichOneof("result") == "event":
        event = Event.from_proto(message.event)
        assert event is not None
        assert event.revision == message.event.revision


def test_vectors_cover_every_command_and_result() -> None:
    assert VECTORS.is_file(), f"{VECTORS} is missing"
    commands = set()
    results = set()
    event_types = set()
    end_reasons = set()
    for vector in ALL:
        body = _body(vector)
        if vector["message"] == "Request":
            request = Request.FromString(body)
            commands.add(request.WhichOneof("command"))
        else:
            response = Response.FromString(body)
            kind = response.WhichOneof("result")
            results.add(kind)
            if kind == "event":
                event_types.add(response.event.type)
                if response.event.type == 4:
                    end_reasons.add(response.event.reason)
    assert commands >= {f.name for f in Request.DESCRIPTOR.oneofs_by_name["command"].fields}
    assert results >= {f.name for f in Response.DESCRIPTOR.oneofs_by_name["result"].fields}
    assert event_types >= {1, 2, 3, 4, 5}
    assert end_reasons >= {1, 2, 3, 4, 5}


def test_ping_vector_is_what_the_client_sends() -> None:
    assert VECTORS.is_file(), f"{VECTORS} is missing"
    from stigmer_client import _api
    from stigmer_client._framing import encode_request

    vector = next(v for v in ALL if v["name"] == "request_ping")
    request = _api.ping_request()
    request.id = 1
    request.protocol_version = 1
    assert encode_request(request).hex() == vector["frame_hex"]
