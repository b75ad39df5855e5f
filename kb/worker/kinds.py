"""Job kinds: what the worker does with each `job.kind`. Add a kind here with its three handlers.

Each kind keeps its own retry policy in its handler: ingestion retries passing trouble with an exponential
backoff up to `job_max_attempts` (`kb.worker.jobs`); an evaluation run records its failure on the run and
is not retried, but is tried once more when its worker died (`kb.worker.eval_jobs`); a re-embedding is tried
twice and otherwise records its failure on the job, the dataset untouched (`kb.worker.reembed_jobs`). Every kind is safe to
run twice, so a job given back on shutdown or requeued after a silent worker simply starts over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from kb.db import queue
from kb.runtime import Runtime
from kb.services.collections import INGEST
from kb.services.eval_runs import EVAL_RUN
from kb.services.ingest import Progress
from kb.services.reembed import REEMBED
from kb.worker.eval_jobs import eval_stalled, release_eval_job, run_eval_job
from kb.worker.jobs import fail_timed_out_job, ingest_stalled, release_ingest_job, run_ingest_job
from kb.worker.reembed_jobs import reembed_stalled, release_reembed_job, run_reembed_job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    """`run` does a claimed job (recording its own failures; raising Cancelled or JobLost); `release` gives an
    interrupted one back; `stalled` settles what a job whose worker went silent leaves behind."""

    run: Callable[..., None]  # (rt, job, *, cancel: threading.Event, progress: Progress | None)
    release: Callable[[Runtime, queue.Job], bool]
    stalled: Callable[[Session, queue.Job], None]
    # A job past KB_JOB_TIMEOUT_SECONDS; None: failed like any failure, then settled as `stalled` settles it.
    timed_out: Callable[[Runtime, queue.Job], None] | None = None


KINDS: dict[str, JobKind] = {
    INGEST: JobKind(run_ingest_job, release_ingest_job, ingest_stalled, fail_timed_out_job),
    EVAL_RUN: JobKind(run_eval_job, release_eval_job, eval_stalled),
    REEMBED: JobKind(run_reembed_job, release_reembed_job, reembed_stalled),
}


def run_job(rt: Runtime, job: queue.Job, *, cancel: threading.Event, progress: Progress | None = None) -> None:
    """Dispatch a claimed job to its kind; a kind this version does not know fails the job with a sentence."""
    kind = KINDS.get(job.kind)
    if kind is None:
        with rt.db.session() as session:
            queue.fail(session, job, f"this kb version cannot run '{job.kind}' jobs", backoff_seconds=0)
            session.commit()
        log.warning("Job %d has unknown kind '%s'; marked failed", job.id, job.kind)
        return
    kind.run(rt, job, cancel=cancel, progress=progress)


def release_job(rt: Runtime, job: queue.Job) -> bool:
    """Give an interrupted job back to the queue untouched; False if it was not ours."""
    kind = KINDS.get(job.kind)
    return kind.release(rt, job) if kind is not None else False


def time_out_job(rt: Runtime, job: queue.Job) -> None:
    """Record that a job ran past its time limit: by its kind's handler, else as a failure with the reason."""
    kind = KINDS.get(job.kind)
    if kind is not None and kind.timed_out is not None:
        kind.timed_out(rt, job)
        return
    message = (
        f"The job took longer than {rt.settings.job_timeout_seconds:.0f} s (KB_JOB_TIMEOUT_SECONDS) and was stopped."
    )
    with rt.db.session() as session:
        after = queue.fail(session, job, message, backoff_seconds=rt.settings.job_backoff_seconds)
        if after is not None and kind is not None:
            kind.stalled(session, after)
        session.commit()


def recover_stale_jobs(rt: Runtime) -> list[queue.Job]:
    """Requeue jobs whose worker went silent (or give them up when out of attempts), settling each by its kind."""
    with rt.db.session() as session:
        jobs = queue.requeue_stale(session, rt.settings.job_stale_seconds)
        for job in jobs:
            if job.kind in KINDS:
                KINDS[job.kind].stalled(session, job)
        session.commit()
    for job in jobs:
        log.warning(
            "The worker processing job %d (%s) stopped responding; %s",
            job.id,
            job.kind,
            "gave up" if job.status == "failed" else "it is queued again",
        )
    return jobs
