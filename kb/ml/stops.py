"""Stop strings and tool-call blocks cut out of a stream of text pieces, however the pieces are split."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from kb.ml.types import Completion

TOOL_CALL_OPEN = "<tool_call>"
REPLACEMENT_CHARACTER = "\ufffd"
TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


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


def parse_tool_calls(raw: str) -> tuple[list[dict], str]:
    """Parse Qwen-style `<tool_call>{json}</tool_call>` blocks into OpenAI tool calls; unparsable text is returned."""
    calls: list[dict] = []
    leftover: list[str] = []
    for match in TOOL_CALL_BLOCK.finditer(raw):
        try:
            payload = json.loads(match.group(1))
            name = payload["name"]
            arguments = payload.get("arguments", payload.get("parameters", {}))
        except (ValueError, KeyError, TypeError):
            leftover.append(match.group(0))
            continue
        if not isinstance(name, str):
            leftover.append(match.group(0))
            continue
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
                },
            }
        )
    return calls, "".join(leftover)


@dataclass
class AnswerAssembler:
    """Turns raw decoded pieces into the visible stream and the final Completion of one request."""

    stop: list[str]
    tools_enabled: bool = False
    text: str = ""
    _stops: StopMatcher = field(init=False)
    _tools: StopMatcher = field(init=False)

    def __post_init__(self) -> None:
        self._stops = StopMatcher(list(self.stop))
        self._tools = StopMatcher([TOOL_CALL_OPEN] if self.tools_enabled else [])

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
        self.text += visible
        return visible
