"""A conversation as Markdown: what "Export" downloads."""

from __future__ import annotations

from collections.abc import Sequence

from kb.db.store.chats import ChatRecord, MessageRecord
from kb.rag.answer import STOPPED


def chat_markdown(chat: ChatRecord, messages: Sequence[MessageRecord]) -> str:
    """The title, each question and answer, and the sources each answer was shown."""
    lines = [f"# {chat.title or chat.id}", "", f"_{chat.created_at:%Y-%m-%d %H:%M} UTC_", ""]
    for message in messages:
        if message.role == "user":
            lines += ["## Question", "", message.content, ""]
            continue
        lines += ["## Answer", "", message.content, ""]
        if message.timings.get("finish_reason") == STOPPED:
            lines += ["_(stopped)_", ""]
        if message.quotes:
            lines += ["Sources:", ""]
            lines += [
                f"{q['number']}. {q.get('source') or ''}" + (f", page {q['page']}" if q.get("page") else "")
                for q in message.quotes
            ]
            lines.append("")
    return "\n".join(lines)
