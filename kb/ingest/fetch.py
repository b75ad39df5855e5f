"""Fetch a web page or document a user linked: http(s) only, bounded in time and size, readable types only."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from kb import __version__
from kb.db.files import safe_name, size_limit_message
from kb.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMedia

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


PRIVATE_HINT = "an administrator can allow such links with KB_LINK_ALLOW_PRIVATE=true"


class PrivateAddress(httpcore.ConnectError):
    """A link (or a redirect) led to an address on the server's own network."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal_address(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_link(url: str, *, allow_private: bool = False) -> str:
    """The URL, stripped, if it is an absolute http(s) link; else a BadRequest saying what is wrong.

    A host given as a private address (or `localhost`) is refused here already; names are checked
    again, after DNS, when the link is fetched.
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"Only http:// and https:// links can be fetched, not '{url[:100]}'.", code="invalid_url")
    if not parts.hostname:
        raise BadRequest(f"The link '{url[:100]}' has no host name.", code="invalid_url")
    literal = _literal_address(parts.hostname)
    local_name = parts.hostname.lower() == "localhost" or parts.hostname.lower().endswith(".localhost")
    if not allow_private and (local_name or (literal is not None and not _is_public(literal))):
        raise BadRequest(
            f"The link points at a private or local address ({parts.hostname}); {PRIVATE_HINT}.", code="private_address"
        )
    return url


class _PublicOnlyBackend(httpcore.SyncBackend):
    """Resolves each host itself and connects only to public addresses, so a DNS answer cannot smuggle one in."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"the host name {host} does not resolve ({exc.strerror})") from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        blocked = [a for a in addresses if not _is_public(a)]
        if blocked:
            raise PrivateAddress(f"{host} resolves to {blocked[0]}")
        failure: Exception | None = None
        for address in addresses:  # as socket.create_connection does: an IPv6 address may have no route here
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure if failure is not None else httpcore.ConnectError(f"{host} has no address")


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write must end before one deadline: a server that trickles a
    byte at a time passes any per-read timeout, but not this."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self.stream, self.deadline = stream, deadline

    def _left(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the download passed its total deadline")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self._left(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        return _DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, self._left(timeout)), self.deadline)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend, deadline: float) -> None:
        self.backend, self.deadline = backend, deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self.backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _DeadlineStream(self.backend.connect_unix_socket(path, timeout, socket_options), self.deadline)

    def sleep(self, seconds: float) -> None:
        self.backend.sleep(seconds)


def _client(allow_private: bool, headers: dict[str, str], deadline: float) -> httpx.Client:
    options = {"timeout": TIMEOUT, "follow_redirects": True, "max_redirects": MAX_REDIRECTS, "headers": headers}
    backend = httpcore.SyncBackend() if allow_private else _PublicOnlyBackend()
    # No proxies from the environment here: a proxy would make the connection, out of this check's sight.
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(  # httpx has no public hook for the network backend
        ssl_context=httpx.create_ssl_context(), network_backend=_DeadlineBackend(backend, deadline)
    )
    return httpx.Client(transport=transport, trust_env=False, **options)


def _filename(url: str, content_type: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    suffix = READABLE_TYPES.get(content_type, "")
    if not name:
        return "page" + (suffix or ".html")
    if suffix and not name.lower().endswith(suffix):
        name += suffix
    return safe_name(name, "page.html")


def fetch_link(
    url: str, *, max_bytes: int, allow_private: bool = False, deadline_seconds: float = 120.0
) -> FetchedDocument:
    """Download `url` (following a few http(s) redirects), refusing bodies past `max_bytes` or of unreadable types,
    and giving up when the whole download (redirects included) takes longer than `deadline_seconds`.

    Unless `allow_private`, every connection (redirects included) must go to a public address.
    """
    url = check_link(url, allow_private=allow_private)
    headers = {"User-Agent": f"kb/{__version__} (knowledge-base ingestion)"}
    deadline = time.monotonic() + deadline_seconds
    try:
        with _client(allow_private, headers, deadline) as client, client.stream("GET", url) as response:
            check_link(str(response.url), allow_private=allow_private)
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
        if time.monotonic() >= deadline:
            raise Unprocessable(
                f"The link did not finish downloading within {deadline_seconds:.0f} s (KB_LINK_TIMEOUT_SECONDS); "
                "the server is too slow. Try again later, or download the file and upload it.",
                code="link_timeout",
            ) from exc
        raise Unprocessable("The link did not answer in time; try again later.", code="link_timeout") from exc
    except httpx.TooManyRedirects as exc:
        raise Unprocessable("The link redirects too many times.", code="link_failed") from exc
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, PrivateAddress):
            raise Unprocessable(
                f"The link leads to a private or local address ({exc.__cause__}); {PRIVATE_HINT}.",
                code="private_address",
            ) from exc
        raise Unprocessable(f"The link could not be reached ({exc}).", code="link_failed") from exc
    except httpx.HTTPError as exc:
        raise Unprocessable(
            f"The link could not be fetched ({type(exc).__name__}: {exc}).", code="link_failed"
        ) from exc
    return FetchedDocument(bytes(body), content_type, _filename(final_url, content_type), final_url)
