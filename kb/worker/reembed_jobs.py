"""Re-embedding jobs: carry one out with progress on the job, stop on the user's cancel, record failures.

The dataset changes only in the job's last transaction (which also completes the job), so a failure,
a cancel, a shutdown or a crash at any earlier point leaves the dataset with its old vectors and model.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session

from kb.db import queue
from kb.errors import Cancelled
from kb.runtime import Runtime
from kb.services.reembed import CANCELLED, ReembedCancelled, cancel_requested, reembed_dataset
from kb.worker.jobs import failure_message

log = logging.getLogger(__name__)


def _reporter(rt: Runtime, job: queue.Job, cancel: threading.Event | None):
    """Progress for the admin (written when the figure changes) that also stops at a cancel or a shutdown."""
    shown: list[tuple[str, int]] = []

    def report(stage: str, percent: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if cancel_requested(rt, job.id):
            raise ReembedCancelled()
        if shown and shown[-1] == (stage, percent):
            return
        shown.append((stage, percent))
        with rt.db.session() as session:
            queue.update_payload(session, job.id, {"stage": stage, "percent": percent})
            session.commit()

    return report


def _end(rt: Runtime, job: queue.Job, status: str, message: str) -> None:
    with rt.db.session() as session:
        queue.assert_owned(session, job)
        queue.complete(session, job, status=status, error=message)
        session.commit()


def run_reembed_job(rt: Runtime, job: queue.Job, *, cancel: threading.Event | None = None, progress=None) -> None:
    """Re-embed the job's dataset; a cancel or a failure ends the job with a sentence and the dataset untouched."""
    payload = job.payload

    def settle(session: Session) -> None:
        queue.assert_owned(session, job)
        queue.complete(session, job)

    try:
        reembed_dataset(
            rt,
            int(payload["dataset_id"]),
            payload["embed_model"],
            payload.get("embed_variant"),
            progress=_reporter(rt, job, cancel),
            settle=settle,
        )
    except (queue.JobLost, Cancelled):
        raise
    except ReembedCancelled:
        _end(rt, job, "cancelled", CANCELLED)
        log.info("Re-embedding of dataset %s cancelled", payload["dataset_id"])
    except Exception as exc:
        message = failure_message(exc)
        if message != getattr(exc, "message", None):
            log.exception("Re-embedding of dataset %s failed", payload["dataset_id"], exc_info=exc)
        _end(rt, job, "failed", message)


def release_reembed_job(rt: Runtime, job: queue.Job) -> bool:
    """Give the interrupted job back to the queue; it starts over when claimed again."""
    with rt.db.session() as session:
        released = queue.release(session, job)
        if released:
            queue.update_payload(session, job.id, {"stage": "waiting", "percent": 0})
        session.commit()
    return released


def reembed_stalled(session: Session, job: queue.Job) -> None:
    """The worker went silent: the job starts over from nothing when claimed again (the dataset was untouched)."""
    queue.update_payload(session, job.id, {"stage": "waiting", "percent": 0})
