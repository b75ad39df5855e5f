"""Fixtures for the apps, keys, models and chat pages: fast fake models, a small knowledge base with
hostile text in it, and a chat model whose answer cites [1] and carries hostile Markdown of its own."""

from __future__ import annotations

import json
import time
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from kb.config import Settings
from kb.ml.decoding import IncrementalDetokenizer
from kb.ml.registry import ModelRegistry
from kb.ml.stops import AnswerAssembler
from kb.ml.types import StreamDelta
from kb.testing import HashEmbedder, ScriptedChatModel
from tests.helpers import kb_settings

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(1)> [click me](javascript:alert(1))"
LAKES = {
    "lakes.md": [
        f"Lake Geneva is the largest lake in the Alps and its water is deep and cold. {HOSTILE}",
        "Perch and whitefish are the fish most often caught in the lake by local fishermen.",
    ]
}
ANSWER = f"Lake Geneva is the **largest** lake in the Alps [1]. {HOSTILE}"
QUESTION = "Which is the largest lake in the Alps?"


def web_settings(tmp_path: Path, database_url: str) -> Settings:
    return kb_settings(tmp_path, database_url, chat_model="scripted", embed_model="hash", torch_threads=2)


class PacedChatModel(ScriptedChatModel):
    """Streams its reply one piece every `pause` seconds, so a browser sees the answer arrive."""

    def __init__(self, replies, name: str, pause: float):
        super().__init__(replies, name=name)
        self.pause = pause

    def _pieces(self, answer, prompt_tokens, params, cancel):
        for item in super()._pieces(answer, prompt_tokens, params, cancel):
            yield item
            time.sleep(self.pause)


def web_registry(settings: Settings, *, pause: float = 0.0, replies=None) -> ModelRegistry:
    """A registry of its own (fakes must not leak into other tests' shared one) with fast fakes;
    the chat model answers ANSWER, or what `replies(messages)` says."""
    registry = ModelRegistry(settings)
    registry.register_chat(PacedChatModel(replies or (lambda messages: ANSWER), name="scripted", pause=pause))
    registry.register_embedder(HashEmbedder(name="hash"))
    return registry


def sse_payloads(body: str) -> list[dict]:
    """The JSON events of a server-sent event stream, without the closing [DONE]."""
    events = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-1:]
    return [json.loads(event) for event in events[:-1]]


def assert_inert(html: str) -> None:
    """No script (but our own static files), image, frame, inline handler, inline style or javascript: URL."""
    tree = HTMLParser(html)
    assert all(s.attributes.get("src", "").startswith("/static/") and not s.text() for s in tree.css("script"))
    assert tree.css("img") == [] and tree.css("iframe") == [] and tree.css("object") == []
    for node in tree.css("*"):
        for name, value in node.attributes.items():
            assert not name.lower().startswith("on") and name.lower() != "style", f"<{node.tag} {name}=...>"
            assert "javascript:" not in (value or "").lower(), f"<{node.tag} {name}={value!r}>"


class ByteTokenizer:
    """A tokenizer whose tokens are single UTF-8 bytes: every Chinese character spans three tokens."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


STRAY_BYTE = 0xE6  # the lead byte of a three-byte character, never completed


class ByteTokenChatModel(ScriptedChatModel):
    """Streams its reply byte by byte through kb's real detokenizer, with one stray byte before the 4th character
    (what the small model did in the walk-through: "重点上�浩订都")."""

    def _pieces(self, answer, prompt_tokens, params, cancel):
        detokenizer = IncrementalDetokenizer(ByteTokenizer())
        assembler = AnswerAssembler(params.stop)
        ids = [
            byte
            for index, char in enumerate(answer)
            for byte in ([STRAY_BYTE] if index == 3 else []) + list(char.encode())
        ]
        for token in ids:
            visible = assembler.feed(detokenizer.add(token))
            if visible:
                yield StreamDelta(visible)
        last, completion = assembler.finish(prompt_tokens, len(ids), "stop")
        if last:
            yield StreamDelta(last)
        yield completion
