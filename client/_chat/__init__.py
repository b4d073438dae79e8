"""Chat and agent models: messages, the three wire formats, streamed deltas (see ``_api`` for the entry points)."""

from ._stream import AsyncChatStream, ChatStream
from ._types import ChatDelta, ChatMessage, ChatResult, ToolCall

__all__ = ["AsyncChatStream", "ChatDelta", "ChatMessage", "ChatResult", "ChatStream", "ToolCall"]
