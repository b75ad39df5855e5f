"""Turn a follow-up ("and when was it built?") into a standalone question for retrieval, with the chat model.

The rewrite only steers the search; the answer prompt still shows the original question with its
history. A rewrite that is empty, rambling or in another language is thrown away for the original.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from kb.ml.types import ChatModel, GenerationParams
from kb.rag.prompting import cut_to_tokens, detect_language

REWRITE_TURNS = 2
REWRITE_MESSAGE_TOKENS = 150
REWRITE_MAX_TOKENS = 64
LABEL = re.compile(
    r"^\s*(?:standalone question|rewritten question|question|完整问题|独立问题|改写后的问题|问题)\s*[:：]\s*", re.I
)

INSTRUCTIONS = {
    "en": (
        "Rewrite the follow-up question as one standalone question that names what it refers to, "
        "using the conversation. Reply with the question only.\n"
        'Example: after a conversation about the Eiffel Tower, the follow-up "how tall is it?" '
        'becomes "How tall is the Eiffel Tower?"'
    ),
    "zh": (
        "请结合对话，把追问改写成一个不依赖上下文、指明所指对象的完整问题。只输出改写后的问题。\n"
        "例如：在关于埃菲尔铁塔的对话之后，追问“它有多高？”改写为“埃菲尔铁塔有多高？”"
    ),
}
WORDS = {
    "en": {
        "user": "User",
        "assistant": "Assistant",
        "conversation": "Conversation:",
        "follow_up": "Follow-up question:",
        "answer": "Standalone question:",
    },
    "zh": {
        "user": "用户",
        "assistant": "助手",
        "conversation": "对话：",
        "follow_up": "追问：",
        "answer": "完整问题：",
    },
}


@dataclass(frozen=True)
class Rewrite:
    """The query to search with and whether it came from the model."""

    query: str
    rewritten: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0


def rewrite_messages(question: str, history: Sequence[dict], counter: ChatModel) -> list[dict]:
    """A short prompt: the last turns (each cut short), the follow-up, and a cue for the standalone question."""
    language = detect_language(question)
    words = WORDS[language]
    recent = [m for m in history if m.get("role") in ("user", "assistant")][-2 * REWRITE_TURNS :]
    lines = [
        f"{words[m['role']]}: {cut_to_tokens(' '.join((m.get('content') or '').split()), REWRITE_MESSAGE_TOKENS, counter.count_tokens)}"
        for m in recent
    ]
    conversation = "\n".join(lines)
    user = f"{words['conversation']}\n{conversation}\n\n{words['follow_up']} {question}\n{words['answer']}"
    return [{"role": "system", "content": INSTRUCTIONS[language]}, {"role": "user", "content": user}]


def clean_rewrite(text: str, question: str) -> str | None:
    """The rewritten question, or None when it is unusable (empty, too long, another language)."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = LABEL.sub("", line).strip().strip("\"'“”「」").strip()
    if len(line) < 3 or len(line) > max(300, 4 * len(question)):
        return None
    if detect_language(line) != detect_language(question):
        return None
    return line


def rewrite_question(
    question: str, history: Sequence[dict], model: ChatModel, cancel: threading.Event | None = None
) -> Rewrite:
    """Ask the model for a standalone version of `question`; keep the original when the answer is unusable."""
    if not history:
        return Rewrite(question, False)
    params = GenerationParams(max_tokens=REWRITE_MAX_TOKENS, temperature=0.0, stop=["\n\n"])
    completion = model.generate(rewrite_messages(question, history, model), params, cancel)
    cleaned = clean_rewrite(completion.text, question)
    return Rewrite(cleaned or question, cleaned is not None, completion.prompt_tokens, completion.completion_tokens)
