import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import enum_pb2 as _enum_pb2
from stigmer_client._proto.ai.stigmer.agentic.agentexecution.v1 import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendRequest(_message.Message):
    __slots__ = ("execution_id", "expected_revision", "ops")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    expected_revision: int
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    def __init__(self, execution_id: _Optional[str] = ..., expected_revision: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ...) -> None: ...

class Op(_message.Message):
    __slots__ = ("append_text", "add_message", "put_tool_call", "append_tool_result", "put_todo", "remove_todo", "put_sub_agent", "set_phase", "set_error", "replace_message", "replace_messages", "replace_tool_calls", "replace_sub_agents", "set_started_at", "set_completed_at", "stamp", "put_message_tool_call")
    APPEND_TEXT_FIELD_NUMBER: _ClassVar[int]
    ADD_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PUT_TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    APPEND_TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    PUT_TODO_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TODO_FIELD_NUMBER: _ClassVar[int]
    PUT_SUB_AGENT_FIELD_NUMBER: _ClassVar[int]
    SET_PHASE_FIELD_NUMBER: _ClassVar[int]
    SET_ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLACE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPLACE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REPLACE_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_SUB_AGENTS_FIELD_NUMBER: _ClassVar[int]
    SET_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    SET_COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    STAMP_FIELD_NUMBER: _ClassVar[int]
    PUT_MESSAGE_TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    append_text: AppendText
    add_message: AddMessage
    put_tool_call: _status_pb2.ToolCall
    append_tool_result: AppendToolResult
    put_todo: PutTodo
    remove_todo: str
    put_sub_agent: _status_pb2.SubAgentExecution
    set_phase: _enum_pb2.ExecutionPhase
    set_error: str
    replace_message: ReplaceMessage
    replace_messages: Messages
    replace_tool_calls: ToolCalls
    replace_sub_agents: SubAgents
    set_started_at: str
    set_completed_at: str
    stamp: _timestamp_pb2.Timestamp
    put_message_tool_call: PutMessageToolCall
    def __init__(self, append_text: _Optional[_Union[AppendText, _Mapping]] = ..., add_message: _Optional[_Union[AddMessage, _Mapping]] = ..., put_tool_call: _Optional[_Union[_status_pb2.ToolCall, _Mapping]] = ..., append_tool_result: _Optional[_Union[AppendToolResult, _Mapping]] = ..., put_todo: _Optional[_Union[PutTodo, _Mapping]] = ..., remove_todo: _Optional[str] = ..., put_sub_agent: _Optional[_Union[_status_pb2.SubAgentExecution, _Mapping]] = ..., set_phase: _Optional[_Union[_enum_pb2.ExecutionPhase, str]] = ..., set_error: _Optional[str] = ..., replace_message: _Optional[_Union[ReplaceMessage, _Mapping]] = ..., replace_messages: _Optional[_Union[Messages, _Mapping]] = ..., replace_tool_calls: _Optional[_Union[ToolCalls, _Mapping]] = ..., replace_sub_agents: _Optional[_Union[SubAgents, _Mapping]] = ..., set_started_at: _Optional[str] = ..., set_completed_at: _Optional[str] = ..., stamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., put_message_tool_call: _Optional[_Union[PutMessageToolCall, _Mapping]] = ...) -> None: ...

class AppendText(_message.Message):
    __slots__ = ("message_index", "offset", "text", "type")
    MESSAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    message_index: int
    offset: int
    text: str
    type: _enum_pb2.MessageType
    def __init__(self, message_index: _Optional[int] = ..., offset: _Optional[int] = ..., text: _Optional[str] = ..., type: _Optional[_Union[_enum_pb2.MessageType, str]] = ...) -> None: ...

class AddMessage(_message.Message):
    __slots__ = ("index", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    message: _status_pb2.AgentMessage
    def __init__(self, index: _Optional[int] = ..., message: _Optional[_Union[_status_pb2.AgentMessage, _Mapping]] = ...) -> None: ...

class AppendToolResult(_message.Message):
    __slots__ = ("tool_call_id", "offset", "text")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    offset: int
    text: str
    def __init__(self, tool_call_id: _Optional[str] = ..., offset: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class PutTodo(_message.Message):
    __slots__ = ("key", "item")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    key: str
    item: _status_pb2.TodoItem
    def __init__(self, key: _Optional[str] = ..., item: _Optional[_Union[_status_pb2.TodoItem, _Mapping]] = ...) -> None: ...

class PutMessageToolCall(_message.Message):
    __slots__ = ("message_index", "tool_call")
    MESSAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    message_index: int
    tool_call: _status_pb2.ToolCall
    def __init__(self, message_index: _Optional[int] = ..., tool_call: _Optional[_Union[_status_pb2.ToolCall, _Mapping]] = ...) -> None: ...

class ReplaceMessage(_message.Message):
    __slots__ = ("index", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    message: _status_pb2.AgentMessage
    def __init__(self, index: _Optional[int] = ..., message: _Optional[_Union[_status_pb2.AgentMessage, _Mapping]] = ...) -> None: ...

class Messages(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_status_pb2.AgentMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[_status_pb2.AgentMessage, _Mapping]]] = ...) -> None: ...

class ToolCalls(_message.Message):
    __slots__ = ("tool_calls",)
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    tool_calls: _containers.RepeatedCompositeFieldContainer[_status_pb2.ToolCall]
    def __init__(self, tool_calls: _Optional[_Iterable[_Union[_status_pb2.ToolCall, _Mapping]]] = ...) -> None: ...

class SubAgents(_message.Message):
    __slots__ = ("sub_agent_executions",)
    SUB_AGENT_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    sub_agent_executions: _containers.RepeatedCompositeFieldContainer[_status_pb2.SubAgentExecution]
    def __init__(self, sub_agent_executions: _Optional[_Iterable[_Union[_status_pb2.SubAgentExecution, _Mapping]]] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    def __init__(self, ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ...) -> None: ...
