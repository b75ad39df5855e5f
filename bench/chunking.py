"""Chunking benchmark: CPU time and tokenizer calls of kb's chunker, and a hash of what it produced.

Every document of the SQuAD and CMRC kits and the messy documents is read with kb's readers, then
chunked with the bundled all-MiniLM-L6-v2 tokenizer counting through kb's own `count_tokens` (a
`BucketedEmbedder` around the tokenizer; no model is loaded). Each chunk setting prints CPU seconds,
chunks, tokenizer calls per chunk, millions of characters tokenized and a SHA-256 over every draft (q, page, heading, token_count), so
two versions of the chunker can be compared: same hash, same chunks.

    PYTHONPATH=. HF_HUB_OFFLINE=1 /work/main/.venv/bin/python bench/chunking.py [--settings 254:0.15,128:0] [--smoke]

`--smoke` chunks a few documents of each folder once, in seconds, so the test suite can tell that the
script still runs.

Point PYTHONPATH at another checkout to measure its chunker with this script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kb.config import Settings
from kb.errors import KBError
from kb.ingest.chunking import chunk_document
from kb.ingest.reading import read_document
from kb.ingest.types import ParsedDocument
from kb.ml.embedding import BucketedEmbedder
from kb.ml.loading import resolve_source
from kb.ml.registry import ModelRegistry

FOLDERS = ("squad_dev_kit/docs", "cmrc_dev_kit/docs", "messy_docs")
DEFAULT_SETTINGS = "254:0.15,128:0.15,512:0.15,254:0,128:0,512:0"


def shared_data() -> Path:
    for candidate in (
        os.environ.get("KB_SHARED_DATA"),
        Path(__file__).resolve().parents[2] / "shared" / "data",
        "/work/shared/data",
    ):
        if candidate and (Path(candidate) / FOLDERS[0]).is_dir():
            return Path(candidate)
    raise SystemExit("shared data not found: set KB_SHARED_DATA")


def documents(root: Path, per_folder: int | None = None) -> list[tuple[str, ParsedDocument]]:
    """Every readable document (or the first few of each folder), by name; the messy ones a reader refuses are
    skipped as ingestion would."""
    docs = []
    for folder in FOLDERS:
        for path in sorted((root / folder).iterdir())[:per_folder]:
            if not path.is_file() or path.name == "MANIFEST.md":  # the messy set's description, not a test document
                continue
            try:
                docs.append((f"{folder}/{path.name}", read_document(path.read_bytes(), path.name)))
            except KBError:
                continue
    return docs


class CallCounter:
    """Wraps a count function and counts how often it is called."""

    def __init__(self, count) -> None:
        self.count = count
        self.calls = 0
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        self.chars += len(text)
        return self.count(text)


def minilm_counter() -> BucketedEmbedder:
    from transformers import AutoTokenizer

    spec = next(s for s in ModelRegistry(Settings()).embedding_specs() if s.name == "minilm")
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(spec))
    return BucketedEmbedder(spec, variant="tokenizer-only", dim=384, max_tokens=256, tokenizer=tokenizer)


def run(docs, count_tokens, max_tokens: int, overlap: float) -> dict:
    counter = CallCounter(count_tokens)
    digest = hashlib.sha256()
    chunks = 0
    started = time.process_time()
    for name, doc in docs:
        drafts = chunk_document(doc, count_tokens=counter, max_tokens=max_tokens, overlap=overlap)
        chunks += len(drafts)
        for draft in drafts:
            digest.update(
                json.dumps([name, draft.q, draft.page, draft.heading, draft.token_count], ensure_ascii=False).encode()
            )
    cpu = time.process_time() - started
    return {"cpu": cpu, "chunks": chunks, "calls": counter.calls, "chars": counter.chars, "sha256": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="max_tokens:overlap pairs, comma separated")
    parser.add_argument("--smoke", action="store_true", help="a few documents, one setting, in seconds")
    args = parser.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # broken PDFs of the messy set warn as they are read
    docs = documents(shared_data(), per_folder=3 if args.smoke else None)
    if args.smoke:
        args.settings = args.settings.split(",")[0]
    embedder = minilm_counter()
    print(f"{len(docs)} documents; chunker from {Path(chunk_document.__code__.co_filename).resolve()}")
    print(
        f"{'max_tokens':>10} {'overlap':>7} {'chunks':>6} {'CPU-s':>6} {'chunks/CPU-s':>12} {'calls/chunk':>11} {'Mchars':>6}  sha256"
    )
    for setting in args.settings.split(","):
        max_tokens, overlap = int(setting.split(":")[0]), float(setting.split(":")[1])
        r = run(docs, embedder.count_tokens, max_tokens, overlap)
        print(
            f"{max_tokens:>10} {overlap:>7} {r['chunks']:>6} {r['cpu']:>6.2f} {r['chunks'] / r['cpu']:>12.0f}"
            f" {r['calls'] / r['chunks']:>11.2f} {r['chars'] / 1e6:>6.2f}  {r['sha256'][:16]}"
        )


if __name__ == "__main__":
    main()
