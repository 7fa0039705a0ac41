from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import api_pb2 as _api_pb2
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import enum_pb2 as _enum_pb2
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import io_pb2 as _io_pb2
from stigmer_client._proto.ai.stigmer.commons.apiresource import metadata_pb2 as _metadata_pb2
from stigmer_client._proto.stigmer.daemon.v1 import delta_pb2 as _delta_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[Code]
    CANCELLED: _ClassVar[Code]
    UNKNOWN: _ClassVar[Code]
    INVALID_ARGUMENT: _ClassVar[Code]
    DEADLINE_EXCEEDED: _ClassVar[Code]
    NOT_FOUND: _ClassVar[Code]
    ALREADY_EXISTS: _ClassVar[Code]
    PERMISSION_DENIED: _ClassVar[Code]
    RESOURCE_EXHAUSTED: _ClassVar[Code]
    FAILED_PRECONDITION: _ClassVar[Code]
    ABORTED: _ClassVar[Code]
    OUT_OF_RANGE: _ClassVar[Code]
    UNIMPLEMENTED: _ClassVar[Code]
    INTERNAL: _ClassVar[Code]
    UNAVAILABLE: _ClassVar[Code]
    DATA_LOSS: _ClassVar[Code]
    UNAUTHENTICATED: _ClassVar[Code]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_SNAPSHOT: _ClassVar[EventType]
    EVENT_UPDATE: _ClassVar[EventType]
    EVENT_RESYNC: _ClassVar[EventType]
    EVENT_END: _ClassVar[EventType]
    EVENT_DELTA: _ClassVar[EventType]
    EVENT_CREATED: _ClassVar[EventType]
    EVENT_DELETED: _ClassVar[EventType]
    EVENT_BOOKMARK: _ClassVar[EventType]

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    END_REASON_TERMINAL: _ClassVar[EndReason]
    END_REASON_DELETED: _ClassVar[EndReason]
    END_REASON_CANCELLED: _ClassVar[EndReason]
    END_REASON_SHUTDOWN: _ClassVar[EndReason]
    END_REASON_SLOW_CONSUMER: _ClassVar[EndReason]
OK: Code
CANCELLED: Code
UNKNOWN: Code
INVALID_ARGUMENT: Code
DEADLINE_EXCEEDED: Code
NOT_FOUND: Code
ALREADY_EXISTS: Code
PERMISSION_DENIED: Code
RESOURCE_EXHAUSTED: Code
FAILED_PRECONDITION: Code
ABORTED: Code
OUT_OF_RANGE: Code
UNIMPLEMENTED: Code
INTERNAL: Code
UNAVAILABLE: Code
DATA_LOSS: Code
UNAUTHENTICATED: Code
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_SNAPSHOT: EventType
EVENT_UPDATE: EventType
EVENT_RESYNC: EventType
EVENT_END: EventType
EVENT_DELTA: EventType
EVENT_CREATED: EventType
EVENT_DELETED: EventType
EVENT_BOOKMARK: EventType
END_REASON_UNSPECIFIED: EndReason
END_REASON_TERMINAL: EndReason
END_REASON_DELETED: EndReason
END_REASON_CANCELLED: EndReason
END_REASON_SHUTDOWN: EndReason
END_REASON_SLOW_CONSUMER: EndReason

class Request(_message.Message):
    __slots__ = ("protocol_version", "id", "minimal_reply", "ping", "create", "update_status", "get", "list", "delete", "subscribe", "cancel", "append", "status")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MINIMAL_REPLY_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    id: int
    minimal_reply: bool
    ping: PingRequest
    create: _api_pb2.AgentExecution
    update_status: _io_pb2.AgentExecutionUpdateStatusInput
    get: _io_pb2.AgentExecutionId
    list: ListExecutionsRequest
    delete: _metadata_pb2.ApiResourceId
    subscribe: SubscribeRequest
    cancel: CancelSubscriptionRequest
    append: _delta_pb2.AppendRequest
    status: StatusRequest
    def __init__(self, protocol_version: _Optional[int] = ..., id: _Optional[int] = ..., minimal_reply: bool = ..., ping: _Optional[_Union[PingRequest, _Mapping]] = ..., create: _Optional[_Union[_api_pb2.AgentExecution, _Mapping]] = ..., update_status: _Optional[_Union[_io_pb2.AgentExecutionUpdateStatusInput, _Mapping]] = ..., get: _Optional[_Union[_io_pb2.AgentExecutionId, _Mapping]] = ..., list: _Optional[_Union[ListExecutionsRequest, _Mapping]] = ..., delete: _Optional[_Union[_metadata_pb2.ApiResourceId, _Mapping]] = ..., subscribe: _Optional[_Union[SubscribeRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelSubscriptionRequest, _Mapping]] = ..., append: _Optional[_Union[_delta_pb2.AppendRequest, _Mapping]] = ..., status: _Optional[_Union[StatusRequest, _Mapping]] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("id", "error", "pong", "execution", "list", "deleted", "event", "cancelled", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: int
    error: Error
    pong: PingResponse
    execution: ExecutionReply
    list: ListExecutionsResponse
    deleted: DeleteExecutionResponse
    event: Event
    cancelled: CancelSubscriptionResponse
    status: DaemonStatus
    def __init__(self, id: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., pong: _Optional[_Union[PingResponse, _Mapping]] = ..., execution: _Optional[_Union[ExecutionReply, _Mapping]] = ..., list: _Optional[_Union[ListExecutionsResponse, _Mapping]] = ..., deleted: _Optional[_Union[DeleteExecutionResponse, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., cancelled: _Optional[_Union[CancelSubscriptionResponse, _Mapping]] = ..., status: _Optional[_Union[DaemonStatus, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: Code
    message: str
    def __init__(self, code: _Optional[_Union[Code, str]] = ..., message: _Optional[str] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("protocol_version", "daemon_version", "revision", "max_frame_length")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DAEMON_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_LENGTH_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    daemon_version: str
    revision: int
    max_frame_length: int
    def __init__(self, protocol_version: _Optional[int] = ..., daemon_version: _Optional[str] = ..., revision: _Optional[int] = ..., max_frame_length: _Optional[int] = ...) -> None: ...

class ExecutionReply(_message.Message):
    __slots__ = ("execution", "revision", "execution_id")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution: _api_pb2.AgentExecution
    revision: int
    execution_id: str
    def __init__(self, execution: _Optional[_Union[_api_pb2.AgentExecution, _Mapping]] = ..., revision: _Optional[int] = ..., execution_id: _Optional[str] = ...) -> None: ...

class ListExecutionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "phase", "session_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    phase: _enum_pb2.ExecutionPhase
    session_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., phase: _Optional[_Union[_enum_pb2.ExecutionPhase, str]] = ..., session_id: _Optional[str] = ...) -> None: ...

class ListExecutionsResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_api_pb2.AgentExecution]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[_api_pb2.AgentExecution, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteExecutionResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("execution_id", "from_revision", "session_id", "all", "deltas", "skip_initial_state")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    SKIP_INITIAL_STATE_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    from_revision: int
    session_id: str
    all: bool
    deltas: bool
    skip_initial_state: bool
    def __init__(self, execution_id: _Optional[str] = ..., from_revision: _Optional[int] = ..., session_id: _Optional[str] = ..., all: bool = ..., deltas: bool = ..., skip_initial_state: bool = ...) -> None: ...

class CancelSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: int
    def __init__(self, subscription_id: _Optional[int] = ...) -> None: ...

class CancelSubscriptionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "revision", "execution_id", "execution", "reason", "message", "ops", "prev_revision", "initial_events_end")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    PREV_REVISION_FIELD_NUMBER: _ClassVar[int]
    INITIAL_EVENTS_END_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    revision: int
    execution_id: str
    execution: _api_pb2.AgentExecution
    reason: EndReason
    message: str
    ops: _containers.RepeatedCompositeFieldContainer[_delta_pb2.Op]
    prev_revision: int
    initial_events_end: bool
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., revision: _Optional[int] = ..., execution_id: _Optional[str] = ..., execution: _Optional[_Union[_api_pb2.AgentExecution, _Mapping]] = ..., reason: _Optional[_Union[EndReason, str]] = ..., message: _Optional[str] = ..., ops: _Optional[_Iterable[_Union[_delta_pb2.Op, _Mapping]]] = ..., prev_revision: _Optional[int] = ..., initial_events_end: bool = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("prometheus",)
    PROMETHEUS_FIELD_NUMBER: _ClassVar[int]
    prometheus: bool
    def __init__(self, prometheus: bool = ...) -> None: ...

class DaemonStatus(_message.Message):
    __slots__ = ("daemon_version", "protocol_version", "uptime_seconds", "socket", "database", "durability", "revision", "connections", "subscriptions", "subscriptions_by_execution", "committed_changes", "commit_batches", "commit_latency_p50_us", "commit_latency_p99_us", "broadcast_latency_p50_us", "broadcast_latency_p99_us", "resyncs", "subscriber_overflows", "slow_consumer_disconnects", "rejected_connections", "refused_writes", "prometheus", "session_watches", "all_watches", "watches_by_session", "backend", "replica_applied_revision", "etcd_revision")
    class SubscriptionsByExecutionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RejectedConnectionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class WatchesBySessionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DAEMON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_BY_EXECUTION_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_CHANGES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_BATCHES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_LATENCY_P50_US_FIELD_NUMBER: _ClassVar[int]
    COMMIT_LATENCY_P99_US_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_LATENCY_P50_US_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_LATENCY_P99_US_FIELD_NUMBER: _ClassVar[int]
    RESYNCS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_OVERFLOWS_FIELD_NUMBER: _ClassVar[int]
    SLOW_CONSUMER_DISCONNECTS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_WRITES_FIELD_NUMBER: _ClassVar[int]
    PROMETHEUS_FIELD_NUMBER: _ClassVar[int]
    SESSION_WATCHES_FIELD_NUMBER: _ClassVar[int]
    ALL_WATCHES_FIELD_NUMBER: _ClassVar[int]
    WATCHES_BY_SESSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REPLICA_APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    ETCD_REVISION_FIELD_NUMBER: _ClassVar[int]
    daemon_version: str
    protocol_version: int
    uptime_seconds: float
    socket: str
    database: str
    durability: str
    revision: int
    connections: int
    subscriptions: int
    subscriptions_by_execution: _containers.ScalarMap[str, int]
    committed_changes: int
    commit_batches: int
    commit_latency_p50_us: float
    commit_latency_p99_us: float
    broadcast_latency_p50_us: float
    broadcast_latency_p99_us: float
    resyncs: int
    subscriber_overflows: int
    slow_consumer_disconnects: int
    rejected_connections: _containers.ScalarMap[str, int]
    refused_writes: int
    prometheus: str
    session_watches: int
    all_watches: int
    watches_by_session: _containers.ScalarMap[str, int]
    backend: str
    replica_applied_revision: int
    etcd_revision: int
    def __init__(self, daemon_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., socket: _Optional[str] = ..., database: _Optional[str] = ..., durability: _Optional[str] = ..., revision: _Optional[int] = ..., connections: _Optional[int] = ..., subscriptions: _Optional[int] = ..., subscriptions_by_execution: _Optional[_Mapping[str, int]] = ..., committed_changes: _Optional[int] = ..., commit_batches: _Optional[int] = ..., commit_latency_p50_us: _Optional[float] = ..., commit_latency_p99_us: _Optional[float] = ..., broadcast_latency_p50_us: _Optional[float] = ..., broadcast_latency_p99_us: _Optional[float] = ..., resyncs: _Optional[int] = ..., subscriber_overflows: _Optional[int] = ..., slow_consumer_disconnects: _Optional[int] = ..., rejected_connections: _Optional[_Mapping[str, int]] = ..., refused_writes: _Optional[int] = ..., prometheus: _Optional[str] = ..., session_watches: _Optional[int] = ..., all_watches: _Optional[int] = ..., watches_by_session: _Optional[_Mapping[str, int]] = ..., backend: _Optional[str] = ..., replica_applied_revision: _Optional[int] = ..., etcd_revision: _Optional[int] = ...) -> None: ...
