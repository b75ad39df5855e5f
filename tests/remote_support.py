"""A tiny OpenAI-compatible server for tests of remote providers: it answers well, or fails on purpose."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER_PIECES = ["Paris ", "is the ", "capital", " of France."]
HANG_SECONDS = 120  # far beyond any test's timeout; `close()` ends the wait at once
STATUS_MODES = {"error500": 500, "busy429": 429, "reject400": 400}
# Modes that fail after part of the answer went out: the client has already seen some text.
MIDWAY_MODES = ("drop", "stall")


class FakeProvider:
    """A tiny OpenAI-compatible server; `mode` says how it behaves.

    ok; error500, busy429, reject400 (that status); garbage (an HTML page); hang (no answer at all);
    wrong_shape (an event stream of JSON objects that are not chunks); broken_sse (an event that is
    cut-off JSON); role_then_drop (the role chunk, then the connection closes); drop (half the answer,
    then the connection closes); stall (half the answer, then silence).
    `delay` seconds pass before each answer; while `hold()` is on, requests wait until `let_go()`.
    """

    def __init__(self, mode: str = "ok", delay: float = 0.0):
        self.mode = mode
        self.delay = delay
        self.hits = 0
        self.waiting = 0
        self.requests: list[dict] = []
        self.closing = threading.Event()
        self.released = threading.Event()
        self.released.set()
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with provider._lock:
                    provider.hits += 1
                    provider.requests.append({**body, "authorization": self.headers.get("Authorization")})
                try:
                    provider._wait_turn()
                    provider.respond(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on us (timed out, or its process was stopped)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hold(self) -> None:
        """Make new and pending requests wait until `let_go()`."""
        self.released.clear()

    def let_go(self) -> None:
        self.released.set()

    def close(self) -> None:
        """Stop serving; requests still hanging or held end at once."""
        self.closing.set()
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def _wait_turn(self) -> None:
        with self._lock:
            self.waiting += 1
        try:
            if self.delay:
                self.closing.wait(self.delay)
            while not self.released.wait(0.05) and not self.closing.is_set():
                pass
        finally:
            with self._lock:
                self.waiting -= 1

    def respond(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        if self.mode in STATUS_MODES:
            error = json.dumps({"error": {"message": f"{self.mode} here"}}).encode()
            self._send(handler, STATUS_MODES[self.mode], "application/json", error)
        elif self.mode == "garbage":
            self._send(handler, 200, "text/html", b"<html>proxy login</html>")
        elif self.mode == "hang":
            self.closing.wait(HANG_SECONDS)
        elif handler.path.endswith("/embeddings"):
            vectors = [[float(len(text)), 1.0, 0.0] for text in body["input"]]
            data = [{"index": i, "embedding": v} for i, v in reversed(list(enumerate(vectors)))]
            self._send(handler, 200, "application/json", json.dumps({"data": data}).encode())
        else:
            self._stream(handler)

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        if self.mode == "wrong_shape":
            handler.wfile.write(b'data: {"choices": [{"index": 0, "delta": "Paris"}]}\n\ndata: [DONE]\n\n')
            return
        if self.mode == "broken_sse":
            handler.wfile.write(b'data: {"choices": [{"index": 0, "delta": {"content": "Par\n\n')
            return
        if self.mode == "role_then_drop":
            handler.wfile.write(b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n')
            return
        pieces = ANSWER_PIECES[:2] if self.mode in MIDWAY_MODES else ANSWER_PIECES
        for piece in pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            handler.wfile.flush()
        if self.mode == "drop":
            return  # the connection closes mid-answer
        if self.mode == "stall":
            self.closing.wait(HANG_SECONDS)
            return
        final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
        handler.wfile.write(f"data: {json.dumps(final)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, content_type: str, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def closed_port_url() -> str:
    """A base URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
