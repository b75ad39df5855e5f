"""llama.cpp (the `xllamacpp` wheel) loaded once per model file per process, spoken to over a private unix socket.

`xllamacpp.Server` always starts llama.cpp's own HTTP server. kb binds it to a unix socket in a 0700
directory with a random API key, and streams answers over it rather than through the Python callback:
closing that connection is the only way to stop a request while it waits in llama.cpp's queue or reads
its prompt (the callback is first called with the first token, after a prefill of up to a minute).
The server runs in a child process (kb/ml/llamacpp_child.py), so a crash in llama.cpp's native code costs a
503 and a reload, not the kb process.
OpenMP's spin-wait must be cut short before OpenMP loads, or 2 threads stall on a busy machine: kb/__init__.py does it,
and the child imports kb first.
"""

from __future__ import annotations

import atexit
import http.client
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
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
# Past prompts' KV state kept in RAM, so a conversation that returns after another request took its slot is
# not read again. llama.cpp's default is 8 GiB; under steady load this fills within minutes and then stays,
# and it is the whole of the server's memory growth there (BENCHMARKS.md, session 32).
HOST_PROMPT_CACHE_MIB = 256


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
            raise ConnectionResetError("the stream ended without [DONE]")  # llama.cpp's process died mid-answer
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


def exit_cause(returncode: int) -> str:
    """'killed by SIGSEGV' or 'exit 2', for a child process's return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


class LlamaServer:
    """A GGUF model loaded in llama.cpp in a child process, with its tokenizer and chat template behind the socket.

    If the child dies (a crash in llama.cpp), the request that finds it gone fails with `LlamaServerError` and the
    next one starts it again.
    """

    def __init__(self, config: ServerConfig):
        if importlib.util.find_spec("xllamacpp") is None:
            raise ImportError("xllamacpp is not installed")
        self.config = config
        self._dir = tempfile.mkdtemp(prefix="kb-llama-")
        os.chmod(self._dir, 0o700)
        self._socket = os.path.join(self._dir, "llama.sock")
        self._key = secrets.token_urlsafe(24)
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"}
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._closed = False
        try:
            self._launch()
            self.chat_template = str(self.get("/props").get("chat_template") or "")
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int | None:
        """The child process serving the model."""
        return self._process.pid if self._process else None

    def _launch(self) -> None:
        """Start the child and wait until it has loaded the model (or said why not, or died trying)."""
        if os.path.exists(self._socket):
            os.unlink(self._socket)
        spec = {
            "gguf": str(self.config.gguf),
            "context_per_slot": self.config.context_per_slot,
            "slots": self.config.slots,
            "threads": self.config.threads,
            "prompt_batch": PROMPT_BATCH,
            "cache_ram_mib": HOST_PROMPT_CACHE_MIB,
            "socket": self._socket,
            "api_key": self._key,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "kb.ml.llamacpp_child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._process = process
        try:
            process.stdin.write(json.dumps(spec) + "\n")
            process.stdin.flush()
        except BrokenPipeError:  # it died before reading: its exit says why
            pass
        line = process.stdout.readline()
        process.stdout.close()
        try:
            answer = json.loads(line) if line.strip() else {}
        except ValueError:
            answer = {"error": f"unexpected output from llama.cpp's process: {line[:200]!r}"}
        if answer.get("ready"):
            return
        if not answer:
            code = process.wait()
            hint = (
                "; a llama.cpp compiled for this machine may not run here: `kb engine build --force`"
                if code < 0
                else ""
            )
            answer = {"error": f"llama.cpp's process stopped while loading the model ({exit_cause(code)}){hint}"}
        self.close_child()
        raise LlamaServerError(str(answer.get("error")))

    def _running(self) -> None:
        """Start the child again if it died since the last request."""
        with self._lock:
            if self._closed:
                raise LlamaServerError(f"{self.config.gguf.name} was unloaded")
            process = self._process
            if process is not None and process.poll() is None:
                return
            if process is not None:
                log.error(
                    "llama.cpp's process for %s stopped (%s); loading the model again",
                    self.config.gguf.name,
                    exit_cause(process.returncode),
                )
                self.close_child()
            self._launch()  # after a failed start, each request tries again and reports why it failed

    def _stopped(self, exc: Exception) -> LlamaServerError:
        """The error for a request that could not reach llama.cpp: names the child's end if it died."""
        process = self._process
        if process is not None and process.poll() is not None:
            return LlamaServerError(f"llama.cpp's process stopped ({exit_cause(process.returncode)})")
        return LlamaServerError(f"llama.cpp is not answering ({exc})")

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        self._running()
        connection = _UnixConnection(self._socket, timeout=120)
        try:
            connection.request(method, path, json.dumps(body) if body is not None else None, self._headers)
            response = connection.getresponse()
            payload = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException) as exc:
            raise self._stopped(exc) from exc
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
        self._running()
        return ChunkStream(self._socket, self._headers, {**body, "stream": True})

    def busy_slots(self) -> int:
        """How many requests llama.cpp itself is working on right now (reading a prompt or decoding).

        Not for tight loops: each call wakes llama.cpp's waiting request handlers, which notice a closed
        client connection only when a 1-s wait runs out; polled faster, a cancel does not land.
        """
        return sum(1 for slot in self.get("/slots") if slot.get("is_processing"))

    def close_child(self) -> None:
        """End the child: it sees its stdin end and stops llama.cpp's loop (killed if it does not within 10 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Unload the model and remove the socket's folder."""
        self._closed = True
        self.close_child()
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


@atexit.register
def _unload_all() -> None:
    """At exit: end the children (they would end anyway when their stdin closes) and remove their socket folders."""
    with _loading:
        for server in _servers.values():
            server.close()
        _servers.clear()
