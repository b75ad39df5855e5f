"""Ingestion jobs: run one for the worker, retry it per policy, give it back on shutdown, settle stalled ones.

The collection always tells the user where its job stands: `queued` while a retry waits, `error`
with a sentence once the attempts are used up. Nothing is left "processing" with nobody working on it.
"""

from __future__ import annotations

import logging
import threading

from kb.db import queue
from kb.db.store import collections as collection_store
from kb.errors import Cancelled, KBError, Unprocessable
from kb.runtime import Runtime
from kb.services.datasets import EmbedderUnavailable
from kb.services.ingest import Progress, ingest_collection

log = logging.getLogger(__name__)

INTERNAL_ERROR = (
    "kb hit an internal error while processing this source (the details are in the server log). "
    "Retry it; if it fails again, please report the problem."
)
PAUSE_SECONDS = 60.0  # how often a paused source checks whether its dataset's embedder can be loaded again
PAUSED = "Paused: {reason} Processing resumes by itself once the model loads."
STALLED = (
    "Processing stopped responding {attempts} times: the worker may have crashed or run out of memory on this "
    "source. Retry it, or split the file into smaller parts."
)


TIMED_OUT = (
    "Processing this source took longer than {seconds:.0f} s (KB_JOB_TIMEOUT_SECONDS) and was stopped. "
    "Retry it, split the file into smaller parts, or ask the administrator to raise the limit."
)


def failure_message(exc: BaseException) -> str:
    """What the user reads about an exception: a passing trouble's own sentence, or a safe general one."""
    return exc.message if isinstance(exc, KBError) else INTERNAL_ERROR


def run_ingest_job(
    rt: Runtime, job: queue.Job, *, cancel: threading.Event | None = None, progress: Progress | None = None
) -> None:
    """Process a claimed ingestion job; failures are recorded and retried with backoff, never raised.

    `kb.errors.Cancelled` (shutdown) and `queue.JobLost` (someone else owns the job now) are raised
    for the worker to handle.
    """

    def settle(session) -> None:
        queue.assert_owned(session, job)
        queue.complete(session, job)

    try:
        ingest_collection(rt, job.collection_id, settle=settle, cancel=cancel, progress=progress)
    except (queue.JobLost, Cancelled):
        raise
    except EmbedderUnavailable as exc:
        _pause(rt, job, exc.message)
    except Exception as exc:
        _retry_or_fail(rt, job, exc)


def _pause(rt: Runtime, job: queue.Job, reason: str) -> None:
    """Wait for the dataset's embedder without using up attempts: the source stays queued, saying why."""
    note = PAUSED.format(reason=reason)
    with rt.db.session() as session:
        if queue.postpone(session, job, PAUSE_SECONDS, note):
            collection_store.mark_queued(session, job.collection_id, note=note)
        session.commit()
    log.warning("Collection %s paused: %s", job.collection_id, reason)


def _retry_or_fail(rt: Runtime, job: queue.Job, exc: Exception) -> None:
    message = failure_message(exc)
    if message is INTERNAL_ERROR:
        log.exception(
            "Unexpected error on collection %s (job %d, attempt %d)",
            job.collection_id,
            job.id,
            job.attempts,
            exc_info=exc,
        )
    with rt.db.session() as session:
        after = queue.fail(session, job, message, backoff_seconds=rt.settings.job_backoff_seconds)
        if after is None:
            return
        if after.status == "failed":
            collection_store.mark_error(session, job.collection_id, message)
        else:
            collection_store.mark_queued(session, job.collection_id)
        session.commit()
    if after.status == "failed":
        log.warning("Gave up on collection %s after %d attempts: %s", job.collection_id, after.attempts, message)
    else:
        log.warning(
            "Collection %s failed (attempt %d of %d): %s; trying again after %s",
            job.collection_id,
            after.attempts,
            after.max_attempts,
            message,
            after.run_after.strftime("%H:%M:%S"),
        )


def fail_timed_out_job(rt: Runtime, job: queue.Job) -> None:
    """Record that the job ran past its time limit: retried after the usual back-off, or failed with the reason."""
    seconds = rt.settings.job_timeout_seconds
    _retry_or_fail(rt, job, Unprocessable(TIMED_OUT.format(seconds=seconds), code="job_timeout"))


def release_ingest_job(rt: Runtime, job: queue.Job) -> bool:
    """Put an interrupted job back in the queue untouched (its attempt not counted); False if it was not ours."""
    with rt.db.session() as session:
        released = queue.release(session, job)
        if released:
            collection_store.mark_queued(session, job.collection_id)
        session.commit()
    return released


def ingest_stalled(session, job: queue.Job) -> None:
    """The collection of a job whose worker went silent: queued again, or in `error` once out of attempts."""
    if job.collection_id is None:
        return
    if job.status == "failed":
        collection_store.mark_error(session, job.collection_id, STALLED.format(attempts=job.attempts))
    else:
        collection_store.mark_queued(session, job.collection_id)
