"""The worker: retries passing trouble, gives up with a safe sentence, shuts down gracefully, survives deletes."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import text

from kb.db import queue
from kb.db.store import collections as collection_store
from kb.errors import ServiceUnavailable
from kb.runtime import Runtime
from kb.schemas import DatasetCreate
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service
from kb.testing import HashEmbedder
from kb.worker import kinds as job_service
from kb.worker.loop import Worker
from tests.pipeline.support import fake_registry, make_settings

NOTE = "The office opens at nine. Parking is behind the building. Visitors sign in at the desk."


class FlakyEmbedder(HashEmbedder):
    """Fails the first `failures` calls the way an unreachable remote embedder does."""

    def __init__(self, failures: int):
        super().__init__(dim=64, name="hash", max_tokens=128)
        self.failures = failures

    def embed_documents(self, texts, batch_size=32):
        if self.failures:
            self.failures -= 1
            raise ServiceUnavailable("The embedding service is not answering; kb will try again.")
        return super().embed_documents(texts, batch_size)


class BrokenEmbedder(HashEmbedder):
    def embed_documents(self, texts, batch_size=32):
        raise RuntimeError("segfault-ish internal detail /secret/path")


class GatedEmbedder(HashEmbedder):
    """Blocks inside `embed_documents` until the test opens the gate."""

    def __init__(self):
        super().__init__(dim=64, name="hash", max_tokens=128)
        self.entered, self.gate = threading.Event(), threading.Event()

    def embed_documents(self, texts, batch_size=32):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().embed_documents(texts, batch_size)


@pytest.fixture
def make_rt(tmp_path, database_url, db):
    def build(embedder=None, **settings_overrides) -> Runtime:
        settings = make_settings(tmp_path, database_url, **settings_overrides)
        registry = fake_registry(settings)
        if embedder is not None:
            registry.register_embedder(embedder)
        return Runtime(settings, db, registry)

    return build


def _queue_note(rt: Runtime) -> int:
    dataset = dataset_service.find_dataset(rt, "d") or dataset_service.create_dataset(rt, DatasetCreate(name="d"))
    name = f"note {time.monotonic_ns()}"
    outcome = collection_service.add_text(rt, dataset.id, name=name, text=f"{NOTE} ({name})")
    return outcome.collection.id


def _state(rt: Runtime, collection_id: int):
    with rt.db.session() as session:
        return collection_store.get_collection(session, collection_id), queue.latest_job(session, collection_id)


def test_passing_trouble_is_retried_and_the_collection_then_becomes_ready(make_rt):
    rt = make_rt(FlakyEmbedder(failures=1))
    collection_id = _queue_note(rt)
    Worker(rt).run_until_idle()
    collection, job = _state(rt, collection_id)
    assert collection.status == "ready" and collection.chunk_count == 1
    assert (job.status, job.attempts) == ("done", 2)
    assert "not answering" in job.last_error, "the earlier failure stays visible on the job"


def test_an_unexpected_error_is_retried_then_ends_in_error_with_a_safe_sentence(make_rt, caplog):
    rt = make_rt(BrokenEmbedder(dim=64, name="hash", max_tokens=128), job_max_attempts=2)
    collection_id = _queue_note(rt)
    with caplog.at_level(logging.ERROR, logger="kb.worker.jobs"):
        Worker(rt).run_until_idle()
    collection, job = _state(rt, collection_id)
    assert collection.status == "error" and "internal error" in collection.error and "Retry" in collection.error
    assert "/secret/path" not in collection.error, "internals stay in the log"
    assert (job.status, job.attempts) == ("failed", 2)
    assert "/secret/path" in caplog.text


def test_a_waiting_retry_shows_the_collection_as_queued_with_the_reason_on_its_job(make_rt):
    rt = make_rt(FlakyEmbedder(failures=1), job_backoff_seconds=3600)
    collection_id = _queue_note(rt)
    Worker(rt).run_until_idle()
    collection, job = _state(rt, collection_id)
    assert collection.status == "queued" and collection.progress == 0
    assert job.status == "queued" and job.attempts == 1 and "not answering" in job.last_error


def test_shutdown_lets_a_short_job_finish(make_rt):
    embedder = GatedEmbedder()
    rt = make_rt(embedder)
    collection_id = _queue_note(rt)
    worker = Worker(rt)
    worker.start()
    assert embedder.entered.wait(30)
    threading.Timer(0.3, embedder.gate.set).start()
    worker.shutdown(grace=30)
    assert not worker.thread.is_alive()
    assert _state(rt, collection_id)[0].status == "ready"


def test_shutdown_gives_a_job_that_overruns_the_grace_period_back_to_the_queue(make_rt, monkeypatch):
    monkeypatch.setattr("kb.worker.loop.CANCEL_MARGIN", 0.2)
    embedder = GatedEmbedder()
    rt = make_rt(embedder)
    collection_id = _queue_note(rt)
    worker = Worker(rt)
    worker.start()
    assert embedder.entered.wait(30)
    worker.shutdown(grace=0.2)
    collection, job = _state(rt, collection_id)
    assert (collection.status, job.status, job.attempts) == ("queued", "queued", 0)

    embedder.gate.set()  # the interrupted run wakes up: it must not write anything
    worker.thread.join(30)
    assert _state(rt, collection_id)[0].status == "queued"
    with rt.db.session() as session:
        assert session.execute(text("SELECT count(*) FROM chunk")).scalar() == 0

    Worker(rt).run_until_idle()  # safe to run again: another worker finishes it
    collection, job = _state(rt, collection_id)
    assert (collection.status, collection.chunk_count, job.attempts) == ("ready", 1, 1)


def test_a_collection_deleted_while_it_is_processed_leaves_nothing_behind(make_rt):
    embedder = GatedEmbedder()
    rt = make_rt(embedder)
    doomed = _queue_note(rt)
    worker = Worker(rt)
    worker.start()
    try:
        assert embedder.entered.wait(30)
        collection_service.delete_collection(rt, doomed)
        embedder.gate.set()
        survivor = _queue_note(rt)
        deadline = time.monotonic() + 60
        while (state := _state(rt, survivor))[0].status != "ready":
            assert time.monotonic() < deadline, f"the worker did not go on after the delete: {state}"
            time.sleep(0.05)
    finally:
        worker.shutdown(grace=5)
    with rt.db.session() as session:
        assert session.execute(text("SELECT count(*) FROM chunk WHERE collection_id = :c"), {"c": doomed}).scalar() == 0


def test_a_job_whose_worker_died_is_requeued_then_reported_when_it_keeps_dying(make_rt):
    rt = make_rt(job_max_attempts=2)
    collection_id = _queue_note(rt)
    for attempt in (1, 2):
        with rt.db.session() as session:
            job = queue.claim(session, "crashed-worker")
            collection_store.set_progress(session, collection_id, status="embedding", progress=40, started=True)
            session.execute(text("UPDATE job SET heartbeat_at = now() - interval '1 hour'"))
            session.commit()
        (recovered,) = job_service.recover_stale_jobs(rt)
        assert recovered.id == job.id
        collection = _state(rt, collection_id)[0]
        if attempt == 1:
            assert (collection.status, collection.progress) == ("queued", 0)
    assert collection.status == "error" and "stopped responding 2 times" in collection.error


def test_the_worker_wakes_on_notify_without_waiting_for_its_poll(make_rt):
    rt = make_rt(worker_poll_seconds=120)
    worker = Worker(rt)
    worker.start()
    try:
        time.sleep(0.5)  # let it reach its wait
        collection_id = _queue_note(rt)
        deadline = time.monotonic() + 60
        while _state(rt, collection_id)[0].status != "ready":
            assert time.monotonic() < deadline, "the notification did not wake the worker"
            time.sleep(0.05)
    finally:
        worker.shutdown(grace=5)


def test_the_heartbeat_stops_quietly_after_its_own_job_finished_but_cancels_a_job_taken_over(make_rt, caplog):
    from kb.worker.loop import _Heartbeat

    rt = make_rt()
    finished_id, taken_id = _queue_note(rt), _queue_note(rt)
    with rt.db.session() as session:
        finished = queue.claim(session, "me", job_ids=[queue.latest_job(session, finished_id).id])
        queue.complete(session, finished)
        taken = queue.claim(session, "me", job_ids=[queue.latest_job(session, taken_id).id])
        queue.release(session, taken)
        queue.claim(session, "someone-else")
        session.commit()
    quiet, stopped = threading.Event(), threading.Event()
    with caplog.at_level(logging.INFO, logger="kb.worker.loop"):
        beats = [_Heartbeat(rt, finished, quiet), _Heartbeat(rt, taken, stopped)]
        for beat in beats:
            beat.start()
        for beat in beats:
            beat.join(30)
    assert not quiet.is_set() and stopped.is_set()
    assert caplog.text.count("handled by another worker") == 1


class PairedEmbedder(HashEmbedder):
    """Embeds only when two sources are being embedded at the same moment (a barrier of two)."""

    def __init__(self):
        super().__init__(dim=64, name="hash", max_tokens=128)
        self.barrier = threading.Barrier(2, timeout=30)

    def embed_documents(self, texts, batch_size=32):
        self.barrier.wait()  # raises BrokenBarrierError if the other source is not being processed meanwhile
        return super().embed_documents(texts, batch_size)


def test_a_worker_processes_two_sources_at_once_by_default(make_rt):
    rt = make_rt(PairedEmbedder())
    assert rt.settings.worker_jobs == 2
    first, second = _queue_note(rt), _queue_note(rt)
    assert Worker(rt).run_until_idle() == 2
    for collection_id in (first, second):
        collection, job = _state(rt, collection_id)
        assert (collection.status, job.status, job.attempts) == ("ready", "done", 1)


def test_a_running_worker_fills_both_slots_and_gives_both_overrunning_jobs_back_on_shutdown(make_rt, monkeypatch):
    monkeypatch.setattr("kb.worker.loop.CANCEL_MARGIN", 0.2)
    embedder = GatedEmbedder()
    entered = threading.Semaphore(0)
    original = embedder.embed_documents

    def counted(texts, batch_size=32):
        entered.release()
        return original(texts, batch_size)

    embedder.embed_documents = counted
    rt = make_rt(embedder)
    first, second, third = _queue_note(rt), _queue_note(rt), _queue_note(rt)
    worker = Worker(rt)
    worker.start()
    assert entered.acquire(timeout=30) and entered.acquire(timeout=30), "two sources are embedding at once"
    worker.shutdown(grace=0.2)
    states = {cid: _state(rt, cid) for cid in (first, second, third)}
    assert all((c.status, j.status, j.attempts) == ("queued", "queued", 0) for c, j in states.values()), states

    embedder.gate.set()
    worker.thread.join(30)
    Worker(rt).run_until_idle()
    assert all(_state(rt, cid)[0].status == "ready" for cid in (first, second, third))
