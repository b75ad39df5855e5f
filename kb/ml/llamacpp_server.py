"""llama.cpp (the `xllamacpp` wheel) loaded once per model file per process, spoken to over a private unix socket.

`xllamacpp.Server` always starts llama.cpp's own HTTP server. kb binds it to a unix socket in a 0700
directory with a random API key, and streams answers over it rather than through the Python callback:
closing that connection is the only way to stop a request while it waits in llama.cpp's queue or reads
its prompt (the callback is first called with the first token, after a prefill of up to a minute).
OpenMP's spin-wait must be cut short before OpenMP loads, or 2 threads stall on a busy machine: kb/__init__.py does it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
# Tokens read per prompt step. llama.cpp notices a closed connection only between steps, so this is how
# long a cancelled prefill keeps the CPU: 128 freed it 5x sooner than llama.cpp's 512 for the same CPU
# time per prompt (18.4 vs 18.6 s for 1,300 tokens at load 12, BENCHMARKS.md).
PROMPT_BATCH = 128
HOST_PROMPT_CACHE_MIB = 256  # llama.cpp's default keeps up to 8 GiB of old prompts in RAM


class LlamaServerError(RuntimeError):
    """llama.cpp refused a request or could not load its model."""


@dataclass(frozen=True)
class ServerConfig:
    """What makes two loaded llama.cpp servers interchangeable (one per distinct config per process)."""

    gguf: Path
    context_per_slot: int
    slots: int
    threads: int


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class ChunkStream:
    """One streamed chat completion; `close()` from any thread makes llama.cpp drop the task (queued,
    reading the prompt or decoding) and ends `chunks()`."""

    def __init__(self, socket_path: str, headers: dict[str, str], body: dict):
        self._connection = _UnixConnection(socket_path, timeout=None)
        self._connection.connect()  # here, in the caller's thread, so close() always has a socket to shut
        self._headers, self._body = headers, body
        self.closed = False

    def chunks(self) -> Iterator[dict]:
        """The `chat.completion.chunk` dicts (or one `{"error": ...}`); blocks, so run it in a worker thread."""
        try:
            self._connection.request("POST", "/v1/chat/completions", json.dumps(self._body), self._headers)
            response = self._connection.getresponse()
            if response.status != 200:
                payload = json.loads(response.read() or b"{}")
                yield payload if "error" in payload else {"error": {"message": f"HTTP {response.status}"}}
                return
            while line := response.fp.readline():
                if not line.startswith(b"data: "):
                    continue
                data = line[len(b"data: ") :].strip()
                if data == b"[DONE]":
                    return
                yield json.loads(data)
        except (OSError, http.client.HTTPException, ValueError):
            if not self.closed:  # after close() a broken read is the cancel itself
                raise

    def close(self) -> None:
        """Cancel: llama.cpp sees the connection gone at its next check and frees the slot."""
        self.closed = True
        sock = self._connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._connection.close()


class LlamaServer:
    """A GGUF model loaded in llama.cpp, with its tokenizer and chat template behind the private socket."""

    def __init__(self, config: ServerConfig):
        import xllamacpp

        self.config = config
        self._dir = tempfile.mkdtemp(prefix="kb-llama-")
        os.chmod(self._dir, 0o700)
        self._socket = os.path.join(self._dir, "llama.sock")  # a host name ending in .sock means AF_UNIX
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
        params = xllamacpp.CommonParams()
        params.model.path = str(config.gguf)
        params.n_parallel = config.slots
        params.n_ctx = config.context_per_slot * config.slots  # llama.cpp splits n_ctx between the slots
        params.n_batch = PROMPT_BATCH
        params.cpuparams.n_threads = config.threads
        params.cpuparams_batch.n_threads = config.threads
        params.cache_prompt = True  # a repeated prefix (the system prompt and quotes) is not read again
        params.cache_ram_mib = HOST_PROMPT_CACHE_MIB
        params.hostnames = [self._socket]
        params.api_keys = [self._headers["Authorization"].removeprefix("Bearer ")]
        params.endpoint_slots = True  # busy_slots(): how many requests llama.cpp is working on
        params.ui = False
        params.verbosity = 0
        try:
            self._server = xllamacpp.Server(params)
        except RuntimeError as exc:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise LlamaServerError(str(exc)) from exc
        self.chat_template = str(self.get("/props").get("chat_template") or "")

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        connection = _UnixConnection(self._socket, timeout=120)
        try:
            connection.request(method, path, json.dumps(body) if body is not None else None, self._headers)
            response = connection.getresponse()
            payload = json.loads(response.read() or b"null")
        finally:
            connection.close()
        if response.status != 200:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            raise LlamaServerError(f"{path}: {error.get('message') or f'HTTP {response.status}'}")
        return payload

    def get(self, path: str) -> dict | list:
        """A JSON GET on llama.cpp's own API."""
        return self._request("GET", path)

    def post(self, path: str, body: dict) -> dict:
        """A JSON POST on llama.cpp's own API (/tokenize, /apply-template, ...)."""
        return self._request("POST", path, body)

    def open_chat(self, body: dict) -> ChunkStream:
        """Connect for one streamed chat completion; iterate `chunks()` in a worker thread."""
        return ChunkStream(self._socket, self._headers, {**body, "stream": True})

    def busy_slots(self) -> int:
        """How many requests llama.cpp itself is working on right now (reading a prompt or decoding).

        Not for tight loops: each call wakes llama.cpp's waiting request handlers, which notice a closed
        client connection only when a 1-s wait runs out; polled faster, a cancel does not land.
        """
        return sum(1 for slot in self.get("/slots") if slot.get("is_processing"))

    def close(self) -> None:
        """Unload: the Server's destructor stops llama.cpp's loop."""
        self._server = None
        shutil.rmtree(self._dir, ignore_errors=True)


_servers: dict[ServerConfig, LlamaServer] = {}
_loading = threading.Lock()


def shared_server(config: ServerConfig) -> LlamaServer:
    """The process's one server for this model file and shape, loaded on first use."""
    with _loading:  # loads are rare and a model file must not be loaded twice at once
        if config not in _servers:
            log.info(
                "loading %s in llama.cpp (%d slot(s) of %d tokens)",
                config.gguf.name,
                config.slots,
                config.context_per_slot,
            )
            _servers[config] = LlamaServer(config)
        return _servers[config]
