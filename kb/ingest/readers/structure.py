"""Pieces shared by the structured readers: the heading path and table rows as searchable lines."""

from __future__ import annotations

from collections import Counter

from kb.ingest.types import Block


class HeadingPath:
    """Tracks the enclosing headings while a reader walks a document in order."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self._stack)

    def heading(self, text: str, level: int, page: int | None = None) -> Block:
        """Enter a heading of `level` (1 = outermost) and return its block (whose path is its parents)."""
        level = max(1, level)
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        block = Block(text=text, kind="heading", level=level, heading_path=self.path, page=page)
        self._stack.append((level, text))
        return block

    def block(self, text: str, kind: str = "text", page: int | None = None) -> Block:
        """A body block under the current headings."""
        return Block(text=text, kind=kind, heading_path=self.path, page=page)


def table_lines(rows: list[list[str]], header: list[str] | None) -> list[str]:
    """One line per row: 'Header: value; ...' when there is a header, else 'value | value'."""
    lines = []
    for row in rows:
        if header:
            pairs = [f"{name}: {value}" if name else value for name, value in zip(header, row, strict=False) if value]
            extra = [value for value in row[len(header) :] if value]
            line = "; ".join(pairs + extra)
        else:
            line = " | ".join(value for value in row if value)
        if line:
            lines.append(line)
    return lines


def looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    """A first row of short, distinct, non-numeric labels as wide as the table reads as its header."""
    if not rest or len(first) < 2 or not all(first):
        return False
    width = Counter(len(row) for row in rest).most_common(1)[0][0]
    labels_ok = all(len(cell) <= 80 and not _is_number(cell) for cell in first)
    return len(first) == width and len(set(first)) == len(first) and labels_ok


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).replace("%", "").strip().lstrip("-+").isdigit()
