"""Fetch a web page or document a user linked: http(s) only, bounded in time and size, readable types only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx

from kb import __version__
from kb.errors import BadRequest, PayloadTooLarge, UnsupportedMedia, Unprocessable
from kb.files import safe_name, size_limit_message

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_REDIRECTS = 5
# What a server may call the body; the bytes are sniffed again before reading.
READABLE_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/csv": ".csv",
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/octet-stream": "",
}


@dataclass(frozen=True)
class FetchedDocument:
    data: bytes
    content_type: str
    filename: str
    final_url: str


def check_link(url: str) -> str:
    """The URL, stripped, if it is an absolute http(s) link; else a BadRequest saying what is wrong."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"Only http:// and https:// links can be fetched, not '{url[:100]}'.", code="invalid_url")
    if not parts.hostname:
        raise BadRequest(f"The link '{url[:100]}' has no host name.", code="invalid_url")
    return url


def _filename(url: str, content_type: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    suffix = READABLE_TYPES.get(content_type, "")
    if not name:
        return "page" + (suffix or ".html")
    if suffix and not name.lower().endswith(suffix):
        name += suffix
    return safe_name(name, "page.html")


def fetch_link(url: str, *, max_bytes: int) -> FetchedDocument:
    """Download `url` (following a few http(s) redirects), refusing bodies past `max_bytes` or of unreadable types."""
    url = check_link(url)
    headers = {"User-Agent": f"kb/{__version__} (knowledge-base ingestion)"}
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=True, max_redirects=MAX_REDIRECTS, headers=headers) as client:
            with client.stream("GET", url) as response:
                check_link(str(response.url))
                if response.status_code >= 400:
                    raise Unprocessable(
                        f"The link answered HTTP {response.status_code}; check that the address is right and public.",
                        code="link_failed",
                    )
                content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0]
                content_type = content_type.strip().lower()
                if content_type not in READABLE_TYPES:
                    raise UnsupportedMedia(
                        f"The link returned {content_type}, which kb cannot read; link to a web page, PDF, "
                        "Word (.docx), Markdown, CSV or text document.",
                        code="unsupported_file_type",
                    )
                declared = int(response.headers.get("content-length") or 0)
                if declared > max_bytes:
                    raise PayloadTooLarge(size_limit_message(max_bytes, "The linked document"))
                body = bytearray()
                for block in response.iter_bytes():
                    body.extend(block)
                    if len(body) > max_bytes:
                        raise PayloadTooLarge(size_limit_message(max_bytes, "The linked document"))
                final_url = str(response.url)
    except httpx.TimeoutException as exc:
        raise Unprocessable("The link did not answer in time; try again later.", code="link_timeout") from exc
    except httpx.TooManyRedirects as exc:
        raise Unprocessable("The link redirects too many times.", code="link_failed") from exc
    except httpx.HTTPError as exc:
        raise Unprocessable(f"The link could not be fetched ({type(exc).__name__}: {exc}).", code="link_failed") from exc
    return FetchedDocument(bytes(body), content_type, _filename(final_url, content_type), final_url)
