"""Reading an evaluation set from JSONL or CSV: good lines become items, each bad line an error naming it.

JSONL: one object per line, `{"question": ..., "answers": [...], "source": "file.md"}` (`answer` for a
single string, `doc` for `source`, as the team's kits write it). CSV: a header row with `question`,
`answers` (several separated by `|`) and optionally `source`. Line numbers count from 1, blank lines included.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from kb.db.store.evals import NewItem

MAX_ITEMS = 10_000
MAX_QUESTION_CHARS = 2000
MAX_ANSWERS = 20
MAX_ANSWER_CHARS = 1000


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


@dataclass
class ParsedSet:
    items: list[NewItem] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the line of each item
    errors: list[LineError] = field(default_factory=list)


def check_item(question: object, answers: object, source: object = None) -> NewItem:
    """One item from loose values, or ValueError with a sentence saying what to fix."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question is missing or empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError("answers must be a list of strings")
    answers = [a.strip() for a in answers if a.strip()]
    if not answers:
        raise ValueError("no expected answer: give at least one string the right passage contains")
    if len(answers) > MAX_ANSWERS or any(len(a) > MAX_ANSWER_CHARS for a in answers):
        raise ValueError(f"at most {MAX_ANSWERS} answers of up to {MAX_ANSWER_CHARS} characters each")
    if source is not None and not isinstance(source, str):
        raise ValueError("source must be a document name")
    return NewItem(question.strip(), answers, (source or "").strip() or None)


def _jsonl(text: str, parsed: ParsedSet) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            parsed.errors.append(LineError(number, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(row, dict):
            parsed.errors.append(LineError(number, "each line must be a JSON object"))
            continue
        _add(
            parsed,
            number,
            row.get("question"),
            row.get("answers", row.get("answer")),
            row.get("source", row.get("doc")),
        )


def _csv(text: str, parsed: ParsedSet) -> None:
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "question" not in header or not ({"answers", "answer"} & set(header)):
        parsed.errors.append(LineError(1, "the header row must name the columns question and answers"))
        return
    reader.fieldnames = header
    for row in reader:
        answers = (row.get("answers") or row.get("answer") or "").split("|")
        _add(parsed, reader.line_num, row.get("question"), answers, row.get("source") or row.get("doc"))


def _add(parsed: ParsedSet, line: int, question: object, answers: object, source: object) -> None:
    if len(parsed.items) >= MAX_ITEMS:
        parsed.errors.append(LineError(line, f"a set holds at most {MAX_ITEMS} questions; this line was skipped"))
        return
    try:
        item = check_item(question, answers if answers is not None else [], source)
    except ValueError as exc:
        parsed.errors.append(LineError(line, str(exc)))
        return
    parsed.items.append(item)
    parsed.lines.append(line)


def parse_eval_file(name: str, content: bytes) -> ParsedSet:
    """Items and per-line errors from an uploaded `.jsonl`/`.json` or `.csv` file."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ParsedSet(errors=[LineError(1, "the file is not UTF-8 text")])
    parsed = ParsedSet()
    if name.lower().endswith(".csv"):
        _csv(text, parsed)
    else:
        _jsonl(text, parsed)
    if len(parsed.errors) > 100:
        parsed.errors = parsed.errors[:100] + [LineError(0, f"{len(parsed.errors) - 100} more lines were refused")]
    return parsed
