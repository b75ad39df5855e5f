"""Carry out one evaluation run (the worker's `eval_run` job): ask every item, score it, store it, total it.

Search-only runs call `search_datasets`, the same use case as the search API and `bench/retrieval.py`, so the
figures match; app runs ask the app as a chat would (`ask_app`) and check the reply and its cited quotes.
Progress (stage and percentage) is written every few items, which is also when a user's cancel is noticed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from kb.db.store import eval_runs as run_store
from kb.db.store import evals as eval_store
from kb.db.store.eval_runs import EvalRunRecord
from kb.db.store.evals import EvalItemRecord
from kb.errors import Cancelled
from kb.rag.scoring import TOP, Outcome, first_rank, mentions, source_rank, totals
from kb.runtime import Runtime
from kb.services.answering import AppQuestion, FinishedAnswer, ask_app
from kb.services.apps import get_app
from kb.services.datasets import get_dataset
from kb.services.search import search_datasets

QUOTE_CHARS = 400  # of each returned quote kept for the comparison page
PROGRESS_SECONDS = 0.5
WRITE_BATCH = 100
BUSY = ("queued", "parsing", "chunking", "embedding")
Settle = Callable[[Session], None]


def coverage_of(rt: Runtime, dataset_id: int) -> dict[str, Any]:
    """What the dataset holds right now; `processing` > 0 means the run covers only the ready documents."""
    dataset = get_dataset(rt, dataset_id)
    counts = dataset.status_counts
    return {
        "ready": counts.get("ready", 0),
        "processing": sum(counts.get(s, 0) for s in BUSY),
        "failed": counts.get("error", 0),
        "chunks": dataset.chunk_count,
    }


def _kept(quotes) -> list[dict[str, Any]]:
    return [
        {"chunk_id": q.chunk_id, "source": q.source, "score": round(q.score, 4), "text": q.text[:QUOTE_CHARS]}
        for q in quotes
    ]


def _search_item(rt: Runtime, run: EvalRunRecord, item: EvalItemRecord) -> dict[str, Any]:
    config = run.config
    started = time.perf_counter()
    result = search_datasets(
        rt,
        [run.dataset_id],
        item.question,
        mode=config["mode"],
        limit=config["limit"],
        min_score=config["min_score"],
        rerank=config["rerank"],
    )
    latency = (time.perf_counter() - started) * 1000
    return {
        "answer_rank": first_rank([q.text for q in result.quotes], item.answers),
        "source_rank": source_rank([q.source for q in result.quotes], item.source),
        "quotes": _kept(result.quotes[:TOP]),
        "latency_ms": round(latency, 2),
    }


def _answer_item(rt: Runtime, app, item: EvalItemRecord, cancel: threading.Event | None) -> dict[str, Any]:
    started = time.perf_counter()
    answer = None
    for piece in ask_app(rt, app, AppQuestion(item.question, []), source="eval", cancel=cancel, stream=False):
        if isinstance(piece, FinishedAnswer):
            answer = piece.answer
    latency = (time.perf_counter() - started) * 1000
    quotes = answer.quotes if answer else []
    cited = [q for q in quotes if q.cited]
    return {
        "answer_rank": first_rank([q.text for q in quotes], item.answers),
        "source_rank": source_rank([q.source for q in quotes], item.source),
        "quotes": _kept(quotes[:TOP]),
        "reply": answer.text if answer else "",
        "answer_hit": mentions(answer.text, item.answers) if answer else False,
        "citation_hit": first_rank([q.text for q in cited], item.answers) is not None,
        "latency_ms": round(latency, 2),
    }


def _outcome(row: dict[str, Any], item: EvalItemRecord) -> Outcome:
    return Outcome(
        answer_rank=row["answer_rank"],
        source_rank=row["source_rank"],
        expects_source=item.source is not None,
        in_corpus=row["in_corpus"],
        answer_hit=row.get("answer_hit"),
        citation_hit=row.get("citation_hit"),
        latency_ms=row["latency_ms"],
    )


class _Progress:
    """Writes stage and percentage at most every PROGRESS_SECONDS; says whether the user asked to cancel."""

    def __init__(self, rt: Runtime, run_id: int, stage: str):
        self.rt, self.run_id, self.stage, self.last = rt, run_id, stage, 0.0

    def report(self, done: int, total: int, *, force: bool = False) -> bool:
        if not force and time.monotonic() - self.last < PROGRESS_SECONDS:
            return False
        self.last = time.monotonic()
        with self.rt.db.session() as session:
            asked = run_store.set_progress(session, self.run_id, self.stage, int(100 * done / max(total, 1)))
            session.commit()
        return asked


def _begin(rt: Runtime, run: EvalRunRecord) -> tuple[list[EvalItemRecord], set[str]]:
    """The active items and which of their answers occur in the dataset; the run marked running."""
    coverage = coverage_of(rt, run.dataset_id)
    with rt.db.session() as session:
        items, _ = eval_store.list_items(session, run.set_id, status="active")
        present = eval_store.answers_in_corpus(session, run.dataset_id, [a for i in items for a in i.answers])
        run_store.start_run(session, run.id, coverage)
        session.commit()
    return items, present


def execute_run(rt: Runtime, run_id: int, *, settle: Settle, cancel: threading.Event | None = None) -> str:
    """Evaluate the run; its final state and `settle(session)` (the job's completion) commit together.

    Returns the run's final status. Raises `Cancelled` when the worker is shutting down (the job is given back).
    """
    with rt.db.session() as session:
        run = run_store.get_run(session, run_id)
        if run is None or run.status == "cancelled":
            settle(session)
            session.commit()
            return "cancelled"
    return _evaluate(rt, run, settle, cancel)


def _evaluate(rt: Runtime, run: EvalRunRecord, settle: Settle, cancel: threading.Event | None) -> str:
    items, present = _begin(rt, run)
    app = get_app(rt, run.config["app_id"]) if run.config.get("app_id") else None
    progress = _Progress(rt, run.id, "answering" if app else "searching")
    pending, outcomes, status = [], [], "done"
    for done, item in enumerate(items):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if progress.report(done, len(items)):
            status = "cancelled"
            break
        row = _answer_item(rt, app, item, cancel) if app else _search_item(rt, run, item)
        row.update(item_id=item.id, in_corpus=bool(present.intersection(item.answers)))
        pending.append(row)
        outcomes.append(_outcome(row, item))
        if len(pending) >= WRITE_BATCH:
            _write(rt, run.id, pending)
    with rt.db.session() as session:
        run_store.write_results(session, run.id, pending)
        run_store.finish_run(session, run.id, status, totals=totals(outcomes))
        settle(session)
        session.commit()
    return status


def _write(rt: Runtime, run_id: int, rows: list[dict[str, Any]]) -> None:
    with rt.db.session() as session:
        run_store.write_results(session, run_id, rows)
        session.commit()
    rows.clear()


def fail_run(rt: Runtime, run_id: int, message: str, settle: Settle) -> None:
    """Record why the run could not finish; the job is settled in the same transaction."""
    with rt.db.session() as session:
        run_store.finish_run(session, run_id, "failed", error=message)
        settle(session)
        session.commit()
