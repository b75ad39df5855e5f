"""Embedding benchmark: ingestion speed and retrieval quality of each embedder variant, in one run.

    PYTHONPATH=. HF_HUB_OFFLINE=1 /work/main/.venv/bin/python bench/embed.py

Each row runs in its own process (so peak RSS is its own, and no model of another row is loaded):

- `st-fp32 (baseline)`: the common setup — plain sentence-transformers `encode`, fp32, batches of 32,
  2 torch threads — plugged into kb as the `fp32` variant of `minilm`;
- one row per kb variant (`fp32`, `bf16`, `onnx-fp32`, `onnx-int8`; `--variants` picks).

A row creates a dataset, adds the SQuAD kit's 40 documents as uploads and lets kb's worker ingest
them (read, chunk, embed, store: chunks/s = chunks / worker seconds; the model is loaded and any ONNX
export built before the clock starts). Then the CMRC kit is ingested the same way, and every question
of both kits is asked through kb's search in vector and hybrid mode (bench/retrieval.py's
`run_modes`: hit@5 = one of the first 5 quotes contains a gold answer). "query p50" is the median
time of `embed_query` over the first 100 SQuAD questions, one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.retrieval import CACHE, KITS, fresh_database, load_questions, run_modes, shared_data  # noqa: E402
from kb.config import Settings  # noqa: E402
from kb.db import Database  # noqa: E402
from kb.ml.registry import ModelRegistry  # noqa: E402
from kb.runtime import Runtime  # noqa: E402
from kb.schemas import DatasetCreate  # noqa: E402
from kb.services import collections as collection_service  # noqa: E402
from kb.services import datasets as dataset_service  # noqa: E402
from kb.services.collections import Upload  # noqa: E402
from kb.worker import Worker  # noqa: E402

BASELINE = "st-fp32"
ROWS = (BASELINE, "bf16", "onnx-fp32", "onnx-int8")
THREADS = 2
BATCH = 32
MODES = ("vector", "hybrid")
QUERY_SAMPLE = 100


class PlainSentenceTransformer:
    """The common setup as an Embedder: `SentenceTransformer.encode`, fp32, batch 32, nothing else."""

    def __init__(self, registry: ModelRegistry):
        from sentence_transformers import SentenceTransformer

        from kb.ml.loading import resolve_source

        spec = next(s for s in registry.embedding_specs() if s.name == "minilm")
        self.model = SentenceTransformer(resolve_source(spec), device="cpu")
        self.name, self.variant = "minilm", "fp32"
        self.dim, self.max_tokens = self.model.get_embedding_dimension(), self.model.max_seq_length
        self.tokenizer = self.model.tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed_documents(self, texts, batch_size: int = BATCH) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def ingest_kit(rt: Runtime, kit: Path, variant: str) -> tuple[int, int, float]:
    """A new dataset holding the kit's documents, ingested by kb's worker: (dataset id, chunks, seconds)."""
    dataset = dataset_service.create_dataset(rt, DatasetCreate(name=kit.name, embed_model="minilm", embed_variant=variant))
    for path in sorted((kit / "docs").glob("*.md")):
        with path.open("rb") as handle:
            collection_service.add_file(rt, dataset.id, Upload(path.name, handle))
    started = time.perf_counter()
    Worker(rt).run_until_idle()
    seconds = time.perf_counter() - started
    record = dataset_service.get_dataset(rt, dataset.id)
    if record.status_counts != {"ready": record.collection_count}:
        raise SystemExit(f"{kit.name}: not every document became ready: {record.status_counts}")
    return dataset.id, record.chunk_count, seconds


def run_row(row: str) -> dict:
    """One row of the table, measured in this process."""
    import torch

    torch.set_num_threads(THREADS)
    url = fresh_database()
    settings = Settings(
        _env_file=None, database_url=url, data_dir=CACHE / "embed-data", torch_threads=THREADS,
        embed_model="minilm", log_level="WARNING",
    )
    db = Database(url)
    registry = ModelRegistry(settings)
    if row == BASELINE:
        registry.register_embedder("minilm", PlainSentenceTransformer(registry))
    embedder = registry.embedder("minilm", variant=None if row == BASELINE else row)
    embedder.embed_documents(["warm-up"] * BATCH)
    rt = Runtime(settings, db, registry)
    data = shared_data()
    result: dict = {"row": row, "variant": embedder.variant}
    squad_id, result["chunks"], seconds = ingest_kit(rt, data / "squad_dev_kit", embedder.variant)
    result["chunks/s"] = result["chunks"] / seconds
    questions = load_questions(data / "squad_dev_kit")[:QUERY_SAMPLE]
    latencies = []
    for question in questions:
        started = time.perf_counter()
        embedder.embed_query(question.question)
        latencies.append((time.perf_counter() - started) * 1000)
    result["query p50 ms"] = statistics.median(latencies)
    deps = SimpleNamespace(db=db, settings=settings, registry=registry)
    for kit in KITS:
        dataset_id = squad_id if kit == "squad_dev_kit" else ingest_kit(rt, data / kit, embedder.variant)[0]
        report = run_modes(deps, dataset_id, load_questions(data / kit), modes=MODES)
        for mode in MODES:
            result[f"{kit.split('_')[0]} {mode}"] = report[mode]["hit@5"]
    db.dispose()
    return result


def measure(row: str) -> dict:
    """Run one row in a child process; its peak RSS comes from the kernel when it exits."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", row], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"row {row} failed")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak RSS MB"] = usage.ru_maxrss / 1024
    return result


def print_table(results: list[dict]) -> None:
    base = next(r for r in results if r["row"] == BASELINE)
    quality = [k for k in base if k.startswith(("squad ", "cmrc "))]
    print("| variant | chunks/s | × fp32 | " + " | ".join(f"{k} hit@5" for k in quality) + " | query p50 ms | peak RSS MB |")
    print("|---" * (5 + len(quality)) + "|")
    for r in results:
        name = f"{r['row']} (baseline)" if r["row"] == BASELINE else r["row"]
        deltas = " | ".join(f"{r[k]:.3f} ({r[k] - base[k]:+.3f})" if r is not base else f"{r[k]:.3f}" for k in quality)
        print(
            f"| {name} | {r['chunks/s']:.1f} | {r['chunks/s'] / base['chunks/s']:.2f} | {deltas} "
            f"| {r['query p50 ms']:.1f} | {r['peak RSS MB']:.0f} |"
        )
    print(f"\n{base['chunks']} SQuAD chunks; hit@5 deltas are against the baseline's fp32 vectors; goal: ≥ 2.5× "
          "and no hit@5 more than 0.01 below.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(ROWS), help=f"comma-separated rows (default {','.join(ROWS)})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_row(args.child)))
        return
    rows = [row for row in args.variants.split(",") if row != BASELINE] + [BASELINE]  # the slowest last
    results = []
    for row in rows:
        results.append(measure(row))
        print(f"measured {row}: {results[-1]['chunks/s']:.1f} chunks/s", file=sys.stderr, flush=True)
    print_table(results[-1:] + results[:-1])


if __name__ == "__main__":
    main()
