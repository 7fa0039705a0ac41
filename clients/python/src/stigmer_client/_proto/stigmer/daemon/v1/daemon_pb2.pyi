from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import api_pb2 as _api_pb2
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import enum_pb2 as _enum_pb2
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import io_pb2 as _io_pb2
from stigmer_client._proto.ai.stigmer.commons.apiresource import metadata_pb2 as _metadata_pb2
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
END_REASON_UNSPECIFIED: EndReason
END_REASON_TERMINAL: EndReason
END_REASON_DELETED: EndReason
END_REASON_CANCELLED: EndReason
END_REASON_SHUTDOWN: EndReason
END_REASON_SLOW_CONSUMER: EndReason

class Request(_message.Message):
    __slots__ = ("protocol_version", "id", "ping", "create", "update_status", "get", "list", "delete", "subscribe", "cancel")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    id: int
    ping: PingRequest
    create: _api_pb2.AgentExecution
    update_status: _io_pb2.AgentExecutionUpdateStatusInput
    get: _io_pb2.AgentExecutionId
    list: ListExecutionsRequest
    delete: _metadata_pb2.ApiResourceId
    subscribe: SubscribeRequest
    cancel: CancelSubscriptionRequest
    def __init__(self, protocol_version: _Optional[int] = ..., id: _Optional[int] = ..., ping: _Optional[_Union[PingRequest, _Mapping]] = ..., create: _Optional[_Union[_api_pb2.AgentExecution, _Mapping]] = ..., update_status: _Optional[_Union[_io_pb2.AgentExecutionUpdateStatusInput, _Mapping]] = ..., get: _Optional[_Union[_io_pb2.AgentExecutionId, _Mapping]] = ..., list: _Optional[_Union[ListExecutionsRequest, _Mapping]] = ..., delete: _Optional[_Union[_metadata_pb2.ApiResourceId, _Mapping]] = ..., subscribe: _Optional[_Union[SubscribeRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelSubscriptionRequest, _Mapping]] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("id", "error", "pong", "execution", "list", "deleted", "event", "cancelled")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    id: int
    error: Error
    pong: PingResponse
    execution: ExecutionReply
    list: ListExecutionsResponse
    deleted: DeleteExecutionResponse
    event: Event
    cancelled: CancelSubscriptionResponse
    def __init__(self, id: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., pong: _Optional[_Union[PingResponse, _Mapping]] = ..., execution: _Optional[_Union[ExecutionReply, _Mapping]] = ..., list: _Optional[_Union[ListExecutionsResponse, _Mapping]] = ..., deleted: _Optional[_Union[DeleteExecutionResponse, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., cancelled: _Optional[_Union[CancelSubscriptionResponse, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("execution", "revision")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    execution: _api_pb2.AgentExecution
    revision: int
    def __init__(self, execution: _Optional[_Union[_api_pb2.AgentExecution, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("execution_id", "from_revision")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    from_revision: int
    def __init__(self, execution_id: _Optional[str] = ..., from_revision: _Optional[int] = ...) -> None: ...

class CancelSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: int
    def __init__(self, subscription_id: _Optional[int] = ...) -> None: ...

class CancelSubscriptionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "revision", "execution_id", "execution", "reason", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    revision: int
    execution_id: str
    execution: _api_pb2.AgentExecution
    reason: EndReason
    message: str
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., revision: _Optional[int] = ..., execution_id: _Optional[str] = ..., execution: _Optional[_Union[_api_pb2.AgentExecution, _Mapping]] = ..., reason: _Optional[_Union[EndReason, str]] = ..., message: _Optional[str] = ...) -> None: ...
