"""`read_document`: sniff the type, run the registered reader, and hold the result to common rules."""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePath

from kb.errors import Unprocessable, UnsupportedMedia
from kb.ingest import sniff
from kb.ingest.readers import accepted_labels, find_reader
from kb.ingest.types import ParsedDocument, ReadLimits

_UNSUPPORTED_LABELS = {
    sniff.XLSX: "an Excel workbook (.xlsx)",
    sniff.PPTX: "a PowerPoint presentation (.pptx)",
    sniff.ZIP: "a ZIP archive",
    sniff.OLE: "a legacy Office file (.doc/.xls/.ppt) or a password-protected Office document",
    sniff.RTF: "an RTF document",
    sniff.BINARY: "a binary file, not a text document",
}
# An extension that names a binary format: a file whose content is something else was renamed or damaged.
_CLAIMED_BY_EXTENSION = {".pdf": (sniff.PDF, "a PDF"), ".docx": (sniff.DOCX, "a Word document (DOCX)")}


def read_document(data: bytes, filename: str, *, limits: ReadLimits | None = None) -> ParsedDocument:
    """Parse an uploaded file into blocks; raise UnsupportedMedia or Unprocessable with a message a user can act on."""
    limits = limits or ReadLimits()
    name = display_name(filename)
    if not data:
        raise Unprocessable(f"{name} is empty (0 bytes); upload a file that contains text.", code="empty_file")
    content_type = sniff.sniff_content_type(data, filename)
    claimed = _CLAIMED_BY_EXTENSION.get(PurePath(filename or "").suffix.lower())
    if claimed is not None and claimed[0] != content_type:
        raise UnsupportedMedia(
            f"{name} is not {claimed[1]}: its content is {_describe(content_type)}. It may have been renamed "
            "or damaged; upload the original file.",
            code="not_what_its_name_says",
        )
    found = find_reader(content_type)
    if found is None:
        raise UnsupportedMedia(f"{name} is {_describe(content_type)}. {accepted_types_sentence()}")
    doc = found.read(data, name, limits)
    doc.content_type = content_type
    return _hold_to_limits(doc, name, limits)


def display_name(filename: str) -> str:
    """How messages name the file: its base name in quotes, or 'The file'."""
    base = PurePath(filename or "").name
    return f'"{base}"' if base else "The file"


def accepted_types_sentence() -> str:
    """One sentence listing the accepted file types."""
    labels = accepted_labels()
    return f"Accepted types: {', '.join(labels[:-1])} and {labels[-1]}."


def _describe(content_type: str) -> str:
    if content_type.startswith("image/"):
        return "an image; kb reads text documents only (for scans or photos, run OCR and upload the text or a searchable PDF)"
    return _UNSUPPORTED_LABELS.get(content_type, f"of type {content_type}, which kb cannot read")


def _hold_to_limits(doc: ParsedDocument, name: str, limits: ReadLimits) -> ParsedDocument:
    blocks = [b for b in doc.blocks if b.text.strip()]
    if not blocks:
        raise Unprocessable(f"{name} contains no text to index.", code="no_text")
    kept, total = [], 0
    for block in blocks:
        size = len(block.text) + len(block.answer or "")
        if total + size > limits.max_chars:
            room = limits.max_chars - total
            if room > 0 and block.kind == "text":
                kept.append(replace(block, text=block.text[:room]))
            doc.warnings.append(f"{name} is longer than {limits.max_chars:,} characters; only the beginning was kept.")
            break
        kept.append(block)
        total += size
    doc.blocks = kept
    return doc
