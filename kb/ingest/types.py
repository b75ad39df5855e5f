"""Plain data passed between the ingestion stages: reader output, chunker output, reading limits."""

from __future__ import annotations

from dataclasses import dataclass, field

BLOCK_KINDS = ("text", "heading", "table", "code", "qa")


@dataclass(frozen=True)
class Block:
    """One structural piece of a document, in reading order."""

    text: str
    kind: str = "text"
    page: int | None = None
    heading_path: tuple[str, ...] = ()
    answer: str | None = None
    level: int = 0


@dataclass
class ParsedDocument:
    """What a reader found in one file."""

    blocks: list[Block]
    content_type: str
    title: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChunkDraft:
    """One piece ready to embed: `q` is the embedded text, `a` the answer of a Q/A pair."""

    q: str
    a: str = ""
    position: int = 0
    page: int | None = None
    heading: str = ""
    token_count: int = 0
    kind: str = "chunk"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on the work one upload may cost a reader; hostile files hit these instead of the machine's."""

    max_pages: int = 2000
    max_seconds: float = 120.0
    max_chars: int = 20_000_000
    max_unzipped_bytes: int = 256 * 1024 * 1024
    # The XML a DOCX reader parses in the worker's own memory (an lxml tree takes several times its size);
    # images and other media count only against max_unzipped_bytes. 32 MB of XML is thousands of pages.
    max_docx_xml_bytes: int = 32 * 1024 * 1024
    max_zip_ratio: float = 200.0
    max_zip_entries: int = 10_000
