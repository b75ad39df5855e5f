"""PDF reader: pypdf page by page, pdfminer.six (in a capped child process) for damaged or garbled pages."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, LimitReachedError

from kb.errors import Unprocessable
from kb.ingest import sniff
from kb.ingest.garble import garble_score, looks_garbled
from kb.ingest.readers.registry import reader
from kb.ingest.textutil import join_cjk_lines, paragraphs, reflow, tidy
from kb.ingest.types import Block, ParsedDocument, ReadLimits

_CHILD = Path(__file__).with_name("pdfminer_child.py")
_CHILD_MEMORY_MB = 1024


@dataclass
class _Pages:
    texts: dict[int, str] = field(default_factory=dict)  # 1-based page -> text
    count: int = 0
    title: str | None = None
    warnings: list[str] = field(default_factory=list)
    timed_out: bool = False


class _Damaged(Exception):
    """pypdf could not open the file; `reason` says why in its words."""


@reader(sniff.PDF, "PDF")
def read_pdf(data: bytes, name: str, limits: ReadLimits) -> ParsedDocument:
    """Text per page with page numbers; encrypted, scanned and damaged files raise Unprocessable."""
    deadline = time.monotonic() + limits.max_seconds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pypdf warns about every small defect; we report what matters
        try:
            pages = _read_with_pypdf(data, name, limits, deadline)
        except _Damaged as exc:
            pages = _recover_damaged(data, name, limits, deadline, str(exc))
    _retry_garbled_pages(data, name, pages, limits, deadline)
    blocks = [
        Block(text=para, page=number) for number, text in sorted(pages.texts.items()) for para in paragraphs(text)
    ]
    if not blocks and pages.timed_out:
        raise Unprocessable(
            f"{name} took longer than {limits.max_seconds:.0f} s to read; split it into smaller files.", code="too_slow"
        )
    if not blocks:
        raise Unprocessable(
            f"{name} looks scanned: it has no text layer; run OCR first (for example ocrmypdf) and upload the result.",
            code="pdf_no_text",
        )
    empty = [n for n, text in sorted(pages.texts.items()) if not text.strip()]
    if empty:
        pages.warnings.insert(
            0, f"No text found on {_pages_phrase(empty)} (scanned images?); that content is not searchable."
        )
    return ParsedDocument(blocks=blocks, content_type=sniff.PDF, title=pages.title, warnings=pages.warnings)


def _read_with_pypdf(data: bytes, name: str, limits: ReadLimits, deadline: float) -> _Pages:
    try:
        pdf = PdfReader(io.BytesIO(data), strict=False)
        _unlock(pdf, name)
        count = len(pdf.pages)
    except Unprocessable:
        raise
    except LimitReachedError as exc:
        raise _too_large(name) from exc
    except Exception as exc:
        raise _Damaged(_reason(exc)) from exc
    pages = _Pages(count=count, title=_title(pdf))
    failed: list[int] = []
    last_error: Exception | None = None
    for index in range(min(count, limits.max_pages)):
        if time.monotonic() > deadline:
            pages.timed_out = True
            pages.warnings.append(
                f"Reading stopped after page {index} of {count}: it took longer than {limits.max_seconds:.0f} s."
            )
            break
        try:
            pages.texts[index + 1] = _clean(pdf.pages[index].extract_text() or "")
        except Exception as exc:
            failed.append(index + 1)
            last_error = exc
    if count > limits.max_pages:
        pages.warnings.append(f"Only the first {limits.max_pages} of {count} pages were read.")
    if last_error is not None:
        bomb = isinstance(last_error, LimitReachedError)
        if not pages.texts:
            # A lenient second parser would only expand a decompression bomb further.
            raise _too_large(name) if bomb else _Damaged(_reason(last_error))
        reason = "too large when decompressed" if bomb else _reason(last_error)
        pages.warnings.append(f"Could not read {_pages_phrase(failed)} ({reason}); skipped.")
    return pages


def _unlock(pdf: PdfReader, name: str) -> None:
    if not pdf.is_encrypted:
        return
    try:
        opened = pdf.decrypt("")
    except DependencyError as exc:
        raise Unprocessable(
            f"{name} uses an encryption kb cannot open ({exc}); remove the password and upload again.",
            code="pdf_encrypted",
        ) from exc
    if opened == PasswordType.NOT_DECRYPTED:
        raise Unprocessable(
            f"{name} is password-protected; remove the password and upload again.", code="pdf_encrypted"
        )


def _recover_damaged(data: bytes, name: str, limits: ReadLimits, deadline: float, reason: str) -> _Pages:
    result = _run_pdfminer(data, limits, deadline, pages=None)
    if result.error == "password":
        raise Unprocessable(
            f"{name} is password-protected; remove the password and upload again.", code="pdf_encrypted"
        )
    if result.error or not result.texts:
        raise Unprocessable(
            f"{name} is damaged or incomplete ({reason}); download or export it again and upload the new copy.",
            code="damaged_file",
        )
    pages = _Pages(texts=result.texts, count=len(result.texts))
    pages.warnings.append(
        f"{name} is damaged ({reason}); its text was recovered with a second PDF parser, so check it."
    )
    return pages


def _retry_garbled_pages(data: bytes, name: str, pages: _Pages, limits: ReadLimits, deadline: float) -> None:
    garbled = [n for n, text in pages.texts.items() if looks_garbled(text)]
    if not garbled:
        return
    retry = _run_pdfminer(data, limits, deadline, pages=garbled)
    still_garbled = []
    for number in garbled:
        better = retry.texts.get(number, "")
        if better.strip() and garble_score(better) < garble_score(pages.texts[number]):
            pages.texts[number] = better
        if looks_garbled(pages.texts[number]):
            still_garbled.append(number)
    if still_garbled:
        pages.warnings.append(
            f"The text of {_pages_phrase(still_garbled)} looks garbled (its fonts lack a proper Unicode map); "
            "answers quoting it may be wrong. Re-exporting the PDF or running OCR may help."
        )


@dataclass
class _ChildResult:
    texts: dict[int, str] = field(default_factory=dict)
    error: str | None = None


def _run_pdfminer(data: bytes, limits: ReadLimits, deadline: float, pages: list[int] | None) -> _ChildResult:
    """pdfminer in a child process capped in memory and time, so a hostile file cannot take the worker down."""
    command = [
        sys.executable,
        "-I",
        str(_CHILD),
        "--max-pages",
        str(limits.max_pages),
        "--memory-mb",
        str(_CHILD_MEMORY_MB),
    ]
    if pages:
        command += ["--pages", ",".join(map(str, pages))]
    timeout = max(1.0, deadline - time.monotonic())
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout, check=False)
        output = done.stdout
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or b""
    result = _ChildResult()
    for line in output.decode("utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off when the child was stopped
        if "error" in item:
            result.error = item["error"]
        else:
            result.texts[item["page"]] = _clean(item["text"])
    return result


def _clean(text: str) -> str:
    return reflow(join_cjk_lines(tidy(text)))


def _too_large(name: str) -> Unprocessable:
    return Unprocessable(
        f"{name} is too large when decompressed (a compression bomb?); kb will not expand it.",
        code="decompression_bomb",
    )


def _title(pdf: PdfReader) -> str | None:
    try:
        title = pdf.metadata.title if pdf.metadata else None
    except Exception:
        return None
    return title.strip() or None if isinstance(title, str) else None


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).strip().rstrip(".")


def _pages_phrase(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10])) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
    return f"page {shown}" if len(numbers) == 1 else f"pages {shown}"
