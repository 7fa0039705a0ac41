"""The errors raised by the client: one class per canonical status code.

Every error the daemon returns is raised as the subclass of
:class:`StigmerError` matching its code (``Error.code`` in the protocol, the
gRPC canonical codes). The client raises the same classes for conditions it
detects itself: :class:`UnavailableError` when the daemon cannot be reached or
the connection drops, :class:`DeadlineExceededError` when a call times out,
:class:`ResourceExhaustedError` for a frame over the length limit,
:class:`ImpostorError` (an :class:`UnavailableError`) when the socket may not
lead to the real daemon.

:class:`UnavailableError` is also a :class:`ConnectionError` and
:class:`DeadlineExceededError` a :class:`TimeoutError`, so code that already
handles the built-in exceptions keeps working.
"""

from __future__ import annotations

from typing import Dict, Type

from ._proto.stigmer.daemon.v1 import daemon_pb2

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "CancelledError",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "ImpostorError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "StigmerError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "error_from_code",
    "error_from_proto",
]


class StigmerError(Exception):
    """An error answered by the daemon, or detected by the client.

    Attributes:
        code: the canonical status code (an ``int``, ``Code`` in daemon.proto).
        message: the person-readable message.
    """

    #: The code of this class; instances may carry another when the class is
    #: the base class (an unknown code).
    CODE: int = daemon_pb2.UNKNOWN

    def __init__(self, message: str, code: int | None = None) -> None:
        """Create the error with ``message`` and, optionally, an explicit ``code``."""
        self.code: int = self.CODE if code is None else code
        self.message: str = message
        super().__init__(message)

    @property
    def code_name(self) -> str:
        """The code's name, e.g. ``"NOT_FOUND"`` (or the number when unknown)."""
        try:
            return str(daemon_pb2.Code.Name(self.code))
        except ValueError:
            return str(self.code)

    def __str__(self) -> str:
        """Render as ``CODE: message``."""
        return f"{self.code_name}: {self.message}"

    def __repr__(self) -> str:
        """Render as ``ClassName(code=..., message=...)``."""
        return f"{type(self).__name__}(code={self.code_name}, message={self.message!r})"


class CancelledError(StigmerError):
    """``CANCELLED`` (1). Not :class:`asyncio.CancelledError`."""

    CODE = daemon_pb2.CANCELLED


class UnknownError(StigmerError):
    """``UNKNOWN`` (2)."""

    CODE = daemon_pb2.UNKNOWN


class InvalidArgumentError(StigmerError):
    """``INVALID_ARGUMENT`` (3): a malformed request."""

    CODE = daemon_pb2.INVALID_ARGUMENT


class DeadlineExceededError(StigmerError, TimeoutError):
    """``DEADLINE_EXCEEDED`` (4): the call's timeout passed (raised by the client)."""

    CODE = daemon_pb2.DEADLINE_EXCEEDED


class NotFoundError(StigmerError):
    """``NOT_FOUND`` (5): unknown execution id, or cancel of a stream that is not open."""

    CODE = daemon_pb2.NOT_FOUND


class AlreadyExistsError(StigmerError):
    """``ALREADY_EXISTS`` (6): create with an id in use."""

    CODE = daemon_pb2.ALREADY_EXISTS


class PermissionDeniedError(StigmerError):
    """``PERMISSION_DENIED`` (7)."""

    CODE = daemon_pb2.PERMISSION_DENIED


class ResourceExhaustedError(StigmerError):
    """``RESOURCE_EXHAUSTED`` (8): a limit was reached (frame length, connections, streams)."""

    CODE = daemon_pb2.RESOURCE_EXHAUSTED


class FailedPreconditionError(StigmerError):
    """``FAILED_PRECONDITION`` (9): the execution's phase is final, or a protocol mismatch.

    A runner whose update is refused with this error should stop: its
    execution was completed, failed, cancelled or terminated by someone else.
    """

    CODE = daemon_pb2.FAILED_PRECONDITION


class AbortedError(StigmerError):
    """``ABORTED`` (10)."""

    CODE = daemon_pb2.ABORTED


class OutOfRangeError(StigmerError):
    """``OUT_OF_RANGE`` (11): ``from_revision`` ahead of the last committed revision."""

    CODE = daemon_pb2.OUT_OF_RANGE


class UnimplementedError(StigmerError):
    """``UNIMPLEMENTED`` (12): a command this daemon does not know."""

    CODE = daemon_pb2.UNIMPLEMENTED


class InternalError(StigmerError):
    """``INTERNAL`` (13): a bug in the daemon, or an undecodable frame from it."""

    CODE = daemon_pb2.INTERNAL


class UnavailableError(StigmerError, ConnectionError):
    """``UNAVAILABLE`` (14): the daemon cannot be reached, dropped the connection, or cannot write.

    Unary calls are never retried by the client (a write may or may not have
    been committed when the connection dropped); retry them yourself if they
    are idempotent for you.
    """

    CODE = daemon_pb2.UNAVAILABLE


class ImpostorError(UnavailableError):
    """Refused before sending anything: the socket may not lead to the real daemon.

    The process that accepted the connection runs as another user than root,
    this user, or the uid expected (``expected_uid=``, ``$STIGMER_EXPECTED_UID``);
    or the fallback socket's directory (``/tmp/stigmer-<uid>``) is not this
    user's private directory (owned by the user, mode 0700, not a symbolic
    link). Raised by the client (code ``UNAVAILABLE``); a subscription does
    not retry it.
    """


class DataLossError(StigmerError):
    """``DATA_LOSS`` (15)."""

    CODE = daemon_pb2.DATA_LOSS


class UnauthenticatedError(StigmerError):
    """``UNAUTHENTICATED`` (16)."""

    CODE = daemon_pb2.UNAUTHENTICATED


_BY_CODE: Dict[int, Type[StigmerError]] = {
    cls.CODE: cls
    for cls in (
        CancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}


def error_from_code(code: int, message: str) -> StigmerError:
    """Build the :class:`StigmerError` subclass for ``code`` (the base class when unknown)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return StigmerError(message, code)
    return cls(message)


def error_from_proto(error: daemon_pb2.Error) -> StigmerError:
    """Build the exception for a protocol ``Error`` message."""
    return error_from_code(int(error.code), error.message)
