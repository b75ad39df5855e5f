"""DOCX reader: headings from paragraph styles, paragraphs and tables in body order; zip bombs refused first."""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from kb.errors import Unprocessable
from kb.ingest import sniff
from kb.ingest.readers.registry import reader
from kb.ingest.readers.structure import HeadingPath, looks_like_header, table_lines
from kb.ingest.textutil import tidy
from kb.ingest.types import Block, ParsedDocument, ReadLimits

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)
_RATIO_CHECK_MIN_BYTES = 1024 * 1024  # tiny parts compress oddly; only big ones can be bombs
_IMAGE_MARKERS = (b"<w:drawing", b"<v:imagedata", b"<w:pict")


@reader(sniff.DOCX, "Word (.docx)")
def read_docx(data: bytes, name: str, limits: ReadLimits) -> ParsedDocument:
    """Blocks in body order; header/footer parts and comments are not body text and are left out."""
    document_xml = _check_archive(data, name, limits)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks, title = _body_blocks(document)
    except Unprocessable:
        raise
    except Exception as exc:
        raise Unprocessable(
            f"{name} is damaged or incomplete ({_reason(exc)}); save it again in Word and upload the new copy.",
            code="damaged_file",
        ) from exc
    if not blocks:
        if any(marker in document_xml for marker in _IMAGE_MARKERS):
            raise Unprocessable(
                f"{name} contains only images and no text; run OCR on it or paste its text.", code="no_text"
            )
        raise Unprocessable(f"{name} is blank: it contains no text.", code="no_text")
    return ParsedDocument(blocks=blocks, content_type=sniff.DOCX, title=_core_title(document) or title)


def _check_archive(data: bytes, name: str, limits: ReadLimits) -> bytes:
    """Refuse archives that would expand beyond the limits; return the main document part's XML."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise Unprocessable(
            f"{name} is damaged or incomplete ({_reason(exc)}); save it again in Word and upload the new copy.",
            code="damaged_file",
        ) from exc
    too_big = f"{name} is too large when decompressed"
    if len(infos) > limits.max_zip_entries:
        raise Unprocessable(
            f"{too_big}: it holds {len(infos):,} parts (limit {limits.max_zip_entries:,}).", code="zip_bomb"
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_unzipped_bytes:
        raise Unprocessable(
            f"{too_big} ({total / 2**20:,.0f} MB; limit {limits.max_unzipped_bytes / 2**20:,.0f} MB).", code="zip_bomb"
        )
    xml = sum(info.file_size for info in infos if info.filename.endswith((".xml", ".rels")))
    if xml > limits.max_docx_xml_bytes:
        raise Unprocessable(
            f"{name} holds {xml / 2**20:,.0f} MB of text and layout (limit {limits.max_docx_xml_bytes / 2**20:,.0f} MB); "
            "split it into smaller documents.",
            code="document_too_large",
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= _RATIO_CHECK_MIN_BYTES and ratio > limits.max_zip_ratio:
            raise Unprocessable(
                f"{too_big}: part {info.filename} expands {ratio:,.0f} times (a zip bomb?).", code="zip_bomb"
            )
    try:
        # zipfile stops at each part's declared size, so the checks above also bound what is read here.
        return archive.read("word/document.xml")
    except (KeyError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Unprocessable(
            f"{name} is damaged or incomplete ({_reason(exc)}); save it again in Word and upload the new copy.",
            code="damaged_file",
        ) from exc


def _body_blocks(document: docx.document.Document) -> tuple[list[Block], str | None]:
    headings = HeadingPath()
    blocks: list[Block] = []
    title = None
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = tidy(item.text)
            if not text:
                continue
            level = _heading_level(item)
            if level:
                blocks.append(headings.heading(text, level))
                title = title or text
            else:
                blocks.append(headings.block(text))
        else:
            blocks.extend(headings.block(text, kind) for text, kind in _table_blocks(item))
    return blocks, title


def _heading_level(paragraph: Paragraph) -> int:
    """1-based level from the 'Heading N'/'Title' style (or a style it inherits from), or an outline level."""
    style = paragraph.style
    while style is not None:
        if style.name and style.name.lower() == "title":
            return 1
        match = _HEADING_STYLE.match(style.name or "")
        if match:
            return int(match.group(1))
        style = style.base_style
    outline = paragraph._p.xpath("./w:pPr/w:outlineLvl/@w:val")
    return int(outline[0]) + 1 if outline and outline[0].isdigit() and int(outline[0]) < 9 else 0


def _table_blocks(table: Table) -> list[tuple[str, str]]:
    rows = _unmerged_rows(table)
    rows = [row for row in rows if any(row)]
    cells = [cell for row in rows for cell in row if cell]
    if len(cells) <= 1:
        return [(cells[0], "text")] if cells else []  # a one-cell table is layout, not data
    header = rows[0] if looks_like_header(rows[0], rows[1:]) else None
    lines = table_lines(rows[1:] if header else rows, header)
    return [("\n".join(lines), "table")] if lines else []


def _unmerged_rows(table: Table) -> list[list[str]]:
    """Cell texts per row, each merged cell once: python-docx repeats a merged cell in every grid slot it covers."""
    rows: list[list[str]] = []
    above: list[_Cell] = []
    for row in table.rows:
        cells = list(row.cells)
        texts = []
        for column, cell in enumerate(cells):
            repeats_left = column > 0 and cells[column - 1]._tc is cell._tc
            repeats_above = column < len(above) and above[column]._tc is cell._tc
            texts.append("" if repeats_left or repeats_above else _cell_text(cell))
        rows.append(texts)
        above = cells
    return rows


def _cell_text(cell: _Cell) -> str:
    parts = [
        p.text if isinstance(p, Paragraph) else " ".join(_cell_text(c) for r in p.rows for c in r.cells)
        for p in cell.iter_inner_content()
    ]
    return tidy(" ".join(part for part in parts if part.strip()))


def _core_title(document: docx.document.Document) -> str | None:
    title = (document.core_properties.title or "").strip()
    return title or None


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).strip().rstrip(".")
