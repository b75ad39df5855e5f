"""QA split benchmark: the question/answer pairs a chat model writes for dev-kit chunks, and whether the chunk holds the answer.

    PYTHONPATH=. python bench/qagen.py                                   # configured default model + smollm2
    PYTHONPATH=. python bench/qagen.py --model qwen2.5-coder-1.5b,qwen2.5-coder-0.5b --n 15
    PYTHONPATH=. python bench/qagen.py --smoke                            # 1 chunk per kit, smollm2 only

Chunks: every document of shared/data/squad_dev_kit and cmrc_dev_kit is read and cut by kb's own reader
and chunker with a dataset's default chunk settings fitted to the default embedder's window (as ingestion
does; the embedder is loaded as its fp32 variant, which counts tokens with the same tokenizer as the
default ONNX one without building the ONNX model). `--n` chunks per kit are drawn with a fixed seed, so
every model sees the same chunks. Each model then writes pairs through `kb.ingest.qagen.generate_qa_pairs`,
the function QA-split ingestion calls, with the default `qa_max_pairs`.

Per kit and model it reports:

- pairs and pairs per chunk; the share of chunks with no usable pair (the parser found none);
- **strict support**: the answer, normalised, occurs in the chunk normalised, not inside a longer Latin
  word or number, and has at least one content token (below: a bare "No" or "是" is in every chunk). Normalised = NFKC,
  case-folded, every run of characters that are not letters or digits made one space, and spaces next to
  a CJK character dropped (Chinese has no spaces between words, so "1974 年" and "1974年" compare equal);
- **lenient support**: at least 80% of the answer's content tokens occur in the chunk. Tokens are Latin
  or digit words (case-folded, English stop words dropped) and single CJK characters (a few function
  characters such as 的 了 是 dropped); an answer with no content token is unsupported. This admits
  paraphrases and answers stitched from two places in the chunk, and still rejects outside knowledge;
- question = answer: pairs whose question, normalised, is their answer (a sentence of the chunk written
  twice); they count as supported, so read this beside the two support shares;
- Chinese chunks answered in Chinese: of the Chinese chunks that gave pairs, the share whose every pair
  (question and answer) `kb.ingest.qa.detect_language` reads as Chinese;
- mean seconds per chunk (generation only; the model is loaded and warmed up before the clock starts).

`--out FILE` writes every chunk's pairs, verdicts and seconds as JSON lines, to read what a model wrote;
`--rescore FILE` prints the table of such a file again with the verdicts recomputed (no model runs).
Support says only that the chunk holds the answer, not that the answer fits its question.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.retrieval import shared_data  # noqa: E402
from kb.config import Settings  # noqa: E402
from kb.ingest.chunking import chunk_document  # noqa: E402
from kb.ingest.qa import detect_language  # noqa: E402
from kb.ingest.qagen import generate_qa_pairs  # noqa: E402
from kb.ingest.reading import read_document  # noqa: E402
from kb.ingest.types import ChunkDraft  # noqa: E402
from kb.ml.registry import get_registry  # noqa: E402
from kb.ml.types import GenerationParams  # noqa: E402
from kb.schemas import ChunkSettings  # noqa: E402
from kb.services.datasets import fit_chunk_settings  # noqa: E402

KITS = ("squad_dev_kit", "cmrc_dev_kit")
LENIENT_SHARE = 0.8
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_NOT_WORD = re.compile(r"[\W_]+")
_SPACE_BY_CJK = re.compile(rf"(?<=[{_CJK}]) | (?=[{_CJK}])")
_EN_STOP_WORDS = (
    "a an the of in on at to for from by with and or but is are was were be been being it its this that these "
    "those as which who whom what when where why how there their they he she his her them than then so not no "
    "do does did has have had can could would should will may might also into about over after before"
)
_EN_STOP = set(_EN_STOP_WORDS.split())
_ZH_STOP = set("的了是在和与及或也都而之其这那个有为于")


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation runs as one space, no spaces next to CJK characters."""
    text = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return _SPACE_BY_CJK.sub("", text)


def content_tokens(text: str) -> list[str]:
    tokens = _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())
    return [t for t in tokens if t not in _EN_STOP and t not in _ZH_STOP]


def strictly_supported(answer: str, chunk: str) -> bool:
    """The normalised answer occurs in the normalised chunk, not inside a longer Latin word or number.

    An answer without a content token ("No", "是") is never supported: it occurs in almost any chunk.
    """
    needle = normalise(answer)
    if not needle or not content_tokens(answer):
        return False
    left = "" if _CJK_CHAR.match(needle[0]) else r"(?<![^\W_" + _CJK + "])"
    right = "" if _CJK_CHAR.match(needle[-1]) else r"(?![^\W_" + _CJK + "])"
    return re.search(left + re.escape(needle) + right, normalise(chunk)) is not None


def token_coverage(answer: str, chunk: str) -> float:
    """Share of the answer's content tokens that occur in the chunk (0 for an answer with none)."""
    tokens = content_tokens(answer)
    if not tokens:
        return 0.0
    present = set(content_tokens(chunk))
    return sum(t in present for t in tokens) / len(tokens)


def all_chinese(pairs: list[tuple[str, str]]) -> bool:
    return all(detect_language(f"{q}\n{a}") == "zh" for q, a in pairs)


def sample_chunks(
    root: Path, kit: str, n: int, seed: int, count_tokens, chunking: dict
) -> list[tuple[str, ChunkDraft]]:
    """`n` chunks of the kit's documents, drawn with a fixed seed, as (document name, draft)."""
    drafts = []
    for path in sorted((root / kit / "docs").glob("*.md")):
        doc = read_document(path.read_bytes(), path.name)
        cut = chunk_document(
            doc,
            count_tokens=count_tokens,
            max_tokens=chunking["max_tokens"],
            overlap=chunking["overlap"],
            separators=chunking["separators"],
        )
        drafts.extend((path.name, d) for d in cut if d.kind != "qa")
    return random.Random(seed).sample(drafts, min(n, len(drafts)))


def is_echo(question: str, answer: str) -> bool:
    """A 'pair' whose question is the answer itself (a passage sentence copied twice): supported, but useless."""
    return normalise(question) == normalise(answer)


@dataclass
class KitResult:
    kit: str
    model: str
    chunks: int = 0
    pairs: int = 0
    empty_chunks: int = 0
    strict: int = 0
    lenient: int = 0
    echoes: int = 0
    zh_chunks_with_pairs: int = 0
    zh_answered_in_zh: int = 0
    seconds: float = 0.0

    def add(self, record: dict) -> None:
        """Count one chunk's record (as written to --out)."""
        pairs = record["pairs"]
        self.chunks += 1
        self.seconds += record["seconds"]
        self.pairs += len(pairs)
        self.empty_chunks += not pairs
        self.strict += sum(p["strict"] for p in pairs)
        self.lenient += sum(p["strict"] or p["coverage"] >= LENIENT_SHARE for p in pairs)
        self.echoes += sum(p["echo"] for p in pairs)
        if pairs and detect_language(record["chunk"]) == "zh":
            self.zh_chunks_with_pairs += 1
            self.zh_answered_in_zh += all_chinese([(p["q"], p["a"]) for p in pairs])

    def row(self) -> str:
        share = lambda part, whole: f"{part / whole:.0%}" if whole else "–"  # noqa: E731
        return (
            f"| {self.model} | {self.kit} | {self.chunks} | {self.pairs} | {self.pairs / max(self.chunks, 1):.2f}"
            f" | {share(self.empty_chunks, self.chunks)} | {share(self.strict, self.pairs)}"
            f" | {share(self.lenient, self.pairs)} | {share(self.echoes, self.pairs)}"
            f" | {share(self.zh_answered_in_zh, self.zh_chunks_with_pairs)} | {self.seconds / max(self.chunks, 1):.1f} |"
        )


HEADER = (
    "| model | kit | chunks | pairs | pairs/chunk | chunks without pairs | strict support | lenient support (≥80%)"
    " | question = answer | zh chunks answered in zh | s/chunk |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def pair_record(question: str, answer: str, chunk: str) -> dict:
    coverage = round(token_coverage(answer, chunk), 2)
    strict = strictly_supported(answer, chunk)
    return {"q": question, "a": answer, "strict": strict, "coverage": coverage, "echo": is_echo(question, answer)}


def run_kit(chat, kit: str, sample: list[tuple[str, ChunkDraft]], max_pairs: int) -> list[dict]:
    """One record per chunk: its pairs with their verdicts, and the seconds the model took on it."""
    lap = [time.perf_counter()]
    seconds: list[float] = []

    def on_chunk(done: int, total: int) -> None:
        seconds.append(time.perf_counter() - lap[0])
        lap[0] = time.perf_counter()

    outcome = generate_qa_pairs(chat, [d for _, d in sample], max_pairs=max_pairs, on_chunk=on_chunk)
    if outcome.no_pair_reasons:
        print(f"  {chat.name} {kit}: no pairs because {dict(outcome.no_pair_reasons)}", flush=True)
    return [
        {
            "model": chat.name,
            "kit": kit,
            "doc": doc,
            "chunk": draft.q,
            "seconds": round(took, 2),
            "pairs": [pair_record(q, a, draft.q) for q, a in pairs],
        }
        for (doc, draft), pairs, took in zip(sample, outcome.pairs, seconds, strict=True)
    ]


def table(records: list[dict]) -> list[KitResult]:
    results: dict[tuple[str, str], KitResult] = {}
    for record in records:
        key = (record["model"], record["kit"])
        results.setdefault(key, KitResult(kit=record["kit"], model=record["model"])).add(record)
    return list(results.values())


def load_chat(registry, name: str):
    started = time.perf_counter()
    chat = registry.chat(name)
    chat.generate([{"role": "user", "content": "Hi"}], GenerationParams(max_tokens=1, temperature=0.0))
    print(f"{name}: loaded and warmed up in {time.perf_counter() - started:.1f} s", flush=True)
    return chat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="chat models, comma separated (default: the configured default)")
    parser.add_argument("--baseline", default="smollm2", help="measured on the same chunks ('' for none)")
    parser.add_argument("--n", type=int, default=30, help="chunks per kit")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--kits", default=",".join(KITS))
    parser.add_argument("--out", type=Path, help="write every chunk's pairs and verdicts here (JSON lines)")
    parser.add_argument("--rescore", type=Path, help="print the table of an --out file again, verdicts recomputed")
    parser.add_argument("--smoke", action="store_true", help="1 chunk per kit with the small baseline model only")
    args = parser.parse_args()
    if args.rescore:
        print_table([rescored(json.loads(line)) for line in args.rescore.read_text(encoding="utf-8").splitlines()])
        return
    settings = Settings()
    registry = get_registry(settings)
    names = (args.model or settings.chat_model).split(",")
    if args.baseline and args.baseline not in names:
        names.append(args.baseline)
    if args.smoke:
        names, args.n = [args.baseline or "smollm2"], 1
    chunk_settings = ChunkSettings()
    embedder = registry.embedder(variant="fp32")
    chunking = fit_chunk_settings(chunk_settings, embedder)
    root = shared_data()
    samples = {
        kit: sample_chunks(root, kit, args.n, args.seed, embedder.count_tokens, chunking)
        for kit in args.kits.split(",")
    }
    print(f"chunks of ≤{chunking['max_tokens']} {embedder.name} tokens; {args.n} per kit, seed {args.seed}", flush=True)
    records: list[dict] = []
    with args.out.open("w", encoding="utf-8") if args.out else open(os.devnull, "w") as out:
        for name in names:
            chat = load_chat(registry, name)
            for kit, sample in samples.items():
                done = run_kit(chat, kit, sample, chunk_settings.qa_max_pairs)
                out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in done)
                out.flush()
                records.extend(done)
                print(table(records)[-1].row(), flush=True)
    print_table(records)


def rescored(record: dict) -> dict:
    """A record of --out with its verdicts made again by today's definitions."""
    pairs = [pair_record(p["q"], p["a"], record["chunk"]) for p in record["pairs"]]
    return {**record, "seconds": record.get("seconds", 0.0), "pairs": pairs}


def print_table(records: list[dict]) -> None:
    print("\n" + HEADER)
    for result in table(records):
        print(result.row())


if __name__ == "__main__":
    main()
