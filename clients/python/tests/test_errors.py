from __future__ import annotations

import pytest

import stigmer_client as sc
from stigmer_client import daemon_pb2
from stigmer_client.errors import error_from_proto

EXPECTED = {
    "CANCELLED": sc.CancelledError,
    "UNKNOWN": sc.UnknownError,
    "INVALID_ARGUMENT": sc.InvalidArgumentError,
    "DEADLINE_EXCEEDED": sc.DeadlineExceededError,
    "NOT_FOUND": sc.NotFoundError,
    "ALREADY_EXISTS": sc.AlreadyExistsError,
    "PERMISSION_DENIED": sc.PermissionDeniedError,
    "RESOURCE_EXHAUSTED": sc.ResourceExhaustedError,
    "FAILED_PRECONDITION": sc.FailedPreconditionError,
    "ABORTED": sc.AbortedError,
    "OUT_OF_RANGE": sc.OutOfRangeError,
    "UNIMPLEMENTED": sc.UnimplementedError,
    "INTERNAL": sc.InternalError,
    "UNAVAILABLE": sc.UnavailableError,
    "DATA_LOSS": sc.DataLossError,
    "UNAUTHENTICATED": sc.UnauthenticatedError,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_class_per_code(name: str) -> None:
    code = daemon_pb2.Code.Value(name)
    error = sc.error_from_code(code, "detail")
    assert type(error) is EXPECTED[name]
    assert isinstance(error, sc.StigmerError)
    assert error.code == code
    assert error.message == "detail"
    assert error.code_name == name
    assert str(error) == f"{name}: detail"


def test_every_schema_code_is_covered() -> None:
    names = {v.name for v in daemon_pb2.Code.DESCRIPTOR.values} - {"OK"}
    assert names == set(EXPECTED)


def test_unknown_code_is_base_class() -> None:
    error = sc.error_from_code(99, "future")
    assert type(error) is sc.StigmerError
    assert error.code == 99
    assert error.code_name == "99"


def test_builtin_bases() -> None:
    assert isinstance(sc.UnavailableError("x"), ConnectionError)
    assert isinstance(sc.DeadlineExceededError("x"), TimeoutError)


def test_from_proto() -> None:
    error = error_from_proto(daemon_pb2.Error(code=daemon_pb2.NOT_FOUND, message="no aex-1"))
    assert isinstance(error, sc.NotFoundError)
    assert error.message == "no aex-1"
