"""Markdown reader: headings give heading paths; fenced code and tables stay whole as their own blocks."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from kb.ingest import sniff
from kb.ingest.readers.registry import reader
from kb.ingest.readers.structure import HeadingPath
from kb.ingest.readers.text import decode_or_fail
from kb.ingest.textutil import tidy
from kb.ingest.types import Block, ParsedDocument, ReadLimits

_FRONT_MATTER = re.compile(r"\A---\n.*?\n(?:---|\.\.\.)\n", re.S)
_KIND_BY_TOKEN = {"fence": "code", "code_block": "code", "table_open": "table"}
_SKIPPED = {"hr"}


@reader(sniff.MARKDOWN, "Markdown")
def read_markdown(data: bytes, name: str, limits: ReadLimits) -> ParsedDocument:
    """Walk the top-level Markdown blocks, keeping each block's source text."""
    source = _FRONT_MATTER.sub("", decode_or_fail(data, name).replace("\r\n", "\n").replace("\r", "\n"))
    lines = source.split("\n")
    headings = HeadingPath()
    blocks: list[Block] = []
    title = None
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    for index, token in enumerate(tokens):
        if token.level != 0 or token.nesting == -1 or token.map is None or token.type in _SKIPPED:
            continue
        if token.type == "heading_open":
            text = tidy(_plain_inline(tokens[index + 1]))
            if text:
                blocks.append(headings.heading(text, int(token.tag[1])))
                title = title or text
            continue
        kind = _KIND_BY_TOKEN.get(token.type, "text")
        text = tidy("\n".join(lines[token.map[0] : token.map[1]]), preformatted=kind != "text")
        if text:
            blocks.append(headings.block(text, kind))
    return ParsedDocument(blocks=blocks, content_type=sniff.MARKDOWN, title=title)


def _plain_inline(token: Token) -> str:
    return "".join(child.content for child in token.children or [] if child.type in ("text", "code_inline"))
