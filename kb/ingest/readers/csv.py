"""CSV reader: one block per row as 'column: value; ...'; a question/answer table becomes Q/A blocks."""

from __future__ import annotations

import csv
import io

from kb.errors import Unprocessable
from kb.ingest import sniff
from kb.ingest.readers.registry import reader
from kb.ingest.readers.structure import table_lines
from kb.ingest.readers.text import decode_or_fail
from kb.ingest.textutil import tidy
from kb.ingest.types import Block, ParsedDocument, ReadLimits

_QUESTION_NAMES = {"q", "question", "questions", "query", "问题", "问", "提问", "题目"}
_ANSWER_NAMES = {"a", "answer", "answers", "reply", "答案", "答", "回答", "解答"}


@reader(sniff.CSV, "CSV")
def read_csv(data: bytes, name: str, limits: ReadLimits) -> ParsedDocument:
    """The first row is the header; every later row becomes one block."""
    text = decode_or_fail(data, name).lstrip("\ufeff")
    delimiter = sniff.csv_delimiter(text, min_rows=1) or ","
    try:
        rows = [[tidy(cell) for cell in row] for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
    except csv.Error as exc:
        raise Unprocessable(
            f"{name} is damaged or incomplete (CSV: {exc}); check its quoting and upload again.", code="damaged_file"
        ) from exc
    rows = [row for row in rows if any(row)]
    if not rows:
        return ParsedDocument(blocks=[], content_type=sniff.CSV)
    header, body = rows[0], rows[1:]
    if _is_qa_header(header):
        blocks = [Block(text=row[0], kind="qa", answer=row[1] if len(row) > 1 else "") for row in body if row[0]]
    else:
        header = [cell or f"column {i + 1}" for i, cell in enumerate(header)]
        blocks = [Block(text=line) for line in table_lines(body, header)]
    return ParsedDocument(blocks=blocks, content_type=sniff.CSV)


def _is_qa_header(header: list[str]) -> bool:
    names = [_normalise(cell) for cell in header if cell]
    return len(names) == 2 and names[0] in _QUESTION_NAMES and names[1] in _ANSWER_NAMES


def _normalise(label: str) -> str:
    return label.strip().strip("*:：#").strip().lower()
