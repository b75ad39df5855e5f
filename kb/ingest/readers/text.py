"""Plain-text reader: detect the encoding (BOMs, UTF-8, GBK/GB18030, ...) and split on blank lines."""

from __future__ import annotations

from kb.errors import Unprocessable
from kb.ingest import sniff
from kb.ingest.readers.registry import reader
from kb.ingest.textutil import decode_text, detect_encoding, looks_binary, paragraphs, tidy
from kb.ingest.types import Block, ParsedDocument, ReadLimits


def decode_or_fail(data: bytes, name: str) -> str:
    """The file's text in its detected encoding; Unprocessable when no encoding fits."""
    codec = detect_encoding(data)
    text = decode_text(data, codec) if codec else ""
    if codec is None or looks_binary(text):
        raise Unprocessable(
            f"{name} could not be decoded as text (unknown or mixed character encoding); save it as UTF-8 and upload again.",
            code="undecodable_text",
        )
    return text


@reader(sniff.TEXT, "plain text")
def read_text(data: bytes, name: str, limits: ReadLimits) -> ParsedDocument:
    """One text block per blank-line-separated paragraph."""
    text = tidy(decode_or_fail(data, name))
    return ParsedDocument(blocks=[Block(text=p) for p in paragraphs(text)], content_type=sniff.TEXT)
