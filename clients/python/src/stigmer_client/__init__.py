"""Python client for the stigmer daemon.

The daemon keeps AI agent executions and broadcasts each committed change to
watchers; runners report progress through it. This package speaks its wire
protocol (docs/PROTOCOL.md): length-delimited protobuf frames on a Unix socket.

- :class:`Client` is the synchronous client; :class:`stigmer_client.aio.AsyncClient`
  (also importable from here) the asyncio one.
- The upstream data messages (:class:`AgentExecution`, :class:`AgentExecutionStatus`,
  :class:`AgentMessage`, :class:`ToolCall`, ...) and enums
  (:class:`ExecutionPhase`, :class:`MessageType`, ...) are re-exported here.
- The delta operations a runner sends with :meth:`Client.apply`
  (:class:`Op`, :class:`AppendText`, :class:`AddMessage`, ...) are too.
- :meth:`Client.watch` follows every execution of a session (or of the
  machine) as :class:`WatchEvent` objects and keeps their current states in
  :attr:`Watcher.cache`.
- Errors are :class:`StigmerError` subclasses, one per status code.
"""

from __future__ import annotations

from ._framing import DEFAULT_MAX_FRAME_LENGTH, PROTOCOL_VERSION
from ._paths import EXPECTED_UID_ENV, SOCKET_ENV, SYSTEM_SOCKET, default_socket_path
from ._proto.ai.stigmer.agentic.agentexecution.v1.api_pb2 import AgentExecution
from ._proto.ai.stigmer.agentic.agentexecution.v1.enum_pb2 import (
    EXECUTION_CANCELLED,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    EXECUTION_IN_PROGRESS,
    EXECUTION_PAUSED,
    EXECUTION_PENDING,
    EXECUTION_PHASE_UNSPECIFIED,
    EXECUTION_TERMINATED,
    EXECUTION_WAITING_FOR_APPROVAL,
    MESSAGE_AI,
    MESSAGE_HUMAN,
    MESSAGE_SYSTEM,
    MESSAGE_TOOL,
    MESSAGE_TYPE_UNSPECIFIED,
    ExecutionPhase,
    MessageType,
    SubAgentStatus,
    TodoStatus,
    ToolCallStatus,
)
from ._proto.ai.stigmer.agentic.agentexecution.v1.io_pb2 import (
    AgentExecutionId,
    AgentExecutionUpdateStatusInput,
)
from ._proto.ai.stigmer.agentic.agentexecution.v1.spec_pb2 import (
    AgentExecutionSpec,
    ExecutionConfig,
)
from ._proto.ai.stigmer.agentic.agentexecution.v1.status_pb2 import (
    AgentExecutionStatus,
    AgentMessage,
    ComponentMetadata,
    SubAgentExecution,
    TodoItem,
    ToolCall,
)
from ._proto.ai.stigmer.agentic.executioncontext.v1.value_pb2 import ExecutionValue
from ._proto.ai.stigmer.commons.apiresource.metadata_pb2 import (
    ApiResourceAudit,
    ApiResourceAuditActor,
    ApiResourceAuditInfo,
    ApiResourceId,
    ApiResourceMetadata,
)
from ._proto.stigmer.daemon.v1 import daemon_pb2, delta_pb2
from ._proto.stigmer.daemon.v1.daemon_pb2 import (
    Code,
    DaemonStatus,
    EndReason,
    EventType,
    ExecutionReply,
    ListExecutionsResponse,
    PingResponse,
    Request,
    Response,
)
from ._proto.stigmer.daemon.v1.delta_pb2 import (
    AddMessage,
    AppendRequest,
    AppendText,
    AppendToolResult,
    Op,
    PutMessageToolCall,
    PutTodo,
    ReplaceMessage,
)
from ._stream import DELTA, END, RESYNC, SNAPSHOT, UPDATE, Event, ReconnectPolicy
from ._watch import WatchEvent, WatchEventType
from .aio import AsyncClient, AsyncSubscription, AsyncWatcher
from .client import DEFAULT_TIMEOUT, Client, Subscription, Watcher
from .errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    ImpostorError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    StigmerError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    error_from_code,
)

__version__ = "0.1.0"

#: Phases after which the daemon refuses every status update.
TERMINAL_PHASES = frozenset(
    {EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_CANCELLED, EXECUTION_TERMINATED}
)

__all__ = [
    "DEFAULT_MAX_FRAME_LENGTH",
    "DEFAULT_TIMEOUT",
    "DELTA",
    "END",
    "EXECUTION_CANCELLED",
    "EXECUTION_COMPLETED",
    "EXECUTION_FAILED",
    "EXECUTION_IN_PROGRESS",
    "EXECUTION_PAUSED",
    "EXECUTION_PENDING",
    "EXECUTION_PHASE_UNSPECIFIED",
    "EXECUTION_TERMINATED",
    "EXECUTION_WAITING_FOR_APPROVAL",
    "EXPECTED_UID_ENV",
    "MESSAGE_AI",
    "MESSAGE_HUMAN",
    "MESSAGE_SYSTEM",
    "MESSAGE_TOOL",
    "MESSAGE_TYPE_UNSPECIFIED",
    "PROTOCOL_VERSION",
    "RESYNC",
    "SNAPSHOT",
    "SOCKET_ENV",
    "SYSTEM_SOCKET",
    "TERMINAL_PHASES",
    "UPDATE",
    "AbortedError",
    "AddMessage",
    "AgentExecution",
    "AgentExecutionId",
    "AgentExecutionSpec",
    "AgentExecutionStatus",
    "AgentExecutionUpdateStatusInput",
    "AgentMessage",
    "AlreadyExistsError",
    "AppendRequest",
    "AppendText",
    "AppendToolResult",
    "AsyncClient",
    "AsyncSubscription",
    "AsyncWatcher",
    "ApiResourceAudit",
    "ApiResourceAuditActor",
    "ApiResourceAuditInfo",
    "ApiResourceId",
    "ApiResourceMetadata",
    "CancelledError",
    "Client",
    "Code",
    "ComponentMetadata",
    "DaemonStatus",
    "DataLossError",
    "DeadlineExceededError",
    "EndReason",
    "Event",
    "EventType",
    "ExecutionConfig",
    "ExecutionPhase",
    "ExecutionReply",
    "ExecutionValue",
    "FailedPreconditionError",
    "ImpostorError",
    "InternalError",
    "InvalidArgumentError",
    "ListExecutionsResponse",
    "MessageType",
    "NotFoundError",
    "Op",
    "OutOfRangeError",
    "PermissionDeniedError",
    "PingResponse",
    "PutMessageToolCall",
    "PutTodo",
    "ReconnectPolicy",
    "ReplaceMessage",
    "Request",
    "ResourceExhaustedError",
    "Response",
    "StigmerError",
    "SubAgentExecution",
    "SubAgentStatus",
    "Subscription",
    "TodoItem",
    "TodoStatus",
    "ToolCall",
    "ToolCallStatus",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "WatchEvent",
    "WatchEventType",
    "Watcher",
    "daemon_pb2",
    "delta_pb2",
    "default_socket_path",
    "error_from_code",
]
