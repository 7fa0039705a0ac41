from __future__ import annotations

import pytest

from stigmer_client import Request, ResourceExhaustedError, Response
from stigmer_client._framing import (
    DEFAULT_MAX_FRAME_LENGTH,
    FrameDecoder,
    decode_response,
    encode_body,
    encode_request,
)
from stigmer_client.errors import InternalError


def test_ping_frame_matches_protocol_doc() -> None:
    request = Request(protocol_version=1, id=1)
    request.ping.SetInParent()
    assert encode_request(request) == bytes.fromhex("00000006080110015200")


def test_default_max_frame_length_is_4_mib() -> None:
    assert DEFAULT_MAX_FRAME_LENGTH == 4 * 1024 * 1024


def test_decoder_splits_and_joins() -> None:
    frames = [encode_body(b""), encode_body(b"\x08\x07"), encode_body(b"x" * 70000)]
    stream = b"".join(frames)
    decoder = FrameDecoder()
    bodies = []
    for i in range(0, len(stream), 7):
        decoder.feed(stream[i : i + 7])
        while (body := decoder.next_body()) is not None:
            bodies.append(body)
    assert bodies == [b"", b"\x08\x07", b"x" * 70000]
    assert decoder.pending() == 0


def test_decoder_refuses_long_frame_from_prefix_alone() -> None:
    decoder = FrameDecoder(max_frame_length=16)
    decoder.feed((17).to_bytes(4, "big"))
    with pytest.raises(ResourceExhaustedError):
        decoder.next_body()
    exact = FrameDecoder(max_frame_length=16)
    exact.feed(encode_body(b"y" * 16))
    assert exact.next_body() == b"y" * 16


def test_encoder_refuses_long_body() -> None:
    with pytest.raises(ResourceExhaustedError):
        encode_body(b"z" * 17, max_frame_length=16)
    assert len(encode_body(b"z" * 16, max_frame_length=16)) == 20


def test_empty_body_is_a_default_response() -> None:
    assert decode_response(b"") == Response()


def test_undecodable_body_is_internal_error() -> None:
    with pytest.raises(InternalError):
        decode_response(b"\xff\xff\xff")
