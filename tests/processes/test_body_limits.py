"""Finding 1 of the hardening review: request bodies of any size were read before authentication.

Against a real `kb serve` process, so its memory can be read from /proc: a 50 MB body sent with no
key must be refused with a 413 in the JSON error shape, and the server's peak memory must not grow.
"""

from __future__ import annotations

import json
import select
import socket
from pathlib import Path

import pytest

from tests.processes.servers import ServerProcess, kb_servers

pytestmark = pytest.mark.slow

FIFTY_MB = 50 * 1024 * 1024
BLOCK = b" " * (1024 * 1024)


def _post_big_body(server: ServerProcess, path: str, headers: str, *, chunked: bool, head: bytes = b"") -> str:
    """Send up to 50 MB of body (stopping once the server answers) and return the start of the reply."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {FIFTY_MB}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}{framing}\r\n\r\n".encode())
        if head:
            sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        for _ in range(FIFTY_MB // len(BLOCK)):
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: the rest of the body is not wanted
            try:
                sock.sendall(f"{len(BLOCK):x}\r\n".encode() + BLOCK + b"\r\n" if chunked else BLOCK)
            except OSError:
                break
        reply = b""
        try:
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                piece = sock.recv(65536)
                if not piece:
                    break
                reply += piece
        except OSError:
            pass
    return reply.decode(errors="replace")


def _error_of(reply: str) -> dict:
    return json.loads(reply.split("\r\n\r\n", 1)[1])["error"]


def test_request_bodies_of_any_size_are_refused_before_authentication_without_growing_memory(
    tmp_path: Path, database_url: str
):
    with kb_servers(1, tmp_path, database_url, max_upload_mb="10") as (server,):
        before = server.peak_rss_mb()
        declared = _post_big_body(server, "/v1/chat/completions", "Content-Type: application/json\r\n", chunked=False)
        streamed = _post_big_body(
            server,
            "/api/datasets/1/collections",
            "Content-Type: multipart/form-data; boundary=x\r\nCookie: kb_csrf=" + "a" * 43 + "\r\n",
            chunked=True,
            head=b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n',
        )
        growth = server.peak_rss_mb() - before
    assert declared.startswith("HTTP/1.1 413"), declared[:300]
    assert "KB_MAX_REQUEST_KB" in _error_of(declared)["message"]
    assert _error_of(declared)["code"] == "request_too_large"
    assert streamed.startswith("HTTP/1.1 413"), streamed[:300]
    assert "KB_MAX_UPLOAD_MB" in _error_of(streamed)["message"]
    assert growth < 20, f"the server's peak memory grew by {growth:.0f} MB while refusing the bodies"
