"""QA split (as in FastGPT): ask the chat model for question/answer pairs grounded in one chunk, and parse them.

The prompt asks for a strict numbered format (Q1:/A1:); the parser also accepts what small models write
instead: `Q:`/`A:`, `Question:`/`Answer:`, `问题1：`/`答案1：`, `问：`/`答：`, bold markers, numbered lists,
multi-line answers, chatter before and after, and JSON lists of objects.
"""

from __future__ import annotations

import json
import re
import unicodedata

_CJK_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")

_SYSTEM = {
    "en": (
        "You turn a passage into question-and-answer pairs for a knowledge base. "
        "Use only facts stated in the passage; never add outside knowledge. Write in English."
    ),
    "zh": "你把一段文字整理成知识库用的问答对。只使用文中明确写出的事实，不要添加文外知识。用中文书写。",
}
_USER = {
    "en": (
        "Passage:\n<<<\n{text}\n>>>\n\n"
        "Write up to {n} questions a reader might ask that the passage answers, each with its answer taken from the passage.\n"
        "Use exactly this format and nothing else:\n"
        "Q1: <question>\nA1: <answer>\nQ2: <question>\nA2: <answer>"
    ),
    "zh": (
        "文字：\n<<<\n{text}\n>>>\n\n"
        "根据这段文字写出最多{n}个读者可能会问的问题，每个问题附上取自原文的答案。\n"
        "严格使用下面的格式，不要写其他内容：\n"
        "Q1: <问题>\nA1: <答案>\nQ2: <问题>\nA2: <答案>"
    ),
}

_BOLD = r"(?:\*\*|__)?"
_LEAD = r"^[\s>#*_\-•]*(?:\d{1,3}[.)、]\s*)?" + _BOLD + r"\s*"
_NUMBER = r"\s*(?:\d{1,3}|[一二三四五六七八九十]{1,3})?\s*"
_COLON = _BOLD + r"\s*(?:[:：]|(?<=\d)[.)])\s*" + _BOLD + r"\s*"  # "Q1." only with a number
_QUESTION_LABEL = r"(?:q|question|问题|问|提问)"
_ANSWER_LABEL = r"(?:a|answer|答案|答|回答)"
_QUESTION_LINE = re.compile(_LEAD + _QUESTION_LABEL + _NUMBER + _COLON + r"(?P<rest>.*)$", re.I)
_ANSWER_LINE = re.compile(_LEAD + _ANSWER_LABEL + _NUMBER + _COLON + r"(?P<rest>.*)$", re.I)
# "Q1: What is X? A1: It is Y." on one line: the answer label must follow a space or sentence end.
_INLINE_ANSWER = re.compile(r"(?<=[\s?？。.!！])" + _BOLD + _ANSWER_LABEL + _NUMBER + _COLON, re.I)
_CLOSING_CHATTER = re.compile(
    r"^(?:i hope|hope this|let me know|feel free|these (?:questions|pairs)|here are|note:|希望|如有|以上|如果您?还有)",
    re.I,
)
_JSON_ARRAY = re.compile(r"\[\s*\{.*\}\s*\]", re.S)
# The prompt's own "<question>"/"<问题>" slots, which a small model copies instead of filling in.
_PLACEHOLDER = re.compile(r"^[<＜]\s*(?:question|answer|问题|答案|回答)\s*\d*\s*[>＞]$", re.I)
_KEYS = {"q": ("q", "question", "问题", "问"), "a": ("a", "answer", "答案", "答")}


def detect_language(text: str) -> str:
    """'zh' when Chinese characters carry at least as much of the text as Latin words do, else 'en'."""
    ideographs = len(_CJK_IDEOGRAPH.findall(text))
    return "zh" if ideographs and ideographs >= len(_LATIN_WORD.findall(text)) else "en"


def build_qa_messages(chunk_text: str, *, language: str | None = None, max_pairs: int = 5) -> list[dict]:
    """Chat messages asking for up to `max_pairs` Q/A pairs grounded only in `chunk_text`, in its language."""
    language = language if language in _SYSTEM else detect_language(chunk_text)
    return [
        {"role": "system", "content": _SYSTEM[language]},
        {"role": "user", "content": _USER[language].format(text=chunk_text.strip(), n=max(1, max_pairs))},
    ]


def parse_qa_pairs(text: str) -> list[tuple[str, str]]:
    """Question/answer pairs found in a model's reply, deduplicated by question; [] when there are none."""
    pairs = _parse_labelled(text) or _parse_json(text)
    seen: set[str] = set()
    result = []
    for question, answer in pairs:
        question, answer = _clean(question), _clean(answer)
        key = _dedupe_key(question)
        if question and answer and key not in seen and not _is_placeholder(question, answer):
            seen.add(key)
            result.append((question, answer))
    return result


def _parse_labelled(text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    question: list[str] | None = None
    answer: list[str] | None = None

    def finish() -> None:
        if question is not None and answer is not None:
            pairs.append(("\n".join(question), "\n".join(_drop_closing_chatter(answer))))

    for line in text.replace("\r\n", "\n").split("\n"):
        asked = _QUESTION_LINE.match(line)
        answered = _ANSWER_LINE.match(line)
        if asked:
            finish()
            rest = asked.group("rest")
            inline = _INLINE_ANSWER.search(rest)
            question, answer = ([rest[: inline.start()]], [rest[inline.end() :]]) if inline else ([rest], None)
        elif answered and question is not None:
            if answer is not None:  # a second answer label without a question: keep it with this answer
                answer.append(answered.group("rest"))
            else:
                answer = [answered.group("rest")]
        elif answer is not None:
            answer.append(line)
        elif question is not None:
            question.append(line)  # a question continued on the next line
    finish()
    return pairs


def _drop_closing_chatter(lines: list[str]) -> list[str]:
    """Cut a final paragraph such as 'I hope this helps!' that follows the last answer after a blank line."""
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    for index in range(len(lines) - 1, 0, -1):
        if not lines[index - 1].strip() and _CLOSING_CHATTER.match(lines[index].strip()):
            return lines[: index - 1]
    return lines


def _parse_json(text: str) -> list[tuple[str, str]]:
    match = _JSON_ARRAY.search(text)
    if not match:
        return []
    try:
        items = json.loads(match.group(0))
    except json.JSONDecodeError:
        return []
    pairs = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            lowered = {str(k).strip().lower(): v for k, v in item.items()}
            question = next((lowered[k] for k in _KEYS["q"] if k in lowered), None)
            answer = next((lowered[k] for k in _KEYS["a"] if k in lowered), None)
            if isinstance(question, str) and isinstance(answer, str):
                pairs.append((question, answer))
    return pairs


def _clean(text: str) -> str:
    lines = [line.strip() for line in text.strip().split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text = re.sub(r"^(?:\*\*|__)+|(?:\*\*|__)+$", "", text).strip()
    if len(text) >= 2 and text[0] + text[-1] in ('""', "''", "“”", "「」"):
        text = text[1:-1].strip()
    return text


def _is_placeholder(question: str, answer: str) -> bool:
    """The pair is the prompt's format line copied: "<question>" or "<答案>" standing alone."""
    return bool(_PLACEHOLDER.match(question) or _PLACEHOLDER.match(answer))


def _dedupe_key(question: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", question).casefold() if ch.isalnum())
