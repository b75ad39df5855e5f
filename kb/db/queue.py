"""The job queue: rows in the `job` table, claimed with `FOR UPDATE SKIP LOCKED`, woken by NOTIFY.

Every function works inside the caller's transaction; the caller commits. A claimed job is owned by
one (worker, attempt) pair: `locked_by` and `attempts` as the claim left them. Whatever a worker
writes at the end of a job it writes only after `assert_owned`, so a worker that was presumed dead
(and whose job went to someone else) can never overwrite the newer result.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql import bindparam

CHANNEL = "kb_jobs"
_COLUMNS = (
    "id, kind, collection_id, payload, status, attempts, max_attempts, run_after, locked_by, heartbeat_at, last_error"
)


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    collection_id: int | None
    payload: dict[str, Any]
    status: str  # queued | running | done | failed | cancelled
    attempts: int
    max_attempts: int
    run_after: datetime
    locked_by: str | None
    heartbeat_at: datetime | None
    last_error: str | None

    @property
    def exhausted(self) -> bool:
        return self.attempts >= self.max_attempts


class JobLost(Exception):
    """The job is no longer ours: released, requeued as stalled and claimed again, or deleted with its collection."""


def _job(row: Any) -> Job:
    return Job(**dict(row._mapping))


def notify(session: Session, kind: str) -> None:
    """Wake listening workers when the transaction commits (NOTIFY is transactional)."""
    session.execute(text("SELECT pg_notify(:channel, :kind)"), {"channel": CHANNEL, "kind": kind})


def enqueue(
    session: Session, kind: str, *, collection_id: int | None, payload: dict | None = None, max_attempts: int = 3
) -> tuple[Job, bool]:
    """Queue a job unless a live one (queued or running) exists for this collection; returns (job, created).

    A job about no collection (an evaluation run or a dataset's re-embedding, named in its payload) is always
    queued.
    """
    row = session.execute(
        text(
            f"""
            INSERT INTO job (kind, collection_id, payload, max_attempts)
            VALUES (:kind, :collection_id, :payload, :max_attempts)
            ON CONFLICT (kind, collection_id) WHERE status IN ('queued', 'running') DO NOTHING
            RETURNING {_COLUMNS}
            """
        ).bindparams(bindparam("payload", type_=JSONB)),
        {"kind": kind, "collection_id": collection_id, "payload": payload or {}, "max_attempts": max_attempts},
    ).first()
    if row is not None:
        notify(session, kind)
        return _job(row), True
    live = session.execute(
        text(
            f"SELECT {_COLUMNS} FROM job WHERE kind = :kind AND collection_id = :collection_id "
            "AND status IN ('queued', 'running')"
        ),
        {"kind": kind, "collection_id": collection_id},
    ).one()
    return _job(live), False


def claim(session: Session, worker_id: str, *, job_ids: Collection[int] | None = None) -> Job | None:
    """Take the due job that waited longest (optionally only among `job_ids`); rows being claimed
    by other workers right now are skipped, not waited for."""
    only = "AND id = ANY(:ids)" if job_ids is not None else ""
    row = session.execute(
        text(
            f"""
            UPDATE job SET status = 'running', attempts = attempts + 1, locked_by = :worker,
                           heartbeat_at = now(), updated_at = now()
            WHERE id = (
                SELECT id FROM job WHERE status = 'queued' AND run_after <= now() {only}
                ORDER BY run_after, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            RETURNING {_COLUMNS}
            """
        ),
        {"worker": worker_id, "ids": list(job_ids or [])},
    ).first()
    return _job(row) if row is not None else None


_OWNED = "id = :id AND status = 'running' AND locked_by = :worker AND attempts = :attempts"


def _owner(job: Job) -> dict[str, Any]:
    return {"id": job.id, "worker": job.locked_by, "attempts": job.attempts}


def heartbeat(session: Session, job: Job) -> bool:
    """Say the job is still being worked on; False when it is no longer ours."""
    result = session.execute(text(f"UPDATE job SET heartbeat_at = now() WHERE {_OWNED}"), _owner(job))
    return result.rowcount > 0


def assert_owned(session: Session, job: Job) -> None:
    """Lock the job row until commit, or raise JobLost; call before writing a job's result."""
    owned = session.execute(text(f"SELECT 1 FROM job WHERE {_OWNED} FOR UPDATE"), _owner(job)).first()
    if owned is None:
        raise JobLost(f"job {job.id} is no longer held by {job.locked_by}")


def complete(session: Session, job: Job, *, status: str = "done", error: str | None = None) -> bool:
    """End the job we hold: `done`, or `cancelled` / `failed` with the sentence saying why."""
    result = session.execute(
        text(
            "UPDATE job SET status = :status, last_error = coalesce(:error, last_error), locked_by = NULL, "
            f"finished_at = now(), updated_at = now() WHERE {_OWNED}"
        ),
        {**_owner(job), "status": status, "error": error},
    )
    return result.rowcount > 0


def update_payload(session: Session, job_id: int, values: dict[str, Any]) -> None:
    """Merge `values` into the job's payload (progress of a long job, a cancel request)."""
    session.execute(
        text("UPDATE job SET payload = payload || :values, updated_at = now() WHERE id = :id").bindparams(
            bindparam("values", type_=JSONB)
        ),
        {"id": job_id, "values": values},
    )


def cancel_queued(session: Session, job_id: int, reason: str) -> bool:
    """Cancel a job nobody has started; False when it is running or over."""
    result = session.execute(
        text(
            "UPDATE job SET status = 'cancelled', last_error = :reason, finished_at = now(), updated_at = now() "
            "WHERE id = :id AND status = 'queued'"
        ),
        {"id": job_id, "reason": reason},
    )
    return result.rowcount > 0


def latest_job_with(session: Session, kind: str, key: str, value: int | str) -> Job | None:
    """The newest job of `kind` whose payload has `key` = `value` (a dataset's re-embedding)."""
    row = session.execute(
        text(f"SELECT {_COLUMNS} FROM job WHERE kind = :kind AND payload ->> :key = :value ORDER BY id DESC LIMIT 1"),
        {"kind": kind, "key": key, "value": str(value)},
    ).first()
    return _job(row) if row is not None else None


def fail(session: Session, job: Job, error: str, *, backoff_seconds: float) -> Job | None:
    """Record the error; retry after an exponential backoff, or give up once attempts are used up.

    Returns the job as it now stands (status `queued` with a future `run_after`, or `failed`),
    or None when the job was no longer ours.
    """
    delay = backoff_seconds * 2 ** max(0, job.attempts - 1)
    row = session.execute(
        text(
            f"""
            UPDATE job SET
                status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
                run_after = CASE WHEN attempts >= max_attempts THEN run_after
                                 ELSE now() + make_interval(secs => :delay) END,
                finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
                locked_by = NULL, heartbeat_at = NULL, last_error = :error, updated_at = now()
            WHERE {_OWNED}
            RETURNING {_COLUMNS}
            """
        ),
        {**_owner(job), "delay": delay, "error": error},
    ).first()
    if row is not None and row.status == "queued":
        notify(session, job.kind)
    return _job(row) if row is not None else None


def release(session: Session, job: Job) -> bool:
    """Give a job back untouched (graceful shutdown): queued again at once, the interrupted attempt not counted.

    It keeps its `run_after`, so it keeps its place at the head of the queue instead of waiting behind
    everything queued while it ran.
    """
    result = session.execute(
        text(
            f"""
            UPDATE job SET status = 'queued', attempts = attempts - 1, locked_by = NULL, heartbeat_at = NULL,
                           updated_at = now()
            WHERE {_OWNED}
            """
        ),
        _owner(job),
    )
    if result.rowcount:
        notify(session, job.kind)
    return result.rowcount > 0


def postpone(session: Session, job: Job, seconds: float, note: str) -> bool:
    """Give a job back to run again after `seconds`, this attempt not counted (it waits on something outside it)."""
    result = session.execute(
        text(
            f"""
            UPDATE job SET status = 'queued', attempts = attempts - 1, locked_by = NULL, heartbeat_at = NULL,
                           run_after = now() + make_interval(secs => :delay), last_error = :note, updated_at = now()
            WHERE {_OWNED}
            """
        ),
        {**_owner(job), "delay": seconds, "note": note},
    )
    return result.rowcount > 0


def requeue_stale(session: Session, stale_seconds: float) -> list[Job]:
    """Running jobs whose worker went silent go back to the queue (or fail when out of attempts); returns them."""
    rows = session.execute(
        text(
            f"""
            UPDATE job SET
                status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
                finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
                run_after = now(), locked_by = NULL, heartbeat_at = NULL, updated_at = now(),
                last_error = 'the worker processing this job stopped responding'
            WHERE id IN (
                SELECT id FROM job
                WHERE status = 'running' AND coalesce(heartbeat_at, updated_at) < now() - make_interval(secs => :stale)
                FOR UPDATE SKIP LOCKED
            )
            RETURNING {_COLUMNS}
            """
        ),
        {"stale": stale_seconds},
    ).all()
    jobs = [_job(row) for row in rows]
    if any(job.status == "queued" for job in jobs):
        notify(session, jobs[0].kind)
    return jobs


def get_job(session: Session, job_id: int) -> Job | None:
    row = session.execute(text(f"SELECT {_COLUMNS} FROM job WHERE id = :id"), {"id": job_id}).first()
    return _job(row) if row is not None else None


def latest_job(session: Session, collection_id: int) -> Job | None:
    """The collection's most recent job, for showing retries and their last error."""
    row = session.execute(
        text(f"SELECT {_COLUMNS} FROM job WHERE collection_id = :c ORDER BY id DESC LIMIT 1"), {"c": collection_id}
    ).first()
    return _job(row) if row is not None else None
