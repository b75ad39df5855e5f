"""Evaluation-run jobs: carry the run out, record a failure on the run (no retry: running it again is one
click), give it back on shutdown, and requeue or fail it when its worker went silent."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session

from kb.db import queue
from kb.db.store import eval_runs as run_store
from kb.errors import Cancelled
from kb.runtime import Runtime
from kb.services.eval_execute import execute_run, fail_run
from kb.worker.jobs import failure_message

log = logging.getLogger(__name__)

STALLED_RUN = "The worker running this evaluation stopped responding twice; start the run again."


def run_eval_job(rt: Runtime, job: queue.Job, *, cancel: threading.Event | None = None, progress=None) -> None:
    """Evaluate the job's run; a failure ends the run in `failed` with a sentence saying why."""
    run_id = int(job.payload["run_id"])

    def settle(session: Session) -> None:
        queue.assert_owned(session, job)
        queue.complete(session, job)

    try:
        status = execute_run(rt, run_id, settle=settle, cancel=cancel)
        log.info("Evaluation run %d finished: %s", run_id, status)
    except (queue.JobLost, Cancelled):
        raise
    except Exception as exc:
        message = failure_message(exc)
        if message != getattr(exc, "message", None):
            log.exception("Evaluation run %d failed", run_id, exc_info=exc)
        fail_run(rt, run_id, message, settle)


def release_eval_job(rt: Runtime, job: queue.Job) -> bool:
    """Give the interrupted run back to the queue; it starts over when claimed again."""
    with rt.db.session() as session:
        released = queue.release(session, job)
        if released:
            run_store.requeue_run(session, int(job.payload["run_id"]))
        session.commit()
    return released


def eval_stalled(session: Session, job: queue.Job) -> None:
    """The run's worker went silent: it waits in the queue again, or fails once its attempts are used."""
    run_id = int(job.payload["run_id"])
    if job.status == "failed":
        run_store.finish_run(session, run_id, "failed", error=STALLED_RUN)
    else:
        run_store.requeue_run(session, run_id)
