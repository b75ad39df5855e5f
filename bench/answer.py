"""Answer benchmark: questions from the QA kits answered through kb's own app path with the bundled models.

    PYTHONPATH=. python bench/answer.py                      # 100 squad + 100 cmrc questions
    PYTHONPATH=. python bench/answer.py --kits squad_dev_kit --n 20

For each kit it ingests every document of the kit through kb's own path (collections queued, the
worker reads, chunks and embeds them) into a database kept under bench/.cache (reused by later runs;
`--rebuild` starts over), creates an app over it with the default search settings, and asks `--n`
questions drawn with a fixed seed through `kb.services.answering.ask_app` (retrieval, quote prompt,
streaming generation). It reports:

- answer hit: the reply contains one of the gold answers (case-insensitive, whitespace normalised; for
  Chinese the same plain substring match);
- answer hit, official normalisation: the same after the kits' own evaluation scripts' normalisation (punctuation,
  spaces and English articles dropped), reported beside answer hit, not instead of it;
- cited hit: the reply cites a quote ([n]) whose text contains a gold answer, split by who wrote the
  [n]: the model itself (explicit) or kb, for an uncited answer copied from one quote (attributed,
  `cited_by == "kb"`, see kb.rag.citations), and the two combined;
- context hit: one of the quotes shown to the model contains a gold answer (the ceiling for the above);
- gold recall: the share of the gold answer's characters (punctuation and spaces dropped) that the reply holds in
  order, their longest common subsequence, best over the golds and averaged; CMRC 2018's evaluation script scores
  answers with this LCS, and it credits a reply that restates a whole-sentence gold in other order or words only
  for what it kept (reported beside answer hit, not instead of it);
- not-found replies, mean prompt tokens, time to first token p50 and total latency p50 / p95 (both
  from the start of the request, after one warm-up search so no model loading is counted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from bench.retrieval import CACHE, load_questions, shared_data  # noqa: E402
from kb.config import Settings  # noqa: E402
from kb.db.engine import Database, libpq_url, sqlalchemy_url, start_embedded_server  # noqa: E402
from kb.db.migrate import upgrade  # noqa: E402
from kb.errors import KBError  # noqa: E402
from kb.ml.registry import get_registry  # noqa: E402
from kb.ml.types import GenerationParams  # noqa: E402
from kb.runtime import Runtime  # noqa: E402
from kb.schemas import DatasetCreate  # noqa: E402
from kb.services.answering import AppQuestion, FinishedAnswer, ask_app, dataset_retriever  # noqa: E402
from kb.services.apps import AppCreate, AppUpdate, create_app_record, find_app, search_settings_of, update_app  # noqa: E402
from kb.services.collections import add_text  # noqa: E402
from kb.services.datasets import create_dataset, find_dataset  # noqa: E402
from kb.worker.kinds import recover_stale_jobs  # noqa: E402
from kb.worker.loop import Worker  # noqa: E402

KITS = ("squad_dev_kit", "cmrc_dev_kit")
DATABASE = "kb_bench_answer"


def bench_database(rebuild: bool) -> str:
    """The benchmark's migrated database on KB_BENCH_DATABASE_URL's server or an embedded one under bench/.cache."""
    server_url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded_server(CACHE / "pg").get_uri()
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        if rebuild:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = sqlalchemy_url(make_url(libpq_url(server_url)).set(database=DATABASE).render_as_string(hide_password=False))
    upgrade(url)
    return url


def kit_dataset(rt: Runtime, kit: Path) -> int:
    """The kit's dataset, ingested through kb's collections and worker (sources already there are not redone)."""
    dataset = find_dataset(rt, kit.name) or create_dataset(rt, DatasetCreate(name=kit.name))
    for doc in sorted((kit / "docs").glob("*.md")):
        add_text(rt, dataset.id, name=doc.name, text=doc.read_text(encoding="utf-8"))
    started = time.perf_counter()
    recover_stale_jobs(rt)  # a run stopped halfway left its job claimed
    jobs = Worker(rt).run_until_idle()
    if jobs:
        print(f"{kit.name}: ingested {jobs} documents in {time.perf_counter() - started:.0f} s", flush=True)
    return dataset.id


def kit_app(rt: Runtime, name: str, dataset_id: int, search: dict):
    """The kit's app with these search settings (created, or updated to them)."""
    try:
        app = find_app(rt, name)
    except KBError:
        return create_app_record(rt, AppCreate(name=name, dataset_ids=[dataset_id], search=search))
    return update_app(rt, app.id, AppUpdate(dataset_ids=[dataset_id], search=search))


@dataclass
class Row:
    doc: str
    question: str
    answers: list[str]
    reply: str
    cited_by: str | None
    answer_hit: bool
    official_hit: bool
    gold_recall: float
    cited_hit: bool
    model_cited_hit: bool  # with the numbers the model wrote, before kb re-pointed any (kb.rag.citations)
    corrected_citations: list
    context_hit: bool
    not_found: bool
    prompt_tokens: int
    first_token_ms: float | None
    total_ms: float
    shown: list[str]  # the quotes as the model saw them, in number order (for reading the misses)


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def contains(text: str, answers: list[str]) -> bool:
    """One of the gold answers appears in the text (case-insensitive, whitespace normalised)."""
    haystack = normalised(text)
    return any(normalised(answer) in haystack for answer in answers)


PUNCTUATION = re.compile(r"[\W_]+", re.UNICODE)
ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def official_form(text: str) -> str:
    """The kits' own evaluation normalisation: lower case, punctuation and spaces dropped (SQuAD's and CMRC 2018's
    scripts), English articles dropped (SQuAD's)."""
    return PUNCTUATION.sub("", ARTICLES.sub(" ", PUNCTUATION.sub(" ", text.lower())))


def official_hit(text: str, answers: list[str]) -> bool:
    """A gold answer appears in the reply once both are in `official_form` ("a galero." in "called a galero when")."""
    haystack = official_form(text)
    return any(form and form in haystack for form in map(official_form, answers))


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings (one row of the table at a time)."""
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if char == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def gold_recall(reply: str, answers: list[str]) -> float:
    """The best share of a gold answer's characters that the reply holds in order (punctuation ignored)."""
    text = PUNCTUATION.sub("", reply.lower())
    golds = [PUNCTUATION.sub("", answer.lower()) for answer in answers]
    return max((lcs_length(gold, text) / len(gold) for gold in golds if gold), default=0.0)


def ask_one(rt: Runtime, app, question, params: GenerationParams) -> Row:
    started = time.perf_counter()
    finished = None
    for item in ask_app(rt, app, AppQuestion(question.question, []), params=params, source="bench"):
        if isinstance(item, FinishedAnswer):
            finished = item
    answer = finished.answer
    cited = [q for q in answer.quotes if q.cited]
    shown = {n for _, numbers in answer.corrected_citations for n in numbers}
    written = {n for numbers, _ in answer.corrected_citations for n in numbers}
    model_cited = (set(answer.cited) - shown) | written if answer.cited_by == "model" else set(answer.cited)
    return Row(
        doc=question.doc,
        question=question.question,
        answers=question.answers,
        reply=answer.text,
        cited_by=answer.cited_by,
        answer_hit=contains(answer.text, question.answers),
        official_hit=official_hit(answer.text, question.answers),
        gold_recall=gold_recall(answer.text, question.answers),
        cited_hit=any(contains(q.text, question.answers) for q in cited),
        model_cited_hit=any(contains(q.text, question.answers) for q in answer.quotes if q.number in model_cited),
        corrected_citations=answer.corrected_citations,
        context_hit=any(contains(q.text, question.answers) for q in answer.quotes),
        not_found=answer.not_found,
        prompt_tokens=answer.usage.prompt_tokens,
        first_token_ms=answer.timings.first_token_ms,
        total_ms=(time.perf_counter() - started) * 1000,
        shown=[q.text for q in answer.quotes],
    )


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else None


def summary(rows: list[Row]) -> dict:
    n = len(rows)
    first = [r.first_token_ms / 1000 for r in rows if r.first_token_ms is not None]
    total = [r.total_ms / 1000 for r in rows]
    explicit = sum(r.cited_hit and r.cited_by == "model" for r in rows)
    attributed = sum(r.cited_hit and r.cited_by == "kb" for r in rows)
    return {
        "questions": n,
        "answer hit": sum(r.answer_hit for r in rows) / n,
        "answer hit, official normalisation": sum(r.official_hit for r in rows) / n,
        "gold recall mean": round(statistics.mean(r.gold_recall for r in rows), 3),
        "cited hit explicit": explicit / n,
        "cited hit attributed": attributed / n,
        "cited hit combined": (explicit + attributed) / n,
        "cited hit, the model's own numbers": sum(r.model_cited_hit for r in rows) / n,
        "replies with a citation re-pointed": sum(bool(r.corrected_citations) for r in rows),
        "context hit": sum(r.context_hit for r in rows) / n,
        "not found": sum(r.not_found for r in rows),
        "prompt tokens mean": round(statistics.mean(r.prompt_tokens for r in rows)),
        "first token p50 s": percentile(first, 0.5),
        "total p50 s": percentile(total, 0.5),
        "total p95 s": percentile(total, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kits", default=",".join(KITS), help="comma-separated kit folders in shared/data")
    parser.add_argument("--n", type=int, default=100, help="questions per kit")
    parser.add_argument("--seed", type=int, default=6, help="seed for drawing the questions")
    parser.add_argument("--max-tokens", type=int, default=128, help="longest answer")
    parser.add_argument(
        "--search", type=json.loads, default={}, help="app search settings as JSON, e.g. '{\"limit\": 3}'"
    )
    parser.add_argument(
        "--copy-bias",
        type=json.loads,
        default=None,
        help="try another copy bias than the chat model's own, by language, e.g. '{\"en\": 1, \"zh\": 3}' or '{}' for none",
    )
    parser.add_argument("--rebuild", action="store_true", help="ingest the kits again into a fresh database")
    parser.add_argument("--out", type=Path, default=None, help="write every reply as JSON lines here")
    args = parser.parse_args()

    url = bench_database(args.rebuild)
    settings = Settings(_env_file=None, database_url=url, data_dir=CACHE / "data")
    rt = Runtime(settings, Database(url), get_registry(settings))
    chat, embedder = rt.registry.chat(), rt.registry.embedder()
    if args.copy_bias is not None:
        rt.registry.chat_spec().copy_bias = args.copy_bias  # this run only: the spec the app path reads
    print(f"copy bias: {rt.registry.chat_spec().copy_bias}")
    print(f"chat model: {chat.name} (context {chat.context_length}); embedder: {embedder.name}; seed {args.seed}")
    params = GenerationParams(temperature=0.0, max_tokens=args.max_tokens)
    report = {}
    for kit_name in args.kits.split(","):
        kit = shared_data() / kit_name
        app = kit_app(rt, kit_name, kit_dataset(rt, kit), args.search)
        questions = random.Random(args.seed).sample(load_questions(kit), args.n)
        dataset_retriever(rt, app.dataset_ids, search_settings_of(app))(questions[0].question)  # loads the embedder
        rows = []
        for index, question in enumerate(questions, 1):
            row = ask_one(rt, app, question, params)
            rows.append(row)
            print(
                f"{kit_name} {index}/{args.n} hit={int(row.answer_hit)} cited={int(row.cited_hit)}"
                f"({row.cited_by or '-'}) context={int(row.context_hit)} {row.reply[:80]!r}",
                flush=True,
            )
        if args.out:
            with args.out.open("a", encoding="utf-8") as out:
                out.writelines(json.dumps({"kit": kit_name, **asdict(r)}, ensure_ascii=False) + "\n" for r in rows)
        report[kit_name] = {"search": app.search_settings, **summary(rows)}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    rt.db.dispose()


if __name__ == "__main__":
    main()
