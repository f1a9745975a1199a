"""Test doubles for stepline's tests; see :mod:`tests.fakes.llm_server`."""

from tests.fakes.llm_server import (
    ANTHROPIC_MESSAGES_PATH,
    OPENAI_CHAT_PATH,
    BatchExpired,
    Disconnect,
    ErrorReply,
    FakeLLMServer,
    RecordedRequest,
    Reply,
    Responder,
    Response,
    ResponseSpec,
    StreamError,
    echo_responder,
    iter_sse_events,
)

__all__ = [
    "ANTHROPIC_MESSAGES_PATH",
    "OPENAI_CHAT_PATH",
    "BatchExpired",
    "Disconnect",
    "ErrorReply",
    "FakeLLMServer",
    "RecordedRequest",
    "Reply",
    "Responder",
    "Response",
    "ResponseSpec",
    "StreamError",
    "echo_responder",
    "iter_sse_events",
]
