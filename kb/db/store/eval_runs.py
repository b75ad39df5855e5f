"""Evaluation runs (configuration, progress, totals) and their per-item results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kb.db.store.records import record_of
from kb.db.tables import EvalItem, EvalResult, EvalRun, EvalSet

FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class EvalRunRecord:
    id: int
    set_id: int
    dataset_id: int
    config: dict[str, Any]
    status: str  # queued | running | done | failed | cancelled
    stage: str
    progress: int
    cancel_requested: bool
    totals: dict[str, Any]
    coverage: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    set_name: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class EvalResultRecord:
    """One item's result, with the item's question and expected answers."""

    item_id: int
    question: str
    answers: list[str]
    source: str | None
    answer_rank: int | None
    source_rank: int | None
    in_corpus: bool
    quotes: list[dict[str, Any]]
    reply: str | None
    answer_hit: bool | None
    citation_hit: bool | None
    latency_ms: float


def _run(row: EvalRun, set_name: str = "") -> EvalRunRecord:
    return record_of(EvalRunRecord, row, set_name=set_name)


def _named():
    return select(EvalRun, EvalSet.name).join(EvalSet, EvalSet.id == EvalRun.set_id)


def add_run(session: Session, set_id: int, dataset_id: int, config: dict[str, Any]) -> EvalRunRecord:
    row = EvalRun(set_id=set_id, dataset_id=dataset_id, config=config)
    session.add(row)
    session.flush()
    session.refresh(row)
    return _run(row)


def get_run(session: Session, run_id: int) -> EvalRunRecord | None:
    found = session.execute(_named().where(EvalRun.id == run_id)).first()
    return _run(*found) if found else None


def list_runs(
    session: Session, *, set_id: int | None = None, dataset_id: int | None = None, limit: int = 100
) -> list[EvalRunRecord]:
    """Runs newest first, of one set or of every set of one dataset."""
    query = _named()
    if set_id is not None:
        query = query.where(EvalRun.set_id == set_id)
    if dataset_id is not None:
        query = query.where(EvalRun.dataset_id == dataset_id)
    return [_run(*row) for row in session.execute(query.order_by(EvalRun.id.desc()).limit(limit))]


def latest_finished_run(session: Session, dataset_id: int) -> EvalRunRecord | None:
    query = _named().where(EvalRun.dataset_id == dataset_id, EvalRun.status == "done")
    found = session.execute(query.order_by(EvalRun.id.desc()).limit(1)).first()
    return _run(*found) if found else None


def job_of_run(session: Session, run_id: int) -> int | None:
    """The id of the queue job carrying the run out."""
    return session.scalar(
        text("SELECT id FROM job WHERE kind = 'eval_run' AND payload->>'run_id' = :run ORDER BY id DESC LIMIT 1"),
        {"run": str(run_id)},
    )


def start_run(session: Session, run_id: int, coverage: dict[str, Any]) -> None:
    """The run begins (again, after a requeue): no results yet, the coverage of the dataset as it is now."""
    session.execute(delete(EvalResult).where(EvalResult.run_id == run_id))
    session.execute(
        update(EvalRun)
        .where(EvalRun.id == run_id)
        .values(status="running", stage="searching", progress=0, coverage=coverage, started_at=func.now())
    )


def set_progress(session: Session, run_id: int, stage: str, progress: int) -> bool:
    """Record the stage and percentage; returns whether a user asked to cancel the run."""
    return bool(
        session.scalar(
            update(EvalRun)
            .where(EvalRun.id == run_id)
            .values(stage=stage, progress=progress)
            .returning(EvalRun.cancel_requested)
        )
    )


def request_cancel(session: Session, run_id: int) -> bool:
    """Ask a running run to stop; a queued one is cancelled at once. False when it had already finished."""
    now_cancelled = session.execute(
        update(EvalRun)
        .where(EvalRun.id == run_id, EvalRun.status == "queued")
        .values(status="cancelled", stage="cancelled", cancel_requested=True, finished_at=func.now())
    ).rowcount
    asked = session.execute(
        update(EvalRun).where(EvalRun.id == run_id, EvalRun.status == "running").values(cancel_requested=True)
    ).rowcount
    return bool(now_cancelled or asked)


def finish_run(
    session: Session, run_id: int, status: str, *, totals: dict[str, Any] | None = None, error: str | None = None
) -> None:
    values: dict[str, Any] = {"status": status, "stage": status, "error": error, "finished_at": func.now()}
    if totals is not None:
        values.update(totals=totals, progress=100)
    session.execute(update(EvalRun).where(EvalRun.id == run_id).values(**values))


def requeue_run(session: Session, run_id: int) -> None:
    """Back in the queue after the worker gave it back (shutdown) or went silent."""
    session.execute(update(EvalRun).where(EvalRun.id == run_id).values(status="queued", stage="queued", progress=0))


def write_results(session: Session, run_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Store results (`item_id`, ranks, quotes, reply, hits, latency); a result written twice is replaced."""
    if not rows:
        return
    statement = insert(EvalResult).values([{**row, "run_id": run_id} for row in rows])
    columns = {c: statement.excluded[c] for c in rows[0] if c != "item_id"}
    session.execute(statement.on_conflict_do_update(constraint="uq_eval_result_run_item", set_=columns))


def list_results(session: Session, run_id: int) -> list[EvalResultRecord]:
    rows = session.execute(
        select(EvalResult, EvalItem)
        .join(EvalItem, EvalItem.id == EvalResult.item_id)
        .where(EvalResult.run_id == run_id)
        .order_by(EvalItem.id)
    ).all()
    return [
        record_of(
            EvalResultRecord,
            result,
            item_id=item.id,
            question=item.question,
            answers=list(item.answers or []),
            source=item.source,
        )
        for result, item in rows
    ]
