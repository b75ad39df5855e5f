"""The Postgres job queue: skip-locked claims, idempotent enqueue, retry with backoff, stale requeue, ownership."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text

from kb.db import queue
from kb.db.store import collections as collection_store
from kb.db.store import datasets as dataset_store


def _collections(db, count: int) -> list[int]:
    with db.session() as session:
        dataset = dataset_store.add_dataset(session, name="q", embed_model="hash", embed_dim=8, embed_variant="hash-v1")
        ids = [
            collection_store.add_collection(
                session, dataset_id=dataset.id, name=f"c{i}", source_type="text", content_hash=f"h{i}"
            )[0].id
            for i in range(count)
        ]
        session.commit()
    return ids


def _enqueue(db, collection_id: int, **kwargs) -> queue.Job:
    with db.session() as session:
        job, _ = queue.enqueue(session, "ingest", collection_id=collection_id, **kwargs)
        session.commit()
    return job


def _claim(db, worker: str) -> queue.Job | None:
    with db.session() as session:
        job = queue.claim(session, worker)
        session.commit()
    return job


def _age_heartbeat(db, job_id: int, seconds: int) -> None:
    with db.session() as session:
        session.execute(
            text("UPDATE job SET heartbeat_at = now() - make_interval(secs => :s) WHERE id = :id"),
            {"s": seconds, "id": job_id},
        )
        session.commit()


def test_a_job_being_claimed_is_skipped_not_waited_for(db):
    first, second = _collections(db, 2)
    _enqueue(db, first)
    _enqueue(db, second)
    with db.session() as holder, db.session() as other:
        held = queue.claim(holder, "worker-a")  # transaction still open: the row stays locked
        other.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting on the lock would fail, not hang
        taken = queue.claim(other, "worker-b")
        other.commit()
        holder.commit()
    assert {held.collection_id, taken.collection_id} == {first, second}


def test_two_concurrent_claimers_split_the_jobs_and_never_share_one(db):
    ids = _collections(db, 40)
    for collection_id in ids:
        _enqueue(db, collection_id)
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def claimer(name: str) -> None:
        start.wait()
        while (job := _claim(db, name)) is not None:
            claimed[name].append(job.id)

    threads = [threading.Thread(target=claimer, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not set(claimed["a"]) & set(claimed["b"])
    assert len(claimed["a"]) + len(claimed["b"]) == 40


def test_enqueueing_a_live_job_twice_is_a_no_op_until_it_is_done(db):
    (collection_id,) = _collections(db, 1)
    with db.session() as session:
        first, created_first = queue.enqueue(session, "ingest", collection_id=collection_id)
        again, created_again = queue.enqueue(session, "ingest", collection_id=collection_id)
        session.commit()
    assert created_first and not created_again and again.id == first.id
    job = _claim(db, "w")
    with db.session() as session:
        assert queue.complete(session, job)
        later, created_later = queue.enqueue(session, "ingest", collection_id=collection_id)
        session.commit()
    assert created_later and later.id != first.id


def test_enqueue_wakes_listeners_when_the_transaction_commits(db):
    (collection_id,) = _collections(db, 1)
    with psycopg.connect(db.libpq_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {queue.CHANNEL}")
        with db.session() as session:
            queue.enqueue(session, "ingest", collection_id=collection_id)
            assert not list(listener.notifies(timeout=0.2, stop_after=1)), "nothing is sent before commit"
            session.commit()
        received = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in received] == [queue.CHANNEL]


def test_a_failed_job_waits_out_a_doubling_backoff_then_gives_up_keeping_the_last_error(db):
    (collection_id,) = _collections(db, 1)
    _enqueue(db, collection_id, max_attempts=3)
    delays = []
    for attempt in (1, 2, 3):
        job = _claim(db, "w")
        assert job is not None and job.attempts == attempt
        with db.session() as session:
            after = queue.fail(session, job, f"boom {attempt}", backoff_seconds=60)
            now = session.execute(text("SELECT now()")).scalar()
            session.commit()
        if attempt < 3:
            assert after.status == "queued"
            delays.append((after.run_after - now).total_seconds())
            assert _claim(db, "w") is None, "a job in backoff is not due yet"
            with db.session() as session:
                session.execute(text("UPDATE job SET run_after = now() WHERE id = :id"), {"id": job.id})
                session.commit()
    assert after.status == "failed" and after.last_error == "boom 3"
    assert delays[0] == pytest.approx(60, abs=2) and delays[1] == pytest.approx(120, abs=2)
    assert _claim(db, "w") is None


def test_a_job_whose_worker_went_silent_is_requeued_and_its_attempt_counted(db):
    (collection_id,) = _collections(db, 1)
    _enqueue(db, collection_id, max_attempts=2)
    silent = _claim(db, "silent-worker")
    _age_heartbeat(db, silent.id, 300)
    with db.session() as session:
        requeued = queue.requeue_stale(session, stale_seconds=60)
        session.commit()
    assert [(j.id, j.status) for j in requeued] == [(silent.id, "queued")]
    assert "stopped responding" in requeued[0].last_error
    second = _claim(db, "healthy-worker")
    assert second.id == silent.id and second.attempts == 2
    _age_heartbeat(db, second.id, 300)
    with db.session() as session:
        (given_up,) = queue.requeue_stale(session, stale_seconds=60)
        session.commit()
    assert given_up.status == "failed", "out of attempts: no endless requeue loop"


def test_a_fresh_heartbeat_keeps_a_running_job_from_being_requeued(db):
    (collection_id,) = _collections(db, 1)
    _enqueue(db, collection_id)
    job = _claim(db, "w")
    _age_heartbeat(db, job.id, 300)
    with db.session() as session:
        assert queue.heartbeat(session, job)
        assert queue.requeue_stale(session, stale_seconds=60) == []
        session.commit()


def test_a_worker_presumed_dead_cannot_write_once_another_took_its_job(db):
    (collection_id,) = _collections(db, 1)
    _enqueue(db, collection_id)
    old = _claim(db, "slow-worker")
    _age_heartbeat(db, old.id, 300)
    with db.session() as session:
        queue.requeue_stale(session, stale_seconds=60)
        session.commit()
    new = _claim(db, "slow-worker")  # even the same worker id: the attempt number tells the claims apart
    with db.session() as session:
        with pytest.raises(queue.JobLost):
            queue.assert_owned(session, old)
        assert not queue.heartbeat(session, old)
        assert not queue.complete(session, old)
        queue.assert_owned(session, new)
        session.commit()


def test_a_released_job_is_queued_again_at_once_without_using_an_attempt(db):
    (collection_id,) = _collections(db, 1)
    _enqueue(db, collection_id)
    job = _claim(db, "w")
    with db.session() as session:
        assert queue.release(session, job)
        session.commit()
    again = _claim(db, "w")
    assert again.id == job.id and again.attempts == 1
    assert again.run_after <= datetime.now(UTC) + timedelta(seconds=1)


def test_a_released_job_keeps_its_place_ahead_of_jobs_queued_while_it_ran(db):
    first, later = _collections(db, 2)
    _enqueue(db, first)
    job = _claim(db, "w")
    _enqueue(db, later)
    with db.session() as session:
        assert queue.release(session, job)
        session.commit()
    assert _claim(db, "w").collection_id == first, "a graceful stop must not send its job to the back of the queue"
