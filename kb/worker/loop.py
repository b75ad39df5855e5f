"""The ingestion worker: claims queued jobs and processes up to `worker_jobs` of them at once.

Wakes on LISTEN/NOTIFY, and polls every `worker_poll_seconds` in case a notification was missed.
While a job runs, a heartbeat thread tells the queue it is alive; jobs whose worker went silent are
requeued by whichever worker notices. On shutdown it stops claiming, lets the current jobs finish for
up to `shutdown_grace_seconds`, then gives them back to the queue (every job is safe to run twice).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from kb.db import queue
from kb.errors import Cancelled
from kb.runtime import Runtime
from kb.services import housekeeping
from kb.services.ingest import Progress
from kb.worker.kinds import recover_stale_jobs, release_job, run_job, time_out_job

log = logging.getLogger(__name__)

WAIT_SLICE = 0.5  # how often a waiting worker notices a stop request
CANCEL_MARGIN = 5.0  # after the grace period, how long a cancelled job gets to reach a checkpoint
HOUSEKEEPING_SECONDS = 3600.0  # how often a worker prunes the usage log and idle rate-limit buckets


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _Heartbeat(threading.Thread):
    """Refreshes the job's heartbeat; if the job is no longer ours, cancels the work on it."""

    def __init__(self, rt: Runtime, job: queue.Job, cancel: threading.Event):
        super().__init__(name=f"kb-heartbeat-{job.id}", daemon=True)
        self.rt, self.job, self.cancel = rt, job, cancel
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.rt.settings.job_heartbeat_seconds):
            try:
                with self.rt.db.session() as session:
                    alive = queue.heartbeat(session, self.job)
                    session.commit()
            except SQLAlchemyError as exc:
                log.warning("Could not record that job %d is still running: %s", self.job.id, exc)
                continue
            if not alive:
                self._lost()
                return

    def _lost(self) -> None:
        """Stop the work, saying why: finished meanwhile (a race with this beat), deleted, or taken over."""
        with self.rt.db.session() as session:
            now = queue.get_job(session, self.job.id)
        if now is not None and now.status in ("done", "failed") and now.attempts == self.job.attempts:
            return
        self.cancel.set()
        if now is None:
            log.info("Collection %s was deleted while being processed; stopping", self.job.collection_id)
        else:
            log.warning("Job %d is now handled by another worker; stopping work on it here", self.job.id)


class _Listener:
    """A LISTEN connection that reconnects when needed; `wait` returns early on a notification."""

    def __init__(self, url: str):
        self.url = url
        self.conn: psycopg.Connection | None = None

    def wait(self, seconds: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    self.conn.execute(f"LISTEN {queue.CHANNEL}")
                if any(True for _ in self.conn.notifies(timeout=min(WAIT_SLICE, left), stop_after=1)):
                    return
            except psycopg.Error:
                self.close()
                stop.wait(min(WAIT_SLICE, max(left, 0)))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_slots(slot: Callable[[int], None], count: int, name: str) -> None:
    """Run `slot(0)` in this thread and `slot(1)` ... `slot(count - 1)` in threads of their own; return when all have."""
    threads = [threading.Thread(target=slot, args=(n,), name=f"{name}-{n}") for n in range(1, count)]
    for thread in threads:
        thread.start()
    try:
        slot(0)
    finally:
        for thread in threads:
            thread.join()


class Worker:
    """One worker running up to `jobs` sources at once; `run()` loops until `stop()`, `start()` runs it in a
    thread, `shutdown()` stops it gracefully."""

    def __init__(self, rt: Runtime, *, worker_id: str | None = None, jobs: int | None = None):
        self.rt = rt
        self.id = worker_id or default_worker_id()
        self.jobs = jobs or rt.settings.worker_jobs
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._current: dict[int, tuple[queue.Job, threading.Event]] = {}
        self._lock = threading.Lock()

    def claim(self, job_ids: Collection[int] | None = None) -> queue.Job | None:
        with self.rt.db.session() as session:
            job = queue.claim(session, self.id, job_ids=job_ids)
            session.commit()
        return job

    def process(self, job: queue.Job, *, progress: Progress | None = None) -> None:
        """Run one claimed job with a heartbeat; give it back if cancelled."""
        cancel = threading.Event()
        with self._lock:
            self._current[job.id] = (job, cancel)
        heartbeat = _Heartbeat(self.rt, job, cancel)
        heartbeat.start()
        log.info(
            "Processing %s job %d (collection %s, attempt %d of %d)",
            job.kind,
            job.id,
            job.collection_id,
            job.attempts,
            job.max_attempts,
        )
        try:
            self._run_within_time_limit(job, cancel, progress)
        except Cancelled:
            if release_job(self.rt, job):
                log.info("Stopped work on collection %s; it is back in the queue", job.collection_id)
        except queue.JobLost:
            log.warning("Collection %s is now handled elsewhere; this worker's result was dropped", job.collection_id)
        finally:
            heartbeat.done.set()
            with self._lock:
                del self._current[job.id]

    def _run_within_time_limit(self, job: queue.Job, cancel: threading.Event, progress: Progress | None) -> None:
        """Run the job in a thread of its own for at most `job_timeout_seconds`.

        Past the limit the job is cancelled and recorded as failed with the reason (retried with the usual
        back-off while attempts are left), and this slot is freed even if the job is stuck where it cannot
        see the cancel: its late result is then dropped, because the job is no longer its own.
        """
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                run_job(self.rt, job, cancel=cancel, progress=progress)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run, name=f"kb-job-run-{job.id}", daemon=True)
        thread.start()
        thread.join(self.rt.settings.job_timeout_seconds)
        if thread.is_alive():
            log.warning("Collection %s ran past its time limit; stopping it", job.collection_id)
            cancel.set()
            thread.join(CANCEL_MARGIN)
            if thread.is_alive() or isinstance(outcome[0], Cancelled):
                time_out_job(self.rt, job)
                return
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def run_once(self, *, job_ids: Collection[int] | None = None, progress: Progress | None = None) -> bool:
        """Claim and process one due job (optionally only among `job_ids`); False when none was due."""
        job = self.claim(job_ids)
        if job is None:
            return False
        self.process(job, progress=progress)
        return True

    def run_until_idle(self) -> int:
        """Process due jobs, `jobs` at a time, until none is left; returns how many ran (scripts, tests, benchmarks)."""
        done = [0] * self.jobs

        def slot(number: int) -> None:
            while not self.stopping.is_set() and self.run_once():
                done[number] += 1

        run_slots(slot, self.jobs, "kb-worker")
        return sum(done)

    def run(self) -> None:
        """Loop until `stop()`: recover stalled jobs now and then, start due jobs while a slot is free, else wait."""
        listener = _Listener(self.rt.db.libpq_url)
        slots = threading.Semaphore(self.jobs)
        running: list[threading.Thread] = []
        next_recovery = next_housekeeping = 0.0
        log.info("Worker %s is waiting for sources to process (%d at a time)", self.id, self.jobs)
        try:
            while not self.stopping.is_set():
                if not slots.acquire(timeout=WAIT_SLICE):
                    continue  # every slot busy
                started = False
                try:
                    if time.monotonic() >= next_recovery:
                        recover_stale_jobs(self.rt)
                        next_recovery = time.monotonic() + self.rt.settings.job_stale_seconds / 2
                    if time.monotonic() >= next_housekeeping:
                        housekeeping.prune(self.rt)
                        next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
                    job = self.claim()
                    if job is not None:
                        running = [thread for thread in running if thread.is_alive()]
                        running.append(self._start_job(job, slots))
                        started = True
                        continue
                except SQLAlchemyError as exc:
                    log.warning("The database is not answering (%s); trying again shortly", type(exc).__name__)
                except Exception:
                    log.exception("The worker hit an unexpected error; it keeps running")
                finally:
                    if not started:
                        slots.release()
                listener.wait(self.rt.settings.worker_poll_seconds, self.stopping)
        finally:
            for thread in running:
                thread.join()
            listener.close()
            log.info("Worker %s stopped", self.id)

    def _start_job(self, job: queue.Job, slots: threading.Semaphore) -> threading.Thread:
        def work() -> None:
            try:
                self.process(job)
            except Exception:
                log.exception(
                    "The worker hit an unexpected error on collection %s; it keeps running", job.collection_id
                )
            finally:
                slots.release()

        thread = threading.Thread(target=work, name=f"kb-job-{job.id}", daemon=True)
        thread.start()
        return thread

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self.run, name="kb-worker", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        """Stop claiming new jobs (the current ones continue)."""
        self.stopping.set()

    def shutdown(self, grace: float | None = None) -> None:
        """Stop; let the current jobs finish within `grace` seconds, else cancel them and give them back to the queue."""
        grace = self.rt.settings.shutdown_grace_seconds if grace is None else grace
        self.stop()
        if self.thread is None:
            return
        self.thread.join(grace)
        if not self.thread.is_alive():
            return
        with self._lock:
            current = list(self._current.values())
        for job, cancel in current:
            log.info("Collection %s did not finish within %.0f s; stopping it", job.collection_id, grace)
            cancel.set()
        self.thread.join(CANCEL_MARGIN)
        if self.thread.is_alive():
            for job, _ in current:
                if release_job(self.rt, job):
                    log.info("Collection %s is back in the queue for the next worker", job.collection_id)
