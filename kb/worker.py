"""The ingestion worker: claims queued jobs one at a time and processes them.

Wakes on LISTEN/NOTIFY, and polls every `worker_poll_seconds` in case a notification was missed.
While a job runs, a heartbeat thread tells the queue it is alive; jobs whose worker went silent are
requeued by whichever worker notices. On shutdown it stops claiming, lets the current job finish for
up to `shutdown_grace_seconds`, then gives it back to the queue (every job is safe to run twice).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Collection

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from kb import queue
from kb.errors import Cancelled
from kb.runtime import Runtime
from kb.services.ingest import Progress
from kb.services.jobs import recover_stale_jobs, release_ingest_job, run_ingest_job

log = logging.getLogger(__name__)

WAIT_SLICE = 0.5  # how often a waiting worker notices a stop request
CANCEL_MARGIN = 5.0  # after the grace period, how long a cancelled job gets to reach a checkpoint


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
                log.warning("Job %d was taken over or deleted; stopping work on it", self.job.id)
                self.cancel.set()
                return


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


class Worker:
    """One worker; `run()` loops until `stop()`, `start()` runs it in a thread, `shutdown()` stops it gracefully."""

    def __init__(self, rt: Runtime, *, worker_id: str | None = None):
        self.rt = rt
        self.id = worker_id or default_worker_id()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._current: tuple[queue.Job, threading.Event] | None = None
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
            self._current = (job, cancel)
        heartbeat = _Heartbeat(self.rt, job, cancel)
        heartbeat.start()
        log.info("Processing collection %s (job %d, attempt %d of %d)", job.collection_id, job.id, job.attempts, job.max_attempts)
        try:
            run_ingest_job(self.rt, job, cancel=cancel, progress=progress)
        except Cancelled:
            if release_ingest_job(self.rt, job):
                log.info("Stopped work on collection %s; it is back in the queue", job.collection_id)
        except queue.JobLost:
            log.warning("Collection %s is now handled elsewhere; this worker's result was dropped", job.collection_id)
        finally:
            heartbeat.done.set()
            with self._lock:
                self._current = None

    def run_once(self, *, job_ids: Collection[int] | None = None, progress: Progress | None = None) -> bool:
        """Claim and process one due job (optionally only among `job_ids`); False when none was due."""
        job = self.claim(job_ids)
        if job is None:
            return False
        self.process(job, progress=progress)
        return True

    def run_until_idle(self) -> int:
        """Process due jobs until none is left; returns how many ran (scripts, tests, benchmarks)."""
        count = 0
        while not self.stopping.is_set() and self.run_once():
            count += 1
        return count

    def run(self) -> None:
        """Loop until `stop()`: recover stalled jobs now and then, process due jobs, else wait for a notification."""
        listener = _Listener(self.rt.db.libpq_url)
        next_recovery = 0.0
        log.info("Worker %s is waiting for sources to process", self.id)
        try:
            while not self.stopping.is_set():
                try:
                    if time.monotonic() >= next_recovery:
                        recover_stale_jobs(self.rt)
                        next_recovery = time.monotonic() + self.rt.settings.job_stale_seconds / 2
                    if self.run_once():
                        continue
                except SQLAlchemyError as exc:
                    log.warning("The database is not answering (%s); trying again shortly", type(exc).__name__)
                except Exception:
                    log.exception("The worker hit an unexpected error; it keeps running")
                listener.wait(self.rt.settings.worker_poll_seconds, self.stopping)
        finally:
            listener.close()
            log.info("Worker %s stopped", self.id)

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self.run, name="kb-worker", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        """Stop claiming new jobs (the current one continues)."""
        self.stopping.set()

    def shutdown(self, grace: float | None = None) -> None:
        """Stop; let the current job finish within `grace` seconds, else cancel it and give it back to the queue."""
        grace = self.rt.settings.shutdown_grace_seconds if grace is None else grace
        self.stop()
        if self.thread is None:
            return
        self.thread.join(grace)
        if not self.thread.is_alive():
            return
        with self._lock:
            current = self._current
        if current is None:
            self.thread.join(CANCEL_MARGIN)
            return
        job, cancel = current
        log.info("Collection %s did not finish within %.0f s; stopping it", job.collection_id, grace)
        cancel.set()
        self.thread.join(CANCEL_MARGIN)
        if self.thread.is_alive() and release_ingest_job(self.rt, job):
            log.info("Collection %s is back in the queue for the next worker", job.collection_id)
