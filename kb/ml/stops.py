"""Stop strings and tool-call blocks cut out of a stream of text pieces, however the pieces are split."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from kb.ml.types import Completion, GenerationParams

TOOL_CALL_OPEN = "<tool_call>"
REPLACEMENT_CHARACTER = "\ufffd"
TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
FENCED_BLOCK = re.compile(r"```[A-Za-z]*\s*(.*?)\s*```", re.DOTALL)
JSON_CALL_STARTS = "{[`"  # a reply opening with one of these may be a tool call written as plain JSON


def _held_back_length(buffer: str, markers: list[str]) -> int:
    """Length of the longest tail of `buffer` that is the start of some marker (it may still complete)."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(buffer)), longest, -1):
            if buffer.endswith(marker[:size]):
                longest = size
                break
    return longest


@dataclass
class StopMatcher:
    """Feeds text pieces, releases only text that cannot belong to a marker, and notes the first marker hit."""

    markers: list[str]
    pending: str = ""
    hit: str | None = None
    rest: str = ""  # text from the marker on, kept once a marker was hit

    def __post_init__(self) -> None:
        self.markers = [m for m in self.markers if m]

    def feed(self, piece: str) -> str:
        """Return the text that is safe to show now."""
        if self.hit is not None:
            self.rest += piece
            return ""
        buffer = self.pending + piece
        first = min(((buffer.find(m), m) for m in self.markers if m in buffer), default=None)
        if first is not None:
            position, marker = first
            self.hit, self.pending, self.rest = marker, "", buffer[position:]
            return buffer[:position]
        keep = _held_back_length(buffer, self.markers)
        self.pending = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """At the end of the stream, a held-back tail that never completed a marker is ordinary text."""
        tail, self.pending = self.pending, ""
        return tail


def _openai_call(payload: object) -> dict | None:
    """`{"name", "arguments"}` (or "parameters") as an OpenAI tool call; None for any other shape."""
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return None
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if not isinstance(arguments, dict | str):
        return None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": payload["name"],
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
        },
    }


def parse_tool_calls(raw: str) -> tuple[list[dict], str]:
    """Parse Qwen-style `<tool_call>{json}</tool_call>` blocks into OpenAI tool calls; unparsable text is returned."""
    calls: list[dict] = []
    leftover: list[str] = []
    for match in TOOL_CALL_BLOCK.finditer(raw):
        try:
            call = _openai_call(json.loads(match.group(1)))
        except ValueError:
            call = None
        if call is None:
            leftover.append(match.group(0))
        else:
            calls.append(call)
    return calls, "".join(leftover)


def parse_json_tool_calls(reply: str, tool_names: tuple[str, ...]) -> list[dict]:
    """A whole reply that is only tool calls written as JSON (```json fences optional) -> OpenAI tool calls, else [].

    Small Qwen2.5-Coder models answer a tool request this way instead of with `<tool_call>` blocks. Every
    object must name one of the offered tools, so a reply that merely shows some JSON stays text.
    """
    text = reply.strip()
    blocks = FENCED_BLOCK.findall(text) if text.startswith("```") else [text]
    if not blocks or (text.startswith("```") and FENCED_BLOCK.sub("", text).strip()):
        return []
    payloads: list[object] = []
    for block in blocks:
        try:
            payload = json.loads(block)
        except ValueError:
            return []
        payloads.extend(payload if isinstance(payload, list) else [payload])
    calls = [_openai_call(payload) for payload in payloads]
    if not calls or any(call is None or call["function"]["name"] not in tool_names for call in calls):
        return []
    return calls


@dataclass
class AnswerAssembler:
    """Turns raw decoded pieces into the visible stream and the final Completion of one request."""

    stop: list[str]
    tools_enabled: bool = False
    tool_names: tuple[str, ...] = ()  # offered tools: a reply that is only JSON calling them becomes tool calls
    text: str = ""
    _stops: StopMatcher = field(init=False)
    _tools: StopMatcher = field(init=False)
    _held: str | None = field(init=False)  # the reply so far while it may still be a JSON tool call

    def __post_init__(self) -> None:
        self._stops = StopMatcher(list(self.stop))
        self._tools = StopMatcher([TOOL_CALL_OPEN] if self.tools_enabled else [])
        self._held = "" if self.tool_names else None

    @classmethod
    def for_params(cls, params: GenerationParams) -> AnswerAssembler:
        """The assembler for one request's stop strings and tools."""
        names = tuple(str((tool.get("function") or {}).get("name", "")) for tool in params.tools or [])
        return cls(params.stop, tools_enabled=bool(params.tools), tool_names=tuple(n for n in names if n))

    @property
    def stopped(self) -> bool:
        """A stop string completed: the producer should stop generating."""
        return self._stops.hit is not None

    def feed(self, piece: str) -> str:
        """Visible text to emit for this raw piece (may be empty)."""
        if self.stopped:
            return ""
        return self._show(self._tools.feed(self._stops.feed(piece)))

    def finish(self, prompt_tokens: int, completion_tokens: int, finish_reason: str) -> tuple[str, Completion]:
        """Flush held-back text and build the Completion; returns (last visible text, completion)."""
        last = self._tools.feed(self._stops.flush()) + self._tools.flush()
        tool_calls: list[dict] = []
        if self._tools.hit is not None:
            tool_calls, unparsed = parse_tool_calls(self._tools.rest)
            last += unparsed
        last = self._show(last)
        if self._held:
            held, self._held = self._held, None
            json_calls = parse_json_tool_calls(held, self.tool_names)
            tool_calls.extend(json_calls)
            last += self._show("" if json_calls else held)
        if self.stopped:
            finish_reason = "stop"
        if tool_calls:
            finish_reason = "tool_calls"
        return last, Completion(self.text, prompt_tokens, completion_tokens, finish_reason, tool_calls)

    def _show(self, visible: str) -> str:
        # A small model can emit bytes that never form a character (a lead byte, then a whole new character):
        # decoding makes that U+FFFD, which no reader should see. (A character merely split across tokens
        # is held back by the detokenizer until it completes, so nothing real is lost here.)
        visible = visible.replace(REPLACEMENT_CHARACTER, "")
        if self._held is not None:
            self._held += visible
            opening = self._held.lstrip()[:1]
            if not opening or opening in JSON_CALL_STARTS:
                return ""  # nothing yet, or what may be a JSON tool call: decided at the end
            visible, self._held = self._held, None
        self.text += visible
        return visible
