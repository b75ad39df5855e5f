"""Embedding benchmark: ingestion speed and retrieval quality of each embedder variant, in one run.

    PYTHONPATH=. HF_HUB_OFFLINE=1 /work/main/.venv/bin/python bench/embed.py [--variants bf16,onnx-fp32,onnx-int8]

Rows: `st-fp32 (baseline)` is the common setup — plain sentence-transformers `encode`, fp32, batches
of 32, 2 torch threads, one document at a time — plugged into kb as the `fp32` variant of `minilm`;
then one row per kb variant asked for, ingested as kb does by default (`KB_WORKER_JOBS` sources at
once; `--variants fp32,...` shows what that alone is worth with the fp32 model). Each row runs in its own processes (so peak RSS is its own and no other model is
loaded), one process at a time:

1. ingest (timed, rows one after another): a dataset per kit; the SQuAD kit's 40 documents are added
   as uploads and kb's worker reads, chunks, embeds and stores them. chunks/s = chunks / worker
   seconds (model loaded and any ONNX export built before the clock starts); chunks/CPU-s divides by
   the CPU time the process used instead — on a machine shared with other work, wall-clock ratios move
   with everyone else's load, CPU time much less (it does count threads spinning while they wait).
   "query p50" is the median `embed_query` time over the first 100 SQuAD questions, one at a time.
   The CMRC kit is then ingested the same way (untimed).
2. quality: every question of both kits through kb's search in vector and hybrid mode
   (bench/retrieval.py's `run_modes`: hit@5 = one of the first 5 quotes contains a gold answer).

The table is saved under bench/.cache; `--report` prints the last run's table again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
from kb.db.engine import Database  # noqa: E402
from kb.ml.registry import ModelRegistry  # noqa: E402
from kb.runtime import Runtime  # noqa: E402
from kb.schemas import DatasetCreate  # noqa: E402
from kb.services import collections as collection_service  # noqa: E402
from kb.services import datasets as dataset_service  # noqa: E402
from kb.services.collections import Upload  # noqa: E402
from kb.worker.loop import Worker  # noqa: E402

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


def ingest_kit(rt: Runtime, kit: Path, row: str, variant: str, jobs: int) -> tuple[int, int, float, float]:
    """A new dataset holding the kit's documents, ingested by kb's worker: (dataset id, chunks, seconds, CPU seconds)."""
    dataset = dataset_service.create_dataset(
        rt, DatasetCreate(name=f"{kit.name}-{row}", embed_model="minilm", embed_variant=variant)
    )
    for path in sorted((kit / "docs").glob("*.md")):
        with path.open("rb") as handle:
            collection_service.add_file(rt, dataset.id, Upload(path.name, handle))
    started, cpu_started = time.perf_counter(), time.process_time()
    Worker(rt, jobs=jobs).run_until_idle()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    record = dataset_service.get_dataset(rt, dataset.id)
    if record.status_counts != {"ready": record.collection_count}:
        raise SystemExit(f"{kit.name}: not every document became ready: {record.status_counts}")
    return dataset.id, record.chunk_count, seconds, cpu_seconds


def row_runtime(row: str, url: str):
    """Settings, database, registry and the row's embedder, loaded (and any ONNX export built) up front."""
    import torch

    torch.set_num_threads(THREADS)
    settings = Settings(
        _env_file=None,
        database_url=url,
        data_dir=CACHE / "embed-data",
        torch_threads=THREADS,
        embed_model="minilm",
        log_level="WARNING",
    )
    registry = ModelRegistry(settings)
    if row == BASELINE:
        registry.register_embedder(PlainSentenceTransformer(registry))
    embedder = registry.embedder("minilm", variant=None if row == BASELINE else row)
    embedder.embed_documents(["warm-up"] * BATCH)
    return Runtime(settings, Database(url), registry), embedder


def ingest_row(row: str, url: str) -> dict:
    """The timed part of a row: both kits ingested (SQuAD timed), then single-query latency."""
    rt, embedder = row_runtime(row, url)
    data = shared_data()
    jobs = 1 if row == BASELINE else rt.settings.worker_jobs
    result: dict = {"row": row, "variant": embedder.variant, "jobs": jobs}
    _, result["chunks"], seconds, cpu_seconds = ingest_kit(rt, data / "squad_dev_kit", row, embedder.variant, jobs)
    result["chunks/s"], result["chunks/CPU-s"] = result["chunks"] / seconds, result["chunks"] / cpu_seconds
    latencies = []
    for question in load_questions(data / "squad_dev_kit")[:QUERY_SAMPLE]:
        started = time.perf_counter()
        embedder.embed_query(question.question)
        latencies.append((time.perf_counter() - started) * 1000)
    result["query p50 ms"] = statistics.median(latencies)
    result["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ingest_kit(rt, data / "cmrc_dev_kit", row, embedder.variant, jobs)
    rt.db.dispose()
    return result


def quality_row(row: str, url: str) -> dict:
    """hit@5 of the row's datasets, every question of both kits through kb's search, per mode."""
    rt, _ = row_runtime(row, url)
    deps = SimpleNamespace(db=rt.db, settings=rt.settings, registry=rt.registry)
    result: dict = {}
    for kit in KITS:
        dataset = dataset_service.find_dataset(rt, f"{kit}-{row}")
        report = run_modes(deps, dataset.id, load_questions(shared_data() / kit), modes=MODES)
        for mode in MODES:
            result[f"{kit.split('_')[0]} {mode}"] = report[mode]["hit@5"]
    rt.db.dispose()
    return result


def child(phase: str, row: str, url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--phase", phase, "--row", row, "--url", url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )


def result_of(process: subprocess.Popen) -> dict:
    output = process.stdout.read()
    if process.wait() != 0:
        raise SystemExit(f"{process.args[3:6]} failed")
    return json.loads(output.strip().splitlines()[-1])


def print_table(results: list[dict]) -> None:
    base = next(r for r in results if r["row"] == BASELINE)
    quality = [k for k in base if k.startswith(("squad ", "cmrc "))]
    print(
        "| variant | jobs | chunks/s | × fp32 | chunks/CPU-s | × fp32 | "
        + " | ".join(f"{k} hit@5" for k in quality)
        + " | query p50 ms | peak RSS MB |"
    )
    print("|---" * (8 + len(quality)) + "|")
    for r in results:
        name = f"{r['row']} (baseline)" if r["row"] == BASELINE else r["row"]
        deltas = " | ".join(f"{r[k]:.3f} ({r[k] - base[k]:+.3f})" if r is not base else f"{r[k]:.3f}" for k in quality)
        print(
            f"| {name} | {r.get('jobs', 1)} | {r['chunks/s']:.1f} | {r['chunks/s'] / base['chunks/s']:.2f} "
            f"| {r['chunks/CPU-s']:.1f} | {r['chunks/CPU-s'] / base['chunks/CPU-s']:.2f} | {deltas} "
            f"| {r['query p50 ms']:.1f} | {r['peak RSS MB']:.0f} |"
        )
    print(
        f"\n{base['chunks']} SQuAD chunks; hit@5 deltas are against the baseline's fp32 vectors; goal: ≥ 2.5× "
        "and no hit@5 more than 0.01 below."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants", default=",".join(ROWS[1:]), help=f"comma-separated kb variants (default {','.join(ROWS[1:])})"
    )
    parser.add_argument(
        "--report", action="store_true", help="print the last run's table again (saved in bench/.cache)"
    )
    parser.add_argument("--phase", choices=("ingest", "quality"), help=argparse.SUPPRESS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps((ingest_row if args.phase == "ingest" else quality_row)(args.row, args.url)))
        return
    saved = CACHE / "embed-results.json"
    if args.report:
        print_table(json.loads(saved.read_text(encoding="utf-8")))
        return
    rows = [row for row in args.variants.split(",") if row != BASELINE] + [BASELINE]  # the slowest last
    url = fresh_database()
    results = []
    for row in rows:  # one at a time: these are the timings
        results.append(result_of(child("ingest", row, url)))
        print(f"ingested with {row}: {results[-1]['chunks/s']:.1f} chunks/s", file=sys.stderr, flush=True)
    for result in results:  # quality does not depend on load, but the machine is shared: one at a time too
        result.update(result_of(child("quality", result["row"], url)))
    results = results[-1:] + results[:-1]
    saved.write_text(json.dumps(results), encoding="utf-8")
    print_table(results)


if __name__ == "__main__":
    main()
