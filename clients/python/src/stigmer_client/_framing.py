"""Length-delimited frames: a 4-byte big-endian length, then one protobuf body."""

from __future__ import annotations

import struct
from typing import Optional

from google.protobuf.message import DecodeError

from ._proto.stigmer.daemon.v1 import daemon_pb2
from .errors import InternalError, ResourceExhaustedError

#: The protocol version this client speaks (``Request.protocol_version``).
PROTOCOL_VERSION = 1
#: The daemon's default largest frame body, in bytes (4 MiB).
DEFAULT_MAX_FRAME_LENGTH = 4 * 1024 * 1024

_HEADER = struct.Struct(">I")
HEADER_LENGTH = _HEADER.size


def encode_body(body: bytes, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH) -> bytes:
    """Prefix ``body`` with its length; refuse a body over ``max_frame_length``."""
    if len(body) > max_frame_length:
        raise ResourceExhaustedError(
            f"frame of {len(body)} bytes exceeds the maximum frame length {max_frame_length}"
        )
    return _HEADER.pack(len(body)) + body


def encode_request(
    request: daemon_pb2.Request, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH
) -> bytes:
    """Serialize a ``Request`` into one frame."""
    return encode_body(request.SerializeToString(deterministic=True), max_frame_length)


def decode_length(header: bytes, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH) -> int:
    """Read a 4-byte length prefix; raise when it is over ``max_frame_length``."""
    (length,) = _HEADER.unpack(header)
    if length > max_frame_length:
        raise ResourceExhaustedError(
            f"received a frame of {length} bytes, over the maximum frame length {max_frame_length}"
        )
    return int(length)


def decode_response(body: bytes) -> daemon_pb2.Response:
    """Parse a ``Response`` body; raise :class:`InternalError` when it does not decode."""
    response = daemon_pb2.Response()
    try:
        response.ParseFromString(body)
    except DecodeError as exc:
        raise InternalError(f"undecodable response frame from the daemon: {exc}") from exc
    return response


class FrameDecoder:
    """Accumulates bytes from a stream and cuts them into frame bodies."""

    def __init__(self, max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH) -> None:
        """Create an empty decoder refusing bodies over ``max_frame_length``."""
        self.max_frame_length = max_frame_length
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def next_body(self) -> Optional[bytes]:
        """Return the next complete body, or ``None`` when more bytes are needed."""
        if len(self._buffer) < HEADER_LENGTH:
            return None
        length = decode_length(bytes(self._buffer[:HEADER_LENGTH]), self.max_frame_length)
        end = HEADER_LENGTH + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[HEADER_LENGTH:end])
        del self._buffer[:end]
        return body

    def pending(self) -> int:
        """The number of buffered bytes not yet returned."""
        return len(self._buffer)

    def clear(self) -> None:
        """Drop buffered bytes (after a disconnect)."""
        self._buffer.clear()
