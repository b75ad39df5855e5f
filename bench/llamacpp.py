"""The llama.cpp engine as kb serves it: load time, first token of a 5-quote RAG prompt (cold and with the
prompt cache), two chats at once on 1 slot vs 2 slots, how soon a cancelled prefill frees the CPU, and the
first token of a conversation's second turn after another conversation took the one slot, with llama.cpp's
host prompt cache at kb's size and, as the baseline in the same run, turned off.

    PYTHONPATH=. .venv/bin/python bench/llamacpp.py --gguf FILE [--threads 2] [--tokens 48] [--smoke]

Every figure goes through kb's ChatModel (kb/ml/llamacpp.py), as the gateway calls it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import GGUF, shared_data

from kb.config import Settings
from kb.ml import llamacpp_server
from kb.ml.registry import ModelRegistry
from kb.ml.types import Completion, GenerationCancelled, GenerationParams, StreamDelta


def five_quotes(tag: str) -> list[dict]:
    """Five numbered paragraphs of one article and a question, as kb's answers prompt; `tag` defeats the cache."""
    data = shared_data()
    if data:
        question = json.loads((data / "squad_dev_kit" / "questions.jsonl").read_text().splitlines()[0])
        blocks = (data / "squad_dev_kit" / "docs" / question["doc"]).read_text().split("\n\n")[1:6]
        text = question["question"]
    else:
        blocks = [f"Paragraph {i}: the alpine valley holds {i} villages and {i * 3} farms. " * 8 for i in range(5)]
        text = "How many villages are in the valley?"
    quotes = "\n\n".join(f"[{n}] {block.strip()}" for n, block in enumerate(blocks, 1))
    system = f"({tag}) Answer the question using only the quotes below. Cite quotes by number.\n\n{quotes}"
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def load(gguf: str, slots: int, threads: int, data_dir: Path, name: str = ""):
    name = name or f"q{slots}"
    models = data_dir / f"models-{name}.json"
    models.write_text(json.dumps({"chat": [{"name": name, "path": gguf, "slots": slots}]}))
    began = time.perf_counter()
    model = ModelRegistry(Settings(_env_file=None, data_dir=data_dir, models_file=models, torch_threads=threads)).chat(
        name
    )
    return model, time.perf_counter() - began


def timed_answer(model, messages: list[dict], tokens: int, out: dict, key: str) -> None:
    began, first = time.perf_counter(), None
    for item in model.stream(messages, GenerationParams(temperature=0, max_tokens=tokens)):
        if first is None and isinstance(item, StreamDelta):
            first = time.perf_counter() - began
        if isinstance(item, Completion):
            out[key] = {
                "ttft_s": round(first or 0, 2),
                "done_s": round(time.perf_counter() - began, 2),
                "prompt_tokens": item.prompt_tokens,
                "new_tokens": item.completion_tokens,
            }


def two_at_once(model, tokens: int, tag: str) -> dict:
    out: dict = {}
    began = time.perf_counter()
    chats = [
        threading.Thread(target=timed_answer, args=(model, five_quotes(f"{tag}-{i}"), tokens, out, f"chat{i}"))
        for i in (1, 2)
    ]
    for chat in chats:
        chat.start()
        time.sleep(0.2)  # the first asks first
    for chat in chats:
        chat.join()
    return {**out, "wall_s": round(time.perf_counter() - began, 2)}


def cpu_seconds() -> float:
    """CPU time of this process and its children: llama.cpp computes in a child process (kb.ml.llamacpp_child)."""
    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def cancel_to_idle(model, after_s: float) -> float:
    """Cancel a cold 5-quote request `after_s` into its prefill; seconds until the CPU (ours and llama.cpp's) goes idle."""
    cancel = threading.Event()

    def ask():
        try:
            list(model.stream(five_quotes(f"cancel-{time.time()}"), GenerationParams(max_tokens=32), cancel))
        except GenerationCancelled:
            pass

    threading.Thread(target=ask).start()
    time.sleep(after_s)
    cancel.set()
    cancelled_at = time.perf_counter()
    while True:  # idle = under 5% of one core over half a second (no HTTP polling: it would delay the cancel)
        cpu = cpu_seconds()
        time.sleep(0.5)
        if cpu_seconds() - cpu < 0.025:
            return round(time.perf_counter() - cancelled_at - 0.5, 1)


def returning(model, tokens: int, tag: str) -> dict:
    """Conversation A, then B on the same slot, then A's second turn: does A's prompt have to be read again?"""
    out: dict = {}
    first = five_quotes(f"{tag}-A")
    timed_answer(model, first, tokens, out, "A, turn 1")
    timed_answer(model, five_quotes(f"{tag}-B"), tokens, out, "B, turn 1")
    follow_up = [*first, {"role": "assistant", "content": "See quote [1]."}, {"role": "user", "content": "Why?"}]
    timed_answer(model, follow_up, tokens, out, "A, turn 2")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", default=GGUF)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument(
        "--smoke", action="store_true", help="load time, one answer and a returning conversation, 4 tokens each"
    )
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="kb-bench-llamacpp-"))
    one, load_s = load(args.gguf, 1, args.threads, data_dir)
    report: dict = {"load_s": round(load_s, 2), "load_avg_start": round(os.getloadavg()[0], 1)}
    out: dict = {}
    tokens = 4 if args.smoke else args.tokens
    for key in ("cold", "cached") if not args.smoke else ("cold",):
        timed_answer(one, five_quotes("first"), tokens, out, key)
    report["rag_5_quotes"] = out
    if not args.smoke:
        report["cancel_to_idle_s"] = cancel_to_idle(one, after_s=1.0)
        report["two_chats_1_slot"] = two_at_once(one, args.tokens, "one-slot")
        two, _ = load(args.gguf, 2, args.threads, data_dir)
        report["two_chats_2_slots"] = two_at_once(two, args.tokens, "two-slots")
    report[f"returning_cache_{llamacpp_server.HOST_PROMPT_CACHE_MIB}_mib"] = returning(one, tokens, "cache")
    llamacpp_server._unload_all()
    llamacpp_server.HOST_PROMPT_CACHE_MIB = 0
    no_cache, _ = load(args.gguf, 1, args.threads, data_dir, "q1-no-cache")  # a new server
    report["returning_cache_off"] = returning(no_cache, tokens, "no-cache")
    report["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
