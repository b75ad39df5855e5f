"""Request shapes of the OpenAI-compatible endpoints: OpenAI's fields, checked; fields kb ignores are tolerated."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kb.errors import BadRequest
from kb.ml.types import GenerationParams
from kb.services.gateway import ChatRequest

ROLE_ALIASES = {"developer": "system"}  # OpenAI's newer name for the system message
# OpenAI's own cap on stop sequences; each is scanned for on every token while the model is held.
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 100


def check_stop(stop: str | list[str] | None) -> list[str]:
    """The stop sequences as a list, within OpenAI's limits (4 of them, each short)."""
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise BadRequest(f"stop has {len(sequences)} sequences; the limit is {MAX_STOP_SEQUENCES}", code="invalid_stop")
    longest = max(map(len, sequences), default=0)
    if longest > MAX_STOP_CHARS:
        raise BadRequest(f"a stop sequence is {longest} characters; the limit is {MAX_STOP_CHARS}", code="invalid_stop")
    return sequences


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        message = self.model_dump(exclude_none=True)
        message["role"] = ROLE_ALIASES.get(self.role, self.role)
        return message


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`. Extra fields (chatId, detail, response_format, ...) are kept for the app path."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessageIn]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def to_chat_request(self) -> ChatRequest:
        """The HTTP-free request the gateway works on; refuses what kb cannot honour."""
        if self.n is not None and self.n > 1:
            raise BadRequest(
                f"n={self.n} is not supported: kb returns one choice per request; omit n or send 1",
                code="unsupported_parameter",
            )
        chosen = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "seed": self.seed,
            # tool_choice "none" means: do not offer the tools; other choices cannot be forced on a local model
            "tools": None if self.tool_choice == "none" else self.tools or None,
        }
        params = GenerationParams(**{name: value for name, value in chosen.items() if value is not None})
        params.stop = check_stop(self.stop)
        return ChatRequest(
            model=self.model,
            messages=[message.as_dict() for message in self.messages],
            params=params,
            stream=self.stream,
            extra=dict(self.model_extra or {}),
            chosen=frozenset(name for name, value in chosen.items() if value is not None),
        )


class EmbeddingRequest(BaseModel):
    """`POST /v1/embeddings`; `input_type` (document|query) is kb's extension for models with prefixes."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    input_type: str = "document"
