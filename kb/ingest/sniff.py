"""Content sniffing: decide a file's type from its bytes; the file name only breaks ties among text formats."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from pathlib import PurePath

from kb.ingest.textutil import decode_text, detect_encoding, looks_binary

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
CSV = "text/csv"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
ZIP = "application/zip"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
OLE = "application/x-ole-storage"
RTF = "application/rtf"
BINARY = "application/octet-stream"

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/bmp"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", OLE),
    (b"{\\rtf", RTF),
)
_EXTENSION_HINTS = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".mdown": MARKDOWN,
    ".mkd": MARKDOWN,
    ".mdx": MARKDOWN,
    ".txt": TEXT,
    ".text": TEXT,
    ".log": TEXT,
    ".csv": CSV,
    ".tsv": CSV,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
}
_PDF_HEADER = re.compile(rb"(?:^|[\r\n])%PDF-\d")  # the spec allows junk before the header
_HTML_START = re.compile(r"^(?:\s|<!--.*?-->|<\?xml[^>]*>)*<(?:!doctype\s+html|html)[\s>]", re.I | re.S)
_HTML_TAGS = re.compile(r"<(?:html|head|body)[\s>]", re.I)
_ANY_TAG = re.compile(r"<[a-z][a-z0-9]*[\s/>]", re.I)
_MARKDOWN_SIGNS = re.compile(r"^(?:#{1,6}\s+\S|```|~~~|\s*\|?\s*:?-{3,}:?\s*\|)", re.M)
CSV_DELIMITERS = ",\t;|"
_SNIFF_CHARS = 64 * 1024


def sniff_content_type(data: bytes, filename: str) -> str:
    """Content type of `data` from magic bytes and content; the extension is only a hint between text formats."""
    head = data[:2048]
    if _PDF_HEADER.search(data[:1024]):
        return PDF
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_type(data)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, content_type in _MAGIC:
        if head.startswith(magic):
            return content_type
    codec = detect_encoding(data)
    if codec is None:
        return BINARY
    text = decode_text(data[: _SNIFF_CHARS * 4], codec)[:_SNIFF_CHARS]
    if looks_binary(text):
        return BINARY
    return _text_type(text, _EXTENSION_HINTS.get(PurePath(filename or "").suffix.lower()))


def _zip_type(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        # A cut-off upload has no central directory, but the local headers still name the parts.
        return DOCX if b"word/document.xml" in data else ZIP
    if "word/document.xml" in names:
        return DOCX
    if "xl/workbook.xml" in names:
        return XLSX
    if "ppt/presentation.xml" in names:
        return PPTX
    return ZIP


def _text_type(text: str, hint: str | None) -> str:
    prefix = text[:4096]
    if _HTML_START.match(prefix):
        return HTML
    if hint in (None, HTML) and (_HTML_TAGS.search(prefix) or (hint == HTML and _ANY_TAG.search(prefix))):
        return HTML
    if hint in (MARKDOWN, TEXT):
        return hint
    if csv_delimiter(text, min_rows=2 if hint == CSV else 3) is not None:
        return CSV
    if hint is None and _MARKDOWN_SIGNS.search(text):
        return MARKDOWN
    return TEXT


def csv_delimiter(text: str, *, min_rows: int = 2) -> str | None:
    """The delimiter that splits the first rows into the same number (>= 2) of fields, or None."""
    lines = text.splitlines()
    if len(text) >= _SNIFF_CHARS and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut in the middle
    sample = "\n".join(lines[:200])
    best: tuple[int, str] | None = None
    for delimiter in CSV_DELIMITERS:
        try:
            rows = [
                row for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if any(cell.strip() for cell in row)
            ]
        except csv.Error:
            continue
        if len(rows) < min_rows:
            continue
        width, count = Counter(len(row) for row in rows).most_common(1)[0]
        if width >= 2 and count >= 0.9 * len(rows) and (best is None or width > best[0]):
            best = (width, delimiter)
    return best[1] if best else None
