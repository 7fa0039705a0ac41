"""Building requests and reading replies, shared by the sync and async clients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Union

from ._proto.ai.stigmer.agentic.agentexecution.v1 import api_pb2, enum_pb2, io_pb2, spec_pb2
from ._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import AgentExecutionStatus
from ._proto.ai.stigmer.commons.apiresource import metadata_pb2
from ._proto.stigmer.daemon.v1 import daemon_pb2, delta_pb2
from .errors import InternalError, error_from_proto

if TYPE_CHECKING:
    # An ExecutionPhase value, its number or its name. (Only for annotations:
    # at run time ExecutionPhase is not a type on every Python version.)
    PhaseLike = Union[enum_pb2.ExecutionPhase, int, str]


def phase_value(phase: Optional[PhaseLike]) -> int:
    """An ``ExecutionPhase`` number from a value, a number or a name (``None``: unspecified)."""
    if phase is None:
        return enum_pb2.EXECUTION_PHASE_UNSPECIFIED
    if isinstance(phase, str):
        name = phase if phase.startswith("EXECUTION_") else f"EXECUTION_{phase.upper()}"
        return int(enum_pb2.ExecutionPhase.Value(name))
    return int(phase)


def create_request(
    agent_id: str,
    message: str,
    session_id: Optional[str] = None,
    execution_id: Optional[str] = None,
    model_name: Optional[str] = None,
) -> daemon_pb2.Request:
    """A ``create`` request."""
    execution = api_pb2.AgentExecution(
        spec=spec_pb2.AgentExecutionSpec(
            agent_id=agent_id, message=message, session_id=session_id or ""
        )
    )
    if execution_id:
        execution.metadata.id = execution_id
    if model_name:
        execution.spec.execution_config.model_name = model_name
    return daemon_pb2.Request(create=execution)


def create_execution_request(execution: api_pb2.AgentExecution) -> daemon_pb2.Request:
    """A ``create`` request from a whole ``AgentExecution``."""
    return daemon_pb2.Request(create=execution)


def update_status_request(
    execution_id: str, status: AgentExecutionStatus, *, minimal_reply: bool = False
) -> daemon_pb2.Request:
    """An ``update_status`` request; ``minimal_reply`` asks for the revision only."""
    return daemon_pb2.Request(
        minimal_reply=minimal_reply,
        update_status=io_pb2.AgentExecutionUpdateStatusInput(
            execution_id=execution_id, status=status
        ),
    )


def append_request(
    execution_id: str, ops: Iterable[delta_pb2.Op], expected_revision: Optional[int] = None
) -> daemon_pb2.Request:
    """An ``append`` request (answered minimally: the revision and the execution id)."""
    request = daemon_pb2.Request(minimal_reply=True)
    request.append.execution_id = execution_id
    if expected_revision is not None:
        request.append.expected_revision = expected_revision
    request.append.ops.extend(ops)
    return request


def get_request(execution_id: str) -> daemon_pb2.Request:
    """A ``get`` request."""
    return daemon_pb2.Request(get=io_pb2.AgentExecutionId(value=execution_id))


def list_request(
    phase: Optional[PhaseLike], session_id: Optional[str], page_size: int, page_token: str
) -> daemon_pb2.Request:
    """A ``list`` request for one page."""
    request = daemon_pb2.Request()
    request.list.page_size = page_size
    request.list.page_token = page_token
    request.list.phase = phase_value(phase)  # type: ignore[assignment]
    request.list.session_id = session_id or ""
    return request


def delete_request(execution_id: str) -> daemon_pb2.Request:
    """A ``delete`` request."""
    return daemon_pb2.Request(delete=metadata_pb2.ApiResourceId(value=execution_id))


def ping_request() -> daemon_pb2.Request:
    """A ``ping`` request."""
    return daemon_pb2.Request(ping=daemon_pb2.PingRequest())


def status_request(prometheus: bool) -> daemon_pb2.Request:
    """A ``status`` request."""
    return daemon_pb2.Request(status=daemon_pb2.StatusRequest(prometheus=prometheus))


def cancel_request(request_id: int, subscription_id: int) -> daemon_pb2.Request:
    """A ``cancel`` request for the stream opened by request ``subscription_id``."""
    request = daemon_pb2.Request(
        cancel=daemon_pb2.CancelSubscriptionRequest(subscription_id=subscription_id)
    )
    request.id = request_id
    request.protocol_version = 1
    return request


def check(response: daemon_pb2.Response, field: str) -> daemon_pb2.Response:
    """Raise the reply's error, or :class:`InternalError` when ``field`` is not the result."""
    kind = response.WhichOneof("result")
    if kind == "error":
        raise error_from_proto(response.error)
    if kind != field:
        raise InternalError(f"expected a {field!r} reply, got {kind!r}")
    return response
